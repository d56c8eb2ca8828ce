"""The study's experiment table: ``experiments.yaml`` -> stores -> rows -> Markdown.

:func:`run_experiments` reproduces the table of Harder et al. as run in the course study (E1-E12
and T1, the packaged ``recipes/experiments.yaml``) plus real-ERA5 rows
(:mod:`climdown.study.realdata`), from one command, ``climdown experiments``. Checkpoints are
chosen on ``val``; the reported scores are on ``test`` (the reference code chose on test).
Every number in the written table comes from this run; nothing is typed in. A finished row
leaves ``scores.json`` in its run folder (:func:`climdown.study.runner.run_row`), so a re-run
resumes where it stopped. Beside the results page a ledger (``results.rows.json`` for
``results.md``) keeps every finished row with the settings that made it; a run into an out
folder that lacks them (a new machine, a deleted folder) restores them from it first, so the
page can be rewritten, and the table finished, without retraining what is done. Each row joins
the ledger as soon as it is finished, not when the command ends.

Each row is trained with ``seeds`` seeds (the file's, or ``--seeds``); the main table shows
seed 0, a second table the mean and spread over the seeds, and the findings section
(:mod:`climdown.study.findings`) sets the report's claims against them. Rows with ``layout:
reference`` (the reference code's architectures, much slower on CPU) run only when asked for
(``--layout reference`` or ``all``, or by id in ``--only``). ``finished_only`` writes the
document from the rows already finished in ``out`` and lists the others, with the epoch
times measured in their run folders, instead of training them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from climdown import validate
from climdown._machine import machine_info
from climdown.errors import BusyError, ConfigError, RecipeError
from climdown.locks import holder, lock_beside
from climdown.study import read_recipe, recipe_path
from climdown.study.realdata import RealData, format_real_table, run_real_data
from climdown.study.runner import (
    NOTES_MARKER,
    check_ledger,
    check_replaceable,
    epoch_seconds,
    finished_row,
    ledger_path,
    restore_ledger,
    run_row,
    save_ledger,
    write_markdown,
)

__all__ = [
    "Experiment",
    "ExperimentPlan",
    "load_experiments",
    "run_experiments",
    "NOTES_MARKER",
    "LAYOUTS",
]

#: ``--quick`` stores: HR patch size (at least 4 LR cells) and samples per split.
_QUICK = {"patch": 32, "train": 64, "val": 16, "test": 16}
_TOP_KEYS = ("epochs", "batch_size", "lr", "members", "seeds", "experiments", "real_data")
_ROW_KEYS = (
    "id",
    "recipe",
    "model",
    "constraint",
    "options",
    "layout",
    "training",
    "seeds",
    "batch_size",
)
#: :class:`climdown.train.TrainConfig` fields a row may set under ``training:``.
_TRAINING_KEYS = (
    "adversarial_weight",
    "loss",
    "crps_members",
    "select",
    "precision",
    "soft_lambda",
)
#: ``--layout`` choices: the rows of the default (fast) layouts, the reference code's, or both.
LAYOUTS = ("default", "reference", "all")


@dataclass(frozen=True)
class Experiment:
    """One row of the table: an id, a recipe (path), a model, a constraint, model options.

    ``layout`` is the model's ``layout`` option (``default`` or ``reference``), ``training``
    extra :class:`climdown.train.TrainConfig` fields (``{loss: crps}``), ``seeds`` the row's
    own number of seeds and ``batch_size`` its own batch (None: the plan's).
    """

    id: str
    recipe: Path
    model: str
    constraint: str
    options: Mapping[str, Any] = field(default_factory=dict)
    layout: str = "default"
    training: Mapping[str, Any] = field(default_factory=dict)
    seeds: int | None = None
    batch_size: int | None = None

    def model_options(self) -> dict[str, Any]:
        """``options`` plus ``layout`` (absent for the default layout, as rows before it)."""
        return {**self.options, **({"layout": self.layout} if self.layout != "default" else {})}

    @property
    def label(self) -> str:
        """The model column: ``gan``, ``cnn (reference)``, ``gan (loss crps)``."""
        extra = [self.layout] if self.layout != "default" else []
        extra += [f"{k.replace('_', ' ')} {v}" for k, v in self.training.items()]
        return f"{self.model} ({', '.join(extra)})" if extra else self.model


@dataclass(frozen=True)
class ExperimentPlan:
    """A whole experiments file: the rows plus the shared training settings."""

    experiments: tuple[Experiment, ...]
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    members: int = 10
    seeds: int = 1
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
        layout = str(e.get("layout", "default"))
        if layout not in LAYOUTS[:2]:
            raise RecipeError(f"{where}: layout {layout!r}; use 'default' or 'reference'")
        training = validate.check_keys(
            e.get("training") or {}, _TRAINING_KEYS, f"{where}.training", error=RecipeError
        )
        try:  # the row's training settings are checked now, not after the rows before it
            from climdown.train import TrainConfig

            TrainConfig(model=str(e["model"]), constraint=str(e["constraint"]), **training)
        except ConfigError as exc:
            raise RecipeError(f"{where}: {exc}") from None
        rows.append(
            Experiment(
                str(e["id"]),
                recipe,
                str(e["model"]),
                str(e["constraint"]),
                dict(e.get("options") or {}),
                layout=layout,
                training=dict(training),
                seeds=None
                if e.get("seeds") is None
                else validate.positive_int(e["seeds"], f"{where}.seeds", error=RecipeError),
                batch_size=None
                if e.get("batch_size") is None
                else validate.positive_int(
                    e["batch_size"], f"{where}.batch_size", error=RecipeError
                ),
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
        seeds=validate.positive_int(raw.get("seeds", 1), "seeds", error=RecipeError),
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
    r["splits"] = {  # stride-sampled (real) splits keep every patch: they are small
        k: {**v, "samples": _QUICK.get(k, 16)} if "samples" in v else v
        for k, v in r["splits"].items()
    }
    r["chunks"] = 16
    r["name"] = f"{r.get('name', 'store')}-quick"
    return r


def _store_for(recipe: Path, out: Path, quick: bool, progress: bool, build: bool = True) -> Path:
    """Build (or find) the store of ``recipe`` under ``out/stores``; shrunk when ``quick``.

    ``build=False`` only names the store's path (it may not exist).
    """
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
    if not build:
        return Path(raw["output"])
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
    seeds: int | None = None,
    layout: str = "default",
    finished_only: bool = False,
    time_steps: int | None = None,
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
        Folder for stores and runs (``out/stores``, ``out/runs/ID`` for seed 0 and
        ``out/runs/ID-seedS`` for the others, ``out/real``).
    results : path, optional
        Markdown file to write; default ``out/results.md``. Text below
        :data:`~climdown.study.runner.NOTES_MARKER` in an existing file is kept. Its ledger
        (:func:`~climdown.study.runner.ledger_path`) is read first (rows missing from ``out``
        are restored from it) and updated after.
    device : str
        Torch device or ``"auto"``.
    only : list of str, optional
        Run only these ids, whatever their layout (``real`` selects the real-data rows).
    seeds : int, optional
        Seeds per row (0 .. seeds-1), overriding the file's and the rows' own (``--quick``
        defaults to 1).
    layout : str
        Without ``only``: the rows of the ``default`` layouts, the ``reference`` ones, or
        ``all``.
    finished_only : bool
        Train nothing: write the rows already finished in ``out`` and list the others (with
        the epoch times measured in their run folders) as not run.
    time_steps : int, optional
        Time each chosen row (``only``, ``layout``) this document lacks that has no epoch
        measured yet (in its run folders or its ledger entry): train it for this
        many steps of one epoch (``out/timing/ID``, kept) so the "Not run" table can give an
        epoch time (per step x steps per epoch + the validation pass) and an estimate.
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
        For an unknown id in ``only`` or an unknown ``layout``.
    """
    plan = load_experiments(config)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    given_epochs = epochs
    epochs = int(epochs if epochs is not None else (1 if quick else plan.epochs))
    if seeds is not None:
        seeds = validate.positive_int(seeds, "seeds")
    if time_steps is not None:  # checked before hours of training, not after them
        time_steps = validate.positive_int(time_steps, "time_steps", example="--time-steps 4")
    out = Path(out)
    # refuse a results path that is not ours before hours of training, not after
    results_path = check_replaceable(Path(results) if results is not None else out / "results.md")
    ledger = check_ledger(ledger_path(results_path))
    restored = restore_ledger(out, ledger)
    if restored and progress:
        print(f"{restored} finished row(s) restored into {out} from {ledger}")
    wanted = None if not only else {s.upper() for s in only}
    unknown = (wanted or set()) - {e.id.upper() for e in plan.experiments} - {"REAL"}
    if unknown:
        raise ConfigError(f"unknown experiment id(s) {sorted(unknown)} for --only")
    chosen = [
        e
        for e in plan.experiments
        if (e.id.upper() in wanted if wanted is not None else layout in ("all", e.layout))
    ]
    rows: list[dict[str, Any]] = []
    missing: list[tuple[Experiment, int]] = []
    stores: dict[Path, Path] = {}
    for exp in chosen:
        if exp.recipe not in stores:
            stores[exp.recipe] = _store_for(
                exp.recipe, out, quick, progress, build=not finished_only
            )
        store = stores[exp.recipe]
        for seed in range(_seeds_of(exp, plan, seeds, quick)):
            head = {"id": exp.id, "data": _data_name(store), "model": exp.label}
            settings = dict(
                epochs=epochs,
                batch_size=exp.batch_size or plan.batch_size,
                lr=plan.lr,
                options=exp.model_options(),
                training=exp.training,
                seed=seed,
                members=plan.members,
                quick=quick,
                device=device,
                progress=progress,
            )
            run = _run_dir(out, exp.id, seed)
            if finished_only:
                row = finished_row(run, store, exp.model, exp.constraint, **settings)
                if row is None:
                    missing.append((exp, seed))
                    continue
            else:
                print(f"[{exp.id} seed {seed}] {exp.label} + {exp.constraint} on {store.name}")
                try:
                    row = run_row(
                        run,
                        {**head, "constraint": exp.constraint},
                        store,
                        exp.model,
                        exp.constraint,
                        wait=False,
                        **settings,
                    )
                except BusyError as exc:  # another `climdown experiments` is on this row
                    print(f"[{exp.id} seed {seed}] skipped: {exc}")
                    missing.append((exp, seed))
                    continue
                # into the ledger at once: a killed command or a lost machine keeps the row
                save_ledger(out, ledger)
            rows.append({**row, **head, "seed": seed, "epoch_s": _epoch_s(run, row)})
    baselines = _baseline_rows(stores.values(), out / "runs", members=plan.members, device=device)
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
            finished_only=finished_only,
        )
    not_run = _not_run(plan, chosen, missing, out, epochs, seeds, quick)
    if time_steps:
        # the chosen rows (--only, --layout) whose epoch time nothing measured yet
        untimed = {r["id"] for r in not_run if r["epoch_s"] is None}
        todo = [e for e in chosen if e.id in untimed]
        built: set[Path] = set()
        for exp in todo:
            if exp.recipe not in built:  # --finished-only only named the stores; time on built ones
                stores[exp.recipe] = _store_for(exp.recipe, out, quick, progress)
                built.add(exp.recipe)
            _time_row(exp, stores[exp.recipe], out, time_steps, plan, device)
        not_run = _not_run(plan, chosen, missing, out, epochs, seeds, quick)
    doc = _document(
        rows,
        baselines,
        real_rows,
        plan,
        not_run,
        epochs=epochs,
        quick=quick,
        command=_command(given_epochs, quick, only, seeds, layout, finished_only, time_steps),
    )
    write_markdown(results_path, doc)
    save_ledger(out, ledger)
    return doc


