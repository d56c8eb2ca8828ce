"""PatchDataset and make_loader: item shapes, area weights, cache, seeded order, worker safety."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from climdown.data.dataset import PatchDataset, make_loader
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, open_store, store_info
from climdown.errors import DataValueError, StoreError
from climdown.grid import Grid, coarsen
from climdown.study import recipes_dir

RECIPES = recipes_dir()


def _tiny(out: Path, **over: object):
    d = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    d.update(output=str(out), **over)
    return load_recipe(d)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(_tiny(tmp_path_factory.mktemp("ds") / "tiny.zarr"))


@pytest.fixture(scope="module")
def seq_store(tmp_path_factory):
    splits = {"train": {"start": "2020-01-01", "end": "2020-01-01T12:00", "samples": 8}}
    path = tmp_path_factory.mktemp("ds") / "seq.zarr"
    return build_store(_tiny(path, frames=3, splits=splits, chunks=4))


def test_item_shapes_dtypes_and_metadata(store):
    ds = PatchDataset(store, "train")
    assert len(ds) == 32
    item = ds[0]
    assert set(item) == {"lr", "hr", "area", "index"}
    assert item["lr"].shape == (1, 1, 4, 4) and item["hr"].shape == (1, 1, 16, 16)
    assert item["area"].shape == (16, 16) and item["index"] == 0
    assert item["hr"].dtype == torch.float32 and item["area"].dtype == torch.float32
    info = store_info(store)
    assert ds.stats == info["normalisation"] and ds.stats["scale"] > 0
    assert (ds.factor, ds.frames, ds.patch) == (4, 1, 16)
    assert (ds.units, ds.variable) == ("kg m-2", "tcw")
    assert "PatchDataset" in repr(ds)


def test_items_match_the_store_and_their_areas(store):
    ds = PatchDataset(store, "val", dtype=torch.float64)
    ref = open_store(store, "val").load()
    for i in (0, 7, len(ds) - 1):
        item = ds[i]
        np.testing.assert_array_equal(item["hr"][:, 0].numpy(), ref.hr.values[i])
        np.testing.assert_array_equal(item["lr"][:, 0].numpy(), ref.lr.values[i])
        area = Grid(ref.lat.values[i], ref.lon.values[i]).area
        np.testing.assert_array_equal(item["area"].numpy(), area)
        # the item's area links its LR to its HR (torch path of grid.coarsen) ...
        back = coarsen(item["hr"], item["area"], 4)
        assert torch.max(torch.abs(back - item["lr"])) <= 1e-5
        # ... and equal weights do not (contrast)
        flat = coarsen(item["hr"], torch.ones_like(item["area"]), 4)
        assert torch.max(torch.abs(flat - item["lr"])) > 1e-4


def test_sequences_have_frames_first(seq_store):
    ds = PatchDataset(seq_store)
    item = ds[-1]
    assert item["index"] == len(ds) - 1
    assert item["lr"].shape == (3, 1, 4, 4) and item["hr"].shape == (3, 1, 16, 16)
    batch = next(iter(make_loader(ds, batch_size=4, shuffle=False)))
    assert batch["hr"].shape == (4, 3, 1, 16, 16) and batch["lr"].shape == (4, 3, 1, 4, 4)
    assert batch["area"].shape == (4, 16, 16) and batch["index"].tolist() == [0, 1, 2, 3]


def test_cache_gives_the_same_items(store):
    lazy, cached = PatchDataset(store, "test"), PatchDataset(store, "test", cache=True)
    for i in range(len(lazy)):
        a, b = lazy[i], cached[i]
        assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])


def test_seeded_shuffling(store):
    ds = PatchDataset(store, "train", cache=True)

    def order(seed, **kw):
        return [
            i for b in make_loader(ds, batch_size=5, seed=seed, **kw) for i in b["index"].tolist()
        ]

    first = order(0)
    assert sorted(first) == list(range(32))
    assert order(0) == first  # same seed, same order
    assert order(1) != first  # contrast: another seed, another order
    assert order(0, shuffle=False) == list(range(32))
    batches = list(make_loader(ds, batch_size=5, drop_last=True))
    assert len(batches) == 6 and all(b["hr"].shape[0] == 5 for b in batches)


def test_two_workers_give_the_same_batches(store):
    ds = PatchDataset(store, "train")
    serial = list(make_loader(ds, batch_size=8, seed=3))
    parallel = list(make_loader(ds, batch_size=8, seed=3, num_workers=2))
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["hr"], b["hr"])


def test_pickles_without_open_handles(store):
    ds = PatchDataset(store, "train")
    ds[0]  # opens the zarr arrays in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays is None
    assert torch.equal(clone[3]["hr"], ds[3]["hr"])


def test_bad_use(store, tmp_path):
    with pytest.raises(StoreError, match="no split 'nope'"):
        PatchDataset(store, "nope")
    with pytest.raises(StoreError, match="no store"):
        PatchDataset(tmp_path / "missing.zarr")
    with pytest.raises(DataValueError, match="floating"):
        PatchDataset(store, dtype=torch.int32)
    ds = PatchDataset(store, "val")
    with pytest.raises(IndexError):
        ds[len(ds)]
