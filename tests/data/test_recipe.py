"""Recipes: the shipped YAML files load, defaults fill in, and every bad key or value fails clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from climdown.data.recipe import (
    Normalisation,
    Recipe,
    Region,
    Sampling,
    Split,
    TimeRange,
    load_recipe,
)
from climdown.errors import RecipeError
from climdown.grid import Box
from climdown.study import recipes_dir

RECIPES = recipes_dir()


def _base(**over: object) -> dict:
    d = {
        "source": "synthetic",
        "factor": 4,
        "patch": 16,
        "splits": {
            "train": {"start": "2020-01-01", "end": "2020-01-02", "samples": 8},
            "val": {"start": "2020-01-02", "end": "2020-01-03", "samples": 4},
        },
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    ("name", "factor", "lr", "frames", "train", "val"),
    [
        ("tcw2", 2, 64, 1, 1024, 300),
        ("tcw4", 4, 32, 1, 1024, 300),
        ("tcw8", 8, 16, 1, 1024, 300),
        ("t1", 4, 32, 3, 300, 300),
    ],
)
def test_shipped_recipes_mirror_the_study_table(name, factor, lr, frames, train, val):
    r = load_recipe(RECIPES / f"{name}.yaml")
    assert r.name == name and r.source == "synthetic" and r.variable == "tcw"
    assert (r.factor, r.patch, r.patch_lr, r.frames) == (factor, 128, lr, frames)
    assert (r.split("train").samples, r.split("val").samples) == (train, val)
    assert r.split("train").end <= r.split("val").start
    assert r.text.startswith("#")  # the YAML text, comments included, is kept


def test_tiny_recipe_is_small_and_has_three_splits():
    r = load_recipe(RECIPES / "tiny.yaml")
    assert r.split_names == ("train", "val", "test")
    assert r.patch == 16 and r.source == {"kind": "synthetic", "resolution": 1.0, "seed": 0}


def test_defaults_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = load_recipe(_base())
    assert isinstance(r, Recipe)
    assert r.name == "recipe" and r.variable == "tcw" and r.frames == 1 and r.chunks == 64
    assert r.region is None and r.time is None
    assert r.sampling.mode == "random" and r.sampling.seed == 0
    assert r.normalisation.scale == "max"
    assert r.output == tmp_path / "recipe.zarr"  # relative to the current directory
    assert r.time_range.start == pd.Timestamp("2020-01-01")
    assert r.time_range.end == pd.Timestamp("2020-01-03")
    assert load_recipe(_base(output="sub/x.zarr")).output == tmp_path / "sub" / "x.zarr"


def test_name_defaults_to_file_stem(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(_base()))
    assert load_recipe(p).name == "mine"
    assert load_recipe(str(p)).name == "mine"


def test_dates_times_and_timezones_are_read():
    r = load_recipe(
        _base(
            splits={
                "train": {"start": "2020-01-01T06:00", "end": "2020-01-02", "samples": 2},
                "val": {"start": "2020-01-02T00:00:00+00:00", "end": "2020-01-03", "samples": 2},
            }
        )
    )
    assert r.split("train").start == pd.Timestamp("2020-01-01T06:00")
    assert r.split("val").start == pd.Timestamp("2020-01-02")
    assert r.split("val").start.tzinfo is None


def test_hash_ignores_comments_name_and_output_but_not_content(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("# a comment\n" + yaml.safe_dump(_base(output="one.zarr")))
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump(_base(output="two.zarr", name="other")))
    assert load_recipe(a).hash == load_recipe(b).hash
    assert load_recipe(_base(factor=2)).hash != load_recipe(_base()).hash
    assert load_recipe(_base(sampling={"seed": 1})).hash != load_recipe(_base()).hash


def test_source_paths_are_resolved_and_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "era5.nc").write_bytes(b"")
    assert load_recipe(_base(source="era5.nc")).source == str(tmp_path / "era5.nc")
    assert load_recipe(_base(source="gs://bucket/x.zarr")).source == "gs://bucket/x.zarr"
    assert load_recipe(_base(source="sample:rhine")).source == "sample:rhine"
    era5 = {"kind": "era5", "path": "era5.nc"}
    assert load_recipe(_base(source=era5)).source["path"] == str(tmp_path / "era5.nc")
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(_base(source="missing.nc"))
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(_base(source={"kind": "era5", "path": "missing.nc"}))
    with pytest.raises(RecipeError, match="kind"):
        load_recipe(_base(source={"seed": 1}))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        (
            {"normalization": {"scale": "max"}},
            "unknown key 'normalization'.*did you mean 'normalisation'",
        ),
        ({"colour": "red"}, "unknown key 'colour'"),
        (
            {"splits": {"train": {"start": "2020-01-01", "end": "2020-01-02", "sample": 3}}},
            "unknown key 'splits.train.sample'.*did you mean 'samples'",
        ),
        ({"splits": {"training": {}}}, "unknown key 'splits.training'"),
        (
            {"region": {"lat_min": 0, "lat_max": 10, "lon_min": 0, "lon_max": 10, "x": 1}},
            "region.x",
        ),
        ({"sampling": {"mode": "random", "sed": 1}}, "did you mean 'seed'"),
        ({"factor": 0}, "factor must be an integer >= 2"),
        ({"factor": "four"}, "factor must be an integer"),
        ({"factor": 2.5}, "factor must be an integer"),
        ({"factor": True}, "factor must be an integer"),
        ({"factor": 3}, "patch 16 is not divisible by factor 3.*patch: 15 or patch: 18"),
        ({"patch": 100, "factor": 8}, "patch 100 is not divisible by factor 8.*patch: 96"),
        ({"frames": 0}, "frames must be an integer >= 1"),
        ({"chunks": -1}, "chunks"),
        (
            {
                "splits": {
                    "train": {"start": "2020-01-01", "end": "2020-01-05", "samples": 8},
                    "val": {"start": "2020-01-04", "end": "2020-01-06", "samples": 4},
                }
            },
            "overlap in time",
        ),
        (
            {
                "splits": {
                    "train": {"start": "2020-01-03", "end": "2020-01-05", "samples": 8},
                    "test": {"start": "2020-01-01", "end": "2020-01-04", "samples": 4},
                }
            },
            "overlap",
        ),
        (
            {"splits": {"val": {"start": "2020-01-01", "end": "2020-01-02", "samples": 2}}},
            "'train'",
        ),
        (
            {"splits": {"train": {"start": "2020-01-02", "end": "2020-01-01", "samples": 2}}},
            "must be before end",
        ),
        ({"splits": {"train": {"start": "2020-01-01", "samples": 2}}}, "needs 'end'"),
        (
            {"splits": {"train": {"start": "tomorrow-ish", "end": "2020-01-02", "samples": 2}}},
            "cannot read",
        ),
        (
            {"splits": {"train": {"start": "2020-01-01", "end": "2020-01-02"}}},
            "samples is required",
        ),
        (
            {"splits": {"train": {"start": "2020-01-01", "end": "2020-01-02", "samples": 0}}},
            "samples",
        ),
        ({"time": {"start": "2020-01-01", "end": "2020-01-02"}}, "outside time"),
        (
            {"region": {"lat_min": 10, "lat_max": 0, "lon_min": 0, "lon_max": 10}},
            "lat_min < lat_max",
        ),
        ({"region": {"lat_min": 0, "lat_max": 10, "lon_min": 0}}, "region needs lon_max"),
        ({"region": {"lat_min": 0, "lat_max": 10, "lon_min": -200, "lon_max": 10}}, "longitudes"),
        ({"region": {"lat_min": "a", "lat_max": 10, "lon_min": 0, "lon_max": 10}}, "number"),
        ({"sampling": {"mode": "grid"}}, "'random' or 'stride'"),
        ({"sampling": {"mode": "stride", "stride": 6}}, "stride 6 is not a multiple of factor 4"),
        ({"sampling": {"mode": "random", "stride": 8}}, "only apply to mode: stride"),
        ({"normalisation": {"scale": "median"}}, "normalisation.scale"),
        ({"normalisation": {"scale": -1.0}}, "positive number"),
        ({"variable": 3}, "variable"),
        ({"source": ""}, "source must be"),
        ({"output": ""}, "output must be a path"),
        ({"region": [0, 10, 0, 10]}, "region must be a mapping"),
    ],
)
def test_bad_recipes_name_the_key_and_the_fix(over, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(_base(**over))


@pytest.mark.parametrize("key", ["source", "factor", "patch", "splits"])
def test_missing_required_keys(key):
    d = _base()
    del d[key]
    with pytest.raises(RecipeError, match=f"missing the required key '{key}'"):
        load_recipe(d)


def test_touching_splits_are_allowed_and_do_not_overlap():
    r = load_recipe(_base())
    a, b = r.split("train").range, r.split("val").range
    assert not a.overlaps(b) and a.end == b.start
    with pytest.raises(RecipeError, match="no split 'test'"):
        r.split("test")


def test_stride_sampling_defaults():
    r = load_recipe(_base(sampling={"mode": "stride"}, frames=3))
    assert (r.sampling.stride, r.sampling.time_stride) == (16, 3)
    r = load_recipe(
        _base(
            sampling={"mode": "stride", "stride": 8, "time_stride": 2},
            splits={"train": {"start": "2020-01-01", "end": "2020-01-02"}},
        )
    )
    assert r.split("train").samples is None and r.sampling.stride == 8


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        load_recipe(p)
    p.write_text("a: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)


def test_spatial_split_with_disjoint_regions_is_accepted_and_overlap_refused():
    from climdown.data.recipe import load_recipe

    day = {"start": "2020-06-01", "end": "2020-06-02"}
    base = {
        "name": "spatial",
        "source": "sample:global",
        "variable": "tcwv",
        "factor": 4,
        "patch": 32,
        "sampling": {"mode": "stride", "stride": 8},
        "output": "x.zarr",
    }
    ok = {
        **base,
        "splits": {
            "train": {
                **day,
                "region": {"lat_min": -89, "lat_max": 90, "lon_min": 0, "lon_max": 191.9},
            },
            "val": {
                **day,
                "region": {"lat_min": -89, "lat_max": 90, "lon_min": 192, "lon_max": 359},
            },
        },
    }
    r = load_recipe(ok)
    assert r.split("val").region.lon_min == 192
    assert r.to_dict()["splits"]["train"]["region"]["lon_max"] == 191.9
    bad = {
        **ok,
        "splits": {
            **ok["splits"],
            "val": {
                **day,
                "region": {"lat_min": -89, "lat_max": 90, "lon_min": 150, "lon_max": 359},
            },
        },
    }
    with pytest.raises(RecipeError, match="overlap in time"):
        load_recipe(bad)
    # regions across the date line are compared on the circle
    wrap = {
        **ok,
        "splits": {
            "train": {
                **day,
                "region": {"lat_min": -89, "lat_max": 90, "lon_min": 300, "lon_max": 360},
            },
            "val": {
                **day,
                "region": {"lat_min": -89, "lat_max": 90, "lon_min": -30, "lon_max": 10},
            },
        },
    }
    with pytest.raises(RecipeError, match="overlap in time"):
        load_recipe(wrap)


# ---------------------------------------------------------------------------------------
# dataclasses made directly validate themselves
# ---------------------------------------------------------------------------------------
def _direct(**over: object) -> Recipe:
    fields = {
        "name": "direct",
        "source": "synthetic",
        "factor": 4,
        "patch": 16,
        "splits": (
            Split("train", pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02"), 8),
            Split("val", pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03"), 4),
        ),
        "output": "direct.zarr",
    }
    fields.update(over)
    return Recipe(**fields)


def test_a_recipe_made_directly_equals_the_loaded_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    direct = _direct(splits=tuple(reversed(_direct().splits)))  # put back in store order
    loaded = load_recipe(_base(name="direct", output="direct.zarr"))
    assert direct == loaded and direct.hash == loaded.hash
    assert direct.split_names == ("train", "val") and direct.output == tmp_path / "direct.zarr"
    # defaults filled in as load_recipe does: strides from patch and frames, times read
    r = _direct(sampling=Sampling(mode="stride"), frames=3)
    assert (r.sampling.stride, r.sampling.time_stride) == (16, 3)
    assert TimeRange("2020-01-01", "2020-01-02T00:00+01:00").end == pd.Timestamp("2020-01-01T23")
    assert Normalisation(scale=2).scale == 2.0 and isinstance(Normalisation(2).scale, float)


def test_region_is_a_grid_box_with_the_recipe_rules():
    r = Region(-20, 20, 170, 200)
    assert isinstance(r, Box) and r.as_tuple() == (-20.0, 20.0, 170.0, 200.0)
    rows, cols = r.indices(np.arange(30.0, -31.0, -10.0), np.arange(-180.0, 180.0, 10.0))
    assert rows.tolist() == [1, 2, 3, 4, 5] and cols.size == 4  # 170, 180, 190, 200 east
    with pytest.raises(RecipeError, match="splits.val.region longitudes"):
        Region(0, 10, 200, 170, where="splits.val.region")  # fine for a Box, not for a recipe
    assert Box(0, 10, 200, 170).lon_span == 330.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _direct(factor=0), "factor must be an integer >= 2"),
        (lambda: _direct(factor=3), "patch 16 is not divisible by factor 3"),
        (lambda: _direct(frames=1.5), "frames must be an integer >= 1"),
        (lambda: _direct(chunks=0), "chunks must be an integer >= 1"),
        (lambda: _direct(name=""), "name must be a non-empty string"),
        (lambda: _direct(variable=None), "variable must be a variable name"),
        (lambda: _direct(source="missing.nc"), "no such file"),
        (lambda: _direct(output=""), "output must be a path"),
        (lambda: _direct(region={"lat_min": 0}), "region must be a Region or None"),
        (lambda: _direct(time=("2020-01-01", "2020-01-03")), "time must be a TimeRange"),
        (lambda: _direct(sampling=None), "sampling must be a Sampling, got None"),
        (lambda: _direct(splits=_direct().splits[1:]), "splits needs a 'train' split"),
        (lambda: _direct(splits=_direct().splits[:1] * 2), "split names must be unique"),
        (lambda: _direct(splits={"train": 1}), "splits must be a sequence of Split"),
        (
            lambda: _direct(time=TimeRange("2020-01-01", "2020-01-02")),
            "splits.val .* lies outside time",
        ),
        (
            lambda: _direct(splits=(Split("train", "2020-01-01", "2020-01-02"),)),
            "splits.train.samples is required with sampling mode 'random'",
        ),
        (
            lambda: _direct(
                splits=(
                    Split("train", "2020-01-01", "2020-01-03", 8),
                    Split("val", "2020-01-02", "2020-01-04", 8),
                )
            ),
            "overlap in time",
        ),
        (
            lambda: _direct(sampling=Sampling(mode="stride", stride=6)),
            "sampling.stride 6 is not a multiple of factor 4",
        ),
        (lambda: Region(10, 0, 0, 10), "region latitudes must satisfy"),
        (lambda: Region(0, 10, -200, 10), "region longitudes"),
        (lambda: Region(0, 10, 0, "east"), "region.lon_max must be a number in degrees"),
        (lambda: TimeRange("2020-01-02", "2020-01-01"), "time: start .* must be before end"),
        (lambda: TimeRange("2020-01-01", 5), "time.end must be a date or time"),
        (lambda: Split("training", "2020-01-01", "2020-01-02"), "split name must be one of"),
        (
            lambda: Split("val", "2020-01-01", "2020-01-02", 0),
            "splits.val.samples must be an integer >= 1",
        ),
        (
            lambda: Split("val", "2020-01-01", "2020-01-02", 1, Box(0, 1, 0, 1)),
            "splits.val.region must be a Region",
        ),
        (lambda: Sampling(mode="grid"), "'random' or 'stride'"),
        (lambda: Sampling(seed=-1), "sampling.seed must be an integer >= 0"),
        (lambda: Sampling(stride=8), "only apply to mode: stride"),
        (lambda: Sampling(mode="stride", time_stride=0), "sampling.time_stride must be an"),
        (lambda: Normalisation(scale="median"), "normalisation.scale"),
        (lambda: Normalisation(scale=float("inf")), "positive number"),
        (lambda: Normalisation(scale=True), "positive number"),
    ],
)
def test_dataclasses_made_directly_refuse_bad_values(make, match):
    with pytest.raises(RecipeError, match=match):
        make()
