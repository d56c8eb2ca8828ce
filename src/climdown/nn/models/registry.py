"""The model registry: build any model x constraint by name, and rebuild it from its config.

Every model is a :class:`~climdown.nn.normalize.ConstrainedModel` (backbone + scale-only
normaliser + constraint layer), called as ``model(lr, area=None)`` with ``lr`` ``[B, T, C, h, w]``
in physical units and ``area`` the fine-cell areas ``[B, H, W]`` (None = equal weights); it
returns ``[B, T, C, H, W]`` in the units of ``lr`` and reports ``n_parameters``. ``model.config``
holds everything :func:`build_model` needs to rebuild it (a checkpoint stores it beside the
state dict).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from climdown.errors import ConfigError
from climdown.nn.constraints import Constraint, get_constraint
from climdown.nn.models.baselines import Bicubic, Bilinear, Nearest, Pycnophylactic
from climdown.nn.models.cnn import CNN
from climdown.nn.models.convgru import ConvGRU
from climdown.nn.models.flow import FlowConvGRU
from climdown.nn.models.gan import GANGenerator, GANModel
from climdown.nn.models.reference import (
    ReferenceConvGRU,
    ReferenceFlowConvGRU,
    ReferenceFlowModel,
    ReferenceGANGenerator,
)
from climdown.nn.models.residual import Residual
from climdown.nn.normalize import ConstrainedModel
from climdown.validate import positive_int

__all__ = [
    "MODELS",
    "REFERENCE_LAYOUTS",
    "RECURRENT",
    "get_model",
    "build_model",
    "CONFIG_KEYS",
    "SIZE_LIMITS",
]

MODELS: dict[str, Any] = {
    "cnn": CNN,
    "gan": GANGenerator,
    "convgru": ConvGRU,
    "flowconvgru": FlowConvGRU,
    "nearest": Nearest,
    "bilinear": Bilinear,
    "bicubic": Bicubic,
    "pycnophylactic": Pycnophylactic,
}
"""Backbone class of each model name; ``cls.options`` lists its options and their defaults."""

REFERENCE_LAYOUTS: dict[str, Any] = {
    "gan": ReferenceGANGenerator,
    "convgru": ReferenceConvGRU,
    "flowconvgru": ReferenceFlowConvGRU,
}
"""Backbone class of ``layout="reference"`` where it is its own class (:mod:`.reference`).

