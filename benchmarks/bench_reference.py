"""Benchmark: climdown's reference layouts against the reference code's own models, side by side.

For the CNN, GAN generator, discriminator, ConvGRU and FlowConvGRU at the study's TCW4 shape
(64 channels, 4x, LR 32 x 32; the recurrent models on 3 frames, FlowConvGRU on its 2), times
one training step (forward, MSE backward, Adam step) and one ``no_grad`` forward of climdown's
``layout="reference"`` model and, when given, of the reference code's own class with the same
weights (checked equal on the output first), interleaved so both see the same machine load.

The reference code (RolnickLab/constrained-downscaling, ``models.py``) is not part of climdown:
pass the folder of a copy of it whose CUDA device strings are changed to CPU, as a module
``ref_models.py`` or ``models.py`` (``--reference-code DIR``). Without it only climdown is timed.
Writes the section "Reference layouts against the reference code" of docs/benchmarks.md::

    python benchmarks/bench_reference.py --reference-code /path/to/reference_copy
    python benchmarks/bench_reference.py --no-write
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _docs import write_section
from bench_models import machine

from climdown.nn.models import PatchDiscriminator, get_model
from climdown.nn.models.reference import ReferenceDiscriminator
from climdown.nn.models.weights import reference_keys

SECTION = "## Reference layouts against the reference code (CPU)"
START, END = "<!-- bench_reference:start -->", "<!-- bench_reference:end -->"
ROOT = Path(__file__).resolve().parents[1]

#: name -> (reference class, its kwargs, input shape, climdown options)
CASES: dict[str, tuple[str, dict[str, Any], tuple[int, ...], dict[str, Any]]] = {
    "cnn": ("ResNet", {"number_channels": 64}, (1, 1, 32, 32), {"blocks": 4}),
    "gan": ("ResNet", {"number_channels": 64, "noise": True}, (1, 1, 32, 32), {"blocks": 4}),
    "discriminator": ("Discriminator", {}, (1, 1, 128, 128), {}),
    "convgru": ("ConvGRUGeneratorDet", {}, (3, 1, 32, 32), {"blocks": 3}),
    "flowconvgru": ("TimeEndToEndModel", {}, (2, 1, 32, 32), {"blocks": 3}),
}


def _ours(name: str) -> torch.nn.Module:
    if name == "discriminator":
        return ReferenceDiscriminator()
    return get_model(name, 4, "none", layout="reference", width=64, **CASES[name][3])


def _theirs(module: Any, name: str, ours: torch.nn.Module) -> torch.nn.Module:
    cls, kwargs, _, _ = CASES[name]
    model = getattr(module, cls)(**kwargs)
    state = model.state_dict()
    mine = ours.state_dict() if name == "discriminator" else ours.backbone.state_dict()  # type: ignore[union-attr]
    mapped = reference_keys(state, name)
    model.load_state_dict({k: mine[mapped_k] for k, mapped_k in zip(state, mapped, strict=True)})
    return model


def _default(name: str) -> torch.nn.Module:
    """climdown's default (fast) layout of the same model, for the default-vs-reference table."""
    if name == "discriminator":
        return PatchDiscriminator()
    return get_model(name, 4, "none")


