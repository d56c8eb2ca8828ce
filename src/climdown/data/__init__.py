"""Data: open ERA5 and reference tensors, generate synthetic TCW, build and read training stores."""

from __future__ import annotations

from climdown.data.synthetic import synthetic_tcw

__all__ = ["synthetic_tcw"]
