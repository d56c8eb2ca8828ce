"""Tests of the mass budget (climdown.conservation): exact cases, contrasts, units, grids, laziness."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from climdown.conservation import assert_conserves, conservation
from climdown.errors import (
    ConservationError,
    CoordinateError,
    DataValueError,
    GridShapeError,
    UnitsError,
)
from climdown.grid import EARTH_RADIUS, Grid, block_expand, coarsen, mass_dataarray
from climdown.testing import raise_if_dask_computes

TIMES = np.array(["2021-07-14T00", "2021-07-14T06", "2021-07-14T12"], dtype="datetime64[ns]")


def make_lr(lat, lon, values=None, names=("latitude", "longitude"), units="kg m-2", seed=0):
    """An LR DataArray [time, lat, lon] with TCW-like positive values."""
    shape = (TIMES.size, len(lat), len(lon))
    if values is None:
        values = 5.0 + 50.0 * np.random.default_rng(seed).random(shape)
    return xr.DataArray(
        values,
        dims=("time", *names),
        coords={"time": TIMES, names[0]: lat, names[1]: lon},
        attrs={"units": units, "long_name": "total column water"},
        name="tcw",
    )


def on_fine_grid(lr, values, factor):
    """Wrap ``values`` [time, H, W] on the grid that refines ``lr``'s by ``factor``."""
    g = Grid.from_xarray(lr).refine(factor)
    lat, lon = lr.dims[1], lr.dims[2]
    return xr.DataArray(
        values,
        dims=lr.dims,
        coords={"time": lr["time"], lat: g.lat, lon: g.lon},
        attrs=dict(lr.attrs),
        name=lr.name,
    )


def expanded(lr, factor):
    """The trivially conserving HR: each LR value repeated over its block."""
    return on_fine_grid(lr, block_expand(lr.values, factor), factor)


@pytest.fixture
def era5_like():
    """Regional, latitude descending like ERA5, names latitude/longitude."""
    return make_lr(np.arange(60.0, 44.0, -2.0), np.arange(0.0, 20.0, 2.0))


# ---------------------------------------------------------------------------------------
# Exact budgets
# ---------------------------------------------------------------------------------------
def test_block_expanded_field_conserves_exactly(era5_like):
    hr = expanded(era5_like, 4)
    report = assert_conserves(hr, era5_like)
    assert report.sizes == {"time": 3}
    np.testing.assert_allclose(report["mass_hr"], report["mass_lr"], rtol=1e-13)
    assert float(abs(report["mass_rel_diff"]).max()) < 1e-13
    assert float(report["max_block_violation"].max()) < 1e-12
    assert int(report["neg_count"].sum()) == 0
    assert report.attrs["factor"] == 4


def test_area_weighted_coarsening_of_random_hr_is_a_conserving_lr(era5_like):
    f = 2
    g = Grid.from_xarray(era5_like).refine(f)
    hr_values = np.random.default_rng(1).gamma(2.0, 10.0, (3, *g.shape))
    lr = era5_like.copy(data=coarsen(hr_values, g.area, f))
    hr = on_fine_grid(lr, hr_values, f)
    report = assert_conserves(hr, lr, rtol=1e-12)
    assert float(report["max_block_violation"].max()) < 1e-12


def test_mass_matches_a_hand_value_on_the_whole_globe():
    lat = np.arange(-87.5, 90.0, 5.0)
    lon = np.arange(-177.5, 180.0, 5.0)  # cells on both sides of the date line
    lr = make_lr(lat, lon, values=np.full((3, lat.size, lon.size), 2.0))
    assert Grid.from_xarray(lr).periodic
    report = assert_conserves(expanded(lr, 3), lr)
    sphere = 4.0 * np.pi * EARTH_RADIUS**2
    np.testing.assert_allclose(report["mass_lr"], 2.0 * sphere, rtol=1e-12)
    np.testing.assert_allclose(report["mass_hr"], 2.0 * sphere, rtol=1e-12)


