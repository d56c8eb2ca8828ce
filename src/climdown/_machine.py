"""What machine a number was measured on: CPU model, cores, load, library versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "load_average", "machine_info"]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1/5/15-minute load average as ``"a / b / c"`` (``"?"`` where the OS has none)."""
    if not hasattr(os, "getloadavg"):
        return "?"
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_info() -> str:
    """One line naming the CPU, core count, GPU, OS, Python, torch and climdown versions."""
    import torch

    from climdown._version import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {gpu}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"climdown {__version__}"
    )
