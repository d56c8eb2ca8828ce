"""climdown: physics-constrained deep-learning downscaling of gridded climate fields.

``import climdown`` registers the ``.climdown`` xarray accessor. torch and cartopy are imported
lazily, where they are used.
"""

from __future__ import annotations

from climdown import accessor as _accessor  # noqa: F401  (registers the .climdown accessor)
from climdown import plot  # matplotlib/cartopy are imported inside its functions
from climdown._version import __version__
from climdown.errors import (
    CheckpointError,
    ClimdownError,
    ConfigError,
    ConservationError,
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
    "plot",
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
