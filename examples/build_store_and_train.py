"""Build a training store from a recipe, train a CNN + softmax, evaluate it, plot its curves.

What it shows, with the library calls the ``climdown build / train / evaluate`` commands make:

1. a recipe (YAML or dict) -> :func:`climdown.data.recipe.load_recipe` (strict: unknown keys
   are errors) -> :func:`climdown.data.store.build_store` (a zarr store of LR/HR patch pairs,
   written atomically; re-running is a no-op). Default: the packaged recipe ``tiny``
   (generated TCW-like fields, 1 deg, 4x) with its output redirected under ``--out``;
   ``--recipe rhine`` uses the real ERA5 Rhine sample (the packaged recipe ``era5-rhine-x4``:
   hours 0-15 train, 16-19 validation, 20-23 test);
2. :func:`climdown.train.train`: a CNN with the softmax constraint layer, a few epochs,
   validation RMSE and mass violation per epoch, best and last checkpoints;
3. :func:`climdown.evaluate.evaluate_checkpoint`: scores on the test split beside the
   bicubic and nearest baselines (RMSE, MAE, SSIM, negatives, mass violation...), and
   bicubic + softmax (the CNN's starting point: it learns a correction to bicubic);
4. :func:`climdown.plot.training_curves`: the training log as a PNG.

Run::

    python examples/build_store_and_train.py --out example-out
    python examples/build_store_and_train.py --recipe rhine --epochs 10 --out example-out

``--quick`` trains two steps of a narrow CNN (a few seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from climdown import plot
from climdown.data.recipe import load_recipe
from climdown.data.store import build_store, store_info
from climdown.evaluate import evaluate_checkpoint, evaluate_model
from climdown.nn.models import get_model
from climdown.study import read_recipe
from climdown.train import train

REAL_SETS = ("rhine", "global")


def recipe_for(name: str, stores: Path) -> dict:
    """The recipe ``name`` (a YAML path, a packaged recipe name, or ``rhine``/``global`` for the
    real ERA5 samples at 4x) with its store under ``stores``, not in the current directory."""
    if name in REAL_SETS:
        name = f"era5-{name}-x4"
    return read_recipe(name, stores=stores)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="example-out", help="folder for store, run and plots")
    p.add_argument(
        "--recipe",
        default="tiny",
        help=f"recipe YAML or packaged recipe name, or one of {', '.join(REAL_SETS)} (real "
        "ERA5); default tiny",
    )
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=32, help="CNN feature channels")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="two steps of a narrow CNN")
    a = p.parse_args(argv)
    out = Path(a.out)
    t0 = time.perf_counter()

    # 1. recipe -> store ----------------------------------------------------------------
    recipe = load_recipe(recipe_for(a.recipe, out / "stores"))
    print(f"recipe {recipe.name!r}: factor {recipe.factor}, HR patch {recipe.patch}")
    store = build_store(recipe, progress=False)
    info = store_info(store)
    print(f"store: {store}")
    print(json.dumps({k: info[k] for k in ("factor", "variable", "splits") if k in info}))

    # 2. train --------------------------------------------------------------------------
    summary = train(
        store,
        model="cnn",
        constraint="softmax",
        epochs=1 if a.quick else a.epochs,
        batch_size=a.batch_size,
        device=a.device,
        out=out / "run",
        resume=False,
        max_steps=2 if a.quick else None,
        progress=False,
        model_options={"width": 8 if a.quick else a.width, "skip": "bicubic"},
    )
    records = [json.loads(line) for line in Path(summary["log"]).read_text().splitlines()]
    for r in records:
        print(
            f"epoch {r['epoch']:>2}: train loss {r['train_loss']:.4g}, val RMSE "
            f"{r['val_rmse']:.4f} kg m-2, val mass violation {r['val_mass_violation']:.1e} "
            f"kg m-2, negatives {r['val_neg']}"
        )
    print(
        f"best epoch {summary['best_epoch']} ({summary['n_parameters']:,} parameters, "
        f"{summary['steps']} steps on {summary['device']}): {summary['best']}"
    )

    # 3. evaluate on the test split beside the baselines ---------------------------------
    table = evaluate_checkpoint(
        summary["best"], store, split="test", out=out / "eval", device=a.device, members=1
    )
    print(table)
    # the CNN learns a correction to bicubic (gate 0 at the start): bicubic + softmax is the bar
    start = evaluate_model(get_model("bicubic", recipe.factor, "softmax"), store, "test")
    with (out / "eval" / "metrics.csv").open() as fh:
        trained = float(next(csv.DictReader(fh))["RMSE"])  # first row: the checkpoint
    print(
        f"test RMSE: trained CNN + softmax {trained:.4g} kg m-2, bicubic + softmax (its "
        f"untrained start) {start['RMSE']:.4g} kg m-2 ({100 * (trained / start['RMSE'] - 1):+.1f}%)"
    )

    # 4. training curves ----------------------------------------------------------------
    keep = ("epoch", "train_loss", "val_rmse", "val_rmse_area", "val_mass_violation", "val_neg")
    curves = out / "curves.png"
    plot.training_curves([{k: r[k] for k in keep if k in r} for r in records], path=curves)
    print(f"wrote {curves} and {out / 'eval' / 'metrics.md'}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return {"store": store, "summary": summary, "table": table, "curves": curves}


if __name__ == "__main__":
    main()
