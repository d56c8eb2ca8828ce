"""Recurrent windows: a model trained on frames one step apart sees only windows of that step.

A store records the time step of its source (``time_step_s``), training copies it into the
checkpoint, and :class:`climdown.inference.Downscaler` refuses a window whose frames are
another step apart (a 5-day gap in an hourly model's window) with a ``CoordinateError`` naming
both steps. The contrast: the hourly window passes and conserves. A checkpoint without a
recorded step warns, once, that the spacing cannot be checked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from climdown.checkpoint import clear_model_cache, read_meta, save_checkpoint
from climdown.conservation import assert_conserves
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, store_info
from climdown.errors import CoordinateError
from climdown.inference import Downscaler, downscale
from climdown.nn.models import get_model
from climdown.study import recipes_dir
from climdown.testing import tcw_dataarray
from climdown.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-frame store of hourly synthetic data and a ConvGRU trained on it for one epoch."""
    d = yaml.safe_load((recipes_dir() / "tiny.yaml").read_text())
    d.update(
        output=str(tmp_path_factory.mktemp("stores") / "seq.zarr"),
        frames=3,
        splits={
            "train": {"start": "2020-01-01", "end": "2020-01-01T12:00", "samples": 8},
            "val": {"start": "2020-01-01T12:00", "end": "2020-01-02", "samples": 4},
        },
        chunks=8,
    )
    store = build_store(load_recipe(d))
    out = tmp_path_factory.mktemp("run") / "gru"
    train(
        store,
        model="convgru",
        constraint="softmax",
        epochs=1,
        out=out,
        batch_size=4,
        progress=False,
        model_options={"width": 4, "hidden": 4},
    )
    return store, out / "best.pt"


def _series(times: pd.DatetimeIndex | np.ndarray) -> xr.DataArray:
    da = tcw_dataarray(6, 7, len(times), spacing=4.0, seed=9)  # the tiny store's LR cells
    return da.assign_coords(time=np.asarray(times, dtype="datetime64[ns]"))


HOURLY = pd.date_range("2020-01-03", periods=4, freq="1h")
GAP = HOURLY[:2].append(HOURLY[2:] + pd.Timedelta(days=5))  # 5 days between frames 1 and 2


def test_store_and_checkpoint_record_the_time_step(trained) -> None:
    store, ckpt = trained
    assert store_info(store)["time_step_s"] == 3600.0
    meta = read_meta(ckpt)
    assert meta["time_step_s"] == 3600.0
    assert meta["orientation"] == store_info(store)["orientation"]


def test_a_gap_in_the_window_is_refused_and_the_hourly_window_passes(trained) -> None:
    _, ckpt = trained
    clear_model_cache()
    try:
        down = Downscaler(ckpt, factor=4, constraint="softmax", device="cpu")
        assert down.frames == 3 and down.time_step_s == 3600.0
        with pytest.raises(CoordinateError) as err:
            down(_series(GAP))
        msg = str(err.value)
        assert "trained on frames 1 h apart" in msg and "steps by 121 h" in msg
        assert "time_step_s=3600" in msg and "resample" in msg
        # a window of daily steps is refused too, though evenly spaced
        with pytest.raises(CoordinateError, match="trained on frames 1 h apart"):
            down(_series(pd.date_range("2020-01-03", periods=4, freq="1D")))
        # contrast: hourly frames are what the model was trained on
        hourly = _series(HOURLY)
        hr = down(hourly)
        assert_conserves(hr, hourly, rtol=1e-5)
        lazy = down(hourly.chunk(time=2))  # checked when the graph is built, computed later
        np.testing.assert_allclose(lazy.values, hr.values, rtol=1e-5, atol=1e-4)
        with pytest.raises(CoordinateError, match="trained on frames 1 h apart"):
            down(_series(GAP).chunk(time=2))  # refused before anything is computed
    finally:
        clear_model_cache()


def test_numeric_and_cftime_time_axes_are_checked_too(trained) -> None:
    cftime = pytest.importorskip("cftime")
    _, ckpt = trained
    clear_model_cache()
    try:
        down = Downscaler(ckpt, factor=4, constraint="softmax", device="cpu")
        hours = _series(HOURLY).assign_coords(time=("time", [0.0, 1.0, 122.0, 123.0]))
        hours.time.attrs["units"] = "hours since 2020-01-03"
        with pytest.raises(CoordinateError, match="121 h"):
            down(hours)
        noleap = _series(HOURLY).assign_coords(
            time=[cftime.DatetimeNoLeap(2020, 1, 3, h) for h in range(4)]
        )
        down(noleap)  # hourly: passes
        gap = noleap.assign_coords(
            time=[cftime.DatetimeNoLeap(2020, 1, d, h) for d, h in ((3, 0), (3, 1), (8, 1), (8, 2))]
        )
        with pytest.raises(CoordinateError, match="steps by 5 days"):
            down(gap)
    finally:
        clear_model_cache()


def _gru() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("convgru", 4, "softmax", frames=3, scale=30.0, width=4, hidden=4).eval()


def test_a_checkpoint_without_a_step_warns_once(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "old.pt", _gru(), meta={"variable": "tcw"})
    clear_model_cache()
    try:
        down = Downscaler(path, factor=4, constraint="softmax", device="cpu")
        with pytest.warns(UserWarning, match="cannot be checked: model 'old.pt' records no"):
            down(_series(GAP))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once: not again for the same Downscaler
            down(_series(HOURLY))
        # a feed-forward model has no windows: nothing to check, nothing said
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            downscale(_series(GAP), 4, "softmax", model="bicubic")
    finally:
        clear_model_cache()
