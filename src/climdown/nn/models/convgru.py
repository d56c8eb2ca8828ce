"""The study's ConvGRU backbone: per-frame convolutions around a convolutional GRU over time.

Layout (all convolutions 3x3, at the coarse resolution; frames run in order t = 0 .. T-1)::

    pre:  conv C->64, ReLU, conv 64->64, ReLU         per frame
    GRU:  ConvGRU cell, hidden 64, state h_t           carried across frames (h_-1 = 0)
    post: conv 64->64, ReLU, conv 64->64, ReLU         per frame, on h_t
    head: conv 64 -> C f^2, PixelShuffle(f)            output frame t

so the output at frame t sees frames 0..t. With T = 1 it is a plain feed-forward network.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError
from climdown.nn.models.cnn import (
    PixelShuffleHead,
    conv3x3,
    fold_frames,
    unfold_frames,
)
from climdown.validate import positive_int

__all__ = ["ConvGRUCell", "ConvGRU"]


class ConvGRUCell(nn.Module):
    """Convolutional GRU cell.

    ``r, u = sigmoid(conv([x, h]))``, ``c = tanh(conv([x, r h]))``, ``h' = (1 - u) h + u c``.
    """

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = conv3x3(inputs + hidden, 2 * hidden)
        self.candidate = conv3x3(inputs + hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, inputs, h, w]``, ``h`` ``[N, hidden, h, w]`` -> new ``h``."""
        r, u = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - u) * h + u * c


class ConvGRU(nn.Module):
    """ConvGRU backbone: ``[B, T, C, h, w]`` (normalised) -> raw z ``[B, T, C, H, W]``.

    Parameters
    ----------
    factor : int
        Downscaling factor f (any positive integer).
    channels : int
        Physical channels C.
    width : int
        Channels of the pre/post convolutions (64).
    hidden : int
        Hidden channels of the GRU state (64 in the study).
    """

    options: ClassVar[dict[str, Any]] = {"width": 64, "hidden": 64, "layout": "fast"}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        hidden: int = 64,
        layout: str = "fast",
    ) -> None:
        super().__init__()
        if layout != "fast":
            raise ConfigError(
                f"unknown ConvGRU layout {layout!r}; choose 'fast' or 'reference' "
                "(get_model('convgru', layout='reference'))"
            )
        self.factor = positive_int(factor, "factor")
        width = positive_int(width, "option 'width'")
        hidden = positive_int(hidden, "option 'hidden'")
        self.pre = nn.Sequential(
            conv3x3(channels, width), nn.ReLU(), conv3x3(width, width), nn.ReLU()
        )
        self.cell = ConvGRUCell(width, hidden)
        self.post = nn.Sequential(
            conv3x3(hidden, width), nn.ReLU(), conv3x3(width, width), nn.ReLU()
        )
        self.head = PixelShuffleHead(width, channels, self.factor)

    def transition(
        self, h: torch.Tensor, prev: torch.Tensor | None, cur: torch.Tensor
    ) -> torch.Tensor:
        """The state handed from the previous frame to this one (identity; FlowConvGRU warps)."""
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``."""
        b, t, _, hh, ww = x.shape
        feats = unfold_frames(self.pre(fold_frames(x)), b)  # [B, T, width, h, w]
        state = feats.new_zeros(b, self.cell.hidden, hh, ww)
        states = []
        for i in range(t):
            prev = x[:, i - 1] if i else None
            state = self.cell(feats[:, i], self.transition(state, prev, x[:, i]))
            states.append(state)
        hs = torch.stack(states, 1)  # [B, T, hidden, h, w]
        return unfold_frames(self.head(self.post(fold_frames(hs))), b)
