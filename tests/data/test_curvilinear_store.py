"""Stores from curvilinear sources (issue 16): index-window patches, LR by the sphere's areas,
the domain kept once per split, training on the true areas, downscaling that conserves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import climdown
from climdown.data import store as store_mod
from climdown.data.dataset import PatchDataset
from climdown.data.recipe import CURVILINEAR_STORE_FORMAT, STORE_FORMAT, load_recipe
from climdown.data.store import build_store, open_store, store_info, up_to_date
from climdown.errors import CoordinateError, GridShapeError, RecipeError, StoreError
from climdown.grid import CurvilinearGrid, coarsen, grid_of
from climdown.testing import lambert_conformal_field, rotated_pole_field

SPLITS = {
    "train": {"start": "2020-01-01", "end": "2020-01-01T16:00", "samples": 8},
    "val": {"start": "2020-01-01T16:00", "end": "2020-01-02", "samples": 4},
}


def _recipe(source: Path, out: Path, **over: object):
    d = {
        "name": "regional",
        "source": str(source),
        "variable": "tcw",
        "factor": 4,
        "patch": 16,
        "splits": SPLITS,
        "chunks": 4,
        "output": str(out),
    }
    d.update(over)
    return load_recipe(d)


def _cordex_like(n: int = 32, ntime: int = 24) -> xr.Dataset:
    """A rotated-pole field as CORDEX files hold it: rlat/rlon, the grid mapping a data
    variable, no 2-D latitude/longitude."""
    ds = rotated_pole_field(n, n, ntime, seed=1)
    return ds.drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"]).reset_coords("rotated_pole")


@pytest.fixture(scope="module")
def lambert(tmp_path_factory):
    """A Lambert-conformal netCDF source (32 x 32 cells of 12 km) and its store."""
    pytest.importorskip("pyproj")
    root = tmp_path_factory.mktemp("curvilinear")
    lambert_conformal_field(32, 32, ntime=24, seed=2).to_netcdf(root / "lcc.nc")
    return root / "lcc.nc", build_store(_recipe(root / "lcc.nc", root / "lcc.zarr"))


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    """A rotated-pole zarr source with only rlat/rlon (no pyproj needed) and its store."""
    root = tmp_path_factory.mktemp("curvilinear")
    _cordex_like().chunk({"time": 1}).to_zarr(root / "rp.zarr", zarr_format=2)
    return root / "rp.zarr", build_store(_recipe(root / "rp.zarr", root / "rp_store.zarr"))


@pytest.mark.parametrize("which", ["lambert", "rotated"])
def test_patches_are_index_windows_with_the_spheres_areas(which, request) -> None:
    source, path = request.getfixturevalue(which)
    src = xr.open_dataset(source, engine="zarr" if which == "rotated" else None)
    grid = grid_of(src)
    info = store_info(path)
    assert info["climdown_store_format"] == CURVILINEAR_STORE_FORMAT
    assert info["grid"] == "curvilinear" and info["domain_shape"] == [32, 32]
    assert info["grid_mapping"]["name"] == ("rotated_pole" if which == "rotated" else "crs")
    assert info["orientation"] == grid.orientation.as_dict()
    ds = open_store(path, "train").load()
    # the domain's cells once per split: the very areas grid.py gives the source
    np.testing.assert_array_equal(ds["area"].values, grid.area)
    np.testing.assert_array_equal(ds["lat_c"].values, grid.lat_c)
    coarse = src.climdown.coarsen(4)["tcw"].values  # the accessor's coarsening of the source
    times = src["time"].values
    for i in range(ds.sizes["sample"]):
        y, x = int(ds.y0[i]), int(ds.x0[i])
        assert y % 4 == 0 and x % 4 == 0  # every LR patch lies on one coarse grid
        t = int(np.flatnonzero(times == ds.time.values[i, 0])[0])
        np.testing.assert_array_equal(
            ds.hr.values[i, 0], src["tcw"].values[t, y : y + 16, x : x + 16]
        )
        area = grid.area[y : y + 16, x : x + 16]
        want = coarsen(ds.hr.values[i].astype(np.float64), area, 4)
        np.testing.assert_allclose(ds.lr.values[i], want, rtol=1e-6)
        np.testing.assert_allclose(
            ds.lr.values[i, 0], coarse[t, y // 4 : y // 4 + 4, x // 4 : x // 4 + 4], rtol=1e-6
        )


def test_dataset_gives_each_patch_its_own_cells(lambert) -> None:
    _, path = lambert
    data = PatchDataset(path, "train")
    assert data.curvilinear
    areas = []
    for i in range(len(data)):
        item, g = data[i], data.grid(i)
        assert isinstance(g, CurvilinearGrid) and g.shape == (16, 16)
        np.testing.assert_allclose(item["area"].double().numpy(), data.area(i), rtol=1e-7)
        np.testing.assert_array_equal(g.area, data.area(i))
        # LR is the area-weighted coarsening of HR with exactly these areas
        lr = coarsen(item["hr"][:, 0].double().numpy(), data.area(i), 4)
        np.testing.assert_allclose(item["lr"][:, 0].numpy(), lr, rtol=1e-6)
        areas.append(data.area(i))
    # contrast: the areas are the sphere's, not one number per patch (12 km cells on a conic
    # projection shrink away from the standard parallels)
    assert np.ptp(areas[0]) > 0 and not all(np.array_equal(areas[0], a) for a in areas)
    with pytest.raises(StoreError, match=r"curvilinear source.*dataset\.grid\(i\)"):
        data.lat  # noqa: B018


def test_rerun_is_a_noop_and_an_older_reader_refuses(lambert, monkeypatch) -> None:
    source, path = lambert
    recipe = _recipe(source, path)
    assert up_to_date(recipe)
    before = (path / "zarr.json").stat().st_mtime_ns
    assert build_store(recipe) == path
    assert (path / "zarr.json").stat().st_mtime_ns == before
    monkeypatch.setattr(store_mod, "_READS", (STORE_FORMAT,))  # a climdown before this layout
    with pytest.raises(StoreError, match="layout version 2"):
        open_store(path, "train")


def _train(path: Path, out: Path) -> dict:
    from climdown.train import train

    return train(
        path,
        out=out,
        model="cnn",
        constraint="softmax",
        epochs=1,
        batch_size=1,
        progress=False,
        resume=False,
        model_options={"width": 8, "blocks": 1},
    )


def test_trained_checkpoint_downscales_a_curvilinear_field_exactly(lambert, tmp_path) -> None:
    result = _train(lambert[1], tmp_path / "run")
    truth = lambert_conformal_field(32, 32, ntime=2, seed=7)
    lr = truth.climdown.coarsen(4)
    hr = lr.climdown.downscale(model=result["best"], progress=False)
    assert hr["tcw"].shape == (2, 32, 32) and hr["tcw"].attrs["grid_mapping"] == "crs"
    report = lr.climdown.assert_conserves(hr, rtol=1e-6)
    assert float(abs(report["mass_rel_diff"]).max()) < 1e-6


# ---------------------------------------------------------------------------------------
# bad input: the error names the problem and the fix
# ---------------------------------------------------------------------------------------
def test_a_region_does_not_cut_a_curvilinear_source(tmp_path) -> None:
    _cordex_like(16, 24).to_netcdf(tmp_path / "rp.nc")
    region = {"lat_min": 40, "lat_max": 60, "lon_min": 0, "lon_max": 30}
    with pytest.raises(RecipeError, match=r"region: the source is a curvilinear grid.*isel"):
        build_store(_recipe(tmp_path / "rp.nc", tmp_path / "a.zarr", region=region))
    splits = {**SPLITS, "val": {**SPLITS["val"], "region": region}}
    with pytest.raises(RecipeError, match=r"splits\.val\.region: .*split by time"):
        build_store(_recipe(tmp_path / "rp.nc", tmp_path / "b.zarr", splits=splits))
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_domain_smaller_than_a_patch(tmp_path) -> None:
    _cordex_like(12, 24).to_netcdf(tmp_path / "rp.nc")
    with pytest.raises(GridShapeError, match=r"12 x 12 cells, fewer than one 16 x 16.*lower patch"):
        build_store(_recipe(tmp_path / "rp.nc", tmp_path / "s.zarr"))


def test_missing_coordinates_and_extra_dims(tmp_path) -> None:
    ds = _cordex_like(16, 24)
    # rows and columns without latitude/longitude or a grid mapping: nothing places the cells
    ds.drop_vars("rotated_pole").to_netcdf(tmp_path / "bare.nc")
    with pytest.raises(CoordinateError, match="needs 2-D latitude/longitude coordinates"):
        build_store(_recipe(tmp_path / "bare.nc", tmp_path / "a.zarr"))
    two = xr.concat([ds["tcw"], ds["tcw"]], dim="member").transpose("time", "member", ...)
    ds.assign(tcw=two).to_netcdf(tmp_path / "members.nc")
    with pytest.raises(RecipeError, match=r"expected \(time, rlat, rlon\).*select one"):
        build_store(_recipe(tmp_path / "members.nc", tmp_path / "b.zarr"))


def test_regular_stores_keep_their_layout_version() -> None:
    # regular stores (and the recipe hashes of the study) are what they were
    assert STORE_FORMAT == 1 and CURVILINEAR_STORE_FORMAT == 2
    assert climdown.data.store._READS == (1, 2)


def test_concat_stores_refuses_a_curvilinear_store(lambert, tmp_path) -> None:
    from climdown.data.store import concat_stores

    _, path = lambert
    with pytest.raises(StoreError, match="curvilinear source"):
        concat_stores([path, path], tmp_path / "pooled.zarr")
    assert not (tmp_path / "pooled.zarr").exists()
