"""The sphere: cell bounds, exact cell areas (m^2), area-weighted coarsening and mass in kg.

This module is the single source of truth for what "mass" means in climdown. Every other
module that coarsens, conserves or budgets a field calls the functions here.

Conventions
-----------
* Grids are described by 1-D cell centres (latitude and longitude in degrees). Bounds are the
  midpoints between neighbouring centres; the outer bounds are extrapolated by half a spacing
  and latitudes are clipped to +-90 deg, so a global grid whose rows sit on the poles (ERA5's
  721 rows, or 1.5 deg with 121 rows) gets half-height polar caps. Explicit bounds can be given
  instead: CF ``bounds`` variables are read by :meth:`Grid.from_xarray` in either vertex order
  and refused when they are inconsistent (a centre outside its cell, gaps or overlaps between
  cells, latitudes beyond the poles, non-monotonic cells); :func:`add_cf_bounds` writes them,
  and :func:`cf_coordinate_attrs` the CF attributes of the coordinates they bound.
* Latitudes may be ascending or descending (ERA5 stores them descending); longitudes may be
  0..360 or -180..180 and may cross the date line. The order in which rows and columns are
  stored is a grid's :class:`Orientation` (:attr:`Grid.orientation`).
* The area of a cell is exact on a sphere of radius R = 6371 km:
  ``A = R^2 * dlon * |sin(lat2) - sin(lat1)|`` (radians).
* Area-weighted coarsening by an integer factor f averages each f x f block with area weights:
  ``x = sum(A_i y_i) / sum(A_i)``. It conserves mass: ``sum(A_coarse x) = sum(A_i y_i)``,
  because the coarse cell's area is the sum of its fine cells' areas.

The array functions (:func:`block_sum`, :func:`block_expand`, :func:`coarsen`,
:func:`block_weights`, :func:`total_mass`) work unchanged on numpy arrays, torch tensors and
dask arrays: the maths is written once with ``reshape`` and ``sum``. The xarray functions
(:func:`coarsen_dataarray`, :func:`mass_dataarray`) reuse the same formulas with xarray's
lazy block reduction. Nothing here imports torch or xarray at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from climdown import sphere as _sphere
from climdown.errors import CoordinateError, GridShapeError
from climdown.validate import factor as validate_factor
from climdown.validate import number

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "EARTH_RADIUS",
    "like_dtype",
    "tidy_centres",
    "Grid",
    "lat_bounds",
    "lon_bounds",
    "cell_area",
    "FineAreas",
    "as_blocks",
    "from_blocks",
    "block_sum",
    "block_expand",
    "block_weights",
    "coarsen",
    "total_mass",
    "find_latlon",
    "grid_of",
    "coarsen_dataarray",
    "mass_dataarray",
    "area_dataarray",
    "mass_over",
    "check_factor",
    "infer_factor",
    "wrap_lon",
    "Box",
    "Orientation",
    "ERA5_ORIENTATION",
    "bounds_from_cf",
    "add_cf_bounds",
    "cf_coordinate_attrs",
    "NO_FILL",
    "CurvilinearGrid",
    "GridMapping",
    "Horizontal",
    "ROTATED_POLE",
    "find_horizontal",
    "curvilinear_coords",
    "great_circle_deg",
    "AnyGrid",
    "infer_corners",
    "corners_from_cf",
]

#: Mean Earth radius in metres (the sphere climdown's areas are computed on).
EARTH_RADIUS = 6_371_000.0

_LAT_NAMES = ("lat", "latitude", "nav_lat", "y_lat", "rlat_centers", "XLAT")
_LON_NAMES = ("lon", "longitude", "nav_lon", "x_lon", "rlon_centers", "XLONG")


# ---------------------------------------------------------------------------------------
# 1-D bounds
# ---------------------------------------------------------------------------------------
def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise CoordinateError(
            f"{name} must be 1-D cell centres, got shape {arr.shape}. Curvilinear grids "
            "(2-D latitude/longitude, e.g. WRF, rotated pole, polar stereographic) are "
            "CurvilinearGrid's: CurvilinearGrid.from_corners(lat, lon), or grid_of(ds)"
        )
    if arr.size == 0:
        raise CoordinateError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise CoordinateError(f"{name} contains NaN or inf; coordinates must be finite")
    return arr


def _edges_from_centres(c: np.ndarray, name: str) -> np.ndarray:
    if c.size < 2:
        raise CoordinateError(
            f"cannot infer cell bounds of {name} from a single centre; pass explicit bounds"
        )
    d = np.diff(c)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise CoordinateError(f"{name} centres must be strictly monotonic")
    mid = 0.5 * (c[:-1] + c[1:])
    return np.concatenate([[c[0] - 0.5 * d[0]], mid, [c[-1] + 0.5 * d[-1]]])


def lat_bounds(lat: Any) -> np.ndarray:
    """Latitude cell bounds (n + 1 values, same order as ``lat``) clipped to +-90 degrees.

    Parameters
    ----------
    lat : array_like
        1-D latitude centres in degrees north, ascending or descending.

    Returns
    -------
    numpy.ndarray
        Bounds in degrees; bound ``k`` and ``k + 1`` enclose centre ``k``.

    Raises
    ------
    CoordinateError
        If ``lat`` is not 1-D, not monotonic, not finite or outside [-90, 90].
    """
    c = _as_1d(lat, "latitude")
    if np.any(np.abs(c) > 90.0 + 1e-9):
        raise CoordinateError(
            f"latitude values must lie in [-90, 90], got {c.min()}..{c.max()}; "
            "are latitude and longitude swapped?"
        )
    return np.clip(_edges_from_centres(c, "latitude"), -90.0, 90.0)


def wrap_lon(lon: Any, start: float = 0.0) -> Any:
    """Longitudes (degrees) wrapped into ``[start, start + 360)``.

    ``start=0`` gives the 0..360 convention and ``start=-180`` the -180..180 one. Wrapped with
    ``start=-180``, the difference of two longitudes is the signed shortest step from one to
    the other (``wrap_lon(359.5 - 0.5, -180) == -1``). Works on scalars and numpy, torch or
    dask arrays.
    """
    return (lon - start) % 360.0 + start


def _unwrap_lon(lon: np.ndarray) -> np.ndarray:
    d = wrap_lon(np.diff(lon), -180.0)  # steps across the date line / meridian 0
    return np.concatenate([[lon[0]], lon[0] + np.cumsum(d)])


def lon_bounds(lon: Any) -> np.ndarray:
    """Longitude cell bounds (n + 1 values), unwrapped so they are monotonic across the date line.

    Works for 0..360 and -180..180 conventions and for regional grids that cross either.
    """
    c = _unwrap_lon(_as_1d(lon, "longitude"))
    return _edges_from_centres(c, "longitude")


def _bounds_tol(widths: np.ndarray) -> float:
    """Degrees by which explicit bounds may miss: float32 coordinates are off by ~3e-5 deg."""
    return max(1e-3 * float(np.min(widths)), 1e-4)


def _direction(centres: np.ndarray, kind: str) -> int:
    """+1 (ascending) or -1 (descending) for strictly monotonic centres; +1 for one centre."""
    if centres.size < 2:
        return 1
    d = np.diff(centres)
    if not (np.all(d > 0) or np.all(d < 0)):
        i = int(np.argmax(d <= 0) if d[0] > 0 else np.argmax(d >= 0))
        raise CoordinateError(
            f"{kind} centres must be strictly monotonic, but they turn at index {i + 1} "
            f"({centres[i]:g} -> {centres[i + 1]:g}); sort them (ds.sortby('{kind[:3]}'))"
        )
    return 1 if d[0] > 0 else -1


_BOUNDS_FIX = (
    "fix the bounds variable, or drop it (and the coordinate's 'bounds' attribute) to use "
    "bounds midway between the centres"
)


def _pair(v: np.ndarray) -> str:
    return f"({v[0]:g}, {v[1]:g})"


def bounds_from_cf(centres: Any, vertices: Any, kind: str) -> np.ndarray:
    """Cell edges (n + 1 values, in the order of the centres) from CF bounds ``[n, 2]``.

    The two vertices of a cell may be written in either order: ``(low, high)`` and
    ``(high, low)`` are both common on ascending and descending axes, and mean the same cell.
    Longitude vertices may be in either convention (``(359.25, 0.75)`` is the cell around 0).

    Parameters
    ----------
    centres : array_like
        1-D cell centres in degrees (strictly monotonic).
    vertices : array_like
        ``[n, 2]`` CF bounds in degrees.
    kind : {"latitude", "longitude"}
        Which axis (latitudes must lie within +-90; longitudes are compared on the circle).

    Returns
    -------
    numpy.ndarray
        Edges in degrees; edge ``k`` and ``k + 1`` enclose centre ``k``. Longitude edges are
        unwrapped (monotonic across the date line), like :func:`lon_bounds`.

    Raises
    ------
    CoordinateError
        If the bounds are not ``[n, 2]`` finite values, a cell has zero width, a centre lies
        outside its cell, neighbouring cells leave a gap or overlap, latitudes reach beyond the
        poles, longitudes cover more than 360 degrees, or the centres are not monotonic.
    """
    c = _as_1d(centres, kind)
    v = np.asarray(vertices, dtype=np.float64)
    if v.shape != (c.size, 2):
        raise CoordinateError(
            f"{kind} bounds must have shape ({c.size}, 2) (two vertices per cell, CF), got "
            f"{v.shape}: {_BOUNDS_FIX}"
        )
    if not np.all(np.isfinite(v)):
        raise CoordinateError(f"{kind} bounds contain NaN or inf: {_BOUNDS_FIX}")
    if kind == "longitude":
        c = _unwrap_lon(c)
        if not (c.size == 1 and abs(abs(v[0, 1] - v[0, 0]) - 360.0) < 1e-6):
            # each vertex on the circle near its centre: (359.25, 0.75) around 0 is one cell
            v = c[:, None] + wrap_lon(v - c[:, None], -180.0)
    step = _direction(c, kind)
    lo, hi = v.min(axis=1), v.max(axis=1)
    width = hi - lo
    if np.any(width <= 0):
        i = int(np.argmax(width <= 0))
        raise CoordinateError(
            f"{kind} cell {i} (centre {c[i]:g}) has bounds {_pair(v[i])} of zero width: "
            f"{_BOUNDS_FIX}"
        )
    tol = _bounds_tol(width)
    outside = (c < lo - tol) | (c > hi + tol)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise CoordinateError(
            f"{kind} bounds do not contain their centres: cell {i} has centre {c[i]:g} but "
            f"bounds {_pair(v[i])} ({int(outside.sum())} of {c.size} cells); they do not "
            f"describe these cells: {_BOUNDS_FIX}"
        )
    first, last = (lo, hi) if step > 0 else (hi, lo)
    gap = first[1:] - last[:-1]
    bad = np.abs(gap) > tol
    if np.any(bad):
        i = int(np.argmax(bad))
        what = "leave a gap" if gap[i] * step > 0 else "overlap"
        raise CoordinateError(
            f"{kind} bounds {what} of {abs(gap[i]):g} deg between cell {i} {_pair(v[i])} "
            f"and cell {i + 1} {_pair(v[i + 1])} ({int(bad.sum())} such seams); neighbouring "
            f"cells must share an edge: {_BOUNDS_FIX}"
        )
    edges = np.concatenate([first[:1], 0.5 * (first[1:] + last[:-1]), last[-1:]])
    _check_edge_range(edges, kind, tol)
    if kind == "latitude":
        edges = np.clip(edges, -90.0, 90.0)
    return edges


def _check_edge_range(edges: np.ndarray, kind: str, tol: float) -> None:
    if kind == "latitude" and np.any(np.abs(edges) > 90.0 + tol):
        raise CoordinateError(
            f"latitude bounds reach beyond the poles ({edges.min():g}..{edges.max():g}); "
            "cells end at +-90 deg: fix the bounds (clip them to [-90, 90])"
        )
    if kind == "longitude" and abs(edges[-1] - edges[0]) > 360.0 + tol:
        raise CoordinateError(
            f"longitude cells cover {abs(edges[-1] - edges[0]):g} deg, more than the full "
            "circle (360): cells overlap; fix the bounds or drop the duplicated columns"
        )


def _check_edges(centres: np.ndarray, edges: np.ndarray, kind: str) -> None:
    """Refuse explicit edges that do not describe the cells of ``centres``."""
    if not np.all(np.isfinite(edges)):
        raise CoordinateError(f"{kind} bounds contain NaN or inf; fix the bounds: make them finite")
    d = np.diff(edges)
    if kind == "longitude" or centres.size < 2:
        # the edges say which way round (two longitudes 180 deg apart, or one centre, cannot)
        step = 1 if edges[-1] > edges[0] else -1
    else:
        step = _direction(centres, kind)
    if not np.all(d * step > 0):
        raise CoordinateError(
            f"{kind} bounds ({edges[0]:g}, {edges[1]:g}, ..., {edges[-1]:g}) are not strictly "
            f"monotonic in the direction of the centres ({_DIRECTIONS[step < 0]}); fix the "
            "bounds: bound k and k + 1 must enclose centre k"
        )
    width = np.abs(d)
    tol = _bounds_tol(width)
    _check_edge_range(edges, kind, tol)
    lo = np.minimum(edges[:-1], edges[1:])
    off = centres - lo
    if kind == "longitude":
        off = wrap_lon(off)
        off = np.where(off > 360.0 - tol, 0.0, off)
    outside = (off < -tol) | (off > width + tol)
    if np.any(outside):
        i = int(np.argmax(outside))
        raise CoordinateError(
            f"{kind} bounds do not contain their centres: centre {i} is {centres[i]:g} but its "
            f"cell runs {edges[i]:g}..{edges[i + 1]:g}; fix the bounds: pass those of these "
            "centres"
        )


def cell_area(lat_b: Any, lon_b: Any, radius: float = EARTH_RADIUS) -> np.ndarray:
    """Exact spherical cell areas in m^2 from latitude and longitude bounds.

    Parameters
    ----------
    lat_b, lon_b : array_like
        Bounds in degrees, ``n_lat + 1`` and ``n_lon + 1`` values.
    radius : float
        Sphere radius in metres.

    Returns
    -------
    numpy.ndarray
        ``[n_lat, n_lon]`` float64 areas in m^2.

    Notes
    -----
    ``A = R^2 * |lon2 - lon1| * |sin(lat2) - sin(lat1)|`` with angles in radians.
    """
    lat_b = np.deg2rad(np.asarray(lat_b, dtype=np.float64))
    lon_b = np.deg2rad(np.asarray(lon_b, dtype=np.float64))
    band = np.abs(np.diff(np.sin(lat_b)))
    width = np.abs(np.diff(lon_b))
    return radius**2 * band[:, None] * width[None, :]


# ---------------------------------------------------------------------------------------
# Fine-cell areas of windows (tiled and chunked downscaling)
# ---------------------------------------------------------------------------------------
class FineAreas:
    """Fine-cell areas (m^2) of windows of a grid refined by ``factor`` (:meth:`Grid.refine`).

    ``FineAreas(grid, f)(row0, nrow, col0, ncol)`` is the ``[nrow f, ncol f]`` float64 array of
    the areas of the fine cells under the coarse window of rows ``row0 .. row0 + nrow - 1`` and
    columns ``col0 .. col0 + ncol - 1``. Window coordinates are unwrapped: a window of a
    periodic grid may start below 0 or end past the last column, and the longitude bounds
    continue by +-360 degrees there.

    On a :class:`CurvilinearGrid` (never periodic) a window is a slice of the refined grid's
    areas. On a grid with uniform longitude spacing the areas do not depend on the window's column,
    so windows in one row share one cached array (the same object: a caller can compute their
    block weights once). The cache holds a few tile rows' windows at a time.
    """

    def __init__(self, grid: Grid | CurvilinearGrid, factor: int) -> None:
        fine = grid.refine(factor)
        self.factor = int(factor)
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}
        # a curvilinear grid does not wrap: its windows are slices of the refined grid's areas
        self.fixed = fine.area if isinstance(fine, CurvilinearGrid) else None
        if isinstance(fine, CurvilinearGrid):
            self.uniform_lon = False
            return
        self.lat_b = fine.lat_b
        self.lon_b = fine.lon_b
        self.lon_span = fine.lon_b[-1] - fine.lon_b[0]
        self.radius = grid.radius
        width = np.diff(fine.lon_b)
        self.uniform_lon = bool(np.allclose(width, width[0], rtol=1e-9, atol=0.0))

    def __call__(self, row0: int, nrow: int, col0: int, ncol: int) -> np.ndarray:
        if self.fixed is not None:
            f = self.factor
            return self.fixed[row0 * f : (row0 + nrow) * f, col0 * f : (col0 + ncol) * f]
        if self.uniform_lon:
            col0 = 0
        key = (row0, nrow, col0, ncol)
        if key not in self._cache:
            if len(self._cache) > 64:  # bounded: a few tile rows are live at a time
                self._cache.clear()
            f = self.factor
            lat_b = self.lat_b[row0 * f : (row0 + nrow) * f + 1]
            k = np.arange(col0 * f, (col0 + ncol) * f + 1)
            w = self.lon_b.size - 1
            lon_b = self.lon_b[k % w] + self.lon_span * (k // w)
            self._cache[key] = cell_area(lat_b, lon_b, self.radius)
        return self._cache[key]


# ---------------------------------------------------------------------------------------
# Orientation: the order in which rows and columns are stored
# ---------------------------------------------------------------------------------------
_DIRECTIONS = ("ascending", "descending")


@dataclass(frozen=True)
class Orientation:
    """The order in which a grid's rows (latitude) and columns (longitude) are stored.

    A convolutional network is not symmetric under reversing an axis: it must see its input in
    the orientation it was trained on. Longitude "ascending" means eastward (across the date
    line too: 170, 180, -170 ascends); a rolled global axis keeps its orientation.

    Parameters
    ----------
    lat, lon : {"ascending", "descending"}
        The defaults are ERA5's: latitude descending (north first), longitude ascending.

    Raises
    ------
    CoordinateError
        If a direction is not "ascending" or "descending".
    """

    lat: str = "descending"
    lon: str = "ascending"

    def __post_init__(self) -> None:
        for axis in ("lat", "lon"):
            if getattr(self, axis) not in _DIRECTIONS:
                raise CoordinateError(
                    f"orientation {axis}={getattr(self, axis)!r} is not one of {_DIRECTIONS}; "
                    'write e.g. {"lat": "descending", "lon": "ascending"}'
                )

    @classmethod
    def from_meta(cls, value: Any) -> Orientation:
        """The orientation recorded in store or checkpoint metadata; ERA5's when ``None``.

        Stores and checkpoints written before orientations were recorded were all trained on
        ERA5's storage order, so a missing record means latitude descending, longitude
        ascending.
        """
        if value is None:
            return ERA5_ORIENTATION
        if isinstance(value, Orientation):
            return value
        if not isinstance(value, dict) or set(value) != {"lat", "lon"}:
            raise CoordinateError(
                f"orientation must be a mapping with keys 'lat' and 'lon', got {value!r}"
            )
        return cls(lat=str(value["lat"]), lon=str(value["lon"]))

    def as_dict(self) -> dict[str, str]:
        """``{"lat": ..., "lon": ...}``: how stores and checkpoints record it."""
        return {"lat": self.lat, "lon": self.lon}


#: ERA5's storage order (north to south, west to east): that of every record without one.
ERA5_ORIENTATION = Orientation()


# ---------------------------------------------------------------------------------------
# Grid description
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, init=False)
class Grid:
    """A rectilinear latitude/longitude grid on the sphere.

    Parameters
    ----------
    lat, lon : array_like
        1-D cell centres in degrees.
    lat_b, lon_b : array_like, optional
        Explicit cell bounds (n + 1 values). Inferred from the centres when omitted.
    radius : float
        Sphere radius in metres.
    """

    # the constructor takes array-likes and optional bounds; the attributes are always arrays
    lat: np.ndarray
    lon: np.ndarray
    lat_b: np.ndarray
    lon_b: np.ndarray
    radius: float = EARTH_RADIUS

    def __init__(
        self,
        lat: Any,
        lon: Any,
        lat_b: Any | None = None,
        lon_b: Any | None = None,
        radius: float = EARTH_RADIUS,
    ) -> None:
        object.__setattr__(self, "lat", _as_1d(lat, "latitude"))
        object.__setattr__(self, "lon", _as_1d(lon, "longitude"))
        object.__setattr__(self, "radius", radius)
        explicit = []
        for name, given, kind, infer in (
            ("lat_b", lat_b, "latitude", lat_bounds),
            ("lon_b", lon_b, "longitude", lon_bounds),
        ):
            centres, edges = getattr(self, name[:3]), given
            if edges is None:
                object.__setattr__(self, name, infer(centres))
                continue
            edges = np.asarray(edges, dtype=np.float64)
            if edges.shape != (centres.size + 1,):
                raise CoordinateError(
                    f"{kind} bounds must have one more value than centres ({centres.size + 1} "
                    f"cell edges), got shape {edges.shape}"
                )
            object.__setattr__(self, name, edges)
            explicit.append((centres, edges, kind))
        for centres, edges, kind in explicit:
            _check_edges(centres, edges, kind)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_lat, n_lon)``."""
        return (self.lat.size, self.lon.size)

    @property
    def periodic(self) -> bool:
        """True when the longitudes cover the full circle (the grid wraps around)."""
        span = abs(self.lon_b[-1] - self.lon_b[0])
        # relative to the spacing: float32 coordinates (0.1 deg steps) miss 360 by ~1e-5 deg
        return bool(abs(span - 360.0) < 1e-3 * span / self.lon.size)

    @cached_property
    def area(self) -> np.ndarray:
        """Cell areas in m^2, ``[n_lat, n_lon]`` float64."""
        return cell_area(self.lat_b, self.lon_b, self.radius)

    @property
    def spacing(self) -> tuple[float, float]:
        """Mean absolute (dlat, dlon) in degrees."""
        return (
            float(np.mean(np.abs(np.diff(self.lat_b)))),
            float(np.mean(np.abs(np.diff(self.lon_b)))),
        )

    @property
    def orientation(self) -> Orientation:
        """The order in which rows and columns are stored (read off the bounds)."""
        return Orientation(
            lat="descending" if self.lat_b[-1] < self.lat_b[0] else "ascending",
            lon="descending" if self.lon_b[-1] < self.lon_b[0] else "ascending",
        )

    def flip(self, lat: bool = False, lon: bool = False) -> Grid:
        """The same cells with the rows (``lat``) and/or columns (``lon``) in reverse order."""
        r = slice(None, None, -1) if lat else slice(None)
        c = slice(None, None, -1) if lon else slice(None)
        return Grid(self.lat[r], self.lon[c], self.lat_b[r], self.lon_b[c], self.radius)

    def oriented(self, target: Orientation) -> tuple[Grid, tuple[bool, bool]]:
        """This grid stored in the ``target`` orientation, and which axes were reversed.

        Returns
        -------
        grid : Grid
            The same cells, rows and columns in ``target``'s order.
        flips : tuple of bool
            ``(lat, lon)``: True where the axis was reversed (an array on this grid becomes
            one on ``grid`` with ``x[..., ::-1, :]`` and/or ``x[..., ::-1]``).
        """
        mine = self.orientation
        flips = (mine.lat != target.lat, mine.lon != target.lon)
        return (self.flip(*flips) if any(flips) else self), flips

    def cf_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """CF bounds ``[n, 2]`` of the latitudes and longitudes, in degrees.

        Vertices run in the direction of the coordinate (``(90, 89.25)`` on ERA5's descending
        latitudes). Each longitude pair is shifted by whole turns to enclose its centre as
        written (the cell around 0 on a 0..360 grid is ``(-0.75, 0.75)``).
        """
        lat = np.stack([self.lat_b[:-1], self.lat_b[1:]], axis=1)
        lon = np.stack([self.lon_b[:-1], self.lon_b[1:]], axis=1)
        mid = 0.5 * (lon[:, 0] + lon[:, 1])
        lon = lon + 360.0 * np.round((self.lon - mid) / 360.0)[:, None]
        return lat, lon

    def coarsen(self, factor: int) -> Grid:
        """The coarse grid whose cells are the ``factor x factor`` blocks of this one."""
        check_factor(self.shape, factor)
        return self._from_bounds(self.lat_b[::factor], self.lon_b[::factor])

    def refine(self, factor: int) -> Grid:
        """The fine grid that splits each cell into ``factor x factor`` equal-angle cells.

        The fine bounds divide each coarse cell's bounds evenly, so coarsening the fine grid
        by ``factor`` gives back exactly this grid's cells (and areas). One exception, the
        inverse of :meth:`coarsen` on a grid with rows on the poles: a polar cell
        ``factor - 1/2`` fine steps high (the coarsening of ERA5's half-height cap and the
        ``factor - 1`` rows below it, e.g. 0.25 deg rows 90 .. -89.75 coarsened 4x) is split
        into a half-height cap centred on the pole and ``factor - 1`` full steps, so the fine
        grid is the pole-centred one it came from, not one whose top rows are offset (on
        which ``hr - truth`` would silently drop the polar rows).
        """
        factor = _check_int_factor(factor)
        return self._from_bounds(_split_lat(self.lat_b, factor), _split(self.lon_b, factor))

    def _from_bounds(self, lat_b: np.ndarray, lon_b: np.ndarray) -> Grid:
        """A grid on the same sphere with these bounds; centres midway, lon in our convention.

        A polar cap half as high as its neighbour gets its centre on the pole: the inverse of
        :func:`lat_bounds`, so a pole-centred grid (ERA5's rows at +-90) refined and coarsened
        back has its own centres again.
        """
        return Grid(
            tidy_centres(_lat_centres(lat_b), lat_b),
            tidy_centres(_wrap_like(0.5 * (lon_b[:-1] + lon_b[1:]), self.lon), lon_b),
            lat_b,
            lon_b,
            self.radius,
        )

    @classmethod
    def from_xarray(cls, obj: Any, lat: str | None = None, lon: str | None = None) -> Grid:
        """Build the grid of an xarray object, reading CF ``bounds`` variables if present.

        A coordinate's ``bounds`` attribute names a ``[n, 2]`` variable (in a Dataset's
        variables or among the object's coordinates); its vertices are read in either order
        and checked (:func:`bounds_from_cf`). Where the named variable is not there (a
        DataArray taken from a Dataset: xarray drops 2-D bounds with it), bounds are inferred
        from the centres.

        Raises
        ------
        CoordinateError
            Coordinates not found or not 1-D, or bounds inconsistent with the centres.
        """
        lat_name, lon_name = find_latlon(obj, lat=lat, lon=lon)
        edges = []
        for name, kind in ((lat_name, "latitude"), (lon_name, "longitude")):
            b = _cf_bounds_variable(obj, name)
            edges.append(None if b is None else bounds_from_cf(obj[name].values, b, kind))
        return cls(obj[lat_name].values, obj[lon_name].values, edges[0], edges[1])


