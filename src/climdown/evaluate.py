"""Scoring a model on a store split: validation during training, evaluation tables after it.

* :func:`validate`: the per-epoch validation scores the trainer logs;
* :func:`evaluate_model`: every score of :func:`climdown.metrics.score_table` on one split of a
  store, with an ensemble (CRPS) for models that sample (the GAN);
* :func:`evaluate_checkpoint`: a checkpoint beside the bicubic, nearest and pycnophylactic
  baselines (and bicubic with the model's own constraint), as ``climdown evaluate`` prints it;
* :func:`markdown_table`: the one Markdown table writer (here and in the study), and
  :func:`format_table`: scored rows through it.

All scores are in physical units (kg m-2), never on the normalised scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from climdown import metrics
from climdown import validate as validate_options
from climdown.data.dataset import PatchDataset, make_loader
from climdown.errors import ConfigError
from climdown.nn.device import pick_device, to_device
from climdown.nn.normalize import ConstrainedModel

__all__ = [
    "validate",
    "evaluate_model",
    "evaluate_checkpoint",
    "markdown_table",
    "format_table",
    "COLUMNS",
]

#: Score keys of a table row, in column order, and their headers.
COLUMNS = (
    "MSE",
    "RMSE",
    "RMSE_area_weighted",
    "PSNR",
    "MAE",
    "SSIM",
    "neg_num",
    "CRPS",
    "mass_violation_rel",
    "blockiness",
)
HEADERS = (
    "MSE",
    "RMSE",
    "RMSE (area)",
    "PSNR",
    "MAE",
    "SSIM",
    "neg num",
    "CRPS",
    "mass viol. (rel)",
    "blockiness",
)


def _per_sample(area: torch.Tensor) -> torch.Tensor:
    """Fine-cell areas ``[B, H, W]`` -> ``[B, 1, 1, H, W]``, to broadcast against ``[B, T, C, H, W]``."""
    return area[:, None, None]


@torch.no_grad()
def predict(
    net: ConstrainedModel, dataset: PatchDataset, batch_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Run ``net`` over a whole split in order; CPU tensors ``pred``, ``hr``, ``lr``, ``area``."""
    was_training = net.training
    net.eval()
    parts: dict[str, list[torch.Tensor]] = {"pred": [], "hr": [], "lr": [], "area": []}
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False):
        x, area = batch["lr"].to(device), batch["area"].to(device)
        parts["pred"].append(net(x, area).cpu())
        for key in ("hr", "lr", "area"):
            parts[key].append(batch[key])
    net.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def validate(
    net: ConstrainedModel,
    dataset: PatchDataset,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    members: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Scores of ``net`` on a split, for the training log.

    Parameters
    ----------
    members : int
        0 (default): score one prediction per sample. At least 2, for a model that samples
        (the GAN): draw that many members per sample, with noise from a generator seeded
        with ``seed`` (the same draws every epoch), score member 0 as above and add their
        fair CRPS.

    Returns
    -------
    dict
        ``val_rmse`` and ``val_rmse_area`` (area-weighted) in kg m-2, ``val_mass_violation``
        (largest ``|coarsen(pred) - lr|`` over all coarse cells, kg m-2),
        ``val_mass_violation_rel`` (that, relative to the mean ``|lr|``) and ``val_neg`` (count
        of negative pixels); with ``members``, also ``val_crps_area`` (the fair CRPS per
        pixel, averaged with the cell areas as weights, kg m-2).

    Raises
    ------
    ConfigError
        If ``members`` is 1, or given for a model that does not sample.
    """
    dev = torch.device(device)
    extra: dict[str, float] = {}
    if members:
        if members < 2 or getattr(net, "sample", None) is None:
            raise ConfigError(
                f"validate(members={members}) needs at least 2 members of a model that samples "
                f"(the GAN), not {type(net).__name__}; pass members=0"
            )
        p, extra = _validate_ensemble(net, dataset, batch_size, dev, members, seed)
    else:
        p = predict(net, dataset, batch_size, dev)
    area = _per_sample(p["area"])
    mv = metrics.mass_violation(p["pred"], p["lr"], area, net.factor)
    return {
        "val_rmse": metrics.rmse(p["pred"], p["hr"]),
        "val_rmse_area": metrics.rmse(p["pred"], p["hr"], area=area),
        "val_mass_violation": mv["max_abs"],
        "val_mass_violation_rel": mv["max_rel"],
        "val_neg": metrics.neg_count(p["pred"]),
        **extra,
    }


@torch.no_grad()
def _validate_ensemble(
    net: Any, dataset: PatchDataset, batch_size: int, device: torch.device, members: int, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Member 0 of each sample (as :func:`predict` gives it) and the area-weighted fair CRPS."""
    was_training = net.training
    net.eval()
    weighted, weights = 0.0, 0.0
    parts: dict[str, list[torch.Tensor]] = {}
    for batch, ens in _ensembles(net, dataset, batch_size, device, members, seed, parts):
        crps = metrics.crps_pixels(ens.double(), batch["hr"].double(), member_axis=0, fair=True)
        w = _per_sample(batch["area"].double()).expand_as(crps)
        weighted += float((crps * w).sum())
        weights += float(w.sum())
    net.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}, {"val_crps_area": weighted / weights}


