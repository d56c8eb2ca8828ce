"""Data: open ERA5 and reference tensors, generate synthetic TCW, build and read training stores."""

from __future__ import annotations

from climdown.data.sources import (
    find_variable,
    load_reference_pt,
    normalize_dataset,
    open_era5,
    open_sample,
    open_source,
    sample_path,
)
from climdown.data.synthetic import synthetic_tcw

__all__ = [
    "synthetic_tcw",
    "open_era5",
    "normalize_dataset",
    "find_variable",
    "sample_path",
    "open_sample",
    "open_source",
    "load_reference_pt",
]
