"""CF cell bounds: read in either vertex order, refused when inconsistent, written on every output.

Tables: bounds that describe the grid's cells, written the ways files write them ((high, low)
or (low, high) on ascending and descending axes, longitudes in the other convention, float32),
all give the same cells and the same downscaled field as no bounds at all; bounds that do not
(a centre outside its cell, gaps, overlaps, beyond the poles, zero width, more than the circle,
non-monotonic) are a ``CoordinateError`` naming the problem. Every Dataset that downscale and
coarsen return carries CF bounds of its cells, which read back to exactly the cells climdown
used: conservation and a pole-centred global round trip hold with areas computed here by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import xarray as xr

import climdown  # noqa: F401  (the .climdown accessor)
from climdown.conservation import assert_conserves, conservation
from climdown.errors import CoordinateError
from climdown.grid import Grid
from climdown.inference import Downscaler, downscale

R = 6_371_000.0
F = 4


def cells(c: np.ndarray, clip: bool = False) -> np.ndarray:
    """``[n, 2]`` bounds midway between the centres, vertices in the coordinate's direction."""
    c = np.asarray(c, dtype=np.float64)
    d = np.diff(c)
    edges = np.concatenate([[c[0] - d[0] / 2], (c[:-1] + c[1:]) / 2, [c[-1] + d[-1] / 2]])
    if clip:
        edges = np.clip(edges, -90.0, 90.0)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def with_bounds(ds: xr.Dataset, lat_b: np.ndarray, lon_b: np.ndarray) -> xr.Dataset:
    out = ds.assign(lat_bnds=(("lat", "bnds"), lat_b), lon_bnds=(("lon", "bnds"), lon_b))
    out.lat.attrs["bounds"] = "lat_bnds"
    out.lon.attrs["bounds"] = "lon_bnds"
    return out


def hand_area(lat_b: np.ndarray, lon_b: np.ndarray) -> np.ndarray:
    """Cell areas (m^2) from ``[n, 2]`` bounds: R^2 |dlon| |sin(lat2) - sin(lat1)|, written here."""
    band = np.abs(np.sin(np.deg2rad(lat_b[:, 1])) - np.sin(np.deg2rad(lat_b[:, 0])))
    width = np.abs(np.deg2rad(((lon_b[:, 1] - lon_b[:, 0]) + 180.0) % 360.0 - 180.0))
    return R**2 * band[:, None] * width[None, :]


@pytest.fixture(scope="module")
def rhine(rhine_ds: xr.Dataset) -> xr.Dataset:
    """Real ERA5, 12 x 14 cells at 0.25 deg, latitude descending, two hours."""
    ds = rhine_ds.rename(latitude="lat", longitude="lon")  # the names these tests write
    return ds.isel(time=[0, 7], lat=slice(3, 15), lon=slice(5, 19))


def _run(ds: xr.Dataset) -> xr.Dataset:
    return downscale(ds, F, "softmax", model="bicubic")


# ----------------------------------------------------------------------------- honoured
def _asc(ds: xr.Dataset) -> xr.Dataset:
    return ds.sortby("lat")


def _wrapped(b: np.ndarray) -> np.ndarray:
    return b % 360.0  # (359.875, 0.125): the cell round meridian 0 in 0..360


VALID: list[tuple[str, Callable, Callable, Callable]] = [
    # id, how the field is stored, lat bounds from cells(lat), lon bounds from cells(lon)
    ("cdo-high-low", lambda ds: ds, lambda b: b, lambda b: b),
    ("lat-low-high-on-descending", lambda ds: ds, lambda b: b[:, ::-1], lambda b: b),
    ("lon-high-low", lambda ds: ds, lambda b: b, lambda b: b[:, ::-1]),
    ("lat-low-high-on-ascending", _asc, lambda b: b, lambda b: b),
    ("lat-high-low-on-ascending", _asc, lambda b: b[:, ::-1], lambda b: b),
    ("lon-vertices-wrapped", lambda ds: ds, lambda b: b, _wrapped),
    ("float32", lambda ds: ds, lambda b: b.astype(np.float32), lambda b: b.astype(np.float32)),
]


