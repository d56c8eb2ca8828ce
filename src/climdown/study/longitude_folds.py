"""The global regime cross-validated by longitude sector: ``python -m climdown.study.longitude_folds``.

The packaged global defaults (:mod:`climdown.study.build_pretrained`) are scored on one
held-out sector of the one global day on hand, 276-360E (the Andes, the Amazon, the Atlantic).
One sector is one draw: this module asks how the same recipe scores on *every* part of the
globe. The day is cut into five 72-degree sectors; fold ``k`` holds out sector ``k``, chooses
the epoch, the seed and the fallback on the sector west of it, and trains on the other three
(216 degrees, across the 0 meridian where needed). Training, seeds, the choice and the fallback
rule are the build's (:func:`climdown.study.build_pretrained.choose`'s rule: a trained model is
used only if it beats the best baseline of its kind on validation, with blockiness in range).

Per fold the table gives the held-out area-weighted RMSE (kg m-2, over the held-out patches)
of bicubic, bicubic + the constraint, pycnophylactic, the trained seeds and what the rule
uses; the last row pools the folds (the root of the mean of the folds' mean squared errors:
every fold holds out the same number of equal-area patches). Only validation scores choose.

Run::

    python -m climdown.study.longitude_folds --out longitude_folds.md     # 4x softmax, 3 seeds
    python -m climdown.study.longitude_folds --factor 8 --constraint none --out f8.md
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from climdown.evaluate import markdown_table
from climdown.study import read_recipe
from climdown.study.runner import check_replaceable, write_markdown

__all__ = ["FOLDS", "SECTOR", "fold_recipe", "longitude_folds", "format_folds"]

#: number of folds, and the width of the sector each holds out (degrees); 72 = 6 x 12, so
#: every boundary lies on the 12-degree grid that 8x patches of the 1.5 deg day need
FOLDS = 5
SECTOR = 360.0 / FOLDS
RMSE = "RMSE_area_weighted"
log = logging.getLogger("climdown")


def fold_recipe(factor: int, k: int, stores: str | Path) -> dict[str, Any]:
    """The global regime's recipe (``era5-global-x<factor>``) with fold ``k``'s splits.

    Test: sector ``k`` (``72 k`` to ``72 (k + 1)`` E); validation: sector ``k - 1``; train: the
    other three sectors in one box, written across the 0 meridian (negative ``lon_min``) when
    it wraps.
    """
    if not 0 <= k < FOLDS:
        raise ValueError(f"fold {k} is not one of 0..{FOLDS - 1}")
    raw = read_recipe(f"era5-global-x{factor}")
    raw["name"] = f"era5-global-x{factor}-fold{k}"
    raw["output"] = str(Path(stores) / f"{raw['name']}.zarr")
    lat = {key: raw["region"][key] for key in ("lat_min", "lat_max")}
    day = {key: raw["splits"]["train"][key] for key in ("start", "end")}

    def box(west: float, east: float) -> dict[str, Any]:
        # east edges stop a tenth of a degree short, as the packaged recipes' do
        return {**day, "region": {**lat, "lon_min": west, "lon_max": east - 0.1}}

    west = ((k + 1) * SECTOR) % 360.0
    east = west + 3 * SECTOR
    if east > 360.0:
        west, east = west - 360.0, east - 360.0
    val_west = ((k - 1) % FOLDS) * SECTOR
    raw["splits"] = {
        "train": box(west, east),
        "val": box(val_west, val_west + SECTOR),
        "test": box(k * SECTOR, (k + 1) * SECTOR),
    }
    return raw


def longitude_folds(
    work: str | Path = "longitude-folds-work",
    *,
    factor: int = 4,
    constraint: str = "softmax",
    folds: Sequence[int] = tuple(range(FOLDS)),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int | None = None,
    loss: str = "mse",
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Train and score each fold; one row per fold (scores in kg m-2).

    ``loss`` is the training loss (:attr:`climdown.train.TrainConfig.loss`; the build's is
    ``"mse"``). Runs are cached in ``work/runs`` (:func:`climdown.study.runner.run_row`): a
    re-run with the same settings reads them back.
    """
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.study.build_pretrained import EPOCHS, _baselines, _decide, _seeds

    work = Path(work)
    epochs = EPOCHS if epochs is None else int(epochs)
    rows = []
    for k in folds:
        recipe = fold_recipe(factor, k, work / "stores")
        store = build_store(load_recipe(recipe))
        prefix = work / "runs" / (f"x{factor}-fold{k}" + ("" if loss == "mse" else f"-{loss}"))
        head = {
            "fold": k,
            "factor": factor,
            "splits": {s: v["region"] for s, v in recipe["splits"].items()},
        }
        base = _baselines(prefix, head, store, device)
        training = None if loss == "mse" else {"loss": loss}
        trained = _seeds(prefix, head, store, constraint, epochs, device, seeds, training)
        best, bar, why = _decide(trained, base, constraint)
        used = base[bar] if why is not None else best
        row = {
            "fold": k,
            "test_lon": recipe["splits"]["test"]["region"],
            "val_lon": recipe["splits"]["val"]["region"],
            "baselines": {key: r["scores"][RMSE] for key, r in base.items()},
            "seeds": [r["scores"][RMSE] for r in trained],
            "chosen_seed": seeds[[r is best for r in trained].index(True)],
            "uses": "cnn" if why is None else f"{_label(bar)} (fallback)",
            "why": why,
            "used": used["scores"][RMSE],
            "used_blockiness": used["scores"].get("blockiness"),
            "seconds": sum(float(r["seconds"]) for r in trained),
        }
        log.info(
            "fold %d (%s): uses %s, %.4f kg m-2; bicubic %.4f",
            k,
            _sector(row["test_lon"]),
            row["uses"],
            row["used"],
            row["baselines"]["bicubic+none"],
        )
        rows.append(row)
    return rows


