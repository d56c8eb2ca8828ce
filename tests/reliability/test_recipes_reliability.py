"""Recipes never drop or mislabel data silently: variables, names, YAML, regions, patch counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from climdown.data.recipe import Recipe, load_recipe
from climdown.data.sources import open_source, sample_path
from climdown.data.store import build_store, open_store, store_info
from climdown.errors import RecipeError
from climdown.grid import Box, wrap_lon


def _sample_copy(tmp_path: Path, name: str) -> str:
    """The packaged sample ``name`` as a netCDF file of the user's (an ``era5`` path source)."""
    path = tmp_path / f"{name}.nc"
    with xr.open_dataset(sample_path(name)) as ds:
        ds.load().to_netcdf(path)
    return str(path)


# every way a recipe names a source, with the variable that source holds
SOURCES = [
    ("sample:rhine", "tcw"),
    ({"kind": "sample", "name": "rhine"}, "tcw"),
    ("sample:global", "tcwv"),
    ({"kind": "sample", "name": "global"}, "tcwv"),
    ("PATH:rhine", "tcw"),
    ({"kind": "era5", "path": "PATH:global"}, "tcwv"),
    ("DATASET:rhine", "tcw"),
]


def _resolve(source, tmp_path: Path):
    if isinstance(source, dict):
        return {k: _resolve(v, tmp_path) for k, v in source.items()}
    if isinstance(source, str) and source.startswith("PATH:"):
        return _sample_copy(tmp_path, source.split(":", 1)[1])
    if isinstance(source, str) and source.startswith("DATASET:"):
        return xr.open_dataset(_sample_copy(tmp_path, source.split(":", 1)[1]))
    return source


@pytest.mark.parametrize(("source", "has"), SOURCES, ids=lambda v: str(v)[:24])
def test_every_source_honours_variable_or_names_what_it_has(source, has, tmp_path):
    src = _resolve(source, tmp_path)
    ds = open_source(src, variable=has)  # contrast: the variable it holds is the one read
    assert list(ds.data_vars) == [has]
    other = "t2m"
    with pytest.raises(RecipeError, match=rf"no variable '{other}'.*\b{has}\b.*variable:"):
        open_source(src, variable=other)
    wrong = "tcw" if has == "tcwv" else "tcwv"  # the other water name is refused just as well
    with pytest.raises(RecipeError, match=rf"no variable '{wrong}'"):
        open_source(src, variable=wrong)


def _rhine_recipe(tmp_path: Path, **over: object) -> dict:
    raw = {
        "name": "rhine",
        "source": "sample:rhine",
        "variable": "tcw",
        "factor": 4,
        "patch": 16,
        "splits": {"train": {"start": "2020-01-01T00", "end": "2020-01-01T12", "samples": 4}},
        "chunks": 4,
        "output": str(tmp_path / "rhine.zarr"),
    }
    raw.update(over)
    return raw


def test_a_store_is_labelled_with_the_variable_it_holds(tmp_path):
    with pytest.raises(RecipeError, match="no variable 't2m'.*tcw"):
        build_store(load_recipe(_rhine_recipe(tmp_path, variable="t2m")))
    assert not (tmp_path / "rhine.zarr").exists()
    path = build_store(load_recipe(_rhine_recipe(tmp_path)))  # contrast: tcw is there
    assert store_info(path)["variable"] == "tcw"


@pytest.mark.parametrize("content", [b"hello, not a dataset\n", b"CDF\x01 truncated", None])
def test_a_source_that_is_not_a_dataset_is_a_one_line_error(tmp_path, content):
    if content is None:
        bad = tmp_path / "folder"  # a folder of the user's, not a zarr store
        bad.mkdir()
        (bad / "notes.txt").write_text("x")
    else:
        bad = tmp_path / "data.nc"
        bad.write_bytes(content)
    raw = _rhine_recipe(tmp_path, source=str(bad))
    with pytest.raises(RecipeError, match="cannot read .* as a dataset") as info:
        build_store(load_recipe(raw))
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------
# names, YAML, normalisation
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["../../evil", "a/b", "..", ".", "", " ", "a\\b", "/abs", "~user", "x\n", "tiny.zarr/../x"],
)
def test_a_recipe_name_is_a_plain_name(tmp_path, name):
    raw = _rhine_recipe(tmp_path, name=name)
    raw.pop("output")  # the default output is <name>.zarr
    with pytest.raises(RecipeError, match="name"):
        Recipe.from_mapping(raw)