def _call(model: torch.nn.Module, name: str, x: torch.Tensor, z: torch.Tensor, key: str):
    if key == "default":
        if name == "flowconvgru":  # the fast FlowConvGRU takes the 3-frame sequence
            x = torch.cat((x, x[:, :1]), 1)
        return model(x)
    ours = key == "climdown"
    if name == "gan":
        return model(x, noise=z) if ours else model(x, z=z)
    if name == "discriminator" and ours:
        return torch.sigmoid(model(x))
    return model(x)


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, module: Any, batch: int, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    ours = _ours(name)
    x = torch.rand(batch, *CASES[name][2]) + 0.05
    z = torch.randn(batch, 100, 1, 1)
    models = {"climdown": ours}
    if module is not None:
        models["reference"] = _theirs(module, name, ours)
        with torch.no_grad():
            a = _call(ours.eval(), name, x, z, "climdown")
            b = _call(models["reference"].eval(), name, x, z, "reference")
        diff = float((a - b).abs().max() / b.abs().max())
        assert diff < 1e-4, f"{name}: climdown and reference outputs differ by {diff:.2e}"
    models["default"] = _default(name)
    row: dict[str, Any] = {
        "model": name,
        "params": sum(p.numel() for p in ours.parameters()),
        "default params": sum(p.numel() for p in models["default"].parameters()),
    }
    steps = {}
    for key, model in models.items():
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, opt=opt, key=key) -> None:
            opt.zero_grad(set_to_none=True)
            out = _call(model, name, x, z, key)
            out.square().mean().backward()
            opt.step()

        def forward(model=model, key=key) -> None:
            with torch.no_grad():
                _call(model, name, x, z, key)

        step()  # warm-up
        forward()
        steps[key] = (step, forward)
    for key in models:
        row[f"{key} step"] = []
        row[f"{key} fwd"] = []
    for _ in range(repeats):  # interleaved: both see the same load
        for key, (step, forward) in steps.items():
            row[f"{key} step"].append(_median(step, 1))
            row[f"{key} fwd"].append(_median(forward, 1))
    for key in list(row):
        if isinstance(row[key], list):
            row[key] = statistics.median(row[key])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-code", type=Path, help="folder with the reference models")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", nargs="*", default=list(CASES))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    module = None
    if args.reference_code is not None:
        sys.path.insert(0, str(args.reference_code))
        for candidate in ("ref_models", "models"):
            try:
                module = importlib.import_module(candidate)
                break
            except ModuleNotFoundError:
                continue
        if module is None:
            raise SystemExit(f"no ref_models.py or models.py in {args.reference_code}")
    info = machine()
    rows = []
    for name in args.only:
        row = bench(name, module, args.batch, args.repeats)
        rows.append(row)
        print({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    lines = [
        START,
        SECTION,
        "",
        f"Generated by `python benchmarks/bench_reference.py` on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC: batch {args.batch}, "
        f"median of {args.repeats} interleaved runs after a warm-up, 64 channels, 4x, TCW4 "
        "shape (LR 32 x 32; ConvGRU 3 frames, FlowConvGRU 2), a training step = forward, "
        "MSE backward, Adam step. The reference column is the reference code's own class "
        "(RolnickLab/constrained-downscaling `models.py`, device strings set to CPU, kept "
        "outside climdown) with the same weights; the outputs were checked equal first."
        + ("" if module is not None else " No reference code was given: climdown only."),
        "",
        "| " + " | ".join(f"{k}: {v}" for k, v in info.items()) + " |",
        "",
    ]
    if module is not None:
        lines += [
            "| model | parameters | climdown step (s) | reference step (s) | step ratio "
            "| climdown forward (s) | reference forward (s) | forward ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['climdown step']:.3f} | "
                f"{r['reference step']:.3f} | {r['climdown step'] / r['reference step']:.2f} | "
                f"{r['climdown fwd']:.3f} | {r['reference fwd']:.3f} | "
                f"{r['climdown fwd'] / r['reference fwd']:.2f} |"
            )
        lines += ["", "A ratio below 1 means climdown's reference layout is faster.", ""]
    else:
        lines += [
            "| model | parameters | climdown step (s) | climdown forward (s) |",
            "|---|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['climdown step']:.3f} | "
                f"{r['climdown fwd']:.3f} |"
            )
        lines.append("")
    lines += [
        "climdown's default layout of the same model, timed in the same runs (its GAN noise is "
        "per coarse pixel, its FlowConvGRU takes the 3-frame sequence):",
        "",
        "| model | default parameters | default step (s) | reference-layout step (s) "
        "| reference / default |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['default params']:,} | {r['default step']:.3f} | "
            f"{r['climdown step']:.3f} | {r['climdown step'] / r['default step']:.1f} |"
        )
    lines.append("")
    lines.append(END)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(text, START, END, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
