"""Shared, cheap fixtures: the packaged ERA5 samples and a tiny synthetic dataset."""

from __future__ import annotations

import pytest
import xarray as xr

from climdown.data import open_sample, synthetic_tcw


@pytest.fixture(scope="session")
def rhine_ds() -> xr.Dataset:
    """Real ERA5 ``tcw``: 24 hourly 41 x 41 fields at 0.25 deg over the Rhine (do not mutate)."""
    return open_sample("rhine")


@pytest.fixture(scope="session")
def global_ds() -> xr.Dataset:
    """Real ERA5 ``tcwv``: one global 1.5 deg field, 121 x 240, poles included (do not mutate)."""
    return open_sample("global")


@pytest.fixture(scope="session")
def synthetic_small() -> xr.Dataset:
    """Synthetic ``tcw``: 4 hourly 32 x 32 fields at 0.25 deg (40-48 N, 0-7.75 E), seed 0."""
    return synthetic_tcw(4, region=(40.0, 48.0, 0.0, 7.8), seed=0)
