"""The study's GAN: a noise-driven CNN generator (ensembles) and a PatchGAN discriminator.

The generator is :class:`~climdown.nn.models.cnn.CNN` with ``noise_channels`` extra input
channels of standard-normal noise at the coarse resolution, one draw per frame, each scaled by a
learned strength that starts at zero (climdown's own design; the noise injection of StyleGAN,
Karras et al. 2019). A new noise draw gives a new ensemble member; a seeded ``torch.Generator``
gives reproducible members.

Why the strength starts at zero: unit-variance noise beside the normalised input (values about
0.1-1, far less variable) dominates the first convolution, and on TCW4 the first Adam steps then
switched off the network's ReLUs; its gradients fell below Adam's epsilon and the generator
never left its initial (nearest-neighbour) output, even with no adversarial term
(docs/results.md, E10). Starting at zero, the generator starts as the CNN, which learns there,
and the data loss decides how much noise to let in: little under MSE (whose optimum ignores the
noise), as much as the truth's uncertainty under the fair CRPS.
With a conserving constraint every member conserves the coarse input exactly: the ensemble
spreads the mass within each coarse cell, never across cells.

The discriminator follows the study's appendix: seven 3x3 convolutions with channels
1-32-32-64-64-128-128-1, LeakyReLU(0.2) between them, stride 2 on the 2nd, 4th and 6th, so a
128 x 128 field gives 16 x 16 patch logits. By default it sees only the high-resolution field, as
in the study (``conditional=False``); ``conditional=True`` also gives it the coarse input
repeated over each block (nearest upsampling) as extra channels, so it can judge whether the fine
field fits its coarse cell. With a hard conserving constraint that fit is guaranteed, so the
unconditional form is the default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from climdown.errors import ConfigError, GridShapeError
from climdown.grid import block_expand
from climdown.nn.constraints import infer_factor
from climdown.nn.models.cnn import CNN, fold_frames, unfold_frames
from climdown.nn.models.reference import ReferenceDiscriminator, ReferenceGANGenerator
from climdown.nn.normalize import ConstrainedModel
from climdown.validate import positive_int

__all__ = ["GANGenerator", "GANModel", "PatchDiscriminator", "make_discriminator"]

DISCRIMINATOR_CHANNELS = (32, 32, 64, 64, 128, 128)
DISCRIMINATOR_STRIDES = (1, 2, 1, 2, 1, 2)


class GANGenerator(CNN):
    """CNN generator with a noise input: ``forward(x, noise=None, generator=None)``.

    Parameters
    ----------
    factor, channels, width, blocks, layout
        As :class:`~climdown.nn.models.cnn.CNN`.
    noise_channels : int
        Channels of coarse-resolution noise concatenated to the input (1).

    Attributes
    ----------
    noise_strength : Parameter ``[noise_channels]``
        Learned amplitude of each noise channel (initially 0). Checkpoints saved before it
        existed were trained with unit noise and load with strength 1.
    """

    options: ClassVar[dict[str, Any]] = {**CNN.options, "noise_channels": 1}

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        *,
        width: int = 64,
        blocks: int = 4,
        layout: str = "fast",
        noise_channels: int = 1,
    ) -> None:
        if layout == "reference":
            raise ConfigError(
                "the GAN's reference layout is its own class: build it with "
                "get_model('gan', layout='reference') (climdown.nn.models.reference)"
            )
        self.noise_channels = positive_int(noise_channels, "option 'noise_channels'")
        super().__init__(
            factor,
            channels,
            width=width,
            blocks=blocks,
            layout=layout,
            extra_inputs=self.noise_channels,
        )
        self.noise_strength = nn.Parameter(torch.zeros(self.noise_channels))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before the learned strength fed unit-variance noise: strength 1
        state_dict.setdefault(prefix + "noise_strength", torch.ones(self.noise_channels))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, T, C, h, w]`` -> ``z`` ``[B, T, C, H, W]``.

        ``noise`` ``[B, T, noise_channels, h, w]``: standard-normal values, scaled by
        :attr:`noise_strength` before they enter the network; when None it is drawn from
        N(0, 1) on the device and in the dtype of ``x``, from ``generator`` if given.
        """
        b, t, _, h, w = x.shape
        shape = (b, t, self.noise_channels, h, w)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        elif tuple(noise.shape) != shape:
            raise GridShapeError(
                f"noise of shape {tuple(noise.shape)} does not fit the input: expected {shape} "
                "([B, T, noise_channels, h, w] on the coarse grid); pass noise=None to draw it"
            )
        noise = noise.to(x.dtype) * self.noise_strength.to(x.dtype).view(1, 1, -1, 1, 1)
        z = self.trunk(fold_frames(torch.cat([x, noise], dim=2)))
        return unfold_frames(z, b)


