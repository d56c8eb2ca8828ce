"""The study's experiment table: ``experiments.yaml`` -> stores -> rows -> Markdown.

:func:`run_experiments` reproduces the table of Harder et al. as run in the course study (E1-E12
and T1, the packaged ``recipes/experiments.yaml``) plus real-ERA5 rows
(:mod:`climdown.study.realdata`), from one command, ``climdown experiments``. Checkpoints are
chosen on ``val``; the reported scores are on ``test`` (the reference code chose on test).
Every number in the written table comes from this run; nothing is typed in. A finished row
leaves ``scores.json`` in its run folder (:func:`climdown.study.runner.run_row`), so a re-run
resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from climdown import validate
from climdown._machine import machine_info
from climdown.errors import ConfigError, RecipeError
from climdown.study import read_recipe, recipe_path
from climdown.study.realdata import RealData, format_real_table, run_real_data
from climdown.study.runner import NOTES_MARKER, run_row, write_markdown

__all__ = ["Experiment", "ExperimentPlan", "load_experiments", "run_experiments", "NOTES_MARKER"]

#: ``--quick`` stores: HR patch size (at least 4 LR cells) and samples per split.
_QUICK = {"patch": 32, "train": 64, "val": 16, "test": 16}
_TOP_KEYS = ("epochs", "batch_size", "lr", "members", "experiments", "real_data")
_ROW_KEYS = ("id", "recipe", "model", "constraint", "options")


@dataclass(frozen=True)
class Experiment:
    """One row of the table: an id, a recipe (path), a model, a constraint, model options."""

    id: str
    recipe: Path
    model: str
    constraint: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentPlan:
    """A whole experiments file: the rows plus the shared training settings."""

    experiments: tuple[Experiment, ...]
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    members: int = 10
    real_data: RealData | None = None
    path: Path | None = None


def load_experiments(path: str | os.PathLike[str] | None = None) -> ExperimentPlan:
    """Read an experiments YAML file (``yaml.safe_load``); unknown keys are errors.

    Parameters
    ----------
    path : str or path, optional
        A file, or the name of a packaged one; default the packaged ``experiments.yaml``. A
        row's ``recipe`` is read relative to the file, else as a packaged recipe name.

    Raises
    ------
    RecipeError
        Naming the file, the offending key or entry, and the fix.
    """
    path = recipe_path(path if path is not None else "experiments")
    try:
        return _plan(yaml.safe_load(path.read_text()) or {}, path)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None


def _plan(raw: Any, path: Path) -> ExperimentPlan:
    # "recipe" is check_keys' name for a top level: messages then name the bare key
    raw = validate.check_keys(raw, _TOP_KEYS, "recipe", error=RecipeError)
    rows: list[Experiment] = []
    for i, entry in enumerate(raw.get("experiments") or []):
        where = f"experiments[{i}]"
        e = validate.check_keys(entry, _ROW_KEYS, where, required=_ROW_KEYS[:4], error=RecipeError)
        if str(e["id"]) in {r.id for r in rows}:
            raise RecipeError(f"{where}: duplicate id {e['id']!r}; give each row its own id")
        beside = path.parent / str(e["recipe"])
        recipe = beside.resolve() if beside.is_file() else recipe_path(str(e["recipe"]))
        rows.append(
            Experiment(
                str(e["id"]),
                recipe,
                str(e["model"]),
                str(e["constraint"]),
                dict(e.get("options") or {}),
            )
        )
    real = RealData.from_mapping(raw["real_data"]) if raw.get("real_data") else None
    if not rows and real is None:
        raise RecipeError("lists no experiments and no real_data; add rows under experiments:")
    return ExperimentPlan(
        tuple(rows),
        epochs=validate.integer(raw.get("epochs", 20), "epochs", minimum=0, error=RecipeError),
        batch_size=validate.positive_int(
            raw.get("batch_size", 64), "batch_size", error=RecipeError
        ),
        lr=validate.number(raw.get("lr", 1e-3), "lr", positive=True, error=RecipeError),
        members=validate.positive_int(raw.get("members", 10), "members", error=RecipeError),
        real_data=real,
        path=path,
    )


def _quick_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """Shrink a recipe for CI: 1 deg synthetic source, small patches, few samples."""
    r = dict(raw)
    if str(r.get("source", "synthetic")).startswith("synthetic") or (
        isinstance(r.get("source"), dict) and r["source"].get("kind") == "synthetic"
    ):
        r["source"] = {"kind": "synthetic", "resolution": 1.0, "seed": 0}
    r["patch"] = max(_QUICK["patch"], 4 * int(r["factor"]))
    r["splits"] = {k: {**v, "samples": _QUICK.get(k, 16)} for k, v in r["splits"].items()}
    r["chunks"] = 16
    r["name"] = f"{r.get('name', 'store')}-quick"
    return r


def _store_for(recipe: Path, out: Path, quick: bool, progress: bool) -> Path:
    """Build (or find) the store of ``recipe`` under ``out/stores``; shrunk when ``quick``."""
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store

    raw = read_recipe(recipe)
    raw = _quick_recipe(raw) if quick else raw
    if "test" not in raw["splits"]:
        raise RecipeError(
            f"recipe {raw.get('name')!r} has no 'test' split: experiments choose checkpoints "
            "on 'val' and report on 'test'; add splits.test (a later time range) to the recipe"
        )
    raw["output"] = str(out / "stores" / f"{raw['name']}.zarr")
    return build_store(load_recipe(raw), progress=progress)


def _data_name(store: Path) -> str:
    return Path(store).stem.upper()


def run_experiments(
    config: str | os.PathLike[str] | None = None,
    *,
    epochs: int | None = None,
    quick: bool = False,
    out: str | os.PathLike[str] = "experiments-out",
    results: str | os.PathLike[str] | None = None,
    device: str = "auto",
    only: list[str] | None = None,
    progress: bool = True,
) -> str:
    """Run the experiment table and write it (Markdown) to ``results``.

    Parameters
    ----------
    config : path or name, optional
        Experiments YAML; default the packaged ``experiments.yaml``.
    epochs : int, optional
        Override the file's epochs (``--quick`` defaults to 1).
    quick : bool
        Tiny stores and two steps per epoch: the whole table in a few minutes (CI).
    out : path
        Folder for stores and runs (``out/stores``, ``out/runs/ID``, ``out/real``).
    results : path, optional
        Markdown file to write; default ``out/results.md``. Text below
        :data:`~climdown.study.runner.NOTES_MARKER` in an existing file is kept.
    device : str
        Torch device or ``"auto"``.
    only : list of str, optional
        Run only these ids (``real`` selects the real-data rows).
    progress : bool
        Progress bars while training.

    Returns
    -------
    str
        The Markdown document that was written.

    Raises
    ------
    RecipeError
        For a bad experiments file or recipe, before anything is built.
    ConfigError
        For an unknown id in ``only``.
    """
    plan = load_experiments(config)
    given_epochs = epochs
    epochs = int(epochs if epochs is not None else (1 if quick else plan.epochs))
    out = Path(out)
    wanted = None if not only else {s.upper() for s in only}
    unknown = (wanted or set()) - {e.id.upper() for e in plan.experiments} - {"REAL"}
    if unknown:
        raise ConfigError(f"unknown experiment id(s) {sorted(unknown)} for --only")
    rows = []
    stores: dict[Path, Path] = {}
    for exp in plan.experiments:
        if wanted is not None and exp.id.upper() not in wanted:
            continue
        if exp.recipe not in stores:
            stores[exp.recipe] = _store_for(exp.recipe, out, quick, progress)
        store = stores[exp.recipe]
        print(f"[{exp.id}] {exp.model} + {exp.constraint} on {store.name}")
        head = {"id": exp.id, "data": _data_name(store)}
        rows.append(
            run_row(
                out / "runs" / exp.id,
                {**head, "model": exp.model, "constraint": exp.constraint},
                store,
                exp.model,
                exp.constraint,
                epochs=epochs,
                batch_size=plan.batch_size,
                lr=plan.lr,
                options=exp.options,
                members=plan.members,
                quick=quick,
                device=device,
                progress=progress,
            )
        )
    rows += _baseline_rows(stores.values(), out / "runs", members=plan.members, device=device)
    real_rows: list[dict[str, Any]] = []
    if plan.real_data is not None and (wanted is None or "REAL" in wanted):
        real_rows = run_real_data(
            plan.real_data,
            out=out / "real",
            epochs=epochs,
            batch_size=plan.batch_size,
            lr=plan.lr,
            quick=quick,
            device=device,
            progress=progress,
        )
    doc = _document(
        rows, real_rows, plan, epochs=epochs, quick=quick, given_epochs=given_epochs, only=only
    )
    write_markdown(Path(results) if results is not None else out / "results.md", doc)
    return doc


def _baseline_rows(
    stores: Iterable[Path], runs: Path, *, members: int, device: str
) -> list[dict[str, Any]]:
    """Bicubic (none and softmax) on each store's test split: the bar every model must clear."""
    rows = []
    for store in stores:
        for constraint in ("none", "softmax"):
            head = {"id": "baseline", "data": _data_name(store)}
            rows.append(
                run_row(
                    runs / f"bicubic-{Path(store).stem}-{constraint}",
                    {**head, "model": "bicubic", "constraint": constraint},
                    store,
                    "bicubic",
                    constraint,
                    members=members,
                    device=device,
                )
            )
    return rows


