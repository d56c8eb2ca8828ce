"""Coarsened and downscaled outputs align with the fields they came from, cell for cell.

xarray aligns arithmetic by exact coordinate values: ``hr.climdown.coarsen(f) - lr`` or
``downscaled - truth`` silently drops every cell whose centre differs by one ulp. Grids with
decimal spacings (CORDEX's 0.44 and 0.11 deg, 0.1 deg products) and float32 coordinates are
where computed centres used to come back a few ulps off.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import climdown  # noqa: F401  (the accessor)
from climdown.grid import tidy_centres


def _field(lat: np.ndarray, lon: np.ndarray, dtype: str = "float64") -> xr.DataArray:
    rng = np.random.default_rng(0)
    values = (10 + 20 * rng.random((2, lat.size, lon.size))).astype("float32")
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={
            "time": np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[ns]"),
            "lat": ("lat", lat.astype(dtype), {"units": "degrees_north"}),
            "lon": ("lon", lon.astype(dtype), {"units": "degrees_east"}),
        },
        name="tcw",
        attrs={"units": "kg m-2"},
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spacing", [0.44, 0.11, 0.1, 0.3])
def test_round_trip_keeps_every_cell(spacing: float, dtype: str) -> None:
    lat = np.round(50.0 - spacing * np.arange(16), 6)  # as a file writes them: decimals
    lon = np.round(3.0 + spacing * np.arange(16), 6)
    truth = _field(lat, lon, dtype)
    lr = truth.climdown.coarsen(4)
    hr = lr.climdown.downscale(factor=4, constraint="softmax", model="bicubic")
    assert (hr - truth).shape == truth.shape  # no cell lost to alignment
    assert hr.lat.dtype == truth.lat.dtype
    back = hr.climdown.coarsen(4)
    assert (back - lr).shape == lr.shape
    np.testing.assert_allclose((back - lr).values, 0, atol=1e-4)


def test_rotated_pole_round_trip_keeps_every_cell() -> None:
    pyproj = pytest.importorskip("pyproj")
    rlat = np.round(-23.21 + 0.44 * np.arange(16), 2)
    rlon = np.round(-28.21 + 0.44 * np.arange(16), 2)
    mapping = {
        "grid_mapping_name": "rotated_latitude_longitude",
        "grid_north_pole_latitude": 39.25,
        "grid_north_pole_longitude": -162.0,
    }
    to_geo = pyproj.Transformer.from_crs(
        pyproj.CRS.from_cf(mapping), pyproj.CRS.from_epsg(4326), always_xy=True
    )
    lon2, lat2 = to_geo.transform(*np.meshgrid(rlon, rlat))
    rng = np.random.default_rng(1)
    ds = xr.Dataset(
        {
            "prw": (
                ("rlat", "rlon"),
                (5 + 20 * rng.random((16, 16))).astype("float32"),
                {"units": "kg m-2", "grid_mapping": "rotated_pole", "coordinates": "lat lon"},
            ),
            "rotated_pole": ((), np.int32(0), mapping),
        },
        coords={
            "rlat": ("rlat", rlat, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": ("rlon", rlon, {"standard_name": "grid_longitude", "units": "degrees"}),
            "lat": (
                ("rlat", "rlon"),
                lat2,
                {"standard_name": "latitude", "units": "degrees_north"},
            ),
            "lon": (
                ("rlat", "rlon"),
                lon2,
                {"standard_name": "longitude", "units": "degrees_east"},
            ),
        },
    )
    hr = ds.climdown.downscale(factor=2, constraint="softmax", model="bicubic")
    lr = hr.climdown.coarsen(2)
    assert (lr.prw - ds.prw).shape == ds.prw.shape
    np.testing.assert_array_equal(lr.rlat.values, ds.rlat.values)


def test_tidy_centres_removes_only_round_off() -> None:
    edges = np.array([-23.43, -22.99, -22.55])
    mid = 0.5 * (edges[:-1] + edges[1:])
    assert tidy_centres(mid, edges).tolist() == [-23.21, -22.77]
    thirds = np.array([1 / 3, 2 / 3])  # needs every digit: kept
    assert tidy_centres(thirds, np.array([1 / 6, 1 / 2, 5 / 6])).tolist() == thirds.tolist()
    # very coarse cells: 1e-9 of a 168 deg cell (1.7e-7 deg) is not round-off; a centre that
    # is 1e-7 from its 6-decimal neighbour stays where it is (hypothesis found such a grid)
    lon = np.array([1.6447091, 169.6447091])
    edges = np.array([-82.3552909, 85.6447091, 253.6447091])
    assert np.array_equal(tidy_centres(lon, edges), lon)


def test_float32_fine_binary_grid_keeps_its_exact_centres() -> None:
    """A float32 1/32 deg grid's centres (12.015625, ...) are exact: none is snapped away."""
    lat = 50.0 - 0.03125 * (np.arange(16) + 0.5)
    lon = 12.0 + 0.03125 * (np.arange(16) + 0.5)
    truth = _field(lat, lon, "float32")
    lr = truth.climdown.coarsen(2)
    hr = lr.climdown.downscale(factor=2, constraint="softmax", model="bicubic")
    np.testing.assert_array_equal(hr.lon.values, truth.lon.values)
    np.testing.assert_array_equal(hr.lat.values, truth.lat.values)
    assert (hr - truth).shape == truth.shape
