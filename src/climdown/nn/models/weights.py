"""Loading weights saved by the study's reference code into climdown's reference layouts.

:func:`from_reference` maps a state dict written by RolnickLab/constrained-downscaling
(``torch.save(model.state_dict())``) onto the layouts of :mod:`climdown.nn.models.reference`
(and ``CNN(layout="reference")``), checking every key and shape, and returns a ready
:class:`~climdown.nn.normalize.ConstrainedModel` (or the discriminator).
:func:`read_reference_weights` reads the weights out of the checkpoint files the reference's
training writes (``{'model': model, 'state_dict': ...}``, a pickled model beside its weights)
without running the reference's code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from climdown.errors import CheckpointError, ConfigError
from climdown.nn.models.reference import ReferenceDiscriminator
from climdown.nn.models.registry import get_model

__all__ = ["REFERENCE_CLASSES", "from_reference", "read_reference_weights", "reference_keys"]
#: Reference class of each climdown model name, as the reference's ``utils.load_model`` builds it.
REFERENCE_CLASSES = {
    "cnn": "ResNet",
    "gan": "ResNet(noise=True)",
    "discriminator": "Discriminator",
    "convgru": "ConvGRUGeneratorDet",
    "flowconvgru": "TimeEndToEndModel",
}


#: Reference ``ResNet`` module name -> climdown ``CNN(layout='reference')`` module name.
CNN_KEYS = {"conv1": "inp", "upsampling": "up", "conv2": "mid", "res_blocks": "blocks",
            "conv3": "post", "conv4": "head"}  # fmt: skip


def _cnn_key(key: str) -> str:
    """Reference ``ResNet`` key -> climdown ``CNN(layout='reference')`` key."""
    head, _, rest = key.partition(".")
    if head not in CNN_KEYS:
        raise KeyError(key)
    return f"{CNN_KEYS[head]}.{rest}"


def _gan_key(key: str) -> str:
    head = key.partition(".")[0]
    if head not in {"conv_trans0", "conv1", "res_blocks", "conv2", "upsampling", "conv3", "conv4"}:
        raise KeyError(key)
    return key


def _convgru_key(key: str) -> str:
    head = key.partition(".")[0]
    if head not in {"initialize", "conv1", "res_blocks", "convgru", "upsampling", "conv2"}:
        raise KeyError(key)
    return key


def _flow_key(key: str) -> str:
    head, _, rest = key.partition(".")
    if head == "spatial_sr":
        return f"spatial_sr.{_convgru_key(rest)}"
    if head != "temporal_sr":
        raise KeyError(key)
    return key


def _disc_key(key: str) -> str:
    head = key.partition(".")[0]
    if head not in {f"conv{i}" for i in (1, 2, 3, 4, 5, 6, 9)}:
        raise KeyError(key)
    return key


_KEYMAPS = {
    "cnn": _cnn_key,
    "gan": _gan_key,
    "convgru": _convgru_key,
    "flowconvgru": _flow_key,
    "discriminator": _disc_key,
}


def reference_keys(state_dict: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A reference state dict with climdown's backbone keys (no ``backbone.`` prefix).

    Raises
    ------
    CheckpointError
        For a key the reference model of ``name`` does not have (a state dict of another model).
    """
    if name not in _KEYMAPS:
        raise ConfigError(f"no reference mapping for {name!r}; choose one of {', '.join(_KEYMAPS)}")
    out = {}
    for key, value in state_dict.items():
        try:
            out[_KEYMAPS[name](key)] = value
        except KeyError:
            raise CheckpointError(
                f"key {key!r} is not a parameter of the reference {REFERENCE_CLASSES[name]}: "
                f"this state dict is not the reference {name!r} model"
            ) from None
    return out


