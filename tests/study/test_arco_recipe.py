"""The packaged ARCO-ERA5 recipe (``era5-arco-tcw4``), built offline from a local ARCO layout.

The recipe reads the public ARCO-ERA5 zarr through fsspec; here its ``path`` alone is pointed at
a ``file://`` URL of a small store laid out like ARCO's (:func:`climdown.testing.write_arco_like`:
same variable names, dims, descending latitude, 0..359.75 longitude, one hour per chunk), so the
build takes the same fsspec path, with the recipe's own ``storage_options``, without network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climdown.cli import main
from climdown.data.recipe import load_recipe
from climdown.data.sources import open_era5
from climdown.data.store import build_store, open_store, store_info
from climdown.errors import ClimdownError, RecipeError
from climdown.study import read_recipe, recipe_path
from climdown.testing import ARCO_ERA5, write_arco_like

NAME = "era5-arco-tcw4"
# a few hours inside each of the recipe's splits (train 2015-2018, val 2019, test 2020)
HOURS = {"train": ("2015-01-01", 4), "val": ("2019-01-01", 2), "test": ("2020-01-01", 2)}
SAMPLES = {"train": 8, "val": 4, "test": 4}


@pytest.fixture(scope="module")
def arco(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, xr.Dataset]:
    """A file:// URL of a global 0.25 deg ARCO-like store holding eight hours, and its data."""
    store = tmp_path_factory.mktemp("arco") / "full_37-1h-0p25deg-chunk-1.zarr-v3"
    times = [t for start, n in HOURS.values() for t in pd.date_range(start, periods=n, freq="h")]
    data = write_arco_like(store, times)
    return f"file://{store}", data


def _pointed_at(url: str, out: Path) -> dict[str, Any]:
    """The packaged recipe with only its source's path, its split dates and sizes, and output
    changed: everything else (variable, region, factor, patch, sampling, ...) as written."""
    raw = read_recipe(NAME, stores=out)
    raw["source"] = {**raw["source"], "path": url}
    raw["splits"] = {
        name: {
            "start": pd.Timestamp(start).isoformat(),
            "end": (pd.Timestamp(start) + pd.Timedelta(hours=n)).isoformat(),
            "samples": SAMPLES[name],
        }
        for name, (start, n) in HOURS.items()
    }
    return raw


def test_the_recipe_reads_arco_era5_anonymously_with_tcw4_geometry() -> None:
    r = load_recipe(recipe_path(NAME))
    assert r.source == {"kind": "era5", "path": ARCO_ERA5, "storage_options": {"token": "anon"}}
    assert r.variable == "total_column_water"  # ARCO's name; `tcw` is not in the store
    train, val, test = r.splits
    years = [(s.start.year, s.end.year) for s in (train, val, test)]
    assert years == [(2015, 2019), (2019, 2020), (2020, 2021)]  # 4 years train, 1 val, 1 test
    assert train.end == val.start and val.end == test.start  # later years held out, no overlap
    # the study's TCW4 data set (tcw4.yaml), on real data
    tcw4 = load_recipe(recipe_path("tcw4"))
    for key in ("factor", "patch", "frames", "region", "sampling", "normalisation", "chunks"):
        assert getattr(r, key) == getattr(tcw4, key), key
    assert [s.samples for s in r.splits] == [s.samples for s in tcw4.splits]
    assert r.factor == 4


def test_the_packaged_recipe_builds_from_an_arco_layout_store(
    arco: tuple[str, xr.Dataset], tmp_path: Path
) -> None:
    url, data = arco
    raw = _pointed_at(url, tmp_path)
    store = build_store(load_recipe(raw), progress=False)
    info = store_info(store)
    written = json.loads(info["recipe_json"])
    packaged = load_recipe(recipe_path(NAME))
    # the recipe's own settings, as written, are the store's
    assert written["source"]["storage_options"] == {"token": "anon"}
    assert info["variable"] == "total_column_water" == packaged.variable
    assert (info["factor"], info["patch"], info["patch_lr"], info["frames"]) == (4, 128, 32, 1)
    assert info["chunks"] == packaged.chunks == 64
    assert written["region"] == {
        "lat_min": -60.0,
        "lat_max": 60.0,
        "lon_min": 0.0,
        "lon_max": 360.0,
    }
    assert written["sampling"]["mode"] == "random" and written["sampling"]["seed"] == 0
    assert info["normalisation"]["scale_method"] == "max"
    assert info["normalisation"]["scale"] == info["normalisation"]["max"]
    assert info["samples"] == SAMPLES
    # the region as written: 481 rows of 0.25 deg (60 S..60 N) and 1440 columns give
    # (481 - 128) // 4 + 1 = 89 by (1440 - 128) // 4 + 1 = 329 patch corners per hour;
    # contrast: the whole globe (721 rows) would offer 149 rows of corners
    per_hour = 89 * 329
    assert info["patches_available"] == {k: n * per_hour for k, (_, n) in HOURS.items()}
    # each patch is the source's values at its coordinates (nothing relabelled or shifted)
    train = open_store(store, "train").load()
    assert float(abs(train["lat"]).max()) <= 60.0
    for i in (0, SAMPLES["train"] - 1):
        hr = train["hr"].isel(sample=i, frame=0)
        src = data["total_column_water"].sel(
            time=train["time"].values[i, 0],
            latitude=train["lat"].values[i],
            longitude=train["lon"].values[i],
        )
        np.testing.assert_array_equal(hr.values, src.values)
    # contrast: the name the other recipes use is not in ARCO's store, and is not guessed
    wrong = {**raw, "variable": "tcw", "output": str(tmp_path / "wrong.zarr")}
    with pytest.raises(RecipeError, match="no variable 'tcw'.*total_column_water"):
        build_store(load_recipe(wrong), progress=False)


def test_the_arco_layout_opens_with_the_files_names(arco: tuple[str, xr.Dataset]) -> None:
    url, data = arco
    ds = open_era5(url, "total_column_water", storage_options={"token": "anon"})
    tcw = ds["total_column_water"]
    assert tcw.dims == ("time", "latitude", "longitude")
    assert tcw.shape == (8, 721, 1440)
    assert tcw.chunks is not None and set(tcw.chunks[0]) == {1}  # one hour per read
    assert ds["latitude"].values[0] == 90.0 and ds["longitude"].values[-1] == 359.75
    # one naming: what xarray gives for the same store lines up cell by cell
    diff = tcw.isel(time=0) - data["total_column_water"].isel(time=0)
    assert diff.shape == (721, 1440) and float(abs(diff).max()) == 0.0


def test_storage_options_on_a_local_path_name_the_fix(arco: tuple[str, xr.Dataset]) -> None:
    url, _ = arco
    local = url.removeprefix("file://")
    with pytest.raises(ClimdownError, match=r"not to the local path .*file:///"):
        open_era5(local, "total_column_water", storage_options={"token": "anon"})
    assert "total_column_water" in open_era5(local, "total_column_water")  # contrast


def test_build_without_gcsfs_names_the_cloud_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed: the build would go to the network")
    monkeypatch.chdir(tmp_path)
    assert main(["build", NAME, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "climdown[cloud]"' in err and "gcsfs" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "stores").exists() or not any((tmp_path / "stores").iterdir())
