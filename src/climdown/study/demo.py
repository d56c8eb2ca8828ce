"""``climdown demo``: the main job end to end on the packaged real ERA5 sample.

1. build a training store from the Rhine TCW sample (the packaged recipe ``era5-rhine-x4``:
   hours 0-15 train, 16-19 val, 20-23 test);
2. train a small CNN + softmax constraint briefly (residual to bicubic);
3. downscale a held-out hour through the ``.climdown`` accessor (and the packaged default
   model, when one exists);
4. print the mass budget in kg and the scores against bicubic;
5. write maps (LR | downscaled | truth | error), power spectra and the training curves.
"""

from __future__ import annotations

import os
import time
from typing import Any

from climdown import validate
from climdown.study import read_recipe
from climdown.study.runner import QUICK_STEPS, QUICK_WIDTH

__all__ = ["run_demo", "HELD_OUT_HOUR"]

#: The hour the demo downscales: in the test split, never seen in training.
HELD_OUT_HOUR = "2020-01-01T22:00"
_FACTOR = 4


def _say(step: int, text: str) -> None:
    print(f"[{step}/5] {text}", flush=True)


def run_demo(
    out: str | os.PathLike[str] = "demo-out", *, quick: bool = False, device: str = "auto"
) -> dict[str, Any]:
    """Run the demo; return the scores, the conservation report and the written paths.

    Parameters
    ----------
    out : path
        Folder for the store, the training run, the maps and ``downscaled.nc``.
    quick : bool
        Train two steps of a narrow CNN (seconds; the tests and CI) instead of up to 60 epochs.
    device : str
        Torch device or ``"auto"``.

    Returns
    -------
    dict
        ``scores`` (model name -> :func:`climdown.metrics.score_table`), ``conservation``
        (the mass budget, kg), ``paths`` (name -> written file) and the training ``summary``.
    """
    import xarray as xr

    import climdown.accessor  # noqa: F401  (registers ds.climdown)
    from climdown import metrics, plot
    from climdown.data.recipe import load_recipe
    from climdown.data.sources import open_sample
    from climdown.data.store import build_store
    from climdown.grid import Grid
    from climdown.pretrained import available
    from climdown.train import train
    from climdown.units import cf_global_attrs

    t_start = time.perf_counter()
    out = validate.output_folder(out, "out")
    factor = _FACTOR

    _say(1, "building a training store from the packaged ERA5 Rhine sample (real data)")
    recipe = read_recipe(f"era5-rhine-x{factor}", stores=out / "stores")
    store = build_store(load_recipe(recipe), progress=False)

    _say(
        2,
        "training a CNN + softmax constraint (residual to bicubic)" + (" [quick]" if quick else ""),
    )
    summary = train(
        store,
        model="cnn",
        constraint="softmax",
        epochs=1 if quick else 60,
        patience=None if quick else 20,
        augment=not quick,
        batch_size=16,
        max_steps=QUICK_STEPS if quick else None,
        model_options={"width": QUICK_WIDTH if quick else 32, "skip": "bicubic"},
        out=out / "run",
        device=device,
        progress=not quick,
    )

    _say(3, f"downscaling the held-out hour {HELD_OUT_HOUR} {factor}x through ds.climdown")
    sample = open_sample("rhine")
    truth = sample["tcw"].isel(latitude=slice(0, 40), longitude=slice(0, 40))  # the file's names
    truth = truth.sel(time=HELD_OUT_HOUR)
    truth = truth.load()
    lr = truth.climdown.coarsen(factor)
    preds = {
        "CNN + softmax (trained now)": lr.climdown.downscale(
            factor=factor, constraint="softmax", model=summary["best"], device=device
        ),
        "bicubic": lr.climdown.downscale(factor=factor, constraint="none", model="bicubic"),
        "bicubic + softmax": lr.climdown.downscale(
            factor=factor, constraint="softmax", model="bicubic"
        ),
        "pycnophylactic": lr.climdown.downscale(
            factor=factor, constraint="none", model="pycnophylactic"
        ),
    }
    if (factor, "softmax") in available():  # the packaged default for this input's spacing
        preds["default model (packaged)"] = lr.climdown.downscale(
            factor=factor, constraint="softmax", device=device
        )

    _say(4, "mass budget (kg) and scores against the held-out truth")
    hr = preds["CNN + softmax (trained now)"]
    report = lr.climdown.conservation(hr)
    print(
        f"    mass LR {float(report['mass_lr']):.6e} kg, HR {float(report['mass_hr']):.6e} kg, "
        f"relative difference {float(report['mass_rel_diff']):.1e}, worst block "
        f"{float(report['max_block_violation']):.1e} kg m-2, negatives {int(report['neg_count'])}"
    )
    area = Grid.from_xarray(truth).area
    rows = {
        name: metrics.score_table(pred.values, truth.values, lr=lr.values, area=area, factor=factor)
        for name, pred in preds.items()
    }
    print(
        f"    {'model':<30} {'RMSE area-wt':>13} {'MAE':>8} {'SSIM':>7} {'neg':>5} "
        f"{'mass rel':>9} {'blocky':>7}"
    )
    for name, s in rows.items():
        print(
            f"    {name:<30} {s['RMSE_area_weighted']:>13.4f} {s['MAE']:>8.4f} "
            f"{s['SSIM']:>7.4f} {int(s['neg_num']):>5} {s['mass_violation_rel']:>9.1e} "
            f"{s['blockiness']:>7.2f}"
        )

    _say(5, f"writing maps and spectra to {out}")
    paths = {
        "compare": out / "compare.png",
        "compare_bicubic": out / "compare_bicubic.png",
        "spectrum": out / "spectrum.png",
    }
    plot.compare(lr, hr, truth, path=paths["compare"], title="CNN + softmax, held-out hour")
    plot.compare(lr, preds["bicubic"], truth, path=paths["compare_bicubic"], title="bicubic")
    plot.spectrum({"truth": truth, **preds, "LR": lr}, path=paths["spectrum"])
    if summary.get("log"):
        paths["curves"] = out / "run" / "curves.png"
        plot.training_curves(summary["log"], path=paths["curves"])
    attrs = cf_global_attrs(
        sample.attrs,
        f"climdown demo: 'hr' is the held-out hour {HELD_OUT_HOUR} coarsened {factor}x and "
        "downscaled back by the CNN + softmax trained in the demo; 'truth' is that hour",
        title=f"ERA5 total column water over the Rhine, downscaled {factor}x by climdown (demo)",
    )
    xr.Dataset({"hr": hr, "truth": truth}, attrs=attrs).to_netcdf(out / "downscaled.nc")
    paths["netcdf"] = out / "downscaled.nc"
    for p in paths.values():
        print(f"    {p}")
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return {"scores": rows, "conservation": report, "paths": paths, "summary": summary}