def _epoch_s(run: Path, row: dict[str, Any]) -> float | None:
    """The row's epoch time: measured in its run folder, else the one its ledger entry kept."""
    measured = epoch_seconds([run])
    return measured if measured is not None else row.get("epoch_s")


def _seeds_of(exp: Experiment, plan: ExperimentPlan, seeds: int | None, quick: bool) -> int:
    """Seeds of a row: ``--seeds``, else the row's own, else the plan's (``quick``: 1)."""
    if seeds is not None:
        return seeds
    if quick:
        return 1
    return exp.seeds if exp.seeds is not None else plan.seeds


def _run_dir(out: Path, exp_id: str, seed: int) -> Path:
    """``out/runs/ID`` for seed 0 (the folder of single-seed tables), ``ID-seedS`` after."""
    return out / "runs" / (exp_id if seed == 0 else f"{exp_id}-seed{seed}")


def _time_row(
    exp: Experiment, store: Path, out: Path, steps: int, plan: ExperimentPlan, device: str
) -> None:
    """Train ``exp`` for ``steps`` steps of one epoch in ``out/timing/ID`` (once), to time it."""
    from climdown.train import train

    run = out / "timing" / exp.id
    if (run / "metrics.jsonl").is_file():
        return  # timed already
    print(f"[{exp.id}] timing {steps} step(s) of {exp.label} + {exp.constraint}")
    train(
        store,
        model=exp.model,
        constraint=exp.constraint,
        epochs=1,
        max_steps=steps,
        batch_size=exp.batch_size or plan.batch_size,
        lr=plan.lr,
        model_options=exp.model_options(),
        **dict(exp.training),
        out=run,
        device=device,
        progress=False,
        resume=False,
    )


