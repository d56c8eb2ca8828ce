"""Tile/halo plan on the coarse grid: which LR cells each tile reads and which fine cells it owns.

A downscaling model is applied to windows of ``tile x tile`` coarse (LR) cells plus a halo of
``halo`` LR cells on each side, so memory stays flat however large the domain is. The plan is
pure index arithmetic (numpy only); :mod:`climdown.inference` runs the model on it. The same
rules, applied to the chunks of a dask array rather than to tiles, are :class:`ChunkAxis`.

Rules
-----
* **Cores partition the domain.** Along each axis the cores are ``[0, t), [t, 2t), ...``; the
  last one holds the remainder, so any size works (no divisibility requirement).
* **Windows.** A window is its core plus up to ``halo`` cells on each side; every window on an
  axis has the same length, so tiles batch together:

  - periodic axis (longitude of a global grid, :attr:`climdown.grid.Grid.periodic`): the
    window is ``[core_start - halo, core_start + t + halo)`` taken modulo n (it wraps across
    the date line);
  - other axes (latitude, regional longitude): the window is clipped to the domain and shifted
    inwards at the edges, ``start = clip(core_start - halo, 0, n - window)``. A tile touching
    the domain edge therefore sees exactly the edge an untiled run sees, with no invented
    (reflected or padded) data.

  Each core cell has at least ``halo`` cells of context on both sides, or the true domain edge.
  If the model's receptive field is at most ``halo`` LR cells, every fine cell is computed
  from the same inputs as in an untiled run: the stitched field equals the untiled one up to
  float round-off.
* **Crop, never blend.** A tile's output is cropped to its core, ``[crop.start * f,
  crop.stop * f)`` in fine cells of the window (``halo * f`` fine cells on an interior side),
  and written once. No fine cell is averaged between tiles.

Chunks of a lazy (dask) array
----------------------------
A chunk is treated like a tile whose core is the chunk: it is extended by an overlap of
``depth`` cells on each side, downscaled with the tiled code, and its output cropped back to
the chunk's own cells (``f`` fine cells per coarse one). Along an axis (:class:`ChunkAxis`):

* chunks shorter than the overlap are merged first (dask's ``overlap`` needs every chunk at
  least as long as the depth; :attr:`ChunkAxis.min_chunk`);
* the overlap is ``min(depth, n)``, and 0 on an axis held in one chunk that does not wrap
  (there is nothing beyond it);
* a periodic axis gets the overlap on both sides of every chunk (the neighbours across the
  date line); other axes only on sides with a neighbouring chunk, so the domain edge is the
  true edge, as for tiles;
* the same rules hold for time when a recurrent model reads ``T - 1`` earlier steps: the
  steps before a chunk are context only and are cropped.

Why the stitched field conserves exactly
----------------------------------------
A conserving constraint (softmax, add, mult, scadd) acts on each coarse cell's own f x f
block: ``sum_i w_i y_i = x`` holds block by block inside every tile, whatever the tile's
neighbours hold. Cores are unions of whole coarse cells and partition the domain, so every
coarse cell's fine block is copied from exactly one constrained tile. The stitched field
therefore satisfies the constraint in every block, which is exact conservation. Blending
overlapping tiles with weights that vary inside a coarse cell would break this; cropping
cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from climdown.validate import integer

__all__ = ["AxisTile", "ChunkAxis", "Tile", "TilePlan", "plan_axis"]


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis.

    Attributes
    ----------
    core : slice
        Coarse cells of the domain this tile owns (``core.stop - core.start`` cells).
    start : int
        First coarse index of the window, in unwrapped coordinates (negative or ``>= n`` on a
        periodic axis where the window wraps).
    length : int
        Window length in coarse cells.
    n : int
        Axis length in coarse cells.
    """

    core: slice
    start: int
    length: int
    n: int

    @property
    def index(self) -> np.ndarray:
        """Coarse indices of the window, wrapped into ``[0, n)``."""
        return np.arange(self.start, self.start + self.length) % self.n

    @property
    def contiguous(self) -> bool:
        """True when the window does not wrap (it is a plain slice of the domain)."""
        return 0 <= self.start and self.start + self.length <= self.n

    @property
    def window(self) -> slice:
        """The window as a slice of the domain (only valid when :attr:`contiguous`)."""
        return slice(self.start, self.start + self.length)

    @property
    def crop(self) -> slice:
        """The core as a slice of the window, in coarse cells."""
        a = self.core.start - self.start
        return slice(a, a + self.core.stop - self.core.start)

    def fine_crop(self, factor: int) -> slice:
        """The core as a slice of the window's output, in fine cells."""
        c = self.crop
        return slice(c.start * factor, c.stop * factor)

    def fine_core(self, factor: int) -> slice:
        """The core as a slice of the fine domain."""
        return slice(self.core.start * factor, self.core.stop * factor)


