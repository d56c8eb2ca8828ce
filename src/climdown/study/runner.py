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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from climdown import validate
from climdown.errors import ConfigError

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
    run: Path, settings: Mapping[str, Any], compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The row saved in ``run/scores.json`` if its ``settings`` match; else ``compute()`` it.

    This is what makes a re-run resume: finished rows are read back, not retrained. The
    settings must be JSON-able; they are stored in the row as ``settings``.
    """
    prev = saved_row(run, settings)
    if prev is not None:
        return prev
    done = Path(run) / "scores.json"
    settings = json.loads(json.dumps(dict(settings)))
    row = {**compute(), "settings": settings}
    done.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(done, json.dumps(row, indent=1))  # a killed run leaves no half row
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
        and scoring); for trained models also ``best_epoch``, ``n_parameters`` and
        ``checkpoint`` (the path of the scored checkpoint).
    """
    from climdown.checkpoint import load_checkpoint
    from climdown.data.store import store_info
    from climdown.evaluate import evaluate_model
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
    return row


def run_row(
    run: str | os.PathLike[str],
    head: Mapping[str, Any],
    store: str | os.PathLike[str],
    model: str,
    constraint: str,
    **options: Any,
) -> dict[str, Any]:
    """One table row: ``head`` (the row's labels) + :func:`train_and_score`, cached in ``run``.

    ``options`` are :func:`train_and_score`'s keyword options, with its defaults (one
    signature). The row is read back from ``run/scores.json`` when it was made with the same
    store, model, constraint, options and training settings (device, progress and resume do not
    count); a model without weights ignores the training settings, so a baseline row is made
    once per store. :func:`finished_row` only looks.
    """
    call, settings = _settings(store, model, constraint, run, options)
    return cached_row(
        Path(run), settings, lambda: {**head, **train_and_score(*call.args, **call.kwargs)}
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