def _timed_epoch(out: Path, exp_id: str, batch_size: int) -> float | None:
    """Epoch time (s) estimated from a timing run: per step x steps per epoch + validation.

    The first step of a run carries one-off costs (the loader reading the store, first-call
    overheads), often more than a few steps' worth: with two or more timed steps and a log that
    times the first step apart (``first_step_s``), the steps after it give the per-step time
    and the first counts once, else every step is taken as the mean.
    """
    import math

    from climdown.checkpoint import read_meta
    from climdown.data.store import store_info

    log = out / "timing" / exp_id / "metrics.jsonl"
    ckpt = out / "timing" / exp_id / "last.pt"
    if not log.is_file() or not ckpt.is_file():
        return None
    store = str(read_meta(ckpt)["store"])
    rec = json.loads(log.read_text().splitlines()[-1])
    n_train = int(store_info(store)["samples"]["train"])
    steps, train = int(rec["step"]), float(rec["train_time_s"])
    validation = float(rec["time_s"]) - train
    per_epoch = math.ceil(n_train / batch_size)
    first = rec.get("first_step_s")
    if first is not None and steps >= 2:
        per_step = (train - float(first)) / (steps - 1)
        return float(first) + per_step * (per_epoch - 1) + validation
    return train / max(steps, 1) * per_epoch + validation


