"""Figures: cartopy maps of LR | downscaled | truth | error, power spectra and training curves.

This is the only module of climdown that imports matplotlib and cartopy, and it imports them
inside the functions, so ``import climdown`` stays light. It draws DataArrays and opens no
files: :func:`climdown.data.sources.open_dataarray` does (the ``climdown plot`` command).

Maps draw every cell where it really is: :func:`matplotlib.axes.Axes.pcolormesh` gets the cell
bounds of :class:`climdown.grid.Grid` (descending latitudes and 0..360 longitudes included), in a
:class:`cartopy.crs.PlateCarree` projection centred on the field, so a global field or a region
across the date line is drawn in one piece. Coastlines come only from the Natural Earth 1:110m
shapefile vendored in ``climdown/_data``; cartopy is never asked to download anything (country
borders, ``borders=``, likewise only from a local shapefile). Gridlines are labelled in degrees
and every map title names its valid time (``2020-01-01 22:00 UTC``).

Figures are plain :class:`matplotlib.figure.Figure` objects, not pyplot-managed ones: no global
state, no backend needed to save a PNG, and Jupyter still displays a returned figure.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from climdown.errors import ClimdownError, CoordinateError, GridShapeError, StoreError
from climdown.grid import (
    EARTH_RADIUS,
    AnyGrid,
    CurvilinearGrid,
    Grid,
    find_horizontal,
    find_latlon,
    grid_of,
    infer_factor,
    wrap_lon,
)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from cartopy.mpl.geoaxes import GeoAxes  # untyped: Any to mypy, like every cartopy object
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "coastline_path",
    "coastlines",
    "border_path",
    "borders",
    "gridlines",
    "error_limit",
    "field",
    "compare",
    "spectrum",
    "cell_size_km",
    "training_curves",
    "curve_title",
    "format_time",
]

#: Where the vendored Natural Earth 110m coastline lives inside the package.
_NATURAL_EARTH = "_data/natural_earth/shapefiles/natural_earth"
_COASTLINE = f"{_NATURAL_EARTH}/physical/ne_110m_coastline.shp"
#: Where Natural Earth's 110m country borders would be vendored (they are not shipped).
_BORDERS = f"{_NATURAL_EARTH}/cultural/ne_110m_admin_0_boundary_lines_land.shp"
#: gid given to the coastline artist, so figures (and tests) can find it.
COASTLINE_GID = "climdown-coastline"
#: gid of the country-border artist and of the labelled gridlines.
BORDERS_GID = "climdown-borders"
GRIDLINES_GID = "climdown-gridlines"
#: Default percentile of |error| that sets the error panel's symmetric colour range.
ERROR_PERCENTILE = 99.0
_ERROR_CMAP = "RdBu_r"
_TIME_NAMES = ("time", "valid_time")


# ---------------------------------------------------------------------------------------
# Coastlines
# ---------------------------------------------------------------------------------------
def coastline_path() -> pathlib.Path:
    """Path of the vendored Natural Earth 1:110m coastline shapefile.

    Raises
    ------
    ClimdownError
        If the package data is missing (a broken install).
    """
    path = pathlib.Path(str(importlib.resources.files("climdown").joinpath(_COASTLINE)))
    if not path.is_file():
        raise ClimdownError(
            f"the vendored Natural Earth coastline is missing at {path}; reinstall climdown "
            "(pip install -e .) so its package data is present"
        )
    return path


@functools.lru_cache(maxsize=1)
def _coastline_geometries() -> tuple[Any, ...]:
    return _read_shapes(str(coastline_path()))


@functools.lru_cache(maxsize=4)
def _read_shapes(path: str) -> tuple[Any, ...]:
    from cartopy.io import shapereader

    return tuple(shapereader.Reader(path).geometries())


def coastlines(ax: GeoAxes, **kw: Any) -> Any:
    """Draw the vendored Natural Earth 110m coastline on a cartopy GeoAxes (no download ever).

    Parameters
    ----------
    ax : cartopy.mpl.geoaxes.GeoAxes
        The map to draw on.
    **kw
        Line style passed to :meth:`GeoAxes.add_feature` (defaults: black, 0.6 pt).

    Returns
    -------
    cartopy.mpl.feature_artist.FeatureArtist
        The coastline artist (its gid is ``"climdown-coastline"``).
    """
    import cartopy.crs as ccrs
    from cartopy.feature import ShapelyFeature

    style = {"edgecolor": "black", "facecolor": "none", "linewidth": 0.6, **kw}
    feature = ShapelyFeature(_coastline_geometries(), ccrs.PlateCarree())
    artist = ax.add_feature(feature, **style)
    artist.set_gid(COASTLINE_GID)
    return artist


def border_path(source: bool | str | os.PathLike[str] = True) -> pathlib.Path:
    """Path of a country-border shapefile: one you name, or Natural Earth's if vendored.

    climdown ships only the Natural Earth 1:110m coastline; country borders are drawn from a
    shapefile on disk and never downloaded.

    Parameters
    ----------
    source : True or path
        True: Natural Earth's 1:110m ``ne_110m_admin_0_boundary_lines_land.shp`` under
        ``climdown/_data/natural_earth/shapefiles/natural_earth/cultural/``; a path: that
        shapefile (lines or polygons, longitude/latitude in degrees).

    Raises
    ------
    ClimdownError
        If the shapefile is not there, naming where to put it or what to pass instead.
    """
    if source is True:
        path = pathlib.Path(str(importlib.resources.files("climdown").joinpath(_BORDERS)))
        if not path.is_file():
            raise ClimdownError(
                "country borders are not packaged with climdown (only the 1:110m coastline is) "
                "and climdown never downloads map data: put Natural Earth's 1:110m "
                f"'{path.name}' (with its .shx and .dbf; public domain, naturalearthdata.com) "
                f"at {path.parent}, or pass borders='path/to/borders.shp'"
            )
        return path
    if source is False:
        raise ClimdownError("border_path needs True or a shapefile path, got False")
    path = pathlib.Path(source)
    if not path.is_file():
        raise ClimdownError(
            f"no border shapefile at {str(path)!r}; pass the path of a local .shp file "
            "(e.g. Natural Earth's ne_110m_admin_0_boundary_lines_land.shp), or borders=False"
        )
    return path


def borders(ax: GeoAxes, source: bool | str | os.PathLike[str] = True, **kw: Any) -> Any:
    """Draw country borders from a local shapefile (:func:`border_path`) on a GeoAxes.

    Parameters
    ----------
    ax : cartopy.mpl.geoaxes.GeoAxes
        The map to draw on.
    source : True or path
        Which shapefile (see :func:`border_path`).
    **kw
        Line style for :meth:`GeoAxes.add_feature` (defaults: dark grey, 0.4 pt).

    Returns
    -------
    cartopy.mpl.feature_artist.FeatureArtist
        The border artist (its gid is ``"climdown-borders"``).

    Raises
    ------
    ClimdownError
        If the shapefile is missing (see :func:`border_path`).
    """
    import cartopy.crs as ccrs
    from cartopy.feature import ShapelyFeature

    style = {"edgecolor": "0.25", "facecolor": "none", "linewidth": 0.4, **kw}
    feature = ShapelyFeature(_read_shapes(str(border_path(source))), ccrs.PlateCarree())
    artist = ax.add_feature(feature, **style)
    artist.set_gid(BORDERS_GID)
    return artist


def _lon_ticks(ax: GeoAxes) -> np.ndarray | None:
    """Round longitudes across the map's span, wrapped to -180..180 (None: cartopy's choice).

    In a PlateCarree frame centred on the field the span is the x limits plus the centre, so a
    region across the date line (160 E .. 160 W) gets 165 E, 170 E, ... 165 W, not just 180.
    """
    from matplotlib.ticker import MaxNLocator

    centre = _projection_centre(ax)
    if centre is None:
        return None
    lo, hi = (float(x) + centre for x in ax.get_xlim())
    steps = [1.0, 2.0, 2.5, 3.0, 5.0, 6.0, 10.0]  # 6: 60 deg on a global map
    ticks = np.asarray(MaxNLocator(nbins=6, steps=steps).tick_values(lo, hi), dtype=np.float64)
    inside = ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]
    return np.unique(np.asarray(wrap_lon(inside, -180.0), dtype=np.float64))


def gridlines(ax: GeoAxes, *, left: bool = True, bottom: bool = True) -> Any:
    """Dotted latitude/longitude gridlines labelled in degrees (left and bottom edges).

    Parameters
    ----------
    ax : cartopy.mpl.geoaxes.GeoAxes
        The map.
    left, bottom : bool
        Label the latitudes on the left edge / the longitudes on the bottom edge.

    Returns
    -------
    cartopy.mpl.gridliner.Gridliner
        Its gid is ``"climdown-gridlines"``; the labels exist once the figure is drawn.
    """
    import cartopy.crs as ccrs

    gl = ax.gridlines(
        crs=ccrs.PlateCarree(),
        draw_labels=True,
        xlocs=_lon_ticks(ax),
        linewidth=0.4,
        color="0.4",
        alpha=0.6,
        linestyle=":",
        x_inline=False,
        y_inline=False,
    )
    gl.top_labels = gl.right_labels = False
    gl.left_labels, gl.bottom_labels = left, bottom
    gl.xlabel_style = gl.ylabel_style = {"size": 7}
    gl.set_gid(GRIDLINES_GID)
    return gl


# ---------------------------------------------------------------------------------------
# Preparing a field for a map
# ---------------------------------------------------------------------------------------
def _time_dim(da: xr.DataArray, spatial: tuple[str, ...]) -> str | None:
    for dim in da.dims:
        if dim in spatial:
            continue
        if dim in _TIME_NAMES or (dim in da.coords and np.issubdtype(da[dim].dtype, np.datetime64)):
            return str(dim)
    return None


def format_time(value: Any) -> str:
    """A time as maps and reports print it: ``2020-01-01 22:00 UTC``.

    Parameters
    ----------
    value : datetime64 or any
        A time (naive datetime64 values are UTC, as in ERA5 and CF files); anything else is
        printed with ``str``.

    Returns
    -------
    str
    """
    t = np.asarray(value)
    if np.issubdtype(t.dtype, np.datetime64):
        return str(np.datetime_as_string(t, unit="m")).replace("T", " ") + " UTC"
    return str(value)


def _scalar_time(da: xr.DataArray) -> str | None:
    """The valid time of a field whose time is a scalar coordinate (after ``sel(time=...)``)."""
    for name, coord in da.coords.items():
        if coord.ndim == 0 and (name in _TIME_NAMES or np.issubdtype(coord.dtype, np.datetime64)):
            return format_time(coord.values)
    return None


def _map_dims(da: Any, what: str) -> tuple[str, str, tuple[str, str], str | None]:
    """Latitude and longitude names, their dims and the time dim of a field to map."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise ClimdownError(
            f"{what} must be an xarray DataArray with 1-D latitude/longitude coordinates, got "
            f"{type(da).__name__}; wrap arrays with xr.DataArray(values, coords=...) first"
        )
    h = find_horizontal(da)
    spatial = (str(h.dims[0]), str(h.dims[1]))
    lat_name, lon_name = (
        str(n if n is not None else d) for n, d in zip((h.lat, h.lon), spatial, strict=True)
    )
    return lat_name, lon_name, spatial, _time_dim(da, spatial)


