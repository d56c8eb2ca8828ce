"""Figures: cartopy maps of LR | downscaled | truth | error, power spectra and training curves.

This is the only module of climdown that imports matplotlib and cartopy, and it imports them
inside the functions, so ``import climdown`` stays light. It draws DataArrays and opens no
files: :func:`climdown.data.sources.open_dataarray` does (the ``climdown plot`` command).

Maps draw every cell where it really is: :func:`matplotlib.axes.Axes.pcolormesh` gets the cell
bounds of :class:`climdown.grid.Grid` (descending latitudes and 0..360 longitudes included), in a
:class:`cartopy.crs.PlateCarree` projection centred on the field, so a global field or a region
across the date line is drawn in one piece. Coastlines come only from the Natural Earth 1:110m
shapefile vendored in ``climdown/_data``; cartopy is never asked to download anything.

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

from climdown.errors import ClimdownError, CoordinateError, GridShapeError
from climdown.grid import Grid, find_latlon, infer_factor, wrap_lon

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "coastline_path",
    "coastlines",
    "field",
    "compare",
    "spectrum",
    "training_curves",
]

#: Where the vendored Natural Earth 110m coastline lives inside the package.
_COASTLINE = "_data/natural_earth/shapefiles/natural_earth/physical/ne_110m_coastline.shp"
#: gid given to the coastline artist, so figures (and tests) can find it.
COASTLINE_GID = "climdown-coastline"
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
    from cartopy.io import shapereader

    return tuple(shapereader.Reader(str(coastline_path())).geometries())


def coastlines(ax: Axes, **kw: Any) -> Any:
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


def _format_time(value: Any) -> str:
    t = np.asarray(value)
    if np.issubdtype(t.dtype, np.datetime64):
        return str(np.datetime_as_string(t, unit="m")).replace("T", " ")
    return str(value)


def _map_dims(da: Any, what: str) -> tuple[str, str, tuple[str, str], str | None]:
    """Latitude and longitude names, their dims and the time dim of a field to map."""
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise ClimdownError(
            f"{what} must be an xarray DataArray with 1-D latitude/longitude coordinates, got "
            f"{type(da).__name__}; wrap arrays with xr.DataArray(values, coords=...) first"
        )
    lat_name, lon_name = find_latlon(da)
    spatial = (da[lat_name].dims[0], da[lon_name].dims[0])
    return lat_name, lon_name, spatial, _time_dim(da, spatial)


def _time_steps(da: xr.DataArray, tdim: str | None) -> np.ndarray | None:
    """The time coordinate of ``da`` (None when it has no labelled time axis)."""
    if tdim is None or tdim not in da.coords:
        return None
    return np.asarray(da[tdim].values)


def _span(steps: np.ndarray) -> str:
    first, last = _format_time(steps[0]), _format_time(steps[-1])
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


def _grid(da: Any, what: str) -> Grid:
    """The grid of a field to map (its cells, whatever its other dims)."""
    lat_name, lon_name, _, _ = _map_dims(da, what)
    return Grid.from_xarray(da, lat_name, lon_name)


def _select_map(da: Any, time: Any, what: str) -> tuple[xr.DataArray, Grid, str | None]:
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
            label = _format_time(da[tdim].values)
    extra = [d for d in da.dims if d not in spatial]
    if extra:
        raise GridShapeError(
            f"{what} has dims {tuple(da.dims)}: a map needs latitude x longitude (plus time), "
            f"but {extra} remain; select one index first, e.g. da.isel({extra[0]}=0)"
        )
    da = da.transpose(*spatial)
    return da, Grid.from_xarray(da, lat_name, lon_name), label


def _centre(grid: Grid) -> float:
    """Central longitude of the grid's (unwrapped) span, in degrees."""
    return float(0.5 * (grid.lon_b[0] + grid.lon_b[-1]))


def _x_bounds(grid: Grid, central_longitude: float) -> np.ndarray:
    """Longitude bounds in the frame of a PlateCarree projection centred on ``central_longitude``.

    The bounds stay monotonic (one piece across the date line); the whole run is shifted by a
    multiple of 360 so that its middle lies within 180 degrees of the projection's centre.
    """
    x = grid.lon_b - central_longitude
    mid = 0.5 * (x[0] + x[-1])
    return x - 360.0 * np.round(mid / 360.0)


def _projection_centre(ax: Axes) -> float | None:
    import cartopy.crs as ccrs

    proj = getattr(ax, "projection", None)
    if isinstance(proj, ccrs.PlateCarree):
        # where longitude 0 lands tells the centre (cartopy stores it as 'pm' or 'lon_0')
        x0, _ = proj.transform_point(0.0, 0.0, ccrs.PlateCarree())
        return float(-x0)
    return None


def _mesh(ax: Axes, values: np.ndarray, grid: Grid, **kw: Any) -> Any:
    """pcolormesh of ``values`` on the cells of ``grid`` in ``ax``'s projection."""
    import cartopy.crs as ccrs

    centre = _projection_centre(ax)
    if centre is None:  # another projection: let cartopy transform from lon/lat
        return ax.pcolormesh(
            grid.lon_b, grid.lat_b, values, transform=ccrs.PlateCarree(), shading="flat", **kw
        )
    x = _x_bounds(grid, centre)
    return ax.pcolormesh(x, grid.lat_b, values, transform=ax.projection, shading="flat", **kw)


