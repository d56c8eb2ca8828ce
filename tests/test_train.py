"""The training loop on a tiny store: loss falls, checkpoints round-trip, resume is exact, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml

from climdown.checkpoint import load_checkpoint, read_checkpoint, read_meta
from climdown.data.dataset import PatchDataset
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store
from climdown.errors import ConfigError, StoreError
from climdown.evaluate import evaluate_model, validate
from climdown.nn.models import GANModel, get_model
from climdown.train import TrainConfig, pick_device, train

RECIPES = Path(str(resources.files("climdown.study") / "recipes"))
SMALL = {"width": 8, "blocks": 1}  # a few thousand weights: steps take milliseconds
FAST = {"batch_size": 8, "progress": False, "model_options": SMALL}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged tiny.yaml (32 train / 16 val / 16 test synthetic 4x pairs, 16 x 16 HR)."""
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["output"] = str(tmp_path_factory.mktemp("stores") / "tiny.zarr")
    return build_store(load_recipe(recipe))


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def softmax_run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "softmax"
    summary = train(store, model="cnn", constraint="softmax", epochs=3, out=out, **FAST)
    return out, summary


def test_cnn_softmax_loss_falls_and_conserves(softmax_run):
    out, summary = softmax_run
    log = _log(out)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert log[-1]["val_rmse"] < log[0]["val_rmse"]
    for rec in log:
        assert rec["val_neg"] == 0
        assert rec["val_mass_violation_rel"] < 1e-5
        assert {"val_rmse_area", "val_mass_violation", "time_s", "train_time_s"} <= set(rec)
    assert summary["epochs"] == 3 and summary["steps"] == 3 * 4  # 32 samples / batch 8
    best = min(log, key=lambda r: r["val_rmse_area"])  # selection on the sphere by default
    assert summary["best_epoch"] == best["epoch"] and summary["select"] == "val_rmse_area"
    assert summary["best_val_rmse"] == pytest.approx(best["val_rmse_area"])
    assert read_checkpoint(out / "best.pt")["extra"]["epoch"] == best["epoch"]


def test_unconstrained_run_violates_mass(store, softmax_run, tmp_path):
    # contrast case: the same training without the layer neither conserves mass nor keeps it
    # within float32 round-off, which is what the softmax run above is checked against
    train(store, model="cnn", constraint="none", epochs=1, out=tmp_path, **FAST)
    assert _log(tmp_path)[0]["val_mass_violation_rel"] > 1e-3
    assert _log(softmax_run[0])[0]["val_mass_violation_rel"] < 1e-5


def test_checkpoint_metadata(softmax_run, store):
    out, _ = softmax_run
    meta = read_meta(out / "best.pt")
    assert meta["model"]["name"] == "cnn" and meta["constraint"] == "softmax"
    assert meta["factor"] == 4 and meta["variable"] == "tcw" and meta["units"] == "kg m-2"
    assert meta["normalisation"]["scale"] == pytest.approx(meta["scale"])
    assert meta["lr_spacing_deg"] == pytest.approx([4.0, 4.0])  # tiny: 1 deg HR, 4x
    assert meta["hr_spacing_deg"] == pytest.approx([1.0, 1.0])
    assert meta["training"]["batch_size"] == 8 and meta["training"]["seed"] == 0
    assert {"climdown_version", "format_version", "created"} <= set(meta)


