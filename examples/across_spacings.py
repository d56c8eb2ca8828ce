"""One model across grid spacings, or one per spacing regime? The evidence behind the defaults.

The packaged defaults (docs/models.md) are one CNN per factor, constraint and spacing regime:
``rhine`` (0.25 deg truth, LR 1 deg at 4x) and ``global`` (1.5 deg truth, LR 6 deg at 4x). The
alternative is one model trained across spacings. This script trains both designs at 4x with
softmax, with the build's settings (:mod:`climdown.study.build_pretrained`: fast CNN, width 32,
residual to bicubic, flips and quarter turns, early stopping on the area-weighted validation
RMSE), and scores every model on both held-out sets:

* ``global`` and ``rhine``: one model per regime, each on its own store (the shipped design);
* ``global + rhine``: the train patches of both stores pooled
  (:func:`climdown.data.store.concat_stores`);
* ``global + 3 deg``: the global store plus scale augmentation, the same day coarsened to
  3 deg and cut into 12 deg -> 3 deg pairs (structures of twice the size, at the same factor);
* ``global + rhine + 3 deg``: all three.

Pooled models are chosen on the first store's validation part (the global longitudes
192-276E). Held out: the global longitudes 276-360E and the Rhine hours 20-23 UTC, which no
model trains on or is chosen by. Scores: area-weighted RMSE (kg m-2) over the held-out patches,
mean and range over the seeds, beside bicubic and pycnophylactic.

Run::

    python examples/across_spacings.py --out example-out           # 3 seeds, 120 epochs max
    python examples/across_spacings.py --quick --out DIR           # 1 seed, 1 epoch, 2 designs

It writes ``across_spacings.md`` (the table) to ``--out`` and keeps its stores and runs there.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import yaml

from climdown.checkpoint import load_checkpoint
from climdown.data.recipe import load_recipe
from climdown.data.sources import find_variable, open_sample
from climdown.data.store import build_store, concat_stores, store_info
from climdown.evaluate import evaluate_model, markdown_table
from climdown.grid import coarsen_dataarray
from climdown.nn.models import get_model
from climdown.study import read_recipe
from climdown.study.build_pretrained import BATCH, EPOCHS, OPTIONS, PATIENCE
from climdown.study.runner import run_row

FACTOR = 4
#: design -> the stores whose train patches it pools (the first one's val chooses the epoch)
DESIGNS = {
    "global": ["global"],
    "rhine": ["rhine"],
    "global + rhine": ["global", "rhine"],
    "global + 3 deg": ["global", "global3"],
    "global + rhine + 3 deg": ["global", "rhine", "global3"],
}
QUICK_DESIGNS = ["global", "global + rhine"]
#: (label, model, constraint) of the baselines in the table
BASELINES = [
    ("bicubic", "bicubic", "none"),
    ("bicubic + softmax", "bicubic", "softmax"),
    ("pycnophylactic", "pycnophylactic", "none"),
]


def global_3deg_store(work: Path) -> Path:
    """The global sample coarsened to 3 deg, cut into 12 -> 3 deg pairs (train: 0-192E)."""
    ds = open_sample("global")
    name = find_variable(ds)
    da = ds[name].isel(latitude=slice(0, 120))  # 90N-88.5S: 120 rows, as the recipes use
    coarse = coarsen_dataarray(da, 2).to_dataset(name=name)
    coarse.attrs.update(ds.attrs)
    src = work / "global-3deg.nc"
    coarse.to_netcdf(src)
    day = {"start": "2020-06-01", "end": "2020-06-02"}
    recipe = {
        "name": f"global-3deg-x{FACTOR}",
        "source": str(src),
        "variable": name,
        "region": {"lat_min": -90.0, "lat_max": 90.0, "lon_min": 0.0, "lon_max": 360.0},
        "factor": FACTOR,
        "patch": 32,
        "splits": {  # only train is pooled; val must exist in a store, and is never used
            "train": {
                **day,
                "region": {"lat_min": -90.0, "lat_max": 90.0, "lon_min": 0.0, "lon_max": 191.9},
            },
            "val": {
                **day,
                "region": {"lat_min": -90.0, "lat_max": 90.0, "lon_min": 192.0, "lon_max": 359.9},
            },
        },
        "sampling": {"mode": "stride", "stride": 4, "time_stride": 1},
        "normalisation": {"scale": "max"},
        "output": str(work / "stores" / f"global-3deg-x{FACTOR}.zarr"),
    }
    (work / "global-3deg.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return build_store(load_recipe(recipe))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="example-out", help="folder for the table and runs")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 2 designs")
    a = parser.parse_args()
    work = Path(a.out) / "across_spacings"
    stores = {
        key: build_store(load_recipe(read_recipe(f"era5-{key}-x{FACTOR}", stores=work / "stores")))
        for key in ("global", "rhine")
    }
    designs = QUICK_DESIGNS if a.quick else list(DESIGNS)
    if any("global3" in DESIGNS[d] for d in designs):
        stores["global3"] = global_3deg_store(work)
    epochs, seeds = (1, (0,)) if a.quick else (EPOCHS, (0, 1, 2))

    held_out = {"global": "global 276-360E", "rhine": "Rhine 20-23 UTC"}
    rows = []
    for label, model, constraint in BASELINES:
        net = get_model(model, FACTOR, constraint=constraint)
        rmse = {k: evaluate_model(net, stores[k], "test")["RMSE_area_weighted"] for k in held_out}
        rows.append([label, "–", "–", *(f"{rmse[k]:.4f}" for k in held_out)])
    for design in designs:
        parts = DESIGNS[design]
        if len(parts) == 1:
            store = stores[parts[0]]
        else:
            store = work / "stores" / ("pooled-" + "-".join(parts) + f"-x{FACTOR}.zarr")
            if not store.exists():
                concat_stores([stores[p] for p in parts], store)
        scores: dict[str, list[float]] = {k: [] for k in held_out}
        for seed in seeds:
            row = run_row(
                work / "runs" / f"{design.replace(' ', '')}-seed{seed}",
                {"design": design, "seed": seed},
                store,
                "cnn",
                "softmax",
                epochs=epochs,
                batch_size=BATCH,
                options=OPTIONS,
                seed=seed,
                augment=True,
                patience=PATIENCE,
                device="cpu",
                progress=False,
                resume=False,
            )
            net, _ = load_checkpoint(row["checkpoint"], device="cpu")
            for k in held_out:
                scores[k].append(evaluate_model(net, stores[k], "test")["RMSE_area_weighted"])
        rows.append(
            [
                f"cnn + softmax, trained on {design}",
                str(store_info(store)["samples"]["train"]),
                str(len(seeds)),
                *(_mean_range(scores[k]) for k in held_out),
            ]
        )
        print(rows[-1], flush=True)
    headers = ["model", "train patches", "seeds", *(f"{v} RMSE" for v in held_out.values())]
    table = markdown_table(headers, rows)
    path = Path(a.out) / "across_spacings.md"
    path.write_text(table + "\n")
    print(table)
    print(f"wrote {path}")


def _mean_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


if __name__ == "__main__":
    main()
