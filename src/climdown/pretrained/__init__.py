"""Small packaged default models (factor x constraint x grid-spacing regime) and their index.

The checkpoints are trained by ``python -m climdown.study.build_pretrained`` on the real ERA5
samples packaged with climdown (see docs/models.md for data, grid spacing and scores). Each
index entry covers one factor, constraint and *regime*: the coarse grid spacing of its
training data (``lr_spacing_deg``). :func:`select` picks the entry nearest an input's
spacing. An entry whose trained model did not beat the best baseline on validation data
holds no file but a ``fallback`` (a baseline name) and ``why``: the baseline is used there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from climdown.errors import CheckpointError

__all__ = ["available", "default_checkpoint", "index", "select", "Default", "covered_spacing"]

_HERE = Path(str(resources.files("climdown.pretrained")))


@dataclass(frozen=True)
class Default:
    """The packaged choice for one factor, constraint and input spacing.

    Attributes
    ----------
    key : str
        The index entry (``"4-softmax-rhine"``).
    path : Path or None
        The checkpoint, or None where a baseline ships (``fallback``).
    fallback : str or None
        Baseline model name used instead of a trained model (``"pycnophylactic"``), with the
        constraint ``fallback_constraint`` and the reason ``why``.
    lr_spacing_deg : tuple of float or None
        Coarse grid spacing ``(dlat, dlon)`` of the entry's training data.
    """

    key: str
    path: Path | None
    fallback: str | None = None
    fallback_constraint: str | None = None
    why: str | None = None
    lr_spacing_deg: tuple[float, float] | None = None


def index() -> dict[str, Any]:
    """The packaged index: ``{"<factor>-<constraint>[-<regime>]": {...}, ...}``.

    Parsed once per file version (path and modification time), not on every downscaling call
    that picks a default; each call gets its own copy to change as it likes.
    """
    path = _HERE / "index.json"
    if not path.exists():
        return {}
    return json.loads(_read(str(path), path.stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> str:
    """The index file's text (cached by path and modification time)."""
    return Path(path).read_text()


def _entries(factor: int, constraint: str) -> dict[str, dict[str, Any]]:
    return {
        key: e
        for key, e in index().items()
        if int(e.get("factor", key.split("-")[0])) == int(factor)
        and str(e.get("constraint", key.split("-")[1])) == str(constraint).lower()
        and (e.get("fallback") or (_HERE / str(e.get("file", ""))).is_file())
    }


def available() -> list[tuple[int, str]]:
    """``(factor, constraint)`` pairs with a packaged default (model or fallback)."""
    pairs = {(int(k.split("-")[0]), k.split("-")[1]) for k in index()}
    return sorted(p for p in pairs if _entries(*p))


def covered_spacing(factor: int, constraint: str) -> list[tuple[float, float]]:
    """The coarse spacings ``(dlat, dlon)`` (deg) the packaged entries were trained at."""
    return [
        (float(e["lr_spacing_deg"][0]), float(e["lr_spacing_deg"][1]))
        for e in _entries(factor, constraint).values()
        if e.get("lr_spacing_deg")
    ]


def select(factor: int, constraint: str, spacing: Sequence[float] | None = None) -> Default:
    """The packaged default for ``factor`` and ``constraint`` nearest an input's spacing.

    Parameters
    ----------
    spacing : (dlat, dlon), optional
        The input's coarse grid spacing in degrees; the entry with the smallest
        ``sum |log(spacing / trained)|`` is chosen. None: the finest regime.

    Raises
    ------
    CheckpointError
        If nothing is packaged for that combination, listing what is.
    """
    entries = _entries(factor, constraint)
    if not entries:
        have = ", ".join(f"factor={f} constraint={c}" for f, c in available()) or "none"
        raise CheckpointError(
            f"no packaged default model for factor={factor}, constraint={constraint!r} "
            f"(available: {have}); pass model='path/to/checkpoint.pt' from `climdown train`, "
            "or a baseline such as model='bicubic'"
        )

    def distance(item: tuple[str, dict[str, Any]]) -> tuple[float, str]:
        trained = item[1].get("lr_spacing_deg")
        if not trained:
            return (math.inf, item[0])
        if spacing is None:
            return (float(trained[0]), item[0])  # the finest
        d = sum(
            abs(math.log(float(s) / float(t)))
            for s, t in zip(spacing, trained, strict=True)
            if float(s) > 0 and float(t) > 0
        )
        return (d, item[0])

    key, e = min(entries.items(), key=distance)
    spacing_deg = e.get("lr_spacing_deg")
    return Default(
        key=key,
        path=None if e.get("fallback") else _HERE / e["file"],
        fallback=e.get("fallback"),
        fallback_constraint=e.get("fallback_constraint"),
        why=e.get("why"),
        lr_spacing_deg=None if not spacing_deg else (float(spacing_deg[0]), float(spacing_deg[1])),
    )


def default_checkpoint(
    factor: int, constraint: str, spacing: Sequence[float] | None = None
) -> Path:
    """Path of the packaged checkpoint for ``factor``, ``constraint`` (and input ``spacing``).

    Raises
    ------
    CheckpointError
        If no default exists for that combination (listing the ones that do), or a baseline
        ships there instead of a trained model (saying why).
    """
    pick = select(factor, constraint, spacing)
    if pick.path is None:
        raise CheckpointError(
            f"the packaged default for factor={factor}, constraint={constraint!r} "
            f"({pick.key}) is the {pick.fallback!r} baseline, not a trained model: {pick.why}"
        )
    return pick.path
