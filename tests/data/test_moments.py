"""Normalisation moments (climdown.data.moments): merged chunks equal the whole, in any order."""

from __future__ import annotations

import numpy as np
import pytest

from climdown.data.moments import Moments, moments


def _chunks(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.gamma(2.0, 10.0, size=n).astype(np.float32) for n in (7, 1, 300, 64, 2)]


def test_merged_chunk_moments_equal_those_of_all_values():
    chunks = _chunks()
    every = np.concatenate(chunks).astype(np.float64)
    m = Moments()
    for c in chunks:
        m.merge(moments(c))
    assert m.n == every.size
    np.testing.assert_allclose(
        [m.mean, np.sqrt(m.m2 / m.n)], [every.mean(), every.std()], rtol=1e-12
    )
    assert (m.min, m.max) == (every.min(), every.max())
    # another order gives the same numbers to round-off; update() is merge(moments())
    other = Moments()
    for c in reversed(chunks):
        other.update(c)
    np.testing.assert_allclose([other.mean, other.m2], [m.mean, m.m2], rtol=1e-12)
    # contrast: the mean of the chunk means is not the mean of chunks of unequal size
    assert abs(np.mean([c.mean() for c in chunks]) - every.mean()) > 1e-3


def test_empty_chunks_change_nothing():
    assert moments(np.array([])) is None
    m = Moments()
    m.merge(None)
    m.update(np.array([2.0, 4.0]))
    m.merge(moments(np.zeros(0)))
    assert (m.n, m.mean, m.m2, m.min, m.max) == (2, 3.0, 2.0, 2.0, 4.0)


@pytest.mark.parametrize(
    ("scale", "value", "method"),
    [("max", 4.0, "max"), ("std", 1.0, "std"), ("mean", 3.0, "mean"), (2.5, 2.5, "fixed")],
)
def test_result_is_the_stores_normalisation_record(scale, value, method):
    m = Moments()
    m.update([2.0, 4.0])
    rec = m.result(scale)
    assert rec["scale"] == value and rec["scale_method"] == method
    assert (rec["mean"], rec["std"], rec["min"], rec["max"]) == (3.0, 1.0, 2.0, 4.0)
    assert rec["units"] == "kg m-2" and rec["computed_on"] == "train hr"