def _time_steps(da: xr.DataArray, tdim: str | None) -> np.ndarray | None:
    """The time coordinate of ``da`` (None when it has no labelled time axis)."""
    if tdim is None or tdim not in da.coords:
        return None
    return np.asarray(da[tdim].values)


def _span(steps: np.ndarray) -> str:
    first, last = format_time(steps[0]), format_time(steps[-1])
    return first if steps.size == 1 else f"{first} .. {last} ({steps.size} steps)"


def _matching(da: xr.DataArray, tdim: str, time: Any, what: str) -> np.ndarray:
    """The steps of ``da`` that the label ``time`` selects (a date selects its whole day)."""
    try:
        picked = da[tdim].sel({tdim: time})
    except (KeyError, ValueError, TypeError) as err:  # not a label of the axis, or not a time
        raise CoordinateError(
            f"{what} has no time {time!r}: it covers {_span(np.asarray(da[tdim].values))}; "
            "pick a time it has (e.g. time='YYYY-MM-DDTHH:MM')"
        ) from err
    return np.atleast_1d(np.asarray(picked.values))


def _shared_time(fields: dict[str, xr.DataArray], time: Any) -> Any:
    """The one time step every field is drawn at: the first that all of them have.

    With ``time``, the first step it selects (a date selects its day) that every field with a
    time coordinate has; without, the first step they all share. None when no field has a
    time coordinate. Raises CoordinateError naming each field's times when there is none.
    """
    steps: dict[str, np.ndarray] = {}
    for what, da in fields.items():
        tdim = _map_dims(da, what)[3]
        have = _time_steps(da, tdim)
        if have is None:
            continue
        assert tdim is not None
        steps[what] = have if time is None else _matching(da, tdim, time, what)
    if not steps:
        return time
    first, *others = steps.values()
    shared = [t for t in first if all(np.isin(t, o) for o in others)]
    if not shared:
        at = "" if time is None else f" at {time!r}"
        spans = "; ".join(f"{w} covers {_span(s)}" for w, s in steps.items())
        raise CoordinateError(
            f"the fields have no time step in common{at}: {spans}; compare a downscaled field "
            "with the coarse field it was made from (and its truth)"
        )
    return shared[0]


