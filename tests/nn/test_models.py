"""Tests of the model families and the registry: shapes, conservation, config round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from climdown.errors import ConfigError, GridShapeError
from climdown.grid import Grid, block_expand, block_weights, coarsen
from climdown.nn.constraints import CONSTRAINTS, SoftConstraint, block_mean, get_constraint
from climdown.nn.losses import soft_penalty
from climdown.nn.models import (
    MODELS,
    ConvGRU,
    FlowConvGRU,
    GANModel,
    PatchDiscriminator,
    build_model,
    get_model,
    make_discriminator,
    warp,
)
from climdown.nn.models.registry import CONFIG_KEYS

LEARNED = ("cnn", "gan", "convgru", "flowconvgru")
BASELINES = ("nearest", "bilinear", "bicubic", "pycnophylactic")
TINY = {
    "cnn": {"width": 8, "blocks": 2},
    "gan": {"width": 8, "blocks": 2},
    "convgru": {"width": 8, "hidden": 8},
    "flowconvgru": {"width": 8, "hidden": 8, "flow_width": 4},
}


def tiny(
    name: str, factor: int = 4, constraint: str = "none", rough: bool = True, **kw
) -> torch.nn.Module:
    """A small model; ``rough``: pixel-shuffle heads kicked off their ICNR start.

    ICNR makes an untrained head block-constant (see the test below); the tests of
    conservation and gradients want a model with structure inside the blocks.
    """
    torch.manual_seed(0)
    model = get_model(name, factor, constraint, **{**TINY.get(name, {}), **kw})
    return kick_heads(model) if rough else model


def kick_heads(model: torch.nn.Module) -> torch.nn.Module:
    """Add noise to every pixel-shuffle head's convolution (off its block-constant ICNR start)."""
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "head.conv" in pname:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    return model


def polar_area(h: int, w: int) -> torch.Tensor:
    """Fine-cell areas (m^2) of a high-latitude grid: cells shrink ~10x from 60N to 89N."""
    return torch.as_tensor(Grid(np.linspace(89.0, 60.0, h), np.linspace(0.0, 10.0, w)).area)


def tcw_like(batch: int = 2, frames: int = 1, size: int = 8, dtype=torch.float32) -> torch.Tensor:
    """Positive coarse TCW-like input (kg m-2) with one completely dry cell."""
    g = torch.Generator().manual_seed(1)
    lr = (torch.rand(batch, frames, 1, size, size, generator=g) * 50 + 0.5).to(dtype)
    lr[0, 0, 0, 2, 3] = 0.0
    return lr


def conservation_error(y: torch.Tensor, lr: torch.Tensor, area: torch.Tensor, factor: int):
    """Largest |coarsen(y) - lr| relative to the block's magnitude.

    The magnitude is ``max(|lr|, coarsen(|y|))``: round-off scales with the values summed, so a
    dry block (lr = 0) next to wet ones is judged against the size of the y it had to cancel.
    """
    y, ref = y.detach().to(torch.float64), lr.detach().to(torch.float64)
    back = coarsen(y, area, factor)
    size = torch.maximum(ref.abs(), coarsen(y.abs(), area, factor)).clamp(min=1e-30)
    return float(((back - ref).abs() / size).max())


# --------------------------------------------------------------------------------------------
# every model x every constraint
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("constraint", sorted(CONSTRAINTS))
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_and_constraint(name, constraint, frames):
    model = tiny(name, 4, constraint, frames=frames)
    lr = tcw_like(frames=frames).requires_grad_(True)
    area = polar_area(32, 32)
    y = model(lr, area)
    assert y.shape == (2, frames, 1, 32, 32)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    err = conservation_error(y.detach(), lr.detach(), area, 4)
    layer = CONSTRAINTS[constraint]
    if layer.conserving:
        assert err <= 1e-5
    if constraint == "none" and name not in ("nearest", "pycnophylactic"):
        # contrast: nothing enforces the budget (these two baselines conserve by themselves)
        assert err > 1e-2
    if layer.positive:
        assert (y >= 0).all()
    y.square().mean().backward()
    assert torch.isfinite(lr.grad).all()
    assert (model.n_parameters == 0) == (name in BASELINES)
    for pname, p in model.named_parameters():
        if frames == 1 and ".flow." in pname:  # T = 1: nothing to warp, the flow net is unused
            assert p.grad is None
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all()
        if pname.endswith("head.conv.weight"):  # the output layer always learns
            assert float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_cnn_fast_any_factor_conserves_on_polar_grid(factor):
    model = tiny("cnn", factor, "softmax")
    lr = tcw_like(size=4)
    area = polar_area(4 * factor, 4 * factor)
    y = model(lr, area[None].expand(2, -1, -1))  # [B, H, W] areas
    assert y.shape == (2, 1, 1, 4 * factor, 4 * factor)
    assert conservation_error(y.detach(), lr, area, factor) <= 1e-5
    assert (y >= 0).all()


