"""Checkpoints: round trip, metadata, weights_only safety, atomic writes, clear errors."""

from __future__ import annotations

import os
import pathlib
import threading

import numpy as np
import pytest
import torch

from climdown import __version__
from climdown.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    check_expected,
    check_spacing,
    clear_model_cache,
    load_cached,
    load_checkpoint,
    read_checkpoint,
    read_meta,
    save_checkpoint,
)
from climdown.errors import CheckpointError
from climdown.nn.models import GANModel, build_model, get_model

META = {"variable": "tcw", "units": "kg m-2", "normalisation": {"scale": np.float32(70.0)}}


def _model(name: str = "cnn", constraint: str = "softmax", factor: int = 4):
    torch.manual_seed(0)
    return get_model(name, factor, constraint, scale=70.0, width=8, blocks=1)


def _lr() -> torch.Tensor:
    return 70.0 * torch.rand(2, 1, 1, 4, 4, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize(("name", "constraint"), [("cnn", "softmax"), ("gan", "none")])
def test_round_trip_gives_the_same_model(tmp_path, name, constraint):
    model = _model(name, constraint).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, meta=META)
    loaded, meta = load_checkpoint(path)
    assert type(loaded) is type(model) and not loaded.training
    noise = torch.zeros(2, 1, 1, 4, 4)
    kw = {"noise": noise} if isinstance(model, GANModel) else {}
    with torch.no_grad():
        assert torch.equal(loaded(_lr(), **kw), model(_lr(), **kw))
        assert torch.equal(loaded.raw(_lr(), **kw), model.raw(_lr(), **kw))
        # contrast: an untrained model of the same config differs (in z: an untrained softmax
        # CNN's output is the nearest baseline whatever its weights, see icnr_)
        torch.manual_seed(1)
        assert not torch.equal(build_model(meta["model"]).raw(_lr(), **kw), model.raw(_lr(), **kw))


def test_metadata_is_complete(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "m.pt", model, meta={**META, "factor": 99})
    meta = read_meta(tmp_path / "m.pt")
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    assert meta["climdown_version"] == __version__
    assert meta["model"] == model.config
    assert meta["factor"] == 4  # the model's own value wins over a stale one in meta
    assert meta["constraint"] == "softmax" and meta["scale"] == 70.0
    assert meta["variable"] == "tcw" and meta["units"] == "kg m-2"
    assert meta["normalisation"] == {"scale": 70.0}  # numpy scalars become JSON numbers
    assert meta["created"].endswith("+00:00")


def test_optimizer_and_extra_are_kept(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(_lr()).sum().backward()
    opt.step()
    extra = {"rng": torch.get_rng_state(), "epoch": 3}
    save_checkpoint(tmp_path / "m.pt", model, meta=META, optimizer={"model": opt}, extra=extra)
    ckpt = read_checkpoint(tmp_path / "m.pt")
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3)
    fresh.load_state_dict(ckpt["optimizer"]["model"])
    state = fresh.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(state, opt.state_dict()["state"][0]["exp_avg"])
    assert ckpt["extra"]["epoch"] == 3 and torch.equal(ckpt["extra"]["rng"], extra["rng"])