def _grid(da: Any, what: str) -> AnyGrid:
    """The grid of a field to map (its cells, whatever its other dims)."""
    _map_dims(da, what)
    return grid_of(da)


def _select_map(da: Any, time: Any, what: str) -> tuple[xr.DataArray, AnyGrid, str | None]:
    """The 2-D ``[lat, lon]`` slice of ``da`` to draw, its grid and its time label."""
    lat_name, lon_name, spatial, tdim = _map_dims(da, what)
    label = None
    if tdim is not None:
        if time is None:
            da = da.isel({tdim: 0})
        elif tdim in da.coords:
            da = da.sel({tdim: _matching(da, tdim, time, what)[0]})
        else:
            try:
                da = da.isel({tdim: int(time)})
            except (ValueError, TypeError, IndexError) as err:
                raise CoordinateError(
                    f"{what} has {da.sizes[tdim]} steps along {tdim!r} and no time "
                    f"coordinate: time must be a step index 0..{da.sizes[tdim] - 1}, got "
                    f"{time!r}"
                ) from err
        if tdim in da.coords:
            label = format_time(da[tdim].values)
    else:
        label = _scalar_time(da)
    extra = [d for d in da.dims if d not in spatial]
    if extra:
        raise GridShapeError(
            f"{what} has dims {tuple(da.dims)}: a map needs latitude x longitude (plus time), "
            f"but {extra} remain; select one index first, e.g. da.isel({extra[0]}=0)"
        )
    da = da.transpose(*spatial)
    return da, grid_of(da), label


def _edges(grid: AnyGrid) -> tuple[np.ndarray, np.ndarray]:
    """The grid's cell bounds ``(lat_b, lon_b)`` in degrees (always set once it is built); a
    curvilinear grid's corners, flattened, longitudes continuous across the date line."""
    if isinstance(grid, CurvilinearGrid):
        return grid.lat_c.ravel(), _corner_lon(grid).ravel()
    return np.asarray(grid.lat_b, dtype=np.float64), np.asarray(grid.lon_b, dtype=np.float64)


def _corner_lon(grid: CurvilinearGrid) -> np.ndarray:
    """Corner longitudes ``[H+1, W+1]`` without jumps of 360 (one piece for pcolormesh)."""
    lon = grid.lon_c
    first = np.concatenate(
        [[lon[0, 0]], lon[0, 0] + np.cumsum(wrap_lon(np.diff(lon[:, 0]), -180.0))]
    )
    steps = wrap_lon(np.diff(lon, axis=1), -180.0)
    return np.concatenate([first[:, None], first[:, None] + np.cumsum(steps, axis=1)], axis=1)


def _own_projection(grid: AnyGrid) -> Any:
    """The cartopy projection of a curvilinear grid's CF grid mapping (rotated pole, Lambert
    conformal, polar stereographic), or None (then a centred PlateCarree)."""
    import cartopy.crs as ccrs

    m = grid.mapping if isinstance(grid, CurvilinearGrid) else None
    if m is None:
        return None
    a = m.attrs
    radius = float(a.get("earth_radius", EARTH_RADIUS))
    globe = ccrs.Globe(ellipse=None, semimajor_axis=radius, semiminor_axis=radius)
    if m.rotated:
        return ccrs.RotatedPole(
            pole_longitude=float(a["grid_north_pole_longitude"]),
            pole_latitude=float(a["grid_north_pole_latitude"]),
            central_rotated_longitude=float(a.get("north_pole_grid_longitude", 0.0)),
        )
    if m.kind == "lambert_conformal_conic":
        parallels = tuple(float(v) for v in np.atleast_1d(a["standard_parallel"]))
        return ccrs.LambertConformal(
            central_longitude=float(a.get("longitude_of_central_meridian", 0.0)),
            central_latitude=float(a.get("latitude_of_projection_origin", 0.0)),
            standard_parallels=parallels if len(parallels) == 2 else parallels * 2,
            globe=globe,
        )
    if m.kind == "polar_stereographic":
        return ccrs.Stereographic(
            central_latitude=float(a.get("latitude_of_projection_origin", 90.0)),
            central_longitude=float(a.get("straight_vertical_longitude_from_pole", 0.0)),
            true_scale_latitude=a.get("standard_parallel"),
            globe=globe,
        )
    return None


