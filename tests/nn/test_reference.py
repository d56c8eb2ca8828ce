"""The reference code's layouts load the reference's own weights and reproduce its outputs.

The fixtures in ``../shared/reference/`` (beside the checkout; see its README) were produced by
running RolnickLab/constrained-downscaling's ``models.py`` (commit 02fa5b1) on fixed inputs:
per model a state dict, the inputs and the outputs for every constraint. An outside clone has
no such folder and these tests skip with that reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from climdown.errors import CheckpointError, ConfigError, GridShapeError
from climdown.nn.models import build_model, get_model, make_discriminator
from climdown.nn.models.reference import ReferenceDiscriminator, ReferenceFlowModel
from climdown.nn.models.weights import from_reference, reference_keys

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "reference"

#: file -> (climdown name, the reference's parameter count as stored in the fixture)
FILES = {
    "cnn.pt": ("cnn", 402_369),
    "cnn_c32.pt": ("cnn", 100_833),
    "gan_generator.pt": ("gan", 505_346),
    "gan_generator_c32.pt": ("gan", 203_522),
    "discriminator.pt": ("discriminator", 286_561),
    "convgru.pt": ("convgru", 886_785),
    "flowconvgru.pt": ("flowconvgru", 4_702_276),
}

#: Relative tolerance (of max |output|): float32 round-off, as the fixtures' README measures it
#: (a float64 rerun of the reference differs by <= 2.3e-6; two threads instead of one by 1.9e-6).
RTOL = 1e-5
#: ConvGRU ``mult`` divides by block means as small as 7e-6 at initialisation: the README
#: measures the reference's own float64 rerun 2.9e-3 (relative) away from its float32 output.
RTOL_ILL_CONDITIONED = 3e-3

needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"reference fixtures not found at {FIXTURES} (they live beside the checkout, in CI)",
)


def _load(name: str) -> dict:
    return torch.load(FIXTURES / name, weights_only=True)


@needs_fixtures
@pytest.mark.parametrize("filename", sorted(FILES))
def test_reference_outputs_match(filename: str) -> None:
    torch.set_num_threads(1)
    name, n_params = FILES[filename]
    fixture = _load(filename)
    assert fixture["n_params"] == n_params
    for case in fixture["cases"]:
        constraint = case["constraint"]
        if name == "discriminator":
            model = from_reference(fixture["state_dict"], name)
            assert isinstance(model, ReferenceDiscriminator)
            count = sum(p.numel() for p in model.parameters())
            model.eval()
            with torch.no_grad():
                out = model.probability(case["input"])
        else:
            model = from_reference(fixture["state_dict"], name, factor=4, constraint=constraint)
            count = model.n_parameters
            model.eval()
            kwargs = {"noise": case["z"]} if "z" in case else {}
            with torch.no_grad():
                out = model(case["input"], **kwargs)
        assert count == n_params, (filename, constraint)
        ref = case["output"]
        assert out.shape == ref.shape
        tol = RTOL_ILL_CONDITIONED if (name, constraint) == ("convgru", "mult") else RTOL
        err = float((out - ref).abs().max() / ref.abs().max())
        assert err <= tol, (filename, constraint, err)


@needs_fixtures
def test_intermediate_values_match() -> None:
    """The pieces the fixtures keep: the GAN's noise map, ConvGRU state, VoxelFlow frame."""
    gan = _load("gan_generator.pt")
    g = from_reference(gan["state_dict"], "gan")
    z = gan["cases"][0]["z"]
    with torch.no_grad():
        m = g.backbone.noise_map(z, 32, 32)
    torch.testing.assert_close(m, gan["extras"]["noise_map_conv_trans0_z"], rtol=0, atol=1e-5)
    flow = _load("flowconvgru.pt")
    f = from_reference(flow["state_dict"], "flowconvgru").eval()
    x = flow["cases"][0]["input"]
    with torch.no_grad():
        frames = f.backbone.frames(x)
        h0 = f.backbone.spatial_sr.initialize(frames[:, 0])
    torch.testing.assert_close(frames, flow["extras"]["spatial_sr_input"], rtol=0, atol=1e-5)
    torch.testing.assert_close(
        h0, flow["extras"]["initial_state_InitialStateDet"], rtol=0, atol=1e-5
    )
    # BatchNorm with batch statistics (train mode) as the reference in training
    f.train()
    with torch.no_grad():
        out = f(x)
    ref = flow["extras"]["train_mode_output_none"]
    assert float((out - ref).abs().max() / ref.abs().max()) <= RTOL


