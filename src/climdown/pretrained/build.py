"""Train the packaged default models: ``python -m climdown.pretrained.build [--out DIR]``.

For factors 2, 4 and 8 and constraints ``softmax`` and ``none``: a CNN (fast layout, width 32,
residual to bicubic) trained 20 epochs on the real ERA5 Rhine store of
:func:`climdown.realdata.real_recipe` (0.25 deg hourly TCW, hours 0-15 train, 16-19 val),
scored on the held-out hours 20-23 against bicubic, and copied with its scores into this
package (``index.json``). Writing into the package needs a source checkout (editable install).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["build_defaults"]

FACTORS = (2, 4, 8)
CONSTRAINTS = ("softmax", "none")
OPTIONS = {"width": 32, "blocks": 4, "skip": "bicubic"}
EPOCHS = 20
BATCH = 16


def build_defaults(
    work: str | os.PathLike[str] = "pretrained-work",
    *,
    dest: str | os.PathLike[str] | None = None,
    epochs: int = EPOCHS,
    factors: tuple[int, ...] = FACTORS,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train, score and package the defaults; return the new index."""
    from climdown.checkpoint import load_checkpoint
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.nn.models import get_model
    from climdown.realdata import real_recipe
    from climdown.train import evaluate_model, train

    work = Path(work)
    dest = Path(dest) if dest is not None else Path(__file__).parent
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for factor in factors:
        store = build_store(load_recipe(real_recipe("rhine", factor, work / "stores")))
        bicubic = evaluate_model(get_model("bicubic", factor, "none"), store, "test")
        for constraint in CONSTRAINTS:
            t0 = time.perf_counter()
            summary = train(
                store,
                "cnn",
                constraint,
                epochs=epochs,
                batch_size=BATCH,
                device=device,
                out=work / f"x{factor}-{constraint}",
                model_options=dict(OPTIONS),
                progress=False,
                resume=False,
            )
            model, meta = load_checkpoint(summary["best"])
            scores = evaluate_model(model, store, "test")
            name = f"cnn-x{factor}-{constraint}.pt"
            shutil.copyfile(summary["best"], dest / name)
            rmse, ref = scores["RMSE_area_weighted"], bicubic["RMSE_area_weighted"]
            index[f"{factor}-{constraint}"] = {
                "file": name,
                "model": "cnn",
                "options": OPTIONS,
                "factor": factor,
                "constraint": constraint,
                "n_parameters": model.n_parameters,
                "training_data": "ERA5 total column water, Rhine 55-45.25N 0-9.75E, 0.25 deg, "
                "2020-01-01 00-15 UTC (packaged sample); val 16-19 UTC",
                "hr_spacing_deg": meta.get("hr_spacing_deg"),
                "epochs": epochs,
                "best_epoch": summary["best_epoch"],
                "test": "held-out hours 2020-01-01 20-23 UTC (never seen in training)",
                "rmse_area_weighted": rmse,
                "rmse_area_weighted_bicubic": ref,
                "change_vs_bicubic_percent": 100.0 * (rmse - ref) / ref,
                "neg_num": scores["neg_num"],
                "mass_violation_rel": scores["mass_violation_rel"],
                "train_seconds": time.perf_counter() - t0,
                "command": "python -m climdown.pretrained.build",
            }
            print(f"x{factor} {constraint}: RMSE {rmse:.4f} vs bicubic {ref:.4f} kg m-2")
            tmp = index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            os.replace(tmp, index_path)
    return index


def main() -> None:
    """Command-line entry: ``python -m climdown.pretrained.build``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="pretrained-work", help="folder for stores and runs")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--factors", type=int, nargs="*", default=list(FACTORS))
    args = p.parse_args()
    build_defaults(args.work, epochs=args.epochs, factors=tuple(args.factors))


if __name__ == "__main__":
    main()
