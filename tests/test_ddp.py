"""torch DDP: the torchrun environment, batch sharding, and two processes training like one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from climdown.data.recipe import load_recipe
from climdown.data.store import build_store
from climdown.ddp import dist_env, rank_batches
from climdown.errors import ConfigError
from climdown.train import train

RECIPES = Path(str(resources.files("climdown.study") / "recipes"))


def _tiny(out: Path, **over: object):
    d = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    d.update(output=str(out), **over)
    return load_recipe(d)


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


# ---------------------------------------------------------------------------------------
# two processes
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


@pytest.mark.integration
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