def _split(b: np.ndarray, factor: int) -> np.ndarray:
    """Edges that split each interval of the edges ``b`` into ``factor`` equal ones."""
    frac = np.arange(factor) / factor
    inner = b[:-1, None] + (b[1:] - b[:-1])[:, None] * frac[None, :]
    return np.concatenate([inner.ravel(), b[-1:]])


def _split_lat(b: np.ndarray, factor: int) -> np.ndarray:
    """:func:`_split` for latitude edges, with a pole-centred fine cap where one fits.

    A polar cell (an edge at +-90) whose height is ``factor - 1/2`` steps of its neighbour's
    ``factor`` is split into a half step on the pole and ``factor - 1`` whole steps: the edges
    of the pole-centred grid it was coarsened from. The coarse edges are kept either way.
    """
    fine = _split(b, factor)
    if factor < 2 or b.size < 3:
        return fine
    h = np.diff(b)
    for cap, nxt in ((0, 1), (-1, -2)):
        pole = b[0] if cap == 0 else b[-1]
        if abs(pole) != 90.0:
            continue
        step = h[nxt] / factor
        if abs(h[cap] - (factor - 0.5) * step) > 1e-9 * abs(h[nxt]):
            continue
        offsets = step * (0.5 + np.arange(factor - 1))  # from the pole, in the edges' order
        if cap == 0:
            fine[1:factor] = b[0] + offsets
        else:
            fine[-factor:-1] = b[-1] - offsets[::-1]
    return fine


