"""Downscaling arguments never silently become something else.

``constraint=None`` is not the unconstrained model, and a factor (or constraint) without a
packaged model is not quietly the bicubic baseline: both are a ConfigError that names the
valid choices. Said explicitly (``constraint="none"``, ``model="bicubic"``), they run.
"""

from __future__ import annotations

import pytest
import xarray as xr

from climdown.errors import ConfigError
from climdown.inference import DownscaleOptions, Downscaler, downscale
from climdown.testing import tcw_dataarray


@pytest.fixture(scope="module")
def da() -> xr.DataArray:
    return tcw_dataarray(6, 6, 1)


def _entry_points(da: xr.DataArray):
    return {
        "options": lambda **kw: DownscaleOptions(**kw),
        "Downscaler": lambda **kw: Downscaler("bicubic", **kw),
        "downscale": lambda **kw: downscale(da, model="bicubic", **kw),
        "accessor": lambda **kw: da.climdown.downscale(model="bicubic", **kw),
    }


@pytest.mark.parametrize("entry", ["options", "Downscaler", "downscale", "accessor"])
def test_constraint_none_is_refused_naming_the_choices(da, entry) -> None:
    call = _entry_points(da)[entry]
    with pytest.raises(ConfigError, match="constraint") as info:
        call(factor=2, constraint=None)
    msg = str(info.value)
    assert "'none'" in msg and "'softmax'" in msg and "None" in msg
    # contrast: the unconstrained model, asked for by name, runs
    call(factor=2, constraint="none")


@pytest.mark.parametrize("factor", [3, 16])
def test_a_factor_without_a_packaged_model_is_an_error_not_bicubic(da, factor) -> None:
    for call in (
        lambda: Downscaler(None, factor=factor),
        lambda: downscale(da, factor),
        lambda: da.climdown.downscale(factor=factor),
    ):
        with pytest.raises(ConfigError, match=f"no packaged model for factor={factor}") as info:
            call()
        msg = str(info.value)
        assert "model='bicubic'" in msg  # the explicit choice
        assert "factor=4 constraint='softmax'" in msg  # what is packaged
    # contrast: the baseline, asked for by name, runs at any factor
    out = downscale(da, factor, model="bicubic")
    assert out.sizes["lat"] == 6 * factor


def test_a_constraint_without_a_packaged_model_is_an_error(da) -> None:
    with pytest.raises(ConfigError, match=r"factor=4, constraint='add'.*model='bicubic'"):
        downscale(da, 4, "add")
    downscale(da, 4, "add", model="bicubic")  # contrast: said explicitly


def test_the_packaged_model_is_still_the_default_where_it_exists() -> None:
    down = Downscaler(None, factor=4, constraint="softmax", device="cpu")
    assert down.name == "cnn-x4-softmax-rhine.pt"  # the finest regime until an input is seen


@pytest.mark.parametrize(
    ("name", "value"), [("progress", "yes"), ("progress", 1), ("strict", None), ("strict", "no")]
)
def test_flags_are_booleans(name, value) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be"):
        DownscaleOptions(**{name: value})
    DownscaleOptions(**{name: True})  # contrast
