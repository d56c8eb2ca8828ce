"""Scale-out: stores built on a dask cluster, DDP training under torchrun, lazy downscale on a cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import climdown  # noqa: F401  (registers the .climdown accessor)
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, partial_path, split_arrays, store_info
from climdown.data.synthetic import synthetic_tcw
from climdown.distributed import SCHEDULER_ENV, dask_client, dist_env, rank_batches
from climdown.errors import ConfigError, DataValueError
from climdown.inference import downscale_file
from climdown.train import train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SPLITS = ("train", "val", "test")


def _tiny(out: Path, **over: object):
    d = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    d.update(output=str(out), **over)
    return load_recipe(d)


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster (processes, one thread each) for the module's cluster tests."""
    with dask_client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory):
    return build_store(_tiny(tmp_path_factory.mktemp("local") / "tiny.zarr"))


# ---------------------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------------------
def test_rank_batches_weighted_rank_means_average_to_the_global_mean():
    """Uneven split (9 samples on 2 ranks, 1 sample on 2): the weighted average is exact."""
    rng = np.random.default_rng(0)
    loss = rng.random(20)  # a per-sample loss
    batches = [list(range(0, 9)), list(range(9, 18)), [18]]
    world = 2
    parts = [rank_batches(batches, r, world) for r in range(world)]
    for step, batch in enumerate(batches):
        got = sorted(i for r in range(world) for i in parts[r][step][0] if parts[r][step][1] > 0)
        assert got == batch  # every sample once, none twice
        sizes = [len(parts[r][step][0]) for r in range(world) if parts[r][step][1] > 0]
        assert max(sizes) - min(sizes) <= 1
        means = [loss[parts[r][step][0]].mean() for r in range(world)]
        weights = [parts[r][step][1] for r in range(world)]
        ddp = sum(w * m for w, m in zip(weights, means, strict=True)) / world
        assert ddp == pytest.approx(loss[batch].mean(), rel=1e-12)
        if step == 0:  # contrast: plain DDP averaging of rank means is off for 5 + 4
            assert sum(means) / world != pytest.approx(loss[batch].mean(), rel=1e-6)
    assert parts[1][2] == ([18], 0.0)  # no sample left: a stand-in with weight 0


def test_dist_env_reads_torchrun_variables():
    assert dist_env({}).world_size == 1 and not dist_env({}).distributed
    env = dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.is_main) == (3, 4, 1, False)
    with pytest.raises(ConfigError, match="RANK=4, WORLD_SIZE=4"):
        dist_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_dask_client_defaults_and_errors(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    with dask_client() as c:
        assert c is None  # nothing asked: dask's local scheduler
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        with dask_client(workers=0):
            pass
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="both a scheduler"):
        with dask_client(workers=2):
            pass


# ---------------------------------------------------------------------------------------
# stores on a cluster
# ---------------------------------------------------------------------------------------
def test_store_built_on_cluster_equals_local_byte_for_byte(client, local_tiny, tmp_path):
    path = build_store(_tiny(tmp_path / "tiny.zarr"), scheduler=client)
    assert not partial_path(path).exists()
    for split in SPLITS:
        a, b = split_arrays(local_tiny, split), split_arrays(path, split)
        for name in a:
            x, y = np.asarray(a[name][:]), np.asarray(b[name][:])
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), f"{split}/{name} differs"
        assert float(np.abs(np.asarray(b["hr"][:])).min()) > 0  # every chunk was written
    assert store_info(path)["normalisation"] == store_info(local_tiny)["normalisation"]
    # and the re-run is a no-op that does not need the cluster
    assert build_store(_tiny(path), scheduler="tcp://127.0.0.1:1") == path


