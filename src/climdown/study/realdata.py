"""The real-ERA5 rows: the packaged samples as stores with held-out space or time, scored.

Two data sets, both real ERA5 (``climdown.data.sources.open_sample``), each a packaged recipe
per factor (``recipes/era5-<set>-x<factor>.yaml``):

* ``global``: the global 1.5 deg daily TCWV field (one time), split by longitude: train on
  0-192 E, choose checkpoints on 192-276 E, report on 276-360 E;
* ``rhine``: 24 hourly 0.25 deg TCW fields over the Rhine, split by time: hours 0-15 train,
  16-19 val, 20-23 test.

Each store holds every HR patch position on a grid of step max(4, factor) inside its split.
What is run comes from the ``real_data`` section of ``experiments.yaml`` (:class:`RealData`):
the sets and their table labels, the factors, the models. Baselines (bicubic, and bicubic +
softmax) need no training; CNNs are trained by :func:`climdown.study.runner.run_row`. Scores
are area-weighted RMSE in kg m-2 on the test split, beside plain bicubic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from climdown import validate
from climdown.errors import RecipeError
from climdown.evaluate import markdown_table
from climdown.study import read_recipe, recipe_path
from climdown.study.runner import finished_row, run_row

__all__ = ["ModelSpec", "RealData", "real_recipe", "run_real_data", "format_real_table"]


def real_recipe(name: str, factor: int) -> str:
    """Name of the packaged recipe of real data set ``name`` at ``factor`` (``era5-rhine-x4``)."""
    return f"era5-{name}-x{int(factor)}"


@dataclass(frozen=True)
class ModelSpec:
    """A model of a real-data row: name, constraint and model options (``{skip: bicubic}``)."""

    model: str
    constraint: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``cnn``, or ``cnn (skip bicubic)`` for a model that corrects an interpolation."""
        skip = self.options.get("skip")
        return self.model if not skip else f"{self.model} (skip {skip})"

    @property
    def slug(self) -> str:
        """Part of the run folder's name: ``cnn-skip-softmax``."""
        skip = "-skip" if self.options.get("skip") else ""
        return f"{self.model}{skip}-{self.constraint}"


@dataclass(frozen=True)
class RealData:
    """The ``real_data`` section of an experiments file.

    Parameters
    ----------
    sets : mapping
        Data set name (``global``, ``rhine``) -> its label in the table.
    factors : tuple of int
        Downscaling factors, each with a packaged recipe per set.
    models : tuple of ModelSpec
        The rows of each set and factor.
    epochs : int, optional
        Training epochs of the real rows (None: the table's).
    batch_size : int, optional
        Batch size of the real rows (None: the table's).
    """

    sets: Mapping[str, str]
    factors: tuple[int, ...] = (4,)
    models: tuple[ModelSpec, ...] = (ModelSpec("bicubic", "none"),)
    epochs: int | None = None
    batch_size: int | None = None

    def training(self, *, epochs: int, batch_size: int, quick: bool) -> tuple[int, int]:
        """(epochs, batch size) of the real rows: this section's, else the table's ones;
        ``quick`` trains one epoch."""
        own_epochs = self.epochs if self.epochs is not None else epochs
        batch = self.batch_size if self.batch_size is not None else batch_size
        return (1 if quick else int(own_epochs)), int(batch)

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "real_data") -> RealData:
        """Validate a parsed ``real_data`` mapping; unknown keys are a ``RecipeError``."""
        raw = validate.check_keys(
            raw,
            ("sets", "factors", "models", "epochs", "batch_size"),
            where,
            required=("sets",),
            error=RecipeError,
        )
        sets = raw["sets"]
        if not isinstance(sets, Mapping) or not sets:
            raise RecipeError(
                f"{where}.sets must map each data set to its label in the table, e.g. "
                f"{{rhine: 'ERA5 TCW 0.25 deg Rhine'}}, got {sets!r}"
            )
        factors = tuple(
            validate.factor(f, f"{where}.factors", error=RecipeError)
            for f in raw.get("factors", [4])
        )
        models = []
        for i, entry in enumerate(
            raw.get("models") or [{"model": "bicubic", "constraint": "none"}]
        ):
            m = validate.check_keys(
                entry,
                ("model", "constraint", "options"),
                f"{where}.models[{i}]",
                required=("model", "constraint"),
                error=RecipeError,
            )
            models.append(
                ModelSpec(str(m["model"]), str(m["constraint"]), dict(m.get("options") or {}))
            )
        for name in sets:
            for f in factors:
                recipe_path(real_recipe(name, f))  # a RecipeError now, not after training
        return cls(
            sets={str(k): str(v) for k, v in sets.items()},
            factors=factors,
            models=tuple(models),
            epochs=None
            if raw.get("epochs") is None
            else validate.integer(raw["epochs"], f"{where}.epochs", minimum=0, error=RecipeError),
            batch_size=None
            if raw.get("batch_size") is None
            else validate.positive_int(raw["batch_size"], f"{where}.batch_size", error=RecipeError),
        )