@pytest.mark.parametrize("name", ["tiny", "era5-global-x4", "tcw_4x.v2", "Rhine 2020"])
def test_plain_names_are_accepted(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    raw = _rhine_recipe(tmp_path, name=name)
    raw.pop("output")
    r = Recipe.from_mapping(raw)
    assert r.output == tmp_path / f"{name}.zarr"


@pytest.mark.parametrize(
    "text",
    [
        "factor: 4\nfactor: 2\n",  # a key given twice at the top
        "splits:\n  train: {start: 2020-01-01, start: 2020-01-02, end: 2020-01-03}\n",
        "region: {lat_min: 40, lat_max: 50, lon_min: 0, lon_max: 10, lat_max: 60}\n",
    ],
)
def test_duplicate_yaml_keys_are_refused(tmp_path, text):
    base = _rhine_recipe(tmp_path)
    path = tmp_path / "dup.yaml"
    keys = {line.split(":", 1)[0] for line in text.splitlines() if not line.startswith(" ")}
    body = yaml.safe_dump({k: v for k, v in base.items() if k not in keys}, sort_keys=False)
    path.write_text(body + text)
    with pytest.raises(RecipeError, match="twice|duplicate"):
        load_recipe(path)
    clean = yaml.safe_dump(base, sort_keys=False)  # contrast: each key once is fine
    path.write_text(clean)
    assert load_recipe(path).factor == 4


def test_a_yaml_merge_key_may_be_overridden(tmp_path):
    # contrast: `<<: *anchor` and then the same key written out is YAML's override, not a
    # key given twice
    raw = _rhine_recipe(tmp_path)
    raw.pop("splits")
    path = tmp_path / "merge.yaml"
    path.write_text(
        yaml.safe_dump(raw, sort_keys=False)
        + "time: &day {start: 2020-01-01T00, end: 2020-01-01T12}\n"
        + "splits:\n  train: {<<: *day, end: 2020-01-01T06, samples: 4}\n"
    )
    train = load_recipe(path).split("train")
    assert (train.start.hour, train.end.hour) == (0, 6)


@pytest.mark.parametrize("scale", [".inf", "-.inf", ".nan", "1.0e400", "0", "-1"])
def test_a_non_finite_or_non_positive_scale_is_refused(tmp_path, scale):
    text = yaml.safe_dump(_rhine_recipe(tmp_path), sort_keys=False)
    path = tmp_path / "scale.yaml"
    path.write_text(text + f"normalisation: {{scale: {scale}}}\n")
    with pytest.raises(RecipeError, match="normalisation.scale"):
        load_recipe(path)
    path.write_text(text + "normalisation: {scale: 25.5}\n")
    assert math.isclose(load_recipe(path).normalisation.scale, 25.5)


# ---------------------------------------------------------------------------------------
# regions across a seam, and the patch count per split
# ---------------------------------------------------------------------------------------
def _global_in(tmp_path: Path, convention: float) -> str:
    """The packaged global sample with longitudes in [convention, convention + 360), sorted."""
    with xr.open_dataset(sample_path("global")) as ds:
        ds = ds.load()
    ds = ds.assign_coords(longitude=wrap_lon(ds["longitude"], convention)).sortby("longitude")
    path = tmp_path / f"global_{int(convention)}.nc"
    ds.to_netcdf(path)
    return str(path)


@pytest.mark.parametrize("window", [None, (0.0, 360.0), (-180.0, 180.0)])
def test_a_split_across_the_seam_keeps_every_patch_of_its_box(tmp_path, window):
    box = {"lat_min": -88.5, "lat_max": 90.0, "lon_min": -96.0, "lon_max": 191.9}
    p, stride = 16, 8
    counts = []
    for convention in (0.0, -180.0):
        raw = {
            "name": f"seam{int(convention)}",
            "source": _global_in(tmp_path, convention),
            "variable": "tcwv",
            "factor": 4,
            "patch": p,
            "splits": {"train": {"start": "2020-06-01", "end": "2020-06-02", "region": box}},
            "sampling": {"mode": "stride", "stride": stride},
            "chunks": 256,
            "output": str(tmp_path / f"seam{int(convention)}.zarr"),
        }
        if window is not None:
            raw["region"] = {**box, "lon_min": window[0], "lon_max": window[1]}
        info = store_info(build_store(load_recipe(raw)))
        counts.append((info["samples"]["train"], info["patches_available"]["train"]))
        lon = open_store(raw["output"], "train")["lon"].values
        assert np.all(Box(**box).lon_mask(lon))
    lat = np.arange(90.0, -90.1, -1.5)
    lon = np.arange(0.0, 360.0, 1.5)
    rows = np.count_nonzero(Box(**box).lat_mask(lat))
    cols = np.count_nonzero(Box(**box).lon_mask(lon))  # 192 columns, in one piece
    expected = len(range(0, rows - p + 1, stride)) * len(range(0, cols - p + 1, stride))
    assert counts == [(expected, expected)] * 2
