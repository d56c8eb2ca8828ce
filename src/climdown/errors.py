"""Exception classes: every error climdown raises on bad input, catchable by kind."""

from __future__ import annotations

__all__ = [
    "ClimdownError",
    "UnitsError",
    "CoordinateError",
    "GridShapeError",
    "DataValueError",
    "ConfigError",
    "RecipeError",
    "StoreError",
    "BusyError",
    "CheckpointError",
    "ConservationError",
]


class ClimdownError(Exception):
    """Base class of all climdown errors."""


class UnitsError(ClimdownError, ValueError):
    """Units missing, unknown or not convertible to what an operation needs."""


class CoordinateError(ClimdownError, KeyError):
    """Latitude/longitude/time coordinates missing, irregular or unsupported."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class GridShapeError(ClimdownError, ValueError):
    """A grid shape that does not fit the operation (e.g. not divisible by the factor)."""


class DataValueError(ClimdownError, ValueError):
    """Values that an operation cannot accept (NaN, inf, negative for a positive constraint)."""


class ConfigError(ClimdownError, ValueError):
    """An unknown model, constraint or option name, or an invalid combination of options."""


class RecipeError(ClimdownError, ValueError):
    """A recipe with an unknown, missing or invalid key."""


class StoreError(ClimdownError, OSError):
    """A training store that is missing, incomplete or of an unexpected layout."""


class BusyError(ClimdownError, OSError):
    """An output (a store being built, a run folder being trained) another process holds."""


class CheckpointError(ClimdownError, ValueError):
    """A checkpoint that cannot be used here (other factor, variable, model or format)."""


class ConservationError(ClimdownError, AssertionError):
    """A downscaled field that does not conserve the mass of its coarse input."""