def test_regional_grid_crossing_the_date_line():
    lon = np.array([170.0, 175.0, 180.0, -175.0, -170.0, -165.0])
    lr = make_lr(np.array([10.0, 5.0, 0.0, -5.0]), lon)
    hr = expanded(lr, 2)
    assert float(hr.longitude.min()) < 0 < float(hr.longitude.max())  # wraps in the fine grid
    report = assert_conserves(hr, lr)
    # each 5 x 5 degree cell keeps its own area: no cell spans 350 degrees
    area = Grid.from_xarray(lr).area
    np.testing.assert_allclose(report["mass_lr"], (lr * area).sum(("latitude", "longitude")))
    assert area.max() < 1.0e12
    with pytest.raises(ConservationError, match="longitude=-175"):
        bad = hr.copy(deep=True)
        bad[1, 4:6, 6:8] += 1.0  # coarse cell (latitude 0, longitude -175) in the second step
        assert_conserves(bad, lr)


def test_hr_longitudes_in_the_other_convention_are_the_same_grid():
    lr = make_lr(np.array([10.0, 5.0, 0.0]), np.array([-10.0, -5.0, 0.0, 5.0]))
    hr = expanded(lr, 2)
    hr = hr.assign_coords(longitude=hr.longitude % 360.0)  # 0..360 instead of -180..180
    assert_conserves(hr, lr)


def test_polar_rows_use_the_refined_areas():
    lat = np.arange(90.0, -91.0, -10.0)  # rows on the poles: clipped half-height caps
    lon = np.arange(0.0, 360.0, 10.0)
    lr = make_lr(lat, lon, names=("lat", "lon"))
    hr = expanded(lr, 2)
    report = assert_conserves(hr, lr, rtol=1e-12)
    np.testing.assert_allclose(report["mass_hr"], report["mass_lr"], rtol=1e-12)
    # contrast: areas re-inferred from the HR centres mis-size the polar rows
    naive = mass_dataarray(hr)
    assert float(abs(naive / report["mass_lr"] - 1.0).max()) > 1e-4


# ---------------------------------------------------------------------------------------
# Fields that do not conserve
# ---------------------------------------------------------------------------------------
def test_scaled_field_fails_naming_the_worst_block(era5_like):
    hr = expanded(era5_like, 2) * 1.01
    hr.attrs = dict(era5_like.attrs)
    worst = era5_like.where(era5_like == era5_like.max(), drop=True)
    with pytest.raises(ConservationError) as err:
        assert_conserves(hr, era5_like)
    msg = str(err.value)
    assert f"latitude={float(worst.latitude[0]):.4f}" in msg
    assert f"longitude={float(worst.longitude[0]):.4f}" in msg
    assert np.datetime_as_string(worst.time.values[0], unit="s") in msg
    assert "relative 0.01" in msg
    report = conservation(hr, era5_like)
    np.testing.assert_allclose(report["mass_rel_diff"], 0.01, rtol=1e-10)
    np.testing.assert_allclose(
        report["max_block_violation"], 0.01 * era5_like.max(("latitude", "longitude"))
    )


def test_bilinear_interpolation_does_not_conserve(era5_like):
    fine = Grid.from_xarray(era5_like).refine(4)
    lon = np.where(fine.lon > 180.0, fine.lon - 360.0, fine.lon)  # refine wrapped -0.75 to 359.25
    hr = era5_like.interp(
        latitude=fine.lat, longitude=lon, method="linear", kwargs={"fill_value": "extrapolate"}
    )
    assert not bool(hr.isnull().any())
    hr = hr.assign_coords(longitude=fine.lon)
    hr.attrs = dict(era5_like.attrs)
    with pytest.raises(ConservationError, match="kg m-2"):
        assert_conserves(hr, era5_like)
    assert float(conservation(hr, era5_like)["max_block_violation"].min()) > 0.01