@pytest.mark.parametrize("factor", [2, 3, 4, 6])
def test_cnn_reference_layout(factor):
    model = tiny("cnn", factor, "add", layout="reference")
    n_transposed = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    assert n_transposed == {2: 1, 3: 0, 4: 2, 6: 1}[factor]
    lr = tcw_like(size=4)
    area = polar_area(4 * factor, 4 * factor)
    y = model(lr, area)
    assert y.shape == (2, 1, 1, 4 * factor, 4 * factor)
    assert conservation_error(y.detach(), lr, area, factor) <= 1e-5


def test_layouts_differ_where_the_work_is_done():
    fast = get_model("cnn", 4)
    ref = get_model("cnn", 4, layout="reference")
    # same trunk of 3x3 convolutions; the fast head has f^2 output channels, reference has 1x1
    assert fast.backbone.head.conv.out_channels == 16
    assert ref.backbone.head.kernel_size == (1, 1)
    assert fast.n_parameters != ref.n_parameters


@pytest.mark.parametrize(("name", "factor"), [("cnn", 3), ("cnn", 4), ("gan", 2), ("convgru", 2)])
def test_pixel_shuffle_head_starts_at_the_nearest_baseline(name, factor):
    # ICNR: the f^2 sub-pixel kernels start equal, so softmax starts block-constant = nearest
    model = tiny(name, factor, "softmax", rough=False).double()
    lr = tcw_like(size=4, dtype=torch.float64)
    area = polar_area(4 * factor, 4 * factor).double()
    with torch.no_grad():
        y = model(lr, area)
    torch.testing.assert_close(y, block_expand(lr, factor), rtol=1e-12, atol=1e-12)
    # ...and one step towards a field with structure inside the blocks moves them apart
    target = y + torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ((model(lr, area) - target) ** 2).mean().backward()
    opt.step()
    with torch.no_grad():
        moved = model(lr, area)
    assert (moved - block_expand(lr, factor)).abs().max() > 1e-6
    assert conservation_error(moved, lr, area, factor) <= 1e-12


def test_reference_layout_does_not_start_block_constant():
    # contrast: high-resolution convolutions after the upsampling mix neighbouring blocks
    model = tiny("cnn", 4, "softmax", layout="reference").double()
    lr = tcw_like(size=4, dtype=torch.float64)
    with torch.no_grad():
        y = model(lr)
    assert (y - block_expand(lr, 4)).abs().max() > 1e-3


def test_cnn_treats_frames_independently():
    model = tiny("cnn", 2, "none")
    lr = tcw_like(frames=3, size=4)
    y = model(lr)
    for t in range(3):
        torch.testing.assert_close(y[:, t : t + 1], model(lr[:, t : t + 1]))


@pytest.mark.parametrize("constraint", ["softmax", "add", "mult", "scadd"])
@pytest.mark.parametrize("name", ["cnn", "convgru", "bicubic"])
def test_float64_conserves_to_round_off(name, constraint):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # built in float64 (see the .double() test below)
    try:
        model = tiny(name, 4, constraint)
    finally:
        torch.set_default_dtype(default)
    lr = tcw_like(dtype=torch.float64)
    area = polar_area(32, 32)
    y = model(lr, area)
    assert y.dtype == torch.float64
    assert conservation_error(y, lr, area, 4) <= 1e-12
    y32 = tiny(name, 4, constraint)(lr.float(), area)  # contrast: float32 is only ~1e-7
    assert conservation_error(y32, lr, area, 4) > 1e-12


def test_model_converts_with_double_and_to():
    model = tiny("cnn", 4, "softmax").double().to(torch.device("cpu"))
    y = model(tcw_like(dtype=torch.float64))
    assert y.dtype == torch.float64


