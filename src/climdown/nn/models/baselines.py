"""Parameter-free baselines (nearest, bilinear, bicubic) with the models' interface.

Each interpolates the coarse input to the fine grid and hands the result to the constraint layer
as its raw output z, encoded for that layer:

- value-taking layers (``none``, ``add``, ``scadd``, ``clip``, ``soft``): z = the interpolated
  field itself (the wrapper rescales it to physical units);
- ``softmax`` (logits): z = log(max(v, tiny)), so the layer returns
  ``y = x v / sum_j w_j v_j``: the interpolated shape rescaled to conserve each block exactly,
  positive, with no training (bicubic + softmax is the study's missing cheap baseline);
- ``mult`` (the wrapper applies softplus to z in physical units): z = softplus^-1(max(v, tiny)),
  so the layer again sees the interpolated shape v.

``nearest`` is block constant, so it conserves by itself (equal or area weights alike).
``bilinear``/``bicubic`` use ``torch.nn.functional.interpolate`` with ``align_corners=False``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError
from climdown.grid import block_expand
from climdown.nn.models.cnn import fold_frames, unfold_frames
from climdown.validate import positive_int

__all__ = ["Interpolation", "Nearest", "Bilinear", "Bicubic", "TARGETS"]

TARGETS = ("values", "logits", "positive")


def _inverse_softplus(v: torch.Tensor) -> torch.Tensor:
    """``log(exp(v) - 1)`` for v > 0, written stably as ``v + log(1 - exp(-v))``."""
    return v + torch.log(-torch.expm1(-v))


class Interpolation(nn.Module):
    """Interpolating backbone: ``[B, T, C, h, w]`` (normalised) -> z ``[B, T, C, H, W]``.

    Parameters
    ----------
    factor : int
        Downscaling factor f.
    channels : int
        Physical channels C (recorded; interpolation acts on each channel alike).
    target : {"values", "logits", "positive"}
        How z is encoded for the constraint (see the module docstring); chosen by the registry
        from the constraint.
    scale : float
        The wrapper's normalisation scale; needed for ``positive`` because the wrapper applies
        softplus after rescaling to physical units.
    """

    mode: ClassVar[str] = "nearest"
    options: ClassVar[dict[str, Any]] = {}
    parameter_free: ClassVar[bool] = True

    def __init__(
        self, factor: int, channels: int = 1, *, target: str = "values", scale: float = 1.0
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
        self.factor = positive_int(factor, "factor")
        self.channels = channels
        self.target = target
        self.scale = float(scale)

    def interpolate(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w] -> [N, C, fh, fw]``."""
        if self.mode == "nearest":
            return block_expand(x, self.factor)
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        return nn.functional.interpolate(x, size=size, mode=self.mode, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``."""
        v = unfold_frames(self.interpolate(fold_frames(x)), x.shape[0])
        if self.target == "values":
            return v
        tiny = torch.finfo(v.dtype).tiny
        if self.target == "logits":  # softmax is invariant to the scale: log(v) suffices
            return torch.log(torch.clamp(v, min=tiny))
        return _inverse_softplus(torch.clamp(v * self.scale, min=tiny)) / self.scale

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, factor={self.factor}, target={self.target!r}"


class Nearest(Interpolation):
    """Block-constant upsampling: every fine cell gets its coarse value (conserving by itself)."""

    mode = "nearest"


class Bilinear(Interpolation):
    """Bilinear interpolation (``align_corners=False``)."""

    mode = "bilinear"


class Bicubic(Interpolation):
    """Bicubic interpolation (``align_corners=False``); may overshoot below zero near dry cells."""

    mode = "bicubic"
