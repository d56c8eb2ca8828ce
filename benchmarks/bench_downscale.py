"""Benchmark: downscale one global 0.25 deg field (720 x 1440) 4x through the accessor, on CPU.

Usage::

    python benchmarks/bench_downscale.py            # all cases, writes docs/benchmarks.md
    python benchmarks/bench_downscale.py --no-write # print only

Each case runs in a fresh subprocess (so peak RSS is that case's alone) with
``torch.set_num_threads(--threads)``; wall time covers ``da.climdown.downscale(...)`` only (the
model is built and warmed up on a small field first, as a user's second call would be). Peak
memory is the process's maximum resident set size (``resource.getrusage``), which includes
Python, numpy, xarray and torch themselves (see the "import only" row).

The model is the packaged default for factor 4 + softmax when one exists; otherwise the
study's CNN (fast layout, width 64, 4 residual blocks) with random weights, which does the same
arithmetic as a trained one. The section between the markers in docs/benchmarks.md is
rewritten; the rest of the file is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_downscale:start -->", "<!-- bench_downscale:end -->"


def _model(kind: str):
    """(model argument, description) for the accessor."""
    if kind == "bicubic":
        return "bicubic", "bicubic baseline + softmax (0 parameters)"
    from climdown.pretrained import available, default_checkpoint

    if kind == "default" and (4, "softmax") in available():
        path = default_checkpoint(4, "softmax")
        return str(path), f"packaged default {path.name}"
    from climdown.nn.models import get_model

    width = 32 if kind == "cnn32" else 64
    model = get_model("cnn", 4, "softmax", scale=20.0, width=width)
    return model, (
        f"CNN fast, width {width}, 4 blocks, random weights ({model.n_parameters:,} parameters)"
    )


def _network_alone(model, da) -> float:
    """Seconds for one untiled forward pass over the whole field (the arithmetic floor)."""
    import torch

    from climdown.grid import Grid

    if isinstance(model, str):
        from climdown.inference import Downscaler

        model = Downscaler(model, factor=4, constraint="softmax", device="cpu").model
    area = torch.from_numpy(Grid(da.latitude.values, da.longitude.values).refine(4).area)
    x = torch.from_numpy(da.values)[:, None, None]
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x, area=area)
        return time.perf_counter() - t0


def run_case(case: dict) -> dict:
    """Run one case in this process; returns timings and peak RSS."""
    import resource

    import numpy as np
    import torch
    import xarray as xr

    import climdown.accessor  # noqa: F401
    from climdown.testing import random_field

    torch.set_num_threads(case["threads"])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if case["model"] == "none":
        return {"peak_mb": rss0, "wall_s": 0.0, "model": "import only"}
    model, desc = _model(case["model"])
    nlat, nlon = case["shape"]
    dlat, dlon = case["spacing"]
    lat = 90.0 - dlat * (np.arange(nlat) + 0.5)
    lon = dlon * np.arange(nlon)
    da = xr.DataArray(
        random_field((1, nlat, nlon), seed=0, low=0.0, high=70.0),
        dims=("time", "latitude", "longitude"),
        coords={"time": [np.datetime64("2020-01-01")], "latitude": lat, "longitude": lon},
        attrs={"units": "kg m**-2", "long_name": "Total column water"},
        name="tcw",
    )
    opts = {"factor": 4, "constraint": "softmax", "model": model, "device": "cpu"}
    opts.update(tile=case["tile"], halo=case["halo"], batch_size=case["batch"])
    da.isel(latitude=slice(0, 40), longitude=slice(0, 40)).climdown.downscale(**opts)  # warm-up
    walls = []
    for _ in range(case.get("repeat", 2)):  # the fastest run is the least disturbed by load
        hr = None  # free the previous output so it does not count twice in the peak
        t0 = time.perf_counter()
        hr = da.climdown.downscale(**opts)
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert hr.shape == (1, 4 * nlat, 4 * nlon) and bool(np.isfinite(hr.values).all())
    out = {"wall_s": wall, "peak_mb": peak, "model": desc, "out_mb": hr.nbytes / 2**20}
    if case.get("alone"):  # after the peak was read: this pass holds the whole field at once
        out["alone_s"] = _network_alone(model, da)
    return out


CASES = [
    {"name": "import only", "model": "none", "shape": (0, 0), "spacing": (0, 0)},
    {"name": "720 x 1440 (0.25 deg global)", "model": "default", "shape": (720, 1440),
     "spacing": (0.25, 0.25), "alone": True},
    {"name": "1440 x 1440 (2x the cells)", "model": "default", "shape": (1440, 1440),
     "spacing": (0.125, 0.125)},
    {"name": "720 x 1440", "model": "cnn32", "shape": (720, 1440), "spacing": (0.25, 0.25),
     "alone": True},
    {"name": "1440 x 1440 (2x the cells)", "model": "cnn32", "shape": (1440, 1440),
     "spacing": (0.125, 0.125)},
    {"name": "720 x 1440", "model": "bicubic", "shape": (720, 1440), "spacing": (0.25, 0.25),
     "alone": True},
]  # fmt: skip


def _load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _write(rows: list[dict], args: argparse.Namespace) -> None:
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    lines = [
        START,
        "## Downscaling a global field (`benchmarks/bench_downscale.py`)",
        "",
        "One global 0.25 deg field (720 x 1440 LR cells) downscaled 4x (to 2880 x 5760) "
        "through `da.climdown.downscale(factor=4, constraint='softmax', ...)` on numpy input "
        f"(eager, tiled), tile {args.tile}, halo {args.halo}, batch {args.batch}, "
        f"{args.threads} torch threads, CPU: {cpu} ({os.cpu_count()} logical cores visible). "
        "Wall time excludes model construction; peak memory is the whole process's maximum "
        "RSS. Wall time is the faster of 2 runs. Command: `python benchmarks/bench_downscale.py`.",
        "",
        f"The machine is shared with other work: load average (1/5/15 min) {args.load0} at "
        f"start and {_load()} at the end, on 2 cores, so times carry noise of a factor ~2; "
        "the 'network alone' column is one untiled forward pass of the same model over the "
        "whole field, timed in the same process (the arithmetic floor tiling is compared to).",
        "",
        "| case | model | wall (s) | network alone, untiled (s) | peak RSS (MB) | output (MB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        alone = f"{r['alone_s']:.2f}" if "alone_s" in r else "-"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['wall_s']:.2f} | {alone} | "
            f"{r['peak_mb']:.0f} | {r.get('out_mb', 0):.0f} |"
        )
    lines += ["", args.note.strip(), END] if args.note.strip() else ["", END]
    write_section("\n".join(lines), START, END, DOC)
    print(f"wrote {DOC}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    from climdown.inference import DownscaleOptions  # the library's defaults

    p.add_argument("--tile", type=int, default=DownscaleOptions.tile)
    p.add_argument("--halo", type=int, default=DownscaleOptions.halo)
    p.add_argument("--batch", type=int, default=DownscaleOptions.batch_size)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--note", default="", help="free text appended to the docs section")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case, JSON
    args = p.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    args.load0 = _load()
    rows = []
    for case in CASES:
        case = {**case, "threads": args.threads, "tile": args.tile, "halo": args.halo,
                "batch": args.batch}  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--case", json.dumps(case)],
            check=True,
            capture_output=True,
            text=True,
        )
        row = {"name": case["name"], **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(row, flush=True)
    if not args.no_write:
        _write(rows, args)


if __name__ == "__main__":
    main()
