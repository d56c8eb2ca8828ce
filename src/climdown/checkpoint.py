"""Save and load model checkpoints: a state dict plus JSON metadata, read with ``weights_only=True``.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data::

    {
        "format": "climdown-checkpoint",
        "format_version": 1,
        "meta_json": "{...}",          # everything needed to use the weights without the store
        "state_dict": {...},           # model weights and buffers (incl. the normalising scale)
        "optimizer": {...},            # optional: optimiser state(s), for resuming training
        "extra": {...},                # optional: RNG states, epoch, history, ... (plain data)
    }

It is always read with ``torch.load(path, weights_only=True)``, which refuses to run arbitrary
pickled code, so a checkpoint from an untrusted source cannot execute anything on load. The
model is rebuilt from ``meta["model"]`` (the ``config`` of the model that was saved) with
:func:`climdown.nn.models.build_model`, then its weights are loaded strictly.

Whether a model fits the data it is used on is decided here too, once: :func:`check_expected`
(factor, constraint, variable; for checkpoints and model objects alike) and
:func:`check_spacing` (the training grid spacing). Weights, buffers and the normalisation scale
must be finite (the scale positive) or the checkpoint is refused at load: a model with a NaN
weight would only ever return NaN. :func:`load_cached` loads a checkpoint once per process
(cached by the SHA-256 of the file's bytes and the device, at module level: never on an xarray
accessor, which xarray rebuilds for every ``ds["tcw"]``); :func:`clear_model_cache` forgets what
it loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import numbers
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from climdown._version import __version__
from climdown.errors import CheckpointError, ClimdownError

if TYPE_CHECKING:
    from climdown.nn.normalize import ConstrainedModel

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "read_meta",
    "load_cached",
    "clear_model_cache",
    "check_expected",
    "check_spacing",
    "trained_spacing",
    "SPACING_RATIO",
]

FORMAT = "climdown-checkpoint"
FORMAT_VERSION = 1

#: Warn when the input grid spacing differs from the training spacing by more than this ratio.
SPACING_RATIO = 2.0

# (sha256 of the file's bytes, device) -> (model, meta)
_MODEL_CACHE: dict[tuple[str, str], tuple[ConstrainedModel, dict[str, Any]]] = {}


def _jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy/torch scalars and arrays and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"checkpoint metadata must be JSON data; got {type(obj).__name__}: {obj!r}")


def _optimizer_state(optimizer: Any) -> Any:
    if optimizer is None:
        return None
    if isinstance(optimizer, Mapping):
        return {name: opt.state_dict() for name, opt in optimizer.items()}
    return optimizer.state_dict()


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    meta: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and metadata to ``path`` atomically.

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.pt``); its directory is created if needed.
    model : ConstrainedModel
        The model; ``model.config`` (the arguments that rebuild it) goes into the metadata.
    meta : mapping
        JSON-serialisable metadata: variable, units, normalisation stats, grid spacing of the
        training data (deg), ... The keys ``format``, ``format_version``, ``climdown_version``,
        ``created``, ``model``, ``factor``, ``constraint`` and ``scale`` are filled in here from
        the model and the package and take precedence over the same keys in ``meta``.
    optimizer : Optimizer or mapping of name -> Optimizer, optional
        Optimiser state to resume training from.
    extra : mapping, optional
        Further plain data (tensors, numbers, strings, lists, dicts), e.g. RNG states.

    Returns
    -------
    Path
        The written file. A temporary file in the same directory is renamed over ``path``
        (``os.replace``), so an interrupted save never leaves a truncated checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = dict(getattr(model, "config", {}) or {})
    constraint = getattr(model, "constraint", None)
    factor = getattr(model, "factor", None)
    scale = getattr(model, "scale", None)  # a 0-d tensor buffer on ConstrainedModel
    full = dict(meta)
    full.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        climdown_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model=config,
        factor=int(config.get("factor", 1) if factor is None else factor),
        constraint=getattr(constraint, "name", config.get("constraint")),
        scale=config.get("scale") if scale is None else float(scale),
    )
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": json.dumps(full, default=_jsonable, sort_keys=True),
        "state_dict": model.state_dict(),
    }
    if optimizer is not None:
        payload["optimizer"] = _optimizer_state(optimizer)
    if extra is not None:
        payload["extra"] = dict(extra)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The whole checkpoint as plain data, with ``meta`` parsed from its JSON.

    Read with ``torch.load(path, map_location=device, weights_only=True)`` only.

    Returns
    -------
    dict
        ``meta`` (dict), ``state_dict``, and ``optimizer`` / ``extra`` when saved.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, corrupt, of another format or of a newer format.
    """
    return _read(Path(path), device, None)


