"""The reference code's GAN, discriminator, ConvGRU and FlowConvGRU, layer for layer.

Harder et al. published their code as RolnickLab/constrained-downscaling; this module rebuilds
the networks of its ``models.py`` (HEAD, commit ``02fa5b1``) as climdown backbones, so that
``get_model(name, layout="reference")`` has the reference's layers and parameter counts and
:func:`climdown.nn.models.weights.from_reference` can load a state dict the reference code
saved. Each class says where it
departs from the reference, and why. The CNN's reference layout is
:class:`climdown.nn.models.cnn.CNN` with ``layout="reference"`` (the reference's ``ResNet``).

Like every climdown backbone these map the normalised input ``[B, T, C, h, w]`` to the raw
output ``z`` ``[B, T, C, H, W]``; the constraint layer, the normalisation and the area weights
belong to the :class:`~climdown.nn.normalize.ConstrainedModel` around them. With
``scale=1`` and no areas (equal weights) climdown's constraint layers are the reference's
``AvgPool2d`` forms, so a wrapped reference backbone reproduces the reference model's output.

Parameter counts at 64 channels and 4x (tests/nn/test_reference.py asserts them against the
fixtures of the reference code): GAN generator 505,346; discriminator 286,561; ConvGRU (3
blocks) 886,785; FlowConvGRU (3 blocks) 4,702,276, of which VoxelFlow 3,815,491.

The activations work in place where the reference does (ReLU, the residual adds), which also
makes these layouts as fast as the reference's own models (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError, GridShapeError
from climdown.nn.models.cnn import ResidualBlock, fold_frames, unfold_frames
from climdown.nn.normalize import ConstrainedModel
from climdown.validate import positive_int

__all__ = [
    "ReferenceGANGenerator",
    "ReferenceDiscriminator",
    "ReferenceConvGRU",
    "VoxelFlow",
    "ReferenceFlowConvGRU",
    "ReferenceFlowModel",
]

#: Latent size of the reference GAN's noise vector z.
LATENT = 100


def _conv3x3(cin: int, cout: int, *, bias: bool = True, reflect: bool = False) -> nn.Conv2d:
    return nn.Conv2d(
        cin, cout, 3, padding=1, bias=bias, padding_mode="reflect" if reflect else "zeros"
    )


def _check_layout(layout: str, cls: str) -> None:
    if layout != "reference":
        raise ConfigError(f"{cls} is the reference layout, not {layout!r}")


def _log2_factor(factor: int, what: str) -> int:
    f = positive_int(factor, "factor")
    if f & (f - 1):
        raise ConfigError(
            f"the reference {what} upsamples by powers of two only, got factor {f}; use "
            "layout='fast' (any integer factor) or a factor of 2, 4, 8, ..."
        )
    return f.bit_length() - 1


# --------------------------------------------------------------------------------------------
# GAN generator and discriminator (reference ``ResNet(noise=True)`` and ``Discriminator``)
# --------------------------------------------------------------------------------------------


class ReferenceGANGenerator(nn.Module):
    """The reference GAN generator: ``forward(x, noise=None, generator=None)``.

    Layers (the reference's ``ResNet`` with ``noise=True``)::

        conv_trans0: ConvTranspose2d(100, 1, kernel 32)    z [N, 100, 1, 1] -> noise map [N, 1, 32, 32]
        conv1: conv3x3 (C + 1) -> width, ReLU               on cat(LR, noise map)
        blocks residual blocks; conv2: conv3x3, ReLU        at LOW resolution
        ConvTranspose2d(width, width, k=2, s=2) x log2(f)
        conv3: conv3x3, ReLU; conv4: conv1x1 width -> C

    ``noise`` is the latent z, ``[B, T, 100]`` (one vector per frame) or, as the reference
    passes it, ``[B, 100, 1, 1]`` for one-frame input; None draws it from N(0, 1) (from
    ``generator`` if given), as the reference's ``np.random.normal``. The noise map is the
    transposed convolution's 32 x 32 kernel: the reference therefore takes only 32 x 32 LR
    input. climdown tiles the map periodically over a larger LR grid and crops it for a
    smaller one, so the layout also downscales other patch and tile sizes; at 32 x 32 it is
    the reference exactly. (The reference's ``main.py`` defaults to 32 channels: 203,522
    parameters; the report's 64 give 505,346.)
    """

    options: ClassVar[dict[str, Any]] = {"width": 64, "blocks": 4, "layout": "reference"}
    noise_size = 32

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        blocks: int = 4,
        layout: str = "reference",
    ) -> None:
        super().__init__()
        _check_layout(layout, "ReferenceGANGenerator")
        self.factor = positive_int(factor, "factor")
        steps = _log2_factor(self.factor, "GAN")
        width = positive_int(width, "option 'width'")
        self.channels = channels
        self.conv_trans0 = nn.ConvTranspose2d(LATENT, 1, kernel_size=self.noise_size)
        self.conv1 = nn.Sequential(_conv3x3(channels + 1, width), nn.ReLU(inplace=True))
        self.res_blocks = nn.Sequential(
            *(ResidualBlock(width) for _ in range(positive_int(blocks, "option 'blocks'")))
        )
        self.conv2 = nn.Sequential(_conv3x3(width, width), nn.ReLU(inplace=True))
        self.upsampling = nn.Sequential(
            *(nn.ConvTranspose2d(width, width, kernel_size=2, stride=2) for _ in range(steps))
        )
        self.conv3 = nn.Sequential(_conv3x3(width, width), nn.ReLU(inplace=True))
        self.conv4 = nn.Conv2d(width, channels, kernel_size=1)

    def _latent(
        self, x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        b, t = x.shape[:2]
        if noise is None:
            return torch.randn(
                (b * t, LATENT, 1, 1), generator=generator, device=x.device, dtype=x.dtype
            )
        if noise.ndim == 4 and t == 1 and tuple(noise.shape) == (b, LATENT, 1, 1):
            return noise.to(x.dtype)
        if tuple(noise.shape) != (b, t, LATENT):
            raise GridShapeError(
                f"noise of shape {tuple(noise.shape)} does not fit the input: the reference "
                f"GAN takes a latent z [B, T, {LATENT}] = {(b, t, LATENT)} (or [B, {LATENT}, 1, 1] "
                "for one frame); pass noise=None to draw it"
            )
        return noise.reshape(b * t, LATENT, 1, 1).to(x.dtype)

    def noise_map(self, z: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The noise channel ``[N, 1, h, w]`` from latent z ``[N, 100, 1, 1]``."""
        m = self.conv_trans0(z)
        n = self.noise_size
        if (h, w) != (n, n):
            m = m.repeat(1, 1, -(-h // n), -(-w // n))[..., :h, :w]
        return m

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``."""
        b, _, _, h, w = x.shape
        lr = fold_frames(x)
        out = self.conv1(
            torch.cat((lr, self.noise_map(self._latent(x, noise, generator), h, w)), 1)
        )
        out = self.conv3(self.upsampling(self.conv2(self.res_blocks(out))))
        return unfold_frames(self.conv4(out), b)


class ReferenceDiscriminator(nn.Module):
    """The reference discriminator: ``forward(hr, lr=None)`` -> logits ``[B, T]``.

    Six 3x3 convolutions with ReLU, channels 1-32-32-64-64-128-128, strides 1, 2, 2, 2, 2, 2;
    ``conv9``, a 1x1 convolution 128 -> 1 with ``padding=1`` (so the border ring of its output
    is its bias, as in the reference); a global average pool. The reference ends in a sigmoid
    and trains on BCE of probabilities; climdown returns the logits and trains on BCE with
    logits (the same loss, computed stably): :meth:`probability` is the reference's output.
    It judges each frame alone (the reference uses only frame 0). The report calls it a
    PatchGAN; it is not one (one score per field), see docs/models.md.
    """

    scale: torch.Tensor  # buffer: the normalisation scale, a 0-d tensor
    channels_: ClassVar[tuple[int, ...]] = (32, 32, 64, 64, 128, 128)
    strides: ClassVar[tuple[int, ...]] = (1, 2, 2, 2, 2, 2)

    def __init__(self, channels: int = 1, *, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        cin = channels
        for i, (cout, stride) in enumerate(zip(self.channels_, self.strides, strict=True), 1):
            conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            self.add_module(f"conv{i}", nn.Sequential(conv, nn.ReLU(inplace=True)))
            cin = cout
        self.conv9 = nn.Conv2d(cin, 1, 1, padding=1)

    def forward(self, hr: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, T]`` for fine fields ``hr`` ``[B, T, C, H, W]`` in physical units."""
        x = fold_frames(hr / self.scale)
        for i in range(1, len(self.channels_) + 1):
            x = getattr(self, f"conv{i}")(x)
        return self.conv9(x).mean(dim=(-3, -2, -1)).reshape(hr.shape[0], hr.shape[1])

    def probability(self, hr: torch.Tensor) -> torch.Tensor:
        """The reference's output: ``sigmoid`` of the logits, ``[B, T]``."""
        return torch.sigmoid(self(hr))


# --------------------------------------------------------------------------------------------
# ConvGRU (reference ``ConvGRUGeneratorDet``)
# --------------------------------------------------------------------------------------------


class _AliasedBlock(nn.Module):
    """The initial-state block: ``conv(relu(conv(relu(x)))) + relu(x)``, reflect-padded.

    The reference writes ``relu(x)`` in place on the block input, so its skip connection adds
    ``relu(x)``, not ``x``; climdown keeps that form because the weights were trained with it.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(width, width, bias=False, reflect=True)
        self.conv2 = _conv3x3(width, width, bias=False, reflect=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        out = self.conv2(torch.relu_(self.conv1(r)))
        out += r
        return out


class _PreActBlock(nn.Module):
    """``conv(act(conv(act(x)))) + x`` with reflect padding, on folded frames.

    The reference's ``ResidualBlockRNN``: ReLU in the trunk, LeakyReLU(0.01) in the upsampling.
    """

    def __init__(self, width: int, leaky: bool) -> None:
        super().__init__()
        self.slope = 0.01 if leaky else 0.0
        self.conv1 = _conv3x3(width, width, bias=False, reflect=True)
        self.conv2 = _conv3x3(width, width, bias=False, reflect=True)

    def _act(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if self.slope:
            f = nn.functional.leaky_relu_ if inplace else nn.functional.leaky_relu
            return f(x, self.slope)
        return torch.relu_(x) if inplace else torch.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self._act(self.conv1(self._act(x, False)), True))
        out += x
        return out


class _InitialState(nn.Module):
    """The reference's ``InitialStateDet``: conv 3x3 C -> width, then 3 aliased blocks."""

    def __init__(self, channels: int, width: int, blocks: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.res_blocks = nn.Sequential(*(_AliasedBlock(width) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_blocks(self.conv(x))


class _Gate(nn.Module):
    """A GRU gate: reflection pad 1, conv 3x3 (2 width -> width), with bias."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * width, width, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _GRU(nn.Module):
    """The reference's ``GenGateGRU``: ``h = z h + (1 - z) tanh(o)``.

    ``z = sigmoid(u([x, h]))``, ``r = sigmoid(r([x, h]))``, ``o = o([x, r h])``.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.update_gate = _Gate(width)
        self.reset_gate = _Gate(width)
        self.output_gate = _Gate(width)

    def forward(self, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``xs`` ``[B, T, width, h, w]``, initial ``h`` -> all states ``[B, T, width, h, w]``."""
        states = []
        for t in range(xs.shape[1]):
            xh = torch.cat((xs[:, t], h), 1)
            z = torch.sigmoid(self.update_gate(xh))
            r = torch.sigmoid(self.reset_gate(xh))
            o = self.output_gate(torch.cat((xs[:, t], r * h), 1))
            h = z * h + (1 - z) * torch.tanh(o)
            states.append(h)
        return torch.stack(states, 1)


class _Wrapped(nn.Module):
    """A per-frame module; the name ``module`` keeps the reference's ``TimeDistributed`` keys."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class ReferenceConvGRU(nn.Module):
    """The reference ConvGRU: ``[B, T, C, h, w]`` -> raw z ``[B, T, C, H, W]``.

    Layers (the reference's ``ConvGRUGeneratorDet``), with ``width`` = 64 and ``blocks`` = 3::

        initialize: conv 3x3 C -> width, 3 aliased residual blocks    on frame 0: the state h_-1
        conv1: conv 3x3 C -> width; blocks pre-activation residual blocks (ReLU)   per frame
        convgru: GRU over the frames, gates 3x3 on [x, h], reflect-padded
        upsampling: block, (bilinear x2, block) x log2(f)     LeakyReLU blocks, per frame
        conv2: conv 3x3 width -> C

    The residual blocks and gates pad by reflection, as the reference. Differences: the
    reference hard-codes 64 channels in the initial state and the gates (``width`` sets all
    of them here, and equals the reference at 64) and two x2 stages whatever its
    ``upsampling_factor`` (here ``log2(f)`` stages: at 4x the reference exactly); it runs
    exactly ``time_steps`` frames and fails on fewer, climdown runs over all T frames. (The
    reference's own run scripts trained 4 blocks: 960,513 parameters.)
    """

    options: ClassVar[dict[str, Any]] = {"width": 64, "blocks": 3, "layout": "reference"}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        blocks: int = 3,
        layout: str = "reference",
    ) -> None:
        super().__init__()
        _check_layout(layout, "ReferenceConvGRU")
        self.factor = positive_int(factor, "factor")
        steps = _log2_factor(self.factor, "ConvGRU")
        width = positive_int(width, "option 'width'")
        self.initialize = _InitialState(channels, width)
        self.conv1 = _Wrapped(nn.Conv2d(channels, width, 3, padding=1))
        self.res_blocks = nn.Sequential(
            *(_PreActBlock(width, leaky=False) for _ in range(positive_int(blocks, "blocks")))
        )
        self.convgru = _GRU(width)
        up: list[nn.Module] = [_PreActBlock(width, leaky=True)]
        for _ in range(steps):
            up += [nn.UpsamplingBilinear2d(scale_factor=2), _PreActBlock(width, leaky=True)]
        self.upsampling = nn.Sequential(*up)
        self.conv2 = _Wrapped(nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``."""
        b = x.shape[0]
        h0 = self.initialize(x[:, 0])
        feats = unfold_frames(self.res_blocks(self.conv1(fold_frames(x))), b)
        hs = self.convgru(feats, h0)
        return unfold_frames(self.conv2(self.upsampling(fold_frames(hs))), b)


# --------------------------------------------------------------------------------------------
# FlowConvGRU (reference ``TimeEndToEndModel`` = ``VoxelFlow`` + ``ConvGRUGeneratorDet``)
# --------------------------------------------------------------------------------------------


class VoxelFlow(nn.Module):
    """Deep voxel flow (Liu et al. 2017) as in the reference: two frames -> the middle one.

    A U-Net (5x5/3x3 convolutions with batch norm, three 2x2 max pools and bilinear x2
    upsamplings with skip concatenations) predicts a flow ``(u, v)`` and a blend mask from the
    two frames; frame 0 is sampled at ``p - flow`` and frame 1 at ``p + flow`` (``flow = 0.5
    tanh``, bilinear, border padding, ``align_corners=True``, coordinates in [-1, 1]) and
    blended with ``mask = (1 + tanh) / 2``. The grid must be divisible by 8 (three pools).
    """

    def __init__(self, channels: int = 1) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)

        self.conv1, self.conv1_bn = conv(2 * channels, 64, 5), nn.BatchNorm2d(64)
        self.conv2, self.conv2_bn = conv(64, 128, 5), nn.BatchNorm2d(128)
        self.conv3, self.conv3_bn = conv(128, 256, 3), nn.BatchNorm2d(256)
        self.bottleneck, self.bottleneck_bn = conv(256, 256, 3), nn.BatchNorm2d(256)
        self.deconv1, self.deconv1_bn = conv(512, 256, 3), nn.BatchNorm2d(256)
        self.deconv2, self.deconv2_bn = conv(384, 128, 5), nn.BatchNorm2d(128)
        self.deconv3, self.deconv3_bn = conv(192, 64, 5), nn.BatchNorm2d(64)
        self.conv4 = nn.Conv2d(64, 3, 5, padding=2)

    def _step(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def forward(self, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """Frames ``[N, C, h, w]`` at t0 and t2 -> the interpolated frame at t1, ``[N, C, h, w]``."""
        h, w = f0.shape[-2:]
        if h % 8 or w % 8:
            raise GridShapeError(
                f"the reference FlowConvGRU's VoxelFlow needs a grid divisible by 8, got "
                f"{h} x {w}; crop or pad the coarse input (or tiles) to multiples of 8"
            )
        pool = nn.functional.max_pool2d
        up = nn.functional.interpolate
        c1 = self._step("conv1", torch.cat((f0, f1), 1))
        c2 = self._step("conv2", pool(c1, 2))
        c3 = self._step("conv3", pool(c2, 2))
        x = self._step("bottleneck", pool(c3, 2))
        for name, skip in (("deconv1", c3), ("deconv2", c2), ("deconv3", c1)):
            x = up(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = self._step(name, torch.cat((x, skip), 1))
        out = torch.tanh(self.conv4(x))
        flow, mask = 0.5 * out[:, :2], 0.5 * (1.0 + out[:, 2:3])
        gy = torch.linspace(-1.0, 1.0, h, device=f0.device, dtype=f0.dtype)[:, None]
        gx = torch.linspace(-1.0, 1.0, w, device=f0.device, dtype=f0.dtype)[None, :]
        grid = torch.stack((gx.expand(h, w), gy.expand(h, w)), -1)  # (x, y) for grid_sample
        d = flow.permute(0, 2, 3, 1)

        def sample(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return nn.functional.grid_sample(
                f, g, mode="bilinear", padding_mode="border", align_corners=True
            )

        return mask * sample(f0, grid - d) + (1.0 - mask) * sample(f1, grid + d)


class ReferenceFlowConvGRU(nn.Module):
    """The reference FlowConvGRU: two coarse frames in, three fine frames out.

    The reference's ``TimeEndToEndModel``: :class:`VoxelFlow` (``temporal_sr``) interpolates
    the middle frame from frames t0 and t2, and :class:`ReferenceConvGRU` (``spatial_sr``)
    downscales ``[t0, interpolated, t2]``. Its constraint therefore holds the middle output
    to the *interpolated* coarse frame: climdown's wrapper
    (:class:`ReferenceFlowModel`) does the same, through :meth:`frames`.

    Input: ``[B, 2, C, h, w]`` (t0, t2) as the reference, or ``[B, 3, C, h, w]`` as a
    climdown store holds a sequence, of which frames 0 and 2 are used (the middle one is what
    the model infers). Output ``[B, 3, C, H, W]``.
    """

    options: ClassVar[dict[str, Any]] = {"width": 64, "blocks": 3, "layout": "reference"}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        blocks: int = 3,
        layout: str = "reference",
    ) -> None:
        super().__init__()
        _check_layout(layout, "ReferenceFlowConvGRU")
        self.factor = positive_int(factor, "factor")
        self.temporal_sr = VoxelFlow(channels)
        self.spatial_sr = ReferenceConvGRU(factor, channels, width=width, blocks=blocks)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[t0, interpolated t1, t2]`` ``[B, 3, C, h, w]`` from ``[B, 2 or 3, C, h, w]``."""
        if x.shape[1] not in (2, 3):
            raise GridShapeError(
                f"the reference FlowConvGRU takes 2 coarse frames (t0, t2) or a 3-frame "
                f"sequence, got {x.shape[1]}; use model 'flowconvgru' with layout 'fast' for "
                "other sequence lengths"
            )
        f0, f2 = x[:, 0], x[:, -1]
        return torch.stack((f0, self.temporal_sr(f0, f2), f2), 1)

    def forward(self, x: torch.Tensor, interpolated: bool = False) -> torch.Tensor:
        """``x`` ``[B, 2 or 3, C, h, w]`` -> ``z`` ``[B, 3, C, H, W]``.

        ``interpolated=True``: ``x`` is already ``[t0, t1, t2]`` from :meth:`frames`.
        """
        return self.spatial_sr(x if interpolated else self.frames(x))


class ReferenceFlowModel(ConstrainedModel):
    """The wrapper of the reference FlowConvGRU: its constraint targets the interpolated frame.

    As in the reference, the coarse frames the constraint layer holds the output to are
    ``[t0, VoxelFlow(t0, t2), t2]``, so the middle output conserves the *interpolated* coarse
    field, not a given one (a 3-frame input's middle frame is not used at all).
    """

    def forward(
        self, lr: torch.Tensor, area: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """``lr`` ``[B, 2 or 3, C, h, w]`` (physical units) -> ``[B, 3, C, H, W]``."""
        backbone: Any = self.backbone
        frames = backbone.frames(lr / self.scale) * self.scale
        return super().forward(frames, area, interpolated=True, **kwargs)