def run_real_data(
    plan: RealData,
    *,
    out: str | os.PathLike[str],
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    finished_only: bool = False,
) -> list[dict[str, Any]]:
    """Score the models of ``plan`` on every set and factor; one row per set/factor/model.

    ``finished_only`` trains nothing and builds no store: the rows already finished in
    ``out``, if any.

    ``epochs`` and ``batch_size`` (the table's) apply where ``plan`` sets none
    (:meth:`RealData.training`). ``quick`` keeps factor 4 only and trains one epoch of two
    steps of a narrow CNN (the stores stay whole: they are small).
    """
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store

    out = Path(out)
    factors = [4] if quick else list(plan.factors)
    epochs, batch = plan.training(epochs=epochs, batch_size=batch_size, quick=quick)
    rows: list[dict[str, Any]] = []
    for factor in factors:
        for name in plan.sets:
            raw = read_recipe(real_recipe(name, factor), stores=out / "stores")
            if finished_only:
                store = Path(raw["output"])
            else:
                store = build_store(load_recipe(raw), progress=False)
            for spec in plan.models:
                run = out / "runs" / f"{name}-x{factor}-{spec.slug}"
                head = {
                    "data": name,
                    "factor": factor,
                    "model": spec.label,
                    "constraint": spec.constraint,
                }
                settings: dict[str, Any] = dict(
                    epochs=epochs,
                    batch_size=batch,
                    lr=lr,
                    options=spec.options,
                    quick=quick,
                    device=device,
                    progress=progress,
                )
                if finished_only:
                    row = finished_row(run, store, spec.model, spec.constraint, **settings)
                    if row is not None:
                        rows.append(row)
                else:
                    rows.append(run_row(run, head, store, spec.model, spec.constraint, **settings))
    return rows


def format_real_table(rows: list[dict[str, Any]], labels: Mapping[str, str]) -> str:
    """Markdown table: area-weighted RMSE (kg m-2), gain over bicubic, MAE, SSIM, negatives,
    mass violation; ``labels`` names each data set (:attr:`RealData.sets`)."""
    base = {
        (r["data"], r["factor"]): r["scores"]["RMSE_area_weighted"]
        for r in rows
        if r["model"] == "bicubic" and r["constraint"] == "none"
    }
    cells = []
    for r in rows:
        s = r["scores"]
        rmse = s["RMSE_area_weighted"]
        ref = base.get((r["data"], r["factor"]))
        cells.append(
            (
                labels.get(r["data"], r["data"]),
                f"{r['factor']}x",
                r["model"],
                r["constraint"],
                f"{rmse:.4f}",
                "–" if ref is None else f"{100.0 * (rmse - ref) / ref:+.1f}%",
                f"{s['MAE']:.4f}",
                f"{s['SSIM']:.4f}",
                int(s["neg_num"]),
                f"{s['mass_violation_rel']:.1e}",
            )
        )
    headers = (
        "data",
        "factor",
        "model",
        "constraint",
        "RMSE area-wt (kg m-2)",
        "vs bicubic",
        "MAE",
        "SSIM",
        "neg num",
        "mass viol. (rel)",
    )
    return markdown_table(headers, cells)