def plan_axis(n: int, tile: int, halo: int, *, periodic: bool = False) -> tuple[AxisTile, ...]:
    """Tiles along one axis of ``n`` coarse cells (see the module docstring for the rules).

    Parameters
    ----------
    n : int
        Axis length in coarse cells.
    tile : int
        Core length in coarse cells (the last core holds the remainder).
    halo : int
        Context cells on each side of a core.
    periodic : bool
        Wrap the window around the axis (global longitude) instead of clipping it.

    Returns
    -------
    tuple of AxisTile
        Cores in increasing order; they partition ``[0, n)``.

    Raises
    ------
    ConfigError
        If ``n`` or ``tile`` is not positive or ``halo`` is negative.
    """
    for name, value, low in (("axis length", n, 1), ("tile", tile, 1), ("halo", halo, 0)):
        integer(value, name, minimum=low)
    t = min(int(tile), int(n))
    starts = range(0, n, t)
    if periodic:
        length = t + 2 * halo
        return tuple(AxisTile(slice(s, min(s + t, n)), s - halo, length, n) for s in starts)
    length = min(t + 2 * halo, n)
    return tuple(
        AxisTile(slice(s, min(s + t, n)), int(np.clip(s - halo, 0, n - length)), length, n)
        for s in starts
    )


@dataclass(frozen=True)
class Tile:
    """A 2-D tile: one :class:`AxisTile` for rows (latitude) and one for columns (longitude)."""

    row: AxisTile
    col: AxisTile

    def extract(self, field: np.ndarray) -> np.ndarray:
        """The window ``[..., rows, cols]`` of a coarse field ``[..., h, w]`` (a view when possible)."""
        out = (
            field[..., self.row.window, :]
            if self.row.contiguous
            else (np.take(field, self.row.index, axis=-2))
        )
        if self.col.contiguous:
            return out[..., self.col.window]
        return np.take(out, self.col.index, axis=-1)

    def fine_crop(self, factor: int) -> tuple[slice, slice]:
        """The core in the window's fine output ``[..., H_win, W_win]``."""
        return (self.row.fine_crop(factor), self.col.fine_crop(factor))

    def fine_core(self, factor: int) -> tuple[slice, slice]:
        """Where the cropped core goes in the fine domain ``[..., H, W]``."""
        return (self.row.fine_core(factor), self.col.fine_core(factor))


@dataclass(frozen=True)
class TilePlan:
    """Tiles of a coarse ``[h, w]`` grid, rows outer and columns inner.

    Parameters
    ----------
    shape : tuple of int
        ``(h, w)`` in coarse cells.
    tile : int
        Core size in coarse cells (``tile x tile``).
    halo : int
        Halo in coarse cells on each side.
    periodic : bool
        True for a global grid: columns (longitude) wrap around.
    """

    shape: tuple[int, int]
    tile: int
    halo: int
    periodic: bool = False

    @property
    def rows(self) -> tuple[AxisTile, ...]:
        """Row (latitude) tiles; latitude never wraps."""
        return plan_axis(self.shape[0], self.tile, self.halo, periodic=False)

    @property
    def cols(self) -> tuple[AxisTile, ...]:
        """Column (longitude) tiles; they wrap when :attr:`periodic`."""
        return plan_axis(self.shape[1], self.tile, self.halo, periodic=self.periodic)

    @property
    def window_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of every window (all windows share it)."""
        return (self.rows[0].length, self.cols[0].length)

    def __iter__(self) -> Iterator[Tile]:
        cols = self.cols
        for r in self.rows:
            for c in cols:
                yield Tile(r, c)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def owner(self) -> np.ndarray:
        """``[h, w]`` int array: the index (in iteration order) of the tile owning each cell."""
        out = np.empty(self.shape, dtype=np.int64)
        for k, t in enumerate(self):
            out[t.row.core, t.col.core] = k
        return out


@dataclass(frozen=True)
class ChunkAxis:
    """One axis of a chunked array, each chunk extended by an overlap and cropped back.

    Parameters
    ----------
    chunks : tuple of int
        Chunk lengths along the axis (after merging chunks shorter than :attr:`min_chunk`).
    depth : int
        Context cells wanted on each side of a chunk (the tile halo, or ``T - 1`` time steps).
    periodic : bool
        True when the axis wraps (longitude of a global grid).
    """

    chunks: tuple[int, ...]
    depth: int
    periodic: bool = False

    @property
    def n(self) -> int:
        """Axis length in cells."""
        return int(sum(self.chunks))

    @property
    def min_chunk(self) -> int:
        """The shortest chunk the overlap allows, ``min(depth, n)``; 0 when no context is wanted."""
        return min(int(self.depth), self.n)

    @property
    def overlap(self) -> int:
        """Cells added on each overlapped side: :attr:`min_chunk`, or 0 for one non-wrapping chunk."""
        return self.min_chunk if (self.periodic or len(self.chunks) > 1) else 0

    @property
    def starts(self) -> tuple[int, ...]:
        """First cell of each chunk along the axis."""
        return tuple(int(s) for s in np.cumsum((0, *self.chunks[:-1])))

    def pad(self, j: int) -> tuple[int, int]:
        """Context cells (before, after) chunk ``j`` in its extended block."""
        d = self.overlap
        before = d if (self.periodic or j > 0) else 0
        after = d if (self.periodic or j < len(self.chunks) - 1) else 0
        return (before, after)

    def core(self, j: int, scale: int = 1) -> slice:
        """Chunk ``j``'s own cells in the output of its extended block, ``scale`` output cells
        per input cell (the factor for lat/lon, 1 for time)."""
        before = self.pad(j)[0]
        return slice(before * scale, (before + self.chunks[j]) * scale)