def test_equal_weights_when_area_is_none():
    model = tiny("cnn", 4, "softmax")
    lr = tcw_like()
    y = model(lr)
    torch.testing.assert_close(block_mean(y, 4, None), lr, rtol=1e-5, atol=1e-5)
    # with polar areas the plain block mean is NOT the conserved quantity (contrast)
    y_area = model(lr, polar_area(32, 32))
    assert float((block_mean(y_area.detach(), 4, None) - lr).abs().max()) > 1e-3


# --------------------------------------------------------------------------------------------
# registry and config
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_config_round_trip(name):
    model = tiny(name, 4, "soft", frames=3, constraint_options={"lam": 0.25}, scale=20.0)
    config = json.loads(json.dumps(model.config))  # checkpoints store it as JSON
    assert config["options"] == {**MODELS[name].options, **TINY.get(name, {})}
    torch.manual_seed(123)  # a different initialisation than `model`
    again = build_model(config)
    assert type(again) is type(model)
    assert again.config == model.config
    assert isinstance(again.constraint, SoftConstraint) and again.constraint.lam == 0.25
    lr = tcw_like(frames=3)
    kw = {"noise": torch.randn(2, 3, 1, 8, 8)} if name == "gan" else {}
    if name in LEARNED:  # contrast: other weights give another output
        assert not torch.allclose(again(lr, **kw), model(lr, **kw))
    again.load_state_dict(model.state_dict())
    assert torch.equal(again(lr, **kw), model(lr, **kw))


def test_config_records_defaults_scale_and_constraint():
    model = get_model("cnn", factor=8, constraint="softmax", scale=12.5, channels=2)
    assert set(model.config) <= set(CONFIG_KEYS)  # build_model accepts every recorded key
    expected = {
        "name": "cnn",
        "factor": 8,
        "constraint": "softmax",
        "constraint_options": {},
        "scale": 12.5,
        "frames": 1,
        "channels": 2,
        "options": {"width": 64, "blocks": 4, "layout": "fast"},
    }
    assert {k: model.config[k] for k in expected} == expected
    assert float(model.scale) == 12.5
    y = model(tcw_like(size=4).expand(-1, -1, 2, -1, -1))
    assert y.shape == (2, 1, 2, 32, 32)