#: Where a file the study's reference code saved goes instead (climdown's checkpoints are not it).
_REFERENCE_HINT = (
    "A checkpoint saved by the study's reference code (RolnickLab/constrained-downscaling) "
    "loads with climdown.nn.models.from_reference(path, name, factor=..., constraint=...)."
)


def _read(path: Path, device: str | torch.device, data: bytes | None) -> dict[str, Any]:
    """:func:`read_checkpoint` of ``path``, or of its bytes ``data`` when already read."""
    if data is None and not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} not found; pass the .pt file written by `climdown train` "
            "(e.g. run/best.pt)"
        )
    try:
        source = path if data is None else io.BytesIO(data)
        payload = torch.load(source, map_location=device, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: it is corrupt, truncated, or not a climdown "
            "checkpoint (climdown loads only tensors and plain data, weights_only=True); "
            f"re-save it with climdown.checkpoint.save_checkpoint. {_REFERENCE_HINT} "
            f"Reader said: {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        seen = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a climdown checkpoint: expected a dict with "
            f"format={FORMAT!r}, found {seen}; save models with climdown.checkpoint.save_checkpoint. "
            f"{_REFERENCE_HINT}"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}; this climdown "
            f"({__version__}) reads versions 1 to {FORMAT_VERSION}: upgrade climdown"
        )
    try:
        meta = json.loads(payload["meta_json"])
        state_dict = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its metadata or weights are missing or "
            f"unreadable ({err}); re-train or re-save it"
        ) from err
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its metadata is a {type(meta).__name__} "
            "without a model configuration, expected a mapping with 'model' as "
            "save_checkpoint writes; re-train or re-save it"
        )
    out = {"meta": meta, "state_dict": state_dict}
    for key in ("optimizer", "extra"):
        if key in payload:
            out[key] = payload[key]
    return out


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint (model config, factor, variable, units, stats, version, ...)."""
    return read_checkpoint(path)["meta"]


def check_expected(
    what: str,
    seen: Mapping[str, Any],
    *,
    factor: int | None = None,
    constraint: str | None = None,
    variable: str | None = None,
    strict: bool = True,
) -> None:
    """Raise unless a model fits the data it is used on: the one factor/constraint/variable check.

    Parameters
    ----------
    what : str
        How the model is named in messages (``"checkpoint 'run/best.pt'"``, ``"model 'cnn'"``).
    seen : mapping
        What the model is: a checkpoint's metadata, or the same keys (``factor``,
        ``constraint``, ``variable``) for a model object.
    factor, constraint, variable : optional
        What the data and the caller need; None is not checked. Variable names compare
        case-insensitively; a model that records no variable is not checked.
    strict : bool
        What another variable is: an error (True), or a UserWarning naming both (False: a
        model may be applied to a related field on purpose, but never without a word).
        Factor and constraint mismatches are always errors.

    Raises
    ------
    CheckpointError
        Naming what the model is, what was needed, and the fix.

    Warns
    -----
    UserWarning
        Another variable than the model's, with ``strict=False``.
    """
    have = seen.get("factor")
    if factor is not None and (isinstance(have, bool) or not isinstance(have, numbers.Integral)):
        raise CheckpointError(
            f"{what} records factor {have!r}, not an integer; it is damaged or was not written "
            "by climdown: re-train or re-save it"
        )
    if factor is not None and have != int(factor):
        raise CheckpointError(
            f"{what} downscales by factor {have} but factor {factor} is needed here; use a "
            f"checkpoint trained at factor {factor} (climdown train --store <a {factor}x store>) "
            f"or data at factor {have} (factor={have})"
        )
    have = seen.get("constraint")
    if constraint is not None and str(have).lower() != str(constraint).lower():
        raise CheckpointError(
            f"{what} was built with constraint {have!r} but constraint {constraint!r} is needed "
            f"here; pass constraint={have!r} or a model trained with {constraint!r}"
        )
    have = seen.get("variable")
    if variable is not None and have is not None and str(have).lower() != str(variable).lower():
        message = (
            f"{what} was trained on variable {have!r} but the data here is {variable!r}; use a "
            f"checkpoint trained on {variable!r} or pass the {have!r} field"
        )
        if strict:
            raise CheckpointError(message)
        warnings.warn(
            f"{message} (its output is likely wrong; strict=True makes this an error)",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _check_finite(path: Path, meta: Mapping[str, Any], state_dict: Mapping[str, Any]) -> None:
    """Refuse weights or buffers that are not finite, and a scale that is not positive.

    A NaN or inf anywhere in a network's weights makes every output NaN; a normalisation
    scale of 0 divides by zero. Such a file comes from a diverged or damaged training run.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its weights are a "
            f"{type(state_dict).__name__}, not a state dict; re-train or re-save it"
        )
    for name, value in state_dict.items():
        if not (torch.is_tensor(value) and value.is_floating_point()):
            continue
        bad = ~torch.isfinite(value)
        if bool(bad.any()):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has {int(bad.sum())} non-finite value(s) (NaN/inf) "
                f"of {value.numel()} in {name!r}: the model would return NaN everywhere. Its "
                "training diverged or the file is damaged; use an earlier checkpoint (e.g. "
                "run/best.pt) or re-train with a smaller learning rate"
            )
    scales = [("metadata 'scale'", meta.get("scale"))]
    if "scale" in state_dict:  # the normaliser's buffer (climdown.nn.normalize)
        scales.append(("buffer 'scale'", state_dict["scale"]))
    for name, value in scales:
        if value is None:
            continue
        try:
            number = float(value.reshape(-1)[0]) if torch.is_tensor(value) else float(value)
        except (TypeError, ValueError, IndexError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has normalisation scale {value!r} ({name}); the "
                "scale must be a positive finite number (the inputs are divided by it). Re-save "
                "the model with its training scale (e.g. the training data's standard deviation)"
            )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    expect_factor: int | None = None,
    expect_variable: str | None = None,
) -> tuple[ConstrainedModel, dict[str, Any]]:
    """Rebuild the saved model with its weights, in eval mode, on ``device``.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_checkpoint` (e.g. ``run/best.pt``).
    device : str or torch.device
        Where to put the weights (``"cpu"``, ``"cuda"``, ``"mps"``).
    expect_factor, expect_variable : optional
        The factor and variable of the data the model will be used on; a mismatch raises.

    Returns
    -------
    model : ConstrainedModel
        In eval mode.
    meta : dict
        The checkpoint's metadata (see :func:`save_checkpoint`).

    Raises
    ------
    CheckpointError
        Missing/corrupt/unknown-format file, a factor or variable other than expected (naming
        both and the fix), weights that do not fit the recorded model configuration, weights
        or buffers that are not finite, or a normalisation scale that is not positive and
        finite.
    """
    path = Path(path)
    check = {"factor": expect_factor, "variable": expect_variable}
    return _load(path, _read(path, device, None), device, check)


