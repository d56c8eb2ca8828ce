"""Hypothesis properties of the constraint layers on random spherical grids.

Each conserving layer (softmax, add, mult, scadd) is checked against the area-weighted
coarsening of :mod:`climdown.grid` on random regional, polar and global grids, for factors
2, 3, 4 and 8, float32 and float64, values from 1e-6 to 1e6 and coarse blocks with x = 0.
The non-conserving layers (none, soft, clip) run through the same checker and fail it: the
contrast that shows the property can fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from climdown.grid import Grid, block_expand, block_weights, coarsen
from climdown.nn.constraints import get_constraint

CONSERVING = ("softmax", "add", "mult", "scadd")
FACTORS = (2, 3, 4, 8)
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
DTYPES = (torch.float32, torch.float64)
SETTINGS = settings(max_examples=40, deadline=None)


@dataclass
class Case:
    """One random problem: a fine grid, its areas, a factor and a seeded RNG."""

    factor: int
    area: torch.Tensor  # [H, W] float64, m^2
    rng: np.random.Generator
    kind: str

    @property
    def coarse_shape(self) -> tuple[int, int]:
        h, w = self.area.shape
        return (h // self.factor, w // self.factor)


@st.composite
def cases(draw: st.DrawFn, factors: tuple[int, ...] = FACTORS) -> Case:
    """A random fine grid (regional, polar 80..89.9 deg or global) and an RNG seed."""
    f = draw(st.sampled_from(factors))
    h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n_lat, n_lon = f * h, f * w
    kind = draw(st.sampled_from(["regional", "polar", "global", "global_poles"]))
    if kind == "regional":
        dlat = draw(st.sampled_from([0.1, 0.25, 1.0, 1.5]))
        top = 89.9 - dlat * (n_lat - 1)
        lat0 = draw(st.floats(-89.9, top, allow_nan=False))
        lat = lat0 + dlat * np.arange(n_lat)
    elif kind == "polar":  # rows crowd towards the pole: areas differ by up to ~100x
        lat0 = draw(st.floats(80.0, 89.0, allow_nan=False))
        lat = np.linspace(lat0, 89.9, n_lat)
    elif kind == "global":
        lat = -90.0 + (np.arange(n_lat) + 0.5) * 180.0 / n_lat
    else:  # ERA5-like: rows on the poles get half-height polar caps
        lat = np.linspace(-90.0, 90.0, n_lat)
    if kind.startswith("global"):
        lon = np.arange(n_lon) * 360.0 / n_lon
    else:
        dlon = draw(st.sampled_from([0.1, 0.25, 1.0, 1.5]))
        lon = draw(st.floats(-180.0, 179.0, allow_nan=False)) + dlon * np.arange(n_lon)
    if draw(st.booleans()):
        lat = lat[::-1].copy()  # ERA5 stores latitude descending
    grid = Grid(lat, lon)
    seed = draw(st.integers(0, 2**32 - 1))
    return Case(f, torch.from_numpy(grid.area), np.random.default_rng(seed), kind)


def coarse_input(case: Case, magnitude: float, zero_blocks: bool) -> np.ndarray:
    """Non-negative coarse field [2, h, w] of the given magnitude, some blocks exactly 0."""
    x = magnitude * case.rng.uniform(0.05, 1.0, size=(2, *case.coarse_shape))
    if zero_blocks:
        x[case.rng.random(x.shape) < 0.4] = 0.0
        x[0, 0, 0] = magnitude  # keep one block non-zero so max|x| sets the scale
    return x


def raw_output(case: Case, name: str, magnitude: float, spread: float) -> np.ndarray:
    """Raw network output z [2, H, W] suited to the layer (logits for softmax, >= 0 for mult)."""
    shape = (2, *case.area.shape)
    if name == "softmax":
        return spread * case.rng.standard_normal(shape)
    if name == "mult":
        z = magnitude * spread * case.rng.random(shape)
        z[case.rng.random(shape) < 0.2] = 0.0  # ReLU-like exact zeros
        return z
    return magnitude * (1.0 + spread * case.rng.standard_normal(shape))


def weights_of(case: Case, dtype: torch.dtype) -> torch.Tensor:
    """Block-normalised weights, computed in float64 then cast (as the model wrapper does)."""
    return block_weights(case.area, case.factor).to(dtype)


def block_errors(y: torch.Tensor, x: torch.Tensor, case: Case) -> torch.Tensor:
    """|coarsen(y) - x| per block, with coarsen from climdown.grid in float64."""
    return (coarsen(y.double(), case.area, case.factor) - x.double()).abs()


def relative_error(y: torch.Tensor, x: torch.Tensor, case: Case) -> float:
    """Worst block error relative to max |x| of the sample."""
    return float(block_errors(y, x, case).max() / x.abs().max())


magnitudes = st.sampled_from([1e-6, 1e-3, 1.0, 70.0, 1e6])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["softmax", "add", "mult"])
@SETTINGS
@given(
    case=cases(),
    magnitude=magnitudes,
    spread=st.sampled_from([0.1, 1.0, 10.0]),
    zero_blocks=st.booleans(),
)
def test_conserves_area_weighted_mean(name, dtype, case, magnitude, spread, zero_blocks):
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks)).to(dtype)
    z = torch.from_numpy(raw_output(case, name, magnitude, spread)).to(dtype)
    y = get_constraint(name)(z, x, weights_of(case, dtype))
    assert y.dtype == dtype and y.shape == z.shape
    assert torch.isfinite(y).all()
    assert relative_error(y, x, case) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@SETTINGS
@given(
    case=cases(),
    magnitude=magnitudes,
    spread=st.sampled_from([0.1, 1.0, 10.0]),
    zero_blocks=st.booleans(),
)
def test_scadd_conserves_relative_to_block_output(dtype, case, magnitude, spread, zero_blocks):
    # scadd divides by (s + zbar) with s = +-1, so a block whose weighted mean zbar is near
    # -+1 is amplified: y can be many orders larger than x. The float error of the block sum
    # is then eps times the block's |y|, not eps times |x|, so bound it by the block's max |y|
    # (and max |x|, whichever is larger).
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks)).to(dtype)
    z = torch.from_numpy(raw_output(case, "scadd", magnitude, spread)).to(dtype)
    y = get_constraint("scadd")(z, x, weights_of(case, dtype))
    assert torch.isfinite(y).all()
    f = case.factor
    *lead, hh, ww = y.shape
    block_max = y.double().abs().reshape(*lead, hh // f, f, ww // f, f).amax(dim=(-3, -1))
    scale = torch.maximum(block_max, x.double().abs().max())
    assert float((block_errors(y, x, case) / scale).max()) <= TOL[dtype]


@pytest.mark.parametrize("name", ["none", "soft", "clip"])
@SETTINGS
@given(case=cases(), magnitude=magnitudes)
def test_non_conserving_layers_fail_the_same_check(name, case, magnitude):
    # Contrast: the checker above is not vacuous; y = z (or max(z, 0)) does not conserve.
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks=False))
    z = torch.from_numpy(raw_output(case, "add", magnitude, 1.0))
    y = get_constraint(name)(z, x, weights_of(case, torch.float64))
    assert relative_error(y, x, case) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@SETTINGS
@given(case=cases(), magnitude=magnitudes, spread=st.sampled_from([0.1, 1.0, 10.0, 100.0]))
def test_softmax_positive_and_zero_where_x_is_zero(dtype, case, magnitude, spread):
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks=True)).to(dtype)
    z = torch.from_numpy(raw_output(case, "softmax", magnitude, spread)).to(dtype)
    y = get_constraint("softmax")(z, x, weights_of(case, dtype))
    assert (y >= 0).all()
    dry = block_expand(x, case.factor) == 0
    assert (y[dry] == 0).all()
    assert (y[~dry] >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@SETTINGS
@given(case=cases(), magnitude=magnitudes)
def test_mult_positive_for_non_negative_z(dtype, case, magnitude):
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks=True)).to(dtype)
    z = torch.from_numpy(raw_output(case, "mult", magnitude, 1.0)).to(dtype)
    assert (get_constraint("mult")(z, x, weights_of(case, dtype)) >= 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@SETTINGS
@given(case=cases(), magnitude=magnitudes)
def test_clip_positive_but_not_conserving(dtype, case, magnitude):
    # Clip a field that conserves exactly (the output of `add`) but has negative cells:
    # clip makes it positive and, in doing so, adds mass.
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks=True)).to(dtype)
    z = torch.from_numpy(raw_output(case, "add", magnitude, 3.0)).to(dtype)
    w = weights_of(case, dtype)
    conserving = get_constraint("add")(z, x, w)
    added = coarsen(torch.relu(-conserving).double(), case.area, case.factor)
    assume(float(added.max() / x.abs().max()) > 10 * TOL[dtype])
    y = get_constraint("clip")(conserving, x, w)
    assert (y >= 0).all()
    assert relative_error(conserving, x, case) <= TOL[dtype]
    assert relative_error(y, x, case) > TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["softmax", "add", "mult"])
@SETTINGS
@given(case=cases(), zero_blocks=st.booleans(), extreme=st.booleans())
def test_finite_for_z_up_to_1e4(name, dtype, case, zero_blocks, extreme):
    # softmax and add take signed z up to +-1e4; mult takes |z| up to 1e4. With `extreme`
    # whole blocks sit at +-1e4, where an unshifted exp overflows (inf/inf) or underflows (0/0).
    shape = (2, *case.area.shape)
    z = 1e4 * case.rng.uniform(-1.0, 1.0, size=shape)
    if extreme:
        z = 1e4 * np.sign(case.rng.standard_normal(shape))
    if name == "mult":
        z = np.abs(z)
    x = torch.from_numpy(coarse_input(case, 70.0, zero_blocks)).to(dtype)
    z = torch.from_numpy(z).to(dtype).requires_grad_(True)
    y = get_constraint(name)(z, x, weights_of(case, dtype))
    assert torch.isfinite(y).all()
    (y * torch.rand_like(y)).sum().backward()
    assert torch.isfinite(z.grad).all()
    if name == "softmax":  # the shift by the block max must not cost conservation
        assert relative_error(y.detach(), x, case) <= TOL[dtype]


@pytest.mark.parametrize("name", ["none", "softmax", "add", "mult", "scadd", "clip", "soft"])
@settings(max_examples=30, deadline=None)
@given(case=cases(), magnitude=st.sampled_from([1e-3, 1.0, 70.0]))
def test_gradients_flow_to_z(name, case, magnitude):
    x = torch.from_numpy(coarse_input(case, magnitude, zero_blocks=False))
    z = torch.from_numpy(raw_output(case, name, magnitude, 1.0))
    if name == "mult":
        z = z + magnitude  # strictly positive: no fallback block, so y depends on every z
    z.requires_grad_(True)
    y = get_constraint(name)(z, x, weights_of(case, torch.float64))
    # Random weights r: the plain sum of a conserving y has zero gradient by construction.
    (y * torch.from_numpy(case.rng.random(y.shape))).sum().backward()
    assert z.grad is not None
    assert torch.isfinite(z.grad).all()
    assert (z.grad != 0).any()
