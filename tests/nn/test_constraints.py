"""Constraint layers: the reference formulas, area weights, edge cases and device freedom."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

import climdown
from climdown.errors import ConfigError, DataValueError, GridShapeError
from climdown.grid import Grid, block_expand, block_sum, block_weights, coarsen, total_mass
from climdown.nn.constraints import CONSTRAINTS, get_constraint, infer_factor

FACTORS = (2, 3, 4, 8)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------
# Equal weights: the reference code's AvgPool2d / kron formulas
# ---------------------------------------------------------------------------------------
def reference(name: str, z: torch.Tensor, x: torch.Tensor, f: int) -> torch.Tensor:
    """The reference implementation's formulas, written out with AvgPool2d and kron."""
    pool = torch.nn.AvgPool2d(f)
    ones = torch.ones(f, f, dtype=z.dtype)
    if name == "softmax":
        e = torch.exp(z)
        return e * torch.kron(x / pool(e), ones)
    if name == "add":
        return z + torch.kron(x - pool(z), ones)
    if name == "mult":
        return z * torch.kron(x / pool(z), ones)
    if name == "scadd":
        d = torch.kron(x - pool(z), ones)
        s = torch.sign(-d)
        return z + d * (s + z) / (s + torch.kron(pool(z), ones))
    raise AssertionError(name)


def reference_inputs(name: str, f: int, dtype: torch.dtype, seed: int):
    g = gen(seed)
    shape = (3, 2, 3 * f, 2 * f)
    coarse = (3, 2, 3, 2)
    if name == "softmax":  # moderate logits: the reference's exp is not shifted
        z = 3.0 * torch.randn(shape, generator=g, dtype=dtype)
        x = 60.0 * torch.rand(coarse, generator=g, dtype=dtype)
    elif name == "mult":
        z = 0.1 + torch.rand(shape, generator=g, dtype=dtype)
        x = 60.0 * torch.rand(coarse, generator=g, dtype=dtype)
    else:  # |zbar| < 1 keeps scadd's s + zbar away from 0, where it is ill-conditioned
        z = 0.3 * torch.randn(shape, generator=g, dtype=dtype)
        x = 2.0 * torch.randn(coarse, generator=g, dtype=dtype)
    return z, x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("f", FACTORS)
@pytest.mark.parametrize("name", ["softmax", "add", "mult", "scadd"])
def test_equal_weights_match_reference_formulas(name, f, dtype):
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    for seed in range(3):
        z, x = reference_inputs(name, f, dtype, seed)
        if name == "scadd":
            zbar = torch.nn.AvgPool2d(f)(z)
            assert ((torch.sign(zbar - x) + zbar).abs() > 0.05).all()
        ref = reference(name, z, x, f)
        got = get_constraint(name)(z, x)
        assert got.dtype == dtype
        # atol relative to the field: add/scadd outputs cross zero, where rtol alone is void
        torch.testing.assert_close(got, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


def test_reference_comparison_can_fail():
    # Contrast: the comparison above detects a layer that differs from the reference.
    z, x = reference_inputs("add", 4, torch.float64, 0)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(
            get_constraint("mult")(z.abs(), x.abs()), reference("add", z.abs(), x.abs(), 4)
        )


# ---------------------------------------------------------------------------------------
# Area weights matter on the sphere
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grid_0_80n() -> Grid:
    """1 deg grid spanning 0..80N, 16 deg of longitude."""
    return Grid(np.arange(0.5, 80.0, 1.0), np.arange(0.5, 16.0, 1.0))


@pytest.mark.parametrize("name", ["softmax", "add", "mult", "scadd"])
def test_area_weights_conserve_mass_equal_weights_do_not(name, grid_0_80n):
    f = 4
    fine, coarse_grid = grid_0_80n, grid_0_80n.coarsen(f)
    area = torch.from_numpy(fine.area)
    area_c = torch.from_numpy(coarse_grid.area)
    g = gen(1)
    x = 1.0 + 60.0 * torch.rand((2, *coarse_grid.shape), generator=g, dtype=torch.float64)
    z = torch.randn((2, *fine.shape), generator=g, dtype=torch.float64)
    if name == "mult":
        z = z.abs()
    layer = get_constraint(name)
    mass_x = total_mass(x, area_c)  # kg per sample

    # Equal weights conserve the plain block mean, not the area-weighted mean or the mass.
    y_eq = layer(z, x)
    torch.testing.assert_close(block_sum(y_eq, f) / f**2, x, rtol=1e-12, atol=0)
    assert float((coarsen(y_eq, area, f) - x).abs().max() / x.abs().max()) > 1e-6
    assert float(((total_mass(y_eq, area) - mass_x) / mass_x).abs().max()) > 1e-8

    # Area weights conserve the mass in kg, to float64 round-off.
    y = layer(z, x, block_weights(area, f))
    torch.testing.assert_close(total_mass(y, area), mass_x, rtol=1e-12, atol=0)
    torch.testing.assert_close(coarsen(y, area, f), x, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------
# Edge cases of single layers
# ---------------------------------------------------------------------------------------
def test_mult_all_zero_block_falls_back_to_block_constant():
    f = 4
    grid = Grid(np.linspace(84.0, 89.9, 2 * f), np.arange(2 * f) * 0.25)
    area = torch.from_numpy(grid.area)
    z = torch.rand((1, 2 * f, 2 * f), generator=gen(2), dtype=torch.float64)
    z[..., :f, :f] = 0.0  # one block of dead ReLUs
    x = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]], dtype=torch.float64)
    y = get_constraint("mult")(z, x, block_weights(area, f))
    assert torch.equal(y[..., :f, :f], torch.full((1, f, f), 10.0, dtype=torch.float64))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(coarsen(y, area, f), x, rtol=1e-12, atol=0)