@torch.no_grad()
def evaluate_model(
    model: ConstrainedModel,
    store: str | os.PathLike,
    split: str = "val",
    *,
    batch_size: int = 64,
    device: str = "cpu",
    members: int = 10,
    seed: int = 0,
    cache: bool = True,
) -> dict[str, Any]:
    """All scores of ``model`` on one split of a store (one row of the evaluation table).

    Parameters
    ----------
    model : ConstrainedModel
        E.g. from :func:`climdown.checkpoint.load_checkpoint` or a baseline from ``get_model``.
    store : path
        The store; its factor must be the model's.
    split : str
        ``"val"`` (model selection) or ``"test"`` (the reported numbers).
    batch_size : int
        Samples per forward pass.
    device : str
        ``"auto"`` or a torch device string.
    members : int
        Ensemble size for models that sample (the GAN): each sample gets ``members``
        independent noise draws, from a generator seeded with ``seed``.
    seed : int
        Seed of the ensemble noise.
    cache : bool
        Read the split into memory once.

    Returns
    -------
    dict
        :func:`climdown.metrics.score_table` of the prediction (MSE, RMSE, PSNR, MAE, SSIM,
        neg_num, mass violation, area-weighted RMSE/MAE; kg m-2), with ``n_samples``. For
        ensembles the point scores are those of member 0 (one draw, as a user gets it), and
        ``CRPS`` (the standard ECDF estimator) and ``CRPS_fair`` are over all members.

    Raises
    ------
    ConfigError
        If the model's factor is not the store's.
    """
    dev = pick_device(device)
    dataset = PatchDataset(store, split, cache=cache)
    if int(model.factor) != int(dataset.factor):
        raise ConfigError(
            f"the model downscales by factor {model.factor} but store {str(store)!r} holds "
            f"factor-{dataset.factor} pairs; evaluate it on a store built at factor {model.factor}"
        )
    model = to_device(model, dev).eval()
    sampler = getattr(model, "sample", None) if members else None
    if sampler is None:
        p = predict(model, dataset, batch_size, dev)
        crps: dict[str, Any] = {}
    else:
        p, crps = _predict_ensemble(model, dataset, batch_size, dev, members, seed)
    row: dict[str, Any] = metrics.score_table(
        p["pred"], p["hr"], p["lr"], _per_sample(p["area"]), model.factor
    )
    row.update(crps)
    row["n_samples"] = int(p["pred"].shape[0])
    return row