def _document(
    rows: list[dict[str, Any]],
    real_rows: list[dict[str, Any]],
    plan: ExperimentPlan,
    *,
    epochs: int,
    quick: bool,
    given_epochs: int | None = None,
    only: list[str] | None = None,
) -> str:
    from climdown.evaluate import format_table

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (CI-sized stores, 2 steps per epoch)" if quick else "full"
    parts = [
        "# Results",
        "",
        f"Generated by `climdown experiments{' --quick' if quick else ''}"
        f"{'' if given_epochs is None else f' --epochs {given_epochs}'}"
        f"{' --only ' + ' '.join(only) if only else ''}` on {stamp}; "
        f"mode: {mode}; "
        f"{epochs} epoch(s), batch {plan.batch_size}, Adam lr {plan.lr}.",
        "",
        f"Machine: {machine_info()}.",
        "",
        "Scores are on each store's `test` split (checkpoints chosen on `val`), in physical "
        "units (kg m-2), not the study's 0-100 scaling, so MSE/RMSE/MAE are not directly "
        "comparable with the study's table; PSNR uses the test set's truth range; mass "
        "violation is the largest area-weighted block error relative to the mean |LR|; CRPS "
        f"(standard ECDF estimator) over {plan.members} GAN members.",
        "",
    ]
    if rows:
        parts += ["## The study's table (generated TCW fields)", "", format_table(rows), ""]
    if real_rows and plan.real_data is not None:
        rd = plan.real_data
        real_epochs, batch = rd.training(epochs=epochs, batch_size=plan.batch_size, quick=quick)
        parts += [
            "## Real ERA5",
            "",
            "The packaged ERA5 samples (recipes `era5-global-x*` and `era5-rhine-x*` of "
            "`climdown.study`): the global 1.5° TCWV field split "
            "by longitude (train 0-192E, val 192-276E, test 276-360E) and the Rhine 0.25° "
            "hourly TCW split by time (train 00-15 UTC, val 16-19, test 20-23). LR is the "
            f"area-weighted coarsening of the truth. CNNs (fast layout) trained {real_epochs} "
            f"epoch(s), batch {batch}; `skip bicubic` learns a "
            "correction to bicubic. RMSE is area-weighted over the test patches; 'vs bicubic' "
            "is the change relative to plain bicubic (negative = better).",
            "",
            format_real_table(real_rows, rd.sets),
            "",
        ]
    return "\n".join(parts)