def _not_run(
    plan: ExperimentPlan,
    chosen: list[Experiment],
    missing: list[tuple[Experiment, int]],
    out: Path,
    epochs: int,
    seeds: int | None,
    quick: bool,
) -> list[dict[str, Any]]:
    """Rows of the plan (or seeds of chosen rows) this document has no scores for, and why."""
    left: list[dict[str, Any]] = []
    for exp in plan.experiments:
        n = _seeds_of(exp, plan, seeds, quick)
        if exp in chosen:
            lacking = [s for e, s in missing if e is exp]
            started = [p for p in (_progress(out, exp.id, s, epochs) for s in lacking) if p]
            idle = [str(s) for s in lacking if not _progress(out, exp.id, s, epochs)]
            idle_text = f"not started: seed{'s' if len(idle) > 1 else ''} {', '.join(idle)}"
            why = "; ".join(started + ([idle_text] if idle else []))
        else:
            lacking = list(range(n))
            why = (
                "reference layout: opt-in (--layout reference)"
                if exp.layout == "reference"
                else "not selected (--only)"
            )
        if not lacking:
            continue
        per_epoch = epoch_seconds(_run_dir(out, exp.id, s) for s in range(max(n, 1)))
        how = "whole epochs"
        if per_epoch is None:
            per_epoch = _timed_epoch(out, exp.id, exp.batch_size or plan.batch_size)
            how = "timed steps"
        left.append(
            {
                "id": exp.id,
                "model": exp.label,
                "constraint": exp.constraint,
                "seeds": f"{n - len(lacking)} of {n}",
                "why": why,
                "epoch_s": per_epoch,
                "how": how,
                "estimate_h": None
                if per_epoch is None
                else per_epoch * epochs * len(lacking) / 3600.0,
            }
        )
    return left


