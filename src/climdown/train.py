"""The training loop: Adam on a store's train split, validation on val, a log and checkpoints.

One call, :func:`train`, does what the study did for every model (Adam, lr 1e-3, batch 64,
20 epochs, MSE; the GAN adds 0.01 x a BCE adversarial term and alternates discriminator and
generator steps; the ``soft`` constraint adds its penalty to the loss) and writes into ``out/``:

* ``metrics.jsonl``: one JSON record per epoch (train loss, val RMSE in kg m-2, area-weighted
  val RMSE, mass violation, negative count, time);
* ``last.pt``: the latest epoch, with optimiser and RNG states, so an interrupted run resumes
  to exactly the result of an uninterrupted one with the same seed;
* ``best.pt``: the epoch with the lowest area-weighted val RMSE (``select``; picked on
  ``val``, never on ``test``);
* ``epoch-NNN.pt``: every epoch's weights, when asked for (``keep_epochs``).

Little data (a day of ERA5 is a few hundred patches) is what most users have, so the loop
can make the most of it: ``augment`` trains on the eight flips and quarter turns of each
patch (the fields, their coarse inputs and their cell areas alike), ``patience`` stops when
the selection score has not improved for that many epochs.

Messages go to the ``climdown`` logger (:mod:`logging`): a line per epoch at INFO, and a
WARNING when an epoch holds too few optimiser steps to learn anything (``climdown train``
shows both; in a notebook, ``logging.basicConfig(level=logging.INFO)``).

What to train is a :class:`TrainConfig` (validated on construction; checkpoints store it as a
dict and a resumed run must have the same one). ``climdown train`` also draws the log as
``curves.png`` (:func:`climdown.plot.training_curves`); the loop itself draws nothing.

Under ``torchrun --nproc-per-node N`` the same call trains with DistributedDataParallel (NCCL
on CUDA, gloo on CPU): each global batch of the single-process loader is split across the
ranks (:func:`climdown.ddp.rank_batches`), the gradients are averaged, and rank 0
alone validates, logs, draws progress and writes checkpoints. The result equals a
single-process run with the same ``batch_size`` and ``seed`` within float round-off.

The loss is computed on the normalised scale (fields divided by the store's normalisation
``scale``), which is where the soft penalty also lives; metrics are in physical units
(:func:`climdown.evaluate.validate`; :func:`climdown.evaluate.evaluate_model` scores a model
on a split after training).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from climdown import ddp as cdist
from climdown import metrics, validate
from climdown.checkpoint import read_checkpoint, save_checkpoint
from climdown.data.dataset import PatchDataset, make_loader, patch_spacing
from climdown.data.store import normalisation, store_info
from climdown.errors import CheckpointError, ConfigError, StoreError
from climdown.evaluate import validate as validate_split
from climdown.grid import Orientation
from climdown.locks import LOCK_NAME, hold
from climdown.nn.constraints import CONSTRAINTS, get_constraint
from climdown.nn.device import pick_device, to_device
from climdown.nn.losses import crps_loss, discriminator_loss, generator_loss, mse_loss
from climdown.nn.models import MODELS, GANModel, get_model, make_discriminator
from climdown.nn.normalize import ConstrainedModel

__all__ = [
    "train",
    "TrainConfig",
    "pick_device",
    "patch_spacing",
    "ADV_WEIGHT",
    "MIN_STEPS",
    "SELECT",
    "LOSSES",
]

#: Weight of the adversarial term in the GAN generator's loss (the study's 0.01).
ADV_WEIGHT = 0.01
LOG_NAME, LAST_NAME, BEST_NAME = "metrics.jsonl", "last.pt", "best.pt"
#: Fewer optimiser steps per epoch than this draws a warning (the model barely moves).
MIN_STEPS = 5
#: Validation scores ``best.pt`` can be chosen by (lower is better).
SELECT = ("val_rmse_area", "val_rmse", "val_crps_area")
#: Data terms of the loss (:attr:`TrainConfig.loss`).
LOSSES = ("mse", "mse_area", "crps")
#: How the model's input is normalised (:attr:`TrainConfig.normalisation`).
NORMALISATIONS = ("scale", "minmax")

log = logging.getLogger("climdown")


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """What decides a training run's result: model, constraint, optimiser, seed, precision.

    Validates itself on construction (``ConfigError`` naming the option); built from a mapping
    (a YAML section, a checkpoint's metadata, CLI options) with :meth:`from_mapping`, which
    refuses unknown keys. The run's place and machinery (``out``, ``device``, workers,
    progress, caching) are arguments of :func:`train`, not part of the config.

    Parameters
    ----------
    model : str
        ``cnn``, ``gan``, ``convgru``, ``flowconvgru`` (:func:`climdown.nn.models.get_model`).
    constraint : str
        ``none``, ``softmax``, ``add``, ``mult``, ``scadd``, ``clip`` or ``soft``.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    batch_size : int
        Samples per optimiser step (64 in the study): the *global* batch; under torchrun each
        of the N ranks computes about ``batch_size / N`` of them.
    lr : float
        Adam learning rate (1e-3 in the study; also used for the GAN discriminator).
    seed : int
        Seeds the weights, the noise and the shuffling (epoch e shuffles with ``seed + e``).
    max_steps : int, optional
        At most this many optimiser steps per epoch (quick runs and tests); None = whole epochs.
    model_options : dict
        Model options (e.g. ``{"width": 8, "layout": "reference"}``), see ``get_model``.
    soft_lambda : float
        Weight of the ``soft`` constraint's penalty (ignored by the other constraints).
    precision : str
        ``"fp32"`` (default, the study's) or ``"bf16"``: forward passes under bfloat16
        autocast (CPU with AVX-512/AMX and CUDA; about twice as fast on a recent Xeon). The
        constraint layer, the loss and the weights stay float32 either way, so conservation
        holds to float32 round-off; validation always runs in float32.
    augment : bool
        Train on a random one of the eight flips and quarter turns of each patch (the same
        one for its fine field, coarse input and cell areas; quarter turns only for square
        patches). Water columns have no preferred orientation at patch scale, and the
        constraint still sees each cell's true area. The draws are seeded by ``seed`` and the
        epoch (a resumed run is exact); under torchrun each rank draws for its own part of a
        batch, so a distributed augmented run equals a single-process one statistically, not
        bit for bit.
    select : str
        The validation score that picks ``best.pt``: ``"val_rmse_area"`` (default: RMSE
        weighted by cell area, the error on the sphere), ``"val_rmse"`` (per grid cell, the
        study's) or ``"val_crps_area"`` (GAN only: the area-weighted fair CRPS of
        ``crps_members`` members per validation sample, drawn with noise seeded by ``seed``
        so that epochs are compared on the same draws, and logged as ``val_crps_area``). The
        RMSE scores judge member 0, one draw; an ensemble trained for its spread
        (``loss="crps"``) may be better judged by its CRPS.
    patience : int, optional
        Stop when ``select`` has not improved for this many epochs (early stopping); None
        trains every epoch.
    keep_epochs : bool
        Also write every epoch's weights as ``epoch-NNN.pt``.
    adversarial_weight : float
        Weight of the adversarial term in the GAN generator's loss (GAN only): 0.01 as in the
        study's report and :data:`ADV_WEIGHT`; the reference code used 1e-4. 0 trains the
        generator on its data loss alone and skips the discriminator (it keeps its initial
        weights; the step costs what a plain CNN's does).
    loss : str
        The data term of the loss: ``"mse"`` (the study's, every grid cell alike),
        ``"mse_area"`` (the MSE weighted by cell area: the error on the sphere, which the
        area-weighted validation RMSE scores) or ``"crps"`` (GAN only): draw
        ``crps_members`` members per sample with independent noise and minimise their fair
        CRPS (:func:`climdown.nn.losses.crps_loss`) instead of the MSE of one. MSE rewards a
        generator that ignores its noise (the mean is the MSE-optimal answer); the fair CRPS
        rewards members that spread as far as the truth's uncertainty, so the ensemble's
        spread can carry information. The adversarial term sees the first member.
    crps_members : int
        Members drawn per sample for ``loss="crps"`` (at least 2; each costs a forward pass).
    normalisation : {"scale", "minmax"}
        ``"scale"`` (climdown's): the model sees ``x / scale`` with the store's scale and its
        constraint works in kg m-2. ``"minmax"`` (the reference code's): it sees
        ``(x - min) / (max - min)`` with the store's training min and max, and its constraint
        works on that normalised field, as the reference's did (still exactly conserving;
        positive only above the training minimum; see
        :class:`~climdown.nn.normalize.ConstrainedModel`). For reproducing the reference.
    """

    model: str = "cnn"
    constraint: str = "softmax"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    max_steps: int | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)
    soft_lambda: float = 1.0
    precision: str = "fp32"
    augment: bool = False
    select: str = "val_rmse_area"
    patience: int | None = None
    keep_epochs: bool = False
    adversarial_weight: float = ADV_WEIGHT
    loss: str = "mse"
    crps_members: int = 2
    normalisation: str = "scale"

    #: Fields that must match for a run to resume (epochs and max_steps may change).
    RESUME_KEYS: ClassVar[tuple[str, ...]] = (
        "model",
        "constraint",
        "model_options",
        "batch_size",
        "lr",
        "seed",
        "soft_lambda",
        "precision",
        "augment",
        "select",
        "adversarial_weight",
        "loss",
        "crps_members",
        "normalisation",
    )

    def __post_init__(self) -> None:
        model = str(self.model).lower()
        if model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        constraint = str(self.constraint).lower()
        get_constraint(constraint)  # ConfigError for an unknown name, before any data are read
        precision = str(self.precision).lower()
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"unknown precision {self.precision!r}; use 'fp32' or 'bf16'")
        if not isinstance(self.model_options or {}, Mapping):
            raise ConfigError(
                f"model_options must be a mapping such as {{'width': 32}}, got {self.model_options!r}"
            )
        options = dict(self.model_options or {})
        fixed: dict[str, Any] = {
            "model": model,
            "constraint": constraint,
            "epochs": validate.integer(self.epochs, "epochs", minimum=0, example="epochs 20"),
            "batch_size": validate.positive_int(self.batch_size, "batch_size", example="64"),
            "lr": validate.number(self.lr, "lr (learning rate)", positive=True),
            "seed": validate.integer(self.seed, "seed", minimum=0),
            "max_steps": None
            if self.max_steps is None
            else validate.integer(self.max_steps, "max_steps", minimum=0),
            "model_options": options,
            "soft_lambda": validate.number(self.soft_lambda, "soft_lambda"),
            "precision": precision,
            "augment": _flag(self.augment, "augment"),
            "select": _choice(self.select, SELECT, "select"),
            "patience": None
            if self.patience is None
            else validate.integer(self.patience, "patience", minimum=1, example="patience 5"),
            "keep_epochs": _flag(self.keep_epochs, "keep_epochs"),
            "adversarial_weight": validate.number(self.adversarial_weight, "adversarial_weight"),
            "loss": _choice(self.loss, LOSSES, "loss"),
            "crps_members": validate.integer(
                self.crps_members, "crps_members", minimum=2, example="crps_members 2"
            ),
            "normalisation": _choice(self.normalisation, NORMALISATIONS, "normalisation"),
        }
        if fixed["soft_lambda"] < 0:
            raise ConfigError(f"soft_lambda must be >= 0, got {self.soft_lambda!r}")
        if fixed["adversarial_weight"] < 0:
            raise ConfigError(
                f"adversarial_weight must be >= 0, got {self.adversarial_weight!r} "
                "(the study's 0.01, the reference code's 1e-4)"
            )
        if fixed["loss"] == "crps" and model != "gan":
            raise ConfigError(
                f"loss 'crps' needs a model that samples (gan), not {model!r}: a deterministic "
                "model's members are all equal; use loss 'mse'"
            )
        if fixed["select"] == "val_crps_area" and model != "gan":
            raise ConfigError(
                f"select 'val_crps_area' needs a model that samples (gan), not {model!r}: a "
                "deterministic model's CRPS is its MAE; use select 'val_rmse_area'"
            )
        for key, value in fixed.items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], where: str = "training config"
    ) -> TrainConfig:
        """A config from a mapping; unknown keys are a ``ConfigError`` naming the closest one."""
        return cls(**validate.check_keys(mapping, [f.name for f in fields(cls)], where))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what checkpoints store)."""
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "model_options": dict(self.model_options)
        }

    def resume_key(self) -> dict[str, Any]:
        """The settings a run must share with ``last.pt`` to resume from it."""
        d = self.to_dict()
        return {k: d[k] for k in self.RESUME_KEYS}


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    text = str(value).lower()
    if text not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return text


def train(
    store: str | os.PathLike,
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    out: str | os.PathLike = "run",
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    num_workers: int = 0,
    cache: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train a model with a constraint on the store's ``train`` split, validating on ``val``.

    Parameters
    ----------
    store : path
        A store built by ``climdown build`` (:func:`climdown.data.store.build_store`).
    config : TrainConfig or mapping, optional
        What to train (:class:`TrainConfig`; defaults: the study's CNN + softmax, Adam 1e-3,
        batch 64, 20 epochs).
    out : path
        Folder for the log and checkpoints; created if needed.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string. Under torchrun a
        CUDA device without an index becomes ``cuda:LOCAL_RANK``.
    resume : bool
        Continue from ``out/last.pt`` when it exists; False starts afresh (and overwrites).
    progress : bool
        Show a tqdm bar per epoch (loss, mass violation; on a terminal) and a line per epoch.
    num_workers : int
        DataLoader worker processes.
    cache : bool
        Read the train and val splits into memory once (fast epochs; a zarr chunk is not
        decompressed per sample). False for stores larger than memory.
    **options
        :class:`TrainConfig` fields overriding ``config`` (``train(store, model="gan",
        epochs=2)``).

    Returns
    -------
    dict
        ``best_val_rmse`` (kg m-2: the ``select`` score of the best epoch, area-weighted by
        default), ``select``, ``best_epoch``, ``epochs`` (completed), ``stopped_early``,
        ``steps``, ``device``, ``n_parameters`` and the paths ``out``, ``best``, ``last``,
        ``log``.
        :func:`climdown.plot.training_curves` draws the log (``climdown train`` does).

    Raises
    ------
    StoreError
        If the store is missing, lacks a split or its normalisation statistics.
    ConfigError
        For an unknown model, constraint or option, or when ``out/last.pt`` holds a run with
        other settings (pass ``resume=False`` or another ``out``).
    BusyError
        When another process is training into ``out`` (its lock, :mod:`climdown.locks`, names
        it); the folder is left as it is.

    Notes
    -----
    Distributed runs (``WORLD_SIZE`` > 1 in the environment, as torchrun sets it) need ``out``
    and the store on a filesystem all ranks see. With DDP the gradients are averaged over the
    ranks, so each rank scales its mean loss by its share of the global batch
    (``n_rank * world_size / batch_size``): the averaged gradient is that of the mean loss
    over the global batch. The GAN discriminator's gradients are averaged with an explicit
    all-reduce (it is called twice per step, which DDP does not allow); each rank draws its
    own generator noise from the same seeded stream, so a distributed GAN run is not
    bit-comparable with a single-process one, only statistically equivalent.
    """
    base = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    cfg = TrainConfig.from_mapping({**base, **options})
    out = Path(out)
    num_workers = validate.integer(num_workers, "num_workers", minimum=0, example="0 (no workers)")
    env = cdist.dist_env()
    validate.output_folder(out, "out")
    # one trainer per run folder (rank 0 holds it for a distributed run): a second process
    # would overwrite this one's checkpoints
    held = hold(out / LOCK_NAME, f"run folder {str(out)!r}", wait=False)
    with held if env.is_main else nullcontext():
        return _train_locked(
            store,
            cfg,
            out,
            env,
            device=device,
            resume=resume,
            progress=progress,
            num_workers=num_workers,
            cache=cache,
        )


def _train_locked(
    store: str | os.PathLike,
    cfg: TrainConfig,
    out: Path,
    env: cdist.DistEnv,
    *,
    device: str,
    resume: bool,
    progress: bool,
    num_workers: int,
    cache: bool,
) -> dict[str, Any]:
    """:func:`train` in its run folder, which this process holds (rank 0)."""
    main = env.is_main
    log_path, last_path, best_path = out / LOG_NAME, out / LAST_NAME, out / BEST_NAME
    dev = pick_device(device)
    if env.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", env.local_rank)
    amp = _autocast_dtype(cfg.precision, dev)
    scale, offset = _normalisation(store, cfg.normalisation)
    train_set = PatchDataset(store, "train", cache=cache)
    val_set = PatchDataset(store, "val", cache=cache)

    torch.manual_seed(cfg.seed)
    net = to_device(_build(cfg, train_set, scale, offset), dev)
    if net.n_parameters == 0:
        raise ConfigError(
            f"model {cfg.model!r} has no trainable parameters; score it with evaluate_model "
            "(climdown evaluate) instead of training it"
        )
    disc = to_device(make_discriminator(net), dev) if isinstance(net, GANModel) else None
    opts: dict[str, torch.optim.Optimizer] = {
        "model": torch.optim.Adam(net.parameters(), lr=cfg.lr)
    }
    if disc is not None:
        opts["discriminator"] = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
    # the discriminator trains only where its term counts: with adversarial_weight 0 it keeps
    # its initial weights (still saved, so checkpoints keep one layout) and a step is a CNN's
    adversary = disc if cfg.adversarial_weight > 0.0 else None
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_val_rmse": math.inf,
        "best_epoch": None,
        "stopped_early": False,
    }
    meta = _meta(train_set, store, cfg)
    if resume and last_path.is_file():
        state = _restore(last_path, net, disc, opts, cfg, dev, meta["store_fingerprint"])
        if main:
            _keep_log_until(log_path, state["epoch"])
    elif main:
        log_path.unlink(missing_ok=True)
        best_path.unlink(missing_ok=True)
        for old in out.glob("epoch-*.pt"):
            old.unlink()
    if main:
        _warn_few_steps(len(train_set), cfg)
    owns_group = cdist.init_process_group(env, dev)
    forward: torch.nn.Module | None = None
    try:
        forward = _wrap_ddp(net, dev) if env.distributed else net
        show = progress and main
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if state.get("stopped_early"):
                break
            t0 = time.perf_counter()
            flips = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            loader, weights = _epoch_loader(
                train_set, cfg.batch_size, cfg.seed + epoch, num_workers, env, cfg.max_steps
            )
            n_batches = len(weights)
            bar = tqdm(
                loader,
                total=n_batches,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=None if show else True,  # None: only on a terminal
            )
            net.train()
            sums = [0.0, 0.0, 0.0]  # loss x samples, discriminator loss x samples, samples
            first_step = 0.0  # loader set-up + the first step: the one-off cost of an epoch
            for i, batch in enumerate(bar):
                if i >= n_batches:
                    break
                x, y, area = (batch[k] for k in ("lr", "hr", "area"))
                if cfg.augment:
                    x, y, area = augment(x, y, area, flips)
                x, y, area = x.to(dev), y.to(dev), area.to(dev)
                pred, loss, d_loss = _step(
                    net,
                    adversary,
                    opts,
                    x,
                    y,
                    area,
                    amp,
                    forward=forward,
                    weight=weights[i],
                    env=env,
                    cfg=cfg,
                )
                state["step"] += 1
                if i == 0:
                    first_step = time.perf_counter() - t0
                n_here = len(x) if weights[i] > 0 else 0  # a weight-0 stand-in counts for none
                sums[0] += loss * n_here
                sums[1] += d_loss * n_here
                sums[2] += n_here
                if show:
                    mass = metrics.mass_violation(pred, x, area[:, None, None], net.factor)[
                        "max_abs"
                    ]
                    bar.set_postfix(loss=f"{loss:.4g}", mass=f"{mass:.1e}")
            bar.close()
            loss_sum, d_loss_sum, seen = cdist.all_sum(sums, dev)
            train_time = time.perf_counter() - t0

            record = {"epoch": epoch, "step": state["step"], "train_loss": loss_sum / max(seen, 1)}
            if adversary is not None:
                record["train_d_loss"] = d_loss_sum / max(seen, 1)
            if main:  # validation and files on rank 0; the others wait for its record
                record.update(
                    validate_split(
                        net,
                        val_set,
                        batch_size=cfg.batch_size,
                        device=dev,
                        members=_val_members(cfg),
                        seed=cfg.seed,
                    )
                )
                record.update(
                    train_time_s=train_time,
                    first_step_s=first_step,
                    time_s=time.perf_counter() - t0,
                )
            record = cdist.broadcast_object(record)
            state["epoch"] = epoch
            score = record[cfg.select]
            if score < state["best_val_rmse"]:
                state.update(best_val_rmse=score, best_epoch=epoch)
                if main:
                    save_checkpoint(
                        best_path, net, meta=meta, extra={"epoch": epoch, "val": record}
                    )
            elif cfg.patience is not None and epoch - (state["best_epoch"] or 0) >= cfg.patience:
                state["stopped_early"] = True
            if main and cfg.keep_epochs:
                save_checkpoint(
                    out / f"epoch-{epoch:03d}.pt",
                    net,
                    meta=meta,
                    extra={"epoch": epoch, "val": record},
                )
            if main:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                extra = {
                    "state": state,
                    "config": cfg.to_dict(),
                    "rng": _rng_state(),
                    "discriminator": None if disc is None else disc.state_dict(),
                }
                save_checkpoint(last_path, net, meta=meta, optimizer=opts, extra=extra)
            if main:
                log.info(_epoch_line(record))
                if state["stopped_early"]:
                    log.info(
                        f"early stop after epoch {epoch}: {cfg.select} has not improved for "
                        f"{cfg.patience} epochs (best {state['best_val_rmse']:.4g} kg m-2 at "
                        f"epoch {state['best_epoch']})"
                    )
        cdist.barrier()  # every rank returns after rank 0 has written its files
    finally:
        # the DDP wrapper goes before its process group: a reducer outliving the group can
        # block the process when it is freed
        forward = None
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()

    return {
        "best_val_rmse": state["best_val_rmse"],
        "select": cfg.select,
        "best_epoch": state["best_epoch"],
        "epochs": state["epoch"],
        "stopped_early": bool(state.get("stopped_early")),
        "steps": state["step"],
        "device": str(dev),
        "n_parameters": net.n_parameters,
        "out": str(out),
        "best": str(best_path) if best_path.is_file() else None,
        "last": str(last_path) if last_path.is_file() else None,
        "log": str(log_path) if log_path.is_file() else None,
    }


def _val_members(cfg: TrainConfig) -> int:
    """Members per validation sample: ``crps_members`` when the CRPS selects, else 0.

    Only then: the ensemble's draws come from a seeded stream of their own, while a plain
    validation draws member 0's noise from the training run's stream, so switching on the
    CRPS for other runs would change their training noise from epoch 2 on, and with it the
    results of rows trained before (docs/results.md, E10c4s-rhine)."""
    return cfg.crps_members if cfg.select == "val_crps_area" else 0


def augment(
    x: torch.Tensor, y: torch.Tensor, area: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each sample of a batch flipped and turned by one of the eight symmetries of a square.

    ``x`` ``[B, T, C, h, w]``, ``y`` ``[B, T, C, H, W]`` and ``area`` ``[B, H, W]`` of one
    sample get the same transform (drawn from ``generator``), so the coarse input is still
    the area-weighted coarsening of the fine field and the constraint conserves what it
    did. Non-square patches get the four flips only (a quarter turn would change the shape).
    """
    square = x.shape[-1] == x.shape[-2]
    ops = torch.randint(0, 8 if square else 4, (len(x),), generator=generator).tolist()
    out: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] = ([], [], [])
    for i, op in enumerate(ops):
        for parts, t in zip(out, (x[i], y[i], area[i]), strict=True):
            t = torch.rot90(t, op // 4, dims=(-2, -1)) if op >= 4 else t
            flip = [d for d, bit in ((-2, 1), (-1, 2)) if op & bit]
            parts.append(torch.flip(t, flip) if flip else t)
    return torch.stack(out[0]), torch.stack(out[1]), torch.stack(out[2])


def _warn_few_steps(n_samples: int, cfg: TrainConfig) -> None:
    """A WARNING when the data give an epoch fewer than :data:`MIN_STEPS` optimiser steps.

    An epoch cut short on purpose (``max_steps``, e.g. a timing run) is not warned about: the
    advice (a smaller batch) would be wrong there.
    """
    steps = math.ceil(n_samples / cfg.batch_size)
    if cfg.epochs == 0 or steps >= MIN_STEPS:
        return
    suggest = max(1, n_samples // (2 * MIN_STEPS))
    log.warning(
        f"each epoch is only {steps} optimiser step(s) ({n_samples} training samples, "
        f"batch_size={cfg.batch_size}): {cfg.epochs} epoch(s) make {steps * cfg.epochs} steps, "
        f"too few for the model to learn much; use a smaller batch (e.g. batch_size={suggest}) "
        "or more training samples"
    )


def _step(
    net: ConstrainedModel,
    disc: torch.nn.Module | None,
    opts: dict[str, torch.optim.Optimizer],
    x: torch.Tensor,
    y: torch.Tensor,
    area: torch.Tensor,
    amp: torch.dtype | None = None,
    *,
    forward: torch.nn.Module | None = None,
    weight: float = 1.0,
    env: cdist.DistEnv | None = None,
    cfg: TrainConfig | None = None,
) -> tuple[torch.Tensor, float, float]:
    """One optimiser step; returns (detached prediction, loss, discriminator loss or 0).

    ``forward`` is ``net`` or its DDP wrapper; ``weight`` scales the losses before the
    backward passes (this rank's share of the global batch, see
    :func:`climdown.ddp.rank_batches`). The returned losses are unweighted. ``cfg`` gives the
    loss settings (adversarial weight, MSE or CRPS); None = the study's.
    """
    cfg = cfg or TrainConfig()
    s = net.scale
    world = 1 if env is None else env.world_size
    autocast = torch.autocast(x.device.type, dtype=amp, enabled=amp is not None)
    k = cfg.crps_members if cfg.loss == "crps" else 1
    with autocast:
        # k calls draw k independent noise fields (a GAN); [k, B, T, C, H, W] in kg m-2,
        # float32 (the constraint's)
        ens = torch.stack([(forward or net)(x, area) for _ in range(k)])
    pred = ens[0]
    if k > 1:
        data_loss = crps_loss(ens / s, y / s)
    else:
        data_loss = mse_loss(pred / s, y / s, area if cfg.loss == "mse_area" else None)
    d_loss = torch.zeros(())
    if disc is None:
        loss = data_loss
    else:
        # discriminator first, on a detached fake; then the generator against the updated D
        with autocast:
            d_loss = discriminator_loss(disc(y, x), disc(pred.detach(), x))
        opts["discriminator"].zero_grad(set_to_none=True)
        (d_loss * weight if weight != 1.0 else d_loss).backward()
        cdist.average_gradients(disc, world)
        opts["discriminator"].step()
        disc.requires_grad_(False)  # the generator step needs gradients through D, not for D
        with autocast:
            d_fake = disc(pred, x)
        loss = generator_loss(
            pred / s, y / s, d_fake.float(), adv_weight=cfg.adversarial_weight, data=data_loss
        )
        disc.requires_grad_(True)
    loss = loss + net.penalty(pred, x, area)
    opts["model"].zero_grad(set_to_none=True)
    (loss * weight if weight != 1.0 else loss).backward()
    opts["model"].step()
    return pred.detach(), float(loss.detach()), float(d_loss.detach())


def _wrap_ddp(net: ConstrainedModel, device: torch.device) -> torch.nn.Module:
    """``net`` in DistributedDataParallel (which broadcasts rank 0's weights at once)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def _epoch_loader(
    dataset: PatchDataset,
    batch_size: int,
    seed: int,
    num_workers: int,
    env: cdist.DistEnv,
    max_steps: int | None,
) -> tuple[Any, list[float]]:
    """The epoch's loader over this rank's samples, and its per-step loss weights.

    The global batches are read once off ``make_loader(range(n), batch_size, seed=seed)``
    (so the shuffling is torch's own and equals ``make_loader(dataset, ..., seed=seed)``'s
    first pass), cut to ``max_steps``; each rank reads its part of every global batch
    (:func:`climdown.ddp.rank_batches`). One process reads whole batches with weight
    1. The loader gets its own generator, so iterating it never draws from torch's global
    RNG (which the GAN's noise uses).
    """
    indices: Any = range(len(dataset))  # a sequence is all a DataLoader needs of a dataset
    order = make_loader(indices, batch_size=batch_size, shuffle=True, seed=seed)
    global_batches = [b.tolist() for b in order][:max_steps]
    mine = cdist.rank_batches(global_batches, env.rank, env.world_size)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[idx for idx, _ in mine],
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(int(seed)),
    )
    return loader, [w for _, w in mine]


# ---------------------------------------------------------------------------------------
# Helpers: device, model, normalisation, resume, metadata, log
# ---------------------------------------------------------------------------------------
def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None for ``fp32``; ``torch.bfloat16`` for ``bf16`` on CPU or CUDA."""
    if precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"precision 'bf16' runs on CPU or CUDA, not {device.type!r}; use 'fp32'")
    return torch.bfloat16


def normalisation_scale(store: str | os.PathLike) -> float:
    """The store's normalisation scale (kg m-2, computed on train HR when it was built).

    Raises
    ------
    StoreError
        If the store is missing, incomplete, or records no usable (positive, finite) scale.
    """
    return float(normalisation(store)["scale"])


def _normalisation(store: str | os.PathLike, kind: str) -> tuple[float, float]:
    """(scale, offset) of the model's input normalisation from the store's record."""
    if kind == "scale":
        return normalisation_scale(store), 0.0
    rec = normalisation(store)
    lo, hi = float(rec.get("min", np.nan)), float(rec.get("max", np.nan))
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise StoreError(
            f"store {str(store)!r} records no usable training min/max ({lo}, {hi}) for "
            "normalisation 'minmax'; rebuild it with this climdown or use normalisation 'scale'"
        )
    return hi - lo, lo


def _build(
    cfg: TrainConfig, dataset: PatchDataset, scale: float, offset: float = 0.0
) -> ConstrainedModel:
    """The model of this config, sized for the dataset (factor, frames, channels)."""
    item = dataset[0]
    frames, channels = int(item["lr"].shape[0]), int(item["lr"].shape[1])
    option = CONSTRAINTS[cfg.constraint].penalty_option  # the soft constraint's weight
    constraint_options = None if option is None else {option: cfg.soft_lambda}
    return get_model(
        cfg.model,
        int(dataset.factor),
        cfg.constraint,
        scale=scale,
        offset=offset,
        frames=frames,
        channels=channels,
        constraint_options=constraint_options,
        **cfg.model_options,
    )


def _rng_state() -> dict[str, Any]:
    """The torch RNG states (weights init, GAN noise); shuffling has its own seeded generator.

    numpy's and Python's global RNGs are not used by the loop, the dataset or the models.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def _restore(
    path: Path,
    net: ConstrainedModel,
    disc: torch.nn.Module | None,
    opts: dict[str, torch.optim.Optimizer],
    cfg: TrainConfig,
    device: torch.device,
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """Load weights, optimiser and RNG states from ``last.pt``; returns the loop state.

    The saved config must equal ``cfg`` in every :attr:`TrainConfig.RESUME_KEYS` field
    (epochs and max_steps may differ: a run is continued to more epochs), and the run must have
    trained on the same data: the store's recipe hash and normalisation (``fingerprint``).
    """
    ckpt = read_checkpoint(path, device=device)
    extra = ckpt.get("extra") or {}
    saved_store = (ckpt.get("meta") or {}).get("store_fingerprint")
    if saved_store != fingerprint:
        raise ConfigError(
            f"{str(path)!r} holds a run trained on other data (store fingerprint {saved_store}, "
            f"this store's is {fingerprint}): resuming would mix two stores' normalisation and "
            "logs; pass resume=False to start afresh there, or "
            "choose another out folder"
        )
    saved: Any
    try:
        saved = TrainConfig.from_mapping(extra.get("config") or {}).resume_key()
    except ConfigError:
        saved = extra.get("config")
    if saved != cfg.resume_key():
        raise ConfigError(
            f"{str(path)!r} holds a run with settings {saved}, not {cfg.resume_key()}; pass "
            "resume=False to start afresh there, or choose "
            "another out folder"
        )
    try:
        net.load_state_dict(ckpt["state_dict"])
        for name, opt in opts.items():
            opt.load_state_dict(ckpt["optimizer"][name])
        if disc is not None:
            disc.load_state_dict(extra["discriminator"])
        _set_rng_state(extra["rng"])
        state = dict(extra["state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: it lacks or mismatches training state ({err}); "
            "pass resume=False to start afresh"
        ) from err
    return state


def _meta(dataset: PatchDataset, store: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Checkpoint metadata: what the weights mean without the store at hand."""
    return {
        "variable": getattr(dataset, "variable", None),
        "units": getattr(dataset, "units", None),
        "normalisation": dict(getattr(dataset, "stats", None) or {}),
        **patch_spacing(dataset),
        # how the model must be given its input: the store's row/column order and the time
        # step between frames (seconds); a store built before they were recorded still has
        # its patches' coordinates, in the order the model saw them
        "orientation": Orientation.from_meta(
            dataset.attrs.get("orientation") or dataset.grid(0).orientation
        ).as_dict(),
        "time_step_s": dataset.attrs.get("time_step_s"),
        "store": str(store),
        "store_fingerprint": _fingerprint(store),
        "training": cfg.to_dict(),
    }


def _fingerprint(store: str | os.PathLike) -> dict[str, Any]:
    """What identifies a store's data: its recipe hash and its normalisation statistics."""
    info = store_info(store)
    return {"recipe_hash": info.get("recipe_hash"), "normalisation": info.get("normalisation")}


def _keep_log_until(log_path: Path, epoch: int) -> None:
    """Drop log records after ``epoch`` (written by a run interrupted before its checkpoint)."""
    if not log_path.is_file():
        return
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= epoch]
    log_path.write_text("".join(ln + "\n" for ln in kept))


def _epoch_line(record: dict[str, Any]) -> str:
    crps = record.get("val_crps_area")
    return (
        f"epoch {record['epoch']}: loss {record['train_loss']:.4g}, "
        f"val RMSE {record['val_rmse']:.4g} kg m-2, "
        + (f"val CRPS {crps:.4g} kg m-2, " if crps is not None else "")
        + f"mass violation {record['val_mass_violation']:.2e} kg m-2, "
        f"neg {record['val_neg']}, {record['time_s']:.1f} s"
    )
