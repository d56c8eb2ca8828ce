"""The checks every configuration shares: integers, numbers, keys of a mapping, factors.

One implementation of each, used by recipes, training configs, experiments, checkpoints and the
models' options. Each check takes the error class to raise (``ConfigError`` by default;
recipes pass ``RecipeError``) so the caller decides what kind of mistake it is, and the message
always names the option and, where one exists, the fix. This module imports nothing but the
standard library and :mod:`climdown.errors`.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from climdown.errors import ClimdownError, ConfigError

__all__ = [
    "positive_int",
    "integer",
    "number",
    "factor",
    "check_keys",
    "output_folder",
    "SUPPORTED_FACTORS",
]

#: The factors the study's models are built for (the reference code's 2x, 4x and 8x).
SUPPORTED_FACTORS = (2, 4, 8)


def integer(
    value: Any,
    name: str,
    *,
    minimum: int = 1,
    error: type[ClimdownError] = ConfigError,
    example: str | None = None,
) -> int:
    """``value`` as an ``int >= minimum`` (bools and floats refused), else ``error``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        hint = f"; e.g. {example}" if example else ""
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}{hint}")
    return int(value)


def positive_int(
    value: Any, name: str, *, error: type[ClimdownError] = ConfigError, example: str | None = None
) -> int:
    """``value`` as an ``int >= 1``, else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        hint = f"; e.g. {example}" if example else ""
        raise error(f"{name} must be a positive integer, got {value!r}{hint}")
    return int(value)


def number(
    value: Any,
    name: str,
    *,
    positive: bool = False,
    error: type[ClimdownError] = ConfigError,
    what: str = "a number",
) -> float:
    """``value`` as a finite float (``> 0`` when ``positive``), else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be {what}, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0):
        need = "a positive finite number" if positive else "a finite number"
        raise error(f"{name} must be {need}, got {value!r}")
    return out


def factor(value: Any, name: str = "factor", *, error: type[ClimdownError] = ConfigError) -> int:
    """A downscaling factor: a positive integer (whether a model exists for it is not asked)."""
    return positive_int(value, name, error=error, example="factor 4")


def check_keys(
    mapping: Any,
    allowed: Iterable[str],
    where: str,
    *,
    required: Iterable[str] = (),
    error: type[ClimdownError] = ConfigError,
) -> dict[str, Any]:
    """``mapping`` as a dict whose keys are all in ``allowed`` and include ``required``.

    An unknown key names the closest allowed one (``did you mean 'factor'?``); ``where`` names
    the mapping: a section name such as ``"region"`` qualifies keys in messages
    (``region.lat_min``); a description with a space (``"training config"``) or ``"recipe"``
    (the top level) does not.
    """
    allowed = list(allowed)
    if not isinstance(mapping, Mapping):
        raise error(
            f"{where} must be a mapping with keys {', '.join(map(str, allowed))}, got "
            f"{mapping!r} ({type(mapping).__name__})"
        )

    def full(key: Any) -> str:
        return str(key) if where == "recipe" or " " in where else f"{where}.{key}"

    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise error(
                f"unknown key {full(key)!r}: {hint}allowed keys are {', '.join(map(str, allowed))}; "
                "remove or rename it"
            )
    for key in required:
        if key not in mapping:
            raise error(f"missing key {full(key)!r} in {where}; add it")
    return dict(mapping)


def output_folder(path: str | os.PathLike[str], name: str) -> Path:
    """``path`` as a folder to write into, created with its parents; a ConfigError naming
    ``name`` when it is a file (a mistyped ``--out data.nc`` gets a clear refusal, not a
    bare 'File exists', and the file is left as it was)."""
    out = Path(path)
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(
            f"{name} {str(out)!r} is a file, not a folder: it is where the results are "
            "written; choose a folder (a new path is created)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
