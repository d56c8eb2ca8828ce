"""Helpers for tests, docs and users: tiny grids, small CF-compliant fields, a no-compute guard.

Nothing here is used by the library itself; everything is small, deterministic and cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from climdown.errors import CoordinateError
from climdown.grid import (
    EARTH_RADIUS,
    ROTATED_POLE,
    CurvilinearGrid,
    Grid,
    GridMapping,
    Horizontal,
    add_cf_bounds,
    curvilinear_coords,
    find_horizontal,
    wrap_lon,
)
from climdown.units import CANONICAL

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "tiny_latlon",
    "tiny_grid",
    "random_field",
    "tcw_dataarray",
    "write_arco_like",
    "ARCO_ERA5",
    "raise_if_dask_computes",
    "rotated_pole_field",
    "polar_stereographic_field",
    "lambert_conformal_field",
]

#: The public ARCO-ERA5 store that :func:`write_arco_like` imitates.
ARCO_ERA5 = "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"

_LON_CONVENTIONS = ("0..360", "-180..180")


def tiny_latlon(
    nlat: int = 8,
    nlon: int = 16,
    *,
    descending: bool = True,
    lon_convention: str = "0..360",
    global_: bool = False,
    spacing: float = 0.25,
    origin: tuple[float, float] = (45.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes and longitudes (degrees) of a small regular grid.

    Parameters
    ----------
    nlat, nlon : int
        Number of rows and columns.
    descending : bool
        Latitudes from north to south, as ERA5 stores them.
    lon_convention : {"0..360", "-180..180"}
        How longitudes are written; a regional grid at ``origin`` longitude 0 crosses the
        meridian, so the two conventions give different-looking but equivalent grids.
    global_ : bool
        Cover the sphere with ``180 / nlat`` x ``360 / nlon`` deg cells (centres off the
        poles); ``spacing`` and ``origin`` are then ignored.
    spacing : float
        Regional grid spacing in degrees.
    origin : (lat, lon)
        Centre of the regional box in degrees.

    Returns
    -------
    lat, lon : numpy.ndarray
        float64 centres.
    """
    if lon_convention not in _LON_CONVENTIONS:
        raise CoordinateError(
            f"lon_convention {lon_convention!r} is unknown: expected one of {_LON_CONVENTIONS}"
        )
    if global_:
        dlat, dlon = 180.0 / nlat, 360.0 / nlon
        lat = -90.0 + dlat * (np.arange(nlat) + 0.5)
        lon = dlon * np.arange(nlon)
    else:
        lat = origin[0] + spacing * (np.arange(nlat) - (nlat - 1) / 2.0)
        lon = origin[1] + spacing * (np.arange(nlon) - (nlon - 1) / 2.0)
        if np.any(np.abs(lat) > 90.0):
            raise CoordinateError(
                f"{nlat} rows of {spacing} deg around latitude {origin[0]} leave the sphere; "
                "use fewer rows, a smaller spacing or global_=True"
            )
    lon = wrap_lon(lon, 0.0 if lon_convention == "0..360" else -180.0)
    if descending:
        lat = lat[::-1]
    return lat.astype(np.float64), lon.astype(np.float64)


def tiny_grid(nlat: int = 8, nlon: int = 16, **kwargs: Any) -> Grid:
    """A :class:`~climdown.grid.Grid` of :func:`tiny_latlon` (same keyword arguments)."""
    return Grid(*tiny_latlon(nlat, nlon, **kwargs))


def random_field(
    shape: tuple[int, ...],
    *,
    seed: int = 0,
    low: float = 1.0,
    high: float = 60.0,
    smooth: bool = True,
    dtype: Any = np.float32,
) -> np.ndarray:
    """A strictly positive random field in ``[low, high]`` (kg m-2-like values).

    With ``smooth=True`` the last two axes are spatially correlated (a 3 x 3 periodic box
    filter of uniform noise, rescaled), which looks more like TCW than white noise.
    """
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    if smooth and len(shape) >= 2:
        total = np.zeros(shape)
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                total += np.roll(np.roll(x, i, axis=-2), j, axis=-1)
        x = total
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi > lo else np.full(shape, 0.5)
    return (low + (high - low) * x).astype(dtype)


