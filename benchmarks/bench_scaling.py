"""Benchmark: scaling out on dask.distributed (store build, downscale) and torch DDP (training).

Measures, on this machine, with 1 and 2 workers/processes:

* **store build**: ``build_store(recipe, scheduler=client)`` of a TCW4-like recipe (factor 4,
  128 x 128 HR patches) from a global 0.25 deg hourly netCDF source (float32, 720 x 1440),
  as MB/s of source read (every chunk task reads each source hour it samples once) and
  samples/s; the local (no cluster) build is timed for reference, and all builds are checked
  to hold the same bytes;
* **downscale**: ``downscale_file(src, dst.zarr, scheduler=client)`` of a global 1 deg field
  (180 x 360, 8 hours) 4x with the packaged default model (CNN + softmax), as fine cells/s;
* **training**: ``torchrun --nproc-per-node N`` of ``climdown.train.train`` (default CNN +
  softmax, gloo, global batch 32) on the store built above, as samples/s of the second epoch.

Every worker / rank runs one thread (dask's nanny sets ``OMP_NUM_THREADS=1``; torchrun is
given it), so 1 -> 2 is one core -> two cores. Cluster start-up and process launch are not
timed. The load average is recorded next to each number because the machine may be shared.

Writes the section between ``<!-- bench_scaling:start -->`` and ``<!-- bench_scaling:end -->``
of docs/benchmarks.md (appended when missing). Run from the repository root::

    python benchmarks/bench_scaling.py              # about 3 minutes on 2 cores
    python benchmarks/bench_scaling.py --no-write --hours 12 --steps 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _docs import write_section

from climdown._machine import cpu_model
from climdown._machine import load_average as load
from climdown.cluster import dask_client
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, split_arrays
from climdown.data.synthetic import synthetic_tcw
from climdown.fileio import downscale_file

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_scaling:start -->", "<!-- bench_scaling:end -->"
MB = 1e6

TRAIN_SCRIPT = """
import json, os, sys, torch
torch.set_num_threads(1)
from climdown.train import train
train(sys.argv[1], out=sys.argv[2], **json.loads(sys.argv[3]))
"""


def _cpu_now() -> float:
    """CPU seconds (user + system) of the calling process, all threads."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_seconds(client) -> float:
    """CPU seconds used so far by all dask worker processes (or this process without one)."""
    if client is None:
        return _cpu_now()
    return float(sum(client.run(_cpu_now).values()))


def source_bytes_read(store: Path, itemsize: int, cells: int, chunks: int) -> int:
    """Bytes of source the build reads: per chunk task, each distinct source hour it samples."""
    import zarr

    total = 0
    root = zarr.open_group(store, mode="r")
    for split in root.attrs["samples"]:
        times = np.asarray(split_arrays(store, split)["time"][:])
        for lo in range(0, times.shape[0], chunks):
            total += np.unique(times[lo : lo + chunks]).size * cells * itemsize
    return total


