"""Device choice for every torch entry point: ``"auto"`` picks CUDA, then MPS, then CPU."""

from __future__ import annotations

from typing import TypeVar

import torch

from climdown.errors import ConfigError

__all__ = ["pick_device", "to_device"]

M = TypeVar("M", bound=torch.nn.Module)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, then Apple MPS, then CPU; otherwise ``torch.device(device)``.

    Raises
    ------
    ConfigError
        For a device string torch does not know, or a CUDA/MPS device that is not available.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }
    if not available.get(dev.type, True):
        raise ConfigError(f"device {device!r} is not available on this machine; use device='auto'")
    return dev


def to_device(module: M, device: torch.device) -> M:
    """Move ``module`` to ``device``; convolution weights in channels-last on CPU and CUDA.

    Channels-last (NHWC) is the layout oneDNN and cuDNN convolve fastest; the activations
    follow the weights' layout. It changes memory strides only, not the maths.
    """
    module = module.to(device)
    if device.type in ("cpu", "cuda"):
        # Module.to takes memory_format at runtime (torch._C._nn._parse_to); its stubs omit it
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return module