def _load(
    path: Path, ckpt: dict[str, Any], device: str | torch.device, check: Mapping[str, Any]
) -> tuple[ConstrainedModel, dict[str, Any]]:
    """The model of a read checkpoint ``ckpt``: checked, finite, built, loaded, in eval mode."""
    from climdown.nn.models import build_model  # models import this package's nn layer only

    meta = ckpt["meta"]
    check_expected(f"checkpoint {str(path)!r}", meta, **check)
    _check_finite(path, meta, ckpt["state_dict"])
    try:
        model = build_model(meta["model"])
    except (KeyError, TypeError, ClimdownError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} records a model this climdown ({__version__}) cannot "
            f"build: {err}; it was written by climdown {meta.get('climdown_version')}"
        ) from err
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights in {str(path)!r} do not fit its recorded model "
            f"{meta['model'].get('name', '?')!r}: {err}"
        ) from err
    return model.to(device).eval(), meta


def load_cached(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    expect_factor: int | None = None,
    expect_constraint: str | None = None,
) -> tuple[ConstrainedModel, dict[str, Any]]:
    """:func:`load_checkpoint`, once per process: cached by the file's content and the device.

    The key is the SHA-256 of the file's bytes, read on every call (a few milliseconds for
    the packaged checkpoints, see docs/inference.md): a file replaced by another one, even
    with the same size and modification time (``cp -p``), is loaded afresh; the same bytes
    under two names share one model. Every caller gets the same model object (in eval mode:
    use it, do not train it). ``expect_factor`` and ``expect_constraint`` are checked
    (:func:`check_expected`) on every call, cached or not.

    Raises
    ------
    CheckpointError
        As :func:`load_checkpoint`, or a factor or constraint other than expected.
    """
    path = Path(path).resolve()
    if not path.is_file():
        read_checkpoint(path)  # raises the not-found error
    data = path.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), str(device))
    if key not in _MODEL_CACHE:
        # loaded from the bytes that were hashed: a file rewritten meanwhile cannot slip in
        _MODEL_CACHE[key] = _load(path, _read(path, device, data), device, {})
    model, meta = _MODEL_CACHE[key]
    check_expected(
        f"checkpoint {str(path)!r}", meta, factor=expect_factor, constraint=expect_constraint
    )
    return model, meta


