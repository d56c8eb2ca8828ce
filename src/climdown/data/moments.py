"""Normalisation moments: count, mean, variance, min and max of train HR, merged chunk by chunk.

Each chunk of samples returns its :func:`moments` (a few numbers); :class:`Moments` merges them
in chunk order with the pairwise update of Chan et al. (float64), so the statistics are the
same numbers however the build runs (one process or a cluster). :meth:`Moments.result` gives
the ``normalisation`` record a store keeps: the statistics in kg m-2 and the ``scale`` the
models divide by.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from climdown.units import CANONICAL

__all__ = ["moments", "Moments"]

#: ``(count, mean, sum of squared deviations, min, max)`` of one chunk.
ChunkMoments = tuple[int, float, float, float, float]


def moments(x: Any) -> ChunkMoments | None:
    """``(count, mean, sum of squared deviations, min, max)`` of ``x`` in float64; None if empty."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return None
    mb = float(x.mean())
    return int(x.size), mb, float(((x - mb) ** 2).sum()), float(x.min()), float(x.max())


class Moments:
    """Streaming mean/std/min/max in float64 (Chan et al. pairwise update)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = math.inf, -math.inf

    def update(self, x: Any) -> None:
        """Fold in the values of ``x``."""
        self.merge(moments(x))

    def merge(self, chunk: ChunkMoments | None) -> None:
        """Fold in one chunk's ``(count, mean, M2, min, max)`` (see :func:`moments`)."""
        if chunk is None or chunk[0] == 0:
            return
        nb, mb, m2b, lo, hi = chunk
        delta = mb - self.mean
        n = self.n + nb
        self.mean += delta * nb / n
        self.m2 += m2b + delta**2 * self.n * nb / n
        self.n = n
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def result(self, scale: str | float) -> dict[str, Any]:
        """The store's ``normalisation`` record.

        Parameters
        ----------
        scale : {"max", "std", "mean"} or float
            A named statistic or a fixed scale in kg m-2 (``Recipe.normalisation.scale``).

        Returns
        -------
        dict
            ``mean``, ``std`` (population), ``min``, ``max`` and ``scale`` in kg m-2,
            ``scale_method`` (the name, or ``"fixed"``), ``computed_on`` and ``units``.
        """
        std = math.sqrt(self.m2 / self.n)
        named = {"max": self.max, "std": std, "mean": self.mean}
        value = named[scale] if isinstance(scale, str) else float(scale)
        return {
            "mean": self.mean,
            "std": std,
            "min": self.min,
            "max": self.max,
            "scale": value,
            "scale_method": scale if isinstance(scale, str) else "fixed",
            "computed_on": "train hr",
            "units": CANONICAL,
        }