class _Trap:
    """Pickles to a call that creates a file: a full (unsafe) unpickle would run it."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_loading_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"format": FORMAT, "format_version": 1, "state_dict": _Trap(marker)}, tmp_path / "x.pt"
    )
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "x.pt")
    assert not marker.exists()
    # contrast: the unsafe reader would have run it
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a zip file at all", "corrupt"),
        (None, "not a climdown checkpoint"),
        ("newer", "upgrade climdown"),
        ("badmeta", "damaged"),
    ],
)
def test_bad_files_are_checkpoint_errors(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        torch.save({"weights": torch.ones(2)}, path)
    elif content == "newer":
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 1}, path)
    else:
        torch.save({"format": FORMAT, "format_version": 1, "meta_json": "{oops"}, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        read_meta(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_factor_and_variable_mismatch_name_both_values(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    with pytest.raises(
        CheckpointError, match=r"factor 4 but factor 8 is needed.*trained at factor 8"
    ):
        load_checkpoint(path, expect_factor=8)
    with pytest.raises(CheckpointError, match=r"'tcw' but the data here is 'pr'"):
        load_checkpoint(path, expect_variable="pr")
    model, meta = load_checkpoint(path, expect_factor=4, expect_variable="TCW")
    assert meta["factor"] == 4


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = _model("cnn", "softmax", factor=2).state_dict()
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_save_is_atomic(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="pickle"):  # a lock cannot be pickled: fails midway
        save_checkpoint(path, _model("cnn", "none"), meta=META, extra={"lock": threading.Lock()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, _model(), meta={"bad": object()})
    assert path.read_bytes() == before


def test_loads_onto_the_requested_device(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    model, _ = load_checkpoint(path, device="cpu")
    assert {p.device.type for p in model.parameters()} == {"cpu"}


# ---------------------------------------------------------------------------------------
# compatibility checks and the loaded-model cache
# ---------------------------------------------------------------------------------------
def test_one_check_for_checkpoints_and_model_objects():
    seen = {"factor": 4, "constraint": "softmax", "variable": "tcw"}
    check_expected("model 'cnn'", seen, factor=4, constraint="SoftMax", variable="TCW")
    with pytest.raises(CheckpointError, match=r"'cnn' downscales by factor 4 but factor 2"):
        check_expected("model 'cnn'", seen, factor=2)
    with pytest.raises(CheckpointError, match=r"constraint 'softmax' but constraint 'add'.*'add'"):
        check_expected("model 'cnn'", seen, constraint="add")
    with pytest.raises(CheckpointError, match="trained on variable 'tcw'"):
        check_expected("model 'cnn'", seen, variable="pr")
    check_expected("model 'cnn'", {}, factor=None, constraint=None)  # nothing asked: no check


def test_another_variable_warns_unless_strict():
    seen = {"factor": 4, "constraint": "softmax", "variable": "tcw"}
    with pytest.warns(UserWarning, match=r"trained on variable 'tcw' but the data here is 'tco3'"):
        check_expected("checkpoint 'm.pt'", seen, variable="tco3", strict=False)
    with pytest.raises(CheckpointError, match="'tcw' but the data here is 'tco3'"):
        check_expected("checkpoint 'm.pt'", seen, variable="tco3", strict=True)
    # contrast: the same variable (any case) is silent (warnings are errors here), and a
    # model that records no variable is not checked
    check_expected("checkpoint 'm.pt'", seen, variable="TCW", strict=False)
    check_expected("model 'cnn'", {"factor": 4}, variable="tco3", strict=True)
    # factor and constraint stay errors whatever strict says
    with pytest.raises(CheckpointError, match="factor 4 but factor 2"):
        check_expected("checkpoint 'm.pt'", seen, factor=2, strict=False)


def test_load_cached_loads_once_per_file_version(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _model(), meta=META)
    clear_model_cache()
    try:
        a, meta = load_cached(path, expect_factor=4, expect_constraint="softmax")
        b, _ = load_cached(str(path))
        assert a is b and not a.training and meta["factor"] == 4
        with pytest.raises(CheckpointError, match="factor 4 but factor 8"):
            load_cached(path, expect_factor=8)  # checked on a cached model too
        with pytest.raises(CheckpointError, match="constraint 'softmax'"):
            load_cached(path, expect_constraint="none")
        # the cache is keyed by content (tests/reliability/test_cache.py): a rewrite with
        # other bytes is loaded afresh, even at the same modification time
        stat = path.stat()
        save_checkpoint(path, _model(), meta={**META, "note": "retrained"})
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert load_cached(path)[0] is not a  # rewritten: loaded afresh
        c = load_cached(path)[0]
        clear_model_cache()
        assert load_cached(path)[0] is not c  # forgotten
        with pytest.raises(CheckpointError, match="not found"):
            load_cached(tmp_path / "nope.pt")
    finally:
        clear_model_cache()


def test_spacing_far_from_training_warns():
    meta = {"lr_spacing_deg": [1.0, 1.0]}
    with pytest.warns(UserWarning, match=r"2x from the spacing model 'm.pt' was trained on"):
        check_spacing(meta, (0.25, 0.25), "m.pt")
    with pytest.warns(UserWarning, match="spacing"):
        check_spacing({"lr_spacing_deg": 0.5}, (0.5, 1.5), "m.pt")  # one number: both axes
    # within 2x, or nothing recorded: silent (warnings are errors here)
    check_spacing(meta, (0.6, 1.9), "m.pt")
    check_spacing({}, (0.01, 0.01), "m.pt")
