"""Model families of the study (CNN, GAN, ConvGRU, FlowConvGRU, baselines) and their registry.

``get_model(name, factor, constraint, ...)`` builds any model x constraint;
``build_model(model.config)`` rebuilds it (see :mod:`climdown.nn.models.registry`);
``from_reference(state_dict_or_path, name)`` loads weights saved by the study's reference code
into its layouts, its checkpoint files read by ``read_reference_weights`` without running its
code (:mod:`climdown.nn.models.reference`, :mod:`climdown.nn.models.weights`).
"""

from __future__ import annotations

from climdown.nn.models.baselines import Bicubic, Bilinear, Interpolation, Nearest
from climdown.nn.models.cnn import CNN, ResidualBlock
from climdown.nn.models.convgru import ConvGRU, ConvGRUCell
from climdown.nn.models.flow import FlowConvGRU, warp
from climdown.nn.models.gan import GANGenerator, GANModel, PatchDiscriminator, make_discriminator
from climdown.nn.models.reference import (
    ReferenceConvGRU,
    ReferenceDiscriminator,
    ReferenceFlowConvGRU,
    ReferenceGANGenerator,
)
from climdown.nn.models.registry import (
    MODELS,
    RECURRENT,
    REFERENCE_LAYOUTS,
    build_model,
    get_model,
)
from climdown.nn.models.weights import from_reference, read_reference_weights

__all__ = [
    "MODELS",
    "RECURRENT",
    "get_model",
    "build_model",
    "from_reference",
    "read_reference_weights",
    "REFERENCE_LAYOUTS",
    "ReferenceGANGenerator",
    "ReferenceDiscriminator",
    "ReferenceConvGRU",
    "ReferenceFlowConvGRU",
    "CNN",
    "ResidualBlock",
    "GANGenerator",
    "GANModel",
    "PatchDiscriminator",
    "make_discriminator",
    "ConvGRU",
    "ConvGRUCell",
    "FlowConvGRU",
    "warp",
    "Interpolation",
    "Nearest",
    "Bilinear",
    "Bicubic",
]