def test_checkpoint_round_trips_in_a_fresh_process(softmax_run, tmp_path):
    out, _ = softmax_run
    torch.manual_seed(1)
    lr = 40.0 * torch.rand(2, 1, 1, 4, 4)
    torch.save(lr, tmp_path / "lr.pt")
    model, _ = load_checkpoint(out / "best.pt")
    with torch.no_grad():
        here = model(lr)
    code = (
        "import torch; from climdown.checkpoint import load_checkpoint;"
        f"m, _ = load_checkpoint({str(out / 'best.pt')!r});"
        f"lr = torch.load({str(tmp_path / 'lr.pt')!r}, weights_only=True);"
        f"torch.save(m(lr).detach(), {str(tmp_path / 'y.pt')!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    there = torch.load(tmp_path / "y.pt", weights_only=True)
    assert torch.equal(here, there)
    # contrast: a freshly initialised model of the same config gives other outputs
    fresh = get_model("cnn", 4, "softmax", scale=float(model.scale), **SMALL)
    with torch.no_grad():
        assert not torch.allclose(fresh(lr), here)


@pytest.mark.parametrize("model", ["cnn", "gan"])  # gan: its noise comes from the torch RNG
def test_resume_equals_uninterrupted(store, tmp_path, model):
    kw = {**FAST, "max_steps": 2}
    straight = tmp_path / "straight"
    train(store, model=model, constraint="softmax", epochs=2, out=straight, **kw)
    resumed = tmp_path / "resumed"
    train(store, model=model, constraint="softmax", epochs=1, out=resumed, **kw)
    summary = train(store, model=model, constraint="softmax", epochs=2, out=resumed, **kw)
    assert summary["epochs"] == 2 and summary["steps"] == 4
    a = read_checkpoint(straight / "last.pt")
    b = read_checkpoint(resumed / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for ra, rb in zip(_log(straight), _log(resumed), strict=True):
        for key in ("epoch", "step", "train_loss", "val_rmse", "val_mass_violation", "val_neg"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-12), key
    # contrast: another seed gives other weights, so the equality above is not vacuous
    other = tmp_path / "other"
    train(store, model=model, constraint="softmax", epochs=2, out=other, seed=1, **kw)
    c = read_checkpoint(other / "last.pt")["state_dict"]
    assert any(not torch.equal(value, c[key]) for key, value in b["state_dict"].items())


def test_resume_of_a_finished_run_does_nothing(store, softmax_run):
    out, before = softmax_run
    stamp = (out / "last.pt").stat().st_mtime_ns
    after = train(store, model="cnn", constraint="softmax", epochs=3, out=out, **FAST)
    assert after["epochs"] == 3 and after["best_val_rmse"] == before["best_val_rmse"]
    assert (out / "last.pt").stat().st_mtime_ns == stamp
    assert len(_log(out)) == 3


def test_resume_with_other_settings_is_refused(store, softmax_run):
    out, _ = softmax_run
    with pytest.raises(ConfigError, match="resume=False"):
        train(store, model="cnn", constraint="softmax", epochs=4, out=out, lr=1e-2, **FAST)


def test_resume_on_another_store_is_refused(store, tmp_path):
    """A run folder resumes only on the data it was trained on (recipe hash + normalisation)."""
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["source"]["seed"] = 1  # other synthetic fields: another store
    recipe["output"] = str(tmp_path / "other.zarr")
    other = build_store(load_recipe(recipe))
    out = tmp_path / "run"
    train(store, epochs=1, max_steps=1, out=out, **FAST)
    with pytest.raises(ConfigError, match="other data"):
        train(other, epochs=2, max_steps=1, out=out, **FAST)
    assert len(_log(out)) == 1  # nothing of the other store's was logged
    # contrast: the same store resumes
    assert train(store, epochs=2, max_steps=1, out=out, **FAST)["epochs"] == 2


def test_no_resume_starts_afresh(store, tmp_path):
    train(store, model="cnn", constraint="softmax", epochs=1, out=tmp_path, max_steps=1, **FAST)
    summary = train(
        store,
        model="cnn",
        constraint="softmax",
        epochs=1,
        out=tmp_path,
        max_steps=2,
        resume=False,
        **FAST,
    )
    assert summary["steps"] == 2 and len(_log(tmp_path)) == 1


def test_gan_alternating_steps_and_ensemble_scores(store, tmp_path):
    summary = train(
        store, model="gan", constraint="softmax", epochs=1, max_steps=2, out=tmp_path, **FAST
    )
    assert summary["steps"] == 2
    rec = _log(tmp_path)[0]
    assert rec["train_d_loss"] > 0 and rec["val_neg"] == 0
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert set(ckpt["optimizer"]) == {"model", "discriminator"}
    assert ckpt["extra"]["discriminator"]  # the discriminator's weights, for resuming
    model, _ = load_checkpoint(tmp_path / "best.pt")
    assert isinstance(model, GANModel)
    scores = evaluate_model(model, store, "val", batch_size=8, members=3)
    assert 0 <= scores["CRPS_fair"] <= scores["CRPS"]
    assert scores["n_samples"] == 16 and scores["neg_num"] == 0
    assert scores["mass_violation_rel"] < 1e-5


def test_soft_constraint_trains_with_its_penalty(store, tmp_path):
    train(
        store,
        model="cnn",
        constraint="soft",
        epochs=1,
        max_steps=1,
        out=tmp_path,
        soft_lambda=0.5,
        **FAST,
    )
    meta = read_meta(tmp_path / "best.pt")
    assert meta["constraint"] == "soft"
    assert meta["model"]["constraint_options"] == {"lam": 0.5}
    model, _ = load_checkpoint(tmp_path / "best.pt")
    lr = 40.0 * torch.rand(1, 1, 1, 4, 4)
    y = model(lr).detach()
    assert float(model.penalty(y, lr)) > 0  # the term the trainer adds


@pytest.mark.parametrize(
    ("model", "constraint", "match"),
    [("resnet", "softmax", "unknown model 'resnet'"), ("cnn", "hard", "unknown constraint")],
)
def test_unknown_names_are_config_errors(store, tmp_path, model, constraint, match):
    with pytest.raises(ConfigError, match=match):
        train(store, model=model, constraint=constraint, out=tmp_path, **FAST)
    assert not (tmp_path / "last.pt").exists()


def test_untrainable_baseline_is_a_config_error(store, tmp_path):
    with pytest.raises(ConfigError, match="no trainable parameters"):
        train(store, model="bicubic", constraint="softmax", out=tmp_path, progress=False)


def test_store_without_normalisation_is_a_store_error(store, tmp_path):
    import zarr

    broken = tmp_path / "nostats.zarr"
    shutil.copytree(store, broken)
    group = zarr.open_group(broken, mode="r+")
    attrs = dict(group.attrs)
    attrs.pop("normalisation")
    group.attrs.put(attrs)
    with pytest.raises(StoreError, match="normalisation"):
        train(broken, out=tmp_path / "run", **FAST)
    with pytest.raises(StoreError, match="no store"):
        train(tmp_path / "missing.zarr", out=tmp_path / "run", **FAST)


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None:
        expected = "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        pick_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            pick_device("cuda")


def test_training_curves_are_drawn(store, tmp_path, capsys):
    """``climdown train`` draws the log; the loop itself draws nothing (it is below plot)."""
    pytest.importorskip("matplotlib")
    from climdown.cli import main

    args = ["train", "--store", str(store), "--out", str(tmp_path), "--epochs", "1"]
    args += ["--max-steps", "1", "--batch-size", "8", "--quiet"]
    args += ["--option", "width=8", "--option", "blocks=1"]
    assert main(args) == 0
    assert f"curves: {tmp_path / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / "curves.png").stat().st_size > 1000
    summary = train(store, model="cnn", epochs=1, max_steps=1, out=tmp_path / "api", **FAST)
    assert "curves" not in summary and not (tmp_path / "api" / "curves.png").exists()


def test_train_config_validates_itself():
    cfg = TrainConfig(model="CNN", constraint="Softmax", model_options={"width": 8})
    assert (cfg.model, cfg.constraint, cfg.precision) == ("cnn", "softmax", "fp32")
    assert TrainConfig.from_mapping(cfg.to_dict()) == cfg
    bad = [
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 2.5}, "epochs"),
        ({"seed": True}, "seed"),
        ({"model_options": [1]}, "model_options"),
        ({"precision": "fp8"}, "unknown precision"),
        ({"model": "resnet"}, "unknown model"),
    ]
    for options, match in bad:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**options)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TrainConfig.from_mapping({"epoch": 3})