def tcw_dataarray(
    nlat: int = 8,
    nlon: int = 16,
    ntime: int = 2,
    *,
    lat_name: str = "lat",
    lon_name: str = "lon",
    descending: bool = True,
    lon_convention: str = "0..360",
    global_: bool = False,
    spacing: float = 0.25,
    origin: tuple[float, float] = (45.0, 0.0),
    units: str = CANONICAL,
    seed: int = 0,
    start: str = "2020-01-01",
    chunks: Any = None,
) -> xr.DataArray:
    """A small CF-compliant total column water DataArray ``tcw`` (time, lat, lon).

    Parameters
    ----------
    nlat, nlon, ntime : int
        Sizes.
    lat_name, lon_name : str
        Coordinate (and dimension) names, e.g. ``"latitude"``/``"longitude"`` for ERA5 style.
    descending, lon_convention, global_, spacing, origin
        As in :func:`tiny_latlon`.
    units : str
        The ``units`` attribute (values are not converted: use it to test unit handling).
    seed : int
        Seed of :func:`random_field`.
    start : str
        First hourly time.
    chunks : optional
        If given, the result is dask-backed with these chunks.

    Returns
    -------
    xarray.DataArray
        float32 values in ``[1, 60]``, ``units``, ``long_name``, ``short_name`` attributes;
        latitude/longitude with CF ``units`` and ``standard_name``.
    """
    import pandas as pd
    import xarray as xr

    lat, lon = tiny_latlon(
        nlat,
        nlon,
        descending=descending,
        lon_convention=lon_convention,
        global_=global_,
        spacing=spacing,
        origin=origin,
    )
    da = xr.DataArray(
        random_field((ntime, nlat, nlon), seed=seed),
        dims=("time", lat_name, lon_name),
        coords={
            "time": pd.date_range(start, periods=ntime, freq="1h"),
            lat_name: (lat_name, lat, {"units": "degrees_north", "standard_name": "latitude"}),
            lon_name: (lon_name, lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name="tcw",
        attrs={"units": units, "long_name": "Total column water", "short_name": "tcw"},
    )
    return da.chunk(chunks) if chunks is not None else da


def write_arco_like(
    path: str | os.PathLike[str],
    times: Any,
    *,
    spacing: float = 0.25,
    seed: int = 0,
    packing: Mapping[str, Any] | None = None,
    zarr_format: int = 2,
) -> xr.Dataset:
    """Write a small local zarr store laid out like ARCO-ERA5, and return what it holds.

    The layout of :data:`ARCO_ERA5`: ``total_column_water`` (``kg m**-2``, with the
    ``long_name`` and ``short_name`` of ARCO's) beside another variable (``2m_temperature``
    in K, as ARCO holds hundreds), both with dims ``(time, latitude, longitude)``; latitude
    from 90 down to -90 (descending, poles included), longitude from 0 to ``360 - spacing``;
    one time step per chunk, consolidated metadata in zarr format 2. A recipe or
    :func:`climdown.data.sources.open_era5` pointed at it meets what it would meet in the
    cloud, offline.

    Parameters
    ----------
    path : str or path
        The store to write (replaced if present).
    times : sequence of datetime-likes
        The time steps, e.g. ``pd.date_range("2020-01-01", periods=6, freq="1h")``.
    spacing : float
        Grid spacing in degrees (ARCO's is 0.25; must divide 90).
    seed : int
        Seed of the :func:`random_field` values (1 to 60 kg m-2, float32).
    packing : mapping, optional
        zarr encoding of ``total_column_water``, e.g. ``{"dtype": "int16", "scale_factor":
        0.002, "add_offset": 35.0, "_FillValue": -32767}`` for ERA5's packed integers.
    zarr_format : {2, 3}
        The zarr format written.

    Returns
    -------
    xarray.Dataset
        The dataset written (in memory, before any packing).
    """
    import pandas as pd
    import xarray as xr

    lat = np.linspace(90.0, -90.0, round(180.0 / spacing) + 1)
    lon = np.arange(round(360.0 / spacing)) * spacing
    time = pd.DatetimeIndex(times)
    shape = (time.size, lat.size, lon.size)
    dims = ("time", "latitude", "longitude")
    ds = xr.Dataset(
        {
            "total_column_water": (
                dims,
                random_field(shape, seed=seed),
                {"units": "kg m**-2", "long_name": "Total column water", "short_name": "tcw"},
            ),
            "2m_temperature": (dims, np.full(shape, 280.0, np.float32), {"units": "K"}),
        },
        coords={"time": time, "latitude": lat, "longitude": lon},
    )
    encoding: dict[str, dict[str, Any]] = {
        name: {"chunks": (1, lat.size, lon.size)}
        for name in ("total_column_water", "2m_temperature")
    }
    encoding["total_column_water"].update(packing or {})
    ds.to_zarr(
        os.fspath(path),
        zarr_format=zarr_format,
        consolidated=zarr_format == 2,
        encoding=encoding,
        mode="w",
    )
    return ds


# ---------------------------------------------------------------------------------------
# Regional model grids: rotated pole, polar stereographic, Lambert conformal
# ---------------------------------------------------------------------------------------
def _regional_dataset(
    coords: dict[str, Any],
    dims: tuple[str, str],
    mapping: GridMapping,
    ntime: int,
    seed: int,
    bounds: bool,
    chunks: Any,
    start: str,
) -> xr.Dataset:
    """A Dataset of ``tcw`` on native 1-D coords ``coords`` + ``mapping``, with 2-D lat/lon."""
    import pandas as pd
    import xarray as xr

    ny, nx = (np.asarray(v[1]).size for v in coords.values())
    base = xr.Dataset(coords={**coords, mapping.name: ((), np.int32(0), dict(mapping.attrs))})
    h = find_horizontal(base)
    grid = CurvilinearGrid.from_xarray(base, h)
    h = Horizontal("lat", "lon", h.dims, h.y, h.x, h.mapping, curvilinear=True)
    ds = xr.Dataset(
        {
            "tcw": xr.DataArray(
                random_field((ntime, ny, nx), seed=seed),
                dims=("time", *dims),
                attrs={
                    "units": CANONICAL,
                    "long_name": "Total column water",
                    "standard_name": "atmosphere_mass_content_of_water",
                    "grid_mapping": mapping.name,
                },
            )
        },
        coords={"time": pd.date_range(start, periods=ntime, freq="1h")},
        attrs={"Conventions": "CF-1.8", "title": "climdown test domain"},
    )
    ds = ds.assign_coords(curvilinear_coords(grid, h, base))
    if bounds:
        ds = add_cf_bounds(ds, grid)
    # only the field: coordinates and bounds stay numpy (the grid is read eagerly)
    return ds.assign(tcw=ds.tcw.chunk(chunks)) if chunks is not None else ds


def rotated_pole_field(
    nrlat: int = 16,
    nrlon: int = 16,
    ntime: int = 2,
    *,
    spacing: float = 0.44,
    pole: tuple[float, float] = (39.25, -162.0),
    centre: tuple[float, float] = (0.0, 0.0),
    bounds: bool = True,
    seed: int = 0,
    start: str = "2020-01-01",
    chunks: Any = None,
) -> xr.Dataset:
    """A EURO-CORDEX-like rotated-pole Dataset ``tcw`` (time, rlat, rlon), CF-compliant.

    Parameters
    ----------
    nrlat, nrlon, ntime : int
        Sizes.
    spacing : float
        Rotated-grid spacing in degrees (EURO-CORDEX: 0.44 or 0.11).
    pole : (grid_north_pole_latitude, grid_north_pole_longitude)
        Degrees; EURO-CORDEX's by default.
    centre : (rlat, rlon)
        Centre of the domain in the rotated frame (degrees).
    bounds : bool
        Write CF bounds (``rlat_bnds``, ``rlon_bnds``, ``lat_bnds``, ``lon_bnds``).
    seed, start, chunks
        As in :func:`tcw_dataarray`.

    Returns
    -------
    xarray.Dataset
        ``tcw`` in kg m-2 with ``grid_mapping: rotated_pole``; 1-D ``rlat``/``rlon``
        (``grid_latitude``/``grid_longitude``), 2-D ``lat``/``lon`` and the ``rotated_pole``
        grid mapping variable.
    """
    rlat = centre[0] + spacing * (np.arange(nrlat) - (nrlat - 1) / 2.0)
    rlon = centre[1] + spacing * (np.arange(nrlon) - (nrlon - 1) / 2.0)
    mapping = GridMapping(
        "rotated_pole",
        {
            "grid_mapping_name": ROTATED_POLE,
            "grid_north_pole_latitude": float(pole[0]),
            "grid_north_pole_longitude": float(pole[1]),
            "north_pole_grid_longitude": 0.0,
        },
    )
    coords = {
        "rlat": (
            "rlat",
            rlat,
            {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"},
        ),
        "rlon": (
            "rlon",
            rlon,
            {"standard_name": "grid_longitude", "units": "degrees", "axis": "X"},
        ),
    }
    return _regional_dataset(coords, ("rlat", "rlon"), mapping, ntime, seed, bounds, chunks, start)


def _projected_field(
    mapping: GridMapping,
    ny: int,
    nx: int,
    spacing: float,
    centre: tuple[float, float],
    **kwargs: Any,
) -> xr.Dataset:
    y = centre[0] + spacing * (np.arange(ny) - (ny - 1) / 2.0)
    x = centre[1] + spacing * (np.arange(nx) - (nx - 1) / 2.0)
    coords = {
        "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
    }
    return _regional_dataset(coords, ("y", "x"), mapping, **kwargs)


def polar_stereographic_field(
    ny: int = 16,
    nx: int = 16,
    ntime: int = 2,
    *,
    spacing: float = 25_000.0,
    centre: tuple[float, float] = (0.0, 0.0),
    bounds: bool = True,
    seed: int = 0,
    start: str = "2020-01-01",
    chunks: Any = None,
) -> xr.Dataset:
    """A north polar stereographic Dataset ``tcw`` (time, y, x) on a sphere of radius 6371 km.

    Parameters
    ----------
    ny, nx, ntime : int
        Sizes.
    spacing : float
        Grid spacing in metres (in the plane, true at 70 N).
    centre : (y, x)
        Centre of the domain in the plane (metres); (0, 0) is the pole.
    bounds, seed, start, chunks
        As in :func:`rotated_pole_field`.

    Returns
    -------
    xarray.Dataset
        1-D projection ``y``/``x`` (m), 2-D ``lat``/``lon`` and their bounds computed with
        pyproj, and the ``polar_stereographic`` grid mapping variable ``crs``.

    Raises
    ------
    ImportError
        Without pyproj (``pip install climdown[regional]``).
    """
    _need_pyproj("polar_stereographic_field")
    mapping = GridMapping(
        "crs",
        {
            "grid_mapping_name": "polar_stereographic",
            "straight_vertical_longitude_from_pole": -45.0,
            "latitude_of_projection_origin": 90.0,
            "standard_parallel": 70.0,
            "false_easting": 0.0,
            "false_northing": 0.0,
            "earth_radius": EARTH_RADIUS,
        },
    )
    return _projected_field(
        mapping,
        ny,
        nx,
        spacing,
        centre,
        ntime=ntime,
        seed=seed,
        bounds=bounds,
        chunks=chunks,
        start=start,
    )


def lambert_conformal_field(
    ny: int = 16,
    nx: int = 16,
    ntime: int = 2,
    *,
    spacing: float = 12_000.0,
    centre: tuple[float, float] = (0.0, 0.0),
    bounds: bool = True,
    seed: int = 0,
    start: str = "2020-01-01",
    chunks: Any = None,
) -> xr.Dataset:
    """A WRF-like Lambert conformal conic Dataset ``tcw`` (time, y, x) over central Europe.

    Standard parallels 30 and 60 N, central meridian 10 E, origin at 50 N, on a sphere of
    radius 6371 km; ``spacing`` in metres. Otherwise as :func:`polar_stereographic_field`.
    """
    _need_pyproj("lambert_conformal_field")
    mapping = GridMapping(
        "crs",
        {
            "grid_mapping_name": "lambert_conformal_conic",
            "standard_parallel": [30.0, 60.0],
            "longitude_of_central_meridian": 10.0,
            "latitude_of_projection_origin": 50.0,
            "false_easting": 0.0,
            "false_northing": 0.0,
            "earth_radius": EARTH_RADIUS,
        },
    )
    return _projected_field(
        mapping,
        ny,
        nx,
        spacing,
        centre,
        ntime=ntime,
        seed=seed,
        bounds=bounds,
        chunks=chunks,
        start=start,
    )


def _need_pyproj(what: str) -> None:
    try:
        import pyproj  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs pyproj to compute latitude/longitude: pip install climdown[regional]"
        ) from exc


class _CountingScheduler:
    """A dask scheduler that counts computations and raises past a limit."""

    def __init__(self, max_computes: int) -> None:
        self.max_computes = max_computes
        self.total_computes = 0

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        import dask

        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"dask computed {self.total_computes} time(s) where at most "
                f"{self.max_computes} were allowed: something is not lazy"
            )
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Context manager under which any dask computation beyond ``max_computes`` raises.

    Use it to prove that a function stays lazy::

        with raise_if_dask_computes():
            out = coarsen_dataarray(da_dask, 4)   # raises RuntimeError if it computes

    Yields the scheduler, whose ``total_computes`` tells how many computations happened.
    """
    import dask

    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler
