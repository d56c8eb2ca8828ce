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
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from climdown.errors import CoordinateError, GridShapeError
from climdown.validate import factor as validate_factor
from climdown.validate import number

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "EARTH_RADIUS",
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
            "(2-D latitude/longitude, e.g. WRF, rotated pole, polar stereographic) are not "
            "supported yet: regrid to a regular lat/lon grid first (e.g. with xESMF)."
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

    On a grid with uniform longitude spacing the areas do not depend on the window's column,
    so windows in one row share one cached array (the same object: a caller can compute their
    block weights once). The cache holds a few tile rows' windows at a time.
    """

    def __init__(self, grid: Grid, factor: int) -> None:
        fine = grid.refine(factor)
        self.factor = int(factor)
        self.lat_b = fine.lat_b
        self.lon_b = fine.lon_b
        self.lon_span = fine.lon_b[-1] - fine.lon_b[0]
        self.radius = grid.radius
        width = np.diff(fine.lon_b)
        self.uniform_lon = bool(np.allclose(width, width[0], rtol=1e-9, atol=0.0))
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def __call__(self, row0: int, nrow: int, col0: int, ncol: int) -> np.ndarray:
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
        by ``factor`` gives back exactly this grid's cells (and areas).
        """
        factor = _check_int_factor(factor)
        frac = np.arange(factor) / factor

        def split(b: np.ndarray) -> np.ndarray:
            inner = b[:-1, None] + (b[1:] - b[:-1])[:, None] * frac[None, :]
            return np.concatenate([inner.ravel(), b[-1:]])

        return self._from_bounds(split(self.lat_b), split(self.lon_b))

    def _from_bounds(self, lat_b: np.ndarray, lon_b: np.ndarray) -> Grid:
        """A grid on the same sphere with these bounds; centres midway, lon in our convention.

        A polar cap half as high as its neighbour gets its centre on the pole: the inverse of
        :func:`lat_bounds`, so a pole-centred grid (ERA5's rows at +-90) refined and coarsened
        back has its own centres again.
        """
        return Grid(
            _lat_centres(lat_b),
            _wrap_like(0.5 * (lon_b[:-1] + lon_b[1:]), self.lon),
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


def _lat_centres(lat_b: np.ndarray) -> np.ndarray:
    """Cell centres of latitude edges: midway, or on the pole for a half-height polar cap."""
    c = 0.5 * (lat_b[:-1] + lat_b[1:])
    if c.size >= 2:
        h = np.abs(np.diff(lat_b))
        for cap, nxt, pole in ((0, 1, lat_b[0]), (-1, -2, lat_b[-1])):
            if abs(pole) == 90.0 and abs(2.0 * h[cap] - h[nxt]) <= 1e-9 * h[nxt]:
                c[cap] = pole
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


def check_factor(shape: tuple[int, ...], factor: int) -> int:
    """Check that the last two dimensions of ``shape`` are divisible by ``factor``.

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
            for axis, n in (("latitude", h), ("longitude", w))
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
def find_latlon(obj: Any, lat: str | None = None, lon: str | None = None) -> tuple[str, str]:
    """Names of the latitude and longitude coordinates of an xarray object.

    Looks for explicit names, then common names (``lat``, ``latitude``, ...), then CF
    ``standard_name`` / ``units`` attributes.

    Raises
    ------
    CoordinateError
        Naming what was looked for and how to fix it.
    """
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
    lat_name, lon_name = found
    for name in (lat_name, lon_name):
        if obj[name].ndim != 1:
            raise CoordinateError(
                f"coordinate {name!r} is {obj[name].ndim}-D: curvilinear grids (2-D "
                "latitude/longitude, e.g. WRF, rotated pole or polar stereographic) are not "
                "supported yet; regrid to a regular lat/lon grid first (e.g. with xESMF)"
            )
    return lat_name, lon_name


def _cf_degrees(units: Any) -> str:
    """CF's many spellings of degrees_north/east (degree_N, degreeN, ...) in one form."""
    s = str(units or "").lower().replace("_", "").replace(" ", "")
    return s.replace("degrees", "degree").replace("degree", "degrees")


def grid_of(obj: Any, lat: str | None = None, lon: str | None = None) -> Grid:
    """Shorthand for :meth:`Grid.from_xarray`."""
    return Grid.from_xarray(obj, lat=lat, lon=lon)


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
    grid: Grid,
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
    """
    import xarray as xr

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


def area_dataarray(grid: Grid, lat_dim: Hashable, lon_dim: Hashable) -> xr.DataArray:
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
    grid: Grid | None = None,
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
    lat_name, lon_name = find_latlon(da, lat=lat, lon=lon)
    g = grid if grid is not None else Grid.from_xarray(da, lat_name, lon_name)
    lat_dim, lon_dim = da[lat_name].dims[0], da[lon_name].dims[0]
    shape = (da.sizes[lat_dim], da.sizes[lon_dim])
    if g.shape != shape:
        raise GridShapeError(
            f"grid= has {g.shape[0]} x {g.shape[1]} cells but the field has {shape[0]} x "
            f"{shape[1]}; pass the fine grid of this field or leave grid= out"
        )
    check_factor(shape, factor)
    coarse = g.coarsen(factor)
    area = area_dataarray(g, lat_dim, lon_dim)

    def xr_block_sum(a: xr.DataArray, f: int) -> xr.DataArray:
        return a.coarsen({lat_dim: f, lon_dim: f}).reduce(np.sum)  # np.sum: NaN not skipped

    out = coarsen(da, area, factor, skipna=skipna, _block_sum=xr_block_sum)
    out = out.transpose(*da.dims)
    out = out.assign_coords({lat_name: (lat_dim, coarse.lat), lon_name: (lon_dim, coarse.lon)})
    for name in (lat_name, lon_name):
        # a CF bounds pointer would name the fine cells' bounds: add_cf_bounds writes coarse ones
        out[name].attrs = {k: v for k, v in da[name].attrs.items() if k != "bounds"}
        out[name].encoding = dict(NO_FILL)  # CF: a coordinate variable has no missing values
    out.attrs = dict(da.attrs)
    out.name = da.name
    return out


def mass_dataarray(
    da: xr.DataArray, lat: str | None = None, lon: str | None = None, grid: Grid | None = None
) -> xr.DataArray:
    """Total mass over the horizontal grid, ``sum(field * area)``, one value per other index.

    ``da`` must be in kg m-2 for the result to be in kg (see :func:`climdown.units.to_kg_m2`).
    A NaN cell makes the mass of its index NaN (see :func:`mass_over`).
    """
    lat_name, lon_name = find_latlon(da, lat=lat, lon=lon)
    g = grid if grid is not None else Grid.from_xarray(da, lat_name, lon_name)
    lat_dim, lon_dim = da[lat_name].dims[0], da[lon_name].dims[0]
    out = mass_over(da, area_dataarray(g, lat_dim, lon_dim), (lat_dim, lon_dim))
    out.attrs = {"units": "kg", "long_name": "total mass"}
    return out