def tidy_centres(c: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Computed cell centres with their float round-off taken off, where it is only round-off.

    Centres midway between refined or coarsened edges carry round-off (0.44 deg cells give
    ``-23.209999999999997`` for a file's ``-23.21``), and xarray aligns by exact coordinate
    values: ``hr.climdown.coarsen(4) - lr`` would silently drop every cell whose centre is one
    ulp off. Each array is rounded to the fewest decimals (at most 6, as grids are written)
    that move no value by more than round-off (1e-9 of the smallest edge spacing and 1000
    ulps of the largest value), so grids written in
    decimals (every CF file, CORDEX's 0.11 and 0.44 deg, 1/64 deg) come back as written, and
    centres that need every digit (thirds) are kept. Edges (which carry the areas and the mass)
    are never changed.
    """
    c = np.asarray(c, dtype=np.float64)
    steps = np.abs(np.diff(np.asarray(edges, dtype=np.float64)))
    steps = steps[steps > 0]
    if c.size == 0 or steps.size == 0 or not np.all(np.isfinite(c)):
        return c
    # round-off only: at most 1e-9 of a cell and 1000 ulps of the largest value (a 168 deg
    # cell would otherwise let a centre move by 1.7e-7 deg to a 6-decimal neighbour)
    scale = max(1.0, float(np.abs(c).max()))
    tol = min(1e-9 * float(steps.min()), 1e3 * np.finfo(np.float64).eps * scale)
    for decimals in range(7):
        r = np.round(c, decimals)
        if np.all(np.abs(r - c) <= tol):
            return r
    return c


def like_dtype(values: np.ndarray, ref: Any) -> np.ndarray:
    """``values`` in the floating dtype of the coordinate ``ref`` where it is narrower than float64.

    A file whose coordinates are float32 gets float32 coordinates back: compared in float64,
    a float32 ``-23.21`` is ``-23.209999084472656``, and xarray, which aligns by exact values,
    would drop those cells from ``coarsen(hr) - lr`` without a word. Centres computed from
    float32 ones carry float32 round-off, so they are first tidied as :func:`tidy_centres`
    does, at float32's precision.
    """
    dtype = getattr(ref, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.floating) or dtype.itemsize >= 8:
        return values
    v = np.asarray(values, dtype=np.float64)
    exact = np.abs(v.astype(dtype).astype(np.float64) - v) <= 4 * np.finfo(np.float64).eps * np.abs(
        v
    )
    if v.size and np.all(np.isfinite(v)) and not np.all(exact):
        # centres that fall between float32 values were computed from decimal ones: the
        # decimal within two ulps (of each value and of a cell size) is the value meant, so
        # -23.209999 (a float32 -23.21 refined) snaps back; float32-exact centres such as
        # 12.015625 (1/32 deg cells) are cast as they are
        d = np.abs(np.diff(v.ravel()))
        cell = float(np.median(d)) if d.size else 0.0
        tol = 2.0 * float(np.finfo(dtype).eps) * (np.abs(v) + cell)
        for decimals in range(8):
            r = np.round(v, decimals)
            if np.all(np.abs(r - v) <= tol):
                v = r
                break
    return v.astype(dtype)


def _lat_centres(lat_b: np.ndarray) -> np.ndarray:
    """Cell centres of latitude edges: midway, or on the lattice for a cap cut by the pole.

    A polar cap at least half as high as its neighbour but lower (a regular cell cut off by
    the pole) gets the centre the neighbour's spacing puts it at, ``2 * edge - neighbour's
    centre``: on the pole for a half-height cap (ERA5's rows at +-90), and 87.75 for the
    [90, 84.75] cap of ERA5's 1.5 deg rows coarsened 4x, so the coarse rows are the regular
    6 deg lattice and bounds inferred from the centres alone (:func:`lat_bounds`, for a
    DataArray, which cannot carry CF bounds) are the cells' own again.
    """
    c = 0.5 * (lat_b[:-1] + lat_b[1:])
    if c.size >= 2:
        h = np.abs(np.diff(lat_b))
        for cap, nxt, edge, pole in ((0, 1, lat_b[1], lat_b[0]), (-1, -2, lat_b[-2], lat_b[-1])):
            tol = 1e-9 * h[nxt]
            if abs(pole) == 90.0 and 0.5 * h[nxt] - tol <= h[cap] < h[nxt] - tol:
                c[cap] = pole if abs(2.0 * h[cap] - h[nxt]) <= tol else 2.0 * edge - c[nxt]
    return c


def _cf_bounds_variable(obj: Any, name: Hashable) -> np.ndarray | None:
    """The ``[n, 2]`` values of the CF bounds variable of coordinate ``name``, if present."""
    bname = obj[name].attrs.get("bounds")
    if bname is None:
        return None
    table = obj.variables if hasattr(obj, "data_vars") else obj.coords
    if bname not in table:
        return None
    var = table[bname]
    dim = obj[name].dims[0]
    if var.ndim != 2 or var.dims[0] != dim:
        raise CoordinateError(
            f"bounds variable {bname!r} of {name!r} has dims {tuple(var.dims)}; CF bounds are "
            f"({dim!r}, <vertex dim of size 2>): fix it or drop it (and the 'bounds' attribute)"
        )
    return np.asarray(var.values, dtype=np.float64)


def _wrap_like(lon: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Express unwrapped longitudes in the convention of ``ref`` (0..360 or -180..180).

    When ``ref`` itself runs monotonically, the result stays monotonic: it is shifted as a whole
    by a multiple of 360 so that its mean lies in the convention's range (a fine grid of a
    region at 0-10E starts at -0.09 rather than jumping from 359.9 to 0.03). When ``ref`` wraps
    inside (e.g. 170..180, -180..-170), each value is wrapped into the range like ref's.
    """
    if np.all(ref >= 0) and np.all(ref <= 360):
        lo = 0.0
    elif np.all(ref >= -180) and np.all(ref <= 180):
        lo = -180.0
    else:
        return lon
    d = np.diff(ref)
    if ref.size < 2 or np.all(d > 0) or np.all(d < 0):
        return lon - 360.0 * np.floor((np.mean(lon) - lo) / 360.0)
    return np.where((lon < lo) | (lon >= lo + 360.0), wrap_lon(lon, lo), lon)


# ---------------------------------------------------------------------------------------
# Curvilinear grids: 2-D latitude/longitude, rotated poles, map projections
# ---------------------------------------------------------------------------------------
#: Either kind of grid: what downscaling, coarsening and the mass budget take.
AnyGrid = Union["Grid", "CurvilinearGrid"]

#: CF's name of the rotated-pole grid mapping (CF-1.8 appendix F).
ROTATED_POLE = "rotated_latitude_longitude"

_NATIVE_STD = {
    "y": ("grid_latitude", "projection_y_coordinate", "projection_y_angular_coordinate"),
    "x": ("grid_longitude", "projection_x_coordinate", "projection_x_angular_coordinate"),
}
_NATIVE_NAMES = {"y": ("rlat", "y", "south_north"), "x": ("rlon", "x", "west_east")}


def _pyproj() -> Any:
    """The pyproj module, or None where it is not installed (``pip install climdown[regional]``)."""
    try:
        import pyproj
    except ImportError:
        return None
    return pyproj


@dataclass(frozen=True, eq=False)
class GridMapping:
    """A CF grid mapping: the name of its variable and that variable's attributes.

    Parameters
    ----------
    name : str
        Name of the grid mapping variable (e.g. ``"rotated_pole"``, ``"crs"``).
    attrs : mapping
        Its attributes (``grid_mapping_name`` and the parameters CF gives that mapping).
    """

    name: str
    attrs: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """The CF ``grid_mapping_name`` (e.g. ``"rotated_latitude_longitude"``)."""
        return str(self.attrs.get("grid_mapping_name", ""))

    @property
    def rotated(self) -> bool:
        """True for a rotated pole (the one mapping climdown computes without pyproj)."""
        return self.kind == ROTATED_POLE

    def rotation(self) -> np.ndarray:
        """The rotated pole's 3 x 3 rotation (rotated-frame -> geographic unit vectors).

        Raises
        ------
        CoordinateError
            If the pole's ``grid_north_pole_latitude``/``longitude`` are missing or not numbers.
        """
        vals = []
        for key, default in (
            ("grid_north_pole_latitude", None),
            ("grid_north_pole_longitude", None),
            ("north_pole_grid_longitude", 0.0),
        ):
            v = self.attrs.get(key, default)
            if v is None:
                raise CoordinateError(
                    f"grid mapping {self.name!r} ({ROTATED_POLE}) has no {key!r}: CF needs the "
                    "rotated pole's grid_north_pole_latitude and grid_north_pole_longitude "
                    "(degrees); add them to the grid mapping variable's attributes"
                )
            vals.append(number(v, f"{self.name}.{key}", error=CoordinateError, what="degrees"))
        return _sphere.rotation_matrix(*vals)

    def plane(self) -> _Plane | None:
        """The plane cells are subdivided in: the rotated frame (degrees), or the map projection's
        (pyproj, metres); None for a projection when pyproj is not installed."""
        if self.rotated:
            return _RotatedPlane(self.rotation())
        pyproj = _pyproj()
        if pyproj is None:
            return None
        key = repr(sorted((str(k), repr(v)) for k, v in self.attrs.items()))
        if key not in _PLANES:  # building a CRS from CF takes ~1 s (PROJ's database)
            if len(_PLANES) > 16:
                _PLANES.clear()
            _PLANES[key] = self._projection(pyproj)
        return _PLANES[key]

    def _projection(self, pyproj: Any) -> _Plane:
        try:
            crs = pyproj.CRS.from_cf(dict(self.attrs))
        except Exception as exc:  # pyproj raises its own CRSError, or KeyError for odd attrs
            raise CoordinateError(
                f"grid mapping {self.name!r} ({self.kind or 'no grid_mapping_name'}) is not a CF "
                f"grid mapping pyproj understands ({exc}); fix its attributes, or drop the "
                "grid_mapping attribute to subdivide cells on the sphere"
            ) from exc
        return _ProjPlane(pyproj, crs)


class _Plane:
    """Forward (lat/lon -> plane) and inverse maps of a grid's native plane."""

    # (subclasses below; _PLANES caches the projections' by their CF attributes)

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def inverse(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class _RotatedPlane(_Plane):
    """The rotated frame: (rlat, rlon) in degrees."""

    def __init__(self, rotation: np.ndarray) -> None:
        self.m = rotation

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rlat, rlon = _sphere.to_latlon(_sphere.to_xyz(lat, lon) @ self.m)  # m^T v
        return rlat, _unwrap_2d(rlon)

    def inverse(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _sphere.to_latlon(_sphere.to_xyz(y, x) @ self.m.T)


class _ProjPlane(_Plane):
    """A map projection's plane (pyproj; x, y in the projection's units)."""

    def __init__(self, pyproj: Any, crs: Any) -> None:
        geo = crs.geodetic_crs
        self.fwd = pyproj.Transformer.from_crs(geo, crs, always_xy=True)
        self.inv = pyproj.Transformer.from_crs(crs, geo, always_xy=True)

    def forward(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.fwd.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return np.asarray(y), np.asarray(x)

    def inverse(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self.inv.transform(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return np.asarray(lat), np.asarray(lon)


_PLANES: dict[str, _Plane] = {}


def _unwrap_2d(lon: np.ndarray) -> np.ndarray:
    """Longitudes of a mesh made continuous (no jump of 360 across the date line)."""
    if lon.ndim < 2 or lon.size == 0:
        return lon
    first = _unwrap_lon(lon[:, 0]) if lon.shape[0] > 1 else lon[:, 0]
    d = wrap_lon(np.diff(lon, axis=1), -180.0)
    return np.concatenate([first[:, None], first[:, None] + np.cumsum(d, axis=1)], axis=1)


def _mesh_mean(c: np.ndarray) -> np.ndarray:
    """Mean of each cell's four corners: ``[H+1, W+1, ...] -> [H, W, ...]``."""
    return 0.25 * (c[:-1, :-1] + c[:-1, 1:] + c[1:, :-1] + c[1:, 1:])


def _extend(a: np.ndarray) -> np.ndarray:
    """``[H, W, ...] -> [H+2, W+2, ...]``: one row/column more on each side, extrapolated
    linearly (``2 a_0 - a_1``)."""
    a = np.concatenate([2 * a[:1] - a[1:2], a, 2 * a[-1:] - a[-2:-1]], axis=0)
    return np.concatenate([2 * a[:, :1] - a[:, 1:2], a, 2 * a[:, -1:] - a[:, -2:-1]], axis=1)


def infer_corners(lat: Any, lon: Any, plane: _Plane | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cell corners ``[H+1, W+1]`` (degrees) of a curvilinear grid from its centres ``[H, W]``.

    An interior corner is the mean of the four centres around it; at the edges the centres are
    first extended by one row and column on each side by linear extrapolation (``2 c_0 - c_1``),
    so an edge corner lies half a cell beyond the outer centres, as :func:`lat_bounds` does in
    1-D. The means are taken in the grid's plane where it has one (the rotated frame, or the
    map projection with pyproj: exact for a grid uniform in that plane), else of the centres'
    unit vectors in 3-D, normalised back onto the sphere.

    Raises
    ------
    CoordinateError
        If the grid has fewer than 2 rows or columns (give CF bounds then).
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 2 or lat.shape[0] < 2 or lat.shape[1] < 2:
        raise CoordinateError(
            f"cannot infer the cell corners of a curvilinear grid of shape {lat.shape} from "
            "its centres (at least 2 x 2 cells are needed): give CF bounds (a 'bounds' "
            "attribute naming [ny, nx, 4] vertices)"
        )
    if plane is not None:
        y, x = plane.forward(lat, lon)
        yc = _mesh_mean(_extend(y))
        xc = _mesh_mean(_extend(x))
        return plane.inverse(yc, xc)
    v = _mesh_mean(_extend(_sphere.to_xyz(lat, lon)))
    return _sphere.to_latlon(v)


def _cell_vertices(c: np.ndarray) -> np.ndarray:
    """The four corners of every cell of a mesh ``[H+1, W+1, k]`` in CF order: ``[H, W, 4, k]``.

    CF-1.8 7.1: anticlockwise in index space, (j, i), (j, i+1), (j+1, i+1), (j+1, i).
    """
    return np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]], axis=2)


def _at(lat: np.ndarray, lon: np.ndarray, ij: tuple[Any, ...]) -> str:
    return f"cell {tuple(int(i) for i in ij)} at lat {lat[ij]:.4f}, lon {lon[ij]:.4f}"


def _check_cells(corners: np.ndarray, lat: np.ndarray, lon: np.ndarray, fix: str) -> None:
    """Refuse cells that are not convex quadrilaterals, grids that fold, and centres outside."""
    if not np.all(np.isfinite(corners)):
        raise CoordinateError(f"curvilinear cell corners contain NaN or inf: {fix}")
    q = _cell_vertices(corners)  # [H, W, 4, 3]
    turns = _sphere.quad_turns(q)
    s = np.sign(turns.sum(axis=-1))
    orient = 1.0 if s.sum() >= 0 else -1.0
    bad = np.any(turns != orient, axis=-1)
    if np.any(bad):
        ij = np.unravel_index(int(np.argmax(bad)), bad.shape)
        why = (
            "runs the other way round than the grid's other cells: the grid folds over itself"
            if np.all(turns[ij] == -orient)
            else "is not a convex quadrilateral (self-intersecting, concave or degenerate: its "
            "corners do not all turn the same way)"
        )
        raise CoordinateError(
            f"curvilinear {_at(lat, lon, ij)} {why} ({int(bad.sum())} of {bad.size} cells): {fix}"
        )
    p = _sphere.to_xyz(lat, lon)[:, :, None, :]
    edge = np.cross(q, np.roll(q, -1, axis=-2))
    side = np.einsum("...i,...i->...", p, edge) * orient
    outside = np.any(side < -1e-12, axis=-1)
    if np.any(outside):
        ij = np.unravel_index(int(np.argmax(outside)), outside.shape)
        raise CoordinateError(
            f"the centre of curvilinear {_at(lat, lon, ij)} lies outside its cell "
            f"({int(outside.sum())} of {outside.size} centres): the bounds do not describe "
            f"these cells; {fix}"
        )


def corners_from_cf(lat_v: Any, lon_v: Any) -> tuple[np.ndarray, np.ndarray]:
    """The corner mesh ``[H+1, W+1]`` of CF 2-D bounds ``[H, W, 4]`` (degrees).

    CF orders a cell's vertices anticlockwise in index space starting at (j - 1/2, i - 1/2);
    the clockwise order, (j, i), (j+1, i), (j+1, i+1), (j, i+1), is read too. Neighbouring
    cells must agree on the corners they share.

    Raises
    ------
    CoordinateError
        If the bounds are not ``[H, W, 4]`` finite values in one of those orders, or
        neighbouring cells disagree on a shared corner.
    """
    la = np.asarray(lat_v, dtype=np.float64)
    lo = np.asarray(lon_v, dtype=np.float64)
    fix = (
        "fix the bounds variables, or drop them (and the 'bounds' attributes) to infer the "
        "corners from the centres"
    )
    if la.ndim != 3 or la.shape[-1] != 4 or lo.shape != la.shape:
        raise CoordinateError(
            f"2-D latitude/longitude bounds must have shape [ny, nx, 4] (CF: four vertices per "
            f"cell), got {la.shape} and {lo.shape}: non-quadrilateral cells are not supported; "
            f"{fix}"
        )
    if not (np.all(np.isfinite(la)) and np.all(np.isfinite(lo))):
        raise CoordinateError(f"2-D latitude/longitude bounds contain NaN or inf: {fix}")
    v = _sphere.to_xyz(la, lo)  # [H, W, 4, 3]
    h, w = la.shape[:2]
    if w > 1 and h > 1:
        cf = np.linalg.norm(v[:, :-1, 1] - v[:, 1:, 0], axis=-1).mean()
        cw = np.linalg.norm(v[:, :-1, 3] - v[:, 1:, 0], axis=-1).mean()
        if cw < cf:  # clockwise: (j, i), (j+1, i), (j+1, i+1), (j, i+1)
            v = v[:, :, [0, 3, 2, 1]]
    c = np.empty((h + 1, w + 1, 3))
    c[:-1, :-1] = v[:, :, 0]
    c[:-1, -1] = v[:, -1, 1]
    c[-1, :-1] = v[-1, :, 3]
    c[-1, -1] = v[-1, -1, 2]
    size = float(np.median(np.linalg.norm(v[..., 0, :] - v[..., 2, :], axis=-1)))
    miss = np.linalg.norm(_cell_vertices(c) - v, axis=-1).max(axis=-1)  # [H, W]
    bad = miss > 1e-3 * size + 1e-12
    if np.any(bad):
        ij = np.unravel_index(int(np.argmax(miss)), miss.shape)
        km = float(miss[ij]) * EARTH_RADIUS / 1e3
        raise CoordinateError(
            f"2-D bounds are inconsistent: cell {tuple(int(i) for i in ij)} and its neighbours "
            f"disagree on a shared corner by {km:.3g} km ({int(bad.sum())} of {bad.size} "
            "cells); CF bounds of neighbouring cells must share their corners, listed "
            f"anticlockwise from (j - 1/2, i - 1/2): {fix}"
        )
    return _sphere.to_latlon(c)


@dataclass(frozen=True, eq=False)
class CurvilinearGrid:
    """A grid of quadrilateral cells on the sphere with 2-D centres and corners.

    Rotated-pole grids (CORDEX), map projections (Lambert conformal, polar stereographic: WRF,
    national products) and any grid with 2-D latitude/longitude. Models run on the index
    space; coarse cells are ``f x f`` index blocks of fine cells.

    Attributes
    ----------
    lat, lon : numpy.ndarray
        ``[H, W]`` cell centres in degrees.
    lat_c, lon_c : numpy.ndarray
        ``[H+1, W+1]`` cell corners in degrees: cell (j, i) has corners (j, i), (j, i+1),
        (j+1, i+1), (j+1, i).
    mapping : GridMapping or None
        The CF grid mapping, if any.
    y, x, y_b, x_b : numpy.ndarray or None
        1-D native coordinates of the rows and columns (``rlat``/``rlon`` in degrees, or
        projection ``y``/``x``) and their bounds (n + 1 edges), where the grid has them.
    radius : float
        Sphere radius in metres.

    Notes
    -----
    Cell areas (m^2): a rotated-pole grid with 1-D ``rlat``/``rlon`` has cells bounded by
    rotated parallels and meridians, and the rotation preserves areas, so
    ``A = R^2 |sin(rlat2) - sin(rlat1)| |rlon2 - rlon1|`` exactly (:func:`cell_area`). Any
    other cell is the spherical quadrilateral with great-circle edges between its corners:
    two spherical triangles, each by the Van Oosterom-Strackee formula in float64
    (:mod:`climdown.sphere`). The cells of :meth:`refine` tile their coarse cell exactly, and
    those of :meth:`coarsen` are unions of fine cells (areas: block sums).
    """

    lat: np.ndarray
    lon: np.ndarray
    lat_c: np.ndarray
    lon_c: np.ndarray
    mapping: GridMapping | None = None
    y: np.ndarray | None = None
    x: np.ndarray | None = None
    y_b: np.ndarray | None = None
    x_b: np.ndarray | None = None
    radius: float = EARTH_RADIUS
    cell_areas: np.ndarray | None = None  # set by refine/coarsen: the areas that tile exactly

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_corners(
        cls,
        lat: Any,
        lon: Any,
        lat_c: Any | None = None,
        lon_c: Any | None = None,
        mapping: GridMapping | None = None,
        radius: float = EARTH_RADIUS,
    ) -> CurvilinearGrid:
        """A checked grid from 2-D centres and corners (inferred when omitted: :func:`infer_corners`).

        Raises
        ------
        CoordinateError
            Centres not 2-D or not finite, corners of the wrong shape, cells that are not
            convex quadrilaterals, a grid that folds, or centres outside their cells.
        """
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.ndim != 2 or lon.shape != lat.shape:
            raise CoordinateError(
                f"curvilinear latitude/longitude must be 2-D of one shape, got {lat.shape} and "
                f"{lon.shape}; pass the 2-D coordinates (e.g. lat, lon of a CORDEX file, XLAT, "
                "XLONG of WRF)"
            )
        if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise CoordinateError(
                "2-D latitude/longitude contain NaN or inf; coordinates must be finite"
            )
        if np.any(np.abs(lat) > 90.0 + 1e-9):
            raise CoordinateError(
                f"latitude values must lie in [-90, 90], got {lat.min()}..{lat.max()}; are "
                "latitude and longitude swapped?"
            )
        plane = mapping.plane() if mapping is not None else None
        if lat_c is None or lon_c is None:
            lat_c, lon_c = infer_corners(lat, lon, plane)
        lat_c = np.asarray(lat_c, dtype=np.float64)
        lon_c = np.asarray(lon_c, dtype=np.float64)
        want = (lat.shape[0] + 1, lat.shape[1] + 1)
        if lat_c.shape != want or lon_c.shape != want:
            raise CoordinateError(
                f"corners of a {lat.shape} grid must have shape {want}, got {lat_c.shape}"
            )
        fix = "fix the bounds, or drop them to infer the corners from the centres"
        _check_cells(_sphere.to_xyz(lat_c, lon_c), lat, lon, fix)
        return cls(lat, lon, lat_c, lon_c, mapping, radius=radius)

    @classmethod
    def rotated(
        cls,
        rlat: Any,
        rlon: Any,
        mapping: GridMapping,
        rlat_b: Any | None = None,
        rlon_b: Any | None = None,
        radius: float = EARTH_RADIUS,
    ) -> CurvilinearGrid:
        """A rotated-pole grid from its 1-D rotated centres (and edges, n + 1; inferred when
        omitted, like :func:`lat_bounds`/:func:`lon_bounds`), degrees."""
        if not mapping.rotated:
            raise CoordinateError(
                f"grid mapping {mapping.name!r} is {mapping.kind!r}, not {ROTATED_POLE!r}"
            )
        box = Grid(rlat, rlon, rlat_b, rlon_b)  # the rotated frame is a lat/lon grid
        m = mapping.rotation()
        yc, xc = np.meshgrid(box.lat, box.lon, indexing="ij")
        yb, xb = np.meshgrid(box.lat_b, box.lon_b, indexing="ij")
        lat, lon = _sphere.to_latlon(_sphere.to_xyz(yc, xc) @ m.T)
        lat_c, lon_c = _sphere.to_latlon(_sphere.to_xyz(yb, xb) @ m.T)
        return cls(lat, lon, lat_c, lon_c, mapping, box.lat, box.lon, box.lat_b, box.lon_b, radius)

    @classmethod
    def from_xarray(cls, obj: Any, h: Horizontal | None = None) -> CurvilinearGrid:
        """The curvilinear grid of an xarray object (:func:`find_horizontal` says where it is).

        Rotated pole with 1-D ``rlat``/``rlon``: cells from their (CF, else inferred) edges.
        Otherwise the 2-D latitude/longitude, with CF ``[ny, nx, 4]`` bounds where the
        coordinates name them (checked: :func:`corners_from_cf`), else corners inferred
        (:func:`infer_corners`); with 1-D projection ``x``/``y``, a grid mapping and pyproj,
        the corners are the projection's cell edges. Without 2-D latitude/longitude they are
        computed from ``x``/``y`` and the grid mapping (pyproj; the rotation of a rotated pole).

        Raises
        ------
        CoordinateError
            See :meth:`from_corners`, :func:`corners_from_cf`, :func:`find_horizontal`.
        """
        h = h if h is not None else find_horizontal(obj)
        mapping = _mapping_of(obj, h)
        native: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        if h.y is not None and h.x is not None:
            y = np.asarray(obj[h.y].values, dtype=np.float64)
            x = np.asarray(obj[h.x].values, dtype=np.float64)
            yb, xb = _cf_bounds_variable(obj, h.y), _cf_bounds_variable(obj, h.x)
            kinds = ("latitude", "longitude") if mapping and mapping.rotated else ("y", "x")
            y_b = None if yb is None else _native_edges(y, yb, kinds[0])
            x_b = None if xb is None else _native_edges(x, xb, kinds[1])
            if mapping is not None and mapping.rotated:
                g = cls.rotated(y, x, mapping, y_b, x_b)
                if h.lat is not None and h.lon is not None:
                    _check_same_centres(g, obj[h.lat].values, obj[h.lon].values, h)
                return g
            native = (y, x, _native_or_inferred(y, y_b, "y"), _native_or_inferred(x, x_b, "x"))
        plane = mapping.plane() if mapping is not None else None
        if h.lat is None or h.lon is None:
            if plane is None or native is None:
                raise CoordinateError(
                    "latitude/longitude not found and cannot be computed: a curvilinear grid "
                    "needs 2-D latitude/longitude coordinates, or 1-D projection x/y with a CF "
                    f"grid mapping{' and pyproj (pip install pyproj)' if mapping else ''}; add "
                    "them, or pass lat='name', lon='name'"
                )
            lat, lon = plane.inverse(*np.meshgrid(native[0], native[1], indexing="ij"))
        else:
            lat = np.asarray(obj[h.lat].values, dtype=np.float64)
            lon = np.asarray(obj[h.lon].values, dtype=np.float64)
        lat_c = lon_c = None
        bl, bo = _cf_bounds_2d(obj, h.lat), _cf_bounds_2d(obj, h.lon)
        if bl is not None and bo is not None:
            lat_c, lon_c = corners_from_cf(bl, bo)
        elif native is not None and plane is not None:  # the projection's own cell edges
            lat_c, lon_c = plane.inverse(*np.meshgrid(native[2], native[3], indexing="ij"))
        g = cls.from_corners(lat, lon, lat_c, lon_c, mapping)
        if native is not None:
            g = replace(g, y=native[0], x=native[1], y_b=native[2], x_b=native[3])
        return g

    # ------------------------------------------------------------------ description
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)``."""
        return (self.lat.shape[0], self.lat.shape[1])

    @property
    def periodic(self) -> bool:
        """Always False: a curvilinear grid does not wrap around."""
        return False

    @property
    def exact_rotated(self) -> bool:
        """True for a rotated pole with 1-D ``rlat``/``rlon``: cells with closed-form areas."""
        return bool(self.mapping is not None and self.mapping.rotated and self.y_b is not None)

    @cached_property
    def corners_xyz(self) -> np.ndarray:
        """``[H+1, W+1, 3]`` unit vectors of the corners."""
        return _sphere.to_xyz(self.lat_c, self.lon_c)

    @cached_property
    def area(self) -> np.ndarray:
        """Cell areas in m^2, ``[H, W]`` float64 (see the class notes)."""
        if self.cell_areas is not None:
            return self.cell_areas
        if self.exact_rotated:
            assert self.y_b is not None and self.x_b is not None
            return cell_area(self.y_b, self.x_b, self.radius)
        return np.abs(_sphere.quad_area(_cell_vertices(self.corners_xyz))) * self.radius**2

    @property
    def spacing(self) -> tuple[float, float]:
        """Mean cell size along the rows and along the columns, in degrees of arc."""
        c = self.corners_xyz
        dy = np.linalg.norm(np.diff(c, axis=0), axis=-1).mean()
        dx = np.linalg.norm(np.diff(c, axis=1), axis=-1).mean()
        return (float(np.rad2deg(dy)), float(np.rad2deg(dx)))

    @property
    def orientation(self) -> Orientation:
        """Which way north and east run in index space (the model's rows and columns).

        Read off the native ``y``/``x`` axes where the grid has them (north is up in the
        rotated frame or the projection plane), else off the cell at the grid's centre.
        """
        if self.y is not None and self.x is not None and self.y.size > 1 and self.x.size > 1:
            up = self.y[-1] > self.y[0]
            east = self.x[-1] > self.x[0]
        else:
            j, i = self.shape[0] // 2, self.shape[1] // 2
            c = self.corners_xyz
            v_row = (c[j + 1, i] + c[j + 1, i + 1]) - (c[j, i] + c[j, i + 1])
            v_col = (c[j, i + 1] + c[j + 1, i + 1]) - (c[j, i] + c[j + 1, i])
            lon = np.deg2rad(self.lon[j, i])
            up = bool(v_row[2] > 0)
            east = bool(v_col @ np.array([-np.sin(lon), np.cos(lon), 0.0]) > 0)
        return Orientation(
            lat="ascending" if up else "descending", lon="ascending" if east else "descending"
        )

    def flip(self, lat: bool = False, lon: bool = False) -> CurvilinearGrid:
        """The same cells with the rows (``lat``) and/or columns (``lon``) in reverse order."""
        r = slice(None, None, -1) if lat else slice(None)
        c = slice(None, None, -1) if lon else slice(None)

        def one(a: np.ndarray | None, s: slice) -> np.ndarray | None:
            return None if a is None else a[s]

        return replace(
            self,
            lat=self.lat[r, c],
            lon=self.lon[r, c],
            lat_c=self.lat_c[r, c],
            lon_c=self.lon_c[r, c],
            y=one(self.y, r),
            x=one(self.x, c),
            y_b=one(self.y_b, r),
            x_b=one(self.x_b, c),
            cell_areas=None if self.cell_areas is None else self.cell_areas[r, c],
        )

    def oriented(self, target: Orientation) -> tuple[CurvilinearGrid, tuple[bool, bool]]:
        """This grid stored in the ``target`` orientation, and which axes were reversed."""
        mine = self.orientation
        flips = (mine.lat != target.lat, mine.lon != target.lon)
        return (self.flip(*flips) if any(flips) else self), flips

    def cf_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """CF bounds ``[H, W, 4]`` of the latitudes and longitudes (degrees, CF vertex order).

        Each longitude vertex is within 180 degrees of its cell's centre as written.
        """
        lat = _cell_vertices(self.lat_c[..., None])[..., 0]
        lon = _cell_vertices(self.lon_c[..., None])[..., 0]
        lon = self.lon[..., None] + wrap_lon(lon - self.lon[..., None], -180.0)
        return lat, lon

    # ------------------------------------------------------------------ refine / coarsen
    def _plane(self) -> _Plane | None:
        return self.mapping.plane() if self.mapping is not None else None

    def refine(self, factor: int) -> CurvilinearGrid:
        """The fine grid that splits each cell into ``factor x factor`` cells.

        The rule: a rotated pole splits ``rlat``/``rlon`` evenly (cells of the rotated frame);
        with a map projection's plane (a CF grid mapping and pyproj) each cell is split
        bilinearly in the plane and mapped back; otherwise bilinearly in 3-D between the
        corners' unit vectors, normalised onto the sphere (a point on a cell's edge then lies
        on the great circle between its corners). Fine centres are the mean of each fine
        cell's four corners, taken the same way. Fine areas are the spherical quadrilaterals'
        scaled within each coarse cell to tile it exactly (the plane's straight edges and the
        sphere's great circles differ by ~1e-5 of a cell; on the sphere by round-off only).
        """
        f = _check_int_factor(factor)
        if self.exact_rotated:
            assert self.mapping is not None and self.y_b is not None and self.x_b is not None
            box = Grid(self.y, self.x, self.y_b, self.x_b).refine(f)
            g = CurvilinearGrid.rotated(box.lat, box.lon, self.mapping, box.lat_b, box.lon_b)
            return replace(g, radius=self.radius)
        plane = self._plane()
        if plane is not None:
            py, px = plane.forward(self.lat_c, self.lon_c)
            pc = _sphere.subdivide(np.stack([py, px], axis=-1), f)
            lat_c, lon_c = plane.inverse(pc[..., 0], pc[..., 1])
            mid = _mesh_mean(pc)
            lat, lon = plane.inverse(mid[..., 0], mid[..., 1])
        else:
            vc = _sphere.normalise(_sphere.subdivide(self.corners_xyz, f))
            lat_c, lon_c = _sphere.to_latlon(vc)
            lat, lon = _sphere.to_latlon(_mesh_mean(vc))
        fine = CurvilinearGrid(lat, lon, lat_c, lon_c, self.mapping, radius=self.radius)
        if self.y_b is not None and self.x_b is not None:  # native labels, split evenly
            fine = _with_native(fine, _split(self.y_b, f), _split(self.x_b, f))
        a = fine.area
        scale = block_expand(self.area / block_sum(a, f), f)
        return replace(fine, cell_areas=a * scale)

    def coarsen(self, factor: int) -> CurvilinearGrid:
        """The coarse grid whose cells are the ``factor x factor`` index blocks of this one.

        Corners are every ``factor``-th corner; a coarse cell's area is the sum of its fine
        cells' (it is their union) and its centre the mean of its corners (in the plane, or
        of the unit vectors: see :meth:`refine`).
        """
        check_factor(self.shape, factor)
        f = factor
        lat_c, lon_c = self.lat_c[::f, ::f], self.lon_c[::f, ::f]
        if self.exact_rotated:
            assert self.mapping is not None and self.y_b is not None and self.x_b is not None
            box = Grid(self.y, self.x, self.y_b, self.x_b).coarsen(f)
            g = CurvilinearGrid.rotated(box.lat, box.lon, self.mapping, box.lat_b, box.lon_b)
            return replace(g, radius=self.radius)
        plane = self._plane()
        if plane is not None:
            py, px = plane.forward(lat_c, lon_c)
            lat, lon = plane.inverse(_mesh_mean(py), _mesh_mean(px))
        else:
            lat, lon = _sphere.to_latlon(_mesh_mean(_sphere.to_xyz(lat_c, lon_c)))
        g = CurvilinearGrid(lat, lon, lat_c, lon_c, self.mapping, radius=self.radius)
        g = replace(g, cell_areas=block_sum(self.area, f))
        if self.y_b is not None and self.x_b is not None:
            g = _with_native(g, self.y_b[::f], self.x_b[::f])
        return g


def great_circle_deg(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in degrees of arc between points (degrees), elementwise."""
    a, b = _sphere.to_xyz(lat1, lon1), _sphere.to_xyz(lat2, lon2)
    chord = np.linalg.norm(a - b, axis=-1)
    return np.rad2deg(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))


def _with_native(g: CurvilinearGrid, y_b: np.ndarray, x_b: np.ndarray) -> CurvilinearGrid:
    """``g`` with native 1-D edges ``y_b``, ``x_b`` and centres midway between them."""
    y = tidy_centres(0.5 * (y_b[:-1] + y_b[1:]), y_b)
    x = tidy_centres(0.5 * (x_b[:-1] + x_b[1:]), x_b)
    return replace(g, y=y, x=x, y_b=y_b, x_b=x_b)


def _cf_bounds_2d(obj: Any, name: str | None) -> np.ndarray | None:
    """The ``[ny, nx, nv]`` values of a 2-D coordinate's CF bounds variable, if present."""
    if name is None:
        return None
    bname = obj[name].attrs.get("bounds")
    table = obj.variables if hasattr(obj, "data_vars") else obj.coords
    if bname is None or bname not in table:
        return None
    var = table[bname]
    if var.ndim != 3 or tuple(var.dims[:2]) != tuple(obj[name].dims):
        raise CoordinateError(
            f"bounds variable {bname!r} of {name!r} has dims {tuple(var.dims)}; CF bounds of a "
            f"2-D coordinate are ({', '.join(map(repr, obj[name].dims))}, <vertex dim of size "
            "4>): fix it or drop it (and the 'bounds' attribute)"
        )
    return np.asarray(var.values, dtype=np.float64)


def _native_edges(centres: np.ndarray, vertices: np.ndarray, kind: str) -> np.ndarray:
    """Edges of 1-D native coordinates from their CF ``[n, 2]`` bounds (checked)."""
    if kind in ("latitude", "longitude"):
        return bounds_from_cf(centres, vertices, kind)
    v = np.asarray(vertices, dtype=np.float64)
    if v.shape != (centres.size, 2):
        raise CoordinateError(
            f"{kind} bounds must have shape ({centres.size}, 2), got {v.shape}: {_BOUNDS_FIX}"
        )
    step = _direction(centres, kind)
    lo, hi = v.min(axis=1), v.max(axis=1)
    first, last = (lo, hi) if step > 0 else (hi, lo)
    edges = np.concatenate([first[:1], 0.5 * (first[1:] + last[:-1]), last[-1:]])
    tol = _bounds_tol(hi - lo)
    if np.any(np.abs(first[1:] - last[:-1]) > tol) or np.any(
        (centres < lo - tol) | (centres > hi + tol)
    ):
        raise CoordinateError(
            f"{kind} bounds leave gaps, overlap or miss their centres: {_BOUNDS_FIX}"
        )
    return edges


def _native_or_inferred(c: np.ndarray, edges: np.ndarray | None, kind: str) -> np.ndarray:
    return edges if edges is not None else _edges_from_centres(c, kind)


def _check_same_centres(g: CurvilinearGrid, lat: Any, lon: Any, h: Horizontal) -> None:
    """The file's 2-D lat/lon must be where the rotated pole puts rlat/rlon."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != g.shape:
        raise CoordinateError(
            f"2-D {h.lat!r} has shape {lat.shape} but {h.y!r} x {h.x!r} is {g.shape}"
        )
    d = np.linalg.norm(_sphere.to_xyz(lat, lon) - _sphere.to_xyz(g.lat, g.lon), axis=-1)
    tol = np.deg2rad(1e-2 * min(g.spacing))
    if np.any(d > tol):
        ij = np.unravel_index(int(np.argmax(d)), d.shape)
        raise CoordinateError(
            f"the 2-D {h.lat!r}/{h.lon!r} are not where the grid mapping puts {h.y!r}/{h.x!r}: "
            f"at {tuple(int(i) for i in ij)} the file has ({lat[ij]:.4f}, {lon[ij]:.4f}) but "
            f"the rotation gives ({g.lat[ij]:.4f}, {g.lon[ij]:.4f}); check the grid mapping's "
            "grid_north_pole_latitude/longitude"
        )


@dataclass(frozen=True)
class Horizontal:
    """Where an xarray object keeps its horizontal grid (names only; :func:`find_horizontal`).

    Attributes
    ----------
    lat, lon : str or None
        Latitude/longitude coordinates (1-D, or 2-D on ``dims``); None where a curvilinear
        grid gives none (rotated pole or projection with 1-D ``y``/``x`` only).
    dims : (row dim, column dim)
        The two horizontal dimensions.
    y, x : str or None
        1-D native coordinates on ``dims`` (``rlat``/``rlon``, projection ``y``/``x``).
    mapping : str or None
        The CF grid mapping variable's name.
    curvilinear : bool
        False for a regular latitude/longitude grid (:class:`Grid`).
    """

    lat: str | None
    lon: str | None
    dims: tuple[Hashable, Hashable]
    y: str | None = None
    x: str | None = None
    mapping: str | None = None
    curvilinear: bool = False


def _mapping_name(obj: Any) -> str | None:
    """The grid mapping variable an object's variables point at, or any variable that is one."""
    table = obj.variables if hasattr(obj, "data_vars") else obj.coords
    pointers = [obj.attrs.get("grid_mapping")]
    if hasattr(obj, "data_vars"):
        pointers += [v.attrs.get("grid_mapping") for v in obj.data_vars.values()]
    for p in pointers:
        if isinstance(p, str) and p.strip():
            name = p.split(":")[0].split()[0]  # CF's extended form "crs: x y" names crs first
            if name in table:
                return name
    for name, v in table.items():
        if "grid_mapping_name" in v.attrs:
            return str(name)
    return None


def _mapping_of(obj: Any, h: Horizontal) -> GridMapping | None:
    if h.mapping is None:
        return None
    table = obj.variables if hasattr(obj, "data_vars") else obj.coords
    return GridMapping(h.mapping, dict(table[h.mapping].attrs))


def _native_axis(obj: Any, dim: Hashable, axis: str) -> str | None:
    """The 1-D numeric coordinate on ``dim`` (its dimension coordinate first)."""
    cands = [str(dim)] if dim in obj.coords else []
    cands += [str(n) for n, c in obj.coords.items() if c.dims == (dim,) and str(n) != str(dim)]
    for n in cands:
        if obj[n].ndim == 1 and np.issubdtype(obj[n].dtype, np.number):
            return n
    return None


def find_horizontal(obj: Any, lat: str | None = None, lon: str | None = None) -> Horizontal:
    """Where an xarray object keeps its horizontal grid: regular or curvilinear.

    * 1-D latitude and longitude on two dimensions: a regular grid (:class:`Grid`).
    * 2-D latitude and longitude on the same two dimensions: a curvilinear grid; the 1-D
      coordinates on those dimensions (``rlat``/``rlon``, ``y``/``x``) and the CF grid
      mapping (a data variable's ``grid_mapping`` attribute) are found too.
    * No latitude/longitude but a grid mapping and 1-D native coordinates (CF
      ``standard_name`` ``grid_latitude``/``grid_longitude`` or
      ``projection_y/x_coordinate``, or named ``rlat``/``rlon``, ``y``/``x``): curvilinear,
      latitude and longitude computed (:meth:`CurvilinearGrid.from_xarray`).

    Raises
    ------
    CoordinateError
        If neither is there (naming what was looked for), or the coordinates do not share
        their dimensions.
    """
    mapping = _mapping_name(obj)
    try:
        lat_name, lon_name = _latlon_names(obj, lat, lon)
    except CoordinateError as exc:
        if mapping is None or lat is not None or lon is not None:
            raise CoordinateError(
                f"{exc}. A curvilinear grid needs 2-D latitude/longitude coordinates (or 1-D "
                "rlat/rlon or projection x/y with a CF grid mapping variable)"
            ) from exc
        axes = {}
        for axis in ("y", "x"):
            name = next(
                (
                    str(n)
                    for n, c in obj.coords.items()
                    if c.ndim == 1
                    and (
                        c.attrs.get("standard_name") in _NATIVE_STD[axis]
                        or str(n) in _NATIVE_NAMES[axis]
                    )
                ),
                None,
            )
            if name is None:
                raise CoordinateError(
                    f"{exc}; the grid mapping {mapping!r} is there but no 1-D {axis} coordinate "
                    f"(standard_name {' or '.join(_NATIVE_STD[axis][:2])}) was found: add 2-D "
                    "latitude/longitude or the native coordinates"
                ) from exc
            axes[axis] = name
        dims = (obj[axes["y"]].dims[0], obj[axes["x"]].dims[0])
        return Horizontal(None, None, dims, axes["y"], axes["x"], mapping, curvilinear=True)
    la, lo = obj[lat_name], obj[lon_name]
    if la.ndim == 1 and lo.ndim == 1:
        if la.dims[0] == lo.dims[0]:
            raise CoordinateError(
                f"{lat_name!r} and {lon_name!r} share the dimension {la.dims[0]!r} (an "
                "unstructured grid); climdown downscales grids of rows and columns only: "
                "regrid first"
            )
        return Horizontal(lat_name, lon_name, (la.dims[0], lo.dims[0]))
    if la.ndim != 2 or lo.ndim != 2 or la.dims != lo.dims:
        raise CoordinateError(
            f"latitude {lat_name!r} has dims {la.dims} and longitude {lon_name!r} {lo.dims}: "
            "a curvilinear grid has 2-D latitude and longitude on the same two dimensions "
            "(rows, columns); pass lat='name', lon='name'"
        )
    dims = (la.dims[0], la.dims[1])
    y, x = _native_axis(obj, dims[0], "y"), _native_axis(obj, dims[1], "x")
    if y is None or x is None:
        y = x = None
    return Horizontal(lat_name, lon_name, dims, y, x, mapping, curvilinear=True)


# ---------------------------------------------------------------------------------------
# Latitude/longitude boxes
# ---------------------------------------------------------------------------------------
_BOX_EPS = 1e-9  # degrees: a centre on a box's edge is inside despite round-off


@dataclass(frozen=True)
class Box:
    """A latitude/longitude box in degrees; the cells whose centres lie inside belong to it.

    The box runs from ``lat_min`` to ``lat_max`` and eastward from ``lon_min`` to ``lon_max``,
    bounds included. Longitudes may be written in either convention and the box may cross
    the date line or meridian 0: ``(170, 200)``, ``(-20, 20)`` and ``(340, 20)`` are all boxes
    (the last two are the same one); an eastward span of 360 degrees or more is the whole
    circle. What a box selects does not depend on the longitude convention of the grid or of
    the box.

    Parameters
    ----------
    lat_min, lat_max, lon_min, lon_max : float
        Degrees north and east.

    Raises
    ------
    CoordinateError
        If a value is not a finite number, or unless ``-90 <= lat_min <= lat_max <= 90``.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        for name in ("lat_min", "lat_max", "lon_min", "lon_max"):
            value = number(
                getattr(self, name), f"box {name}", error=CoordinateError, what="degrees (a number)"
            )
            object.__setattr__(self, name, value)
        if not -90.0 <= self.lat_min <= self.lat_max <= 90.0:
            raise CoordinateError(
                "box latitudes must satisfy -90 <= lat_min <= lat_max <= 90, got "
                f"lat_min={self.lat_min}, lat_max={self.lat_max}; give (lat_min, lat_max, "
                "lon_min, lon_max) with lat_min <= lat_max"
            )

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(lat_min, lat_max, lon_min, lon_max)``."""
        return (self.lat_min, self.lat_max, self.lon_min, self.lon_max)

    @property
    def lon_span(self) -> float:
        """Degrees from ``lon_min`` eastward to ``lon_max``, in ``[0, 360]`` (360: all round)."""
        d = self.lon_max - self.lon_min
        return min(d, 360.0) if d >= 0 else float(wrap_lon(d))

    def lat_mask(self, lat: Any) -> np.ndarray:
        """Which latitudes (degrees) lie inside the box."""
        lat = np.asarray(lat, dtype=np.float64)
        return (lat >= self.lat_min - _BOX_EPS) & (lat <= self.lat_max + _BOX_EPS)

    def lon_offset(self, lon: Any) -> np.ndarray:
        """Degrees east of ``lon_min`` (0..360): the order in which the box's columns run."""
        offset = wrap_lon(np.asarray(lon, dtype=np.float64) - self.lon_min)
        return np.where(offset > 360.0 - _BOX_EPS, 0.0, offset)

    def lon_mask(self, lon: Any) -> np.ndarray:
        """Which longitudes (degrees, either convention) lie inside the box."""
        return self.lon_offset(lon) <= self.lon_span + _BOX_EPS

    def indices(self, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the grid cells whose centres lie inside the box.

        Parameters
        ----------
        lat, lon : array_like
            1-D cell centres of a grid in degrees (any order, either longitude convention).

        Returns
        -------
        rows, cols : numpy.ndarray
            Integer indices; rows in the grid's order, columns running eastward from
            ``lon_min`` (a box across the date line or meridian 0 comes out in one piece).
        """
        rows = np.flatnonzero(self.lat_mask(lat))
        offset = self.lon_offset(lon)
        cols = np.flatnonzero(offset <= self.lon_span + _BOX_EPS)
        return rows, cols[np.argsort(offset[cols], kind="stable")]

    def disjoint(self, other: Box) -> bool:
        """True when the two boxes share no point (longitudes compared on the circle)."""
        if self.lat_max < other.lat_min or other.lat_max < self.lat_min:
            return True
        a0, b0 = wrap_lon(self.lon_min), wrap_lon(other.lon_min)
        return bool(wrap_lon(b0 - a0) > self.lon_span and wrap_lon(a0 - b0) > other.lon_span)


def _check_int_factor(factor: Any) -> int:
    return validate_factor(factor, error=GridShapeError)


def check_factor(
    shape: tuple[int, ...], factor: int, dims: tuple[Hashable, Hashable] | None = None
) -> int:
    """Check that the last two dimensions of ``shape`` are divisible by ``factor``.

    ``dims`` names them in the crop the error suggests (default: latitude, longitude).

    Raises
    ------
    GridShapeError
        Naming the shape, the factor and the fix (crop or pad).
    """
    factor = _check_int_factor(factor)
    h, w = shape[-2], shape[-1]
    if h % factor or w % factor:
        crops = [
            f"{axis}=slice(0, {n - n % factor})"
            for axis, n in zip(dims or ("latitude", "longitude"), (h, w), strict=True)
            if n % factor
        ]
        raise GridShapeError(
            f"grid of {h} x {w} cells is not divisible by factor "
            f"{factor}: crop it to {h - h % factor} x {w - w % factor} (e.g. "
            f"ds.isel({', '.join(crops)})) or pad it to a multiple of {factor}"
        )
    return factor


def infer_factor(
    fine_shape: tuple[int, ...], coarse_shape: tuple[int, ...], factor: int | None = None
) -> int:
    """The integer f with ``fine = f x coarse`` on both of the last two axes.

    Raises
    ------
    GridShapeError
        If the shapes are not a square integer refinement of each other, or if ``factor`` is
        given and disagrees with the shapes.
    """
    (hf, wf), (hc, wc) = tuple(fine_shape[-2:]), tuple(coarse_shape[-2:])
    if hc == 0 or wc == 0 or hf % hc or wf % wc or hf // hc != wf // wc:
        raise GridShapeError(
            f"the fine grid ({hf} x {wf}) is not a square integer refinement (an integer "
            f"multiple f x f) of the coarse grid ({hc} x {wc}): the size ratios are "
            f"{hf / max(hc, 1):g} and {wf / max(wc, 1):g}; pass the coarse field the fine one "
            "was made from (or one made for that factor)"
        )
    inferred = hf // hc
    if factor is not None and factor != inferred:
        raise GridShapeError(
            f"factor={factor} was given but the fine grid ({hf} x {wf}) is {inferred}x the "
            f"coarse grid ({hc} x {wc}); drop factor= or pass matching fields"
        )
    return inferred


# ---------------------------------------------------------------------------------------
# Block maths on numpy / torch / dask arrays (one implementation)
# ---------------------------------------------------------------------------------------
def as_blocks(a: Any, factor: int) -> Any:
    """View ``[..., H, W]`` as ``[..., H/f, f, W/f, f]``: block (i, j) is ``[..., i, :, j, :]``.

    Per-block maths can then broadcast a coarse value ``x[..., :, None, :, None]`` over its
    block without materialising a block-expanded copy; :func:`from_blocks` undoes the view.
    """
    factor = check_factor(a.shape, factor)
    *lead, h, w = a.shape
    return a.reshape(*lead, h // factor, factor, w // factor, factor)


def from_blocks(b: Any) -> Any:
    """Inverse of :func:`as_blocks`: ``[..., h, f, w, f] -> [..., h f, w f]``."""
    *lead, h, f1, w, f2 = b.shape
    return b.reshape(*lead, h * f1, w * f2)


def block_sum(a: Any, factor: int) -> Any:
    """Sum over each ``factor x factor`` block of the last two axes: ``[..., H, W] -> [..., H/f, W/f]``."""
    return as_blocks(a, factor).sum(-1).sum(-2)


def block_expand(x: Any, factor: int) -> Any:
    """Repeat each coarse value over its block: ``[..., h, w] -> [..., h*f, w*f]``."""
    factor = _check_int_factor(factor)
    *lead, h, w = x.shape
    x4 = x.reshape(*lead, h, 1, w, 1)
    shape = (*lead, h, factor, w, factor)
    if hasattr(x4, "expand"):  # torch: a view, no copy until reshape
        big = x4.expand(*shape)
    else:  # numpy and dask
        big = np.broadcast_to(x4, shape) if isinstance(x4, np.ndarray) else _dask_bcast(x4, shape)
    return big.reshape(*lead, h * factor, w * factor)


def _dask_bcast(x: Any, shape: tuple[int, ...]) -> Any:
    import dask.array as dsa

    return dsa.broadcast_to(x, shape)


def coarsen(
    field: Any,
    area: Any,
    factor: int,
    *,
    skipna: bool = False,
    _block_sum: Callable = block_sum,
) -> Any:
    """Area-weighted block mean: ``x = sum(A y) / sum(A)`` over each ``factor x factor`` block.

    Parameters
    ----------
    field : array (numpy, torch or dask) or xarray DataArray, ``[..., H, W]``
        Fine field in any intensive unit (e.g. kg m-2).
    area : array of the same kind, broadcastable to ``field``, ``[..., H, W]``
        Fine-cell areas (m^2) or any weights proportional to them.
    factor : int
        Block size.
    skipna : bool
        False (default): a NaN cell makes its block NaN, so a block is never the mean of a
        part of it without saying so. True, when asked for explicitly: the area-weighted mean
        of the block's valid (non-NaN) cells, ``sum(A y) / sum(A)`` over those cells only; a
        block without any valid cell is NaN, never 0.

    Returns
    -------
    array ``[..., H/f, W/f]`` in the unit of ``field``.

    Raises
    ------
    GridShapeError
        If H or W is not divisible by ``factor``.
    """
    if not skipna:
        return _block_sum(field * area, factor) / _block_sum(area, factor)
    valid = field == field  # False at NaN, in every array library
    weight = _block_sum(area * valid, factor)
    total = _block_sum(_where(valid, field, 0.0) * area, factor)
    # an empty block divides by NaN, not 0: NaN without a 0/0 warning
    return total / _where(weight > 0, weight, np.nan)


def _where(cond: Any, a: Any, b: float) -> Any:
    """``a`` where ``cond``, else the number ``b``: numpy, dask, torch and xarray alike."""
    if hasattr(a, "dims") and hasattr(a, "where"):  # xarray
        return a.where(cond, b)
    if type(a).__module__.startswith("torch"):
        import torch

        return torch.where(cond, a, torch.as_tensor(b, dtype=a.dtype, device=a.device))
    return np.where(cond, a, b)  # numpy, and dask through numpy's dispatch


def block_weights(area: Any, factor: int) -> Any:
    """Area weights normalised within each block (they sum to 1 over every ``f x f`` block)."""
    return area / block_expand(block_sum(area, factor), factor)


def total_mass(field: Any, area: Any) -> Any:
    """Total mass ``sum(field * area)`` over the last two axes (kg when field is kg m-2, area m^2)."""
    return (field * area).sum(-1).sum(-1)


# ---------------------------------------------------------------------------------------
# xarray
# ---------------------------------------------------------------------------------------
def _latlon_names(obj: Any, lat: str | None, lon: str | None) -> tuple[str, str]:
    """Names of the latitude and longitude coordinates (1-D or 2-D) of an xarray object."""
    found = []
    for given, names, std, unit_spellings, kind in (
        (lat, _LAT_NAMES, "latitude", ("degreesnorth", "degreesn"), "latitude"),
        (lon, _LON_NAMES, "longitude", ("degreeseast", "degreese"), "longitude"),
    ):
        if given is not None:
            if given not in obj.coords and given not in getattr(obj, "variables", {}):
                raise CoordinateError(
                    f"{kind} coordinate {given!r} not found in {list(obj.coords)}"
                )
            found.append(given)
            continue
        name = next((n for n in names if n in obj.coords), None)
        if name is None:
            for cname, coord in obj.coords.items():
                if (
                    coord.attrs.get("standard_name") == std
                    or _cf_degrees(coord.attrs.get("units")) in unit_spellings
                ):
                    name = str(cname)
                    break
        if name is None:
            raise CoordinateError(
                f"{kind} not found: looked for {', '.join(names[:2])} or standard_name "
                f"{std!r} among coordinates {list(obj.coords)}; pass {kind[:3]}='name'"
            )
        found.append(name)
    return found[0], found[1]


def find_latlon(obj: Any, lat: str | None = None, lon: str | None = None) -> tuple[str, str]:
    """Names of the 1-D latitude and longitude coordinates of an xarray object.

    Looks for explicit names, then common names (``lat``, ``latitude``, ...), then CF
    ``standard_name`` / ``units`` attributes. For grids that may be curvilinear (2-D
    latitude/longitude, rotated pole), use :func:`find_horizontal`.

    Raises
    ------
    CoordinateError
        Naming what was looked for and how to fix it; also if a coordinate is 2-D.
    """
    lat_name, lon_name = _latlon_names(obj, lat, lon)
    for name in (lat_name, lon_name):
        if obj[name].ndim != 1:
            raise CoordinateError(
                f"coordinate {name!r} is {obj[name].ndim}-D: this needs a regular lat/lon grid "
                "(1-D latitude/longitude); curvilinear grids (2-D latitude/longitude, e.g. WRF, "
                "rotated pole or polar stereographic) are read by climdown.grid.find_horizontal "
                "and grid_of (downscale, coarsen, conservation and plot take them)"
            )
    return lat_name, lon_name


def _cf_degrees(units: Any) -> str:
    """CF's many spellings of degrees_north/east (degree_N, degreeN, ...) in one form."""
    s = str(units or "").lower().replace("_", "").replace(" ", "")
    return s.replace("degrees", "degree").replace("degree", "degrees")


def grid_of(obj: Any, lat: str | None = None, lon: str | None = None) -> Grid | CurvilinearGrid:
    """The grid of an xarray object: a :class:`Grid` (1-D latitude/longitude) or a
    :class:`CurvilinearGrid` (2-D latitude/longitude, or a rotated pole), with its CF bounds."""
    h = find_horizontal(obj, lat=lat, lon=lon)
    if not h.curvilinear:
        return Grid.from_xarray(obj, h.lat, h.lon)
    return CurvilinearGrid.from_xarray(obj, h)


#: CF attributes of latitude and longitude coordinate variables (CF-1.8 sections 4.1 and 4.2).
_CF_COORDINATES: dict[str, dict[str, str]] = {
    "lat": {
        "standard_name": "latitude",
        "long_name": "latitude",
        "units": "degrees_north",
        "axis": "Y",
    },
    "lon": {
        "standard_name": "longitude",
        "long_name": "longitude",
        "units": "degrees_east",
        "axis": "X",
    },
}
_CF_DEGREES = {"lat": ("degreesnorth", "degreesn"), "lon": ("degreeseast", "degreese")}

#: The encoding of coordinates and bounds climdown writes: no ``_FillValue`` (CF-1.8 2.5.1: a
#: coordinate variable has no missing values; 7.1: bounds carry no such attributes), which
#: xarray would otherwise add to every float variable.
NO_FILL: Mapping[str, Any] = MappingProxyType({"_FillValue": None})


def cf_coordinate_attrs(attrs: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A copy of a latitude (``kind="lat"``) or longitude (``"lon"``) coordinate's attributes
    with CF's ``standard_name``, ``long_name``, ``units`` and ``axis`` where missing.

    ``units`` that are not a CF spelling of degrees north (east) are replaced by
    ``degrees_north`` (``degrees_east``): climdown reads every latitude and longitude in degrees.
    A ``bounds`` pointer is dropped: the caller writes the bounds of the cells it returns
    (:func:`add_cf_bounds`), or none.
    """
    if kind not in _CF_COORDINATES:
        raise ValueError(f"kind must be 'lat' or 'lon', got {kind!r}")
    out = {k: v for k, v in attrs.items() if k != "bounds"}
    cf = _CF_COORDINATES[kind]
    if _cf_degrees(out.get("units")) not in _CF_DEGREES[kind]:
        out["units"] = cf["units"]
    for key in ("standard_name", "long_name", "axis"):
        out.setdefault(key, cf[key])
    return out


def add_cf_bounds(
    ds: xr.Dataset,
    grid: Grid | CurvilinearGrid,
    lat: str | None = None,
    lon: str | None = None,
    names: tuple[str | None, str | None] = (None, None),
) -> xr.Dataset:
    """``ds`` with CF bounds variables of ``grid``'s cells and ``bounds`` attributes pointing at them.

    Neither the coordinates nor the bounds get a ``_FillValue`` (:data:`NO_FILL`); the
    coordinates' other attributes are ``ds``'s (downscaling gives them CF's with
    :func:`cf_coordinate_attrs` first).

    Parameters
    ----------
    ds : xarray.Dataset
        On ``grid`` (same centres, same order).
    grid : Grid
        The cells the data describe.
    lat, lon : str, optional
        Coordinate names when they cannot be found by name or CF attributes.
    names : tuple of str or None
        Names of the latitude and longitude bounds variables; by default ``<coord>_bnds``
        (``lat_bnds``, ``lon_bnds``). The vertex dimension is ``bnds``.

    Returns
    -------
    xarray.Dataset
        A new Dataset with the bounds as (non-index) coordinates; any CF tool then sees
        exactly the cells climdown used (:meth:`Grid.from_xarray` reads them back unchanged).
        On a :class:`CurvilinearGrid` the 2-D latitude/longitude get ``[ny, nx, 4]`` bounds
        (vertex dimension ``nv4``, CF order), 1-D native coordinates ``[n, 2]`` ones, and
        the grid mapping variable is kept.
    """
    import xarray as xr

    if isinstance(grid, CurvilinearGrid):
        return _add_curvilinear_bounds(ds, grid, find_horizontal(ds, lat, lon), names)
    lat_name, lon_name = find_latlon(ds, lat=lat, lon=lon)
    lat_b, lon_b = grid.cf_bounds()
    out = ds.copy()
    for coord, values, bname in (
        (lat_name, lat_b, names[0]),
        (lon_name, lon_b, names[1]),
    ):
        bname = bname or f"{coord}_bnds"
        units = ds[coord].attrs.get("units", f"degrees_{'north' if coord == lat_name else 'east'}")
        # a coordinate, as cf_xarray's add_bounds makes it: data_vars stay the fields
        bounds = xr.Variable((ds[coord].dims[0], "bnds"), values, {"units": units}, dict(NO_FILL))
        out = out.assign_coords({bname: bounds})
        out[coord].attrs = {**ds[coord].attrs, "bounds": bname}
        out[coord].encoding = {**out[coord].encoding, **NO_FILL}
    return out


def area_dataarray(
    grid: Grid | CurvilinearGrid, lat_dim: Hashable, lon_dim: Hashable
) -> xr.DataArray:
    """The grid's cell areas (m^2) as a DataArray on ``(lat_dim, lon_dim)``."""
    import xarray as xr

    return xr.DataArray(grid.area, dims=(lat_dim, lon_dim), attrs={"units": "m2"})


def mass_over(
    da: xr.DataArray, area: xr.DataArray, dims: tuple[Hashable, Hashable]
) -> xr.DataArray:
    """:func:`total_mass` over the two ``dims`` of an xarray field (lazy on dask input).

    NaN is not skipped: a NaN anywhere in a field makes its mass NaN, never a silent
    undercount. For the mass of the valid cells only, say so: ``da.fillna(0)``.
    """
    import xarray as xr

    return xr.apply_ufunc(
        total_mass, da, area, input_core_dims=[list(dims), list(dims)], dask="allowed"
    )


def coarsen_dataarray(
    da: xr.DataArray,
    factor: int,
    lat: str | None = None,
    lon: str | None = None,
    grid: Grid | CurvilinearGrid | None = None,
    *,
    skipna: bool = False,
) -> xr.DataArray:
    """Area-weighted coarsening of an xarray DataArray by ``factor`` (lazy on dask input).

    The result carries the coarse cell-centre coordinates (from :meth:`Grid.coarsen`), the
    input's other coordinates and its attributes. NaN is not skipped: a NaN cell makes its
    block NaN, as in :func:`coarsen` (xarray's own ``coarsen().sum()`` would skip it and
    return the sum of a part of the block, or 0 for an all-NaN block).

    Parameters
    ----------
    skipna : bool
        True: each block is the area-weighted mean of its valid cells, NaN where it has none
        (see :func:`coarsen`).
    grid : Grid, optional
        The fine grid whose cell areas weight the blocks; by default the grid of ``da``'s
        coordinates. Pass ``coarse_grid.refine(factor)`` to weight exactly the cells that
        tile a known coarse grid (see :mod:`climdown.conservation`).

    Raises
    ------
    GridShapeError
        If the latitude or longitude size is not divisible by ``factor``, or ``grid`` has
        another shape than ``da``.
    """
    h = find_horizontal(da, lat=lat, lon=lon)
    g = grid if grid is not None else _grid_at(da, h)
    lat_dim, lon_dim = h.dims
    shape = (da.sizes[lat_dim], da.sizes[lon_dim])
    if g.shape != shape:
        raise GridShapeError(
            f"grid= has {g.shape[0]} x {g.shape[1]} cells but the field has {shape[0]} x "
            f"{shape[1]}; pass the fine grid of this field or leave grid= out"
        )
    check_factor(shape, factor, h.dims)
    coarse = g.coarsen(factor)
    area = area_dataarray(g, lat_dim, lon_dim)

    def xr_block_sum(a: xr.DataArray, f: int) -> xr.DataArray:
        return a.coarsen({lat_dim: f, lon_dim: f}).reduce(np.sum)  # np.sum: NaN not skipped

    out = coarsen(da, area, factor, skipna=skipna, _block_sum=xr_block_sum)
    out = out.transpose(*da.dims)
    out.attrs = dict(da.attrs)
    out.name = da.name
    if isinstance(coarse, CurvilinearGrid):
        return out.assign_coords(curvilinear_coords(coarse, h, da))
    lat_name, lon_name = str(h.lat), str(h.lon)
    out = out.assign_coords(
        {
            lat_name: (lat_dim, like_dtype(coarse.lat, da[lat_name])),
            lon_name: (lon_dim, like_dtype(coarse.lon, da[lon_name])),
        }
    )
    for name in (lat_name, lon_name):
        # a CF bounds pointer would name the fine cells' bounds: add_cf_bounds writes coarse ones
        out[name].attrs = {k: v for k, v in da[name].attrs.items() if k != "bounds"}
        out[name].encoding = dict(NO_FILL)  # CF: a coordinate variable has no missing values
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


def mass_dataarray(
    da: xr.DataArray,
    lat: str | None = None,
    lon: str | None = None,
    grid: Grid | CurvilinearGrid | None = None,
) -> xr.DataArray:
    """Total mass over the horizontal grid, ``sum(field * area)``, one value per other index.

    ``da`` must be in kg m-2 for the result to be in kg (see :func:`climdown.units.to_kg_m2`).
    A NaN cell makes the mass of its index NaN (see :func:`mass_over`).
    """
    h = find_horizontal(da, lat=lat, lon=lon)
    g = grid if grid is not None else _grid_at(da, h)
    lat_dim, lon_dim = h.dims
    out = mass_over(da, area_dataarray(g, lat_dim, lon_dim), (lat_dim, lon_dim))
    out.attrs = {"units": "kg", "long_name": "total mass"}
    return out


def _grid_at(obj: Any, h: Horizontal) -> Grid | CurvilinearGrid:
    """The grid of ``obj`` whose coordinates :func:`find_horizontal` found (``h``)."""
    if h.curvilinear:
        return CurvilinearGrid.from_xarray(obj, h)
    return Grid.from_xarray(obj, h.lat, h.lon)


def curvilinear_coords(
    grid: CurvilinearGrid,
    h: Horizontal,
    like: Any,
    clean: Callable[[Mapping[str, Any]], dict[str, Any]] = dict,
) -> dict[Hashable, Any]:
    """The coordinates of a curvilinear ``grid`` as an output on ``like``'s dims ``h.dims`` carries.

    2-D latitude/longitude (named as in ``like``, else ``lat``/``lon``) with CF attributes,
    the 1-D native coordinates (``rlat``/``rlon``, ``y``/``x``) where ``like`` has them, and
    the grid mapping variable (a 0-d coordinate with its CF attributes, and a ``long_name``
    where it has none). ``clean`` filters the attributes taken from ``like`` (the caller drops
    packing). No ``_FillValue`` (:data:`NO_FILL`); no ``bounds`` pointers
    (:func:`add_cf_bounds` writes bounds).
    """
    import xarray as xr

    def attrs_of(name: str | None) -> dict[str, Any]:
        if name is None or name not in like.coords:
            return {}
        return {k: v for k, v in clean(like[name].attrs).items() if k != "bounds"}

    coords: dict[Hashable, Any] = {}
    for name, values, kind in ((h.lat, grid.lat, "lat"), (h.lon, grid.lon, "lon")):
        attrs = cf_coordinate_attrs(attrs_of(name), kind)
        attrs.pop("axis", None)  # CF: axis is for 1-D coordinate variables, not 2-D auxiliaries
        if name is not None and name in like.coords:
            values = like_dtype(values, like[name])
        coords[name or kind] = xr.Variable(h.dims, values, attrs, dict(NO_FILL))
    for name, axis, dim in ((h.y, grid.y, h.dims[0]), (h.x, grid.x, h.dims[1])):
        if name is not None and axis is not None:
            if name in like.coords:
                axis = like_dtype(axis, like[name])
            coords[name] = xr.Variable(dim, axis, attrs_of(name), dict(NO_FILL))
    if grid.mapping is not None:
        # CF checkers ask every variable for a long_name or standard_name, this one too
        attrs = {"long_name": f"grid mapping ({grid.mapping.kind})", **grid.mapping.attrs}
        coords[grid.mapping.name] = xr.Variable((), np.int32(0), attrs)
    return coords


def _add_curvilinear_bounds(
    ds: xr.Dataset, grid: CurvilinearGrid, h: Horizontal, names: tuple[str | None, str | None]
) -> xr.Dataset:
    import xarray as xr

    out = ds.copy()
    lat_b, lon_b = grid.cf_bounds()
    for coord, values, bname, units in (
        (h.lat, lat_b, names[0], "degrees_north"),
        (h.lon, lon_b, names[1], "degrees_east"),
    ):
        if coord is None:
            continue
        bname = bname or f"{coord}_bnds"
        var = xr.Variable((*h.dims, "nv4"), values, {"units": units}, dict(NO_FILL))
        out = out.assign_coords({bname: var})
        out[coord].attrs = {**out[coord].attrs, "bounds": bname}
    for coord, edges, dim in ((h.y, grid.y_b, h.dims[0]), (h.x, grid.x_b, h.dims[1])):
        if coord is None or edges is None or coord not in out.coords:
            continue
        bname = f"{coord}_bnds"
        pairs = np.stack([edges[:-1], edges[1:]], axis=1)
        unit = {k: v for k, v in out[coord].attrs.items() if k == "units"}
        out = out.assign_coords({bname: xr.Variable((dim, "bnds"), pairs, unit, dict(NO_FILL))})
        out[coord].attrs = {**out[coord].attrs, "bounds": bname}
    if grid.mapping is not None:
        for name, v in out.data_vars.items():
            if set(h.dims) <= set(v.dims):
                out[name].attrs = {**v.attrs, "grid_mapping": grid.mapping.name}
    return out
