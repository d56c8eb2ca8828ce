"""Tile/halo plan: cores partition the domain, windows give enough context, crops stitch exactly."""

from __future__ import annotations

import numpy as np
import pytest

from climdown.errors import ConfigError
from climdown.grid import block_expand
from climdown.tiling import ChunkAxis, Tile, TilePlan, plan_axis

CASES = [
    (10, 4, 2, False),
    (10, 4, 2, True),
    (7, 7, 3, False),
    (7, 64, 8, True),
    (13, 5, 0, False),
    (3, 2, 5, False),
    (3, 2, 5, True),
    (100, 64, 8, True),
]


@pytest.mark.parametrize(("n", "tile", "halo", "periodic"), CASES)
def test_cores_partition_the_axis(n: int, tile: int, halo: int, periodic: bool) -> None:
    tiles = plan_axis(n, tile, halo, periodic=periodic)
    owned = np.concatenate([np.arange(t.core.start, t.core.stop) for t in tiles])
    np.testing.assert_array_equal(owned, np.arange(n))
    assert len({t.length for t in tiles}) == 1  # every window has the same length


@pytest.mark.parametrize(("n", "tile", "halo", "periodic"), CASES)
def test_every_core_cell_has_halo_context_or_the_edge(
    n: int, tile: int, halo: int, periodic: bool
) -> None:
    for t in plan_axis(n, tile, halo, periodic=periodic):
        crop = t.crop
        assert 0 <= crop.start and crop.stop <= t.length
        np.testing.assert_array_equal(t.index[crop], np.arange(t.core.start, t.core.stop))
        left = crop.start  # context cells before the core inside the window
        right = t.length - crop.stop
        if periodic:
            assert left == halo and right >= halo
        else:
            assert left >= min(halo, t.core.start)
            assert right >= min(halo, n - t.core.stop)
            assert t.contiguous


def test_periodic_window_wraps_across_the_date_line() -> None:
    first, *_, last = plan_axis(10, 4, 2, periodic=True)
    np.testing.assert_array_equal(first.index, [8, 9, 0, 1, 2, 3, 4, 5])
    assert not first.contiguous
    np.testing.assert_array_equal(last.index, [6, 7, 8, 9, 0, 1, 2, 3])
    assert last.core == slice(8, 10) and last.crop == slice(2, 4)


def test_clipped_window_shifts_inwards_at_the_edges() -> None:
    tiles = plan_axis(10, 4, 2, periodic=False)
    assert [t.length for t in tiles] == [8, 8, 8]  # 4 + 2 halo cells on each side
    assert [t.start for t in tiles] == [0, 2, 2]  # windows stay inside [0, 10)
    assert [t.crop for t in tiles] == [slice(0, 4), slice(2, 6), slice(6, 8)]


@pytest.mark.parametrize("periodic", [False, True])
def test_extract_is_the_window(periodic: bool) -> None:
    field = np.arange(2 * 9 * 11).reshape(2, 9, 11)
    for t in TilePlan((9, 11), 4, 2, periodic=periodic):
        want = field[:, t.row.index][:, :, t.col.index]
        np.testing.assert_array_equal(t.extract(field), want)


def test_owner_covers_each_cell_once() -> None:
    plan = TilePlan((9, 11), 4, 2, periodic=True)
    owner = plan.owner()
    assert len(plan) == 3 * 3
    np.testing.assert_array_equal(np.unique(owner), np.arange(len(plan)))


def _box3(x: np.ndarray, periodic: bool) -> np.ndarray:
    """A local 'model' with receptive radius 1: 3 x 3 mean with zero padding, then f=2 repeat."""
    pad = np.pad(x, ((1, 1), (0, 0)))
    pad = np.pad(pad, ((0, 0), (1, 1)), mode="wrap" if periodic else "constant")
    s = sum(pad[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3))
    return block_expand(s / 9.0, 2)