def _set_extent(ax: Axes, grid: Grid) -> None:
    centre = _projection_centre(ax)
    lat = (float(np.min(grid.lat_b)), float(np.max(grid.lat_b)))
    if centre is None:
        import cartopy.crs as ccrs

        ax.set_extent([grid.lon_b.min(), grid.lon_b.max(), *lat], crs=ccrs.PlateCarree())
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


def _new_map_figure(n: int, grid: Grid, width_per_panel: float = 4.0) -> tuple[Figure, list[Any]]:
    import cartopy.crs as ccrs
    from matplotlib.figure import Figure

    proj = ccrs.PlateCarree(central_longitude=_centre(grid))
    aspect = (np.ptp(grid.lat_b) or 1.0) / (np.ptp(grid.lon_b) or 1.0)
    height = min(max(width_per_panel * aspect, 1.6), 2.0 * width_per_panel) + 1.4
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


def _save(fig: Figure, path: str | os.PathLike[str] | None, dpi: int = 120) -> None:
    if path is not None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")


# ---------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------
def field(
    da: xr.DataArray,
    ax: Axes | None = None,
    *,
    time: Any = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar: bool = True,
    coast: bool = True,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Map one field (one time step) with coastlines.

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
        Axes title; the field's time when omitted.
    colorbar : bool
        Add a colour bar labelled with ``long_name [units]``.
    coast : bool
        Draw the vendored coastline.
    path : path, optional
        Save the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure
    """
    da2, grid, tlabel = _select_map(da, time, "da")
    if ax is None:
        fig, (ax,) = _new_map_figure(1, grid, width_per_panel=6.0)
    else:
        fig = ax.figure
    mesh = _mesh(
        ax, np.asarray(da2.values, dtype=np.float64), grid, cmap=cmap, vmin=vmin, vmax=vmax
    )
    _set_extent(ax, grid)
    if coast:
        coastlines(ax)
    ax.set_title(title if title is not None else (tlabel or ""))
    if colorbar:
        fig.colorbar(
            mesh, ax=ax, orientation="horizontal", shrink=0.8, label=_label(da2, _units(da2))
        )
    _save(fig, path)
    return fig


def compare(
    lr: xr.DataArray,
    hr: xr.DataArray,
    truth: xr.DataArray | None = None,
    *,
    time: Any = None,
    error: bool = True,
    cmap: str = "viridis",
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Maps LR | downscaled | truth | error in one projection, one colour scale, with coastlines.

    Parameters
    ----------
    lr : xarray.DataArray
        Coarse input with 1-D latitude/longitude (ascending or descending, 0..360 or
        -180..180), optionally a time dimension.
    hr : xarray.DataArray
        Downscaled field on the fine grid.
    truth : xarray.DataArray, optional
        High-resolution truth on the same grid as ``hr``; adds the truth panel and, with
        ``error=True``, the error panel ``hr - truth`` (diverging colour map, symmetric scale,
        its own colour bar).
    time : optional
        Time to show (``sel(time=time)`` on each input); the first step when omitted.
    error : bool
        Draw the error panel (only when ``truth`` is given).
    cmap : str
        Colour map of the field panels; they share one scale and one colour bar labelled with
        the units (``attrs["units"]``, e.g. ``kg m-2``).
    path : path, optional
        Save the figure as PNG here.
    title : str, optional
        Figure title; by default the variable, the time and the factor.

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

    Notes
    -----
    The panels show one field and its downscaling: ``hr`` must refine ``lr`` (coarsened by
    the integer factor of their sizes, :meth:`climdown.grid.Grid.coarsen`, its cells lie
    within half a coarse cell of ``lr``'s), ``truth`` lie on ``hr``'s grid, and every panel is
    drawn at the same time step.
    """
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
    if truth is not None:
        truth2, g_truth, _ = _select_map(truth, when, "truth")
        panels.append((truth2, g_truth))
    show_error = truth is not None and error
    units = _units(hr2, lr2, truth2 if truth is not None else None)
    tlabel = t_hr or t_lr

    fig, axes = _new_map_figure(len(panels) + int(show_error), g_hr)
    values = [np.asarray(da.values, dtype=np.float64) for da, _ in panels]
    vmin, vmax = _finite_range(values)
    names = [f"LR ({g_lr.spacing[1]:.3g}°)", f"downscaled ({factor}, {g_hr.spacing[1]:.3g}°)"]
    names += ["truth"] if truth is not None else []
    mesh = None
    grids = [g for _, g in panels]
    for ax, grid, vals, name in zip(axes[: len(panels)], grids, values, names, strict=True):
        mesh = _mesh(ax, vals, grid, cmap=cmap, vmin=vmin, vmax=vmax)
        _set_extent(ax, g_hr)
        coastlines(ax)
        ax.set_title(f"{name}\n{tlabel}" if tlabel else name, fontsize=9)
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
        finite = np.abs(err[np.isfinite(err)])
        lim = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        emesh = _mesh(ax, err, g_hr, cmap=_ERROR_CMAP, vmin=-lim, vmax=lim)
        _set_extent(ax, g_hr)
        coastlines(ax)
        ax.set_title(f"error (downscaled - truth)\n{tlabel}" if tlabel else "error", fontsize=9)
        fig.colorbar(
            emesh,
            ax=ax,
            orientation="horizontal",
            shrink=0.9,
            label=f"error [{units}]" if units else "error",
        )
    name = hr2.attrs.get("long_name") or hr2.name or lr2.name or "field"
    default = f"{name}, {factor} downscaling" + (f", {tlabel}" if tlabel else "")
    fig.suptitle(title if title is not None else default)
    _save(fig, path)
    return fig


def _check_refines(coarse: Grid, fine: Grid, fine_name: str, coarse_name: str) -> int:
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
    off_lat = np.abs(np.sort(back.lat_b) - np.sort(coarse.lat_b)).max()
    off_lon = np.abs(wrap_lon(np.sort(back.lon_b) - np.sort(coarse.lon_b), -180.0)).max()
    if off_lat > 0.5 * dlat or off_lon > 0.5 * dlon:

        def box(g: Grid) -> str:
            lon = np.sort(g.lon_b)
            return (
                f"lat {g.lat_b.min():.4g}..{g.lat_b.max():.4g}, lon "
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
def _cell_degrees(arr: Any) -> tuple[float, float] | None:
    """``(dlat, dlon)`` in degrees of a DataArray with latitude/longitude, else None."""
    import xarray as xr

    if not isinstance(arr, xr.DataArray):
        return None
    try:
        lat_name, lon_name = find_latlon(arr)
    except ClimdownError:
        return None
    return Grid.from_xarray(arr, lat_name, lon_name).spacing


def spectrum(
    fields: Mapping[str, Any],
    ax: Axes | None = None,
    *,
    window: bool = False,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Log-log radially averaged power spectra of several fields on one axes.

    Parameters
    ----------
    fields : mapping of label -> array ``[..., H, W]``
        numpy, torch, dask or xarray; spectra over leading indices are averaged
        (:func:`climdown.metrics.power_spectrum`). When every field is a DataArray with
        latitude/longitude, the wavenumber is in cycles per degree and the power is a spectral
        density (times the cell area in deg^2), so fields on different grids (LR and HR) line
        up; otherwise wavenumber in cycles per grid cell and power per mode.
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
    """
    from climdown.metrics import power_spectrum

    if not fields:
        raise ClimdownError("spectrum needs at least one field, got an empty mapping")
    cells = {label: _cell_degrees(arr) for label, arr in fields.items()}
    physical = all(v is not None for v in cells.values())
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 4.0), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    units = ""
    for label, arr in fields.items():
        k, p = power_spectrum(arr, window=window)
        if physical:
            dlat, dlon = cells[label]
            # cycles per cell -> per degree; power per mode -> density per (cycle/deg)^2
            k, p = k / dlon, p * dlat * dlon
        ax.loglog(k, p, label=label)
        units = units or str(getattr(arr, "attrs", {}).get("units", ""))
    ax.set_xlabel("wavenumber [cycles per degree]" if physical else "wavenumber [cycles per cell]")
    unit2 = f"({units})$^2$" if units else ""
    if physical:
        ax.set_ylabel(f"power spectral density [{unit2} deg$^2$]".replace("[ ", "["))
    else:
        ax.set_ylabel(f"power [{unit2}]" if units else "power")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
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
_NOT_METRICS = frozenset({"epoch", "step", "time_s", "train_time_s"})


def training_curves(
    log_path_or_records: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Loss and validation metrics per epoch from a JSON-lines training log.

    Parameters
    ----------
    log_path_or_records : path or iterable of mappings
        A JSON-lines file (one record per line) or the records themselves, e.g.
        ``{"epoch": 1, "train_loss": 0.12, "val_rmse": 1.3, "mass_violation": 1e-7}``. Keys
        with numeric values are plotted against ``epoch`` (the record's position when absent);
        records missing a key (metrics logged every few epochs) are skipped for that key.
    path : path, optional
        Save the figure as PNG here.

    Returns
    -------
    matplotlib.figure.Figure
        One panel with every ``*loss*`` key, then one panel per other metric.

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
    losses = [k for k in series if "loss" in k]
    others = [k for k in series if "loss" not in k]
    groups = ([losses] if losses else []) + [[k] for k in others]
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
    for n, keys in enumerate(groups, start=1):
        ax = fig.add_subplot(nrows, ncols, n)
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, marker="o", markersize=3, label=key)
        ys_all = np.concatenate([np.asarray(series[k][1]) for k in keys])
        finite = ys_all[np.isfinite(ys_all)]
        if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title("loss" if keys is losses else keys[0])
        ax.grid(True, alpha=0.3)
        if len(keys) > 1 or keys is losses:
            ax.legend(fontsize=8)
    _save(fig, path)
    return fig