def test_one_bad_block_is_located(era5_like):
    hr = expanded(era5_like, 2)
    hr[2, 6:8, 10:12] *= 1.5  # coarse row 3, column 5 at the third time
    with pytest.raises(ConservationError) as err:
        assert_conserves(hr, era5_like)
    msg = str(err.value)
    assert "latitude=54.0000, longitude=10.0000" in msg
    assert "time=2021-07-14T12:00:00" in msg
    assert "1 of 240 coarse cells" in msg
    report = conservation(hr, era5_like)
    assert float(report["max_block_violation"][0]) < 1e-12
    assert float(report["max_block_violation"][2]) == pytest.approx(0.5 * float(era5_like[2, 3, 5]))


def test_tolerances_are_honoured(era5_like):
    hr = expanded(era5_like, 2) * (1.0 + 1e-7)
    hr.attrs = dict(era5_like.attrs)
    assert_conserves(hr, era5_like)  # within rtol=1e-5
    with pytest.raises(ConservationError):
        assert_conserves(hr, era5_like, rtol=1e-9)
    assert_conserves(hr, era5_like, rtol=0.0, atol=1e-4)


def test_negative_values_are_counted(era5_like):
    hr = expanded(era5_like, 2)
    hr[0, 0, 0] = -1.0
    hr[0, 0, 1] += 1.0 + float(era5_like[0, 0, 0])  # same block: mass unchanged
    report = assert_conserves(hr, era5_like)
    assert report["neg_count"].values.tolist() == [1, 0, 0]


# ---------------------------------------------------------------------------------------
# Dry cells and units
# ---------------------------------------------------------------------------------------
def test_dry_fields_give_zero_never_nan(era5_like):
    lr = era5_like * 0.0
    lr.attrs = dict(era5_like.attrs)
    report = assert_conserves(expanded(lr, 2), lr)
    for name in report.data_vars:
        assert not bool(report[name].isnull().any()), name
    assert float(abs(report["mass_rel_diff"]).max()) == 0.0
    # a dry coarse cell that gains water is a violation with atol=0
    wet = expanded(lr, 2)
    wet[0, 0, 0] = 1e-3
    with pytest.raises(ConservationError):
        assert_conserves(wet, lr)
    assert float(conservation(wet, lr)["mass_rel_diff"][0]) == np.inf


def test_partly_dry_precipitation_conserves(era5_like):
    lr = era5_like.where(era5_like > 30.0, 0.0)
    report = assert_conserves(expanded(lr, 2), lr)
    assert int(report["nan_count"].sum()) == 0


def test_precipitation_in_metres_is_converted_with_the_density_of_water(era5_like):
    lr = make_lr(era5_like.latitude.values, era5_like.longitude.values, units="m")
    lr = lr.copy(data=np.full(lr.shape, 0.002))  # 2 mm
    hr = expanded(lr, 2)
    report = assert_conserves(hr, lr)
    area = Grid.from_xarray(lr).area.sum()
    np.testing.assert_allclose(report["mass_lr"], 0.002 * 1000.0 * area, rtol=1e-12)
    hr_mm = hr * 1000.0
    hr_mm.attrs = {"units": "mm"}
    np.testing.assert_allclose(assert_conserves(hr_mm, lr)["mass_hr"], report["mass_lr"])


def test_temperature_is_refused(era5_like):
    lr = era5_like.assign_attrs(units="K")
    with pytest.raises(UnitsError, match="'K'"):
        conservation(expanded(lr, 2), lr)


def test_report_carries_units(era5_like):
    report = conservation(expanded(era5_like, 2), era5_like)
    units = {name: report[name].attrs["units"] for name in report.data_vars}
    assert units == {
        "mass_lr": "kg",
        "mass_hr": "kg",
        "mass_diff": "kg",
        "mass_rel_diff": "1",
        "max_block_violation": "kg m-2",
        "neg_count": "1",
        "nan_count": "1",
    }
    assert all("long_name" in report[n].attrs for n in report.data_vars)
    assert "climdown" in report.attrs["history"]


