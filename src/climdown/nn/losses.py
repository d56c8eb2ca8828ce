"""Training losses: MSE, fair CRPS, the GAN's adversarial terms, the soft-constraint penalty.

The study trains every model on MSE; the GAN generator adds ``0.01 x`` a binary cross-entropy
adversarial term and the discriminator is trained on BCE. All adversarial terms take raw
discriminator logits (``binary_cross_entropy_with_logits`` is the numerically stable form).
"""

from __future__ import annotations

import torch
from torch import nn

from climdown.metrics import crps_pixels
from climdown.nn.normalize import ConstrainedModel

__all__ = [
    "mse_loss",
    "crps_loss",
    "adversarial_loss",
    "generator_loss",
    "discriminator_loss",
    "soft_penalty",
]


def mse_loss(
    pred: torch.Tensor, truth: torch.Tensor, area: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error ``mean((pred - truth)^2)`` in the (squared) units of the inputs.

    With ``area`` (the fine cells' areas, ``[B, H, W]`` or ``[H, W]`` for fields
    ``[B, T, C, H, W]``) the mean is weighted by cell area over the whole batch, the error on
    the sphere that the area-weighted RMSE scores: a polar cell counts for its small area, not
    as much as an equatorial one.
    """
    if area is None:
        return nn.functional.mse_loss(pred, truth)
    w = area.to(pred.dtype)
    w = (w if w.dim() == 3 else w.expand(pred.shape[0], *w.shape))[:, None, None]
    w = w.expand_as(pred)
    return ((pred - truth) ** 2 * w).sum() / w.sum()


def crps_loss(members: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Fair CRPS of an ensemble, averaged over pixels: a loss that rewards honest spread.

    Parameters
    ----------
    members : Tensor ``[k, B, T, C, H, W]``
        ``k >= 2`` members drawn with independent noise (gradients flow to each).
    truth : Tensor ``[B, T, C, H, W]``
        The true fine field, in the members' units.

    Notes
    -----
    ``mean_i |x_i - y| - 1/(2 k (k-1)) sum_{i,j} |x_i - x_j|`` at each pixel
    (:func:`climdown.metrics.crps_pixels`, ``fair=True``): its expectation is the CRPS of the
    distribution the members are drawn from, whatever ``k``, and it is minimised when that
    distribution is the truth's. MSE on one member is minimised by ignoring the noise.
    """
    return crps_pixels(members, truth, member_axis=0, fair=True).mean()


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits of discriminator ``logits`` against an all-real (1) or all-fake (0) label."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def generator_loss(
    pred: torch.Tensor,
    truth: torch.Tensor,
    d_fake_logits: torch.Tensor,
    adv_weight: float = 0.01,
    data: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generator loss ``MSE(pred, truth) + adv_weight * BCE(D(pred), real)``.

    Parameters
    ----------
    pred, truth : Tensor ``[B, T, C, H, W]``
        Generated and true fine fields (use normalised units to keep the weight meaningful).
    d_fake_logits : Tensor
        Discriminator logits on ``pred`` (gradients must flow back to the generator).
    adv_weight : float
        Weight of the adversarial term (0.01 in the study's report, 1e-4 in its code).
    data : Tensor, optional
        The data term, when it is not ``MSE(pred, truth)`` (e.g. :func:`crps_loss` of an
        ensemble whose first member is ``pred``).
    """
    data = mse_loss(pred, truth) if data is None else data
    return data + adv_weight * adversarial_loss(d_fake_logits, real=True)


def discriminator_loss(d_real_logits: torch.Tensor, d_fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss ``(BCE(D(real), 1) + BCE(D(fake), 0)) / 2``.

    Pass ``D(pred.detach())`` as ``d_fake_logits`` so this loss does not train the generator.
    """
    return 0.5 * (adversarial_loss(d_real_logits, True) + adversarial_loss(d_fake_logits, False))


def soft_penalty(
    model: ConstrainedModel,
    pred: torch.Tensor,
    lr: torch.Tensor,
    area: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's constraint penalty (``lambda * mean((coarsen(y) - x)^2)`` for ``soft``, else 0).

    Delegates to :meth:`ConstrainedModel.penalty`, which evaluates it on the normalised scale
    with the block-normalised area weights of ``area`` (None = equal weights).
    """
    return model.penalty(pred, lr, area)
