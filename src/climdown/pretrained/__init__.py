"""Small packaged default checkpoints (factor x constraint) and their index.

The checkpoints are trained by ``python -m climdown.study.build_pretrained`` on the real ERA5
samples packaged with climdown (see docs/models.md for data, grid spacing and scores).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from climdown.errors import CheckpointError

__all__ = ["available", "default_checkpoint", "index"]

_HERE = Path(str(resources.files("climdown.pretrained")))


def index() -> dict[str, Any]:
    """The packaged index: ``{"<factor>-<constraint>": {"file": ..., "scores": ...}, ...}``."""
    path = _HERE / "index.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def available() -> list[tuple[int, str]]:
    """``(factor, constraint)`` pairs with a packaged default model."""
    return sorted((int(k.split("-")[0]), k.split("-", 1)[1]) for k in index())


def default_checkpoint(factor: int, constraint: str) -> Path:
    """Path of the packaged default checkpoint for ``factor`` and ``constraint``.

    Raises
    ------
    CheckpointError
        If no default exists for that combination, listing the ones that do.
    """
    key = f"{int(factor)}-{str(constraint).lower()}"
    entry = index().get(key)
    if entry is None or not (_HERE / entry["file"]).exists():
        have = ", ".join(f"factor={f} constraint={c}" for f, c in available()) or "none"
        raise CheckpointError(
            f"no packaged default model for factor={factor}, constraint={constraint!r} "
            f"(available: {have}); pass model='path/to/checkpoint.pt' from `climdown train`, "
            "or a baseline such as model='bicubic'"
        )
    return _HERE / entry["file"]
