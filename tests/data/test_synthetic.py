"""Synthetic TCW: layout, CF attributes, plausibility, determinism, regions, motion, spectrum."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climdown.data import synthetic_tcw
from climdown.errors import CoordinateError, DataValueError
from climdown.grid import Box, Grid, mass_dataarray
from climdown.testing import raise_if_dask_computes

# one global 0.25 deg field at three times: 0 h, +1 h, +48 h
TIMES = pd.to_datetime(["2020-01-01T00", "2020-01-01T01", "2020-01-03T00"])


@pytest.fixture(scope="module")
def glob():
    return synthetic_tcw(TIMES, seed=0)


def zonal_slope(field: np.ndarray, lat: np.ndarray) -> float:
    """Log-log slope of the mean zonal power spectrum over |lat| < 60, wavenumbers 20-300."""
    x = field[np.abs(lat) < 60]
    x = x - x.mean(axis=-1, keepdims=True)
    power = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).mean(axis=0)
    k = np.arange(power.size)
    band = (k >= 20) & (k <= 300)
    return float(np.polyfit(np.log(k[band]), np.log(power[band]), 1)[0])


def lag_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two fields' log-anomalies from their common zonal mean."""
    la, lb = np.log(a), np.log(b)
    zm = 0.5 * (la.mean(-1, keepdims=True) + lb.mean(-1, keepdims=True))
    return float(np.corrcoef((la - zm).ravel(), (lb - zm).ravel())[0, 1])


def test_layout_and_cf_attributes(glob):
    tcw = glob["tcw"]
    assert tcw.dims == ("time", "lat", "lon")
    assert tcw.shape == (3, 720, 1440)
    assert tcw.dtype == np.float32
    assert tcw.attrs["units"] == "kg m-2"
    assert tcw.attrs["long_name"] == "Total column water"
    assert tcw.attrs["short_name"] == "tcw"
    assert "standard_name" not in tcw.attrs  # the CF name belongs to tcwv, not tcw
    lat, lon = glob["lat"].values, glob["lon"].values
    assert lat[0] == 89.875 and lat[-1] == -89.875 and np.all(np.diff(lat) < 0)
    assert lon[0] == 0.0 and lon[-1] == 359.75
    assert glob["lat"].attrs["units"] == "degrees_north"
    assert np.issubdtype(glob["time"].dtype, np.datetime64)
    grid = Grid(lat, lon)
    assert grid.periodic
    assert np.isclose(grid.area.sum(), 4 * np.pi * 6_371_000.0**2, rtol=1e-9)


def test_positive_and_plausible_range(glob):
    v = glob["tcw"].values
    assert np.all(np.isfinite(v))
    assert v.min() > 0.1
    assert v.max() < 80.0
    assert 0.2 < np.percentile(v, 0.1) < 2.0  # dry polar columns exist
    assert 55.0 < np.percentile(v, 99.9)  # and moist tropical ones


def test_zonal_mean_profile_moist_tropics_dry_poles(glob):
    zm = glob["tcw"].mean(("time", "lon"))
    lat = np.abs(zm["lat"].values)
    tropics = float(zm.values[lat < 10].mean())
    poles = float(zm.values[lat > 80].mean())
    midlat = float(zm.values[(lat > 40) & (lat < 50)].mean())
    assert 40.0 < tropics < 60.0
    assert 1.0 < poles < 5.0
    assert poles < midlat < tropics
    # contrast: the tropical band alone violates the polar bound and vice versa
    assert not (1.0 < tropics < 5.0) and not (40.0 < poles < 60.0)


def test_global_mean_close_to_real_era5(glob, global_ds):
    """Area-weighted global mean within 35 % of real ERA5 (tcwv, June 2020, ~25 kg m-2)."""
    area_total = 4 * np.pi * 6_371_000.0**2
    synth = float(mass_dataarray(glob["tcw"].isel(time=0))) / area_total
    real = float(mass_dataarray(global_ds["tcwv"].isel(time=0), grid=None)) / area_total
    assert abs(synth - real) / real < 0.35, (synth, real)


def test_deterministic_given_seed_and_seed_matters():
    a = synthetic_tcw(2, region=(40, 48, 0, 8), seed=3)
    b = synthetic_tcw(2, region=(40, 48, 0, 8), seed=3)
    c = synthetic_tcw(2, region=(40, 48, 0, 8), seed=4)
    np.testing.assert_array_equal(a["tcw"].values, b["tcw"].values)
    assert not np.allclose(a["tcw"].values, c["tcw"].values)


@pytest.mark.parametrize(
    "region",
    [
        (45.0, 55.0, 0.0, 10.0),  # the Rhine box
        (-10.0, 10.0, 340.0, 20.0),  # crosses the 0 meridian
        (-10.0, 10.0, -20.0, 20.0),  # same box in -180..180
        (80.0, 90.0, 0.0, 360.0),  # polar cap, all longitudes
    ],
)
def test_region_equals_global_cut(glob, region):
    sub = synthetic_tcw(TIMES[:2], region=region, seed=0)
    cut = glob["tcw"].isel(time=slice(0, 2)).sel(lat=sub["lat"], lon=sub["lon"])
    np.testing.assert_array_equal(sub["tcw"].values, cut.values)
    lat_min, lat_max = region[:2]
    assert sub["lat"].min() >= lat_min and sub["lat"].max() <= lat_max
    # contrast: the same cells of another seed's field are different
    other = synthetic_tcw(TIMES[:1], region=region, seed=1)
    assert not np.allclose(other["tcw"].values[0], cut.values[0])