class _Inert:
    """Stands in for a class or function a reference checkpoint names; it runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def read_reference_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a file saved by the reference code, read without running its code.

    The reference's ``training.py`` saves its best model as ``torch.save({'model': model,
    'state_dict': model.state_dict()}, './models/<id>.pth')``: the pickled ``model`` names the
    reference's classes (``models.ResNet``, ...), so ``torch.load(path, weights_only=True)``
    refuses the file and ``weights_only=False`` would import and run whatever it names. This reads
    it with torch's weights-only unpickler, every class or function the file names standing in
    as an inert placeholder that runs no code, and returns only the tensors of ``state_dict``.
    A bare state dict (``torch.save(model.state_dict())``) is read as it is.

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, holds no state dict, or names something torch's
        weights-only reader blocks outright (``os.system``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference checkpoint {str(path)!r} not found")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([(_Inert, name) for name in names]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"cannot read reference checkpoint {str(path)!r}: it is corrupt, not a torch zip "
            "file (torch >= 1.6 writes one), or names code torch's weights-only reader blocks. "
            f"Reader said: {err}"
        ) from err
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        seen = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload)
        raise CheckpointError(
            f"{str(path)!r} holds no state dict: expected the reference's checkpoint "
            f"{{'model': ..., 'state_dict': ...}} or a bare state dict of tensors, found {seen}"
        )
    return {str(k): v for k, v in state.items()}


def from_reference(
    state_dict: Mapping[str, Any] | str | os.PathLike,
    name: str,
    *,
    factor: int = 4,
    constraint: str = "none",
    scale: float = 1.0,
    offset: float = 0.0,
    channels: int | None = None,
    blocks: int | None = None,
    **model_options: Any,
) -> nn.Module:
    """Build the reference layout of ``name`` and load a state dict saved by the reference code.

    Parameters
    ----------
    state_dict : mapping or path
        The reference model's state dict, a mapping holding it under ``"state_dict"`` (as the
        reference's checkpoints do), or the path of a file the reference saved, read with
        :func:`read_reference_weights`.
    name : {"cnn", "gan", "convgru", "flowconvgru", "discriminator"}
        The reference model (``--model`` of its ``main.py``; ``discriminator`` for the GAN's).
    factor, constraint
        As :func:`~climdown.nn.models.get_model`. ``constraint="mult"`` loads the reference's
        raw form (``constraint_options`` ``{"raw": True}``), since the weights were trained on it.
    scale, offset : float
        The reference min-max scaled its data to 0..1: to run its weights on fields in kg m-2,
        pass its training data's ``offset`` = minimum and ``scale`` = maximum - minimum. Then
        ``model(x)`` is ``offset + scale * reference_model((x - offset) / scale)`` for every
        constraint. The defaults (0, 1) take and return the reference's 0..1 values.
    channels, blocks : int, optional
        Default: read off the state dict (the reference's ``number_channels`` and
        ``number_residual_blocks``).

    Returns
    -------
    ConstrainedModel, or a :class:`ReferenceDiscriminator` for ``discriminator``.

    Raises
    ------
    CheckpointError
        When the state dict is not the reference model of ``name`` (other keys or shapes).
    """
    state: Mapping[str, Any]
    if isinstance(state_dict, (str, os.PathLike)):
        state = read_reference_weights(state_dict)
    elif isinstance(state_dict.get("state_dict"), Mapping):
        state = state_dict["state_dict"]
    else:
        state = state_dict
    mapped = reference_keys(state, name)
    if name == "discriminator":
        disc = ReferenceDiscriminator(scale=scale)
        _load(disc, {**mapped, "scale": disc.scale}, name)  # the scale is climdown's, not a weight
        return disc
    width = channels if channels is not None else _width(mapped, name)
    nblocks = blocks if blocks is not None else _blocks(mapped, name)
    raw = {"raw": True} if str(constraint) == "mult" else None
    model = get_model(
        name,
        factor,
        constraint,
        scale=scale,
        offset=offset,
        layout="reference",
        width=width,
        blocks=nblocks,
        constraint_options=raw,
        **model_options,
    )
    _load(model.backbone, mapped, name)
    return model


def _width(mapped: Mapping[str, Any], name: str) -> int:
    key = {"cnn": "inp.0.weight", "gan": "conv1.0.weight", "convgru": "conv1.module.weight",
           "flowconvgru": "spatial_sr.conv1.module.weight"}[name]  # fmt: skip
    if key not in mapped:
        raise CheckpointError(f"the reference {name!r} state dict has no {key!r}")
    return int(mapped[key].shape[0])


def _blocks(mapped: Mapping[str, Any], name: str) -> int:
    prefix = {"cnn": "blocks.", "gan": "res_blocks.", "convgru": "res_blocks.",
              "flowconvgru": "spatial_sr.res_blocks."}[name]  # fmt: skip
    found = {int(k[len(prefix) :].split(".")[0]) for k in mapped if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def _load(module: nn.Module, mapped: Mapping[str, Any], name: str) -> None:
    try:
        module.load_state_dict(dict(mapped), strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the state dict does not fit climdown's reference {name!r} layout "
            f"({REFERENCE_CLASSES[name]}): {err}"
        ) from None
