"""Scale-only normalisation around a backbone, so the constraint sees physical units.

The backbone sees ``lr / scale`` (order-one numbers, good for training). Its raw output z is
brought back to physical units (``z * scale``) before the constraint layer, unless the layer
takes logits (softmax, whose z is dimensionless), and then put in the form the layer declares
(``Constraint.expects`` and ``Constraint.activation``, softplus for ``mult``): the wrapper
never asks which layer it holds. The constraint therefore conserves and keeps positivity in
kg m-2, not merely in normalised space. Scale-only (no offset) keeps zero at zero,
so dry cells stay dry and the map lr -> lr / scale commutes with the block means.

``offset`` (default 0) is the reference code's min-max normalisation, an option for
reproducing it: the backbone sees ``(lr - offset) / scale`` and, as in the reference, the
constraint runs on the normalised field, ``y = offset + scale * constraint(z, (lr - offset) /
scale)``. Mass is still conserved exactly (the map is affine and block means commute with it),
but a positive constraint keeps ``y >= 0`` only where ``lr >= offset`` (the reference's
softmax gives ``min + (x - min) w``): the default, scale-only form keeps it everywhere.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from climdown.errors import GridShapeError
from climdown.grid import block_weights
from climdown.nn.constraints import Constraint, get_constraint

__all__ = ["ConstrainedModel", "area_weights"]


def area_weights(area: torch.Tensor | None, factor: int, like: torch.Tensor) -> torch.Tensor | None:
    """Block-normalised weights ``[B, 1, 1, H, W]`` from fine-cell areas ``[B, H, W]`` or ``[H, W]``.

    Computed in float64 (areas span orders of magnitude near the poles), returned in the dtype
    and on the device of ``like``.
    """
    if area is None:
        return None
    a = torch.as_tensor(area, device=like.device).to(torch.float64)
    w = block_weights(a, factor)
    if w.ndim == 2:
        w = w[None]
    return w[:, None, None].to(like.dtype)


class ConstrainedModel(nn.Module):
    """``y = constraint(denormalise(backbone(lr / scale)), lr, w)``.

    Parameters
    ----------
    backbone : nn.Module
        Maps ``[B, T, C, h, w]`` (normalised) to ``[B, T, C, H, W]`` raw output z.
    constraint : str or Constraint
        See :mod:`climdown.nn.constraints`.
    factor : int
        Downscaling factor.
    scale : float
        Normalisation scale in physical units (e.g. the training HR standard deviation).
    offset : float
        Normalisation offset in physical units (0: scale-only; the training minimum for the
        reference's min-max normalisation, with ``scale`` = max - min). Not a weight: it is
        recorded in ``config`` and rebuilt from there.
    config : dict, optional
        The arguments that rebuild this model (recorded in checkpoints).
    """

    scale: torch.Tensor  # buffer: the normalisation scale, a 0-d tensor
    offset: torch.Tensor  # buffer (not in the state dict): the min-max offset, 0-d

    def __init__(
        self,
        backbone: nn.Module,
        constraint: str | Constraint,
        factor: int,
        scale: float = 1.0,
        config: dict[str, Any] | None = None,
        offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.constraint = get_constraint(constraint)
        self.factor = int(factor)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("offset", torch.tensor(float(offset)), persistent=False)
        self.minmax = float(offset) != 0.0
        self.config = dict(config or {})

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Physical units -> what the backbone sees: ``(x - offset) / scale``."""
        return (x - self.offset) / self.scale if self.minmax else x / self.scale

    def raw(self, lr: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Backbone output z in the form the constraint expects (:attr:`Constraint.expects`)."""
        z = self.backbone(self.normalise(lr), **kwargs)
        if not self.constraint.logits and not self.minmax:
            z = z * self.scale
        return self.constraint.activation(z)

    def forward(
        self, lr: torch.Tensor, area: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Downscale ``lr`` ``[B, T, C, h, w]`` (physical units) to ``[B, T, C, H, W]``.

        ``area`` holds fine-cell areas ``[B, H, W]`` (or ``[H, W]``); None = equal weights.
        The constraint runs in at least float32 even under autocast, so conservation holds.
        """
        dtype = torch.promote_types(lr.dtype, torch.float32)
        if getattr(self.backbone, "uses_weights", False) and area is not None:
            # baselines that conserve by themselves (pycnophylactic) need the area shares
            kwargs["weights"] = area_weights(area, self.factor, lr.to(dtype))
        z = self.raw(lr, **kwargs)
        self._check_shapes(lr, z, area)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z, x = z.to(dtype), lr.to(dtype)
            w = area_weights(area, self.factor, z)
            if self.minmax:  # the reference's form: constrain the normalised field
                return self.offset + self.scale * self.constraint(z, self.normalise(x), w)
            return self.constraint(z, x, w)

    def _check_shapes(self, lr: torch.Tensor, z: torch.Tensor, area: torch.Tensor | None) -> None:
        want = (lr.shape[-2] * self.factor, lr.shape[-1] * self.factor)
        if tuple(z.shape[-2:]) != want:
            raise GridShapeError(
                f"backbone returned a {tuple(z.shape[-2:])} grid for a {tuple(lr.shape[-2:])} "
                f"input, expected {want} for factor {self.factor}: the backbone was built for "
                "another factor"
            )
        if area is None:
            return
        if tuple(area.shape[-2:]) != want:
            raise GridShapeError(
                f"area has shape {tuple(area.shape)}, expected fine-cell areas [..., {want[0]}, "
                f"{want[1]}] (factor {self.factor} x the input grid {tuple(lr.shape[-2:])})"
            )
        if area.ndim == 3 and area.shape[0] not in (1, lr.shape[0]):
            raise GridShapeError(
                f"area has batch size {area.shape[0]} but the input has {lr.shape[0]}; pass "
                "one area per sample [B, H, W] or one for all [H, W]"
            )

    def penalty(
        self, y: torch.Tensor, lr: torch.Tensor, area: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The constraint's loss term (soft constraint), on the normalised scale."""
        w = area_weights(area, self.factor, y)
        return self.constraint.penalty(self.normalise(y), self.normalise(lr), w)
