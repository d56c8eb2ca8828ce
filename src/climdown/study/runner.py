"""One row of the study: train a model on a store, score it on test, cache it; Markdown out.

Every table the study writes (the experiment table, the real-ERA5 rows, the packaged defaults)
is built from rows made by :func:`run_row`: train ``model`` + ``constraint`` on the store's
``train`` split (checkpoint chosen on ``val``), score it on ``test`` with
:func:`climdown.evaluate.evaluate_model`, and keep the row in ``run/scores.json`` with the
settings that made it, so a re-run with the same settings reads it back instead of retraining.
:func:`climdown.evaluate.markdown_table` (the one Markdown table writer) and
:func:`write_markdown` write what the rows say.
"""

from __future__ import annotations

import inspect
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from climdown import validate
from climdown.errors import ConfigError
from climdown.locks import hold, lock_beside

__all__ = [
    "QUICK_STEPS",
    "QUICK_WIDTH",
    "NOTES_MARKER",
    "PAGE_MARKER",
    "cached_row",
    "saved_row",
    "finished_row",
    "train_and_score",
    "run_row",
    "check_replaceable",
    "write_markdown",
    "write_text_atomic",
    "LEDGER_KEY",
    "ledger_path",
    "check_ledger",
    "check_json",
    "save_ledger",
    "restore_ledger",
    "epoch_seconds",
]

#: ``quick`` rows train this many optimiser steps per epoch ...
QUICK_STEPS = 2
#: ... of a model this narrow (feature channels), unless the row sets its own width.
QUICK_WIDTH = 8
#: Text below this line in a Markdown file is kept when the study rewrites the file.
NOTES_MARKER = "<!-- notes: kept on re-runs -->"
#: First line of every page :func:`write_markdown` writes; a file is replaced only if it holds
#: this or :data:`NOTES_MARKER` (pages written before this marker existed).
PAGE_MARKER = (
    "<!-- written by climdown's study, which may replace this file above the notes marker -->"
)


