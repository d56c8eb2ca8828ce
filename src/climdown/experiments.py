"""The study's experiment table and its runner: stores -> training -> test scores -> Markdown.

``run_experiments`` reproduces the table of Harder et al. as run in the course study (E1-E12 and
T1, ``recipes/experiments.yaml``) plus real-ERA5 rows (``real_data``), from one command.
Checkpoints are chosen on ``val``; the reported scores are on ``test`` (the reference code
chose on test). Every number in the written table comes from this run; nothing is typed in.
A finished row leaves ``scores.json`` in its run folder, so a re-run resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from climdown._machine import machine_info
from climdown.errors import ConfigError, RecipeError

__all__ = [
    "Experiment",
    "load_experiments",
    "run_experiments",
    "evaluate_checkpoint",
    "machine_info",
    "format_table",
]

_ROOT = Path(__file__).resolve().parents[2]
#: Text below this line in a results file is kept when the command rewrites the tables.
NOTES_MARKER = "<!-- notes: kept on re-runs -->"
_RECIPES = _ROOT / "recipes"
_COLUMNS = ("MSE", "RMSE", "PSNR", "MAE", "SSIM", "neg_num", "CRPS", "mass_violation_rel")
_HEADERS = ("MSE", "RMSE", "PSNR", "MAE", "SSIM", "neg num", "CRPS", "mass viol. (rel)")
_QUICK = {"patch": 32, "train": 64, "val": 16, "test": 16, "steps": 2, "width": 8}


@dataclass(frozen=True)
class Experiment:
    """One row of the table: an id, a recipe (path), a model and a constraint."""

    id: str
    recipe: Path
    model: str
    constraint: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentPlan:
    """A whole experiments file: the rows plus the shared training settings."""

    experiments: tuple[Experiment, ...]
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    members: int = 10
    real_data: dict[str, Any] | None = None
    path: Path | None = None


def _check_keys(d: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise RecipeError(f"{where} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise RecipeError(
            f"unknown key(s) {unknown} in {where}; allowed keys are {sorted(allowed)}"
        )
    return d


def load_experiments(path: str | os.PathLike[str] | None = None) -> ExperimentPlan:
    """Read an experiments YAML file (``yaml.safe_load``); unknown keys are errors.

    Raises
    ------
    RecipeError
        Naming the offending key or entry and the fix.
    """
    path = Path(path) if path is not None else _RECIPES / "experiments.yaml"
    if not path.is_file():
        raise RecipeError(f"experiments file {str(path)!r} not found")
    raw = _check_keys(
        yaml.safe_load(path.read_text()) or {},
        {"epochs", "batch_size", "lr", "members", "experiments", "real_data"},
        str(path),
    )
    rows = []
    seen: set[str] = set()
    for i, entry in enumerate(raw.get("experiments") or []):
        e = _check_keys(
            entry, {"id", "recipe", "model", "constraint", "options"}, f"experiments[{i}]"
        )
        missing = {"id", "recipe", "model", "constraint"} - set(e)
        if missing:
            raise RecipeError(f"experiments[{i}] lacks {sorted(missing)}")
        if e["id"] in seen:
            raise RecipeError(f"experiments[{i}]: duplicate id {e['id']!r}")
        seen.add(str(e["id"]))
        recipe = (path.parent / e["recipe"]).resolve()
        if not recipe.is_file():
            raise RecipeError(f"experiments[{i}] ({e['id']}): recipe {str(recipe)!r} not found")
        rows.append(
            Experiment(
                str(e["id"]),
                recipe,
                str(e["model"]),
                str(e["constraint"]),
                dict(e.get("options") or {}),
            )
        )
    if not rows and not raw.get("real_data"):
        raise RecipeError(f"{path} lists no experiments")
    return ExperimentPlan(
        tuple(rows),
        epochs=int(raw.get("epochs", 20)),
        batch_size=int(raw.get("batch_size", 64)),
        lr=float(raw.get("lr", 1e-3)),
        members=int(raw.get("members", 10)),
        real_data=raw.get("real_data"),
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
    splits = {k: dict(v) for k, v in r["splits"].items()}
    for name in splits:
        splits[name]["samples"] = _QUICK.get(name, 16)
    r["splits"] = splits
    r["chunks"] = 16
    r["name"] = f"{r.get('name', 'store')}-quick"
    return r


def _with_test_split(raw: dict[str, Any]) -> dict[str, Any]:
    if "test" in raw["splits"]:
        return raw
    raise RecipeError(
        f"recipe {raw.get('name')!r} has no 'test' split: experiments choose checkpoints on "
        "'val' and report on 'test'; add splits.test (a later time range) to the recipe"
    )


def _store_for(recipe_path: Path, out: Path, quick: bool, progress: bool) -> Path:
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store

    raw = yaml.safe_load(recipe_path.read_text())
    raw = _quick_recipe(raw) if quick else dict(raw)
    raw = _with_test_split(raw)
    raw["output"] = str(out / "stores" / f"{raw['name']}.zarr")
    return build_store(load_recipe(raw), progress=progress)


def _scores_path(run: Path) -> Path:
    return run / "scores.json"


def cached_row(run: Path, settings: dict[str, Any], compute: Any) -> dict[str, Any]:
    """The row saved in ``run/scores.json`` if its ``settings`` match; else ``compute()`` it.

    This is what makes a re-run resume: finished rows are read back, not retrained.
    """
    done = _scores_path(run)
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("settings") == settings:
            return prev
    row = {**compute(), "settings": settings}
    run.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=1))
    return row


def train_and_score(
    store: Path,
    model: str,
    constraint: str,
    run: Path,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    device: str = "auto",
    quick: bool = False,
    options: dict[str, Any] | None = None,
    members: int = 10,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``model`` + ``constraint`` on the store's test split, training it first if it has
    weights (the checkpoint chosen on val is the one scored). ``quick``: narrow, 2 steps/epoch."""
    from climdown.checkpoint import load_checkpoint
    from climdown.nn.models import get_model
    from climdown.train import evaluate_model, train

    t0 = time.perf_counter()
    net = get_model(model, factor=_factor_of(store), constraint=constraint)
    row: dict[str, Any] = {}
    if net.n_parameters:
        opts = dict(options or {})
        if quick:
            opts.setdefault("width", _QUICK["width"])
        summary = train(
            store,
            model,
            constraint,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            device=device,
            out=run,
            max_steps=_QUICK["steps"] if quick else None,
            model_options=opts,
            progress=progress,
        )
        net, _ = load_checkpoint(summary["best"], device="cpu")
        row.update(best_epoch=summary["best_epoch"], n_parameters=summary["n_parameters"])
    row["scores"] = evaluate_model(net, store, "test", members=members, device=device)
    row["seconds"] = time.perf_counter() - t0
    return row