def test_store_on_cluster_with_bad_source_raises_and_leaves_nothing(client, tmp_path):
    """Workers read a netCDF source themselves; a chunk with NaN stops the build."""
    ds = synthetic_tcw(6, resolution=2.0, region=(-40, 40, 0, 358), seed=5)
    ds["tcw"][3, 4:36, :] = np.nan  # every 16-row patch of hour 3 meets it
    src = tmp_path / "nan.nc"
    ds.to_netcdf(src)
    r = load_recipe(
        {
            "source": str(src),
            "factor": 4,
            "patch": 16,
            "splits": {"train": {"start": "2020-01-01", "end": "2020-01-01T06:00", "samples": 8}},
            "chunks": 2,
            "output": str(tmp_path / "nan.zarr"),
        }
    )
    with pytest.raises(DataValueError, match=r"split 'train': \d+ NaN/inf values"):
        build_store(r, scheduler=client)
    assert not r.output.exists() and not partial_path(r.output).exists()


# ---------------------------------------------------------------------------------------
# inference on a cluster
# ---------------------------------------------------------------------------------------
def _coarse() -> xr.Dataset:
    return synthetic_tcw(2, resolution=4.0, seed=3).chunk({"time": 1, "lat": 16, "lon": 30})


def test_lazy_downscale_on_cluster_equals_local(client):
    lazy = _coarse()["tcw"].climdown.downscale(factor=4, constraint="softmax", model="bicubic")
    assert lazy.chunks is not None  # nothing computed yet
    local = lazy.compute(scheduler="threads")
    remote = lazy.compute(scheduler=client)
    assert remote.shape == (2, 180, 360)
    assert remote.values.tobytes() == local.values.tobytes()


def test_downscale_file_on_cluster_equals_local(client, tmp_path):
    src = tmp_path / "lr.nc"
    _coarse().to_netcdf(src)
    kw = {
        "factor": 4,
        "constraint": "softmax",
        "model": "bicubic",
        "max_chunk": 15,
    }  # uniform chunks (see report)
    a = downscale_file(src, tmp_path / "local.zarr", scheduler="synchronous", **kw)
    b = downscale_file(src, tmp_path / "cluster.zarr", scheduler=client, **kw)
    with xr.open_zarr(a, consolidated=False) as x, xr.open_zarr(b, consolidated=False) as y:
        assert y["tcw"].values.tobytes() == x["tcw"].values.tobytes()


# ---------------------------------------------------------------------------------------
# DDP training
# ---------------------------------------------------------------------------------------
TRAIN_KW = {
    "model": "cnn",
    "constraint": "none",
    "epochs": 1,
    "batch_size": 9,  # 32 samples: batches 9, 9, 9, 5 -> ranks get 5/4, 5/4, 5/4, 3/2
    "model_options": {"width": 8, "blocks": 1},
    "seed": 0,
    "progress": False,
}

SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
from climdown.train import train
res = train(sys.argv[1], out=sys.argv[2], **json.loads(sys.argv[3]))
with open(os.path.join(sys.argv[2], "rank%s.json" % os.environ["RANK"]), "w") as fh:
    json.dump([res["steps"], res["epochs"], res["best_epoch"]], fh)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_two_processes_match_one_process(local_tiny, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        str(script),
        str(local_tiny),
        str(tmp_path / "ddp"),
        json.dumps(TRAIN_KW),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):  # both ranks took the 4 global steps and know the best epoch
        assert json.loads((tmp_path / "ddp" / f"rank{rank}.json").read_text()) == [4, 1, 1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(local_tiny, out=tmp_path / "one", **TRAIN_KW)
    finally:
        torch.set_num_threads(threads)
    assert single["steps"] == 4

    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=f"weight {k}")
    # rank 0's log holds the global train loss (every rank's samples), as one process's does
    (ra,) = (json.loads(ln) for ln in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines())
    (rb,) = (json.loads(ln) for ln in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines())
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
    assert rb["val_rmse"] == pytest.approx(ra["val_rmse"], rel=1e-5)
    # contrast: the 4 steps moved the weights far beyond the tolerance
    train(local_tiny, out=tmp_path / "init", max_steps=0, **TRAIN_KW)
    init = torch.load(tmp_path / "init" / "last.pt", weights_only=True)["state_dict"]
    assert max(float((init[k] - a[k]).abs().max()) for k in a) > 1e-3