def _predict_ensemble(
    model: Any,
    dataset: PatchDataset,
    batch_size: int,
    device: torch.device,
    members: int,
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Member-0 predictions of a sampling model, and the ensemble's scores over all members.

    CRPS, the ensemble mean's squared error and the spread are means over pixels, so batch
    means weighted by batch size give the set's; the rank histogram's counts add up.
    """
    parts: dict[str, list[torch.Tensor]] = {}
    sums = {"CRPS": 0.0, "CRPS_fair": 0.0, "spread2": 0.0, "skill2": 0.0}
    ranks = None
    n = 0
    for batch, ens in _ensembles(model, dataset, batch_size, device, members, seed, parts):
        b = ens.shape[1]
        sums["CRPS"] += b * metrics.crps_ensemble(ens, batch["hr"], member_axis=0)
        if members > 1:
            sums["CRPS_fair"] += b * metrics.crps_ensemble(
                ens, batch["hr"], member_axis=0, fair=True
            )
            ss = metrics.spread_skill(ens, batch["hr"], member_axis=0)
            sums["spread2"] += b * ss["spread"] ** 2
            sums["skill2"] += b * ss["skill"] ** 2
        hist = metrics.rank_histogram(ens, batch["hr"], member_axis=0, seed=seed + n)
        ranks = hist if ranks is None else ranks + hist
        n += b
    scores: dict[str, Any] = {"CRPS": sums["CRPS"] / n, "members": members}
    if members > 1:
        spread, skill = math.sqrt(sums["spread2"] / n), math.sqrt(sums["skill2"] / n)
        scores.update(
            CRPS_fair=sums["CRPS_fair"] / n,
            RMSE_ens_mean=skill,
            spread=spread,
            spread_skill=spread / skill if skill else math.inf,
        )
    scores["rank_histogram"] = [int(c) for c in (ranks if ranks is not None else [])]
    return {k: torch.cat(v) for k, v in parts.items()}, scores


def _ensembles(
    model: Any,
    dataset: PatchDataset,
    batch_size: int,
    device: torch.device,
    members: int,
    seed: int,
    parts: dict[str, list[torch.Tensor]],
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """``(batch, members [M, B, T, C, H, W] on the CPU)`` over a split in order, the noise drawn
    from a generator seeded with ``seed``; appends member 0 (``pred``), ``hr``, ``lr`` and
    ``area`` of every batch to ``parts`` (filled in place)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    for key in ("pred", "hr", "lr", "area"):
        parts[key] = []
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False):
        x, area = batch["lr"].to(device), batch["area"].to(device)
        ens = model.sample(x, area, members=members, generator=gen).cpu()
        parts["pred"].append(ens[0])
        for key in ("hr", "lr", "area"):
            parts[key].append(batch[key])
        yield batch, ens


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------
def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "–"
    if key == "neg_num":
        return f"{int(value)}"
    if key == "mass_violation_rel":
        return f"{value:.1e}"
    if key == "blockiness":
        return f"{value:.2f}"
    if key in ("MSE",) and abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}" if key != "PSNR" else f"{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: one header row, then one line per row of (already formatted) cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for cells in rows:
        if len(cells) != len(headers):
            raise ValueError(  # a programming error, not a user's
                f"a row has {len(cells)} cells for {len(headers)} headers: {cells}"
            )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]], *, label: str = "id") -> str:
    """Markdown table of scored rows (columns MSE, RMSE, PSNR, MAE, SSIM, neg num, CRPS, mass).

    Each row is a dict with ``label`` (e.g. ``id`` or ``name``), ``data``, ``model``,
    ``constraint`` and ``scores`` (an :func:`evaluate_model` dict); a missing score is ``–``.
    """
    return markdown_table(
        (label, "data", "model", "constraint", *HEADERS),
        [
            [r.get(label, ""), r["data"], r["model"], r["constraint"]]
            + [_fmt(r["scores"].get(k), k) for k in COLUMNS]
            for r in rows
        ],
    )


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    store: str | os.PathLike[str],
    *,
    split: str = "val",
    out: str | os.PathLike[str] | None = None,
    device: str = "auto",
    members: int = 10,
) -> str:
    """Score a checkpoint on a store split beside the baselines.

    The baselines are bicubic, nearest and pycnophylactic (smooth, conserving, non-negative),
    and bicubic with the checkpoint's own constraint when it has one.

    Writes ``metrics.csv`` and ``metrics.md`` to ``out`` when given; returns the Markdown.

    Raises
    ------
    CheckpointError
        If the checkpoint's factor or variable is not the store's.

    Warns
    -----
    UserWarning
        If the store's grid spacing is more than 2x from the one the checkpoint was trained on
        (:func:`climdown.checkpoint.check_spacing`).
    """
    from climdown.checkpoint import check_spacing, load_checkpoint
    from climdown.data.dataset import patch_spacing
    from climdown.data.store import store_info
    from climdown.nn.models import get_model

    info = store_info(store)
    model, meta = load_checkpoint(
        checkpoint,
        device="cpu",
        expect_factor=int(info["factor"]),
        expect_variable=info.get("variable"),
    )
    # a model scored on a grid far finer or coarser than it was trained on: a warning, as
    # downscale gives (the scores say how much that costs)
    lr_spacing = patch_spacing(PatchDataset(store, split))["lr_spacing_deg"]
    check_spacing(meta, (lr_spacing[0], lr_spacing[1]), str(checkpoint))
    factor = int(info["factor"])
    data = Path(store).stem.upper()
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
    baselines = [("bicubic", "none"), ("nearest", "none"), ("pycnophylactic", "none")]
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
        outp = validate_options.output_folder(out, "out")
        (outp / "metrics.md").write_text(table + "\n")
        keys = sorted({k for r in rows for k in r["scores"]})
        lines = [",".join(["name", "model", "constraint", *keys])]
        for r in rows:
            cells = [r["name"], r["model"], r["constraint"]]
            lines.append(",".join(cells + [_csv_cell(r["scores"].get(k, "")) for k in keys]))
        (outp / "metrics.csv").write_text("\n".join(lines) + "\n")
    return table


def _csv_cell(value: Any) -> str:
    """A score as one CSV cell: a list (the rank histogram's counts) joined by spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)