def _stitch(x: np.ndarray, plan: TilePlan) -> np.ndarray:
    out = np.full((x.shape[0] * 2, x.shape[1] * 2), np.nan)
    for t in plan:
        y = _box3(t.extract(x), periodic=False)  # a tile never knows it is periodic
        out[t.fine_core(2)] = y[t.fine_crop(2)]
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_stitched_local_model_equals_untiled(periodic: bool) -> None:
    x = np.random.default_rng(0).random((13, 17))
    want = _box3(x, periodic)
    got = _stitch(x, TilePlan(x.shape, 4, 1, periodic=periodic))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # contrast: without a halo, every interior tile edge shows a seam
    seams = _stitch(x, TilePlan(x.shape, 4, 0, periodic=periodic))
    assert not np.allclose(seams, want)


def test_tile_crops_are_multiples_of_the_factor() -> None:
    t = Tile(*[plan_axis(10, 4, 2, periodic=True)[1]] * 2)
    assert t.fine_crop(3) == (slice(6, 18), slice(6, 18))
    assert t.fine_core(3) == (slice(12, 24), slice(12, 24))


@pytest.mark.parametrize(
    ("n", "tile", "halo"), [(0, 4, 2), (10, 0, 2), (10, 4, -1), (10, 2.5, 1), (10, True, 1)]
)
def test_bad_plan_arguments_raise(n: int, tile: int, halo: int) -> None:
    with pytest.raises(ConfigError, match="must be an integer"):
        plan_axis(n, tile, halo)


# --------------------------------------------------------------------------- dask chunks
def test_chunk_overlap_pads_and_crops() -> None:
    rows = ChunkAxis((5, 5, 3), depth=2)
    assert rows.starts == (0, 5, 10) and rows.n == 13 and rows.overlap == 2
    assert [rows.pad(j) for j in range(3)] == [(0, 2), (2, 2), (2, 0)]  # the edges stay edges
    assert [rows.core(j, 4) for j in range(3)] == [slice(0, 20), slice(8, 28), slice(8, 20)]
    cols = ChunkAxis((5, 5, 3), depth=2, periodic=True)
    assert [cols.pad(j) for j in range(3)] == [(2, 2)] * 3  # neighbours across the date line
    # one chunk: nothing beyond it unless it wraps; a depth deeper than the axis is clipped
    assert ChunkAxis((6,), depth=3).overlap == 0 and ChunkAxis((6,), depth=3).pad(0) == (0, 0)
    assert ChunkAxis((6,), depth=9, periodic=True).overlap == 6
    assert ChunkAxis((6, 4), depth=9).min_chunk == 9 and ChunkAxis((6, 4), depth=0).overlap == 0


def _chunkwise(x: np.ndarray, axis: ChunkAxis, radius: int) -> np.ndarray:
    """Each chunk extended by its pads (wrapping where periodic), a local mean, then cropped."""
    out = []
    for j, (start, size) in enumerate(zip(axis.starts, axis.chunks, strict=True)):
        before, after = axis.pad(j)
        idx = np.arange(start - before, start + size + after)
        block = x[idx % x.size]  # the pads never leave the axis unless it wraps
        out.append(_mean1d(block, radius, periodic=False)[axis.core(j)])
    return np.concatenate(out)


def _mean1d(x: np.ndarray, radius: int, periodic: bool) -> np.ndarray:
    k = np.arange(-radius, radius + 1)
    idx = np.arange(x.size)[:, None] + k[None, :]
    if periodic:
        return x[idx % x.size].mean(axis=1)
    ok = (idx >= 0) & (idx < x.size)
    return np.where(ok, x[np.clip(idx, 0, x.size - 1)], 0.0).sum(axis=1) / k.size


@pytest.mark.parametrize("periodic", [False, True])
def test_chunks_with_overlap_equal_the_whole_axis(periodic: bool) -> None:
    x = np.random.default_rng(1).random(23)
    want = _mean1d(x, 2, periodic)
    got = _chunkwise(x, ChunkAxis((7, 7, 6, 3), depth=2, periodic=periodic), 2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # contrast: an overlap shallower than the radius shows the chunk seams
    seams = _chunkwise(x, ChunkAxis((7, 7, 6, 3), depth=1, periodic=periodic), 2)
    assert not np.allclose(seams, want)
