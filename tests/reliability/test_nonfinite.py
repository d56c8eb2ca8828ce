"""Non-finite numbers never flow through: not from a checkpoint, not from the input, not out.

* a checkpoint whose weights or buffers are NaN/inf, or whose normalisation scale is not a
  positive finite number, is refused at load (CheckpointError), not run into an all-NaN field;
* an input the model cannot represent (float32 overflow, or far beyond its normalisation
  scale) is refused before any compute, for what it is (too large), not as "NaN/inf";
* a model output that is not finite is an error naming where (time, lat, lon), never returned
  or written.
"""

from __future__ import annotations

import json

import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr

from climdown.checkpoint import clear_model_cache, load_cached, load_checkpoint, save_checkpoint
from climdown.errors import CheckpointError, DataValueError
from climdown.fileio import downscale_file
from climdown.grid import Grid
from climdown.inference import MAX_INPUT_SCALES, Downscaler, downscale
from climdown.nn.models import get_model
from climdown.testing import tcw_dataarray

META = {"variable": "tcw", "units": "kg m-2"}
SCALE = 30.0


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("cnn", 2, "softmax", scale=SCALE, width=4, blocks=1).eval()


@pytest.fixture()
def ckpt(tmp_path):
    clear_model_cache()
    yield save_checkpoint(tmp_path / "good.pt", _model(), meta=META)
    clear_model_cache()


def _damage(path, tmp_path, name: str, how) -> object:
    """A copy of checkpoint ``path`` with ``how`` applied to its state dict or metadata."""
    payload = torch.load(path, weights_only=True)
    if name == "meta":
        meta = json.loads(payload["meta_json"])
        how(meta)
        payload["meta_json"] = json.dumps(meta)
    else:
        how(payload["state_dict"])
    out = tmp_path / f"bad-{name}.pt"
    torch.save(payload, out)
    return out


def _first_weight(sd: dict) -> str:
    return next(k for k, v in sd.items() if k != "scale" and v.is_floating_point())


DAMAGE = {
    "nan-weight": ("state", lambda sd: sd[_first_weight(sd)].view(-1).__setitem__(0, np.nan)),
    "inf-weight": ("state", lambda sd: sd[_first_weight(sd)].view(-1).__setitem__(3, np.inf)),
    "all-nan-weights": ("state", lambda sd: sd[_first_weight(sd)].fill_(np.nan)),
    "nan-scale-buffer": ("state", lambda sd: sd["scale"].fill_(np.nan)),
    "zero-scale-buffer": ("state", lambda sd: sd["scale"].fill_(0.0)),
    "negative-scale-buffer": ("state", lambda sd: sd["scale"].fill_(-SCALE)),
    "zero-scale-meta": ("meta", lambda m: m.__setitem__("scale", 0.0)),
    "inf-scale-meta": ("meta", lambda m: m.__setitem__("scale", float("inf"))),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_checkpoints_with_non_finite_weights_or_bad_scale_are_refused(ckpt, tmp_path, case):
    where, how = DAMAGE[case]
    bad = _damage(ckpt, tmp_path, "meta" if where == "meta" else case, how)
    match = "normalisation scale" if "scale" in case and "nan" not in case else "non-finite"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=match):
        load_cached(bad)
    with pytest.raises(CheckpointError, match=match):
        Downscaler(bad, factor=2, constraint="softmax", device="cpu")
    # contrast: the undamaged checkpoint loads and gives a finite field
    out = Downscaler(ckpt, factor=2, constraint="softmax", device="cpu")(tcw_dataarray(4, 6, 1))
    assert np.isfinite(out.values).all()


# ------------------------------------------------------------------ inputs the model cannot take
def _field(value: float, dtype=np.float32, units: str = "kg m-2") -> xr.DataArray:
    da = tcw_dataarray(4, 6, 2, units=units).astype(dtype)
    v = da.values.copy()
    v[1, 2, 3] = value
    return da.copy(data=v)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(1e36, np.float32), (3e38, np.float32), (1e40, np.float64), (-1e40, np.float64)],
)
@pytest.mark.parametrize("model", ["checkpoint", "bicubic"])
def test_finite_inputs_too_large_for_the_model_are_refused_as_such(ckpt, value, dtype, model):
    down = Downscaler(ckpt if model == "checkpoint" else "bicubic", factor=2, constraint="softmax")
    with pytest.raises(DataValueError, match="too large for the model") as info:
        down(_field(value, dtype))
    assert "NaN/inf" not in str(info.value)  # it was finite: say what it is
    assert f"{abs(value):.4g}" in str(info.value)