def bench_build(work: Path, hours: int) -> tuple[list[dict], dict]:
    """Build the same recipe locally, on 1 worker and on 2 workers; rates and source facts."""
    src = work / "era5_like_0.25deg.nc"
    if not src.exists():
        ds = synthetic_tcw(hours, resolution=0.25, seed=1)
        ds["tcw"] = ds["tcw"].astype(np.float32)
        ds.to_netcdf(src)
    cut = str(np.datetime64("2020-01-01T00:00") + np.timedelta64(hours * 3 // 4, "h"))
    end = str(np.datetime64("2020-01-01T00:00") + np.timedelta64(hours, "h"))
    recipe = {
        "name": "scaling",
        "source": str(src),
        "variable": "tcw",
        "factor": 4,
        "patch": 128,
        "splits": {
            "train": {"start": "2020-01-01", "end": cut, "samples": 16 * hours},
            "val": {"start": cut, "end": end, "samples": 64},
        },
        "chunks": 32,
    }
    rows, stores = [], {}
    for workers in (None, 1, 2):
        tag = "local" if workers is None else f"w{workers}"
        r = load_recipe({**recipe, "output": str(work / f"store_{tag}.zarr")})
        with dask_client(workers=workers) as client:
            before, c0 = load(), cpu_seconds(client)
            t0 = time.perf_counter()
            path = build_store(r, overwrite=True, scheduler=client)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(client) - c0
        stores[tag] = path
        cells = 720 * 1440
        read = source_bytes_read(path, 4, cells, r.chunks)
        n = sum(s.samples for s in r.splits)
        rows.append(
            {
                "workers": workers,
                "wall_s": wall,
                "read_mb": read / MB,
                "mb_s": read / MB / wall,
                "cpu_s": cpu,
                "mb_cpu_s": read / MB / cpu,
                "samples_s": n / wall,
                "samples": n,
                "load_before": before,
                "load_after": load(),
            }
        )
        print(f"build {tag}: {wall:.1f} s, {read / MB:.0f} MB read, {read / MB / wall:.1f} MB/s")
    ref = split_arrays(stores["local"], "train")
    same = all(
        np.asarray(ref[k][:]).tobytes() == np.asarray(split_arrays(p, "train")[k][:]).tobytes()
        for p in stores.values()
        for k in ("hr", "lr")
    )
    facts = {"source": src, "hours": hours, "same_bytes": same, "path": stores["w2"]}
    return rows, facts


def bench_downscale(work: Path, hours: int) -> list[dict]:
    """``downscale_file`` of a global 1 deg field 4x with the packaged default model."""
    src = work / "lr_1deg.nc"
    if not src.exists():
        synthetic_tcw(hours, resolution=1.0, seed=2).to_netcdf(src)
    fine = hours * 720 * 1440
    rows = []
    for workers in (1, 2):
        with dask_client(workers=workers) as client:
            dst = work / f"down_w{workers}.zarr"
            kw = {"factor": 4, "constraint": "softmax", "device": "cpu", "overwrite": True}
            downscale_file(src, dst, scheduler=client, **kw)  # warm-up: model load on workers
            before, c0 = load(), cpu_seconds(client)
            t0 = time.perf_counter()
            downscale_file(src, dst, scheduler=client, **kw)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(client) - c0
        rows.append(
            {
                "workers": workers,
                "wall_s": wall,
                "cells_s": fine / wall,
                "cpu_s": cpu,
                "cells_cpu_s": fine / cpu,
                "fine_cells": fine,
                "load_before": before,
                "load_after": load(),
            }
        )
        print(f"downscale {workers} worker(s): {wall:.1f} s, {fine / wall / 1e6:.2f} M cells/s")
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_train(work: Path, store: Path, steps: int) -> list[dict]:
    """torchrun with 1 and 2 CPU processes (gloo): samples/s of epoch 2 (epoch 1 warms up)."""
    script = work / "train_rank.py"
    script.write_text(TRAIN_SCRIPT)
    kw = {
        "model": "cnn",
        "constraint": "softmax",
        "epochs": 2,
        "batch_size": 32,
        "max_steps": steps,
        "progress": False,
        "resume": False,
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []
    for nproc in (1, 2):
        out = work / f"train_n{nproc}"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(nproc),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            str(script),
            str(store),
            str(out),
            json.dumps(kw),
        ]
        before = load()
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1800)
        recs = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
        t = recs[-1]["train_time_s"]
        rows.append(
            {
                "procs": nproc,
                "train_s": t,
                "epoch1_s": recs[0]["train_time_s"],
                "samples": steps * 32,
                "samples_s": steps * 32 / t,
                "load_before": before,
                "load_after": load(),
            }
        )
        print(f"train {nproc} process(es): {t:.1f} s for {steps * 32} samples")
    return rows


def section(info: dict, build: list[dict], facts: dict, down: list[dict], tr: list[dict]) -> str:
    """The Markdown section, between its markers."""

    def speedup(rows: list[dict], key: str) -> str:
        return f"{rows[-1][key] / rows[-2][key]:.2f}x"

    lines = [
        START,
        "## Scaling out: dask workers and DDP processes (`benchmarks/bench_scaling.py`)",
        "",
        f"Written by `python benchmarks/bench_scaling.py` on {info['date']}. One thread per dask "
        "worker and per torch process, so 1 -> 2 means one core -> two cores; cluster start-up "
        "and process launch are not timed. The machine is shared with other work: the load "
        "average (1/5/15 min) before and after each measurement is in its row (a load above the "
        "2 cores means the workers waited for CPU, so these rates are lower bounds).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {info['cpu']} |",
        f"| cores (os.cpu_count) | {info['cores']} |",
        f"| memory | {info['mem_gb']:.0f} GB |",
        f"| python / torch / dask | {info['python']} / {info['torch']} / {info['dask']} |",
        "| GPU | none: bf16 and NCCL on GPU were not measured |",
        "",
        f"### Store build ({facts['hours']} hourly global 0.25 deg fields, float32 netCDF; "
        "TCW4-like recipe: factor 4, 128 x 128 HR patches, chunks of 32 samples)",
        "",
        "MB read counts, per chunk task, each distinct source hour it samples (a 720 x 1440 "
        "float32 field, 4.15 MB), which is what the task reads from the file. 'worker CPU s' is "
        "the CPU time the workers (or, locally, this process) spent, so MB per CPU-second is "
        "the per-core rate with the waiting for a busy machine taken out. All builds hold "
        f"the same bytes in their arrays: **{'yes' if facts['same_bytes'] else 'NO'}**.",
        "",
        "| workers | samples | wall s | source read MB | MB/s | samples/s | worker CPU s | "
        "MB per CPU-s | load before ; after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in build:
        who = "local (2 threads, no cluster)" if r["workers"] is None else str(r["workers"])
        lines.append(
            f"| {who} | {r['samples']} | {r['wall_s']:.1f} | {r['read_mb']:.0f} | "
            f"{r['mb_s']:.1f} | {r['samples_s']:.1f} | {r['cpu_s']:.1f} | {r['mb_cpu_s']:.1f} | "
            f"{r['load_before']} ; {r['load_after']} |"
        )
    lines += [
        "",
        f"2 workers / 1 worker: **{speedup(build, 'mb_s')}**.",
        "",
        "### Downscale (global 1 deg -> 0.25 deg, 4x, packaged default CNN + softmax, "
        "`downscale_file` to zarr, one chunk per hour)",
        "",
        "| workers | hours | fine cells | wall s | fine cells/s | worker CPU s | "
        "fine cells per CPU-s | load before ; after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in down:
        lines.append(
            f"| {r['workers']} | {r['fine_cells'] // (720 * 1440)} | {r['fine_cells']:,} | "
            f"{r['wall_s']:.1f} | {r['cells_s'] / 1e6:.2f} M | {r['cpu_s']:.1f} | "
            f"{r['cells_cpu_s'] / 1e6:.2f} M | {r['load_before']} ; {r['load_after']} |"
        )
    lines += [
        "",
        f"2 workers / 1 worker: **{speedup(down, 'cells_s')}** (the model is loaded once per "
        "worker in an untimed warm-up run).",
        "",
        "### Training (torchrun, gloo on CPU, default CNN width 64 + softmax, global batch 32)",
        "",
        "| processes | samples (epoch 2) | train s | samples/s | epoch 1 s (warm-up) | "
        "load before ; after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in tr:
        lines.append(
            f"| {r['procs']} | {r['samples']} | {r['train_s']:.1f} | {r['samples_s']:.1f} | "
            f"{r['epoch1_s']:.1f} | {r['load_before']} ; {r['load_after']} |"
        )
    lines += [
        "",
        f"2 processes / 1 process: **{speedup(tr, 'samples_s')}**. bf16 autocast and NCCL on "
        "a GPU were not measured (no GPU on this machine).",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="keep sources and stores here (default: a temp dir)")
    ap.add_argument("--hours", type=int, default=32, help="hours of 0.25 deg source (default 32)")
    ap.add_argument("--down-hours", type=int, default=8, help="hours to downscale (default 8)")
    ap.add_argument("--steps", type=int, default=6, help="training steps per epoch (default 6)")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args()

    import dask
    from distributed.system import MEMORY_LIMIT

    info = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "mem_gb": MEMORY_LIMIT / 1e9,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dask": dask.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        build, facts = bench_build(work, args.hours)
        down = bench_downscale(work, args.down_hours)
        tr = bench_train(work, facts["path"], args.steps)
        text = section(info, build, facts, down, tr)
    print(text)
    if not args.no_write:
        write_section(text, START, END, DOC)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