def test_train_refuses_unknown_options(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'plot'"):
        train(store, out=tmp_path, plot=False, **FAST)
    assert not (tmp_path / "last.pt").exists()


def test_train_refuses_a_file_as_out_and_negative_workers(store, tmp_path):
    """Clear errors instead of a bare 'File exists' or torch's DataLoader message."""
    data = tmp_path / "data.nc"
    data.write_bytes(b"CDF\x01")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        train(store, out=data, **FAST)
    assert data.read_bytes() == b"CDF\x01"
    with pytest.raises(ConfigError, match="num_workers must be an integer >= 0"):
        train(store, out=tmp_path / "run", num_workers=-2, **FAST)
    assert not (tmp_path / "run").exists()


def test_bf16_precision_still_conserves(store, tmp_path):
    train(
        store,
        model="cnn",
        constraint="softmax",
        epochs=1,
        max_steps=1,
        out=tmp_path,
        precision="bf16",
        **FAST,
    )
    rec = _log(tmp_path)[0]
    assert rec["val_neg"] == 0 and rec["val_mass_violation_rel"] < 1e-5
    assert read_meta(tmp_path / "best.pt")["training"]["precision"] == "bf16"
    with pytest.raises(ConfigError, match="unknown precision"):
        train(store, out=tmp_path / "x", precision="fp8", **FAST)


# ---------------------------------------------------------------------------------------
# Making the most of little data: augmentation, selection, early stopping, epoch files
# ---------------------------------------------------------------------------------------
def test_augment_moves_field_input_and_areas_together():
    from climdown.grid import Grid, coarsen
    from climdown.train import augment

    g = torch.Generator().manual_seed(0)
    area = torch.as_tensor(Grid(torch.linspace(80.0, 50.0, 8).numpy(), range(8)).area)
    y = torch.rand(16, 1, 1, 8, 8, dtype=torch.float64, generator=g) * 30
    areas = area.expand(16, 8, 8)
    x = coarsen(y, areas[:, None, None], 4)
    xa, ya, aa = augment(x, y, areas, torch.Generator().manual_seed(3))
    # still a coarse input and its fine field on the same (transformed) cells
    torch.testing.assert_close(coarsen(ya, aa[:, None, None], 4), xa)
    # the samples were transformed, and in more than one way
    kinds = {next(k for k in range(8) if torch.equal(aa[i], _sym(area, k))) for i in range(16)}
    assert len(kinds) > 2 and kinds != {0}
    # non-square patches: flips only, shapes kept
    xr_, yr_, ar_ = augment(x[..., :1], y[..., :4], areas[..., :4], torch.Generator())
    assert yr_.shape == y[..., :4].shape and ar_.shape == (16, 8, 4)


def _sym(a: torch.Tensor, op: int) -> torch.Tensor:
    t = torch.rot90(a, 1, dims=(-2, -1)) if op >= 4 else a
    flip = [d for d, bit in ((-2, 1), (-1, 2)) if op & bit]
    return torch.flip(t, flip) if flip else t


def test_augmented_run_learns_conserves_and_resumes_exactly(store, tmp_path):
    opts = dict(model="cnn", constraint="softmax", augment=True, seed=1, **FAST)
    full = train(store, epochs=3, out=tmp_path / "full", **opts)
    plain = train(store, epochs=3, out=tmp_path / "plain", **{**opts, "augment": False})
    log = _log(tmp_path / "full")
    assert all(r["val_mass_violation_rel"] < 1e-5 and r["val_neg"] == 0 for r in log)
    assert log[-1]["train_loss"] != _log(tmp_path / "plain")[-1]["train_loss"]  # contrast
    train(store, epochs=2, out=tmp_path / "cut", **opts)
    resumed = train(store, epochs=3, out=tmp_path / "cut", **opts)
    assert resumed["best_val_rmse"] == full["best_val_rmse"]
    assert plain["best_val_rmse"] != full["best_val_rmse"]
    with pytest.raises(ConfigError, match="augment"):  # a resumed run keeps its augmentation
        train(store, epochs=4, out=tmp_path / "cut", **{**opts, "augment": False})


def test_select_patience_and_epoch_files(store, tmp_path):
    summary = train(
        store,
        epochs=6,
        out=tmp_path / "run",
        select="val_rmse",
        patience=1,
        keep_epochs=True,
        lr=0.5,  # far too large: validation stops improving at once
        **FAST,
    )
    log = _log(tmp_path / "run")
    best = min(log, key=lambda r: r["val_rmse"])
    assert summary["select"] == "val_rmse" and summary["best_epoch"] == best["epoch"]
    assert summary["stopped_early"] and summary["epochs"] == best["epoch"] + 1 < 6
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch-*.pt")) == [
        f"epoch-{e:03d}.pt" for e in range(1, summary["epochs"] + 1)
    ]
    assert read_checkpoint(tmp_path / "run" / "epoch-001.pt")["extra"]["epoch"] == 1
    with pytest.raises(ConfigError, match="select"):
        TrainConfig(select="val_loss")
    with pytest.raises(ConfigError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(ConfigError, match="augment must be true or false"):
        TrainConfig(augment="yes")


def test_an_epoch_of_too_few_steps_is_a_warning(store, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="climdown"):
        train(store, epochs=1, max_steps=1, out=tmp_path / "a", **{**FAST, "batch_size": 64})
    assert "only 1 optimiser step(s) (32 training samples, batch_size=64)" in caplog.text
    assert "batch_size=3)" in caplog.text  # the advice is a smaller batch, never a larger one
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="climdown"):  # contrast: 8 steps per epoch
        train(store, epochs=1, out=tmp_path / "b", **{**FAST, "batch_size": 4})
    assert "optimiser step" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="climdown"):  # cut short on purpose: no advice
        train(store, epochs=1, max_steps=2, out=tmp_path / "c", **{**FAST, "batch_size": 4})
    assert "optimiser step" not in caplog.text


