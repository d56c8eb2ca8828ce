"""The public test helpers: tiny grids, CF fields and the no-compute guard do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from climdown.errors import CoordinateError
from climdown.grid import EARTH_RADIUS, coarsen_dataarray, find_latlon
from climdown.testing import (
    raise_if_dask_computes,
    random_field,
    tcw_dataarray,
    tiny_grid,
    tiny_latlon,
)


def test_tiny_latlon_orders_and_conventions():
    lat, lon = tiny_latlon(4, 8)
    assert np.all(np.diff(lat) < 0)  # descending by default, like ERA5
    assert np.all((lon >= 0) & (lon < 360))
    lat_up, lon_pm = tiny_latlon(4, 8, descending=False, lon_convention="-180..180")
    assert np.all(np.diff(lat_up) > 0)
    assert lon_pm.min() < 0 < lon_pm.max()  # the default box straddles the meridian
    np.testing.assert_allclose(np.sort(lon_pm % 360), np.sort(lon))
    with pytest.raises(CoordinateError, match="lon_convention"):
        tiny_latlon(lon_convention="east")
    with pytest.raises(CoordinateError, match="leave the sphere"):
        tiny_latlon(400, 4, spacing=1.0)


def test_tiny_grid_global_covers_the_sphere_and_regional_does_not():
    g = tiny_grid(6, 12, global_=True)
    assert g.periodic
    np.testing.assert_allclose(g.area.sum(), 4 * np.pi * EARTH_RADIUS**2, rtol=1e-12)
    r = tiny_grid(6, 12)
    assert not r.periodic
    assert r.area.sum() < 1e-3 * g.area.sum()


def test_random_field_positive_in_range_and_smooth():
    x = random_field((2, 16, 16), seed=1, low=2.0, high=5.0)
    assert x.dtype == np.float32 and x.min() >= 2.0 and x.max() <= 5.0
    rough = random_field((2, 16, 16), seed=1, smooth=False)
    smooth = random_field((2, 16, 16), seed=1)

    def lag1(a: np.ndarray) -> float:
        return float(np.corrcoef(a[..., :-1].ravel(), a[..., 1:].ravel())[0, 1])

    assert lag1(smooth) > 0.5 > lag1(rough)


def test_tcw_dataarray_era5_style_names_and_cf_attrs():
    da = tcw_dataarray(4, 8, 3, lat_name="latitude", lon_name="longitude", units="kg m**-2")
    assert da.dims == ("time", "latitude", "longitude")
    assert find_latlon(da) == ("latitude", "longitude")
    assert da.attrs["units"] == "kg m**-2"
    assert da["latitude"].attrs["standard_name"] == "latitude"
    assert da.dtype == np.float32 and float(da.min()) > 0


def test_raise_if_dask_computes_catches_compute_and_allows_lazy_work():
    da = tcw_dataarray(8, 8, 2, chunks={"time": 1})
    with raise_if_dask_computes():
        lazy = coarsen_dataarray(da, 2)  # lazy maths passes
    with pytest.raises(RuntimeError, match="not lazy"):
        with raise_if_dask_computes():
            lazy.values  # noqa: B018 - computing is the point
    with raise_if_dask_computes(max_computes=1) as scheduler:
        lazy.values  # noqa: B018
    assert scheduler.total_computes == 1