def _label(key: str) -> str:
    """``"bicubic+softmax"`` -> ``"bicubic + softmax"``, ``"pycnophylactic+none"`` -> its model."""
    return key.replace("+none", "").replace("+", " + ")


def _sector(region: Mapping[str, float]) -> str:
    return f"{region['lon_min']:g}-{region['lon_max'] + 0.1:g}E"


def _pooled(values: Sequence[float]) -> float:
    """Root of the mean of squared RMSEs: the RMSE over all folds' equal-sized test sets."""
    return math.sqrt(statistics.fmean(v * v for v in values))


def format_folds(rows: Sequence[Mapping[str, Any]], constraint: str = "softmax") -> str:
    """The Markdown table of :func:`longitude_folds`' rows, with the pooled row last."""
    keys = ["bicubic+none", f"bicubic+{constraint}", "pycnophylactic+none"]
    keys = list(dict.fromkeys(keys))  # bicubic + none once when the constraint is none
    labels = [_label(k) for k in keys]

    def vs(x: float, ref: float) -> str:
        return f"{100.0 * (x / ref - 1.0):+.1f}%"

    lines = []
    for r in rows:
        seeds = r["seeds"]
        lines.append(
            [
                str(r["fold"]),
                _sector(r["test_lon"]),
                _sector(r["val_lon"]),
                *(f"{r['baselines'][k]:.4f}" for k in keys),
                f"{statistics.fmean(seeds):.4f} ({min(seeds):.4f}-{max(seeds):.4f})",
                r["uses"],
                f"{r['used']:.4f}",
                vs(r["used"], r["baselines"]["bicubic+none"]),
                vs(r["used"], min(r["baselines"][k] for k in keys[1:]))
                if constraint != "none"
                else "–",
            ]
        )
    if len(rows) > 1:
        pooled = {k: _pooled([r["baselines"][k] for r in rows]) for k in keys}
        used = _pooled([r["used"] for r in rows])
        seeds = _pooled([statistics.fmean(r["seeds"]) for r in rows])
        lines.append(
            [
                "all",
                "pooled",
                "",
                *(f"{pooled[k]:.4f}" for k in keys),
                f"{seeds:.4f}",
                "as above",
                f"{used:.4f}",
                vs(used, pooled["bicubic+none"]),
                vs(used, min(pooled[k] for k in keys[1:])) if constraint != "none" else "–",
            ]
        )
    headers = [
        "fold",
        "held out",
        "validation",
        *labels,
        f"cnn + {constraint}, seeds (mean, range)",
        "uses",
        "RMSE of what it uses",
        "vs bicubic",
        "vs best conserving",
    ]
    return markdown_table(headers, lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m climdown.study.longitude_folds``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--work", default="longitude-folds-work", help="folder for stores and runs")
    p.add_argument("--factor", type=int, default=4, choices=(2, 4, 8))
    p.add_argument("--constraint", default="softmax", choices=("softmax", "none"))
    p.add_argument("--folds", type=int, nargs="*", default=list(range(FOLDS)), choices=range(FOLDS))
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the build's")
    p.add_argument("--loss", default="mse", choices=("mse", "mse_area"), help="training loss")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="Markdown file for the table")
    a = p.parse_args(argv)
    if not log.handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.out:
        check_replaceable(a.out)
    rows = longitude_folds(
        a.work,
        factor=a.factor,
        constraint=a.constraint,
        folds=a.folds,
        seeds=a.seeds,
        epochs=a.epochs,
        loss=a.loss,
        device=a.device,
    )
    text = format_folds(rows, a.constraint)
    print(text)
    if a.out:
        write_markdown(a.out, text + "\n")


if __name__ == "__main__":
    main()