class GANModel(ConstrainedModel):
    """A :class:`ConstrainedModel` around a :class:`GANGenerator`, with ensemble sampling."""

    def sample(
        self,
        lr: torch.Tensor,
        area: torch.Tensor | None = None,
        members: int = 10,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw an ensemble: ``members`` forward calls with independent noise.

        Parameters
        ----------
        lr : Tensor ``[B, T, C, h, w]``
            Coarse input in physical units (kg m-2).
        area : Tensor ``[B, H, W]`` or ``[H, W]``, optional
            Fine-cell areas (m^2); None = equal weights.
        members : int
            Ensemble size.
        generator : torch.Generator, optional
            Source of the noise (on the device of ``lr``); a seeded one gives the same members.

        Returns
        -------
        Tensor ``[members, B, T, C, H, W]`` in the units of ``lr``.
        """
        members = positive_int(members, "option 'members'")
        return torch.stack([self(lr, area, generator=generator) for _ in range(members)])


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: ``forward(hr, lr=None)`` -> logits ``[B, T, 1, H/8, W/8]``.

    Parameters
    ----------
    channels : int
        Physical channels C of the fields.
    scale : float
        Normalisation scale (physical units): inputs are divided by it, as in the generator.
    conditional : bool
        Also feed the coarse input, repeated over each block, as C extra channels.
    """

    scale: torch.Tensor  # buffer: the normalisation scale, a 0-d tensor

    def __init__(self, channels: int = 1, *, scale: float = 1.0, conditional: bool = False) -> None:
        super().__init__()
        self.conditional = bool(conditional)
        self.register_buffer("scale", torch.tensor(float(scale)))
        cin = channels * (2 if self.conditional else 1)
        layers: list[nn.Module] = []
        for cout, stride in zip(DISCRIMINATOR_CHANNELS, DISCRIMINATOR_STRIDES, strict=True):
            layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, hr: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """Patch logits for fine fields ``hr`` ``[B, T, C, H, W]`` in physical units.

        ``lr`` ``[B, T, C, h, w]`` is required when ``conditional`` and ignored otherwise.
        """
        x = hr / self.scale
        if self.conditional:
            if lr is None:
                raise GridShapeError(
                    "a conditional discriminator needs the coarse input: call d(hr, lr)"
                )
            x = torch.cat([x, block_expand(lr / self.scale, infer_factor(hr.shape, lr.shape))], 2)
        return unfold_frames(self.net(fold_frames(x)), hr.shape[0])


def make_discriminator(
    model: ConstrainedModel, conditional: bool = False
) -> PatchDiscriminator | ReferenceDiscriminator:
    """A discriminator matching ``model``'s channels, normalisation scale and layout.

    The reference GAN layout gets the reference discriminator (:class:`ReferenceDiscriminator`,
    one logit per field), which cannot be conditional.
    """
    if isinstance(model.backbone, ReferenceGANGenerator):
        if conditional:
            raise ConfigError(
                "the reference discriminator sees only the fine field; use the fast GAN "
                "layout for a conditional discriminator"
            )
        return ReferenceDiscriminator(
            int(model.config.get("channels", 1)), scale=float(model.scale)
        )
    return PatchDiscriminator(
        int(model.config.get("channels", 1)),
        scale=float(model.scale),
        conditional=conditional,
    )
