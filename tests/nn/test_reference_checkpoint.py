"""The reference's own checkpoint files are read for their weights without running its code.

The reference's ``training.py`` saves ``{'model': model, 'state_dict': model.state_dict()}``:
a pickled model of its own classes beside the weights. These tests write such files with
stand-in classes from a throwaway module and check that :func:`read_reference_weights` (and
``from_reference(path, ...)``) return the weights, never import or run those classes, and
refuse files that name blocked code.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from climdown.errors import CheckpointError
from climdown.nn.models import from_reference, get_model, read_reference_weights
from climdown.nn.models.weights import CNN_KEYS

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "reference"

#: climdown reference-layout CNN module name -> the reference ResNet's
_TO_REFERENCE = {ours: theirs for theirs, ours in CNN_KEYS.items()}


def _reference_cnn_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the reference ResNet's keys (32 channels, 2 blocks, 4x)."""
    torch.manual_seed(seed)
    model = get_model("cnn", 4, "none", layout="reference", width=32, blocks=2)
    out = {}
    for key, value in model.backbone.state_dict().items():
        head, _, rest = key.partition(".")
        out[f"{_TO_REFERENCE[head]}.{rest}"] = value.clone()
    return out


@pytest.fixture
def reference_module(tmp_path):
    """A module ``refcode_models_<pid>`` with a ResNet whose unpickling leaves a trace file."""
    name = f"refcode_models_{os.getpid()}"
    module = types.ModuleType(name)
    trace = tmp_path / "unpickled-and-ran"

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())

        def __setstate__(self, state):  # runs when a plain torch.load rebuilds the model
            trace.write_text("ran")
            super().__setstate__(state)

    ResNet.__module__ = name
    ResNet.__qualname__ = "ResNet"
    module.ResNet = ResNet
    sys.modules[name] = module
    yield module, trace
    sys.modules.pop(name, None)


def _save_like_the_reference(module, path: Path, state: dict) -> None:
    """``training.checkpoint`` of the reference: the pickled model and its state dict."""
    torch.save({"model": module.ResNet(), "state_dict": state}, path)


def test_reads_the_reference_checkpoint_without_running_its_code(tmp_path, reference_module):
    module, trace = reference_module
    state = _reference_cnn_state()
    path = tmp_path / "cnn_softmax.pth"
    _save_like_the_reference(module, path, state)

    with pytest.raises(Exception, match="(?i)weights only load failed"):
        torch.load(path, weights_only=True)  # what a user tries first
    weights = read_reference_weights(path)
    assert not trace.exists(), "the reference's class was run while reading its weights"
    assert list(weights) == list(state)
    for key, value in state.items():
        assert torch.equal(weights[key], value), key

    # the plain unsafe load would have run the class: the trace check above can fail
    torch.load(path, weights_only=False)
    assert trace.exists()


def test_reads_it_when_the_reference_code_is_not_importable(tmp_path, reference_module):
    module, _ = reference_module
    state = _reference_cnn_state(seed=3)
    path = tmp_path / "cnn.pth"
    _save_like_the_reference(module, path, state)
    sys.modules.pop(module.__name__)  # a machine without the reference repository
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)
    weights = read_reference_weights(path)
    assert all(torch.equal(weights[k], v) for k, v in state.items())


def test_from_reference_takes_the_path(tmp_path, reference_module):
    """The path, the checkpoint dict and the bare state dict build the same model."""
    module, _ = reference_module
    state = _reference_cnn_state(seed=5)
    path = tmp_path / "cnn_softmax.pth"
    _save_like_the_reference(module, path, state)
    x = 0.05 + 0.95 * torch.rand(2, 1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    outputs = []
    for source in (path, str(path), {"model": None, "state_dict": state}, state):
        model = from_reference(source, "cnn", factor=4, constraint="softmax").eval()
        with torch.no_grad():
            outputs.append(model(x))
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])
    # a bare state dict file, as torch.save(model.state_dict()) writes it
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    assert all(torch.equal(read_reference_weights(bare)[k], v) for k, v in state.items())


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_blocked_code_is_a_clear_error_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Exploit(target), "state_dict": _reference_cnn_state()}, path)
    with pytest.raises(CheckpointError, match="cannot read reference checkpoint"):
        read_reference_weights(path)
    with pytest.raises(CheckpointError, match="cannot read reference checkpoint"):
        from_reference(path, "cnn")
    assert not target.exists()


def test_files_without_weights_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_reference_weights(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_reference_weights(garbage)
    for payload in ([1, 2], {"epoch": 3}, {"state_dict": {"w": "not a tensor"}}, {}):
        path = tmp_path / "odd.pth"
        torch.save(payload, path)
        with pytest.raises(CheckpointError, match="holds no state dict"):
            read_reference_weights(path)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"reference fixtures not found at {FIXTURES}")
def test_fixture_files_load_by_path() -> None:
    """``../shared/reference/cnn.pt`` keeps its weights under ``state_dict``: its path loads."""
    fixture = torch.load(FIXTURES / "cnn.pt", weights_only=True)
    case = next(c for c in fixture["cases"] if c["constraint"] == "softmax")
    model = from_reference(FIXTURES / "cnn.pt", "cnn", constraint="softmax").eval()
    with torch.no_grad():
        out = model(case["input"])
    assert float((out - case["output"]).abs().max() / case["output"].abs().max()) <= 1e-5


def test_climdown_loaders_point_reference_files_to_from_reference(tmp_path, reference_module):
    """A reference file passed where a climdown checkpoint goes names the loader to use."""
    from climdown.checkpoint import load_checkpoint

    module, trace = reference_module
    path = tmp_path / "cnn.pth"
    _save_like_the_reference(module, path, _reference_cnn_state())
    bare = tmp_path / "bare.pt"
    torch.save(_reference_cnn_state(), bare)
    for source in (path, bare):
        with pytest.raises(CheckpointError, match="from_reference"):
            load_checkpoint(source)
    assert not trace.exists()