def test_constraint_instance_is_recorded():
    model = get_model("nearest", 2, SoftConstraint(lam=3.0))
    assert model.config["constraint"] == "soft"
    assert model.config["constraint_options"] == {"lam": 3.0}
    assert build_model(model.config).constraint.lam == 3.0
    plain = get_model("nearest", 2, get_constraint("softmax"))  # a layer without arguments
    assert plain.config["constraint"] == "softmax"
    assert plain.config["constraint_options"] == {}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: get_model("resnet"), "unknown model 'resnet'.*cnn.*bicubic"),
        (lambda: get_model("cnn", 4, "softmaks"), "unknown constraint"),
        (lambda: get_model("cnn", 4, depth=3), "no option.*depth.*width, blocks, layout"),
        (lambda: get_model("bicubic", 4, width=8), "no option.*width.*none"),
        (lambda: get_model("cnn", 4, layout="wide"), "unknown CNN layout 'wide'"),
        (lambda: get_model("cnn", 0), "factor must be a positive integer"),
        (lambda: get_model("cnn", 2.0), "factor must be a positive integer"),
        (lambda: get_model("convgru", 4, hidden=0), "'hidden' must be a positive integer"),
        (lambda: get_model("cnn", 4, scale=-1.0), "scale must be a positive"),
        (lambda: get_model("cnn", 4, "softmax", constraint_options={"lam": 1}), "does not take"),
        (lambda: build_model({"name": "cnn", "colour": "red"}), "only the keys"),
        (lambda: build_model({"factor": 4}), "must have 'name'"),
    ],
)
def test_bad_names_and_options_raise_config_error(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_name_is_case_insensitive():
    assert get_model("BiCubic", 2).config["name"] == "bicubic"


# --------------------------------------------------------------------------------------------
# GAN
# --------------------------------------------------------------------------------------------
def test_gan_noise_draws_members_and_seed_reproduces_them():
    model = tiny("gan", 4, "softmax")
    assert isinstance(model, GANModel)
    lr, area = tcw_like(), polar_area(32, 32)
    # the learned noise strength starts at 0: the untrained generator is deterministic ...
    assert torch.equal(model(lr, area), model(lr, area))
    # ... and the loss reaches the strength, so training can let noise in
    model(lr, area).square().mean().backward()
    assert model.backbone.noise_strength.grad.abs().item() > 0
    with torch.no_grad():
        model.backbone.noise_strength.fill_(1.0)
    a, b = model(lr, area), model(lr, area)
    assert not torch.allclose(a, b)  # new noise, new member
    ens = model.sample(lr, area, members=3, generator=torch.Generator().manual_seed(7))
    assert ens.shape == (3, 2, 1, 1, 32, 32)
    assert not torch.allclose(ens[0], ens[1])
    again = model.sample(lr, area, members=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(ens, again)
    # a sample is `members` calls drawing from the same generator
    g = torch.Generator().manual_seed(7)
    torch.testing.assert_close(
        ens[1], (model(lr, area, generator=g), model(lr, area, generator=g))[1]
    )
    for member in ens:  # every member conserves exactly
        assert conservation_error(member, lr, area, 4) <= 1e-5
    noise = torch.zeros(2, 1, 1, 8, 8)
    assert torch.equal(model(lr, area, noise=noise), model(lr, area, noise=noise))


def test_gan_checkpoint_from_before_the_noise_strength_loads_with_unit_noise():
    model = tiny("gan", 4, "softmax")
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("noise_strength")}
    model.load_state_dict(old)  # strict: the missing strength is filled in, not an error
    assert model.backbone.noise_strength.tolist() == [1.0]
    lr, area = tcw_like(), polar_area(32, 32)
    assert not torch.allclose(model(lr, area), model(lr, area))


def test_gan_rejects_misshapen_noise():
    model = tiny("gan", 4)
    with pytest.raises(GridShapeError, match=r"expected \(2, 1, 1, 8, 8\)"):
        model(tcw_like(), noise=torch.zeros(2, 1, 1, 4, 4))


def test_patch_discriminator_matches_study_channels():
    d = PatchDiscriminator()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.in_channels for c in convs] + [convs[-1].out_channels] == [
        1, 32, 32, 64, 64, 128, 128, 1,
    ]  # fmt: skip
    assert all(c.kernel_size == (3, 3) for c in convs)
    hr = torch.rand(2, 3, 1, 32, 32) * 40
    assert d(hr).shape == (2, 3, 1, 4, 4)


def test_conditional_discriminator_sees_coarse_input():
    model = tiny("gan", 4, "softmax", scale=30.0)
    d = make_discriminator(model, conditional=True)
    assert float(d.scale) == 30.0
    hr, lr = torch.rand(2, 1, 1, 32, 32) * 40, tcw_like()
    logits = d(hr, lr)
    assert logits.shape == (2, 1, 1, 4, 4)
    assert not torch.allclose(logits, d(hr, lr * 2))  # the condition matters
    with pytest.raises(GridShapeError, match="needs the coarse input"):
        d(hr)


# --------------------------------------------------------------------------------------------
# recurrent models
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["convgru", "flowconvgru"])
def test_recurrent_models_are_causal(name):
    model = tiny(name, 2)
    lr = tcw_like(frames=3, size=4)
    later = lr.clone()
    later[:, 2] += 5.0
    y, y_later = model(lr), model(later)
    assert torch.equal(y[:, :2], y_later[:, :2])  # frames 0, 1 do not see frame 2
    earlier = lr.clone()
    earlier[:, 0] += 5.0
    assert not torch.allclose(model(earlier)[:, 2], y[:, 2])  # frame 2 remembers frame 0


def test_untrained_flowconvgru_is_a_convgru():
    flow = tiny("flowconvgru", 2)
    plain = get_model("convgru", 2, **TINY["convgru"])
    plain.load_state_dict(flow.state_dict(), strict=False)
    lr = tcw_like(frames=3, size=4)
    torch.testing.assert_close(flow(lr), plain(lr), rtol=1e-5, atol=1e-5)
    torch.nn.init.normal_(flow.backbone.flow[-1].weight, std=1.0)  # contrast: a real flow
    assert not torch.allclose(flow(lr)[:, 1:], plain(lr)[:, 1:], atol=1e-4)