def _run_one(
    exp: Experiment,
    plan: ExperimentPlan,
    store: Path,
    run: Path,
    *,
    epochs: int,
    quick: bool,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    settings = {
        "epochs": epochs,
        "quick": quick,
        "model": exp.model,
        "constraint": exp.constraint,
        "options": exp.options,
        "store": str(store),
    }
    head = {
        "id": exp.id,
        "data": _data_name(store),
        "model": exp.model,
        "constraint": exp.constraint,
    }
    return cached_row(
        run,
        settings,
        lambda: {
            **head,
            **train_and_score(
                store,
                exp.model,
                exp.constraint,
                run,
                epochs=epochs,
                batch_size=plan.batch_size,
                lr=plan.lr,
                device=device,
                quick=quick,
                options=exp.options,
                members=plan.members,
                progress=progress,
            ),
        },
    )


def _data_name(store: Path) -> str:
    return Path(store).stem.upper()


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "–"
    if key == "neg_num":
        return f"{int(value)}"
    if key == "mass_violation_rel":
        return f"{value:.1e}"
    if key in ("MSE",) and abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}" if key != "PSNR" else f"{value:.2f}"


def format_table(rows: list[dict[str, Any]], *, label: str = "id") -> str:
    """Markdown table of scored rows (columns MSE, RMSE, PSNR, MAE, SSIM, neg num, CRPS, mass)."""
    head = f"| {label} | data | model | constraint | " + " | ".join(_HEADERS) + " |"
    lines = [head, "|" + "---|" * (4 + len(_HEADERS))]
    for r in rows:
        s = r["scores"]
        cells = [_fmt(s.get(k), k) for k in _COLUMNS]
        lines.append(
            f"| {r.get(label, '')} | {r['data']} | {r['model']} | {r['constraint']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


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
    config : path, optional
        Experiments YAML; default ``recipes/experiments.yaml``.
    epochs : int, optional
        Override the file's epochs (``--quick`` defaults to 1).
    quick : bool
        Tiny stores and two steps per epoch: the whole table in a few minutes (CI).
    out : path
        Folder for stores and runs (``out/stores``, ``out/runs/ID``).
    results : path, optional
        Markdown file to write; default ``out/results.md``.
    device : str
        Torch device or ``"auto"``.
    only : list of str, optional
        Run only these ids (``real`` selects the real-data rows).

    Returns
    -------
    str
        The Markdown document that was written.
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
        print(f"[{exp.id}] {exp.model} + {exp.constraint} on {stores[exp.recipe].name}")
        rows.append(
            _run_one(
                exp,
                plan,
                stores[exp.recipe],
                out / "runs" / exp.id,
                epochs=epochs,
                quick=quick,
                device=device,
                progress=progress,
            )
        )
    rows += _baseline_rows(stores.values(), out / "runs", members=plan.members, device=device)
    real_rows: list[dict[str, Any]] = []
    if plan.real_data and (wanted is None or "REAL" in wanted):
        from climdown.realdata import run_real_data

        real_epochs = 1 if quick else int(plan.real_data.get("epochs", epochs))
        real_rows = run_real_data(
            plan.real_data,
            out=out / "real",
            epochs=real_epochs,
            quick=quick,
            device=device,
            progress=progress,
            batch_size=plan.batch_size,
            lr=plan.lr,
        )
    doc = _document(
        rows, real_rows, plan, epochs=epochs, quick=quick, given_epochs=given_epochs, only=only
    )
    path = Path(results) if results is not None else out / "results.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and NOTES_MARKER in path.read_text():
        # hand-written discussion below the marker survives a re-run; the tables do not
        doc = doc.rstrip("\n") + "\n\n" + NOTES_MARKER + path.read_text().split(NOTES_MARKER, 1)[1]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc)
    os.replace(tmp, path)
    return doc


