"""The loaded-model cache is keyed by the checkpoint's content, not by its name or timestamps.

A checkpoint replaced by another one with the same size and modification time (``cp -p``, a
restore from backup, a build that sets fixed mtimes) must not be served from the cache.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from climdown.checkpoint import clear_model_cache, load_cached, save_checkpoint
from climdown.inference import Downscaler
from climdown.nn.models import get_model
from climdown.testing import tcw_dataarray

META = {"variable": "tcw", "units": "kg m-2"}


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = get_model("cnn", 2, "none", scale=30.0, width=4, blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


@pytest.fixture()
def two(tmp_path):
    """Two checkpoints of the same configuration and size, different weights."""
    a = save_checkpoint(tmp_path / "a" / "model.pt", _model(1), meta={**META, "created": "x"})
    b = save_checkpoint(tmp_path / "b" / "model.pt", _model(2), meta={**META, "created": "x"})
    clear_model_cache()
    yield a, b
    clear_model_cache()


def _same_stat(dst, src) -> None:
    """Give ``dst`` the modification time of ``src`` to the nanosecond (what ``cp -p`` does)."""
    st = os.stat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_replaced_checkpoint_with_the_same_size_and_mtime_is_reloaded(two, tmp_path) -> None:
    a, b = two
    path = tmp_path / "live.pt"
    shutil.copy2(a, path)
    first, _ = load_cached(path)
    stat = path.stat()
    shutil.copyfile(b, path)  # other bytes ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... same mtime
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    second, _ = load_cached(path)
    assert second is not first  # keyed by path and mtime, the old model was served
    want = _model(2).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in second.state_dict().items())
    # contrast: the unchanged file is served from the cache
    assert load_cached(path)[0] is second


def test_the_same_bytes_are_one_model_whatever_the_name_or_mtime(two, tmp_path) -> None:
    a, _ = two
    first, _ = load_cached(a)
    copy = tmp_path / "elsewhere.pt"
    shutil.copyfile(a, copy)  # a new name and a new mtime, the same content
    os.utime(copy, ns=(0, 10**9))
    assert load_cached(copy)[0] is first
    assert load_cached(a, device="cpu")[0] is first


def test_downscaler_uses_the_replaced_checkpoint(two, tmp_path) -> None:
    a, b = two
    path = tmp_path / "live.pt"
    shutil.copy2(a, path)
    da = tcw_dataarray(4, 6, 1)
    before = Downscaler(path, factor=2, constraint="none", device="cpu")(da)
    shutil.copyfile(b, path)
    _same_stat(path, a)
    after = Downscaler(path, factor=2, constraint="none", device="cpu")(da)
    want = Downscaler(b, factor=2, constraint="none", device="cpu")(da)
    np.testing.assert_array_equal(after.values, want.values)
    assert not np.array_equal(after.values, before.values)