def saved_row(run: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row saved in ``run/scores.json`` if it was made with ``settings``, else None."""
    done = Path(run) / "scores.json"
    settings = json.loads(json.dumps(dict(settings)))  # as they will read back
    if done.is_file():
        prev = json.loads(done.read_text())
        if prev.get("settings") == settings:
            return dict(prev)
    return None


def cached_row(
    run: Path,
    settings: Mapping[str, Any],
    compute: Callable[[], dict[str, Any]],
    *,
    wait: bool = True,
) -> dict[str, Any]:
    """The row saved in ``run/scores.json`` if its ``settings`` match; else ``compute()`` it.

    This is what makes a re-run resume: finished rows are read back, not retrained. The
    settings must be JSON-able; they are stored in the row as ``settings``. The row is computed
    holding the run folder's lock (:func:`climdown.locks.hold`): while another process computes
    it, this one waits and then reads its row back (``wait=True``), or raises
    :class:`~climdown.errors.BusyError` (``wait=False``: go on with other rows).
    """
    prev = saved_row(run, settings)
    if prev is not None:
        return prev
    Path(run).parent.mkdir(parents=True, exist_ok=True)
    # one process per row (beside the run folder: a row refused before training leaves no
    # folder; the trainer also holds its own lock inside it)
    with hold(lock_beside(run), f"run folder {str(run)!r}", wait=wait):
        prev = saved_row(run, settings)  # finished by another process meanwhile
        if prev is not None:
            return prev
        settings = json.loads(json.dumps(dict(settings)))
        row = {**compute(), "settings": settings}
        Path(run).mkdir(parents=True, exist_ok=True)
        # a killed run leaves no half row
        write_text_atomic(Path(run) / "scores.json", json.dumps(row, indent=1))
    return row


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def train_and_score(
    store: str | os.PathLike[str],
    model: str,
    constraint: str,
    run: str | os.PathLike[str],
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    options: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    seed: int = 0,
    augment: bool = False,
    patience: int | None = None,
    val: bool = False,
    members: int = 10,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Score ``model`` + ``constraint`` on the store's ``test`` split, training it first if it
    has weights (the checkpoint chosen on ``val`` is the one scored).

    Parameters
    ----------
    store : path
        A store with ``train``, ``val`` and ``test`` splits; without ``test`` (a final fit on
        all but the validation data), ``val`` must be True and the row has no ``scores``.
    model, constraint : str
        As for :func:`climdown.nn.models.get_model`; baselines (``bicubic``) are not trained.
    run : path
        Folder for the training run (log, checkpoints).
    epochs, batch_size, lr : int, int, float
        Training settings (Adam).
    options : mapping, optional
        Model options (``{"width": 32, "skip": "bicubic", "layout": "reference"}``).
    training : mapping, optional
        More :class:`climdown.train.TrainConfig` fields (``{"loss": "crps"}``,
        ``{"adversarial_weight": 1e-4}``, ``{"precision": "bf16"}``).
    seed, augment, patience : int, bool, int or None
        :class:`climdown.train.TrainConfig`'s (the checkpoint is chosen on ``val`` by the
        area-weighted RMSE).
    val : bool
        Also score the chosen model on ``val`` (``val_scores``): for choices that must not
        look at ``test``.
    members : int
        Ensemble size for CRPS of models that sample (the GAN).
    quick : bool
        :data:`QUICK_STEPS` steps per epoch of a :data:`QUICK_WIDTH`-channel model (CI).
    device : str
        Torch device or ``"auto"``.
    progress : bool
        Progress bars while training.
    resume : bool
        Continue an unfinished run in ``run`` (False: start afresh).

    Returns
    -------
    dict
        ``scores`` (:func:`climdown.evaluate.evaluate_model`, kg m-2), ``seconds`` (training
        and scoring), ``machine`` (where: CPU, cores, GPU, versions and the torch device
        type); for trained models also ``best_epoch``, ``n_parameters`` and
        ``checkpoint`` (the path of the scored checkpoint).
    """
    from climdown._machine import machine_info
    from climdown.checkpoint import load_checkpoint
    from climdown.data.store import store_info
    from climdown.evaluate import evaluate_model
    from climdown.nn.device import pick_device
    from climdown.nn.models import get_model
    from climdown.train import train

    t0 = time.perf_counter()
    info = store_info(store)
    factor = int(info["factor"])
    has_test = "test" in info["samples"]
    if not (has_test or val):
        raise ConfigError(
            f"store {store} has no test split to score on; pass val=True to score the "
            "validation split only (a final fit whose held-out scores come from another store)"
        )
    net = get_model(model, factor=factor, constraint=constraint)
    row: dict[str, Any] = {}
    if net.n_parameters:
        # a row scores the checkpoint its training chose: it needs at least one epoch
        epochs = validate.positive_int(epochs, "epochs")
        opts = dict(options or {})
        if quick:
            opts.setdefault("width", QUICK_WIDTH)
        summary = train(
            store,
            model=model,
            constraint=constraint,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            augment=augment,
            patience=patience,
            max_steps=QUICK_STEPS if quick else None,
            model_options=opts,
            **dict(training or {}),
            out=run,
            device=device,
            progress=progress,
            resume=resume,
        )
        net, _ = load_checkpoint(summary["best"], device="cpu")
        row.update(
            best_epoch=summary["best_epoch"],
            n_parameters=summary["n_parameters"],
            checkpoint=str(summary["best"]),
        )
    if has_test:
        row["scores"] = evaluate_model(net, store, "test", members=members, device=device)
    if val:
        row["val_scores"] = evaluate_model(net, store, "val", members=members, device=device)
    row["seconds"] = time.perf_counter() - t0
    # where the row was made (not a setting: a row read back keeps the machine that made it),
    # so a page of rows from several machines says which ran where
    row["machine"] = f"{machine_info()}; device {pick_device(device).type}"
    return row


def run_row(
    run: str | os.PathLike[str],
    head: Mapping[str, Any],
    store: str | os.PathLike[str],
    model: str,
    constraint: str,
    *,
    wait: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """One table row: ``head`` (the row's labels) + :func:`train_and_score`, cached in ``run``.

    ``options`` are :func:`train_and_score`'s keyword options, with its defaults (one
    signature). The row is read back from ``run/scores.json`` when it was made with the same
    store, model, constraint, options and training settings (device, progress and resume do not
    count); a model without weights ignores the training settings, so a baseline row is made
    once per store. :func:`finished_row` only looks. While another process makes the row,
    ``wait`` waits for it (then reads it back) or raises :class:`~climdown.errors.BusyError`
    (:func:`cached_row`).
    """
    call, settings = _settings(store, model, constraint, run, options)
    return cached_row(
        Path(run),
        settings,
        lambda: {**head, **train_and_score(*call.args, **call.kwargs)},
        wait=wait,
    )


def finished_row(
    run: str | os.PathLike[str],
    store: str | os.PathLike[str],
    model: str,
    constraint: str,
    **options: Any,
) -> dict[str, Any] | None:
    """The row :func:`run_row` would read back from ``run`` with these options, or None when it
    is not finished there (nothing is trained)."""
    return saved_row(Path(run), _settings(store, model, constraint, run, options)[1])


def _settings(
    store: str | os.PathLike[str],
    model: str,
    constraint: str,
    run: str | os.PathLike[str],
    options: Mapping[str, Any],
) -> tuple[inspect.BoundArguments, dict[str, Any]]:
    """:func:`train_and_score`'s bound call, and the settings that identify its row."""
    call = inspect.signature(train_and_score).bind(store, model, constraint, run, **options)
    call.apply_defaults()
    given = call.arguments
    trained = {k: given[k] for k in ("epochs", "batch_size", "lr", "quick")}
    trained["options"] = dict(given["options"] or {})
    if given["training"]:  # only when set, so rows cached before it existed are read back
        trained["training"] = dict(given["training"])
    # the newer settings count only where they differ from the defaults, so rows cached
    # before they existed are read back
    for key in ("seed", "augment", "patience"):
        if given[key] != call.signature.parameters[key].default:
            trained[key] = given[key]
    settings = {
        "store": str(store),
        "model": model,
        "constraint": constraint,
        "members": given["members"],
        **(trained if _has_weights(model) else {}),
        **({"val": True} if given["val"] else {}),
    }
    return call, settings


def _has_weights(model: str) -> bool:
    """False for the interpolation baselines (nothing to train), True for every other model."""
    from climdown.nn.models import MODELS
    from climdown.nn.models.baselines import Interpolation

    cls = MODELS.get(str(model).lower())
    return cls is None or not issubclass(cls, Interpolation)


def check_replaceable(path: str | os.PathLike[str]) -> Path:
    """Refuse, before anything is trained or written, a Markdown path that holds something
    the study did not write: a folder, a link, or a file without :data:`PAGE_MARKER` or
    :data:`NOTES_MARKER` (a README.md, someone's notes). Returns the path."""
    from climdown.report import holds_marker

    path = Path(path)
    if os.path.lexists(path) and not holds_marker(path, PAGE_MARKER, NOTES_MARKER):
        raise ConfigError(
            f"{str(path)!r} exists and is not a results page climdown wrote (no "
            f"{NOTES_MARKER!r} line in it); refusing to replace it. Choose another path for the "
            "Markdown (e.g. results.md in a new folder), or move the file away"
        )
    return path


def write_markdown(path: str | os.PathLike[str], doc: str) -> Path:
    """Write ``doc`` to ``path`` atomically, keeping what stood below :data:`NOTES_MARKER`.

    Hand-written discussion below the marker survives a re-run; everything above it (the
    generated tables) is replaced. The page starts with :data:`PAGE_MARKER`, and an existing
    file without either marker is refused (:func:`check_replaceable`).
    """
    path = check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else ""
    if NOTES_MARKER in old:
        doc = doc.rstrip("\n") + "\n\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
    if PAGE_MARKER not in doc:
        doc = PAGE_MARKER + "\n" + doc
    return write_text_atomic(path, doc)


# ---------------------------------------------------------------------------------------
# The ledger: the rows of a results page, kept beside it, so the page outlives its out folder
# ---------------------------------------------------------------------------------------
#: Key of the one JSON object in a ledger file; a file without it is not climdown's ledger.
LEDGER_KEY = "climdown_study_rows"
#: Stands for the out folder in a ledger's paths (stores, checkpoints).
OUT_TOKEN = "$OUT"


def ledger_path(page: str | os.PathLike[str]) -> Path:
    """The ledger beside a results page: ``docs/results.md`` -> ``docs/results.rows.json``."""
    page = Path(page)
    return page.with_name(f"{page.stem}.rows.json")


def check_ledger(path: str | os.PathLike[str]) -> Path:
    """Refuse, before anything is trained, a ledger path that holds something else (a folder,
    a link, JSON without :data:`LEDGER_KEY`, not JSON). Returns the path."""
    return check_json(path, LEDGER_KEY, "a ledger of study rows")


def check_json(path: str | os.PathLike[str], key: str, what: str) -> Path:
    """Refuse a JSON path the study would replace that holds something it did not write: a
    folder, a link, not JSON, or JSON that is not an object with ``key``. Returns the path."""
    path = Path(path)
    if not os.path.lexists(path):
        return path
    try:
        doc = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not (isinstance(doc, dict) and key in doc):
        raise ConfigError(
            f"{str(path)!r} exists and is not {what} climdown wrote (no {key!r} key in it); "
            "refusing to replace it. Move it away, or write the results page to another folder"
        )
    return path


def _ledger_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The ledger's rows by key (run folder relative to the out folder + settings)."""
    if not check_ledger(path).is_file():
        return {}
    rows = json.loads(path.read_text())[LEDGER_KEY]
    return {_ledger_key(r["run"], r["row"]): r for r in rows}


def _ledger_key(run: str, row: Mapping[str, Any]) -> str:
    return run + " " + json.dumps(row.get("settings"), sort_keys=True)


def _swap_out(value: Any, old: str, new: str) -> Any:
    """``value`` with the path prefix ``old`` replaced by ``new`` in every string in it."""
    if isinstance(value, str):
        inside = value == old or value.startswith((old + "/", old + os.sep))
        return new + value[len(old) :] if inside else value
    if isinstance(value, dict):
        return {k: _swap_out(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_out(v, old, new) for v in value]
    return value


def save_ledger(out: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Merge every row cached under ``out`` (each ``scores.json``) into the ledger at ``path``.

    Rows are kept by run folder (relative to ``out``) and settings, so a row is never dropped:
    a row with other settings in the same folder is added beside it. Paths inside ``out`` are
    stored as :data:`OUT_TOKEN` so that :func:`restore_ledger` can put the rows into any out
    folder. Each row keeps its measured epoch time (``epoch_s``, from the run's log).
    """
    out, path = Path(out), check_ledger(path)
    out.mkdir(parents=True, exist_ok=True)
    # one read-merge-write at a time among the processes sharing this out folder, so no
    # process writes back a ledger that lacks a row another one has just added
    with hold(out / ".ledger.lock", f"the ledger {str(path)!r}", wait=True):
        rows = _ledger_rows(path)
        for run in _row_folders(out):
            done = run / "scores.json"
            row = json.loads(done.read_text())
            row = _swap_out(row, str(out), OUT_TOKEN)
            if row.get("epoch_s") is None and epoch_seconds([run]) is not None:
                row["epoch_s"] = epoch_seconds([run])
            rel = run.relative_to(out).as_posix()
            rows[_ledger_key(rel, row)] = {"run": rel, "row": row}
        doc = {LEDGER_KEY: [rows[k] for k in sorted(rows)]}
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _row_folders(out: Path) -> list[Path]:
    """The folders under ``out`` holding a ``scores.json``, sorted (stores, and stores being
    built, ``.NAME.zarr.partial``, are not searched)."""
    found = []
    for here, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.endswith((".zarr", ".zarr.partial"))]
        if "scores.json" in files:
            found.append(Path(here))
    return sorted(found)


def restore_ledger(out: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """Put the ledger's rows back into ``out``: each run folder without a ``scores.json`` gets
    the ledger's row (where the ledger has several for one folder, the first by settings), with
    its paths moved into ``out``. What is in ``out`` already is never replaced. Returns the number of rows restored.

    A re-run then reads those rows back instead of training (:func:`cached_row`), so a results
    page can be rewritten, and a table finished, after the out folder is gone.
    """
    out, path = Path(out), Path(path)
    restored = 0
    for entry in _ledger_rows(path).values():
        done = out / entry["run"] / "scores.json"
        if done.exists() or ".." in Path(entry["run"]).parts or Path(entry["run"]).is_absolute():
            continue
        done.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(done, json.dumps(_swap_out(entry["row"], OUT_TOKEN, str(out)), indent=1))
        restored += 1
    return restored


def epoch_seconds(runs: Iterable[str | os.PathLike[str]]) -> float | None:
    """Mean wall time of a training epoch (s, validation included) over the logs in ``runs``."""
    times = []
    for run in runs:
        log = Path(run) / "metrics.jsonl"
        if log.is_file():
            for line in log.read_text().splitlines():
                if line.strip():
                    t = json.loads(line).get("time_s")
                    if t is not None:
                        times.append(float(t))
    return statistics.fmean(times) if times else None
