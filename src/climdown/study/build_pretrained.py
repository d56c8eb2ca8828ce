"""Train the packaged default models: ``python -m climdown.study.build_pretrained --out DIR``.

For factors 2, 4 and 8 and constraints ``softmax`` and ``none``: a CNN (fast layout, width 32,
residual to bicubic) trained 20 epochs on the real ERA5 Rhine store of the packaged recipe
``era5-rhine-x<factor>`` (0.25 deg hourly TCW, hours 0-15 train, 16-19 val), scored on the
held-out hours 20-23 beside bicubic. Each model is copied to ``DIR/cnn-x<f>-<constraint>.pt``
with its scores in ``DIR/index.json`` (merged into an index already there) and the table of
docs/models.md in ``DIR/models.md``.

``DIR`` defaults to ``pretrained-work/models``, never the installed package: a maintainer
refreshing the shipped files passes ``--out src/climdown/pretrained`` in a source checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from climdown._version import __version__
from climdown.evaluate import markdown_table
from climdown.study import read_recipe
from climdown.study.runner import run_row, write_markdown

__all__ = ["build_defaults", "format_index", "FACTORS", "CONSTRAINTS", "OPTIONS"]

FACTORS = (2, 4, 8)
CONSTRAINTS = ("softmax", "none")
OPTIONS = {"width": 32, "blocks": 4, "skip": "bicubic"}
EPOCHS = 20
BATCH = 16
WORK = "pretrained-work"


def build_defaults(
    work: str | os.PathLike[str] = WORK,
    *,
    out: str | os.PathLike[str] | None = None,
    epochs: int = EPOCHS,
    factors: Sequence[int] = FACTORS,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train, score and copy the defaults to ``out``; return the index written there.

    Parameters
    ----------
    work : path
        Folder for the stores and training runs; finished runs are reused on a re-run with
        the same settings (:func:`climdown.study.runner.run_row`).
    out : path, optional
        Folder for the checkpoints, ``index.json`` and ``models.md``; default
        ``work/models``. Pass the package folder (``src/climdown/pretrained``) to refresh the
        shipped models.
    epochs : int
        Training epochs of each model.
    factors : sequence of int
        The factors to (re)build; entries of other factors already in the index are kept.
    device : str
        Torch device (``cpu`` by default: the shipped models were trained on CPU).
    """
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store

    work = Path(work)
    out = Path(out) if out is not None else work / "models"
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    command = f"python -m climdown.study.build_pretrained --epochs {epochs} --out {out}"
    for factor in factors:
        recipe = f"era5-rhine-x{factor}"
        store = build_store(load_recipe(read_recipe(recipe, stores=work / "stores")))
        head = {"factor": factor}
        bicubic = run_row(
            work / f"x{factor}-bicubic",
            {**head, "model": "bicubic", "constraint": "none"},
            store,
            "bicubic",
            "none",
            device=device,
        )
        ref = bicubic["scores"]["RMSE_area_weighted"]
        for constraint in CONSTRAINTS:
            row = run_row(
                work / f"x{factor}-{constraint}",
                {**head, "model": "cnn", "constraint": constraint},
                store,
                "cnn",
                constraint,
                epochs=epochs,
                batch_size=BATCH,
                options=OPTIONS,
                device=device,
                progress=False,
                resume=False,
            )
            name = f"cnn-x{factor}-{constraint}.pt"
            shutil.copyfile(row["checkpoint"], out / name)
            scores = row["scores"]
            rmse = scores["RMSE_area_weighted"]
            index[f"{factor}-{constraint}"] = {
                "file": name,
                "model": "cnn",
                "options": OPTIONS,
                "factor": factor,
                "constraint": constraint,
                "n_parameters": row["n_parameters"],
                "recipe": recipe,
                "training_data": "ERA5 total column water, Rhine 55-45.25N 0-9.75E, 0.25 deg, "
                "2020-01-01 00-15 UTC (packaged sample); val 16-19 UTC",
                "epochs": epochs,
                "best_epoch": row["best_epoch"],
                "test": "held-out hours 2020-01-01 20-23 UTC (never seen in training)",
                "rmse_area_weighted": rmse,
                "rmse_area_weighted_bicubic": ref,
                "change_vs_bicubic_percent": 100.0 * (rmse - ref) / ref,
                "neg_num": scores["neg_num"],
                "mass_violation_rel": scores["mass_violation_rel"],
                "train_seconds": row["seconds"],
                "climdown_version": __version__,
                "command": command,
            }
            print(f"x{factor} {constraint}: RMSE {rmse:.4f} vs bicubic {ref:.4f} kg m-2")
            tmp = index_path.with_name(f".{index_path.name}.tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            os.replace(tmp, index_path)
    write_markdown(out / "models.md", format_index(index) + "\n")
    return index


def format_index(index: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of docs/models.md from an index: one row per factor and constraint."""
    entries = sorted(
        index.values(), key=lambda e: (e["factor"], CONSTRAINTS.index(e["constraint"]))
    )
    headers = (
        "factor",
        "constraint",
        "parameters",
        "RMSE (kg m-2)",
        "bicubic RMSE",
        "vs bicubic",
        "negatives",
        "mass violation (rel.)",
        "best epoch",
    )
    return markdown_table(
        headers,
        (
            (
                f"{e['factor']}x",
                e["constraint"],
                f"{e['n_parameters']:,}",
                f"{e['rmse_area_weighted']:.4f}",
                f"{e['rmse_area_weighted_bicubic']:.4f}",
                f"{e['change_vs_bicubic_percent']:+.1f}%",
                int(e["neg_num"]),
                f"{e['mass_violation_rel']:.1e}",
                e["best_epoch"],
            )
            for e in entries
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m climdown.study.build_pretrained``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--work", default=WORK, help="folder for stores and runs")
    p.add_argument(
        "--out",
        default=None,
        help="folder for the models, index.json and models.md (default WORK/models; "
        "src/climdown/pretrained refreshes the shipped ones in a source checkout)",
    )
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--factors", type=int, nargs="*", default=list(FACTORS))
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    build_defaults(a.work, out=a.out, epochs=a.epochs, factors=a.factors, device=a.device)


if __name__ == "__main__":
    main()