def _projected_box(proj: Any, grid: CurvilinearGrid) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)`` of the grid's corners in the projection ``proj``."""
    import cartopy.crs as ccrs

    pts = proj.transform_points(ccrs.PlateCarree(), _corner_lon(grid), grid.lat_c)
    x, y = pts[..., 0], pts[..., 1]
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


def _centre(grid: AnyGrid) -> float:
    """Central longitude of the grid's (unwrapped) span, in degrees."""
    lon_b = _edges(grid)[1]
    return float(0.5 * (lon_b[0] + lon_b[-1]))


def _x_bounds(grid: AnyGrid, central_longitude: float) -> np.ndarray:
    """Longitude bounds in the frame of a PlateCarree projection centred on ``central_longitude``.

    The bounds stay monotonic (one piece across the date line); the whole run is shifted by a
    multiple of 360 so that its middle lies within 180 degrees of the projection's centre.
    """
    x = _edges(grid)[1] - central_longitude
    mid = 0.5 * (x[0] + x[-1])
    return x - 360.0 * np.round(mid / 360.0)


def _projection_centre(ax: GeoAxes) -> float | None:
    import cartopy.crs as ccrs

    proj = getattr(ax, "projection", None)
    if isinstance(proj, ccrs.PlateCarree):
        # where longitude 0 lands tells the centre (cartopy stores it as 'pm' or 'lon_0')
        x0, _ = proj.transform_point(0.0, 0.0, ccrs.PlateCarree())
        return float(-x0)
    return None


def _mesh(ax: GeoAxes, values: np.ndarray, grid: AnyGrid, **kw: Any) -> Any:
    """pcolormesh of ``values`` on the cells of ``grid`` in ``ax``'s projection."""
    import cartopy.crs as ccrs

    if isinstance(grid, CurvilinearGrid):  # the cells' corners, from lon/lat
        return ax.pcolormesh(
            _corner_lon(grid),
            grid.lat_c,
            values,
            transform=ccrs.PlateCarree(),
            shading="flat",
            **kw,
        )

    centre = _projection_centre(ax)
    lat_b, lon_b = _edges(grid)
    if centre is None:  # another projection: let cartopy transform from lon/lat
        return ax.pcolormesh(
            lon_b, lat_b, values, transform=ccrs.PlateCarree(), shading="flat", **kw
        )
    x = _x_bounds(grid, centre)
    return ax.pcolormesh(x, lat_b, values, transform=ax.projection, shading="flat", **kw)


def _set_extent(ax: GeoAxes, grid: AnyGrid) -> None:
    if isinstance(grid, CurvilinearGrid):  # the corners' box in the map's own coordinates
        x0, x1, y0, y1 = _projected_box(ax.projection, grid)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_adjustable("box")
        return
    centre = _projection_centre(ax)
    lat_b, lon_b = _edges(grid)
    lat = (float(np.min(lat_b)), float(np.max(lat_b)))
    if centre is None:
        import cartopy.crs as ccrs

        ax.set_extent([lon_b.min(), lon_b.max(), *lat], crs=ccrs.PlateCarree())
        return
    # in a centred PlateCarree frame the map coordinates are degrees: set the limits directly
    # (set_extent would fold a full 360 degree span onto one meridian)
    x = _x_bounds(grid, centre)
    ax.set_xlim(max(float(x.min()), -180.0), min(float(x.max()), 180.0))
    ax.set_ylim(*lat)
    ax.set_adjustable("box")  # keep the limits; shrink the panel to the map's aspect instead


def _units(*das: Any) -> str:
    for da in das:
        if da is not None and da.attrs.get("units"):
            return str(da.attrs["units"])
    return ""


def _label(da: xr.DataArray, units: str) -> str:
    name = da.attrs.get("long_name") or da.name or "value"
    return f"{name} [{units}]" if units else str(name)


def _new_map_figure(
    n: int, grid: AnyGrid, width_per_panel: float = 4.0
) -> tuple[Figure, list[Any]]:
    import cartopy.crs as ccrs
    from matplotlib.figure import Figure

    proj = _own_projection(grid)  # a regional model grid on its own projection
    if proj is None:
        proj = ccrs.PlateCarree(central_longitude=_centre(grid))
    if isinstance(grid, CurvilinearGrid):
        x0, x1, y0, y1 = _projected_box(proj, grid)
        aspect = ((y1 - y0) or 1.0) / ((x1 - x0) or 1.0)
    else:
        lat_b, lon_b = _edges(grid)
        aspect = (np.ptp(lat_b) or 1.0) / (np.ptp(lon_b) or 1.0)
    # + room for the title, the colour bar and the gridline labels
    height = min(max(width_per_panel * aspect, 1.6), 2.0 * width_per_panel) + 1.9
    fig = Figure(figsize=(width_per_panel * n, height), layout="constrained")
    axes = [fig.add_subplot(1, n, i + 1, projection=proj) for i in range(n)]
    return fig, axes