def test_warp_zero_flow_is_identity_and_integer_flow_shifts():
    h = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(warp(h, torch.zeros(2, 2, 5, 6)), h)
    flow = torch.zeros(2, 2, 5, 6)
    flow[:, 0] = 1.0  # sample one pixel to the east
    torch.testing.assert_close(warp(h, flow)[..., :-1], h[..., 1:])
    flow = torch.zeros(2, 2, 5, 6)
    flow[:, 1] = -1.0  # one pixel to the north (row - 1)
    torch.testing.assert_close(warp(h, flow)[..., 1:, :], h[..., :-1, :])


def test_recurrent_backbones_share_the_gru():
    assert issubclass(FlowConvGRU, ConvGRU)


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------
def test_nearest_is_block_constant_and_conserving_alone():
    lr, area = tcw_like(), polar_area(32, 32)
    y = get_model("nearest", 4)(lr, area)
    assert torch.equal(y, block_expand(lr, 4))
    assert conservation_error(y, lr, area, 4) <= 1e-6


def test_bicubic_softmax_is_the_rescaled_bicubic_shape():
    lr, area = tcw_like(), polar_area(32, 32)
    bic = get_model("bicubic", 4)(lr)  # plain bicubic values
    y = get_model("bicubic", 4, "softmax", scale=25.0)(lr, area)
    pos = bic.clamp(min=torch.finfo(bic.dtype).tiny)
    w = block_weights(area, 4).to(torch.float32)
    expected = pos * block_expand(lr / block_mean(pos, 4, w), 4)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-4)
    assert (y >= 0).all() and conservation_error(y, lr, area, 4) <= 1e-5
    # mult on the same baseline sees the same shape (softplus is undone in physical units)
    y_mult = get_model("bicubic", 4, "mult", scale=25.0)(lr, area)
    torch.testing.assert_close(y_mult, y, rtol=1e-4, atol=1e-3)


def test_bilinear_matches_torch_interpolate():
    lr = tcw_like(frames=3)
    y = get_model("bilinear", 4, scale=7.0)(lr)
    ref = torch.nn.functional.interpolate(
        lr.reshape(6, 1, 8, 8), size=(32, 32), mode="bilinear", align_corners=False
    ).reshape(2, 3, 1, 32, 32)
    torch.testing.assert_close(y, ref)


def test_pycnophylactic_conserves_on_the_sphere_with_no_constraint_and_stays_positive():
    lr, area = tcw_like(dtype=torch.float64), polar_area(32, 32)
    lr[1, 0, 0, 4:, :] = 0.0  # a dry region beside wet cells: bicubic would undershoot
    y = get_model("pycnophylactic", 4)(lr, area)
    assert conservation_error(y, lr, area, 4) <= 1e-12
    assert (y >= 0).all()
    assert (y[1, 0, 0, 16:, :] == 0).all()  # dry blocks stay exactly dry
    # contrast: without the areas it conserves the plain block mean, not the mass on the sphere
    flat = get_model("pycnophylactic", 4)(lr)
    assert conservation_error(flat, lr, area, 4) > 1e-4


def test_pycnophylactic_is_the_smoothest_conserving_field():
    from climdown.grid import block_sum
    from climdown.metrics import blockiness
    from climdown.nn.models.baselines import Pycnophylactic, _graph_laplacian

    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    wave = 30.0 + 10.0 * torch.sin(yy / 2.0) * torch.cos(xx / 3.0) + 4.0 * torch.rand(8, 8)
    lr = wave.to(torch.float64).reshape(1, 1, 1, 8, 8)  # moist everywhere: nothing is clipped
    area = polar_area(32, 32)
    y = get_model("pycnophylactic", 4)(lr, area)[:, 0]
    w = block_weights(area, 4)
    # optimality (Lagrange): the thin-plate gradient L(L y) is, in each block, a multiple of
    # the weights (the constraint's normal), so its projection on the constraint set is ~0
    g = _graph_laplacian(_graph_laplacian(y))
    projected = g - w * block_expand(block_sum(w * g, 4), 4) / block_expand(block_sum(w * w, 4), 4)
    assert float(projected.abs().max()) < 1e-4 * float(g.abs().max())
    # contrast: the bicubic + softmax field is far from that optimum
    b = get_model("bicubic", 4, "softmax").double()(lr, area)[:, 0]
    gb = _graph_laplacian(_graph_laplacian(b))
    pb = gb - w * block_expand(block_sum(w * gb, 4), 4) / block_expand(block_sum(w * w, 4), 4)
    assert float(pb.abs().max()) > 0.1 * float(gb.abs().max())
    # smoother across block edges than bicubic + softmax, and than Tobler's membrane
    bic = get_model("bicubic", 4, "softmax")(lr, area)[:, 0]
    assert blockiness(y, 4) < blockiness(bic, 4)
    membrane = Pycnophylactic(4, target="values")
    membrane.order = 1
    m = get_model("pycnophylactic", 4)
    m.backbone = membrane
    ym = m(lr, area)[:, 0]
    assert conservation_error(ym[:, None], lr, area, 4) <= 1e-12
    assert blockiness(ym, 4) > blockiness(y, 4)