@needs_fixtures
def test_wrong_state_dict_is_a_clear_error() -> None:
    cnn = _load("cnn.pt")["state_dict"]
    with pytest.raises(CheckpointError, match="not the reference 'convgru'"):
        from_reference(cnn, "convgru")
    gan = _load("gan_generator.pt")["state_dict"]
    with pytest.raises(CheckpointError, match="does not fit"):
        from_reference(gan, "gan", blocks=3)  # a block too few: unexpected keys
    assert "inp.0.weight" in reference_keys(cnn, "cnn")


@pytest.mark.parametrize(
    ("name", "width", "blocks", "count"),
    [
        ("cnn", 64, 4, 402_369),
        ("cnn", 32, 4, 100_833),
        ("gan", 64, 4, 505_346),
        ("gan", 32, 4, 203_522),
        ("convgru", 64, 3, 886_785),
        ("convgru", 64, 4, 960_513),
        ("flowconvgru", 64, 3, 4_702_276),
        ("flowconvgru", 64, 4, 4_776_004),
    ],
)
def test_parameter_counts_equal_the_reference(name, width, blocks, count) -> None:
    """The counts of the reference's models (fixtures' README; 4 blocks: its run scripts)."""
    model = get_model(name, 4, "softmax", layout="reference", width=width, blocks=blocks)
    assert model.n_parameters == count
    rebuilt = build_model(model.config)
    assert type(rebuilt.backbone) is type(model.backbone)
    assert rebuilt.n_parameters == count


def test_reference_discriminator_count_and_shape() -> None:
    gan = get_model("gan", 4, "softmax", layout="reference", scale=30.0)
    disc = make_discriminator(gan)
    assert isinstance(disc, ReferenceDiscriminator)
    assert sum(p.numel() for p in disc.parameters()) == 286_561
    assert disc(torch.rand(3, 2, 1, 64, 64)).shape == (3, 2)
    with pytest.raises(ConfigError, match="conditional"):
        make_discriminator(gan, conditional=True)


def test_reference_layouts_train_and_conserve() -> None:
    """One optimiser step on each, physical units, area weights: mass is held exactly."""
    torch.manual_seed(0)
    lr = 10 + 20 * torch.rand(2, 3, 1, 8, 8)
    area = torch.rand(32, 32) + 0.5
    for name in ("gan", "convgru", "flowconvgru"):
        model = get_model(name, 4, "softmax", layout="reference", width=8, blocks=1, scale=30.0)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        y = model(lr, area)
        frames = lr
        if isinstance(model, ReferenceFlowModel):  # holds the middle frame to its interpolation
            assert y.shape == (2, 3, 1, 32, 32)
            frames = model.backbone.frames(lr / model.scale).detach() * model.scale
        loss = y.square().mean()
        loss.backward()
        opt.step()
        w = area.reshape(8, 4, 8, 4)
        mean = (y.detach().reshape(2, 3, 1, 8, 4, 8, 4) * w).sum((-3, -1)) / w.sum((-3, -1))
        torch.testing.assert_close(mean, frames, rtol=2e-6, atol=0)
        assert bool((y >= 0).all())


def test_gan_noise_shapes() -> None:
    gan = get_model("gan", 2, "softmax", layout="reference", width=8, blocks=1)
    lr = torch.rand(2, 1, 1, 40, 24) + 1  # not 32 x 32: the noise map is tiled
    gen = torch.Generator().manual_seed(0)
    a = gan(lr, generator=gen)
    b = gan(lr, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 1, 1, 80, 48)
    with pytest.raises(GridShapeError, match="latent z"):
        gan(lr, noise=torch.zeros(2, 1, 1, 40, 24))
    with torch.no_grad():
        members = gan.sample(lr, members=3, generator=gen)
    assert members.shape == (3, 2, 1, 1, 80, 48)
    assert float((members[0] - members[1]).abs().max()) > 0