def test_region_crossing_meridian_is_contiguous():
    ds = synthetic_tcw(1, region=(-1, 1, -2, 2), seed=0)
    lon = ds["lon"].values
    assert lon[0] == 358.0 and lon[-1] == 2.0 and lon.size == 17
    assert Grid(ds["lat"].values, lon).shape == (8, 17)


def test_region_may_be_a_grid_box_in_any_convention():
    ref = synthetic_tcw(1, region=(-1, 1, -2, 2), seed=0)
    for box in (Box(-1, 1, 358, 2), Box(-1, 1, 358, 362), Box(-1, 1, -362, -358)):
        xr.testing.assert_equal(synthetic_tcw(1, region=box, seed=0)["tcw"], ref["tcw"])


def test_each_time_step_independent_of_the_others():
    series = synthetic_tcw(30, start="2020-01-01", region=(40, 44, 0, 4), seed=0)
    alone = synthetic_tcw([series["time"].values[27]], region=(40, 44, 0, 4), seed=0)
    later = synthetic_tcw(3, start=series["time"].values[27], region=(40, 44, 0, 4), seed=0)
    np.testing.assert_array_equal(alone["tcw"].values[0], series["tcw"].values[27])
    np.testing.assert_array_equal(later["tcw"].values, series["tcw"].values[27:30])


def test_weather_moves_coherently_and_decorrelates(glob):
    v = glob["tcw"].values
    lag1 = lag_corr(v[0], v[1])
    lag48 = lag_corr(v[0], v[2])
    assert lag1 > 0.95
    assert lag48 < 0.6
    assert lag1 > lag48
    # and it does move: consecutive hours are not identical
    assert not np.allclose(v[0], v[1])


def test_anomaly_advected_eastward_in_midlatitudes():
    """The best lon shift between hours at 45 N is eastward (westerly jet), not zero."""
    ds = synthetic_tcw(2, region=(44, 46, 0, 360), seed=0)
    la = np.log(ds["tcw"].values)
    a, b = la[0] - la[0].mean(), la[1] - la[1].mean()
    shifts = np.arange(-8, 9)
    corr = [np.mean(np.roll(a, s, axis=-1) * b) for s in shifts]
    best = int(shifts[int(np.argmax(corr))])
    assert 1 <= best <= 5  # ~0.7 deg/h at 45 N = ~3 cells of 0.25 deg


def test_power_law_spectrum(glob):
    lat = glob["lat"].values
    slope = zonal_slope(glob["tcw"].values[0], lat)
    assert -3.6 < slope < -2.4
    # contrast: white noise of the same shape has a flat spectrum
    noise = np.random.default_rng(0).random((lat.size, 1440))
    assert not -3.6 < zonal_slope(noise, lat) < -2.4


def test_other_resolution_is_global_and_consistent():
    ds = synthetic_tcw(1, resolution=1.5, seed=0)
    assert ds["tcw"].shape == (1, 120, 240)
    assert ds["lat"].values[0] == 89.25 and ds["lon"].values[-1] == 358.5
    assert ds["tcw"].values.min() > 0


def test_dask_lazy_and_equal_to_eager():
    eager = synthetic_tcw(5, region=(40, 44, 0, 4), seed=2)
    with raise_if_dask_computes():
        lazy = synthetic_tcw(5, region=(40, 44, 0, 4), seed=2, chunks={"time": 2})
        doubled = lazy["tcw"] * 2
    assert isinstance(lazy["tcw"].data, dsa.Array)
    assert lazy["tcw"].chunks[0] == (2, 2, 1)
    np.testing.assert_array_equal(lazy["tcw"].values, eager["tcw"].values)
    np.testing.assert_array_equal(doubled.values, 2 * eager["tcw"].values)
    spatial = synthetic_tcw(2, region=(40, 44, 0, 4), chunks={"time": 1, "lon": 8})
    assert spatial["tcw"].chunks[2][0] == 8


def test_sub_hourly_and_explicit_times():
    ds = synthetic_tcw(["2020-01-01T00:00", "2020-01-01T00:30"], region=(0, 2, 0, 2))
    assert ds.sizes["time"] == 2
    six = synthetic_tcw(2, freq="6h", region=(0, 2, 0, 2))
    assert (six["time"].values[1] - six["time"].values[0]) == np.timedelta64(6, "h")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"resolution": 0.7}, DataValueError, "does not divide"),
        ({"resolution": -1}, DataValueError, "positive"),
        ({"region": (10, 0, 0, 10)}, CoordinateError, "lat_min <= lat_max"),
        ({"region": (0, 10, 0)}, CoordinateError, "lat_min, lat_max, lon_min, lon_max"),
        ({"region": (0.01, 0.1, 0.01, 0.1)}, CoordinateError, "no cell centre"),
        ({"times": 0}, DataValueError, "at least 1"),
        ({"times": []}, DataValueError, "empty"),
        ({"chunks": {"time": 0}}, DataValueError, "positive integer"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"times": 1, "region": (0, 2, 0, 2), **kwargs}
    with pytest.raises(error, match=match):
        synthetic_tcw(**args)
