"""The patch plan: which time steps and patch positions each split of a recipe takes.

Index arithmetic on the source's coordinates only; no data are read. :func:`source_window` cuts
the recipe's time range and region out of the source grid (columns running eastward from the
region's ``lon_min``, :meth:`climdown.grid.Box.indices`), :func:`plan_splits` draws every
split's samples inside that window and :func:`patch_coords` gives each sample's coordinates
(the LR ones from :meth:`climdown.grid.Grid.coarsen`).

Rules (see ``docs/data.md``):

* a sample of ``frames`` steps starts at a step whose ``frames`` consecutive steps all lie in
  its split and are evenly spaced (no gap in the source), so nothing straddles a split boundary;
* patches sit at rows and columns that are multiples of ``factor`` (``mode: random``) or of
  ``stride`` (``mode: stride``) from the window's corner, never wrapping round its edge, so
  every LR patch of a split lies on one coarse grid;
* a split with a ``region`` takes the patches wholly inside that box, on the same lattice from
  the box's own corner: its rows and columns are the box's cells as
  :meth:`climdown.grid.Box.indices` selects them (in one piece, eastward from its ``lon_min``),
  so a split takes the same patches whatever the longitude convention of the source and of
  the recipe. In a window that covers the whole circle the box may cross the window's edge,
  and its patches with it (their columns wrap round; :func:`patch_columns`);
* each split draws from its own random stream (``seed`` and the split's name), in time-major
  order so that a chunk of samples needs few source steps.

A curvilinear source (rotated pole, map projection: 2-D latitude/longitude ``[H, W]``) is
planned the same way in index space: its rows and columns are the grid's own (e.g.
``rlat``/``rlon`` or ``y``/``x``), a patch is an index window of that domain, and the window is
the whole domain (a latitude/longitude ``region`` does not cut a curvilinear grid into rows
and columns: cut the source with ``isel`` first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from climdown.data.recipe import SPLIT_NAMES, Recipe, Split
from climdown.errors import GridShapeError, RecipeError
from climdown.grid import Grid

__all__ = [
    "SplitPlan",
    "source_window",
    "plan_splits",
    "plan_split",
    "patch_coords",
    "patch_columns",
    "describe_patch",
]


@dataclass(frozen=True)
class SplitPlan:
    """Where each sample of one split comes from (indices into the cut source window)."""

    split: Split
    t: np.ndarray  # [n, frames] time indices
    y0: np.ndarray  # [n] first row
    x0: np.ndarray  # [n] first column (columns run on, modulo the window's width)
    available: int  # distinct (start time, row, column) positions the split could take

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.y0.size)


def source_window(
    recipe: Recipe, time: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> dict[str, slice | np.ndarray]:
    """The recipe's window of a source: ``isel`` indexers for ``time``, ``lat`` and ``lon``.

    Parameters
    ----------
    recipe : Recipe
        Its ``time_range``, ``region`` and ``patch`` are used.
    time, lat, lon : numpy.ndarray
        The source's 1-D coordinates (datetime64; degrees, either longitude convention), or
        for a curvilinear source its 2-D ``[H, W]`` latitude and longitude.

    Returns
    -------
    dict
        ``{"time": slice, "lat": slice or indices, "lon": slice or indices}``; the longitude
        indices run eastward from the region's ``lon_min`` (one piece across the date line).
        For a curvilinear source ``"lat"`` and ``"lon"`` index its rows and columns.

    Raises
    ------
    RecipeError
        If the source has no time step in the range, or its times are not increasing there;
        if the recipe or a split has a ``region`` and the source is curvilinear.
    GridShapeError
        If the window holds fewer cells than one patch either way.
    """
    tr = recipe.time_range
    keep = np.flatnonzero((time >= tr.start.to_datetime64()) & (time < tr.end.to_datetime64()))
    if keep.size == 0:
        raise RecipeError(
            f"the source has no time step in [{tr.start}, {tr.end}) (it covers "
            f"{_fmt_time(time[0])} .. {_fmt_time(time[-1])}); move time/splits into its range"
        )
    if np.any(np.diff(time[keep]) <= np.timedelta64(0)):
        raise RecipeError("source times are not strictly increasing; sort the source by time")
    region = recipe.region
    ny, nx = _shape(lat, lon)
    if lat.ndim == 2:
        _check_no_region(recipe, ny, nx)
    if region is None:
        rows, cols = np.arange(ny), np.arange(nx)
    else:
        rows, cols = region.indices(lat, lon)
    p = recipe.patch
    if rows.size < p or cols.size < p:
        where = "the source" if region is None else f"region {region.as_tuple()}"
        fix = (
            f"widen the region (at least {p} cells each way) or lower patch"
            if lat.ndim == 1
            else f"lower patch to at most {min(ny, nx)} (a multiple of factor {recipe.factor})"
        )
        raise GridShapeError(
            f"{where} holds {rows.size} x {cols.size} cells, fewer than one {p} x {p} patch; {fix}"
        )
    return {
        "time": slice(int(keep[0]), int(keep[-1]) + 1),
        "lat": _as_slice(rows),
        "lon": _as_slice(cols),
    }


def plan_splits(
    recipe: Recipe, time: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> list[SplitPlan]:
    """:func:`plan_split` for every split of the recipe, in store order."""
    return [plan_split(recipe, split, time, lat, lon) for split in recipe.splits]


def plan_split(
    recipe: Recipe, split: Split, time: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> SplitPlan:
    """The samples of one split: start times and patch corners (see the module docstring).

    Parameters
    ----------
    recipe : Recipe
    split : Split
        One of ``recipe.splits``.
    time, lat, lon : numpy.ndarray
        Coordinates of the cut source window (:func:`source_window`).

    Returns
    -------
    SplitPlan
        ``split.samples`` samples (all distinct positions when ``None``).

    Raises
    ------
    RecipeError
        If the split holds no time step or too few for one sequence, its region holds no whole
        patch, or it asks for more samples than distinct patches exist.
    """
    in_split = np.flatnonzero(
        (time >= split.start.to_datetime64()) & (time < split.end.to_datetime64())
    )
    where = f"splits.{split.name} [{split.start}, {split.end})"
    if in_split.size == 0:
        raise RecipeError(
            f"{where} holds no time step of the source ({_fmt_time(time[0])} .. "
            f"{_fmt_time(time[-1])}); move the split into the source's time range"
        )
    frames = recipe.frames
    # a sequence starts at k when its frames k .. k+T-1 are all inside the split and evenly
    # spaced in time (no gap in the source), so no sequence straddles a split boundary
    starts = in_split[: in_split.size - frames + 1] if in_split.size >= frames else in_split[:0]
    if frames > 1 and starts.size:
        step = np.median(np.diff(time))
        span = time[starts + frames - 1] - time[starts]
        starts = starts[span == step * (frames - 1)]
    if starts.size == 0:
        raise RecipeError(
            f"{where} holds {in_split.size} time steps, too few for one sequence of {frames} "
            "consecutive frames; widen the split or lower frames"
        )
    p = recipe.patch
    s = recipe.sampling
    rng = np.random.default_rng([s.seed, SPLIT_NAMES.index(split.name)])
    if s.mode == "random":
        step, tt = recipe.factor, starts
    else:
        assert s.stride is not None and s.time_stride is not None
        step, tt = s.stride, starts[:: s.time_stride]
    ny, nx = _shape(lat, lon)
    rows, cols, wrap = np.arange(ny), np.arange(nx), False
    if split.region is not None:  # a spatial split: the patches wholly inside its box
        if lat.ndim == 2:
            _check_no_region(recipe, ny, nx)
        rows, cols = split.region.indices(lat, lon)
        wrap = lon.size > 1 and Grid(lat, lon).periodic
    ty = _lattice(rows, p, step, ny, wrap=False)
    tx = _lattice(cols, p, step, nx, wrap=wrap)
    if split.region is not None and (ty.size == 0 or tx.size == 0):
        raise RecipeError(
            f"{where}: region {split.region.as_tuple()} holds no whole {p} x {p} patch of "
            "the source grid; widen the split's region or lower patch"
        )
    total = tt.size * ty.size * tx.size
    n = total if split.samples is None else split.samples
    if n > total:
        raise RecipeError(
            f"{where} asks for {n} samples but only {total} distinct patches exist "
            f"({tt.size} start times x {ty.size} x {tx.size} positions); lower "
            f"splits.{split.name}.samples, or widen the split's time range or the region"
        )
    flat = np.arange(total) if n == total else rng.choice(total, size=n, replace=False)
    flat = np.sort(flat)  # time-major order: each chunk needs few source steps
    it, iy, ix = np.unravel_index(flat, (tt.size, ty.size, tx.size))
    t = tt[it][:, None] + np.arange(frames)[None, :]
    return SplitPlan(
        split, t.astype(np.int64), ty[iy].astype(np.int64), tx[ix].astype(np.int64), total
    )


def patch_coords(
    recipe: Recipe, plan: SplitPlan, time: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-sample coordinates of a plan's patches.

    Returns
    -------
    dict
        ``lat`` [n, patch], ``lon`` [n, patch] (degrees, in the source's order and
        convention), ``lat_lr``/``lon_lr`` [n, patch / factor] (centres of
        ``Grid(lat, lon).coarsen(factor)``) and ``time`` [n, frames] (datetime64[ns]).
        For a curvilinear source (2-D ``lat``/``lon``): ``y0``/``x0`` [n], each patch's
        first row and column in the domain, ``time``, ``patch`` and the domain's 2-D
        ``domain_lat``/``domain_lon`` (patch ``i`` covers rows ``y0[i] .. y0[i] + patch - 1``
        and columns ``x0[i] .. x0[i] + patch - 1``).
    """
    p, f = recipe.patch, recipe.factor
    if np.ndim(lat) == 2:
        return {
            "y0": plan.y0,
            "x0": plan.x0,
            "time": time[plan.t].astype("datetime64[ns]"),
            "patch": np.int64(p),
            "domain_lat": lat,
            "domain_lon": lon,
        }
    plat = lat[plan.y0[:, None] + np.arange(p)[None, :]]
    plon = lon[patch_columns(plan.x0, p, lon.size)]
    lat_lr = np.empty((plan.n, p // f))
    lon_lr = np.empty((plan.n, p // f))
    for i in range(plan.n):
        coarse = Grid(plat[i], plon[i]).coarsen(f)
        lat_lr[i], lon_lr[i] = coarse.lat, coarse.lon
    ptime = time[plan.t].astype("datetime64[ns]")
    return {"lat": plat, "lon": plon, "lat_lr": lat_lr, "lon_lr": lon_lr, "time": ptime}


def describe_patch(coords: dict[str, Any], i: int) -> str:
    """Where sample ``i`` of :func:`patch_coords` lies, for messages: time, lat and lon ranges
    (and, for a curvilinear source, its rows and columns)."""
    if "y0" in coords:
        p, y, x = int(coords["patch"]), int(coords["y0"][i]), int(coords["x0"][i])
        lat = coords["domain_lat"][y : y + p, x : x + p]
        lon = coords["domain_lon"][y : y + p, x : x + p]
        return (
            f"{_fmt_time(coords['time'][i, 0])}, rows {y}..{y + p - 1}, columns {x}..{x + p - 1} "
            f"(lat {lat.min():.2f}..{lat.max():.2f}, lon {lon.min():.2f}..{lon.max():.2f})"
        )
    lat, lon = coords["lat"][i], coords["lon"][i]
    return (
        f"{_fmt_time(coords['time'][i, 0])}, lat {lat.max():.2f}..{lat.min():.2f}, lon "
        f"{lon[0]:.2f}..{lon[-1]:.2f}"
    )


def _shape(lat: np.ndarray, lon: np.ndarray) -> tuple[int, int]:
    """Rows and columns of the source: 1-D latitude x longitude, or a curvilinear ``[H, W]``."""
    if np.ndim(lat) == 2:
        return int(lat.shape[0]), int(lat.shape[1])
    return int(np.size(lat)), int(np.size(lon))


def _check_no_region(recipe: Recipe, ny: int, nx: int) -> None:
    """A curvilinear source is cut in index space: a latitude/longitude box is refused."""
    where = ["region"] if recipe.region is not None else []
    where += [f"splits.{s.name}.region" for s in recipe.splits if s.region is not None]
    if where:
        raise RecipeError(
            f"{' and '.join(where)}: the source is a curvilinear grid ({ny} x {nx} cells, 2-D "
            "latitude/longitude), whose patches are index windows of the whole domain, not a "
            "latitude/longitude box; drop the region(s) and cut the source to the rows and "
            "columns you want first (e.g. ds.isel(rlat=slice(10, 74), rlon=slice(0, 64)) "
            "saved as the source), and split by time"
        )


def _fmt_time(t: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "s")))


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """A run of consecutive indices as a slice (a cheap, contiguous ``isel``)."""
    if idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def patch_columns(x0: Any, patch: int, width: int) -> np.ndarray:
    """Window columns of patches starting at ``x0``: ``[..., patch]``, wrapping round ``width``.

    Only a patch of a split whose box crosses the edge of a window that covers the whole
    circle runs past the last column; its columns continue from the first.
    """
    return (np.asarray(x0)[..., None] + np.arange(patch)) % width


def _lattice(idx: np.ndarray, p: int, step: int, n: int, *, wrap: bool) -> np.ndarray:
    """First indices of the ``p``-long windows every ``step`` cells along ``idx``.

    ``idx`` lists cells in the order a box selects them; it is cut where two neighbours are
    not adjacent on the axis of ``n`` cells (adjacent across its ends when ``wrap``), and each
    run of adjacent cells takes windows from its own start, so no window leaves the box.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        return idx
    nxt = idx[1:]
    adjacent = (nxt == idx[:-1] + 1) | (wrap & (idx[:-1] == n - 1) & (nxt == 0))
    cuts = np.flatnonzero(~adjacent) + 1
    runs = np.split(idx, cuts)
    starts = [run[: run.size - p + 1 : step] for run in runs if run.size >= p]
    return np.concatenate(starts) if starts else idx[:0]