@pytest.mark.parametrize(
    ("store", "lat_v", "lon_v"), [v[1:] for v in VALID], ids=[v[0] for v in VALID]
)
def test_bounds_in_either_vertex_order_give_the_same_cells(
    rhine: xr.Dataset, store: Callable, lat_v: Callable, lon_v: Callable
) -> None:
    plain = store(rhine.assign_coords(lon=rhine.lon - 2.0))  # -0.75..2.5 E: across meridian 0
    ds = with_bounds(plain, lat_v(cells(plain.lat.values)), lon_v(cells(plain.lon.values)))
    g, g0 = Grid.from_xarray(ds), Grid.from_xarray(plain)
    np.testing.assert_allclose(g.lat_b, g0.lat_b, atol=1e-5)
    np.testing.assert_allclose(g.lon_b, g0.lon_b, atol=1e-5)
    hr = _run(ds)
    ref = _run(plain)
    # the fine latitudes run one way, each inside its coarse cell, none twice
    lat = hr.lat.values
    step = np.sign(plain.lat.values[1] - plain.lat.values[0])
    assert np.all(np.diff(lat) * step > 0)
    parent = np.repeat(np.arange(plain.sizes["lat"]), F)
    lo = np.minimum(g0.lat_b[:-1], g0.lat_b[1:])
    hi = np.maximum(g0.lat_b[:-1], g0.lat_b[1:])
    assert np.all((lat > lo[parent]) & (lat < hi[parent]))
    # the same field as without bounds, and the DataArray path agrees with the Dataset's
    np.testing.assert_allclose(hr.tcw.values, ref.tcw.values, rtol=0, atol=1e-4)
    np.testing.assert_allclose(_run(ds["tcw"].to_dataset()).tcw.values, hr.tcw.values, atol=1e-4)
    da_hr = downscale(ds["tcw"], F, "softmax", model="bicubic")
    np.testing.assert_allclose(da_hr.values, hr.tcw.values, rtol=0, atol=1e-4)
    np.testing.assert_allclose(da_hr.lat.values, hr.lat.values, atol=1e-9)
    # the package's own output checks out against its input, block by block
    report = ds.climdown.conservation(hr)
    assert float(np.abs(report.mass_rel_diff).max()) < 1e-6
    ds.climdown.assert_conserves(hr, rtol=1e-5)


