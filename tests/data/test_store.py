"""Stores: layout, LR = area-weighted coarsening of HR, no leakage, no-op re-runs, atomic builds, bad data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

import climdown
from climdown.data import store as store_mod
from climdown.data.recipe import load_recipe
from climdown.data.store import (
    build_store,
    is_complete,
    open_store,
    partial_path,
    split_arrays,
    store_info,
)
from climdown.data.synthetic import synthetic_tcw
from climdown.errors import DataValueError, GridShapeError, RecipeError, StoreError, UnitsError
from climdown.grid import Grid, coarsen
from climdown.study import read_recipe, recipes_dir

RECIPES = recipes_dir()


def _tiny(out: Path, **over: object):
    """The shipped tiny recipe with its output (and any key) replaced."""
    d = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    d.update(output=str(out), **over)
    return load_recipe(d)


def _area_coarsen(ds: xr.Dataset, factor: int) -> np.ndarray:
    hr = ds.hr.values.astype(np.float64)
    out = np.empty(ds.lr.shape)
    for i in range(ds.sizes["sample"]):
        area = Grid(ds.lat.values[i], ds.lon.values[i]).area
        out[i] = coarsen(hr[i], area, factor)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "tiny.zarr"
    return build_store(_tiny(path))


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    """Sequences of 3 frames, splits 12 h long: a sequence must not straddle a boundary."""
    path = tmp_path_factory.mktemp("stores") / "seq.zarr"
    splits = {
        "train": {"start": "2020-01-01", "end": "2020-01-01T12:00", "samples": 24},
        "val": {"start": "2020-01-01T12:00", "end": "2020-01-02", "samples": 24},
    }
    return build_store(_tiny(path, frames=3, splits=splits, chunks=10))


def _source_nc(path: Path, *, lon0: float = 0.0, nan: bool = False, units: str = "kg m-2") -> Path:
    """A hand-made 1-degree ERA5-like netCDF (descending lat, lon from ``lon0``)."""
    ds = synthetic_tcw(12, resolution=1.0, region=(-40, 40, 0, 359), seed=5)
    ds = ds.assign_coords(lon=(ds.lon - lon0) % 360.0 + lon0).sortby("lon")
    if nan:
        ds["tcw"][3, 8:72, :] = np.nan  # every 16-row patch of this hour meets it
    ds.tcw.attrs["units"] = units
    ds = ds.rename(lat="latitude", lon="longitude")
    ds.to_netcdf(path)
    return path


# ---------------------------------------------------------------------------------------
# layout and content
# ---------------------------------------------------------------------------------------
def test_layout_shapes_dims_and_units(tiny):
    r = _tiny(tiny)
    for split in ("train", "val", "test"):
        ds = xr.open_zarr(tiny, group=split)  # the documented way, no warning
        n = r.split(split).samples
        assert ds.hr.dims == ("sample", "frame", "y", "x")
        assert ds.lr.dims == ("sample", "frame", "y_lr", "x_lr")
        assert ds.hr.shape == (n, 1, 16, 16) and ds.lr.shape == (n, 1, 4, 4)
        assert ds.hr.dtype == np.float32 and ds.lr.dtype == np.float32
        assert ds.hr.attrs["units"] == "kg m-2" and ds.lr.attrs["units"] == "kg m-2"
        assert ds.lat.dims == ("sample", "y") and ds.lon.dims == ("sample", "x")
        assert ds.lat_lr.dims == ("sample", "y_lr") and ds.lon_lr.dims == ("sample", "x_lr")
        assert ds.time.dims == ("sample", "frame") and ds.time.dtype.kind == "M"
        assert ds.attrs["split"] == split and ds.attrs["factor"] == 4
        assert float(ds.hr.min()) > 0


def test_lr_is_the_area_weighted_coarsening_of_hr(tiny):
    ds = open_store(tiny, "train").load()
    lr = ds.lr.values.astype(np.float64)
    assert np.abs(_area_coarsen(ds, 4) - lr).max() <= 1e-5
    # contrast: a plain block mean is not what the store holds (weights vary with latitude)
    plain = ds.hr.values.reshape(-1, 1, 4, 4, 4, 4).mean(axis=(3, 5))
    assert np.abs(plain - lr).max() > 1e-3


def test_lr_coordinates_come_from_grid_coarsen(tiny):
    ds = open_store(tiny, "val").load()
    for i in range(ds.sizes["sample"]):
        coarse = Grid(ds.lat.values[i], ds.lon.values[i]).coarsen(4)
        np.testing.assert_allclose(ds.lat_lr.values[i], coarse.lat, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ds.lon_lr.values[i], coarse.lon, rtol=0, atol=1e-12)
        assert np.all(np.diff(ds.lat.values[i]) < 0)  # the source's (descending) order kept


def test_hr_patches_are_the_source_values(tiny):
    ds = open_store(tiny, "test").load()
    for i in (0, ds.sizes["sample"] - 1):
        t = pd.Timestamp(ds.time.values[i, 0])
        src = synthetic_tcw([t], resolution=1.0, seed=0).tcw[0]
        ref = src.sel(lat=ds.lat.values[i], lon=ds.lon.values[i]).values
        np.testing.assert_array_equal(ds.hr.values[i, 0], ref)


def test_root_attributes_and_stats(tiny):
    info = store_info(tiny)
    r = _tiny(tiny)
    assert info["complete"] is True
    assert info["units"] == "kg m-2" and info["variable"] == "tcw"
    assert (info["factor"], info["patch"], info["patch_lr"], info["frames"]) == (4, 16, 4, 1)
    assert info["recipe_hash"] == r.hash and "name: tiny" in info["recipe"]
    assert info["climdown_version"] == climdown.__version__
    assert "synthetic" in info["source"]
    assert info["samples"] == {"train": 32, "val": 16, "test": 16}
    hr = open_store(tiny, "train").hr.values.astype(np.float64)
    st = info["normalisation"]
    assert st["mean"] == pytest.approx(hr.mean(), rel=1e-12)
    assert st["std"] == pytest.approx(hr.std(), rel=1e-9)
    assert (st["min"], st["max"]) == (hr.min(), hr.max())
    assert st["scale"] == st["max"] and st["scale_method"] == "max"
    # the stats are of train only: val's max differs from train's
    assert float(open_store(tiny, "val").hr.max()) != st["max"]


def test_splits_do_not_leak_in_time(tiny):
    r = _tiny(tiny)
    for split in r.splits:
        t = open_store(tiny, split.name).time.values
        assert t.min() >= split.start.to_datetime64() and t.max() < split.end.to_datetime64()


def test_sequences_are_consecutive_and_never_straddle_a_split(seq):
    for split, (lo, hi) in {
        "train": ("2020-01-01", "2020-01-01T12:00"),
        "val": ("2020-01-01T12:00", "2020-01-02"),
    }.items():
        ds = open_store(seq, split).load()
        assert ds.hr.shape == (24, 3, 16, 16) and ds.lr.shape == (24, 3, 4, 4)
        steps = np.diff(ds.time.values, axis=1)
        assert np.all(steps == np.timedelta64(1, "h"))
        assert ds.time.values.min() >= np.datetime64(lo)
        assert ds.time.values.max() < np.datetime64(hi)
        assert np.abs(_area_coarsen(ds, 4) - ds.lr.values).max() <= 1e-5


def test_sampling_is_seeded(tmp_path):
    a = build_store(_tiny(tmp_path / "a.zarr"))
    b = build_store(_tiny(tmp_path / "b.zarr"))
    c = build_store(_tiny(tmp_path / "c.zarr", sampling={"mode": "random", "seed": 1}))
    ta, tb, tc = (open_store(p, "train").load() for p in (a, b, c))
    np.testing.assert_array_equal(ta.hr.values, tb.hr.values)
    assert not np.array_equal(ta.lat.values, tc.lat.values) or not np.array_equal(
        ta.time.values, tc.time.values
    )


def test_stride_sampling_takes_every_lattice_position(tmp_path):
    splits = {"train": {"start": "2020-01-01", "end": "2020-01-01T02:00"}}
    region = {"lat_min": 0.0, "lat_max": 31.0, "lon_min": 0.0, "lon_max": 31.0}
    r = _tiny(
        tmp_path / "s.zarr",
        splits=splits,
        region=region,
        sampling={"mode": "stride", "stride": 16},
    )
    ds = open_store(build_store(r), "train").load()
    # 31 rows x 32 cols (centres 0.5..30.5 and 0..31): 1 x 2 positions, 2 hours
    assert ds.sizes["sample"] == 4
    assert sorted({float(v) for v in ds.lon.values[:, 0]}) == [0.0, 16.0]


def test_build_reads_only_the_source_steps_it_samples(tmp_path, monkeypatch):
    """Lazy build: of 36 source hours only those of the 6 samples are ever computed."""
    computed: list[int] = []
    real_open = store_mod._open_source

    def recording_open(recipe):
        da, grid = real_open(recipe)

        def record(block, block_info=None):
            computed.append(block_info[0]["chunk-location"][0])
            return block

        return da.copy(data=da.data.map_blocks(record, dtype=da.dtype)), grid

    monkeypatch.setattr(store_mod, "_open_source", recording_open)
    splits = {
        "train": {"start": "2020-01-01", "end": "2020-01-02", "samples": 4},
        "val": {"start": "2020-01-02", "end": "2020-01-02T12:00", "samples": 2},
    }
    path = build_store(_tiny(tmp_path / "lazy.zarr", splits=splits, chunks=2))
    used = set()
    for split in ("train", "val"):
        hours = open_store(path, split).time.values[:, 0] - np.datetime64("2020-01-01")
        used |= {int(h // np.timedelta64(1, "h")) for h in hours}
    assert set(computed) == used and len(used) <= 6
    # chunks are time-sorted: an hour is computed twice at most where two chunks meet
    assert len(computed) <= len(used) + 1


# ---------------------------------------------------------------------------------------
# re-runs, overwrite, interrupted builds
# ---------------------------------------------------------------------------------------
def test_second_run_is_a_fast_no_op(tiny, monkeypatch):
    stamp = (tiny / "zarr.json").stat().st_mtime_ns
    monkeypatch.setattr(store_mod, "_open_source", _explode)  # the source is not even opened
    t0 = time.perf_counter()
    assert build_store(_tiny(tiny)) == tiny
    assert time.perf_counter() - t0 < 1.0
    assert (tiny / "zarr.json").stat().st_mtime_ns == stamp


def _explode(*args, **kwargs):
    raise AssertionError("the source must not be opened")


def test_other_recipe_at_same_path_needs_overwrite(tmp_path):
    path = build_store(_tiny(tmp_path / "o.zarr"))
    other = _tiny(path, factor=2)
    with pytest.raises(StoreError, match="different recipe.*--overwrite"):
        build_store(other)
    assert store_info(path)["factor"] == 4
    build_store(other, overwrite=True)
    assert store_info(path)["factor"] == 2 and store_info(path)["recipe_hash"] == other.hash
    assert not partial_path(path).exists()
    assert open_store(path, "train").lr.shape == (32, 1, 8, 8)


def test_non_store_at_output_is_not_replaced_silently(tmp_path):
    path = tmp_path / "taken.zarr"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not a climdown store; refusing"):
            build_store(_tiny(path), overwrite=overwrite)
    assert (path / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty.zarr"
    empty.mkdir()  # an empty directory is fair game
    with pytest.raises(StoreError, match="not a complete climdown store"):
        build_store(_tiny(empty))
    assert is_complete(build_store(_tiny(empty), overwrite=True))


def test_killed_build_leaves_no_complete_store_and_next_run_finishes(tmp_path, monkeypatch):
    path = tmp_path / "k.zarr"
    real = store_mod._write_chunk
    calls = []

    def dies_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        real(*args, **kwargs)

    monkeypatch.setattr(store_mod, "_write_chunk", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_store(_tiny(path))
    assert not path.exists()
    tmp = partial_path(path)
    assert tmp.exists() and not is_complete(tmp)
    with pytest.raises(StoreError, match="incomplete"):
        open_store(tmp, "train")
    with pytest.raises(StoreError, match="no store"):
        open_store(path, "train")

    monkeypatch.setattr(store_mod, "_write_chunk", real)
    assert build_store(_tiny(path)) == path
    assert is_complete(path) and not tmp.exists()
    ds = open_store(path, "train").load()
    assert np.abs(_area_coarsen(ds, 4) - ds.lr.values).max() <= 1e-5


def test_killed_overwrite_keeps_the_old_store(tmp_path, monkeypatch):
    path = build_store(_tiny(tmp_path / "w.zarr"))
    old_hash = store_info(path)["recipe_hash"]

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(store_mod, "_write_chunk", dies)
    with pytest.raises(KeyboardInterrupt):
        build_store(_tiny(path, factor=2), overwrite=True)
    assert is_complete(path) and store_info(path)["recipe_hash"] == old_hash


# ---------------------------------------------------------------------------------------
# hand-made sources: longitude conventions, units, bad data
# ---------------------------------------------------------------------------------------
def _nc_recipe(src: Path, out: Path, **over: object):
    d = {
        "source": str(src),
        "factor": 4,
        "patch": 16,
        "region": {"lat_min": -20.0, "lat_max": 20.0, "lon_min": 170.0, "lon_max": 200.0},
        "splits": {
            "train": {"start": "2020-01-01", "end": "2020-01-01T08:00", "samples": 6},
            "val": {"start": "2020-01-01T08:00", "end": "2020-01-01T12:00", "samples": 3},
        },
        "chunks": 4,
        "output": str(out),
    }
    d.update(over)
    return load_recipe(d)


def test_region_across_the_date_line_with_minus180_longitudes(tmp_path):
    src = _source_nc(tmp_path / "src.nc", lon0=-180.0)
    path = build_store(_nc_recipe(src, tmp_path / "d.zarr"))
    ds = open_store(path, "train").load()
    lon = ds.lon.values
    assert lon.min() >= -180.0 and lon.max() <= 180.0
    assert np.any(lon < 0) and np.any(lon > 0)  # some patches cross the date line
    steps = (np.diff(lon, axis=1) + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(steps, 1.0)  # contiguous eastward patches
    assert np.abs(_area_coarsen(ds, 4) - ds.lr.values).max() <= 1e-5
    assert str(src) in store_info(path)["source"]


def test_water_depth_in_metres_is_converted_to_kg_m2(tmp_path):
    kg = build_store(_nc_recipe(_source_nc(tmp_path / "kg.nc"), tmp_path / "kg.zarr"))
    m = _source_nc(tmp_path / "m.nc", units="m")  # same numbers, labelled metres of water
    metres = build_store(_nc_recipe(m, tmp_path / "m.zarr"))
    a, b = open_store(kg, "train").hr.values, open_store(metres, "train").hr.values
    np.testing.assert_allclose(b, 1000.0 * a, rtol=1e-6)
    assert store_info(metres)["units"] == "kg m-2"


def test_wrong_units_are_refused(tmp_path):
    src = _source_nc(tmp_path / "k.nc", units="K")
    with pytest.raises(UnitsError, match="'K'"):
        build_store(_nc_recipe(src, tmp_path / "k.zarr"))
    assert not (tmp_path / "k.zarr").exists()


def test_nans_in_patches_name_the_split_and_count(tmp_path):
    src = _source_nc(tmp_path / "nan.nc", nan=True)
    r = _nc_recipe(
        src,
        tmp_path / "nan.zarr",
        region={"lat_min": -40.0, "lat_max": 40.0, "lon_min": 0.0, "lon_max": 359.0},
        splits={"train": {"start": "2020-01-01T03:00", "end": "2020-01-01T04:00", "samples": 4}},
    )
    with pytest.raises(DataValueError, match=r"split 'train': \d+ NaN/inf values.*region"):
        build_store(r)
    assert not r.output.exists() and not partial_path(r.output).exists()


def test_real_era5_sample_source(tmp_path):
    """The packaged ERA5 Rhine file (int16-packed, kg m**-2, descending lat) builds a store."""
    r = load_recipe(
        {
            "source": "sample:rhine",
            "factor": 4,
            "patch": 32,
            "splits": {
                "train": {"start": "2020-01-01", "end": "2020-01-01T16:00", "samples": 12},
                "val": {"start": "2020-01-01T16:00", "end": "2020-01-02", "samples": 4},
            },
            "chunks": 8,
            "output": str(tmp_path / "rhine.zarr"),
        }
    )
    ds = open_store(build_store(r), "train").load()
    assert ds.hr.shape == (12, 1, 32, 32) and ds.hr.dtype == np.float32
    assert 0.0 < float(ds.hr.min()) and float(ds.hr.max()) < 60.0  # winter TCW, kg m-2
    assert ds.lat.values.max() <= 55.0 and ds.lat.values.min() >= 45.0
    assert np.abs(_area_coarsen(ds, 4) - ds.lr.values).max() <= 1e-5


def test_region_smaller_than_a_patch(tmp_path):
    src = _source_nc(tmp_path / "s.nc")
    region = {"lat_min": 0.0, "lat_max": 10.0, "lon_min": 0.0, "lon_max": 40.0}
    with pytest.raises(GridShapeError, match="10 x 41 cells, fewer than one 16 x 16 patch"):
        build_store(_nc_recipe(src, tmp_path / "x.zarr", region=region))


def test_too_many_samples_or_no_data_fail_before_writing(tmp_path):
    src = _source_nc(tmp_path / "s.nc")
    r = _nc_recipe(
        src,
        tmp_path / "x.zarr",
        splits={"train": {"start": "2020-01-01", "end": "2020-01-01T08:00", "samples": 10_000}},
    )
    with pytest.raises(RecipeError, match="asks for 10000 samples but only"):
        build_store(r)
    r = _nc_recipe(
        src,
        tmp_path / "x.zarr",
        splits={"train": {"start": "2021-01-01", "end": "2021-01-02", "samples": 1}},
    )
    with pytest.raises(RecipeError, match="no time step"):
        build_store(r)
    r = _nc_recipe(
        src,
        tmp_path / "x.zarr",
        frames=3,
        splits={"train": {"start": "2020-01-01", "end": "2020-01-01T02:00", "samples": 1}},
    )
    with pytest.raises(RecipeError, match="too few for one sequence of 3"):
        build_store(r)
    assert not (tmp_path / "x.zarr").exists() and not partial_path(tmp_path / "x.zarr").exists()


def test_readers_refuse_missing_stores_and_splits(tiny, tmp_path):
    with pytest.raises(StoreError, match="no split 'test2'"):
        open_store(tiny, "test2")
    with pytest.raises(StoreError, match="no split"):
        split_arrays(tiny, "nope")
    with pytest.raises(StoreError, match="climdown build"):
        store_info(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a climdown store"):
        store_info(tmp_path / "empty")


@pytest.mark.slow
def test_tcw4_recipe_builds_in_under_two_minutes(tmp_path):
    r = load_recipe(RECIPES / "tcw4.yaml")
    r = load_recipe({**yaml.safe_load(r.text), "output": str(tmp_path / "tcw4.zarr")})
    t0 = time.perf_counter()
    path = build_store(r)
    elapsed = time.perf_counter() - t0
    assert elapsed < 120.0, f"tcw4 took {elapsed:.1f} s"
    train, val = open_store(path, "train").load(), open_store(path, "val").load()
    assert train.hr.shape == (1024, 1, 128, 128) and train.lr.shape == (1024, 1, 32, 32)
    assert val.hr.shape == (300, 1, 128, 128) and val.lr.shape == (300, 1, 32, 32)
    for ds in (train, val):
        assert np.abs(_area_coarsen(ds, 4) - ds.lr.values).max() <= 1e-5
    stamp = (path / "zarr.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    build_store(r)
    assert time.perf_counter() - t0 < 1.0
    assert (path / "zarr.json").stat().st_mtime_ns == stamp


def test_spatial_split_patches_stay_inside_their_regions(tmp_path):
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store, open_store

    path = build_store(load_recipe(read_recipe("era5-global-x4", stores=tmp_path)))
    bounds = {"train": (0.0, 191.9), "val": (192.0, 275.9), "test": (276.0, 359.9)}
    for split, (lo, hi) in bounds.items():
        ds = open_store(path, split)
        lon = ds["lon"].values
        assert lon.min() >= lo and lon.max() <= hi, split
        assert ds.sizes["sample"] > 0


# ---------------------------------------------------------------------------------------
# pooling stores (several sources or spacings in one training set)
# ---------------------------------------------------------------------------------------
def test_concat_stores_pools_train_and_keeps_the_first_stores_val_and_test(tmp_path, tiny):
    from climdown.data.dataset import PatchDataset
    from climdown.data.store import concat_stores

    src = _source_nc(tmp_path / "src.nc")
    other = build_store(_nc_recipe(src, tmp_path / "other.zarr"))
    a, b = store_info(tiny), store_info(other)
    assert (a["factor"], a["patch"]) == (b["factor"], b["patch"])
    out = concat_stores([tiny, other], tmp_path / "pooled.zarr")
    info = store_info(out)
    n_a, n_b = a["samples"]["train"], b["samples"]["train"]
    assert info["samples"] == {**a["samples"], "train": n_a + n_b}
    assert [p["train"] for p in info["pooled_from"]] == [n_a, n_b]
    assert info["name"] == "pooled" and info["recipe_hash"] not in (
        a["recipe_hash"],
        b["recipe_hash"],
    )
    assert open_store(out, "val").attrs["recipe_hash"] == info["recipe_hash"]
    pooled, first, second = (open_store(p, "train").load() for p in (out, tiny, other))
    np.testing.assert_array_equal(pooled.hr.values[:n_a], first.hr.values)
    np.testing.assert_array_equal(pooled.hr.values[n_a:], second.hr.values)
    np.testing.assert_array_equal(pooled.lat.values[n_a:], second.lat.values)  # own coords
    np.testing.assert_array_equal(pooled.time.values[n_a:], second.time.values)
    np.testing.assert_array_equal(  # val is the first store's
        open_store(out, "val").hr.values, open_store(tiny, "val").hr.values
    )
    # statistics over the pooled train HR, not the first store's
    hr = pooled.hr.values.astype(np.float64)
    norm = info["normalisation"]
    assert norm["max"] == pytest.approx(hr.max()) and norm["scale"] == pytest.approx(hr.max())
    assert norm["mean"] == pytest.approx(hr.mean()) and norm["std"] == pytest.approx(hr.std())
    assert norm["max"] != a["normalisation"]["max"] or norm["mean"] != a["normalisation"]["mean"]
    ds = PatchDataset(out, "train")  # the trainer reads it like any store
    assert len(ds) == n_a + n_b and ds[n_a]["area"].shape == (16, 16)
    assert split_arrays(out, "train")["hr"].chunks[0] == 1  # one zarr chunk per sample, as built
    assert not partial_path(out).exists()
    with pytest.raises(StoreError, match="overwrite=True"):
        concat_stores([tiny, other], out)
    assert concat_stores([other, tiny], out, overwrite=True) == out
    assert store_info(out)["pooled_from"][0]["train"] == n_b


def test_concat_stores_refuses_stores_that_do_not_pool(tmp_path, tiny):
    from climdown.data.store import concat_stores

    src = _source_nc(tmp_path / "src.nc")
    other = build_store(_nc_recipe(src, tmp_path / "f2.zarr", factor=2))
    with pytest.raises(StoreError, match="differ in factor"):
        concat_stores([tiny, other], tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="at least two"):
        concat_stores([tiny], tmp_path / "x.zarr")
    with pytest.raises(StoreError, match="one of the stores"):
        concat_stores([tiny, tiny], tiny)
    with pytest.raises(StoreError, match="no store"):
        concat_stores([tiny, tmp_path / "missing.zarr"], tmp_path / "x.zarr")
    (tmp_path / "mine").mkdir()
    with pytest.raises(StoreError, match="not a climdown store"):
        concat_stores([tiny, tiny], tmp_path / "mine")
    assert not (tmp_path / "x.zarr").exists()
