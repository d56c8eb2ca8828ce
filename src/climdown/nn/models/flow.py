"""FlowConvGRU: a ConvGRU whose hidden state is advected between frames by a learned flow.

Before frame t (t >= 1) a small network predicts a 2-channel displacement field
``d = (dx, dy)`` in coarse pixels from the previous and current input frames
``[x_{t-1}, x_t]``; the GRU state is warped backwards along it,

    h_warped(p) = h(p + d(p))      (bilinear, torch.nn.functional.grid_sample)

so features move with the weather instead of being blurred across it (the reference's
SR-FlowConvGRU idea). ``grid_sample`` uses ``align_corners=False`` with pixel-centre sampling
points ``(2 i + 1) / n - 1``, so a zero flow is the identity, and ``padding_mode="border"``.
The flow network's last convolution starts at zero: an untrained model is a plain ConvGRU.
For T = 1 there is nothing to warp and the flow network is unused.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.nn.models.cnn import conv3x3
from climdown.nn.models.convgru import ConvGRU
from climdown.validate import positive_int

__all__ = ["FlowConvGRU", "warp"]


def warp(h: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``h`` ``[N, K, H, W]`` at ``p + flow(p)``; ``flow`` ``[N, 2, H, W]`` in pixels (x, y)."""
    n, _, hh, ww = h.shape
    ys = (2 * torch.arange(hh, device=h.device, dtype=h.dtype) + 1) / hh - 1
    xs = (2 * torch.arange(ww, device=h.device, dtype=h.dtype) + 1) / ww - 1
    gx = xs[None, None, :] + flow[:, 0] * (2.0 / ww)  # [N, H, W]
    gy = ys[None, :, None] + flow[:, 1] * (2.0 / hh)
    grid = torch.stack([gx, gy], dim=-1)  # [N, H, W, 2], (x, y) order as grid_sample wants
    return nn.functional.grid_sample(
        h, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class FlowConvGRU(ConvGRU):
    """ConvGRU with flow-warped state: ``[B, T, C, h, w]`` -> raw z ``[B, T, C, H, W]``.

    Parameters
    ----------
    factor, channels, width, hidden
        As :class:`~climdown.nn.models.convgru.ConvGRU`.
    flow_width : int
        Channels of the flow network's two hidden 3x3 convolutions (32).
    """

    options: ClassVar[dict[str, Any]] = {**ConvGRU.options, "flow_width": 32}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        hidden: int = 64,
        flow_width: int = 32,
        layout: str = "fast",
    ) -> None:
        super().__init__(factor, channels, width=width, hidden=hidden, layout=layout)
        fw = positive_int(flow_width, "option 'flow_width'")
        self.flow = nn.Sequential(
            conv3x3(2 * channels, fw), nn.ReLU(), conv3x3(fw, fw), nn.ReLU(), conv3x3(fw, 2)
        )
        for p in self.flow[-1].parameters():  # weight and bias zero: the flow starts as no warp
            nn.init.zeros_(p)

    def transition(
        self, h: torch.Tensor, prev: torch.Tensor | None, cur: torch.Tensor
    ) -> torch.Tensor:
        """Warp the state along the flow predicted from ``[prev, cur]`` (identity at t = 0)."""
        if prev is None:
            return h
        return warp(h, self.flow(torch.cat([prev, cur], 1)))
