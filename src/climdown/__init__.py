"""climdown: physics-constrained deep-learning downscaling of gridded climate fields.

``import climdown`` registers the ``.climdown`` xarray accessor and imports nothing heavy:

* the accessor is registered when xarray is imported (at once if it already is; otherwise a
  one-shot import hook registers it right after ``import xarray`` finishes), so
  ``import climdown.errors`` in a DataLoader worker or a DDP rank does not load xarray or torch;
* :mod:`climdown.plot` and :class:`climdown.grid.Grid` are loaded on first use
  (``climdown.plot.compare(...)``, ``climdown.Grid(...)``);
* torch and cartopy are imported where they are used.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

from climdown._version import __version__
from climdown.errors import (
    BusyError,
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
    "BusyError",
    "CheckpointError",
    "ConservationError",
]


def __getattr__(name: str) -> Any:
    """``climdown.plot`` and ``climdown.Grid`` on first use (PEP 562)."""
    if name == "plot":
        return importlib.import_module("climdown.plot")
    if name == "Grid":
        from climdown.grid import Grid

        return Grid
    raise AttributeError(f"module 'climdown' has no attribute {name!r}")


def _register_accessor() -> None:
    importlib.import_module("climdown.accessor")  # @register_*_accessor("climdown") on import


class _RegisterAfterXarray(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``xarray`` is being imported, runs the accessor registration
    right after xarray's own module code, then steps aside for good."""

    def find_spec(
        self, fullname: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "xarray":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("xarray")
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            del loader.exec_module  # the loader's own method again
            _register_accessor()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "xarray" in sys.modules:
    _register_accessor()
elif not any(isinstance(f, _RegisterAfterXarray) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterXarray())