def clear_model_cache() -> None:
    """Forget the checkpoints :func:`load_cached` has loaded."""
    _MODEL_CACHE.clear()


def trained_spacing(meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(dlat, dlon)`` in degrees of the LR grid a checkpoint was trained on, or None.

    Read from ``meta["lr_spacing_deg"]``, which training records as
    :attr:`climdown.grid.Grid.spacing` of the training data's LR grid (one number means both).
    """
    value = meta.get("lr_spacing_deg")
    if value is None:
        return None
    v = np.atleast_1d(np.asarray(value, dtype=np.float64))
    return (float(v[0]), float(v[-1]))


def check_spacing(
    meta: Mapping[str, Any],
    spacing: tuple[float, float],
    what: str,
    covered: Sequence[tuple[float, float]] | None = None,
) -> None:
    """Warn when the input grid is far finer or coarser than the grid the model was trained on.

    Parameters
    ----------
    meta : mapping
        Checkpoint metadata (nothing is checked without ``lr_spacing_deg``).
    spacing : tuple of float
        :attr:`climdown.grid.Grid.spacing` of the input, ``(dlat, dlon)`` in degrees.
    what : str
        The model's name in the message.
    covered : sequence of (dlat, dlon), optional
        All the spacings a set of models covers (the packaged defaults' regimes): no warning
        when the input is within :data:`SPACING_RATIO` of any of them.

    Warns
    -----
    UserWarning
        If either spacing differs by more than :data:`SPACING_RATIO` from the trained one: a
        network learns structures at the scale it was trained on.
    """
    trained = trained_spacing(meta)
    if trained is None:
        return

    def far(reference: Sequence[float]) -> bool:
        ratios = [s / t for s, t in zip(spacing, reference, strict=True) if t > 0]
        return any(r > SPACING_RATIO or r < 1.0 / SPACING_RATIO for r in ratios)

    if far(trained) and all(far(c) for c in covered or ()):
        warnings.warn(
            f"the input grid spacing ({spacing[0]:.4g} x {spacing[1]:.4g} deg) is more than "
            f"{SPACING_RATIO:g}x from the spacing model {what!r} was trained on "
            f"({trained[0]:.4g} x {trained[1]:.4g} deg); its output may be unreliable. "
            "Use a model trained at this resolution, or a baseline (model='bicubic')",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """``stacklevel`` for warnings.warn that points at the first caller outside climdown."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