def test_adversarial_weight_and_loss_options_validate_themselves():
    cfg = TrainConfig(model="gan")
    assert (cfg.adversarial_weight, cfg.loss, cfg.crps_members) == (0.01, "mse", 2)
    assert (
        TrainConfig.from_mapping({"model": "gan", "adversarial_weight": 1e-4, "loss": "CRPS"}).loss
        == "crps"
    )
    bad = [
        ({"model": "gan", "adversarial_weight": -0.1}, "adversarial_weight"),
        ({"model": "gan", "loss": "mae"}, "unknown loss"),
        ({"model": "cnn", "loss": "mse-area"}, "unknown loss"),
        ({"model": "gan", "loss": "crps", "crps_members": 1}, "crps_members"),
        ({"model": "cnn", "loss": "crps"}, "needs a model that samples"),
        ({"model": "cnn", "select": "val_crps_area"}, "needs a model that samples"),
        ({"model": "gan", "select": "val_crps"}, "unknown select"),
    ]
    for options, match in bad:
        with pytest.raises(ConfigError, match=match):
            TrainConfig(**options)


def test_area_weighted_loss_trains_differently_and_is_recorded(store, tmp_path):
    """loss='mse_area' weights the step by cell area: on a store whose cells differ in area
    the first step moves the weights elsewhere than the plain MSE's; a resume must keep it."""
    states = {}
    for loss in ("mse", "mse_area"):
        out = tmp_path / loss
        train(store, epochs=1, max_steps=1, loss=loss, out=out, **FAST)
        states[loss] = read_checkpoint(out / "last.pt")
    a, b = (states[k]["state_dict"] for k in ("mse", "mse_area"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert states["mse_area"]["extra"]["config"]["loss"] == "mse_area"
    with pytest.raises(ConfigError, match="settings"):
        train(store, epochs=2, max_steps=1, out=tmp_path / "mse_area", **FAST)


def test_adversarial_weight_reaches_the_generator(store, tmp_path):
    weights = {}
    for w in (0.0, 0.01, 1.0):
        out = tmp_path / f"w{w}"
        train(store, model="gan", epochs=1, max_steps=1, adversarial_weight=w, out=out, **FAST)
        weights[w] = read_checkpoint(out / "last.pt")["state_dict"]
    changed = [k for k in weights[0.0] if not torch.equal(weights[0.0][k], weights[1.0][k])]
    assert changed  # the adversarial term moved the generator ...
    again = tmp_path / "again"  # ... and a run is otherwise reproducible (contrast)
    train(store, model="gan", epochs=1, max_steps=1, adversarial_weight=0.0, out=again, **FAST)
    same = read_checkpoint(again / "last.pt")["state_dict"]
    assert all(torch.equal(weights[0.0][k], same[k]) for k in same)
    ckpt = read_checkpoint(tmp_path / "w1.0" / "last.pt")
    assert ckpt["extra"]["config"]["adversarial_weight"] == 1.0
    with pytest.raises(ConfigError, match="settings"):  # a resume must keep the weight
        train(store, model="gan", epochs=2, max_steps=1, out=tmp_path / "w1.0", **FAST)


def test_zero_adversarial_weight_skips_the_discriminator(store, tmp_path):
    # with no adversarial term the discriminator would train unused: it is not trained at all
    states = {}
    for steps in (1, 2):
        out = tmp_path / f"s{steps}"
        train(
            store, model="gan", epochs=1, max_steps=steps, adversarial_weight=0.0, out=out, **FAST
        )
        states[steps] = read_checkpoint(out / "last.pt")
        assert "train_d_loss" not in _log(out)[0]
    d1, d2 = (states[k]["extra"]["discriminator"] for k in (1, 2))
    assert all(torch.equal(d1[k], d2[k]) for k in d1)  # D never moved
    g1, g2 = (states[k]["state_dict"] for k in (1, 2))
    assert any(not torch.equal(g1[k], g2[k]) for k in g1)  # contrast: the generator did


def test_crps_loss_trains_a_gan_and_its_ensemble_is_scored(store, tmp_path):
    summary = train(
        store, model="gan", epochs=1, max_steps=2, loss="crps", crps_members=3, out=tmp_path, **FAST
    )
    assert summary["steps"] == 2
    rec = _log(tmp_path)[0]
    assert rec["train_loss"] > 0 and rec["val_neg"] == 0
    model, _ = load_checkpoint(tmp_path / "best.pt")
    scores = evaluate_model(model, store, "val", batch_size=8, members=4)
    assert scores["members"] == 4 and sum(scores["rank_histogram"]) == 16 * 16 * 16
    assert len(scores["rank_histogram"]) == 5
    assert scores["spread"] > 0 and scores["spread_skill"] == pytest.approx(
        scores["spread"] / scores["RMSE_ens_mean"]
    )


def test_select_by_validation_crps_picks_the_epoch_with_the_lowest_crps(store, tmp_path):
    summary = train(
        store, model="gan", epochs=3, max_steps=2, select="val_crps_area", out=tmp_path, **FAST
    )
    log = _log(tmp_path)
    crps = [r["val_crps_area"] for r in log]
    assert all(c > 0 for c in crps) and summary["select"] == "val_crps_area"
    assert summary["best_epoch"] == 1 + crps.index(min(crps))
    assert summary["best_val_rmse"] == min(crps)
    # the logged score is the area-weighted fair CRPS of the best epoch's members, recomputed
    model, _ = load_checkpoint(tmp_path / "best.pt")
    again = validate(model, PatchDataset(store, "val"), batch_size=8, members=2, seed=0)
    assert again["val_crps_area"] == pytest.approx(min(crps), rel=1e-6)
    plain = validate(model, PatchDataset(store, "val"), batch_size=8)  # contrast: no members
    assert "val_crps_area" not in plain
    assert plain["val_rmse_area"] == pytest.approx(again["val_rmse_area"], rel=0.5)


def test_validation_members_need_a_sampling_model(store):
    from climdown.nn.models import get_model

    net = get_model("cnn", factor=4, constraint="softmax", scale=50.0)
    with pytest.raises(ConfigError, match="model that samples"):
        validate(net, PatchDataset(store, "val"), members=2)
    gan = get_model("gan", factor=4, constraint="softmax", scale=50.0)
    with pytest.raises(ConfigError, match="at least 2"):
        validate(gan, PatchDataset(store, "val"), members=1)


def test_validation_crps_is_drawn_only_when_it_selects(store, tmp_path):
    # a CRPS-trained GAN selected by RMSE validates as before (one draw, no members), so the
    # rows trained before select='val_crps_area' existed train the same way
    train(store, model="gan", epochs=1, max_steps=1, loss="crps", out=tmp_path, **FAST)
    assert "val_crps_area" not in _log(tmp_path)[0]
    train(
        store,
        model="gan",
        epochs=1,
        max_steps=1,
        loss="crps",
        select="val_crps_area",
        out=tmp_path / "s",
        **FAST,
    )
    assert _log(tmp_path / "s")[0]["val_crps_area"] > 0  # contrast