def test_reference_layout_errors() -> None:
    with pytest.raises(ConfigError, match="powers of two"):
        get_model("convgru", 3, layout="reference")
    with pytest.raises(ConfigError, match="noise_channels"):
        get_model("gan", 4, layout="reference", noise_channels=2)
    flow = get_model("flowconvgru", 2, layout="reference", width=8, blocks=1)
    with pytest.raises(GridShapeError, match="divisible by 8"):
        flow(torch.rand(1, 2, 1, 12, 12))
    with pytest.raises(GridShapeError, match="2 coarse frames"):
        flow(torch.rand(1, 4, 1, 16, 16))
    with pytest.raises(ConfigError, match="skip"):
        get_model("flowconvgru", 2, layout="reference", skip="bicubic")


def test_reference_gan_and_convgru_train_and_downscale(tmp_path) -> None:
    """climdown train on the reference layouts, then the checkpoint through the accessor."""
    from importlib import resources

    import numpy as np
    import yaml

    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.testing import tcw_dataarray
    from climdown.train import train

    recipes = Path(str(resources.files("climdown.study") / "recipes"))
    recipe = yaml.safe_load((recipes / "tiny.yaml").read_text())
    recipe["output"] = str(tmp_path / "tiny.zarr")
    store = build_store(load_recipe(recipe))
    small = {"layout": "reference", "width": 8, "blocks": 1}
    for name in ("gan", "convgru"):
        out = tmp_path / name
        summary = train(
            store, model=name, constraint="softmax", epochs=1, out=out, batch_size=8,
            progress=False, model_options=small,
        )  # fmt: skip
        assert summary["epochs"] == 1
        lr = tcw_dataarray(nlat=8, nlon=16, spacing=4.0)  # the tiny store's spacing
        hr = lr.climdown.downscale(factor=4, constraint="softmax", model=out / "best.pt")
        assert hr.shape == (lr.shape[0], 32, 64)
        assert float(hr.min()) >= 0
        budget = lr.climdown.conservation(hr)
        assert float(np.abs(budget["mass_rel_diff"]).max()) < 1e-6
        assert float(budget["max_block_violation"].max()) < 1e-4 * float(lr.max())


@needs_fixtures
@pytest.mark.parametrize("filename", ["cnn_c32.pt", "gan_generator_c32.pt"])
def test_reference_minmax_on_physical_units(filename: str) -> None:
    """With the reference's min-max (offset, scale) its weights run on kg m-2 fields."""
    name = FILES[filename][0]
    fixture = _load(filename)
    offset, scale = 0.4, 71.0  # a TCW range: min 0.4, max 71.4 kg m-2
    for case in fixture["cases"]:
        model = from_reference(
            fixture["state_dict"], name, constraint=case["constraint"], scale=scale, offset=offset
        ).eval()
        kwargs = {"noise": case["z"]} if "z" in case else {}
        with torch.no_grad():
            out = model(offset + scale * case["input"], **kwargs)
        expected = offset + scale * case["output"]
        err = float((out - expected).abs().max() / expected.abs().max())
        assert err <= RTOL, (filename, case["constraint"], err)


def test_train_with_the_reference_minmax_normalisation(tmp_path) -> None:
    """normalisation='minmax': the model records the store's min and range, and conserves."""
    from importlib import resources

    import yaml

    from climdown.checkpoint import load_checkpoint
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store, normalisation
    from climdown.train import train

    recipes = Path(str(resources.files("climdown.study") / "recipes"))
    recipe = yaml.safe_load((recipes / "tiny.yaml").read_text())
    recipe["output"] = str(tmp_path / "tiny.zarr")
    store = build_store(load_recipe(recipe))
    small = {"layout": "reference", "width": 8, "blocks": 1}
    train(
        store, model="cnn", constraint="softmax", epochs=1, out=tmp_path / "run", batch_size=4,
        progress=False, model_options=small, normalisation="minmax",
    )  # fmt: skip
    model, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    rec = normalisation(store)
    assert model.config["offset"] == pytest.approx(rec["min"])
    assert float(model.scale) == pytest.approx(rec["max"] - rec["min"])
    lr = rec["min"] + (rec["max"] - rec["min"]) * torch.rand(2, 1, 1, 4, 4)
    with torch.no_grad():
        y = model(lr)
    torch.testing.assert_close(y.reshape(2, 1, 1, 4, 4, 4, 4).mean((-3, -1)), lr)
    with pytest.raises(ConfigError, match="normalisation"):
        train(store, epochs=1, out=tmp_path / "bad", normalisation="zscore")
