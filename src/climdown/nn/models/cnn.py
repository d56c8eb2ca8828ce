"""The study's residual CNN backbone, in the reference layout and a fast low-resolution layout.

Both layouts share the study's building blocks (3x3 convolutions, ``width`` = 64 channels,
``blocks`` = 4 residual blocks conv-ReLU-conv + skip, ReLU) and map ``[B, T, C, h, w]`` to the raw
output ``z`` ``[B, T, C, H, W]`` with ``H = f h``; frames are folded into the batch (each frame is
downscaled independently).

``reference`` (as the reference code's ``ResNet2``)::

    conv3x3 C->64, ReLU
    ConvTranspose2d(64, 64, k=2, s=2) x log2(p)       p = largest power of two dividing f
    nearest resize x (f / p)                          only when f is not a power of two
    conv3x3, ReLU; 4 residual blocks; conv3x3, ReLU   all at HIGH resolution
    conv1x1 64->C

``fast`` (default)::

    conv3x3 C->64, ReLU
    4 residual blocks; conv3x3, ReLU                  all at LOW resolution
    conv3x3 64 -> C f^2, PixelShuffle(f)              any integer factor, ICNR-initialised

The fast layout does the same number of 3x3 convolutions on f^2 times fewer pixels, which makes
it an order of magnitude faster (see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError
from climdown.validate import positive_int

__all__ = ["CNN", "ResidualBlock", "PixelShuffleHead", "icnr_", "fold_frames", "unfold_frames"]

LAYOUTS = ("fast", "reference")


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, C, h, w] -> [B*T, C, h, w]`` (a view when possible)."""
    b, t, c, h, w = x.shape
    return x.reshape(b * t, c, h, w)


def unfold_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``[B*T, C, H, W] -> [B, T, C, H, W]``."""
    n, c, h, w = x.shape
    return x.reshape(batch, n // batch, c, h, w)


def conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution with 'same' padding."""
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias)


class ResidualBlock(nn.Module):
    """``relu(x + conv(relu(conv(x))))`` with bias-free 3x3 convolutions (the reference's block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(width, width, bias=False)
        self.conv2 = conv3x3(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.relu_(self.conv1(x)))  # in place, as the reference: less memory
        out += x
        return torch.relu_(out)


def icnr_(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """ICNR initialisation of a convolution feeding ``PixelShuffle(factor)``, in place.

    Gives the ``f^2`` output channels that ``PixelShuffle`` spreads over one output channel's
    ``f x f`` sub-pixels the same kernel and bias (those of the first ``C`` of the default
    initialisation, so the fan-in scaling is kept), so the initial output is constant within
    each block: a nearest-neighbour upsampling of a ``C``-channel map, free of the checkerboard
    pattern that independent sub-pixel kernels start with (Aitken et al. 2017, "Checkerboard
    artifact free sub-pixel convolution", arXiv 1707.02937). Under the softmax constraint this
    start *is* the conserving nearest baseline, and training moves sub-pixels apart only as the
    data ask; per epoch it learns markedly faster (docs/benchmarks.md, CNN layouts).
    """
    n = factor**2
    channels = conv.out_channels // n
    with torch.no_grad():
        conv.weight.copy_(conv.weight[:channels].repeat_interleave(n, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[:channels].repeat_interleave(n, dim=0))
    return conv


class PixelShuffleHead(nn.Module):
    """``conv3x3 width -> C f^2`` then ``PixelShuffle(f)``: ``[N, width, h, w] -> [N, C, fh, fw]``.

    The convolution starts from :func:`icnr_` (block-constant output at initialisation).
    """

    def __init__(self, width: int, channels: int, factor: int) -> None:
        super().__init__()
        self.conv = icnr_(conv3x3(width, channels * factor**2), factor)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class CNN(nn.Module):
    """The study's CNN backbone: ``[B, T, C, h, w]`` (normalised) -> raw z ``[B, T, C, H, W]``.

    Parameters
    ----------
    factor : int
        Downscaling factor f (any positive integer).
    channels : int
        Number of physical channels C in and out.
    width : int
        Feature channels of the convolutions (64 in the study).
    blocks : int
        Number of residual blocks (4 in the study).
    layout : {"fast", "reference"}
        ``fast``: residual blocks at low resolution, pixel-shuffle head. ``reference``: transposed
        convolutions first, residual blocks at high resolution, 1x1 output convolution. For a
        factor that is not a power of two, ``reference`` upsamples by the largest power of two
        dividing f with transposed convolutions and by the odd rest with a nearest resize of the
        features (the high-resolution convolutions that follow smooth it).
    extra_inputs : int
        Extra input channels concatenated to the C physical ones (the GAN's noise).

    Raises
    ------
    ConfigError
        For an unknown layout or a non-positive size.
    """

    options: ClassVar[dict[str, Any]] = {"width": 64, "blocks": 4, "layout": "fast"}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        blocks: int = 4,
        layout: str = "fast",
        extra_inputs: int = 0,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown CNN layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.factor = positive_int(factor, "factor")
        width = positive_int(width, "option 'width'")
        blocks = positive_int(blocks, "option 'blocks'")
        self.layout = layout
        cin = channels + extra_inputs
        self.inp = nn.Sequential(conv3x3(cin, width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.post = nn.Sequential(conv3x3(width, width), nn.ReLU(inplace=True))
        if layout == "fast":
            self.head: nn.Module = PixelShuffleHead(width, channels, self.factor)
            return
        pow2 = self.factor & -self.factor  # largest power of two dividing f
        self.up = nn.Sequential(
            *(
                nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)
                for _ in range(pow2.bit_length() - 1)
            )
        )
        self.rest = self.factor // pow2
        self.mid = nn.Sequential(conv3x3(width, width), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(width, channels, kernel_size=1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C_in, h, w] -> [N, C, H, W]`` on folded frames."""
        h = self.inp(x)
        if self.layout == "fast":
            return self.head(self.post(self.blocks(h)))
        h = self.up(h)
        if self.rest > 1:
            size = (h.shape[-2] * self.rest, h.shape[-1] * self.rest)
            h = nn.functional.interpolate(h, size=size, mode="nearest")
        return self.head(self.post(self.blocks(self.mid(h))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``."""
        return unfold_frames(self.trunk(fold_frames(x)), x.shape[0])