# ---------------------------------------------------------------------------------------
# Grids that do not belong together
# ---------------------------------------------------------------------------------------
def test_shifted_hr_grid_is_a_coordinate_error(era5_like):
    hr = expanded(era5_like, 2)
    hr = hr.assign_coords(latitude=hr.latitude + 0.25)
    with pytest.raises(CoordinateError, match="latitude.*refined by 2"):
        conservation(hr, era5_like)


def test_hr_of_another_region_is_a_coordinate_error(era5_like):
    hr = expanded(era5_like, 2)
    hr = hr.assign_coords(longitude=hr.longitude + 40.0)
    with pytest.raises(CoordinateError, match="longitude"):
        conservation(hr, era5_like)


def test_factor_must_be_a_square_integer(era5_like):
    hr = expanded(era5_like, 2)
    with pytest.raises(GridShapeError, match="square integer"):
        conservation(hr.isel(longitude=slice(0, 19)), era5_like)
    with pytest.raises(GridShapeError, match="square integer"):
        conservation(hr.isel(longitude=slice(0, 10)), era5_like)
    with pytest.raises(GridShapeError, match="factor=4"):
        conservation(hr, era5_like, factor=4)
    assert_conserves(hr, era5_like, factor=2)


def test_time_steps_must_match(era5_like):
    hr = expanded(era5_like, 2)
    with pytest.raises(CoordinateError, match="time"):
        conservation(hr.assign_coords(time=hr.time + np.timedelta64(1, "h")), era5_like)
    with pytest.raises(CoordinateError, match="time"):
        conservation(hr.isel(time=slice(0, 2)), era5_like)


def test_datasets_are_refused_with_a_hint(era5_like):
    with pytest.raises(TypeError, match="ds\\['tcw'\\]"):
        conservation(expanded(era5_like, 2).to_dataset(), era5_like)


# ---------------------------------------------------------------------------------------
# NaN, layouts, laziness
# ---------------------------------------------------------------------------------------
def test_nan_is_reported_and_refused_by_the_assertion(era5_like):
    hr = expanded(era5_like, 2)
    hr[1, 3, 4] = np.nan
    report = conservation(hr, era5_like)
    assert report["nan_count"].values.tolist() == [0, 1, 0]
    assert bool(report["mass_hr"][1].isnull()) and not bool(report["mass_hr"][0].isnull())
    assert bool(report["max_block_violation"][1].isnull())
    with pytest.raises(DataValueError, match="hr contains 1 NaN.*time=2021-07-14T06"):
        assert_conserves(hr, era5_like)


def test_dim_order_and_names_do_not_matter():
    lr = make_lr(np.arange(-10.0, 10.0, 2.5), np.arange(30.0, 50.0, 2.5), names=("lat", "lon"))
    hr = expanded(lr, 4).transpose("lon", "time", "lat")
    report = assert_conserves(hr, lr)
    assert report["mass_hr"].dims == ("time",)
    named = lr.rename(lat="y_c", lon="x_c")
    named["y_c"].attrs["standard_name"] = "latitude"
    named["x_c"].attrs["standard_name"] = "longitude"
    assert_conserves(hr, named)


def test_dask_input_stays_lazy_until_computed(era5_like):
    hr = expanded(era5_like, 2)
    hr_lazy = hr.chunk({"time": 1})
    lr_lazy = era5_like.chunk({"time": 1})
    with raise_if_dask_computes():
        report = conservation(hr_lazy, lr_lazy)
    assert all(isinstance(report[n].data, dsa.Array) for n in report.data_vars)
    computed = report.compute()
    expected = conservation(hr, era5_like)
    for name in expected.data_vars:
        np.testing.assert_allclose(computed[name], expected[name], rtol=1e-12, atol=1e-9)
    # contrast: the raising scheduler does fire when something is computed
    with raise_if_dask_computes(), pytest.raises(RuntimeError, match="lazy"):
        report.compute()