def _finite_range(arrays: Iterable[np.ndarray]) -> tuple[float, float]:
    vals = [a[np.isfinite(a)] for a in arrays]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    lo = float(min(v.min() for v in vals))
    hi = float(max(v.max() for v in vals))
    if hi <= lo:  # a constant field: give the colour scale some width
        pad = abs(lo) * 1e-3 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (not a link) that starts like a PNG image: what a
    map or a report's figure may replace (:func:`climdown.report.write_report` asks it too)."""
    path = pathlib.Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(_PNG_MAGIC)) == _PNG_MAGIC


def _save(fig: Figure, path: str | os.PathLike[str] | None, dpi: int = 120) -> None:
    """Write ``fig`` as PNG to ``path``; an existing path is replaced only if it is a PNG.

    A mistyped ``--out data.nc`` must not turn the user's data into a picture.
    """
    if path is None:
        return
    path = pathlib.Path(path)
    if os.path.lexists(path) and not is_png(path):
        raise StoreError(
            f"{str(path)!r} exists and is not a PNG image; refusing to replace it with a "
            "map (climdown writes maps as PNG). Choose another path, e.g. compare.png"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")


# ---------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------
def field(
    da: xr.DataArray,
    ax: GeoAxes | None = None,
    *,
    time: Any = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar: bool = True,
    coast: bool = True,
    borders: bool | str | os.PathLike[str] = False,
    gridlines: bool = True,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Map one field (one time step) with coastlines and labelled gridlines.

    Parameters
    ----------
    da : xarray.DataArray
        Field with 1-D latitude/longitude coordinates (any names :func:`climdown.grid.find_latlon`
        knows), optionally a time dimension.
    ax : cartopy GeoAxes, optional
        Where to draw; a new figure with a PlateCarree map centred on the field otherwise.
    time : optional
        Time label to select (``da.sel(time=time)``); the first step when omitted.
    cmap, vmin, vmax : optional
        Colour map and scale.
    title : str, optional
        Axes title; the field's valid time (``2020-01-01 22:00 UTC``) when omitted.
    colorbar : bool
        Add a colour bar labelled with ``long_name [units]``.
    coast : bool
        Draw the vendored coastline.
    borders : bool or path
        Draw country borders from a local shapefile (see :func:`border_path`; True needs
        Natural Earth's vendored, which climdown does not ship).
    gridlines : bool
        Draw latitude/longitude gridlines labelled in degrees.
    path : path, optional
        Save the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ClimdownError
        If ``borders`` names a shapefile that is not there.
    """
    border_file = None if borders is False else border_path(borders)  # fail before drawing
    da2, grid, tlabel = _select_map(da, time, "da")
    if ax is None:
        fig, (ax,) = _new_map_figure(1, grid, width_per_panel=6.0)
    else:
        fig = ax.figure
    mesh = _mesh(
        ax, np.asarray(da2.values, dtype=np.float64), grid, cmap=cmap, vmin=vmin, vmax=vmax
    )
    _decorate(ax, grid, coast=coast, border_file=border_file, grid_labels=gridlines)
    ax.set_title(title if title is not None else (tlabel or ""))
    if colorbar:
        fig.colorbar(
            mesh, ax=ax, orientation="horizontal", shrink=0.8, label=_label(da2, _units(da2))
        )
    _save(fig, path)
    return fig


def _decorate(
    ax: GeoAxes,
    grid: AnyGrid,
    *,
    coast: bool = True,
    border_file: pathlib.Path | None = None,
    grid_labels: bool = True,
    left: bool = True,
) -> None:
    """Extent of ``grid``, coastline, optional borders and labelled gridlines on one map."""
    _set_extent(ax, grid)
    if coast:
        coastlines(ax)
    if border_file is not None:
        borders(ax, border_file)
    if grid_labels:
        gridlines(ax, left=left)


def error_limit(error: np.ndarray, percentile: float = ERROR_PERCENTILE) -> float:
    """Half-width of a symmetric error colour scale: a percentile of ``|error|``.

    A percentile, not the maximum, so that one outlier does not wash out the rest of the map;
    the few cells beyond it are drawn in the end colours (the colour bar's arrows).

    Parameters
    ----------
    error : numpy.ndarray
        The error field (NaNs ignored).
    percentile : float
        In (0, 100]; 100 is the maximum.

    Returns
    -------
    float
        The limit (> 0; 1.0 for an all-zero or all-NaN error).

    Raises
    ------
    ClimdownError
        If ``percentile`` is outside (0, 100].
    """
    if not 0.0 < float(percentile) <= 100.0:
        raise ClimdownError(
            f"error_percentile must be in (0, 100] (100: the largest |error|), got {percentile!r}"
        )
    finite = np.abs(error[np.isfinite(error)])
    if not finite.size:
        return 1.0
    lim = float(np.percentile(finite, percentile))
    if lim > 0:
        return lim
    top = float(finite.max())  # the percentile is 0 but some cells are not: show those
    return top if top > 0 else 1.0


def compare(
    lr: xr.DataArray,
    hr: xr.DataArray,
    truth: xr.DataArray | None = None,
    *,
    time: Any = None,
    error: bool = True,
    error_percentile: float = ERROR_PERCENTILE,
    cmap: str = "viridis",
    borders: bool | str | os.PathLike[str] = False,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Maps LR | downscaled | truth | error in one projection, one colour scale, with coastlines.

    Parameters
    ----------
    lr : xarray.DataArray
        Coarse input with 1-D latitude/longitude (ascending or descending, 0..360 or
        -180..180), optionally a time dimension (or a scalar time coordinate).
    hr : xarray.DataArray
        Downscaled field on the fine grid.
    truth : xarray.DataArray, optional
        High-resolution truth on the same grid as ``hr``; adds the truth panel and, with
        ``error=True``, the error panel ``hr - truth`` (downscaled minus truth: red where the
        downscaling is too high; diverging colour map, symmetric scale, its own colour bar).
    time : optional
        Time to show (``sel(time=time)`` on each input); the first step when omitted.
    error : bool
        Draw the error panel (only when ``truth`` is given).
    error_percentile : float
        The error colour scale spans ``±`` this percentile of ``|hr - truth|`` (99: the
        largest 1% of errors saturate; 100: the largest error), so one outlier cannot whiten
        the map. The colour bar's label says which.
    cmap : str
        Colour map of the field panels; they share one scale and one colour bar labelled with
        the units (``attrs["units"]``, e.g. ``kg m-2``).
    borders : bool or path
        Country borders from a local shapefile on every panel (see :func:`border_path`).
    path : path, optional
        Save the figure as PNG here.
    title : str, optional
        Figure title (by default the variable and the factor); the valid time is appended
        (``..., valid 2020-01-01 22:00 UTC``) unless the title already names it.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    GridShapeError
        If ``hr`` is not an integer refinement of ``lr`` (one factor on both axes), ``truth``
        is not on the grid of ``hr``, or extra dimensions remain after choosing the time.
    CoordinateError
        If latitude/longitude cannot be found or are 2-D (curvilinear); if ``hr`` (or
        ``truth``) covers another region than ``lr`` (by more than half a coarse cell); if
        the fields share no time step (or none at ``time``).
    ClimdownError
        If ``borders`` names a missing shapefile, or ``error_percentile`` is not in (0, 100].

    Notes
    -----
    The panels show one field and its downscaling: ``hr`` must refine ``lr`` (coarsened by
    the integer factor of their sizes, :meth:`climdown.grid.Grid.coarsen`, its cells lie
    within half a coarse cell of ``lr``'s), ``truth`` lie on ``hr``'s grid, and every panel is
    drawn at the same time step. Each panel has latitude/longitude gridlines, labelled in
    degrees (latitudes on the first panel only: the panels share them). The valid time, the
    same for every panel, is in the figure title (``valid 2020-01-01 22:00 UTC``), from the
    time dimension or a scalar time coordinate.
    """
    border_file = None if borders is False else border_path(borders)  # fail before drawing
    error_limit(np.zeros(1), error_percentile)  # check it before drawing, too
    fields = {"lr": lr, "hr": hr} | ({} if truth is None else {"truth": truth})
    grids = {what: _grid(da, what) for what, da in fields.items()}  # geometry first
    factor = f"{_check_refines(grids['lr'], grids['hr'], 'hr', 'lr')}x"
    if truth is not None:
        (ny, nx), (my, mx) = grids["truth"].shape, grids["hr"].shape
        if (ny, nx) != (my, mx):
            raise GridShapeError(
                f"truth has {ny} x {nx} cells but the downscaled field has {my} x {mx}; "
                "compare them on the same fine grid"
            )
        _check_refines(grids["hr"], grids["truth"], "truth", "hr")  # the same cells
    when = _shared_time(fields, time)
    lr2, g_lr, t_lr = _select_map(lr, when, "lr")
    hr2, g_hr, t_hr = _select_map(hr, when, "hr")
    panels = [(lr2, g_lr), (hr2, g_hr)]
    t_truth = None
    if truth is not None:
        truth2, g_truth, t_truth = _select_map(truth, when, "truth")
        panels.append((truth2, g_truth))
    show_error = truth is not None and error
    units = _units(hr2, lr2, truth2 if truth is not None else None)
    tlabel = t_hr or t_truth or t_lr

    fig, axes = _new_map_figure(len(panels) + int(show_error), g_hr)
    values = [np.asarray(da.values, dtype=np.float64) for da, _ in panels]
    vmin, vmax = _finite_range(values)
    names = [f"LR ({g_lr.spacing[1]:.3g}°)", f"downscaled ({factor}, {g_hr.spacing[1]:.3g}°)"]
    names += [f"truth ({g_hr.spacing[1]:.3g}°)"] if truth is not None else []
    mesh: Any = None
    grids_drawn = [g for _, g in panels]
    for i, (ax, grid, vals, name) in enumerate(
        zip(axes[: len(panels)], grids_drawn, values, names, strict=True)
    ):
        mesh = _mesh(ax, vals, grid, cmap=cmap, vmin=vmin, vmax=vmax)
        _decorate(ax, g_hr, border_file=border_file, left=i == 0)
        ax.set_title(name, fontsize=9)
    fig.colorbar(
        mesh,
        ax=axes[: len(panels)],
        orientation="horizontal",
        shrink=0.6,
        aspect=40,
        label=_label(hr2, units),
    )
    if show_error:
        ax = axes[-1]
        err = values[1] - values[2]
        lim = error_limit(err, error_percentile)
        beyond = bool(np.any(np.abs(err[np.isfinite(err)]) > lim))
        emesh = _mesh(ax, err, g_hr, cmap=_ERROR_CMAP, vmin=-lim, vmax=lim)
        _decorate(ax, g_hr, border_file=border_file, left=False)
        ax.set_title("error: downscaled - truth", fontsize=9)
        scale = "max |error|" if error_percentile >= 100 else f"p{error_percentile:g} of |error|"
        fig.colorbar(
            emesh,
            ax=ax,
            orientation="horizontal",
            shrink=0.9,
            extend="both" if beyond else "neither",
            label=f"downscaled - truth [{units}]\n(range ±{scale})"
            if units
            else f"downscaled - truth (range ±{scale})",
        )
    var = hr2.attrs.get("long_name") or hr2.name or lr2.name or "field"
    head = f"{var}, {factor} downscaling" if title is None else title
    fig.suptitle(f"{head}, valid {tlabel}" if tlabel and tlabel not in head else head)
    _save(fig, path)
    return fig


def _check_refines(coarse: AnyGrid, fine: AnyGrid, fine_name: str, coarse_name: str) -> int:
    """The factor by which ``fine`` refines ``coarse``; raise naming the mismatch otherwise.

    ``fine`` must be an integer refinement with one factor on both axes
    (:func:`climdown.grid.infer_factor`) whose coarsening (:meth:`Grid.coarsen`) has every
    cell edge within half a coarse cell of ``coarse``'s, in either longitude convention.
    """
    try:
        factor = infer_factor(fine.shape, coarse.shape)
    except GridShapeError as err:
        raise GridShapeError(f"{fine_name} does not refine {coarse_name}: {err}") from None
    back = fine.coarsen(factor)
    dlat, dlon = coarse.spacing
    (back_lat, back_lon), (lat_b, lon_b) = _edges(back), _edges(coarse)
    off_lat = np.abs(np.sort(back_lat) - np.sort(lat_b)).max()
    off_lon = np.abs(wrap_lon(np.sort(back_lon) - np.sort(lon_b), -180.0)).max()
    if off_lat > 0.5 * dlat or off_lon > 0.5 * dlon:

        def box(g: AnyGrid) -> str:
            lat, lon = _edges(g)
            lon = np.sort(lon)
            return (
                f"lat {lat.min():.4g}..{lat.max():.4g}, lon "
                f"{wrap_lon(lon[0], -180.0):.4g}..{wrap_lon(lon[-1], -180.0):.4g}"
            )

        raise CoordinateError(
            f"{fine_name} does not refine {coarse_name}: they cover another region "
            f"({fine_name}: {box(fine)}; {coarse_name}: {box(coarse)}), its cells "
            f"{factor}x{factor}-coarsened lie up to {max(off_lat, off_lon):.3g} deg from "
            f"{coarse_name}'s, more than half a coarse cell ({0.5 * dlat:.3g} x "
            f"{0.5 * dlon:.3g} deg); compare a downscaled field with the coarse field it was "
            "made from"
        )
    return factor


# ---------------------------------------------------------------------------------------
# Spectra and curves
# ---------------------------------------------------------------------------------------
def cell_size_km(da: Any) -> float | None:
    """Side in km of the field's mean cell: ``sqrt(mean cell area)`` on the sphere.

    Cell areas are :attr:`climdown.grid.Grid.area` (exact on a sphere of radius 6371 km), so
    the side shrinks with the cosine of latitude: a 0.25 deg cell is 27.8 km at the equator and
    about 19.6 km (``27.8 km x sqrt(cos 60 deg)``) at 60 deg N.

    Parameters
    ----------
    da : any
        A DataArray with latitude/longitude (any names :func:`climdown.grid.find_latlon` knows).

    Returns
    -------
    float or None
        The side in km; None for anything without latitude/longitude (a plain array).
    """
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        return None
    try:
        lat_name, lon_name = find_latlon(da)
    except ClimdownError:
        return None
    area = Grid.from_xarray(da, lat_name, lon_name).area  # m^2
    return math.sqrt(float(np.mean(area))) / 1000.0


def _inverse(x: ArrayLike) -> ArrayLike:
    """``1 / x`` for the wavelength axis (inf at 0 without a warning)."""
    with np.errstate(divide="ignore"):
        return 1.0 / np.asarray(x, dtype=np.float64)


def spectrum(
    fields: Mapping[str, Any],
    ax: Axes | None = None,
    *,
    window: bool = False,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Log-log radially averaged power spectra of several fields on one axes, in km.

    Parameters
    ----------
    fields : mapping of label -> array ``[..., H, W]``
        numpy, torch, dask or xarray; spectra over leading indices are averaged
        (:func:`climdown.metrics.power_spectrum`). When every field is a DataArray with
        latitude/longitude, the wavenumber is in cycles per km and the power a spectral
        density in ``units^2 km^2`` (see Notes), so fields on different grids (LR and HR) line
        up and each legend entry gives its cell size; otherwise wavenumber in cycles per grid
        cell and power per mode.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    window : bool
        Apply a Hann window before the FFT (for non-periodic regional domains).
    path : path, optional
        Save the figure as PNG here.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        Wavenumber on the bottom axis, wavelength (km, ``1 / k``) on the top one.

    Notes
    -----
    :func:`~climdown.metrics.power_spectrum` bins in cycles per cell. Each field's cell size
    ``L`` is its real one, :func:`cell_size_km` (``sqrt`` of the mean cell area, so with the
    cosine of latitude); then ``k [cycles/km] = k [cycles/cell] / L`` and
    ``PSD = power per mode x L^2``. Cells are taken as squares of that area: on a grid whose
    cells are not square on the ground (0.25 x 0.25 deg at 50 N is 27.8 km x 17.9 km) the
    wavenumber is the area-equivalent one, exact for the scale of a feature but not for its
    direction.
    """
    from climdown.metrics import power_spectrum

    if not fields:
        raise ClimdownError("spectrum needs at least one field, got an empty mapping")
    cells = {label: cell_size_km(arr) for label, arr in fields.items()}
    physical = all(v is not None for v in cells.values())
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.0, 4.4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure  # type: ignore[assignment]  # a SubFigure is drawn the same way
    units = ""
    for label, arr in fields.items():
        k, p = power_spectrum(arr, window=window)
        size = cells[label]
        if physical and size is not None:
            # cycles per cell -> per km; power per mode -> density per (cycle/km)^2
            k, p = k / size, p * size**2
            label = f"{label} ({size:.3g} km cells)"
        ax.loglog(k, p, label=label)
        units = units or str(getattr(arr, "attrs", {}).get("units", ""))
    unit2 = f"({units})$^2$" if units else ""
    if physical:
        ax.set_xlabel(
            "wavenumber [cycles per km]\n(cell side: sqrt of its area, with cos latitude)"
        )
        ax.set_ylabel(f"power spectral density [{unit2} km$^2$]".replace("[ ", "["))
        top = ax.secondary_xaxis("top", functions=(_inverse, _inverse))
        top.set_xlabel("wavelength [km]")
    else:
        ax.set_xlabel("wavenumber [cycles per cell]")
        ax.set_ylabel(f"power [{unit2}]" if units else "power")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    if title is not None:
        ax.set_title(title)
    _save(fig, path)
    return fig


def _read_records(log: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> list[dict]:
    if isinstance(log, (str, os.PathLike)):
        p = pathlib.Path(log)
        if not p.is_file():
            raise FileNotFoundError(f"no training log at {str(p)!r}")
        records = []
        for i, line in enumerate(p.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ClimdownError(
                    f"{p}:{i} is not a JSON object ({e.msg}); a training log has one JSON "
                    'record per line, e.g. {"epoch": 1, "train_loss": 0.1}'
                ) from None
            records.append(rec)
        where = str(p)
    else:
        records = [dict(r) for r in log]
        where = "the records"
    records = [r for r in records if isinstance(r, dict)]
    if not records:
        raise ClimdownError(f"{where} hold no training records; nothing to plot")
    return records


# bookkeeping fields of the training log that are not curves to draw
_NOT_METRICS = frozenset({"epoch", "step", "time_s", "train_time_s", "first_step_s"})

#: Titles of the metrics ``climdown.train`` logs, with their units (scores in kg m-2).
CURVE_TITLES = {
    "loss": "loss [1: MSE of fields / normalisation scale]",
    "val_rmse": "validation RMSE [kg m-2]",
    "val_rmse_area": "validation RMSE, area-weighted [kg m-2]",
    "val_mae": "validation MAE [kg m-2]",
    "val_mass_violation": "worst coarse-cell mass violation [kg m-2]",
    "val_mass_violation_rel": "worst mass violation / mean |LR| [1]",
    "val_neg": "negative cells (validation) [count]",
}


def curve_title(key: str) -> str:
    """The panel title of a training-log metric, with its unit.

    The metrics ``climdown.train`` writes have fixed titles (:data:`CURVE_TITLES`); another
    key gets a unit from its name (``*_rel``: 1; ``*rmse*``, ``*mae*``, ``*mass*``: kg m-2;
    ``*neg*``: count) or none when its name does not say.
    """
    if key in CURVE_TITLES:
        return CURVE_TITLES[key]
    low = key.lower()
    if low.endswith("_rel"):
        return f"{key} [1]"
    if any(word in low for word in ("rmse", "mae", "mass")):
        return f"{key} [kg m-2]"
    if "neg" in low:
        return f"{key} [count]"
    return key


def _fmt_value(value: float) -> str:
    return f"{value:.4g}"


def training_curves(
    log_path_or_records: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Loss and validation metrics per epoch from a JSON-lines training log.

    Parameters
    ----------
    log_path_or_records : path or iterable of mappings
        A JSON-lines file (one record per line) or the records themselves, e.g.
        ``{"epoch": 1, "train_loss": 0.12, "val_rmse": 1.3, "val_neg": 0}``. Keys with
        numeric values are plotted against ``epoch`` (the record's position when absent);
        records missing a key (metrics logged every few epochs) are skipped for that key.
    path : path, optional
        Save the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure
        One panel with every ``*loss*`` key, then one panel per other metric, each titled
        with its unit (:func:`curve_title`). A metric with no finite value, or with the same
        value in every record (e.g. ``val_neg`` = 0 under a positivity constraint), gets no
        panel: a line under the panels says so, with the value.

    Raises
    ------
    ClimdownError
        If the log is empty, not JSON lines, or holds no numeric metrics.
    """
    from matplotlib.figure import Figure

    records = _read_records(log_path_or_records)
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, rec in enumerate(records, start=1):
        x = rec.get("epoch", i)
        for key, value in rec.items():
            if (
                key in _NOT_METRICS
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(x))
            ys.append(float(value))
    if not series:
        raise ClimdownError(
            f"no numeric metrics in the training log (keys seen: {sorted(records[0])}); "
            'expected records like {"epoch": 1, "train_loss": 0.1, "val_rmse": 1.2}'
        )
    flat: list[str] = []  # panels that would show nothing, said in one line instead
    drawn: dict[str, tuple[list[float], list[float]]] = {}
    for key, (xs, ys) in series.items():
        finite = np.asarray(ys)[np.isfinite(ys)]
        if not finite.size:
            flat.append(f"{key}: no finite value")
        elif len(ys) > 1 and finite.size == len(ys) and np.all(finite == finite[0]):
            flat.append(f"{key} = {_fmt_value(float(finite[0]))} every epoch")
        else:
            drawn[key] = (xs, ys)
    if not drawn:  # nothing moves at all: draw them anyway rather than an empty figure
        drawn, flat = dict(series), []
    losses = [k for k in drawn if "loss" in k]
    others = [k for k in drawn if "loss" not in k]
    groups = ([losses] if losses else []) + [[k] for k in others]
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows + 0.3 * bool(flat)), layout="constrained")
    for n, keys in enumerate(groups, start=1):
        ax = fig.add_subplot(nrows, ncols, n)
        for key in keys:
            xs, ys = drawn[key]
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ys_all = np.concatenate([np.asarray(drawn[k][1]) for k in keys])
        finite = ys_all[np.isfinite(ys_all)]
        if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(curve_title("loss" if keys is losses else keys[0]), fontsize=10)
        ax.grid(True, alpha=0.3)
        if len(keys) > 1 or keys is losses:
            ax.legend(fontsize=8)
    if flat:
        fig.supxlabel("not drawn: " + "; ".join(flat), fontsize=9)
    _save(fig, path)
    return fig