@pytest.mark.parametrize("constraint", ["softmax", "mult", "add"])
def test_pycnophylactic_passes_conserving_layers_unchanged(constraint):
    lr, area = tcw_like(dtype=torch.float64), polar_area(32, 32)
    base = get_model("pycnophylactic", 4)(lr, area)
    y = get_model("pycnophylactic", 4, constraint, scale=25.0).double()(lr, area)
    torch.testing.assert_close(y, base, rtol=1e-6, atol=1e-6)


def test_pycnophylactic_keeps_negative_blocks_of_a_signed_field():
    lr = tcw_like(dtype=torch.float64) - 25.0  # an anomaly field: signed, nothing to clip
    area = polar_area(32, 32)
    y = get_model("pycnophylactic", 4)(lr, area)
    assert conservation_error(y, lr, area, 4) <= 1e-12
    assert (y < 0).any()


# --------------------------------------------------------------------------------------------
# soft constraint penalty
# --------------------------------------------------------------------------------------------
def test_soft_penalty_through_the_model():
    model = tiny("cnn", 4, "soft", scale=10.0, constraint_options={"lam": 2.0})
    lr, area = tcw_like(), polar_area(32, 32)
    with torch.no_grad():
        y = model(lr, area)
    expected = 2.0 * torch.mean(((coarsen(y.double(), area, 4) - lr.double()) / 10.0) ** 2)
    torch.testing.assert_close(
        soft_penalty(model, y, lr, area).double(), expected, rtol=1e-4, atol=0
    )
    assert float(soft_penalty(model, y, lr, area)) > 0
    hard = tiny("cnn", 4, "softmax", scale=10.0)
    with torch.no_grad():
        assert float(soft_penalty(hard, hard(lr, area), lr, area)) == 0.0


@pytest.mark.parametrize("constraint", ["none", "softmax", "add", "mult"])
def test_skip_model_starts_as_its_baseline_and_learns_a_correction(constraint):
    from climdown.nn.models import build_model, get_model

    torch.manual_seed(0)
    x = torch.rand(2, 1, 1, 8, 8, dtype=torch.float64) * 40 + 1
    m = kick_heads(get_model("cnn", 4, constraint, skip="bicubic", scale=40.0, width=8)).double()
    base = get_model("bicubic", 4, constraint, scale=40.0).double()
    torch.testing.assert_close(m(x), base(x))  # the gate starts at zero
    (m(x) ** 2).sum().backward()  # not sum(y): conserving layers fix the block sums
    assert m.backbone.gate.grad is not None and m.backbone.gate.grad != 0
    again = build_model(m.config).double()
    again.load_state_dict(m.state_dict())
    with torch.no_grad():
        m.backbone.gate.fill_(0.5)
        again.backbone.gate.fill_(0.5)
    torch.testing.assert_close(m(x), again(x))
    assert not torch.allclose(m(x), base(x))  # contrast: an open gate changes the output


def test_skip_needs_a_trainable_model_and_an_interpolation():
    from climdown.errors import ConfigError
    from climdown.nn.models import get_model

    with pytest.raises(ConfigError, match="skip"):
        get_model("cnn", 4, "softmax", skip="cnn")
    with pytest.raises(ConfigError, match="skip"):
        get_model("bicubic", 4, "softmax", skip="nearest")