def test_the_bound_is_a_million_normalisation_scales(ckpt) -> None:
    down = Downscaler(ckpt, factor=2, constraint="softmax", device="cpu")
    assert down.max_input == pytest.approx(MAX_INPUT_SCALES * SCALE)
    with pytest.raises(DataValueError, match="too large"):
        down(_field(1.01 * down.max_input))
    # contrast: just inside the bound is downscaled (and stays finite)
    out = down(_field(0.99 * down.max_input))
    assert np.isfinite(out.values).all()
    baseline = Downscaler("bicubic", factor=2, constraint="softmax")
    assert baseline.max_input == MAX_INPUT_SCALES  # scale 1 kg m-2
    assert np.isfinite(baseline(_field(0.99 * MAX_INPUT_SCALES)).values).all()


def test_the_bound_applies_in_kg_m2_whatever_the_input_units() -> None:
    down = Downscaler("bicubic", factor=2, constraint="softmax")
    metres = _field(2e3, units="m") / 1000.0  # 2 m of water = 2000 kg m-2: fine
    metres.attrs = {"units": "m", "long_name": "Total column water"}
    assert np.isfinite(down(metres).values).all()
    big = metres.copy(data=np.where(metres.values > 1.5, 5e3, metres.values))  # 5e6 kg m-2
    big.attrs = metres.attrs
    with pytest.raises(DataValueError, match=r"5e\+06 kg m-2"):
        down(big)


def test_nan_and_inf_are_reported_as_what_they_are() -> None:
    down = Downscaler("bicubic", factor=2, constraint="softmax")
    with pytest.raises(DataValueError, match=r"1 NaN/inf value\(s\) of 48 \(1 NaN, 0 inf\)"):
        down(_field(np.nan))
    with pytest.raises(DataValueError, match=r"\(0 NaN, 1 inf\)"):
        down(_field(np.inf, np.float64))


def test_lazy_input_too_large_is_refused_at_compute() -> None:
    da = _field(1e37).chunk({"time": 1})
    hr = downscale(da, 2, "softmax", model="bicubic")  # lazy: nothing checked yet
    with pytest.raises(DataValueError, match="too large"):
        hr.compute()


# ------------------------------------------------------------------ outputs that are not finite
class Poisoned(torch.nn.Module):
    """``nearest`` x2, but NaN wherever the value exceeds 50: a model broken for some inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = get_model("nearest", 2, "none")
        self.factor, self.constraint, self.config = 2, self.inner.constraint, {"name": "poisoned"}

    def forward(self, lr: torch.Tensor, area: torch.Tensor | None = None) -> torch.Tensor:
        y = self.inner(lr, area=area)
        return torch.where(y > 50, torch.full_like(y, np.nan), y)


def _poison_input() -> xr.DataArray:
    """Three hourly 4 x 6 fields of 10 kg m-2; one cell (time 1, row 2, col 3) is 55."""
    da = tcw_dataarray(4, 6, 3)
    v = np.full(da.shape, 10.0, dtype=np.float32)
    v[1, 2, 3] = 55.0
    return da.copy(data=v)


@pytest.mark.parametrize("chunks", [None, {"time": 1, "lat": 2, "lon": 3}], ids=["numpy", "dask"])
def test_non_finite_output_is_an_error_naming_time_and_place(chunks) -> None:
    da = _poison_input()
    fine = Grid.from_xarray(da).refine(2)
    src = da if chunks is None else da.chunk(chunks)
    with pytest.raises(DataValueError, match="returned 4 non-finite") as info:
        downscale(src, 2, "none", model=Poisoned()).compute()
    msg = str(info.value)
    # the first bad fine cell: time 1, fine row 4, fine column 6
    assert "time=2020-01-01T01:00:00 (index 1)" in msg
    assert f"lat={fine.lat[4]:.4f}" in msg and f"lon={fine.lon[6]:.4f}" in msg
    # contrast: the same model on input it handles returns a finite field
    ok = downscale(da.where(da < 50, 10.0), 2, "none", model=Poisoned())
    assert np.isfinite(ok.values).all()


def test_non_finite_output_of_an_array_names_its_index() -> None:
    x = _poison_input().values
    with pytest.raises(DataValueError, match=r"first at index \(1, 4, 6\)"):
        Downscaler(Poisoned(), factor=2, constraint="none")(x)
    lazy = Downscaler(Poisoned(), factor=2, constraint="none")(dsa.from_array(x, chunks=(1, 2, 3)))
    with pytest.raises(DataValueError, match=r"first at index \(1, 4, 6\)"):
        lazy.compute()


def test_non_finite_output_is_never_written(tmp_path) -> None:
    src, dst = tmp_path / "in.nc", tmp_path / "out.nc"
    _poison_input().to_dataset().to_netcdf(src)
    with pytest.raises(DataValueError, match="non-finite"):
        downscale_file(src, dst, factor=2, constraint="none", model=Poisoned())
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nc"]  # no temporary left
