"""climdown: physics-constrained deep-learning downscaling of gridded climate fields.

``import climdown`` registers the ``.climdown`` xarray accessor. torch and cartopy are imported
lazily, where they are used.
"""

from __future__ import annotations

from climdown._version import __version__
from climdown.errors import (
    CheckpointError,
    ClimdownError,
    ConservationError,
    ConfigError,
    CoordinateError,
    DataValueError,
    GridShapeError,
    RecipeError,
    StoreError,
    UnitsError,
)
from climdown.grid import Grid

__all__ = [
    "__version__",
    "Grid",
    "ClimdownError",
    "UnitsError",
    "ConfigError",
    "CoordinateError",
    "GridShapeError",
    "DataValueError",
    "RecipeError",
    "StoreError",
    "CheckpointError",
    "ConservationError",
]