# ----------------------------------------------------------------------------- refused
def _shift5(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    return lat_b + 5.0, lon_b


def _gap(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    lat_b = lat_b.copy()
    lat_b[3, 1] += 0.1  # cell 3's southern edge moves north: a gap before cell 4
    return lat_b, lon_b


def _overlap(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    lat_b = lat_b.copy()
    lat_b[3, 1] -= 0.1  # ... and south: cell 3 reaches into cell 4
    return lat_b, lon_b


def _lon_gap(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    lon_b = lon_b.copy()
    lon_b[6, 0] += 0.05
    return lat_b, lon_b


def _zero(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    lat_b = lat_b.copy()
    lat_b[2, 1] = lat_b[2, 0]
    return lat_b, lon_b


def _nan(lat_b: np.ndarray, lon_b: np.ndarray) -> tuple:
    lon_b = lon_b.copy()
    lon_b[0, 0] = np.nan
    return lat_b, lon_b


REFUSED = [
    ("centre-outside-by-5-deg", _shift5, "do not contain their centres"),
    ("gap", _gap, "leave a gap of 0.1 deg between cell 3"),
    ("overlap", _overlap, "latitude bounds overlap of 0.1 deg between cell 3"),
    ("lon-gap", _lon_gap, "longitude bounds leave a gap"),
    ("zero-width", _zero, "zero width"),
    ("nan", _nan, "NaN"),
]


@pytest.mark.parametrize(("spoil", "match"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_inconsistent_bounds_are_refused(rhine: xr.Dataset, spoil: Callable, match: str) -> None:
    good = (cells(rhine.lat.values), cells(rhine.lon.values))
    ds = with_bounds(rhine, *spoil(*good))
    for call in (
        lambda: Grid.from_xarray(ds),
        lambda: _run(ds),
        lambda: _run(ds.chunk(time=1)),
        lambda: ds.climdown.coarsen(2),
    ):
        with pytest.raises(CoordinateError, match=match):
            call()
    with pytest.raises(CoordinateError, match="(?i)fix the bounds"):
        Grid.from_xarray(ds)
    # contrast: the same bounds, unspoilt, are read
    Grid.from_xarray(with_bounds(rhine, *good))


def test_bounds_not_laid_out_as_cf_are_refused(rhine: xr.Dataset) -> None:
    ds = with_bounds(rhine, cells(rhine.lat.values), cells(rhine.lon.values))
    flipped = ds.assign(lat_bnds=(("bnds", "lat"), ds.lat_bnds.values.T))
    with pytest.raises(CoordinateError, match=r"has dims \('bnds', 'lat'\); CF bounds are"):
        Grid.from_xarray(flipped)
    three = ds.drop_vars("lat_bnds").assign(
        lat_bnds=(("lat", "nv3"), np.c_[ds.lat_bnds.values, ds.lat.values])
    )
    with pytest.raises(CoordinateError, match=r"must have shape \(12, 2\)"):
        Grid.from_xarray(three)


@pytest.fixture(scope="module")
def globe(global_ds: xr.Dataset) -> xr.Dataset:
    """Real global ERA5 at 1.5 deg: 121 rows with centres on the poles, 240 columns."""
    return global_ds.rename(latitude="lat", longitude="lon")


def test_bounds_beyond_the_poles_are_refused(globe: xr.Dataset) -> None:
    unclipped = with_bounds(globe, cells(globe.lat.values), cells(globe.lon.values))
    assert unclipped.lat_bnds.values[0, 0] == 90.75
    with pytest.raises(CoordinateError, match="beyond the poles"):
        _run(unclipped)
    clipped = with_bounds(globe, cells(globe.lat.values, clip=True), cells(globe.lon.values))
    _run(clipped)  # contrast: half-height polar caps


def test_cells_covering_more_than_the_circle_are_refused(globe: xr.Dataset) -> None:
    extra = xr.concat(
        [globe, globe.isel(lon=[0]).assign_coords(lon=[360.0])], dim="lon", data_vars="all"
    )
    ds = with_bounds(extra, cells(extra.lat.values, clip=True), cells(extra.lon.values))
    with pytest.raises(CoordinateError, match="more than the full circle"):
        Grid.from_xarray(ds)


def test_non_monotonic_cells_are_refused(rhine: xr.Dataset) -> None:
    ds = with_bounds(rhine, cells(rhine.lat.values), cells(rhine.lon.values))
    order = [0, 2, 1, *range(3, rhine.sizes["lat"])]
    with pytest.raises(CoordinateError, match="strictly monotonic"):
        Grid.from_xarray(ds.isel(lat=order))
    # explicit edges of a Grid are held to the same rules
    lat = rhine.lat.values
    edges = np.concatenate([cells(lat)[:, 0], cells(lat)[-1:, 1]])
    Grid(lat, rhine.lon.values, lat_b=edges)  # contrast
    swapped = edges.copy()
    swapped[[2, 3]] = swapped[[3, 2]]
    with pytest.raises(CoordinateError, match="not strictly monotonic"):
        Grid(lat, rhine.lon.values, lat_b=swapped)
    with pytest.raises(CoordinateError, match="do not contain their centres"):
        Grid(lat, rhine.lon.values, lat_b=edges + 1.0)
    with pytest.raises(CoordinateError, match="beyond the poles"):
        Grid([89.5, 90.0], [0.0, 1.0], lat_b=[89.0, 89.75, 90.5])


# ----------------------------------------------------------------------------- written
def test_every_output_dataset_carries_the_cells_climdown_used(rhine: xr.Dataset) -> None:
    # irregular but valid cells: the last row twice as tall, so the bounds matter
    lat_b = cells(rhine.lat.values)
    lat_b[-1, 1] -= 0.25
    ds = with_bounds(rhine, lat_b, cells(rhine.lon.values))
    hr = _run(ds)
    for name in ("lat", "lon"):
        assert hr[name].attrs["bounds"] == f"{name}_bnds"
        assert hr[f"{name}_bnds"].dims == (name, "bnds")
    g = Grid.from_xarray(ds)
    np.testing.assert_array_equal(Grid.from_xarray(hr).lat_b, g.refine(F).lat_b)
    np.testing.assert_array_equal(hr.lat_bnds.values[::F, 0], lat_b[:, 0])  # coarse edges
    # mass in kg with areas computed here from the written bounds: the same on both grids
    m_lr = (ds.tcw.values * hand_area(lat_b, ds.lon_bnds.values)).sum((-1, -2))
    m_hr = (hr.tcw.values * hand_area(hr.lat_bnds.values, hr.lon_bnds.values)).sum((-1, -2))
    np.testing.assert_allclose(m_hr, m_lr, rtol=1e-6)
    ds.climdown.assert_conserves(hr, rtol=1e-5)
    # contrast: the fine field's DataArray alone has lost the bounds (xarray drops them), so
    # its cells inferred from the centres are not the ones used, and conservation says so
    with pytest.raises(CoordinateError, match="not the LR grid refined"):
        conservation(hr.tcw, ds.tcw)
    assert_conserves(hr.tcw, ds.tcw, grid=g)  # given the cells, it checks out
    # the DataArray path agrees with the Dataset path when given the cells
    np.testing.assert_allclose(
        Downscaler("bicubic", factor=F)(ds.tcw, grid=g).values, hr.tcw.values, atol=1e-4
    )
    # coarsening returns the input's cells, with their bounds
    back = hr.climdown.coarsen(F)
    np.testing.assert_allclose(back.lat_bnds.values, lat_b, atol=1e-9)
    np.testing.assert_allclose(back.tcw.values, ds.tcw.values, rtol=1e-5)
    np.testing.assert_allclose(back.lat.values[:-1], ds.lat.values[:-1], atol=1e-9)
    assert back.lat.values[-1] == pytest.approx(lat_b[-1].mean())  # the taller cell's middle


@pytest.mark.parametrize("vertex_order", ["high-low", "low-high", "none"])
def test_pole_centred_global_grid_round_trips(globe: xr.Dataset, vertex_order: str) -> None:
    lat_b = cells(globe.lat.values, clip=True)  # half-height polar caps: [90, 89.25]
    assert lat_b[0].tolist() == [90.0, 89.25]
    if vertex_order == "low-high":
        lat_b = lat_b[:, ::-1]
    ds = globe if vertex_order == "none" else with_bounds(globe, lat_b, cells(globe.lon.values))
    hr = downscale(ds, F, "softmax", model="bicubic")
    fine = hr.lat.values
    assert np.all(np.diff(fine) < 0) and fine.size == 121 * F
    assert 89.25 < fine[F - 1] < fine[0] < 90.0  # the cap's fine rows stay in the cap
    assert hr.lat_bnds.values[0].tolist() == [90.0, 90.0 - 0.75 / F]
    # conserved, with areas from the written bounds, by hand
    m_lr = (globe.tcwv.values * hand_area(lat_b, cells(globe.lon.values))).sum((-1, -2))
    m_hr = (hr.tcwv.values * hand_area(hr.lat_bnds.values, hr.lon_bnds.values)).sum((-1, -2))
    np.testing.assert_allclose(m_hr, m_lr, rtol=1e-6)
    ds.climdown.assert_conserves(hr, rtol=1e-5)
    # coarsened back: the input's centres (on the poles), cells and values
    back = hr.climdown.coarsen(F)
    np.testing.assert_array_equal(back.lat.values, globe.lat.values)
    np.testing.assert_allclose(back.lon.values, globe.lon.values, atol=1e-9)
    np.testing.assert_allclose(np.sort(back.lat_bnds.values, 1), np.sort(lat_b, 1), atol=1e-9)
    np.testing.assert_allclose(back.tcwv.values, globe.tcwv.values, rtol=1e-5)
    # read back by any CF reader: the written bounds are the cells of the fine grid
    np.testing.assert_array_equal(Grid.from_xarray(hr).lat_b, Grid.from_xarray(ds).refine(F).lat_b)
