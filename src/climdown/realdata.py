"""Real-ERA5 evaluation: the packaged samples as training stores with held-out space or time.

Two data sets, both real ERA5 (``climdown.data.sources.open_sample``):

* ``global``: the global 1.5 deg daily TCWV field (one time). Split by longitude: train on
  0-192 E, choose checkpoints on 192-276 E, report on 276-360 E (the Americas and the
  Atlantic), all latitudes but the south pole row (120 rows = 8 x 15).
* ``rhine``: 24 hourly 0.25 deg TCW fields over the Rhine (40 x 40 cells after dropping one
  row and column). Split by time: hours 0-15 train, 16-19 val, 20-23 test.

Each store holds every HR patch position on a grid of step max(4, factor) inside its split.
Baselines (bicubic, and bicubic + softmax) need no training; CNNs are trained with
:func:`climdown.train.train`. Scores are area-weighted RMSE in kg m-2 on the test split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["real_recipe", "run_real_data", "format_real_table", "REAL_SETS"]

REAL_SETS = ("global", "rhine")


def _patch(name: str, factor: int) -> int:
    # 8x needs more than 4 LR cells of context; the Rhine crop and the global val/test regions
    # hold 40 and 56 cells across
    return 32 if factor < 8 else (48 if name == "global" else 40)


def real_recipe(name: str, factor: int, out: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe (as a dict for :func:`climdown.data.recipe.load_recipe`) of a real data set."""
    out = Path(out)
    common = {
        "factor": int(factor),
        "patch": _patch(name, factor),
        "frames": 1,
        # every patch position on a grid of step max(4, factor): overlapping training crops
        "sampling": {"mode": "stride", "stride": max(4, int(factor)), "time_stride": 1},
        "normalisation": {"scale": "max"},
        "chunks": 64,
    }
    if name == "global":
        day = {"start": "2020-06-01", "end": "2020-06-02"}
        lat = {"lat_min": -89.0, "lat_max": 90.0}
        return {
            "name": f"era5-global-x{factor}",
            "source": "sample:global",
            "variable": "tcwv",
            "region": {**lat, "lon_min": 0.0, "lon_max": 360.0},
            "splits": {
                # boundaries every 12 deg = 8 cells, so patches on the stride grid fit
                "train": {**day, "region": {**lat, "lon_min": 0.0, "lon_max": 191.9}},
                "val": {**day, "region": {**lat, "lon_min": 192.0, "lon_max": 275.9}},
                "test": {**day, "region": {**lat, "lon_min": 276.0, "lon_max": 359.9}},
            },
            "output": str(out / f"era5-global-x{factor}.zarr"),
            **common,
        }
    if name == "rhine":
        return {
            "name": f"era5-rhine-x{factor}",
            "source": "sample:rhine",
            "variable": "tcw",
            "region": {"lat_min": 45.1, "lat_max": 55.0, "lon_min": 0.0, "lon_max": 9.9},
            "splits": {
                "train": {"start": "2020-01-01T00:00", "end": "2020-01-01T16:00"},
                "val": {"start": "2020-01-01T16:00", "end": "2020-01-01T20:00"},
                "test": {"start": "2020-01-01T20:00", "end": "2020-01-02T00:00"},
            },
            "output": str(out / f"era5-rhine-x{factor}.zarr"),
            **common,
        }
    raise ValueError(f"unknown real data set {name!r}; choose one of {REAL_SETS}")


def run_real_data(
    config: dict[str, Any],
    *,
    out: str | os.PathLike[str],
    epochs: int = 20,
    quick: bool = False,
    device: str = "auto",
    progress: bool = True,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> list[dict[str, Any]]:
    """Score baselines and trained CNNs on the real-ERA5 stores; one row per set/factor/model.

    ``config`` is the ``real_data`` entry of the experiments file: ``factors`` (list) and
    ``models`` (list of ``{model, constraint, options}``), ``batch_size`` and ``epochs`` (read
    by the caller). ``quick`` keeps factor 4 only and trains two
    steps per epoch with a narrow CNN.
    """
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.experiments import cached_row, train_and_score

    out = Path(out)
    factors = [4] if quick else [int(f) for f in config.get("factors", [4])]
    models = config.get("models") or [{"model": "bicubic", "constraint": "none"}]
    # a few hundred patches: smaller batches give the optimiser enough steps in 20 epochs
    batch = int(config.get("batch_size", batch_size))
    rows: list[dict[str, Any]] = []
    for factor in factors:
        for name in REAL_SETS:
            store = build_store(
                load_recipe(real_recipe(name, factor, out / "stores")), progress=False
            )
            for spec in models:
                model, constraint = str(spec["model"]), str(spec["constraint"])
                options = dict(spec.get("options") or {})
                skip = options.get("skip")
                label = model if not skip else f"{model} (skip {skip})"
                run = (
                    out / "runs" / f"{name}-x{factor}-{model}{'-skip' if skip else ''}-{constraint}"
                )
                settings = {"epochs": epochs, "quick": quick, "options": options, "batch": batch}
                head = {"data": name, "factor": factor, "model": label, "constraint": constraint}
                rows.append(
                    cached_row(
                        run,
                        settings,
                        lambda run=run, head=head, m=model, c=constraint, o=options, st=store: {
                            **head,
                            **train_and_score(
                                st,
                                m,
                                c,
                                run,
                                epochs=epochs,
                                batch_size=batch,
                                lr=lr,
                                device=device,
                                quick=quick,
                                options=o,
                                progress=progress,
                            ),
                        },
                    )
                )
    return rows


_SET_LABEL = {
    "global": "ERA5 TCWV 1.5° global, test = 276-360E (held-out region)",
    "rhine": "ERA5 TCW 0.25° Rhine, test = hours 20-23 (held-out time)",
}


def format_real_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: area-weighted RMSE (kg m-2), gain over bicubic, negatives, mass."""
    lines = [
        "| data | factor | model | constraint | RMSE area-wt (kg m-2) | vs bicubic | MAE | "
        "SSIM | neg num | mass viol. (rel) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {
        (r["data"], r["factor"]): r["scores"]["RMSE_area_weighted"]
        for r in rows
        if r["model"] == "bicubic" and r["constraint"] == "none"
    }
    for r in rows:
        s = r["scores"]
        rmse = s["RMSE_area_weighted"]
        ref = base.get((r["data"], r["factor"]))
        gain = "–" if ref is None else f"{100.0 * (rmse - ref) / ref:+.1f}%"
        lines.append(
            f"| {_SET_LABEL[r['data']]} | {r['factor']}x | {r['model']} | {r['constraint']} | "
            f"{rmse:.4f} | {gain} | {s['MAE']:.4f} | {s['SSIM']:.4f} | {int(s['neg_num'])} | "
            f"{s['mass_violation_rel']:.1e} |"
        )
    return "\n".join(lines)
