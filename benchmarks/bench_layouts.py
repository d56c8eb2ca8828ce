"""Fast vs reference CNN layout: training time and validation RMSE, at equal epochs and to equal accuracy.

Issue 4 asks that the default (``fast``) CNN layout be at least 10x faster than the
``reference`` layout *at equal or better validation RMSE*. This trains both with the same
constraint, seed and batch size and writes into ``docs/benchmarks.md`` the median epoch time,
the validation RMSE after every epoch, the best val RMSE and the test RMSE of each, and two
readings of the target: at equal epochs (epoch-time ratio, and is fast's val RMSE as good?)
and at equal accuracy (how much training time does fast need to reach the reference's best
val RMSE, against the time the reference took to get there?). The data are the TCW4 store
when ``--store`` names one (the study's setting), else a real ERA5 store of
the packaged recipe ``era5-<data>-x4`` of :mod:`climdown.study` (4x, 32x32 HR patches).

    python benchmarks/bench_layouts.py --store stores/tcw4.zarr --batch 64 --epochs 20 \
        --fast-epochs 60 [--constraint softmax] [--skip bicubic] [--work runs/layouts]

The reference layout takes about an hour for 20 TCW4 epochs on 2 CPU cores. With ``--work``
the runs are kept there and a finished (or interrupted) run is resumed, or extended to more
epochs, instead of retrained; delete a layout's folder after changing its code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from _docs import write_section

from climdown._machine import machine_info
from climdown.checkpoint import load_checkpoint
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, store_info
from climdown.evaluate import evaluate_model
from climdown.study import read_recipe
from climdown.train import train

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- bench_layouts:start -->", "<!-- bench_layouts:end -->"


def run(
    epochs: int,
    constraint: str,
    work: Path,
    data: str = "global",
    store: Path | None = None,
    batch: int = 16,
    skip: str | None = None,
    fast_epochs: int | None = None,
) -> list[dict]:
    """Train ``fast`` for ``fast_epochs`` (default ``epochs``) and ``reference`` for ``epochs``."""
    if store is None:
        store = build_store(load_recipe(read_recipe(f"era5-{data}-x4", stores=work / "stores")))
    rows = []
    for layout, n in (("fast", fast_epochs or epochs), ("reference", epochs)):
        out = work / f"{layout}-{constraint}-skip{skip or 'none'}-b{batch}"
        s = train(
            store,
            model="cnn",
            constraint=constraint,
            epochs=n,
            batch_size=batch,
            device="cpu",
            out=out,
            seed=0,
            resume=True,
            progress=False,
            model_options={"layout": layout, **({"skip": skip} if skip else {})},
        )
        log = [json.loads(line) for line in Path(s["log"]).read_text().splitlines()][:n]
        model, _ = load_checkpoint(s["best"])
        test = evaluate_model(model, store, "test")
        rows.append(
            {
                "layout": layout,
                "params": s["n_parameters"],
                "epoch_s": statistics.median(r["train_time_s"] for r in log),
                "val_rmse": s["best_val_rmse"],
                "best_epoch": s["best_epoch"],
                "test_rmse": test["RMSE_area_weighted"],
                "neg": test["neg_num"],
                "curve": [r["val_rmse"] for r in log],
            }
        )
        print(rows[-1], flush=True)
    return rows


_DATA = {
    "global": "real ERA5 TCWV 1.5 deg, 4x, 32x32 HR patches (575 train, 161 val, 161 test; "
    "spatial split)",
    "rhine": "real ERA5 TCW 0.25 deg Rhine, 4x, 32x32 HR patches (144 train, 36 val, 36 test; "
    "split by hour)",
}


def section(
    rows: list[dict], epochs: int, constraint: str, data: str = "global", batch: int = 16
) -> str:
    fast, ref = rows
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        START,
        "## CNN layouts: speed at equal validation RMSE (`benchmarks/bench_layouts.py`)",
        "",
        f"Machine: {machine_info()}; torch threads {torch.get_num_threads()}; load average at "
        f"the end {load}. Data: {_DATA.get(data, data)}, CNN + {constraint}, batch {batch}, "
        "Adam 1e-3, seed 0; `reference` trained "
        f"{len(ref['curve'])} epochs, `fast` {len(fast['curve'])}. Epoch time is the median "
        "training time per epoch (robust to the odd epoch slowed by other jobs); RMSE in "
        "kg m-2; the test RMSE is that of the checkpoint with the best val RMSE.",
        "",
        "| layout | parameters | epoch (s) | epochs | best val RMSE | test RMSE (area-wt) "
        "| negatives |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layout']} | {r['params']:,} | {r['epoch_s']:.2f} | {len(r['curve'])} "
            f"| {r['val_rmse']:.4f} (epoch {r['best_epoch']}) | {r['test_rmse']:.4f} "
            f"| {int(r['neg'])} |"
        )
    n = min(len(fast["curve"]), len(ref["curve"]))
    top = max(len(fast["curve"]), len(ref["curve"]))
    marks = sorted({e for e in (1, 2, 3, 5, 10, 15, 20, 30, 40, n, top) if e <= top})
    lines += [
        "",
        "Validation RMSE after each epoch:",
        "",
        "| epoch | " + " | ".join(str(e) for e in marks) + " |",
        "|---|" + "---:|" * len(marks),
    ]
    for r in rows:
        c = r["curve"]
        cells = " | ".join(f"{c[e - 1]:.4f}" if e <= len(c) else "" for e in marks)
        lines.append(f"| {r['layout']} | {cells} |")

    speed = ref["epoch_s"] / fast["epoch_s"]
    f_eq, r_eq = min(fast["curve"][:n]), min(ref["curve"][:n])
    ahead = sum(f <= r for f, r in zip(fast["curve"][:n], ref["curve"][:n], strict=True))
    eq_verdict = "met" if speed >= 10 and f_eq <= r_eq else "NOT met"
    # time to accuracy: the first fast epoch at or below the reference's best val RMSE
    goal, ref_epochs = ref["val_rmse"], ref["best_epoch"]
    hit = next((i + 1 for i, v in enumerate(fast["curve"]) if v <= goal), None)
    lines += [
        "",
        f"- **Equal epochs ({n})**: `fast` trains **{speed:.1f}x** faster per epoch; best val "
        f"RMSE within {n} epochs fast {f_eq:.4f} vs reference {r_eq:.4f} (fast at or below "
        f"reference after {ahead} of {n} epochs): >= 10x at equal or better val RMSE "
        f"**{eq_verdict}**.",
    ]
    if hit is None:
        lines.append(
            f"- **Equal accuracy**: `fast` did not reach the reference's best val RMSE {goal:.4f} "
            f"within {len(fast['curve'])} epochs: **NOT met** (train it longer with "
            "`--fast-epochs`)."
        )
    else:
        t_fast, t_ref = hit * fast["epoch_s"], ref_epochs * ref["epoch_s"]
        verdict = "met" if t_ref / t_fast >= 10 else "NOT met"
        lines.append(
            f"- **Equal accuracy**: `fast` reaches the reference's best val RMSE ({goal:.4f}, "
            f"epoch {ref_epochs}, {t_ref / 60:.1f} min of training) after {hit} epochs "
            f"({t_fast / 60:.1f} min): **{t_ref / t_fast:.1f}x** less training time to equal "
            f"or better val RMSE, >= 10x **{verdict}**."
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument(
        "--fast-epochs",
        type=int,
        default=None,
        help="train the fast layout this long (default --epochs) to find when it reaches the "
        "reference's best val RMSE",
    )
    p.add_argument("--constraint", default="softmax")
    p.add_argument("--data", choices=sorted(_DATA), default="global")
    p.add_argument("--store", default=None, help="use this store instead (e.g. a TCW4 build)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--skip", default=None, help="e.g. bicubic: both layouts learn a correction")
    p.add_argument("--work", default=None, help="keep the runs here and resume them on re-run")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    store = None if a.store is None else Path(a.store)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        rows = run(a.epochs, a.constraint, work, a.data, store, a.batch, a.skip, a.fast_epochs)
    if store is None:
        label = a.data
    else:
        counts = store_info(store)["samples"]
        label = f"store {store.name} (" + " / ".join(f"{n} {k}" for k, n in counts.items()) + ")"
    text = section(rows, a.epochs, a.constraint, label, a.batch)
    print(text)
    if a.no_write:
        return
    write_section(text, START, END, DOCS)


if __name__ == "__main__":
    sys.exit(main())