The CNN's reference layout is :class:`~climdown.nn.models.cnn.CNN` itself (``layout`` option).
"""

_WRAPPERS: dict[Any, type[ConstrainedModel]] = {
    GANGenerator: GANModel,
    ReferenceGANGenerator: GANModel,
    ReferenceFlowConvGRU: ReferenceFlowModel,
}

RECURRENT = ("convgru", "flowconvgru")
"""Models whose output frame t depends on the frames before it (the others treat frames alone)."""

SIZE_LIMITS: dict[str, int] = {
    "factor": 64,
    "channels": 256,
    "frames": 100_000,
    "width": 4096,
    "hidden": 4096,
    "flow_width": 4096,
    "blocks": 256,
    "noise_channels": 256,
}
"""Largest value of each integer size (of :func:`get_model` and the models' options).

Far beyond any model climdown trains (its defaults are 64 wide and 4 blocks deep), and small
enough that a typo such as ``width: 1000000`` (36 TB of weights) is a :class:`ConfigError`
before anything is allocated, not an allocation failure.
"""

CONFIG_KEYS = (
    "name",
    "factor",
    "constraint",
    "constraint_options",
    "scale",
    "offset",
    "frames",
    "channels",
    "options",
    "skip",
)


def _constraint_args(constraint: str | Constraint, given: dict[str, Any] | None) -> tuple:
    """(layer, name, constructor arguments) for a constraint given by name or as a layer."""
    if isinstance(constraint, Constraint):
        if given:
            raise ConfigError("constraint_options only apply to a constraint given by name")
        params = list(inspect.signature(type(constraint).__init__).parameters.values())[1:]
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        args = {p.name: getattr(constraint, p.name) for p in params if p.kind in named}
        return constraint, constraint.name, args
    args = dict(given or {})
    try:
        layer = get_constraint(constraint, **args)
    except TypeError as err:
        raise ConfigError(
            f"constraint {constraint!r} does not take options {sorted(args)}: {err}"
        ) from None
    return layer, layer.name, args


def get_model(
    name: str,
    factor: int = 4,
    constraint: str | Constraint = "none",
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    frames: int = 1,
    channels: int = 1,
    constraint_options: dict[str, Any] | None = None,
    skip: str | None = None,
    **options: Any,
) -> ConstrainedModel:
    """Build a model by name, wrapped with its normaliser and constraint layer.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`: ``cnn``, ``gan``, ``convgru``, ``flowconvgru``, ``nearest``,
        ``bilinear``, ``bicubic``, ``pycnophylactic``.
    factor : int
        Downscaling factor f (fine grid = f x coarse grid on both axes).
    constraint : str or Constraint
        ``none``, ``softmax``, ``add``, ``mult``, ``scadd``, ``clip`` or ``soft``
        (:mod:`climdown.nn.constraints`).
    scale : float
        Normalisation scale in physical units (kg m-2), e.g. the training HR standard deviation.
    offset : float
        Normalisation offset (kg m-2): 0 (climdown's scale-only normalisation) or the training
        minimum for the reference code's min-max normalisation (``scale`` = max - min; see
        :class:`~climdown.nn.normalize.ConstrainedModel`).
    frames : int
        Number of time frames T of the data the model is made for (recorded in the config;
        CNN-type models treat frames independently, recurrent ones run over any T).
    channels : int
        Number of physical channels C.
    constraint_options : dict, optional
        Constructor arguments of the constraint (e.g. ``{"lam": 0.1}`` for ``soft``).
    skip : {"nearest", "bilinear", "bicubic", "pycnophylactic"}, optional
        Learn a correction to this interpolation (:class:`~climdown.nn.models.residual.Residual`):
        the untrained model equals the baseline with the same constraint.
    **options
        Model options: ``cnn`` width=64, blocks=4, layout="fast"|"reference"; ``gan`` the same
        plus noise_channels=1 (fast layout); ``convgru`` width=64, hidden=64; ``flowconvgru``
        the same plus flow_width=32; baselines take none. ``layout="reference"`` builds the
        reference code's network for ``cnn``, ``gan``, ``convgru`` and ``flowconvgru``
        (:mod:`climdown.nn.models.reference`), with options width and blocks (``convgru``
        and ``flowconvgru``: width=64, blocks=3).

    Returns
    -------
    ConstrainedModel
        ``model(lr, area=None)`` -> ``[B, T, C, H, W]``; ``model.config`` rebuilds it.

    Raises
    ------
    ConfigError
        For an unknown model, constraint or option name, or an invalid option value.

    Examples
    --------
    >>> model = get_model("cnn", factor=4, constraint="softmax", layout="reference")
    >>> baseline = get_model("bicubic", factor=4, constraint="softmax")  # conserving, no training
    """
    key = str(name).lower()
    if key not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls: Any = MODELS[key]  # a backbone class with ``options`` (and parameter_free)
    if options.get("layout") == "reference" and key in REFERENCE_LAYOUTS:
        cls = REFERENCE_LAYOUTS[key]
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        known = ", ".join(cls.options) or "none"
        raise ConfigError(f"model {key!r} has no option(s) {unknown}; its options are: {known}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"factor must be a positive integer, got {factor!r}")
    _check_size(factor, "factor")
    _check_size(positive_int(frames, "option 'frames'"), "frames")
    _check_size(positive_int(channels, "option 'channels'"), "channels")
    for option in set(options) & set(SIZE_LIMITS):
        value = positive_int(options[option], f"option {option!r}")
        _check_size(value, option, option=True)
    if not float(scale) > 0:
        raise ConfigError(f"scale must be a positive number (physical units), got {scale!r}")
    if not math.isfinite(float(offset)):
        raise ConfigError(f"offset must be a finite number (physical units), got {offset!r}")
    layer, cname, cargs = _constraint_args(constraint, constraint_options)
    resolved = {**cls.options, **options}
    if getattr(cls, "parameter_free", False):
        backbone = cls(factor, channels, target=layer.expects, scale=float(scale))
    else:
        backbone = cls(factor, channels, **resolved)
    if skip is not None and cls is ReferenceFlowConvGRU:
        raise ConfigError(
            "skip= does not apply to the reference FlowConvGRU (2 coarse frames in, 3 out); "
            "use layout='fast' for a skip connection"
        )
    if skip is not None:
        base_cls: Any = MODELS.get(str(skip).lower())
        if not getattr(base_cls, "parameter_free", False) or getattr(cls, "parameter_free", False):
            raise ConfigError(
                f"skip={skip!r}: a trainable model can skip to one of nearest, bilinear, "
                f"bicubic, pycnophylactic; {key!r} with skip={skip!r} is not such a pair"
            )
        base = base_cls(factor, channels, target=layer.expects, scale=float(scale))
        backbone = Residual(backbone, base)
        skip = str(skip).lower()
    config = {
        "name": key,
        "factor": factor,
        "constraint": cname,
        "constraint_options": cargs,
        "scale": float(scale),
        "offset": float(offset),
        "frames": frames,
        "channels": channels,
        "options": resolved,
        "skip": skip,
    }
    wrapper = _WRAPPERS.get(cls, ConstrainedModel)
    return wrapper(backbone, layer, factor, scale=float(scale), config=config, offset=float(offset))


def _check_size(value: int, name: str, *, option: bool = False) -> None:
    """Raise ConfigError when a size is beyond :data:`SIZE_LIMITS` (nothing is allocated)."""
    limit = SIZE_LIMITS[name]
    if value > limit:
        what = f"option {name!r}" if option else name
        raise ConfigError(
            f"{what} is {value}, more than climdown builds (at most {limit}); use a smaller {name}"
        )


def build_model(config: dict[str, Any]) -> ConstrainedModel:
    """Rebuild a model from its ``config`` (as recorded in ``model.config``).

    The result has freshly initialised weights; load the state dict to restore them.

    Raises
    ------
    ConfigError
        For a missing ``name``, an unknown key, or anything :func:`get_model` rejects.
    """
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown or "name" not in config:
        raise ConfigError(
            f"model config must have 'name' and only the keys {', '.join(CONFIG_KEYS)}; "
            f"got {sorted(config)}"
        )
    cfg = dict(config)
    options = dict(cfg.pop("options", None) or {})
    return get_model(**cfg, **options)
