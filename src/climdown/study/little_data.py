"""What the trainer's little-data options buy: ``python -m climdown.study.little_data``.

On a packaged real ERA5 store (default: the global 1.5 deg day at 4x, ``era5-global-x4``),
a CNN + softmax (the packaged defaults' architecture) is trained with and without
augmentation, keeping every epoch. Each kept epoch is scored on the held-out split, so one
table shows, for each seed:

* **augmentation**: held-out RMSE of the checkpoint each run picks, with and without it;
* **selection**: the epoch picked by the area-weighted validation RMSE and by the per-cell
  one, and their held-out RMSE;
* **early stopping**: where ``patience`` would have stopped, and the held-out RMSE of the
  checkpoint it keeps, against training all epochs.

Only validation scores choose; the held-out scores are what the choice then gives.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from climdown.evaluate import markdown_table
from climdown.study import read_recipe
from climdown.study.runner import (
    check_json,
    check_replaceable,
    write_markdown,
    write_text_atomic,
)

__all__ = ["little_data", "format_rows"]

OPTIONS = {"width": 32, "blocks": 4, "skip": "bicubic"}
#: Key of the JSON written beside ``--out`` (``X.md`` -> ``X.json``): ``{ROWS_KEY: rows}``.
ROWS_KEY = "climdown_little_data_rows"
log = logging.getLogger("climdown")


def little_data(
    work: str | Path = "little-data-work",
    *,
    recipe: str = "era5-global-x4",
    epochs: int = 60,
    seeds: Sequence[int] = (0, 1, 2),
    patience: int = 20,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Train, keep every epoch, score each on test; one row per seed and augmentation."""
    from climdown.checkpoint import load_checkpoint
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.evaluate import evaluate_model
    from climdown.nn.models import get_model
    from climdown.train import train

    work = Path(work)
    loaded = load_recipe(read_recipe(recipe, stores=work / "stores"))
    store = build_store(loaded)
    rmse = "RMSE_area_weighted"
    factor = int(loaded.factor)
    baselines = {
        name: evaluate_model(get_model(model, factor, constraint), store, "test")[rmse]
        for name, model, constraint in (
            ("bicubic", "bicubic", "none"),
            ("bicubic + softmax", "bicubic", "softmax"),
            ("pycnophylactic", "pycnophylactic", "none"),
        )
    }
    rows = []
    for augment in (False, True):
        for seed in seeds:
            out = work / f"{recipe}-aug{int(augment)}-seed{seed}"
            train(
                store,
                model="cnn",
                constraint="softmax",
                epochs=epochs,
                batch_size=16,
                seed=seed,
                augment=augment,
                keep_epochs=True,
                model_options=OPTIONS,
                out=out,
                device=device,
                progress=False,
                resume=False,
            )
            records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            test = {}
            for r in records:
                net, _ = load_checkpoint(out / f"epoch-{r['epoch']:03d}.pt")
                test[r["epoch"]] = evaluate_model(net, store, "test", device=device)[rmse]
                (out / f"epoch-{r['epoch']:03d}.pt").unlink()  # scored: the space back
            by_area = min(records, key=lambda r: r["val_rmse_area"])["epoch"]
            by_cell = min(records, key=lambda r: r["val_rmse"])["epoch"]
            stop = _stopped(records, patience)
            kept = min(records[:stop], key=lambda r: r["val_rmse_area"])["epoch"]
            rows.append(
                {
                    "recipe": recipe,
                    "augment": augment,
                    "seed": seed,
                    "epochs": epochs,
                    "pick_area": by_area,
                    "test_area": test[by_area],
                    "pick_cell": by_cell,
                    "test_cell": test[by_cell],
                    "stop_epoch": stop,
                    "test_early": test[kept],
                    "best_test_any_epoch": min(test.values()),
                    "baselines": baselines,
                }
            )
            log.info(json.dumps(rows[-1]))
    return rows


def _stopped(records: list[dict[str, Any]], patience: int) -> int:
    """The epoch at which ``patience`` epochs without a better area-weighted score end a run."""
    best, best_epoch = float("inf"), 0
    for r in records:
        if r["val_rmse_area"] < best:
            best, best_epoch = r["val_rmse_area"], r["epoch"]
        elif r["epoch"] - best_epoch >= patience:
            return int(r["epoch"])
    return int(records[-1]["epoch"])


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: one line per augmentation setting, means over the seeds."""
    lines = []
    for augment in (False, True):
        sel = [r for r in rows if r["augment"] == augment]
        if not sel:
            continue

        def mean(key: str, sel: list[dict[str, Any]] = sel) -> str:
            return f"{statistics.fmean(r[key] for r in sel):.4f}"

        lines.append(
            (
                "yes" if augment else "no",
                len(sel),
                mean("test_area"),
                mean("test_cell"),
                mean("test_early"),
                f"{statistics.fmean(r['stop_epoch'] for r in sel):.0f}",
                mean("best_test_any_epoch"),
            )
        )
    base = rows[0]["baselines"]
    head = ", ".join(f"{k} {v:.4f}" for k, v in base.items())
    table = markdown_table(
        (
            "augment",
            "seeds",
            "picked by area-weighted val RMSE",
            "picked by per-cell val RMSE",
            "early stop (patience 20)",
            "stop epoch",
            "best epoch in hindsight",
        ),
        lines,
    )
    return f"Held-out area-weighted RMSE (kg m-2), mean over seeds; baselines: {head}.\n\n{table}"


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m climdown.study.little_data``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--work", default="little-data-work")
    p.add_argument("--recipe", default="era5-global-x4")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--out", default=None, help="Markdown file for the table")
    a = p.parse_args(argv)
    if not log.handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.out:  # refuse a page or a JSON beside it that is not ours before training, not after
        check_replaceable(a.out)
        check_json(Path(a.out).with_suffix(".json"), ROWS_KEY, "a little-data table")
    rows = little_data(a.work, recipe=a.recipe, epochs=a.epochs, seeds=a.seeds)
    text = format_rows(rows)
    print(text)
    if a.out:
        write_markdown(a.out, text + "\n")
        doc = {ROWS_KEY: rows}
        write_text_atomic(Path(a.out).with_suffix(".json"), json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
