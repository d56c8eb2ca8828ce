"""Hypothesis properties of area-weighted coarsening: constants stay, mass is kept, backends agree."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from climdown.grid import Box, Grid, coarsen, coarsen_dataarray, total_mass, wrap_lon
from climdown.testing import raise_if_dask_computes

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def grids(draw, max_blocks: int = 4):
    """A random regular grid and a factor that divides it.

    Regional or global, latitudes ascending or descending (global ones with or without pole
    rows), longitudes 0..360 or -180..180 (regional ones may cross the date line/Greenwich).
    """
    factor = draw(st.integers(2, 8))
    n_lat = factor * draw(st.integers(1, max_blocks))
    n_lon = factor * draw(st.integers(1, max_blocks))
    kind = draw(st.sampled_from(["regional", "global", "global_poles"]))
    if kind == "regional":
        dlat = draw(st.floats(0.05, 180.0 / n_lat))
        lo = -90.0 + dlat / 2
        hi = 90.0 - dlat * (n_lat - 0.5)
        lat0 = draw(st.floats(lo, max(lo, hi)))
        lat = lat0 + dlat * np.arange(n_lat)
        dlon = draw(st.floats(0.05, 359.0 / n_lon))
        lon0 = draw(st.floats(-180.0, 180.0))
    elif kind == "global":
        dlat = 180.0 / n_lat
        lat = -90.0 + dlat * (np.arange(n_lat) + 0.5)
        dlon = 360.0 / n_lon
        lon0 = draw(st.sampled_from([0.0, 0.5 * dlon, -180.0, -180.0 + 0.5 * dlon]))
    else:  # rows on the poles, like ERA5's 721 rows (half-height caps after clipping)
        lat = np.linspace(-90.0, 90.0, n_lat)
        dlon = 360.0 / n_lon
        lon0 = draw(st.sampled_from([0.0, -180.0]))
    lat = np.clip(lat, -90.0, 90.0)
    if draw(st.booleans()):
        lat = lat[::-1]
    lon = lon0 + dlon * np.arange(n_lon)
    convention = draw(st.sampled_from(["0..360", "-180..180"]))
    lon = wrap_lon(lon, 0.0 if convention == "0..360" else -180.0)
    return Grid(lat, lon), factor


def _field(grid: Grid, seed: int, lead: tuple[int, ...] = ()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 70.0, size=(*lead, *grid.shape))


@SETTINGS
@given(
    grids(),
    st.just(0.0) | st.floats(1e-30, 1e3),  # no float32 subnormals
    st.sampled_from([np.float64, np.float32]),
)
def test_coarsening_a_constant_returns_the_constant(gf, value, dtype):
    g, f = gf
    y = np.full(g.shape, value, dtype=dtype)
    x = coarsen(y, g.area.astype(dtype), f)
    assert x.shape == (g.shape[0] // f, g.shape[1] // f)
    rtol = 1e-12 if dtype is np.float64 else 1e-5
    np.testing.assert_allclose(x, dtype(value), rtol=rtol, atol=0)


@SETTINGS
@given(grids(), st.integers(0, 2**32 - 1))
def test_total_mass_is_kept_by_coarsening(gf, seed):
    g, f = gf
    y = _field(g, seed, lead=(2,))
    m_fine = total_mass(y, g.area)
    m_coarse = total_mass(coarsen(y, g.area, f), g.coarsen(f).area)
    np.testing.assert_allclose(m_coarse, m_fine, rtol=1e-12, atol=0)
    # and the coarse grid covers exactly the same surface
    np.testing.assert_allclose(g.coarsen(f).area.sum(), g.area.sum(), rtol=1e-13)


@SETTINGS
@given(grids(), st.integers(0, 2**32 - 1))
def test_unweighted_mean_breaks_mass_when_latitudes_span_widely(gf, seed):
    """The contrast case: plain block means are not conserving (so the property above can fail)."""
    g, f = gf
    lat_b = g.lat_b
    # only meaningful where a block spans a sizeable range of cos(lat)
    band = np.abs(np.diff(np.sin(np.deg2rad(lat_b))))
    if band.max() / band.min() < 1.5:
        return
    # a field that grows toward the cells with small area makes the plain mean overweight them
    y = np.broadcast_to((1.0 / band)[:, None], g.shape).copy()
    n_lat, n_lon = g.shape
    plain = y.reshape(n_lat // f, f, n_lon // f, f).mean(axis=(1, 3))
    m_fine = total_mass(y, g.area)
    m_plain = total_mass(plain, g.coarsen(f).area)
    m_weighted = total_mass(coarsen(y, g.area, f), g.coarsen(f).area)
    assert abs(m_weighted / m_fine - 1) < 1e-12
    if not np.allclose(band.reshape(-1, f), band.reshape(-1, f)[:, :1], rtol=1e-3):
        assert abs(m_plain / m_fine - 1) > 1e-6


@SETTINGS
@given(grids(), st.integers(0, 2**32 - 1))
def test_refine_then_coarsen_gives_back_the_grid(gf, seed):
    g, f = gf
    back = g.refine(f).coarsen(f)
    np.testing.assert_allclose(back.lat_b, g.lat_b, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.lon_b, g.lon_b, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.area, g.area, rtol=1e-12)
    assert back.periodic == g.periodic
    # centres: same meridians (180 and -180 are the same)
    np.testing.assert_allclose((back.lon - g.lon + 180.0) % 360.0 - 180.0, 0.0, atol=1e-9)
    # fine field -> coarse mass is the same whether measured on g or on refine().coarsen()
    y = _field(g.refine(f), seed)
    np.testing.assert_allclose(
        total_mass(coarsen(y, g.refine(f).area, f), g.area),
        total_mass(y, g.refine(f).area),
        rtol=1e-12,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids(max_blocks=3), st.integers(0, 2**32 - 1), st.integers(1, 9))
def test_numpy_torch_dask_and_xarray_agree(gf, seed, chunk):
    g, f = gf
    y = _field(g, seed, lead=(2,))
    ref = coarsen(y, g.area, f)

    got_torch = coarsen(torch.from_numpy(y), torch.from_numpy(g.area), f)
    np.testing.assert_allclose(got_torch.numpy(), ref, rtol=1e-13, atol=0)

    yd = dsa.from_array(y, chunks=(1, chunk, chunk))
    with raise_if_dask_computes():
        got_dask = coarsen(yd, dsa.from_array(g.area, chunks=chunk), f)
        mass_dask = total_mass(got_dask, g.coarsen(f).area)
        da = xr.DataArray(yd, dims=("time", "lat", "lon"), coords={"lat": g.lat, "lon": g.lon})
        got_xr = coarsen_dataarray(da, f)
    assert isinstance(got_dask, dsa.Array) and isinstance(got_xr.data, dsa.Array)
    np.testing.assert_allclose(got_dask.compute(), ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got_xr.values, ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got_xr["lat"].values, g.coarsen(f).lat)
    np.testing.assert_allclose(got_xr["lon"].values, g.coarsen(f).lon)
    np.testing.assert_allclose(mass_dask.compute(), total_mass(y, g.area), rtol=1e-12)


@SETTINGS
@given(
    st.integers(0, 359),
    st.integers(1, 359),
    st.integers(-3, 3),
    st.sampled_from([0.0, -180.0]),
    st.sampled_from([1.0, 2.5, 3.0]),
)
def test_box_selects_the_same_cells_whatever_the_conventions(west, span, turns, start, dlon):
    """A box and a grid written in any longitude convention select the same eastward run."""
    lon = wrap_lon(0.5 * dlon + dlon * np.arange(int(360 / dlon)), start)
    lat = np.array([10.0, 0.0, -10.0])
    ref_rows, ref_cols = Box(-5.0, 15.0, float(west), float(west + span)).indices(lat, lon % 360)
    shifted = Box(-5.0, 15.0, west + 360.0 * turns, west + span + 360.0 * turns)
    rows, cols = shifted.indices(lat, lon)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(cols, ref_cols)  # same columns, same (eastward) order
    inside = wrap_lon(lon[cols] - west)  # degrees east of the box's western edge
    assert np.all(inside <= span) and np.all(np.diff(inside) > 0)
    outside = np.setdiff1d(np.arange(lon.size), cols)
    assert np.all(wrap_lon(lon[outside] - west) > span)
    if turns > 0 and cols.size:  # contrast: raw comparisons depend on how the box is written
        assert not np.any((lon >= shifted.lon_min) & (lon <= shifted.lon_max))
