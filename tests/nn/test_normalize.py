"""ConstrainedModel: conservation and positivity hold in physical units (kg m-2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from climdown.errors import ConfigError, GridShapeError
from climdown.grid import Grid, block_expand, coarsen
from climdown.nn.constraints import get_constraint
from climdown.nn.normalize import ConstrainedModel, area_weights

F = 4
SCALE = 37.5  # kg m-2, a TCW-like standard deviation: far from 1, so unit slips show


class Upsampler(nn.Module):
    """Tiny backbone: nearest upsampling by ``factor``, a fixed pattern, then a 1x1 convolution."""

    def __init__(self, factor: int, weight: float = 1.2, bias: float = 0.3) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(weight)
            self.conv.bias.fill_(bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = lr.shape  # [B, T, C, h, w]
        up = nn.functional.interpolate(lr.reshape(b * t, c, h, w), scale_factor=self.factor)
        rows = torch.arange(up.shape[-2], dtype=up.dtype, device=up.device)
        cols = torch.arange(up.shape[-1], dtype=up.dtype, device=up.device)
        # varies along latitude and longitude, so the area weights matter within each block
        pattern = 0.5 * torch.cos(1.3 * rows)[:, None] + 0.5 * torch.sin(0.7 * cols)[None, :]
        z = self.conv(up + pattern)
        return z.reshape(b, t, c, h * self.factor, w * self.factor)


@pytest.fixture(scope="module")
def polar_grid() -> Grid:
    """ERA5-like 0.25 deg rows 89.75..82.0N (descending), 12 fine columns."""
    return Grid(89.75 - 0.25 * np.arange(8 * F), np.arange(3 * F) * 0.25)


@pytest.fixture
def lr() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = 70.0 * torch.rand((2, 3, 1, 8, 3), generator=g)  # [B, T, C, h, w] kg m-2
    x[0, 1, 0, 2:4, 1] = 0.0  # dry blocks
    return x


def conservation_error(y: torch.Tensor, lr: torch.Tensor, area: torch.Tensor) -> float:
    """Worst |coarsen(y) - lr| relative to max |lr|, with climdown.grid.coarsen in float64."""
    err = (coarsen(y.detach().double(), area, F) - lr.double()).abs().max()
    return float(err / lr.abs().max())


@pytest.mark.parametrize("name", ["softmax", "add", "mult", "scadd"])
def test_conserves_in_physical_units(name, polar_grid, lr):
    model = ConstrainedModel(Upsampler(F), name, factor=F, scale=SCALE)
    area = torch.from_numpy(polar_grid.area)
    y = model(lr, area=area)
    assert y.shape == (2, 3, 1, 8 * F, 3 * F) and y.dtype == torch.float32
    assert conservation_error(y, lr, area) <= 1e-5
    if name in ("softmax", "mult"):
        assert (y >= 0).all()
        assert (y[block_expand(lr, F) == 0] == 0).all()


def test_mult_model_finite_for_moderately_negative_backbone_output(lr):
    model = ConstrainedModel(Upsampler(F, weight=0.0, bias=-2.3), "mult", factor=F, scale=SCALE)
    y = model(lr)
    assert torch.isfinite(y).all()


def test_unconstrained_model_does_not_conserve(polar_grid, lr):
    # Contrast for the test above.
    model = ConstrainedModel(Upsampler(F), "none", factor=F, scale=SCALE)
    area = torch.from_numpy(polar_grid.area)
    assert conservation_error(model(lr, area=area), lr, area) > 1e-2


def test_logits_are_not_rescaled_values_are(lr):
    backbone = Upsampler(F)
    expected = backbone(lr / SCALE)
    soft = ConstrainedModel(backbone, "softmax", factor=F, scale=SCALE)
    add = ConstrainedModel(backbone, "add", factor=F, scale=SCALE)
    torch.testing.assert_close(soft.raw(lr), expected)
    torch.testing.assert_close(add.raw(lr), expected * SCALE)
    mult = ConstrainedModel(backbone, "mult", factor=F, scale=SCALE)
    torch.testing.assert_close(mult.raw(lr), nn.functional.softplus(expected * SCALE))
    assert float(soft.scale) == SCALE and "scale" in dict(soft.named_buffers())


def test_the_normaliser_follows_the_layers_declared_input(lr):
    """A layer the normaliser has never heard of gets z in the form its ``expects`` names."""
    from climdown.nn.constraints import Constraint

    class Squared(Constraint):
        name = "squared"
        expects = "positive"

        @staticmethod
        def activation(z):
            return z**2

        def _constrain(self, zb, xb, wb):
            return zb

    backbone = Upsampler(F)
    model = ConstrainedModel(backbone, Squared(), factor=F, scale=SCALE)
    torch.testing.assert_close(model.raw(lr), (backbone(lr / SCALE) * SCALE) ** 2)
    assert not Squared.logits and get_constraint("softmax").logits
    with pytest.raises(TypeError, match="expects"):
        type("Bad", (Constraint,), {"expects": "kelvin"})


def test_scadd_depends_on_the_units_it_sees(lr):
    # scadd's s = +-1 is one kg m-2 here, not one normalised unit: the layer is not
    # scale-equivariant, which is why the normaliser must hand it physical units.
    z = Upsampler(F)(lr / SCALE)
    layer = get_constraint("scadd")
    physical = layer(z * SCALE, lr)
    normalised_then_rescaled = layer(z, lr / SCALE) * SCALE
    assert not torch.allclose(physical, normalised_then_rescaled, rtol=1e-3)


def test_bfloat16_autocast_output_is_float32_and_conserving(polar_grid, lr):
    area = torch.from_numpy(polar_grid.area)
    for name in ("softmax", "add"):
        model = ConstrainedModel(Upsampler(F), name, factor=F, scale=SCALE)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.raw(lr).dtype == torch.bfloat16  # the backbone does run in bf16
            y = model(lr, area=area)
        assert y.dtype == torch.float32
        assert conservation_error(y, lr, area) <= 1e-5


def test_constraint_in_bfloat16_would_not_conserve(polar_grid, lr):
    # Contrast: why the wrapper lifts z to float32 before the constraint.
    area = torch.from_numpy(polar_grid.area)
    z = Upsampler(F)(lr / SCALE).to(torch.bfloat16) * SCALE
    w = area_weights(area, F, z)
    y = get_constraint("add")(z, lr.to(torch.bfloat16), w)
    assert conservation_error(y, lr, area) > 1e-4


def test_area_as_batch_or_single_grid(polar_grid, lr):
    area = torch.from_numpy(polar_grid.area)
    model = ConstrainedModel(Upsampler(F), "softmax", factor=F, scale=SCALE)
    y2 = model(lr, area=area)
    y3 = model(lr, area=area.expand(2, *area.shape))
    torch.testing.assert_close(y2, y3, rtol=0, atol=0)
    # Different grids per sample (a polar and an equatorial patch): each conserves its own.
    eq = Grid(np.arange(8 * F) * 0.25, np.arange(3 * F) * 0.25)
    areas = torch.stack([area, torch.from_numpy(eq.area)])
    y = model(lr, area=areas)
    for b in range(2):
        assert conservation_error(y[b], lr[b], areas[b]) <= 1e-5
    # Contrast: sample 1 checked against the polar areas it was not built with.
    assert conservation_error(y[1], lr[1], area) > 1e-3


def test_area_weights_shape_dtype_and_none():
    area = torch.rand(8, 12, dtype=torch.float64) + 1.0
    like = torch.zeros(2, 1, 1, 8, 12, dtype=torch.float32)
    w = area_weights(area, F, like)
    assert w.shape == (1, 1, 1, 8, 12) and w.dtype == torch.float32
    assert area_weights(area[None].expand(2, 8, 12), F, like).shape == (2, 1, 1, 8, 12)
    assert area_weights(None, F, like) is None


def test_equal_weights_when_area_is_none(lr):
    model = ConstrainedModel(Upsampler(F), "add", factor=F, scale=SCALE)
    y = model(lr)
    ones = torch.ones(y.shape[-2:], dtype=torch.float64)
    assert conservation_error(y, lr, ones) <= 1e-5


def test_soft_penalty_on_the_normalised_scale(polar_grid, lr):
    area = torch.from_numpy(polar_grid.area)
    model = ConstrainedModel(Upsampler(F), get_constraint("soft", lam=0.5), F, scale=SCALE)
    model.requires_grad_(False)
    y = model(lr, area=area)
    expected = 0.5 * torch.mean((coarsen(y.double(), area, F) - lr.double()) ** 2) / SCALE**2
    torch.testing.assert_close(model.penalty(y, lr, area).double(), expected, rtol=1e-5, atol=0)
    assert float(expected) > 1e-3  # the random model is penalised
    hard = ConstrainedModel(Upsampler(F), "add", F, scale=SCALE).requires_grad_(False)
    assert float(hard.penalty(hard(lr, area=area), lr, area)) == 0.0


def test_gradients_reach_the_backbone(polar_grid, lr):
    area = torch.from_numpy(polar_grid.area)
    for name in ("softmax", "add", "mult", "scadd", "soft"):
        model = ConstrainedModel(Upsampler(F), name, factor=F, scale=SCALE)
        y = model(lr, area=area)
        loss = (y * torch.rand_like(y)).mean() + model.penalty(y, lr, area)
        loss.backward()
        grad = model.backbone.conv.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and (grad != 0).any()


def test_parameter_count_and_config():
    model = ConstrainedModel(Upsampler(F), "add", F, scale=2.0, config={"name": "tiny"})
    assert model.n_parameters == 2  # conv weight + bias; the scale is a buffer
    assert model.config == {"name": "tiny"}


def test_unknown_constraint_name_is_a_config_error():
    with pytest.raises(ConfigError, match="softmax"):
        ConstrainedModel(Upsampler(F), "hard", factor=F)


@pytest.mark.parametrize(
    ("backbone_factor", "area_shape"),
    [(2, None), (4, (8 * F - 4, 3 * F)), (4, (3, 8 * F, 3 * F))],
    ids=["backbone-factor-differs", "area-of-another-grid", "area-batch-differs"],
)
def test_mismatched_shapes_raise_grid_shape_error(lr, backbone_factor, area_shape):
    model = ConstrainedModel(Upsampler(backbone_factor), "add", factor=F)
    area = None if area_shape is None else torch.ones(area_shape, dtype=torch.float64)
    with pytest.raises(GridShapeError):
        model(lr, area=area)
