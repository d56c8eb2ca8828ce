"""Tests of the sphere (climdown.grid): hand-computed areas, whole-sphere sums, conventions, errors."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr

from climdown.errors import CoordinateError, GridShapeError
from climdown.grid import (
    EARTH_RADIUS,
    ERA5_ORIENTATION,
    Box,
    Grid,
    Orientation,
    add_cf_bounds,
    block_expand,
    block_sum,
    block_weights,
    bounds_from_cf,
    cell_area,
    check_factor,
    coarsen,
    coarsen_dataarray,
    find_latlon,
    grid_of,
    lat_bounds,
    lon_bounds,
    mass_dataarray,
    total_mass,
    wrap_lon,
)
from climdown.testing import raise_if_dask_computes

R = 6_371_000.0
SPHERE = 4.0 * np.pi * R**2


def hand_area(lat1: float, lat2: float, dlon: float) -> float:
    """R^2 dlon (sin lat2 - sin lat1), written out independently of grid.py."""
    return R**2 * np.deg2rad(dlon) * (np.sin(np.deg2rad(lat2)) - np.sin(np.deg2rad(lat1)))


# ---------------------------------------------------------------------------------------
# Hand values
# ---------------------------------------------------------------------------------------
def test_radius_is_6371_km():
    assert EARTH_RADIUS == R


@pytest.mark.parametrize(
    ("centre", "lat1", "lat2"),
    [(0.5, 0.0, 1.0), (-0.5, -1.0, 0.0), (60.5, 60.0, 61.0), (-60.5, -61.0, -60.0)],
)
def test_one_degree_cell_area_matches_formula(centre, lat1, lat2):
    # A 3 x 3 grid of 1 deg cells whose middle cell spans [lat1, lat2] x [10, 11].
    g = Grid([centre - 1, centre, centre + 1], [9.5, 10.5, 11.5])
    expected = hand_area(lat1, lat2, 1.0)
    np.testing.assert_allclose(g.area[1, 1], expected, rtol=1e-13)
    np.testing.assert_allclose(g.area[1], expected, rtol=1e-13)  # same along a row


def test_hand_values_in_km2():
    # Known numbers: a 1x1 deg cell is ~12 364 km^2 at the equator and about half at 60N.
    eq = Grid([-0.5, 0.5], [0.5, 1.5]).area[1, 0]
    n60 = Grid([60.5, 61.5], [0.5, 1.5]).area[0, 0]
    assert eq / 1e6 == pytest.approx(12363.69, rel=1e-5)
    assert n60 / eq == pytest.approx(
        (np.sin(np.deg2rad(61)) - np.sin(np.deg2rad(60))) / np.sin(np.deg2rad(1)), rel=1e-12
    )
    assert n60 / eq == pytest.approx(np.cos(np.deg2rad(60.5)), rel=1e-4)  # ~0.492


def test_cell_area_direct():
    a = cell_area([0.0, 1.0, 2.0], [0.0, 1.0])
    assert a.shape == (2, 1)
    assert a.dtype == np.float64
    np.testing.assert_allclose(a[:, 0], [hand_area(0, 1, 1), hand_area(1, 2, 1)], rtol=1e-13)
    # bounds given in descending order give the same (positive) areas
    np.testing.assert_allclose(cell_area([2.0, 1.0, 0.0], [1.0, 0.0]), a[::-1], rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Whole sphere
# ---------------------------------------------------------------------------------------
def test_global_quarter_degree_sums_to_sphere():
    lat = np.arange(89.875, -90.0, -0.25)
    lon = np.arange(0.0, 360.0, 0.25)
    g = Grid(lat, lon)
    assert g.shape == (720, 1440)
    assert lat[0] == 89.875 and lat[-1] == -89.875
    assert abs(g.area.sum() / SPHERE - 1.0) < 1e-9
    assert g.periodic
    assert np.all(g.area > 0)


def test_era5_721_rows_with_poles_sum_to_sphere():
    lat = np.linspace(90.0, -90.0, 721)
    lon = np.arange(0.0, 360.0, 0.25)
    g = Grid(lat, lon)
    assert abs(g.area.sum() / SPHERE - 1.0) < 1e-9
    # the pole rows are clipped caps of half height: [89.875, 90]
    assert g.lat_b[0] == 90.0 and g.lat_b[-1] == -90.0
    np.testing.assert_allclose(g.area[0, 0], hand_area(89.875, 90.0, 0.25), rtol=1e-9)
    np.testing.assert_allclose(g.area[-1], g.area[0], rtol=1e-9)


def test_one_and_half_degree_with_poles_sums_to_sphere():
    lat = np.linspace(-90.0, 90.0, 121)
    lon = np.arange(-180.0, 180.0, 1.5)
    g = Grid(lat, lon)
    assert g.shape == (121, 240)
    assert abs(g.area.sum() / SPHERE - 1.0) < 1e-9
    assert g.periodic


def test_float32_quarter_degree_coords_like_era5_files():
    # ERA5 netCDF stores lat/lon as float32; 0.25 is exact in binary.
    g = Grid(
        np.linspace(90, -90, 721).astype(np.float32), np.arange(0, 360, 0.25, dtype=np.float32)
    )
    assert g.periodic
    assert abs(g.area.sum() / SPHERE - 1.0) < 1e-9


@pytest.mark.parametrize("start", [0.0, -180.0])
def test_float32_tenth_degree_global_is_periodic(start):
    lon = (start + 0.1 * np.arange(3600)).astype(np.float32)
    assert Grid(np.array([-0.05, 0.05]), lon).periodic


# ---------------------------------------------------------------------------------------
# Conventions: latitude order, longitude convention, date line
# ---------------------------------------------------------------------------------------
def test_descending_latitude_gives_flipped_areas():
    lat = np.arange(-30.0, 61.0, 2.0)
    lon = np.arange(0.0, 20.0, 2.0)
    up = Grid(lat, lon)
    down = Grid(lat[::-1], lon)
    np.testing.assert_allclose(down.area, up.area[::-1], rtol=1e-14)
    np.testing.assert_allclose(down.lat_b, up.lat_b[::-1])
    assert np.all(np.diff(down.lat_b) < 0)


def test_0_360_and_minus180_180_give_same_areas():
    lat = np.arange(-88.75, 90.0, 2.5)
    a = Grid(lat, np.arange(0.0, 360.0, 2.5))
    b = Grid(lat, np.arange(-180.0, 180.0, 2.5))
    np.testing.assert_allclose(a.area, b.area, rtol=1e-12)
    assert a.periodic and b.periodic


def test_regional_grid_across_date_line():
    lon = np.concatenate([np.arange(170.5, 180.0, 1.0), np.arange(-179.5, -170.0, 1.0)])
    lat = np.arange(40.5, 50.0, 1.0)
    g = Grid(lat, lon)
    assert g.shape == (10, 20)
    assert not g.periodic
    # bounds are unwrapped: one monotonic run from 170 to 190
    np.testing.assert_allclose(g.lon_b, np.arange(170.0, 191.0, 1.0))
    # the same cells described on 0..360 have the same areas
    np.testing.assert_allclose(g.area, Grid(lat, lon % 360.0).area, rtol=1e-14)
    np.testing.assert_allclose(g.area[:, 0], [hand_area(la - 0.5, la + 0.5, 1.0) for la in lat])
    # coarse centres go back to the input convention, across the date line
    c = g.coarsen(2)
    np.testing.assert_allclose(c.lon, [171, 173, 175, 177, 179, -179, -177, -175, -173, -171])
    np.testing.assert_allclose(c.area.sum(), g.area.sum(), rtol=1e-14)


def test_regional_grid_across_greenwich_in_0_360():
    lon = np.concatenate([np.arange(350.5, 360.0, 1.0), np.arange(0.5, 10.0, 1.0)])
    g = Grid([0.5, 1.5, 2.5, 3.5], lon)
    np.testing.assert_allclose(g.lon_b, np.arange(350.0, 371.0, 1.0))
    assert not g.periodic
    assert np.all(g.coarsen(4).lon >= 0) and np.all(g.coarsen(4).lon < 360)


def test_periodic_flag():
    assert Grid([0.5, 1.5], np.arange(0.5, 360.0, 1.0)).periodic
    assert not Grid([0.5, 1.5], np.arange(0.5, 359.0, 1.0)).periodic
    assert not Grid([0.5, 1.5], np.arange(0.5, 10.0, 1.0)).periodic
    # the contrast: a duplicated wrap column (0 and 360 both present) is not a clean global grid
    assert not Grid([0.5, 1.5], np.arange(0.0, 361.0, 1.0)).periodic


def test_regional_edge_rows_are_not_pinned_to_the_poles():
    # the trap WB2 fell into: a regional grid's outer bounds are half a spacing, not +-90
    g = Grid(np.arange(50.0, 40.0, -1.0), np.arange(5.0, 10.0, 1.0))
    assert g.lat_b[0] == 50.5 and g.lat_b[-1] == 40.5
    np.testing.assert_allclose(g.area[0, 0], hand_area(49.5, 50.5, 1.0), rtol=1e-13)


def test_explicit_bounds_are_used():
    g = Grid([0.5, 1.5], [0.5, 1.5], lat_b=[0.0, 1.0, 3.0], lon_b=[0.0, 1.0, 2.0])
    np.testing.assert_allclose(g.area[:, 0], [hand_area(0, 1, 1), hand_area(1, 3, 1)])


def test_spacing_and_shape():
    g = Grid(np.arange(10.0, 0.0, -0.5), np.arange(0.0, 30.0, 0.25))
    assert g.shape == (20, 120)
    assert g.spacing == pytest.approx((0.5, 0.25))


# ---------------------------------------------------------------------------------------
# Coarse and fine grids
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_coarsen_grid_area_is_block_sum(factor):
    g = Grid(np.arange(79.5, 15.0, -1.0)[:64], np.arange(0.5, 360.0, 1.0)[: 8 * 40])
    c = g.coarsen(factor)
    assert c.shape == (g.shape[0] // factor, g.shape[1] // factor)
    np.testing.assert_allclose(c.area, block_sum(g.area, factor), rtol=1e-12)
    np.testing.assert_allclose(c.lat_b, g.lat_b[::factor])
    np.testing.assert_allclose(c.lat, g.lat.reshape(-1, factor).mean(1), rtol=1e-12)


def test_coarsen_global_era5_like_grid_keeps_pole_caps():
    # 720 rows without poles, 1440 columns: 4x coarsening gives the 1 deg grid exactly
    g = Grid(np.arange(89.875, -90.0, -0.25), np.arange(0.0, 360.0, 0.25))
    c = g.coarsen(4)
    assert c.shape == (180, 360)
    np.testing.assert_allclose(c.lat[:2], [89.5, 88.5])
    np.testing.assert_allclose(c.lon[:2], [0.375, 1.375])
    assert c.periodic
    assert abs(c.area.sum() / SPHERE - 1.0) < 1e-9


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_refine_then_coarsen_is_identity(factor):
    lat = np.arange(60.0, 30.0, -2.0)
    lon = np.concatenate([np.arange(174.0, 180.0, 2.0), np.arange(-180.0, -170.0, 2.0)])
    g = Grid(lat, lon)
    fine = g.refine(factor)
    assert fine.shape == (g.shape[0] * factor, g.shape[1] * factor)
    back = fine.coarsen(factor)
    np.testing.assert_allclose(back.lat, g.lat, atol=1e-12)
    # the same meridians; the date-line column may come back as 180 instead of -180
    np.testing.assert_allclose((back.lon - g.lon + 180.0) % 360.0 - 180.0, 0.0, atol=1e-12)
    np.testing.assert_allclose(back.area, g.area, rtol=1e-13)
    np.testing.assert_allclose(block_sum(fine.area, factor), g.area, rtol=1e-13)
    # fine centres divide each coarse cell evenly
    np.testing.assert_allclose(np.diff(fine.lat), -2.0 / factor)


def test_refine_rejects_bad_factor():
    g = Grid([0.5, 1.5], [0.5, 1.5])
    for bad in (0, -1, 1.5, 2.0, "2", True, None):
        with pytest.raises(GridShapeError, match="positive integer"):
            g.refine(bad)


# ---------------------------------------------------------------------------------------
# Arrays: numpy, torch, dask
# ---------------------------------------------------------------------------------------
def _field(shape, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 60.0, size=shape)


def test_coarsen_constant_and_mass_numpy():
    g = Grid(np.arange(80.0, -80.0, -10.0), np.arange(0.0, 40.0, 5.0))
    y = _field((3, *g.shape))
    x = coarsen(y, g.area, 4)
    assert x.shape == (3, 4, 2)
    np.testing.assert_allclose(total_mass(x, g.coarsen(4).area), total_mass(y, g.area), rtol=1e-13)
    np.testing.assert_allclose(coarsen(np.full(g.shape, 7.25), g.area, 4), 7.25, rtol=1e-14)


def test_block_helpers():
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(block_sum(a, 2), [[10.0, 18.0], [42.0, 50.0]])
    np.testing.assert_array_equal(block_expand(np.array([[1.0, 2.0]]), 2), [[1, 1, 2, 2]] * 2)
    w = block_weights(Grid(np.arange(0.5, 80, 10.0), np.arange(0.5, 4.0)).area, 2)
    np.testing.assert_allclose(block_sum(w, 2), 1.0, rtol=1e-14)


def test_torch_and_dask_match_numpy():
    g = Grid(np.arange(70.0, -50.0, -7.5), np.arange(100.0, 124.0, 1.5))
    y = _field((2, *g.shape), seed=3)
    ref = coarsen(y, g.area, 4)
    got_t = coarsen(torch.from_numpy(y), torch.from_numpy(g.area), 4)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), ref, rtol=1e-14)
    yd = dsa.from_array(y, chunks=(1, 5, 7))  # chunks deliberately not multiples of 4
    got_d = coarsen(yd, dsa.from_array(g.area, chunks=(5, 7)), 4)
    assert isinstance(got_d, dsa.Array)
    np.testing.assert_allclose(got_d.compute(), ref, rtol=1e-14)
    np.testing.assert_allclose(
        total_mass(got_t, torch.from_numpy(g.coarsen(4).area)).numpy(),
        total_mass(y, g.area),
        rtol=1e-13,
    )
    xt = torch.ones(1, 2, 3, dtype=torch.float64)
    assert block_expand(xt, 2).shape == (1, 4, 6)
    assert block_expand(dsa.ones((2, 3), chunks=1), 3).compute().shape == (6, 9)


def test_block_sum_is_exact_sum_of_blocks():
    y = _field((8, 12), seed=1)
    np.testing.assert_allclose(block_sum(y, 4)[1, 2], y[4:8, 8:12].sum(), rtol=1e-14)


def test_unweighted_mean_would_not_conserve():
    # the contrast case: the area weights matter when the grid spans many latitudes
    g = Grid(np.arange(88.0, -2.0, -4.0)[:20], np.arange(0.0, 8.0, 2.0))
    y = np.broadcast_to(np.linspace(1.0, 60.0, 20)[:, None], g.shape).copy()
    plain = y.reshape(5, 4, 2, 2).mean(axis=(1, 3))
    mass = total_mass(y, g.area)
    assert abs(total_mass(plain, g.coarsen(4).area) / mass - 1) > 1e-3
    assert abs(total_mass(coarsen(y, g.area, 4), g.coarsen(4).area) / mass - 1) < 1e-13


# ---------------------------------------------------------------------------------------
# xarray
# ---------------------------------------------------------------------------------------
def _era5_like(nt=2, chunks=None, lat_name="latitude", lon_name="longitude"):
    lat = np.arange(60.0, 36.0, -0.25)[:96]
    lon = np.arange(350.0, 374.0, 0.25) % 360.0  # crosses Greenwich on 0..360
    data = _field((nt, lat.size, lon.size), seed=5).astype(np.float32)
    da = xr.DataArray(
        data,
        dims=("time", lat_name, lon_name),
        coords={
            "time": np.arange(nt).astype("datetime64[h]"),
            lat_name: (lat_name, lat, {"units": "degrees_north"}),
            lon_name: (lon_name, lon, {"units": "degrees_east"}),
        },
        name="tcw",
        attrs={"units": "kg m**-2", "long_name": "Total column water"},
    )
    return da.chunk(chunks) if chunks else da


def test_find_latlon_names_and_attributes():
    assert find_latlon(_era5_like()) == ("latitude", "longitude")
    assert find_latlon(_era5_like(lat_name="lat", lon_name="lon")) == ("lat", "lon")
    da = _era5_like(lat_name="yy", lon_name="xx")  # found through CF units attributes
    assert find_latlon(da) == ("yy", "xx")
    assert find_latlon(da.to_dataset()) == ("yy", "xx")
    da = da.rename(yy="y").assign_coords(y=("y", da["yy"].values, {"standard_name": "latitude"}))
    assert find_latlon(da)[0] == "y"
    assert find_latlon(_era5_like(), lat="latitude", lon="longitude") == ("latitude", "longitude")


@pytest.mark.parametrize(
    ("lat_u", "lon_u"), [("degree_north", "degree_east"), ("degreeN", "degreeE")]
)
def test_find_latlon_accepts_all_cf_degree_spellings(lat_u, lon_u):
    da = _era5_like(lat_name="y", lon_name="x")
    da["y"].attrs["units"] = lat_u
    da["x"].attrs["units"] = lon_u
    assert find_latlon(da) == ("y", "x")


def test_missing_latlon_in_dataset_names_what_was_looked_for():
    ds = xr.Dataset({"tcw": (("y", "x"), np.ones((4, 4)))}, coords={"y": range(4), "x": range(4)})
    with pytest.raises(CoordinateError) as info:
        find_latlon(ds)
    msg = str(info.value)
    assert "latitude" in msg and "lat" in msg and "standard_name" in msg
    assert "lat='name'" in msg  # the fix
    assert "['y', 'x']" in msg  # what was seen
    ds = ds.assign_coords(lat=("y", np.arange(4.0)))
    with pytest.raises(CoordinateError, match="longitude not found"):
        find_latlon(ds)
    with pytest.raises(CoordinateError, match="'nope' not found"):
        find_latlon(ds, lat="nope")


def test_curvilinear_latlon_is_refused():
    lat2d, lon2d = np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij")
    ds = xr.Dataset(
        {"tcw": (("y", "x"), np.ones((4, 5)))},
        coords={"lat": (("y", "x"), lat2d), "lon": (("y", "x"), lon2d)},
    )
    for obj in (ds, ds["tcw"]):
        with pytest.raises(CoordinateError, match="curvilinear"):
            find_latlon(obj)
        # the curvilinear path takes it, and names the crop in its own dims
        with pytest.raises(GridShapeError, match=r"x=slice\(0, 4\)"):
            coarsen_dataarray(ds["tcw"], 2)
    with pytest.raises(CoordinateError, match="[Cc]urvilinear"):
        Grid(lat2d, lon2d)
    # a CoordinateError is catchable as a KeyError too, and prints without quotes
    with pytest.raises(KeyError):
        Grid(lat2d, lon2d)


def test_grid_of_reads_cf_bounds():
    da = _era5_like(nt=1)
    ds = da.to_dataset()
    g0 = grid_of(ds)
    lat_b = np.stack([g0.lat_b[:-1], g0.lat_b[1:]], axis=1)
    lat_b[-1, 1] = 30.0  # make the last row taller so the bounds are visibly used
    ds["lat_bnds"] = (("latitude", "nv"), lat_b)
    ds["latitude"].attrs["bounds"] = "lat_bnds"
    g = grid_of(ds)
    assert g.lat_b[-1] == 30.0
    assert g.area[-1, 0] > 10 * g0.area[-1, 0]
    np.testing.assert_allclose(g.area[:-1], g0.area[:-1])


def test_coarsen_dataarray_numpy_matches_array_function():
    da = _era5_like()
    g = grid_of(da)
    out = coarsen_dataarray(da, 4)
    assert out.dims == da.dims
    assert out.shape == (2, 24, 24)
    assert out.name == "tcw" and out.attrs == da.attrs
    assert out["latitude"].attrs == da["latitude"].attrs
    np.testing.assert_allclose(out["latitude"].values, g.coarsen(4).lat)
    np.testing.assert_allclose(out["longitude"].values, g.coarsen(4).lon)
    assert np.all((out["longitude"].values >= 0) & (out["longitude"].values < 360))
    np.testing.assert_allclose(
        out.values, coarsen(da.values.astype(np.float64), g.area, 4), rtol=1e-6
    )
    # mass in kg is kept (float32 input: float32 round-off)
    np.testing.assert_allclose(mass_dataarray(out).values, mass_dataarray(da).values, rtol=1e-6)
    assert mass_dataarray(da).attrs["units"] == "kg"
    np.testing.assert_array_equal(out["time"].values, da["time"].values)


def test_coarsen_dataarray_stays_lazy():
    da = _era5_like(chunks={"time": 1, "latitude": 50, "longitude": 30})
    with raise_if_dask_computes():
        out = coarsen_dataarray(da, 4)
        mass = mass_dataarray(out)
    assert isinstance(out.data, dsa.Array)
    assert isinstance(mass.data, dsa.Array)
    np.testing.assert_allclose(out.values, coarsen_dataarray(da.compute(), 4).values, rtol=1e-12)


def test_coarsen_dataarray_not_divisible():
    da = _era5_like().isel(longitude=slice(0, 95))
    with pytest.raises(GridShapeError, match="not divisible by factor 4"):
        coarsen_dataarray(da, 4)


def test_coarsen_dataarray_does_not_skip_nan():
    da = _era5_like(nt=1)
    da[0, 5, 6] = np.nan
    out = coarsen_dataarray(da, 4)
    assert np.isnan(out.values[0, 1, 1]) and int(out.isnull().sum()) == 1
    # contrast: xarray's default skipna block sum gives the NaN block a finite, too-small mean
    weighted = (da * Grid.from_xarray(da).area).coarsen(latitude=4, longitude=4).sum()
    assert np.isfinite(weighted.values[0, 1, 1])


def test_coarsen_dataarray_weights_with_a_given_grid():
    da = _era5_like(nt=1)
    g = grid_of(da)
    np.testing.assert_array_equal(coarsen_dataarray(da, 4, grid=g), coarsen_dataarray(da, 4))
    # other weights (a taller last row) change the last coarse row only
    lat_b = g.lat_b.copy()
    lat_b[-1] -= 5.0
    tall = coarsen_dataarray(da, 4, grid=Grid(g.lat, g.lon, lat_b, g.lon_b))
    np.testing.assert_allclose(
        tall[0, -1, 0],
        coarsen(da.values[0].astype(np.float64), Grid(g.lat, g.lon, lat_b, g.lon_b).area, 4)[-1, 0],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(tall[0, :-1], coarsen_dataarray(da, 4)[0, :-1])
    assert not np.allclose(tall[0, -1], coarsen_dataarray(da, 4)[0, -1], rtol=1e-9, atol=0)
    with pytest.raises(GridShapeError, match="grid= has 96 x 95 cells but the field has 96 x 96"):
        coarsen_dataarray(da, 4, grid=Grid(g.lat, g.lon[:-1]))


# ---------------------------------------------------------------------------------------
# Longitude wrap and boxes
# ---------------------------------------------------------------------------------------
def test_wrap_lon_into_either_convention():
    lon = np.array([-190.0, -180.0, -0.5, 0.0, 179.5, 180.0, 359.5, 360.0, 540.0])
    np.testing.assert_array_equal(
        wrap_lon(lon), [170.0, 180.0, 359.5, 0.0, 179.5, 180.0, 359.5, 0.0, 180.0]
    )
    np.testing.assert_array_equal(
        wrap_lon(lon, -180.0), [170.0, -180.0, -0.5, 0.0, 179.5, -180.0, -0.5, 0.0, -180.0]
    )
    assert wrap_lon(359.5 - 0.5, -180.0) == -1.0  # signed shortest step
    assert wrap_lon(0.5 - 359.5, -180.0) == 1.0
    np.testing.assert_array_equal(wrap_lon(torch.tensor([-90.0, 450.0])).numpy(), [270.0, 90.0])


@pytest.mark.parametrize("grid_start", [0.0, -180.0])
@pytest.mark.parametrize(
    "box", [(-2.0, 2.0, 170.0, 200.0), (-2.0, 2.0, -190.0, -160.0), (-2.0, 2.0, 170.0, -160.0)]
)
def test_box_across_the_date_line_selects_the_same_cells_in_any_convention(grid_start, box):
    lat = np.arange(9.5, -10.0, -1.0)  # descending, like ERA5
    lon = wrap_lon(np.arange(0.5, 360.0, 1.0), grid_start)
    rows, cols = Box(*box).indices(lat, lon)
    np.testing.assert_array_equal(lat[rows], [1.5, 0.5, -0.5, -1.5])
    # 30 columns, in one eastward piece from 170.5 across the date line to 199.5
    np.testing.assert_allclose(wrap_lon(lon[cols]), np.arange(170.5, 200.0, 1.0))
    steps = wrap_lon(np.diff(lon[cols]), -180.0)
    np.testing.assert_allclose(steps, 1.0)
    if grid_start == -180.0 and box[2:] == (170.0, 200.0):
        # contrast: comparing the raw values misses the columns east of the date line
        assert np.flatnonzero((lon >= box[2]) & (lon <= box[3])).size == 10


def test_box_masks_edges_whole_circle_and_meridian_0():
    lon = np.arange(0.0, 360.0, 10.0)
    assert Box(0, 1, 340, 20).lon_mask(lon).sum() == 5  # 340, 350, 0, 10, 20: edges included
    assert Box(0, 1, -20, 20).lon_mask(lon).sum() == 5
    rows, cols = Box(0, 1, -20, 20).indices(np.array([0.5]), lon)
    np.testing.assert_array_equal(lon[cols], [340.0, 350.0, 0.0, 10.0, 20.0])
    assert Box(0, 1, 0, 360).lon_mask(lon).all() and Box(0, 1, -180, 180).lon_span == 360.0
    assert Box(0, 1, 5, 5).lon_mask(lon).sum() == 0 and Box(0, 1, 10, 10).lon_mask(lon).sum() == 1
    np.testing.assert_array_equal(Box(-1, 1, 0, 1).lat_mask([1.0, 1.0 + 1e-12, 1.1]), [1, 1, 0])
    assert Box(-90, 90, 0, 360).as_tuple() == (-90.0, 90.0, 0.0, 360.0)


def test_box_disjoint_compares_longitudes_on_the_circle():
    east = Box(-10, 10, 300, 360)
    assert not east.disjoint(Box(-10, 10, -30, 10))  # 330..10 meets 300..360
    assert east.disjoint(Box(-10, 10, 0.5, 10)) and Box(-10, 10, 0.5, 10).disjoint(east)
    assert east.disjoint(Box(11, 20, 300, 360))  # apart in latitude
    assert not Box(-10, 10, 170, 200).disjoint(Box(0, 5, -170, -165))  # 190..195 inside
    assert not Box(-10, 10, 0, 360).disjoint(Box(0, 5, 123, 124))


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ((10, 0, 0, 10), "lat_min <= lat_max"),
        ((-95, 0, 0, 10), "-90 <= lat_min"),
        ((0, 10, np.nan, 10), "box lon_min must be a finite number"),
        ((0, "10", 0, 10), "box lat_max must be degrees"),
    ],
)
def test_box_validates_itself(box, match):
    with pytest.raises(CoordinateError, match=match):
        Box(*box)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
def test_shape_not_divisible_names_fix():
    with pytest.raises(GridShapeError) as info:
        coarsen(np.ones((10, 8)), np.ones((10, 8)), 4)
    msg = str(info.value)
    assert "10 x 8" in msg and "factor 4" in msg and "crop it to 8 x 8" in msg and "pad" in msg
    with pytest.raises(GridShapeError):
        Grid(np.arange(10.0), np.arange(8.0)).coarsen(4)
    with pytest.raises(GridShapeError):
        block_sum(np.ones((8, 6)), 4)
    assert check_factor((3, 8, 12), 4) == 4
    assert check_factor((8, 12), np.int64(2)) == 2


def test_shape_message_names_the_axis_to_crop():
    with pytest.raises(GridShapeError) as info:
        check_factor((8, 10), 4)
    assert "longitude" in str(info.value)


@pytest.mark.parametrize("bad", [0, -2, 2.5, 2.0, "4", True, None])
def test_factor_must_be_positive_integer(bad):
    with pytest.raises(GridShapeError, match="positive integer"):
        coarsen(np.ones((8, 8)), np.ones((8, 8)), bad)
    with pytest.raises(GridShapeError, match="positive integer"):
        Grid(np.arange(8.0), np.arange(8.0)).coarsen(bad)


def test_latitudes_beyond_90_are_refused():
    with pytest.raises(CoordinateError, match=r"\[-90, 90\]"):
        Grid([85.0, 90.0, 95.0], [0.0, 1.0])
    with pytest.raises(CoordinateError, match="swapped"):
        lat_bounds(np.arange(0.0, 200.0, 10.0))
    Grid([80.0, 85.0, 90.0], [0.0, 1.0])  # exactly 90 is fine


@pytest.mark.parametrize("where", ["lat", "lon"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_coordinates_are_refused(where, bad):
    lat, lon = np.arange(4.0), np.arange(5.0)
    (lat if where == "lat" else lon)[2] = bad
    with pytest.raises(CoordinateError, match="NaN or inf"):
        Grid(lat, lon)


def test_other_bad_coordinates():
    with pytest.raises(CoordinateError, match="monotonic"):
        Grid([0.0, 2.0, 1.0], [0.0, 1.0])
    with pytest.raises(CoordinateError, match="monotonic"):
        lon_bounds([0.0, 1.0, 1.0])
    with pytest.raises(CoordinateError, match="single centre"):
        Grid([0.0], [0.0, 1.0])
    with pytest.raises(CoordinateError, match="empty"):
        Grid([], [0.0, 1.0])
    with pytest.raises(CoordinateError, match="one more value"):
        Grid([0.5, 1.5], [0.5, 1.5], lat_b=[0.0, 1.0])


def test_refined_longitudes_stay_monotonic_next_to_the_meridian():
    # ERA5 Rhine-like: 0..10E in the 0..360 convention; the first coarse cell straddles 0E
    g = Grid(np.arange(55.0, 44.9, -0.25), np.arange(0.0, 10.01, 0.25))
    fine = g.refine(4)
    assert np.all(np.diff(fine.lon) > 0)
    assert fine.lon[0] == pytest.approx(-0.09375)
    # contrast: a grid that itself wraps (170..180, -180..-170) keeps its own convention
    w = Grid(np.array([0.0, 1.0]), np.array([170.0, 175.0, 180.0, -175.0, -170.0]))
    assert np.all(np.abs(w.refine(2).lon) <= 180.0)


def test_mass_dataarray_does_not_skip_nan():
    lat, lon = np.arange(50.0, 46.0, -1.0), np.arange(0.0, 4.0)
    da = xr.DataArray(np.ones((4, 4)), coords={"lat": lat, "lon": lon}, dims=("lat", "lon"))
    assert float(mass_dataarray(da)) == pytest.approx(Grid(lat, lon).area.sum(), rel=1e-12)
    # a NaN cell makes the mass NaN (xarray's default skipna sum would undercount silently)
    assert np.isnan(float(mass_dataarray(da.where(da.lat < 50.0))))


# ---------------------------------------------------------------------------------------
# Orientation and CF bounds
# ---------------------------------------------------------------------------------------
def test_orientation_is_read_off_the_cells():
    era5 = Grid(np.arange(50.0, 40.0, -1.0), np.arange(0.0, 10.0))
    assert era5.orientation == ERA5_ORIENTATION == Orientation("descending", "ascending")
    assert Grid(np.arange(40.0, 50.0), np.arange(9.0, -1.0, -1.0)).orientation == Orientation(
        "ascending", "descending"
    )
    # eastward across the date line, and a rolled global axis, are ascending
    assert Grid([0.0, 1.0], [170.0, 180.0, -170.0]).orientation.lon == "ascending"
    rolled = np.roll(np.arange(0.0, 360.0, 30.0), 5)
    assert Grid([0.0, 1.0], rolled).orientation.lon == "ascending"
    # one row still has a direction: its bounds'
    assert Grid([45.0], [0.0, 1.0], lat_b=[45.5, 44.5]).orientation.lat == "descending"


def test_oriented_reverses_only_the_axes_that_differ():
    g = Grid(np.arange(40.0, 50.0), np.arange(0.0, 10.0))  # south to north
    same, flips = g.oriented(Orientation("ascending", "ascending"))
    assert same is g and flips == (False, False)
    era5, flips = g.oriented(ERA5_ORIENTATION)
    assert flips == (True, False)
    np.testing.assert_array_equal(era5.lat, g.lat[::-1])
    np.testing.assert_array_equal(era5.area, g.area[::-1])  # the same cells, reversed
    np.testing.assert_array_equal(era5.refine(4).lat, g.refine(4).lat[::-1])


def test_orientation_records():
    assert Orientation.from_meta(None) == ERA5_ORIENTATION  # no record: ERA5's
    o = Orientation.from_meta({"lat": "ascending", "lon": "ascending"})
    assert o.as_dict() == {"lat": "ascending", "lon": "ascending"}
    with pytest.raises(CoordinateError, match="not one of"):
        Orientation.from_meta({"lat": "up", "lon": "ascending"})
    with pytest.raises(CoordinateError, match="keys 'lat' and 'lon'"):
        Orientation.from_meta({"lat": "ascending"})


@pytest.mark.parametrize(
    ("vertices", "centres"),
    [
        ([[50.5, 49.5], [49.5, 48.5], [48.5, 47.5]], [50.0, 49.0, 48.0]),  # (high, low)
        ([[49.5, 50.5], [48.5, 49.5], [47.5, 48.5]], [50.0, 49.0, 48.0]),  # (low, high)
        ([[47.5, 48.5], [48.5, 49.5], [49.5, 50.5]], [48.0, 49.0, 50.0]),  # ascending
        ([[48.5, 47.5], [49.5, 48.5], [50.5, 49.5]], [48.0, 49.0, 50.0]),
    ],
)
def test_cf_bounds_in_either_vertex_order_give_edges_in_the_centres_order(vertices, centres):
    edges = bounds_from_cf(centres, vertices, "latitude")
    step = np.sign(centres[1] - centres[0])
    np.testing.assert_array_equal(edges, centres[0] - step * 0.5 + step * np.arange(4.0))


def test_cf_longitude_bounds_across_the_meridian():
    edges = bounds_from_cf([0.0, 1.0], [[359.5, 0.5], [0.5, 1.5]], "longitude")
    np.testing.assert_array_equal(edges, [-0.5, 0.5, 1.5])
    edges = bounds_from_cf([359.0, 0.0], [[358.5, 359.5], [-0.5, 0.5]], "longitude")
    np.testing.assert_array_equal(edges, [358.5, 359.5, 360.5])


def test_cf_bounds_are_written_and_read_back():
    lat, lon = np.arange(60.0, 50.0, -2.0), np.arange(-3.0, 3.0, 1.5)
    g = Grid(lat, lon, lat_b=[61.0, 59.0, 57.0, 55.0, 53.0, 50.0], lon_b=lon_bounds(lon))
    ds = xr.Dataset(coords={"lat": lat, "lon": lon})
    out = add_cf_bounds(ds, g)
    assert out.lat.attrs["bounds"] == "lat_bnds" and out.lon.attrs["bounds"] == "lon_bnds"
    assert out.lat_bnds.values[0].tolist() == [61.0, 59.0]  # in the coordinate's direction
    assert out.lat_bnds.values[-1].tolist() == [53.0, 50.0]
    back = Grid.from_xarray(out)
    np.testing.assert_array_equal(back.lat_b, g.lat_b)
    np.testing.assert_array_equal(back.lon_b, g.lon_b)
    assert "bounds" not in ds.lat.attrs  # a new Dataset


def test_pole_centred_grid_refined_and_coarsened_has_its_centres_again():
    lat = np.linspace(90.0, -90.0, 121)  # 1.5 deg, rows on the poles: half-height caps
    g = Grid(lat, np.arange(0.0, 360.0, 1.5))
    assert g.lat_b[:2].tolist() == [90.0, 89.25]
    back = g.refine(4).coarsen(4)
    np.testing.assert_array_equal(back.lat, lat)
    np.testing.assert_allclose(back.area, g.area, rtol=1e-12)
    # the fine cells of a cap are equal-angle cells with centres midway
    assert g.refine(4).lat[0] == 90.0 - 0.75 / 8
    # contrast: a cap that is not half its neighbour keeps the middle of its cell
    h = Grid([89.0, 87.0], [0.0, 1.0], lat_b=[90.0, 88.0, 86.0])
    assert h.coarsen(1).lat.tolist() == [89.0, 87.0]


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("north_first", [True, False])
def test_coarsened_pole_centred_grid_refines_to_the_grid_it_came_from(factor, north_first):
    """ERA5's 0.25 deg rows cropped to 720 (90 .. -89.75) coarsen to a polar cell of
    factor - 1/2 rows; refining it gives ERA5's rows back, the cap centred on the pole."""
    lat = np.linspace(90.0, -90.0, 721)[:720]
    lat = lat if north_first else lat[::-1]
    g = Grid(lat, np.arange(0.0, 360.0, 0.25))
    coarse = g.coarsen(factor)
    back = coarse.refine(factor)
    np.testing.assert_array_equal(back.lat, lat)
    np.testing.assert_array_equal(back.lat_b, g.lat_b)
    np.testing.assert_allclose(back.area, g.area, rtol=1e-12)
    np.testing.assert_array_equal(back.coarsen(factor).lat_b, coarse.lat_b)


def test_downscaled_global_field_lines_up_with_its_truth_at_the_pole():
    """The perfect-model check on a global grid with a row on the pole: every HR row has
    the truth's latitude, so ``hr - truth`` keeps the polar rows (xarray aligns on values)."""
    lat = np.linspace(90.0, -90.0, 121)[:120]
    lon = np.arange(0.0, 360.0, 1.5)
    rng = np.random.default_rng(0)
    truth = xr.DataArray(
        20.0 + rng.random((lat.size, lon.size)),
        coords={"latitude": lat, "longitude": lon},
        dims=("latitude", "longitude"),
        attrs={"units": "kg m-2"},
    )
    lr = truth.climdown.coarsen(4)
    hr = lr.climdown.downscale(factor=4, constraint="softmax", model="bicubic")
    np.testing.assert_array_equal(hr.latitude.values, lat)
    assert (hr - truth).shape == truth.shape
    budget = lr.climdown.conservation(hr)
    assert abs(float(budget.mass_rel_diff)) < 1e-6