def test_mult_rejects_negative_z():
    z = torch.ones(1, 4, 4)
    z[0, 1, 2] = -1e-3
    with pytest.raises(DataValueError, match="non-negative"):
        get_constraint("mult")(z, torch.ones(1, 2, 2))


def test_mult_finite_for_tiny_block_mean_in_float32():
    z = torch.nn.functional.softplus(torch.full((1, 4, 4), -86.0))  # about 4e-38, > finfo.tiny
    z[0, 0, 0] = 0.0
    x = torch.full((1, 2, 2), 70.0)
    y = get_constraint("mult")(z, x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(block_sum(y, 2) / 4, x, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "logit",
    [-80.0, -86.0, -95.0, -100.0],
)
def test_mult_conserves_for_tiny_block_means_in_float32(logit):
    # softplus(logit) ~ exp(logit): block means from 1e-35 down to float32 subnormals (~1e-43)
    f = 4
    grid = Grid(np.linspace(84.0, 89.9, 2 * f), np.arange(2 * f) * 0.25)
    area = torch.from_numpy(grid.area)
    g = gen(5)
    z = torch.nn.functional.softplus(logit + torch.rand((1, 2 * f, 2 * f), generator=g))
    x = torch.full((1, 2, 2), 70.0)
    y = get_constraint("mult")(z, x, block_weights(area, f).float())
    assert torch.isfinite(y).all() and (y >= 0).all()
    err = (coarsen(y.double(), area, f) - x.double()).abs().max() / 70.0
    assert float(err) <= 1e-5


def test_softmax_zero_input_gives_exact_zero_even_for_extreme_logits():
    z = torch.tensor([[[1e4, -1e4], [0.0, 5.0]]]).repeat(1, 2, 2)
    x = torch.tensor([[[0.0, 3.0], [0.0, 0.0]]])
    y = get_constraint("softmax")(z, x)
    dry = block_expand(x, 2) == 0
    assert (y[dry] == 0).all() and torch.isfinite(y).all()


def test_soft_penalty_is_lambda_mean_squared_coarse_error():
    f = 3
    grid = Grid(np.linspace(60.0, 75.0, 2 * f), np.arange(3 * f) * 1.0)
    area = torch.from_numpy(grid.area)
    w = block_weights(area, f)
    g = gen(3)
    x = 50.0 * torch.rand((4, 2, 3), generator=g, dtype=torch.float64)
    z = 50.0 * torch.rand((4, 2 * f, 3 * f), generator=g, dtype=torch.float64)
    soft = get_constraint("soft", lam=0.25)
    assert torch.equal(soft(z, x, w), z)  # the layer itself changes nothing
    expected = 0.25 * torch.mean((coarsen(z, area, f) - x) ** 2)
    torch.testing.assert_close(soft.penalty(z, x, w), expected, rtol=1e-12, atol=0)
    assert float(soft.penalty(z, x, w)) > 1.0  # contrast: a random z is penalised
    conserving = get_constraint("add")(z, x, w)
    assert float(soft.penalty(conserving, x, w)) <= 0.25 * (1e-12 * 50.0) ** 2
    assert float(get_constraint("add").penalty(z, x, w)) == 0.0  # only soft has a penalty


def test_layers_have_no_parameters_and_declare_guarantees():
    flags = {n: (c.conserving, c.positive) for n, c in CONSTRAINTS.items()}
    assert flags == {
        "none": (False, False),
        "softmax": (True, True),
        "add": (True, False),
        "mult": (True, True),
        "scadd": (True, False),
        "clip": (False, True),
        "soft": (False, False),
    }
    assert CONSTRAINTS["softmax"].logits and not CONSTRAINTS["add"].logits
    for name in CONSTRAINTS:
        assert list(get_constraint(name).parameters()) == []


# ---------------------------------------------------------------------------------------
# Names and shapes
# ---------------------------------------------------------------------------------------
def test_get_constraint_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        get_constraint("softmx")
    message = str(info.value)
    assert "softmx" in message
    for name in CONSTRAINTS:
        assert name in message


def test_get_constraint_accepts_none_instances_and_any_case():
    assert get_constraint(None).name == "none"
    assert get_constraint("SoftMax").name == "softmax"
    layer = get_constraint("soft", lam=3.0)
    assert get_constraint(layer) is layer and layer.lam == 3.0


@pytest.mark.parametrize(
    ("fine", "coarse"),
    [((1, 8, 8), (1, 3, 3)), ((1, 8, 12), (1, 2, 2)), ((1, 8, 8), (1, 0, 2))],
    ids=["not-a-multiple", "factor-differs-between-axes", "empty-coarse"],
)
def test_mismatched_fine_and_coarse_shapes_raise(fine, coarse):
    with pytest.raises(GridShapeError, match="integer multiple"):
        infer_factor(fine, coarse)
    for name in ("softmax", "add", "none"):
        with pytest.raises(GridShapeError):
            get_constraint(name)(torch.zeros(fine), torch.ones(coarse))


# ---------------------------------------------------------------------------------------
# No hard-coded device
# ---------------------------------------------------------------------------------------
def _accelerators() -> list:
    params = [pytest.param("cpu", id="cpu")]
    for dev, available in (
        ("cuda", torch.cuda.is_available()),
        ("mps", torch.backends.mps.is_available()),
    ):
        params.append(
            pytest.param(
                dev, id=dev, marks=pytest.mark.skipif(not available, reason=f"no {dev} device")
            )
        )
    return params


@pytest.mark.parametrize("device", _accelerators())
@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_layers_run_on_the_device_of_their_inputs(name, device):
    f = 4
    grid = Grid(np.linspace(70.0, 89.0, 2 * f), np.arange(3 * f) * 0.5)
    area = torch.from_numpy(grid.area)
    g = gen(4)
    x = 60.0 * torch.rand((2, 2, 3), generator=g)
    z = torch.rand((2, 2 * f, 3 * f), generator=g)
    w = block_weights(area, f).float()
    cpu = get_constraint(name)(z, x, w)
    zd = z.to(device).requires_grad_(True)
    y = get_constraint(name)(zd, x.to(device), w.to(device))
    assert y.device.type == device
    (y * y).sum().backward()
    assert zd.grad.device.type == device
    torch.testing.assert_close(y.detach().cpu(), cpu, rtol=1e-5, atol=1e-5)
    if CONSTRAINTS[name].conserving:
        err = (coarsen(y.detach().cpu().double(), area, f) - x.double()).abs().max()
        assert float(err / x.abs().max()) <= 1e-5


_FORBIDDEN = {
    "torch.kron": "Kronecker product with a ones matrix (use grid.block_expand)",
    ".cuda(": "hard-coded device (take a device= argument)",
    ".to('cuda": "hard-coded device (take a device= argument)",
}


def _code_text(path: Path) -> str:
    """Source without comments and string literals, except string arguments of .to(...)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.COMMENT:
            continue
        if tok.type == tokenize.STRING:
            # keep short literals (a device name), drop docstrings that may mention the rules
            text = tok.string.replace('"', "'")
            out.append(text if len(text) < 16 else "''")
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            out.append(tok.string)
    return "".join(out)


def test_source_has_no_hard_coded_device_or_kron():
    root = Path(climdown.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert root.joinpath("nn", "constraints.py") in files
    found = [
        f"{p.relative_to(root)}: {pattern!r} ({why})"
        for p in files
        for pattern, why in _FORBIDDEN.items()
        if pattern in _code_text(p)
    ]
    assert not found, "\n".join(found)


def test_source_scan_detects_the_patterns(tmp_path):
    # Contrast: the scanner finds each pattern in code, and ignores it in docs and comments.
    bad = tmp_path / "bad.py"
    bad.write_text(
        'y = torch.kron(x, ones)\nm = m.cuda()\nm = m.to("cuda:0")\n'
        '"""A docstring saying never call torch.kron or .cuda()."""\n'
    )
    text = _code_text(bad)
    assert all(pattern in text for pattern in _FORBIDDEN)
    ok = tmp_path / "ok.py"
    ok.write_text('"""Never call torch.kron or .cuda() or .to("cuda") here."""\n# torch.kron\n')
    assert not any(pattern in _code_text(ok) for pattern in _FORBIDDEN)