def _baseline_rows(stores: Any, runs: Path, *, members: int, device: str) -> list[dict[str, Any]]:
    """Bicubic (none and softmax) on each store's test split: the bar every model must clear."""
    rows = []
    for store in stores:
        for constraint in ("none", "softmax"):
            run = runs / f"bicubic-{Path(store).stem}-{constraint}"
            head = {
                "id": "baseline",
                "data": _data_name(store),
                "model": "bicubic",
                "constraint": constraint,
            }
            rows.append(
                cached_row(
                    run,
                    {"baseline": "bicubic", "constraint": constraint, "store": str(store)},
                    lambda run=run, head=head, c=constraint, st=store: {
                        **head,
                        **train_and_score(
                            st,
                            "bicubic",
                            c,
                            run,
                            epochs=0,
                            batch_size=64,
                            lr=0.0,
                            device=device,
                            quick=False,
                            members=members,
                        ),
                    },
                )
            )
    return rows


def _factor_of(store: Path) -> int:
    from climdown.data.store import store_info

    return int(store_info(store)["factor"])


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
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
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
    if real_rows:
        from climdown.realdata import format_real_table

        rd = plan.real_data or {}
        real_epochs = 1 if quick else int(rd.get("epochs", epochs))
        parts += [
            "## Real ERA5",
            "",
            "The packaged ERA5 samples (`climdown.realdata`): the global 1.5° TCWV field split "
            "by longitude (train 0-192E, val 192-276E, test 276-360E) and the Rhine 0.25° "
            "hourly TCW split by time (train 00-15 UTC, val 16-19, test 20-23). LR is the "
            f"area-weighted coarsening of the truth. CNNs (fast layout) trained {real_epochs} "
            f"epoch(s), batch {rd.get('batch_size', plan.batch_size)}; `skip bicubic` learns a "
            "correction to bicubic. RMSE is area-weighted over the test patches; 'vs bicubic' "
            "is the change relative to plain bicubic (negative = better).",
            "",
            format_real_table(real_rows),
            "",
        ]
    return "\n".join(parts)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    split: str = "val",
    out: str | os.PathLike[str] | None = None,
    device: str = "auto",
    members: int = 10,
) -> str:
    """Score a checkpoint on a store split beside the bicubic and nearest baselines.

    Writes ``metrics.csv`` and ``metrics.md`` to ``out`` when given; returns the Markdown.

    Raises
    ------
    CheckpointError
        If the checkpoint's factor or variable is not the store's.
    """
    from climdown.checkpoint import load_checkpoint
    from climdown.data.store import store_info
    from climdown.nn.models import get_model
    from climdown.train import evaluate_model

    info = store_info(store)
    model, _ = load_checkpoint(
        checkpoint,
        device="cpu",
        expect_factor=int(info["factor"]),
        expect_variable=info.get("variable"),
    )
    factor = int(info["factor"])
    data = _data_name(Path(store))
    rows = [
        {
            "name": Path(checkpoint).name,
            "data": data,
            "model": model.config["name"],
            "constraint": model.config["constraint"],
            "scores": evaluate_model(model, store, split, members=members, device=device),
        }
    ]
    # plain baselines, and bicubic with the model's own constraint (the fair bar for a
    # conserving model: the constraint alone already improves on plain bicubic)
    baselines = [("bicubic", "none"), ("nearest", "none")]
    if model.config["constraint"] != "none":
        baselines.append(("bicubic", model.config["constraint"]))
    for name, constraint in baselines:
        base = get_model(name, factor=factor, constraint=constraint)
        rows.append(
            {
                "name": name if constraint == "none" else f"{name} + {constraint}",
                "data": data,
                "model": name,
                "constraint": constraint,
                "scores": evaluate_model(base, store, split, device=device),
            }
        )
    table = format_table(rows, label="name")
    if out is not None:
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        (outp / "metrics.md").write_text(table + "\n")
        keys = sorted({k for r in rows for k in r["scores"]})
        lines = [",".join(["name", "model", "constraint", *keys])]
        for r in rows:
            lines.append(
                ",".join(
                    [
                        r["name"],
                        r["model"],
                        r["constraint"],
                        *(str(r["scores"].get(k, "")) for k in keys),
                    ]
                )
            )
        (outp / "metrics.csv").write_text("\n".join(lines) + "\n")
    return table