def _progress(out: Path, exp_id: str, seed: int, epochs: int) -> str:
    """What a seed's run folder holds of an unfinished row ("" when it was not started)."""
    run = _run_dir(out, exp_id, seed)
    log = run / "metrics.jsonl"
    done = len([ln for ln in log.read_text().splitlines() if ln.strip()]) if log.is_file() else 0
    busy = holder(lock_beside(run))
    if busy is not None:
        return f"seed {seed}: {done} of {epochs} epochs, training now in {run.name}/ ({busy})"
    if not done:
        return ""
    return f"seed {seed}: {done} of {epochs} epochs, resumes from {run.name}/"


def _command(
    epochs: int | None,
    quick: bool,
    only: list[str] | None,
    seeds: int | None,
    layout: str,
    finished_only: bool,
    time_steps: int | None = None,
) -> str:
    """The ``climdown experiments`` command line that makes this document."""
    parts = ["climdown experiments"]
    parts += ["--quick"] if quick else []
    parts += [] if epochs is None else [f"--epochs {epochs}"]
    parts += [] if seeds is None else [f"--seeds {seeds}"]
    parts += [] if layout == "default" else [f"--layout {layout}"]
    parts += ["--only " + " ".join(only)] if only else []
    parts += ["--finished-only"] if finished_only else []
    parts += [f"--time-steps {time_steps}"] if time_steps else []
    return " ".join(parts)


def _baseline_rows(
    stores: Iterable[Path], runs: Path, *, members: int, device: str
) -> list[dict[str, Any]]:
    """Bicubic (none and softmax) on each store's test split: the bar every model must clear.

    A store that is not (or no longer) there gives the baseline rows finished for it, e.g.
    restored from a ledger, and is not rebuilt for them.
    """
    rows = []
    for store in stores:
        for constraint in ("none", "softmax"):
            head = {"id": "baseline", "data": _data_name(store)}
            run = runs / f"bicubic-{Path(store).stem}-{constraint}"
            row: dict[str, Any] | None
            if Path(store).exists():
                row = run_row(
                    run,
                    {**head, "model": "bicubic", "constraint": constraint},
                    store,
                    "bicubic",
                    constraint,
                    members=members,
                    device=device,
                )
            else:
                row = finished_row(
                    run, store, "bicubic", constraint, members=members, device=device
                )
                if row is None:
                    continue
            rows.append(row)
    return rows


