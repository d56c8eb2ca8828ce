"""The study beside the library, never imported by it: recipes, experiment table, demo, defaults.

Everything here uses the library (``climdown.data``, ``climdown.train``, ``climdown.evaluate``,
the accessor) the way a user would; nothing in ``climdown`` imports ``climdown.study`` but the
command line, lazily, in the ``build``, ``experiments`` and ``demo`` commands.

* ``recipes/`` (package data): the study's YAML recipes (``tcw2``, ``tcw4``, ``tcw8``, ``t1``,
  ``tiny``, the real-ERA5 ``era5-global-x*``, ``era5-rhine-x*`` and ``era5-arco-tcw4`` (the
  cloud ARCO-ERA5 zarr, needs ``climdown[cloud]``)) and ``experiments.yaml``;
  :func:`recipe_path` finds one by name, :func:`read_recipe` reads it;
* :mod:`climdown.study.runner`: train and score one row (cached in its run folder), Markdown;
* :mod:`climdown.study.realdata`: the real-ERA5 rows;
* :mod:`climdown.study.experiments`: the table E1-E12, T1 (+ real rows), ``climdown experiments``;
* :mod:`climdown.study.demo`: ``climdown demo``;
* :mod:`climdown.study.build_pretrained`: trains the packaged default models
  (``python -m climdown.study.build_pretrained --out DIR``);
* :mod:`climdown.study.little_data`: what augmentation, area-weighted selection and early
  stopping buy on a packaged real store (``python -m climdown.study.little_data``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from climdown.errors import RecipeError

__all__ = ["recipes_dir", "packaged_recipes", "recipe_path", "read_recipe"]


def recipes_dir() -> Path:
    """The folder of the packaged recipes (``climdown/study/recipes`` where climdown is installed)."""
    # the wheel installs package data as plain files, so the resource is a real folder
    return Path(str(resources.files("climdown.study") / "recipes"))


def packaged_recipes() -> list[str]:
    """Names of the packaged YAML files: the recipes (``tcw4``, ``era5-rhine-x4``, ...), and the
    study's ``experiments`` table and ``report`` (the course report's table and claims)."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """``recipe`` if it is a file, else the packaged recipe of that name (``tcw4`` or ``tcw4.yaml``).

    Raises
    ------
    RecipeError
        If ``recipe`` is neither an existing file nor the name of a packaged recipe; the
        message lists the packaged names.
    """
    path = Path(recipe).expanduser()
    if path.is_file():
        return path
    text = os.fspath(recipe)
    if "/" not in text and os.sep not in text:
        packaged = recipes_dir() / (text if text.endswith(".yaml") else f"{text}.yaml")
        if packaged.is_file():
            return packaged
    raise RecipeError(
        f"recipe {text!r} is neither a file (relative paths are read from {os.getcwd()!r}) nor "
        f"a packaged recipe ({', '.join(packaged_recipes())}); pass a YAML path or one of "
        "those names"
    )


def read_recipe(
    recipe: str | os.PathLike[str], *, stores: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The YAML mapping of a recipe (path or packaged name), for ``load_recipe`` to validate.

    Parameters
    ----------
    recipe : str or path
        As for :func:`recipe_path`.
    stores : path, optional
        Folder for the store: ``output`` becomes ``stores/<name>.zarr`` (the packaged recipes
        say ``stores/<name>.zarr`` relative to the current directory).

    Raises
    ------
    RecipeError
        If the recipe is not found or is not a YAML mapping.
    """
    path = recipe_path(recipe)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {str(path)!r} must be a YAML mapping, got {type(raw).__name__}")
    if stores is not None:
        raw["output"] = str(Path(stores) / f"{raw.get('name', path.stem)}.zarr")
    return raw
