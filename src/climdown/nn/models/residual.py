"""Residual learning around an interpolation baseline: ``z = base(x) + gate * net(x)``.

The network learns only the correction to an interpolation (e.g. bicubic) in the space the
constraint expects (values, or logits for softmax), so an untrained model *is* the baseline
and training moves away from it only as far as the data justify. The scalar ``gate`` starts
at zero (as in ReZero), which makes this start exact for any backbone without touching its
layers. With little training data (a few hundred real ERA5 patches) this is what lets a CNN
beat bicubic at all; with the study's 1024+ patches it mainly speeds up training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Residual"]


class Residual(nn.Module):
    """``z = base(x) + gate * net(x, **kwargs)``, ``gate`` a learned scalar starting at 0."""

    def __init__(self, net: nn.Module, base: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.base = base
        self.gate = nn.Parameter(torch.zeros(()))

    @property
    def uses_weights(self) -> bool:
        """Whether the baseline takes the fine cells' block weights (pycnophylactic does)."""
        return bool(getattr(self.base, "uses_weights", False))

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """``[B, T, C, h, w]`` (normalised) -> z ``[B, T, C, H, W]``."""
        base = self.base(x, weights=weights) if self.uses_weights else self.base(x)
        return base + self.gate * self.net(x, **kwargs)