def _mean_sd(values: list[float], digits: str = ".4g") -> str:
    """``mean ± sd`` over seeds (sd with n - 1), or the one value."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{digits}}"
    return f"{mean:{digits}} ± {statistics.stdev(values):.2g}"


def _machines(
    rows: list[dict[str, Any]], baselines: list[dict[str, Any]], real_rows: list[dict[str, Any]]
) -> list[str]:
    """Where the rows were made, machine by machine (rows read back from a ledger may come
    from several), and where this page was written."""
    where: dict[str, list[str]] = {}
    for r in rows:
        seed = int(r.get("seed", 0))
        where.setdefault(r.get("machine", ""), []).append(
            r["id"] if seed == 0 else f"{r['id']} seed {seed}"
        )
    counted = {"bicubic bar": baselines, "real-ERA5 row": real_rows}  # counted, not named
    for kind, group in counted.items():
        for r in group:
            where.setdefault(r.get("machine", ""), []).append(kind)
    lines = [f"Page written on: {machine_info()}."]
    if not where:
        return lines
    lines += ["", "Rows made on (training and scoring):", ""]
    for machine, labels in sorted(where.items(), key=lambda kv: (kv[0] == "", kv[0])):
        named = [x for x in labels if x not in counted]
        counts = [
            f"{n} {kind}s" if n > 1 else f"1 {kind}"
            for kind in counted
            if (n := labels.count(kind))
        ]
        lead = machine or "not recorded (rows made before climdown recorded their machine)"
        lines.append(f"- {lead}: {', '.join(named + counts)}")
    return lines


def _by_id(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by id, in first-seen order, each group sorted by seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["id"], []).append(r)
    return {k: sorted(v, key=lambda r: r.get("seed", 0)) for k, v in groups.items()}


def _seed_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    from climdown.evaluate import markdown_table

    def col(rs: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r["scores"][key]) for r in rs if r["scores"].get(key) is not None]

    cells = []
    for rid, rs in groups.items():
        first = rs[0]
        epoch_s = [r["epoch_s"] for r in rs if r.get("epoch_s") is not None]
        cells.append(
            (
                rid,
                first["data"],
                first["model"],
                first["constraint"],
                len(rs),
                _mean_sd(col(rs, "RMSE")),
                _mean_sd(col(rs, "MAE")),
                _mean_sd(col(rs, "SSIM")),
                max(int(r["scores"]["neg_num"]) for r in rs),
                _mean_sd(col(rs, "CRPS")),
                f"{statistics.fmean(epoch_s):.1f}" if epoch_s else "–",
                f"{statistics.fmean(float(r['seconds']) for r in rs) / 60:.1f}",
            )
        )
    return markdown_table(
        (
            "id",
            "data",
            "model",
            "constraint",
            "seeds",
            "RMSE",
            "MAE",
            "SSIM",
            "neg num (max)",
            "CRPS",
            "s / epoch",
            "min / seed",
        ),
        cells,
    )


def _ensemble_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    from climdown.evaluate import markdown_table

    cells = []
    for rid, rs in groups.items():
        if not any("spread_skill" in r["scores"] for r in rs):
            continue
        ens = [r for r in rs if "spread_skill" in r["scores"]]

        def col(key: str, ens: list[dict[str, Any]] = ens) -> list[float]:
            return [float(r["scores"][key]) for r in ens]

        hist = [int(c) for c in ens[0]["scores"]["rank_histogram"]]
        total = sum(hist) or 1
        cells.append(
            (
                rid,
                ens[0]["data"],
                ens[0]["model"],
                ens[0]["constraint"],
                len(ens),
                _mean_sd(col("RMSE")),
                _mean_sd(col("RMSE_ens_mean")),
                _mean_sd(col("spread")),
                _mean_sd(col("spread_skill"), ".3g"),
                _mean_sd(col("CRPS")),
                _mean_sd(col("MAE")),
                " ".join(f"{100 * c / total:.0f}" for c in hist),
            )
        )
    return markdown_table(
        (
            "id",
            "data",
            "model",
            "constraint",
            "seeds",
            "RMSE member 0",
            "RMSE ens. mean",
            "spread",
            "spread / skill",
            "CRPS",
            "MAE member 0",
            "rank histogram, seed 0 (% per rank 0..m)",
        ),
        cells,
    )


def _not_run_table(left: list[dict[str, Any]], epochs: int) -> str:
    from climdown.evaluate import markdown_table

    return markdown_table(
        ("id", "model", "constraint", "seeds done", "why not", "measured s / epoch", "estimate"),
        [
            (
                r["id"],
                r["model"],
                r["constraint"],
                r["seeds"],
                r["why"],
                "not measured" if r["epoch_s"] is None else f"{r['epoch_s']:.0f} ({r['how']})",
                "–"
                if r["estimate_h"] is None
                else f"{r['estimate_h']:.1f} h for the missing seeds at {epochs} epochs",
            )
            for r in left
        ],
    )


def _document(
    rows: list[dict[str, Any]],
    baselines: list[dict[str, Any]],
    real_rows: list[dict[str, Any]],
    plan: ExperimentPlan,
    not_run: list[dict[str, Any]],
    *,
    epochs: int,
    quick: bool,
    command: str,
) -> str:
    from climdown.evaluate import format_table
    from climdown.study.findings import format_findings, load_report, settle

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (CI-sized stores, 2 steps per epoch)" if quick else "full"
    groups = _by_id(rows)
    parts = [
        "# Results",
        "",
        f"Generated by `{command}` on {stamp}; mode: {mode}; {epochs} epoch(s), batch "
        f"{plan.batch_size}, Adam lr {plan.lr}.",
        "",
        *_machines(rows, baselines, real_rows),
        "",
        "Scores are on each store's `test` split (checkpoints chosen on `val`), in physical "
        "units (kg m-2), not the study's 0-100 scaling, so MSE/RMSE/MAE are not directly "
        "comparable with the study's table; PSNR uses the test set's truth range; mass "
        "violation is the largest area-weighted block error relative to the mean |LR|; CRPS "
        f"(standard ECDF estimator) over {plan.members} GAN members; a GAN's point scores are "
        "those of one member (member 0).",
        "",
    ]
    if rows or baselines:
        seed0 = [g[0] for g in groups.values()]
        parts += [
            "## The study's table (generated TCW fields)",
            "",
            "Seed 0 of each row (the next table has every seed).",
            "",
            format_table(seed0 + baselines),
            "",
        ]
    if rows:
        parts += [
            "## Seed noise",
            "",
            "Each row over the seeds that ran (weights, noise and shuffling seeded 0, 1, ...): "
            "mean ± standard deviation over seeds, on `test`. 's / epoch' is the measured wall "
            "time of a training epoch with its validation, 'min / seed' of a whole row "
            "(training and scoring), on the machine that made it (above), shared with other work.",
            "",
            _seed_table(groups),
            "",
        ]
        report = load_report()
        parts += [
            "## The report's findings, settled",
            "",
            "Each claim of the course study's report (its table and claims: "
            "`climdown/study/recipes/report.yaml`) against climdown's rows of the same ids, "
            "over every seed that ran (`climdown.study.findings`). The report's scores are "
            "on its 0-100 scaled data and climdown's in kg m-2, so the verdicts compare "
            "orderings, and the ratios stand beside each other. An ordering is *confirmed* "
            "only when every seed of one row beats every seed of the other, *refuted* when "
            "every seed says the opposite, and *inconclusive* when the seeds' ranges "
            "overlap or a row has one seed.",
            "",
            format_findings(
                settle(report, {k: [r["scores"] for r in v] for k, v in groups.items()})
            ),
            "",
        ]
        if any("spread_skill" in r["scores"] for r in rows):
            parts += [
                "## Ensembles",
                "",
                f"The GAN rows' {plan.members}-member ensembles on `test`: member 0's RMSE "
                "beside the RMSE of the ensemble mean; spread = sqrt((m+1)/m x mean "
                "variance over members) and spread / skill = spread / RMSE of the "
                "ensemble mean (1 for a reliable ensemble, below 1 overconfident, near 0 "
                "when the members are all alike); the rank histogram (seed 0) is the "
                "share of pixels whose truth falls below 0, 1, ... m members (flat when "
                "reliable; piled at both ends when the ensemble is too narrow). "
                "Rows with `loss crps` train the generator on the fair CRPS of 2 members "
                "per sample (or `crps members`) instead of the MSE of one "
                "(`TrainConfig(loss='crps')`); `adversarial weight` is the weight of the "
                "adversarial term where it is not the report's 0.01; `select val_crps_area` "
                "chose the checkpoint by the validation CRPS of `crps members` members "
                "instead of member 0's area-weighted RMSE.",
                "",
                _ensemble_table(groups),
                "",
            ]
    if not_run:
        parts += [
            "## Not run",
            "",
            "Rows of `experiments.yaml` (or seeds of them) this document has no scores for, "
            "and why. The time per epoch is measured in the row's run folders (whole "
            "epochs of any run of it), else estimated from a timing run (`--time-steps N`: "
            "N training steps; the first step, which carries the set-up, counts once and "
            "the steps after it give the time per step, x steps per epoch, + the validation "
            "pass it measured); the estimate is that time x epochs x missing seeds, on the "
            "machine that measured it (shared with other work, so an upper bound for a quiet one).",
            "",
            _not_run_table(not_run, epochs),
            "",
        ]
    if not real_rows and plan.real_data is not None:
        parts += [
            "## Real ERA5",
            "",
            "Not in this document: no real-ERA5 row was run or finished in this out folder "
            "(they run without `--only`, or with `--only real`).",
            "",
        ]
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
