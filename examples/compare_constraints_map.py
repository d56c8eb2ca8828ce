"""Compare constraint layers on a real global field: mass budget, negatives, RMSE and error maps.

The packaged real ERA5 total column water vapour field (global, 1.5 deg, daily mean
2020-06-01; the south pole row dropped: 120 x 240 cells) is the truth. It is coarsened 4x by
area-weighted averaging on the sphere (``da.climdown.coarsen(4)``, 6 deg) and downscaled back
with bicubic interpolation followed by each constraint layer: ``none``, ``softmax``, ``add`` and
``mult``. Baselines have no weights, so any constraint combines with them and nothing needs
training. For each constraint the script prints

* the mass budget from ``lr.climdown.conservation(hr)``: total mass of the coarse input and of
  the downscaled field in kg, their relative difference and the largest coarse-cell violation
  in kg m-2 (area-weighted, on the sphere);
* the number of negative values;
* the area-weighted RMSE against the truth, in kg m-2;

and draws one map of the error (downscaled - truth) per constraint on a shared colour scale,
plus LR | downscaled | truth | error for softmax. The grid is global, so tiles wrap around in
longitude.

Run::

    python examples/compare_constraints_map.py --out example-out

``--quick`` draws the maps at a lower resolution (the computation takes seconds either way).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import climdown  # noqa: F401  (registers the .climdown accessor)
from climdown import metrics, plot
from climdown.data.sources import open_sample
from climdown.grid import Grid

CONSTRAINTS = ("none", "softmax", "add", "mult")


def error_maps(errors: dict, rows: dict, path: Path, dpi: int) -> Path:
    """One PlateCarree map per constraint of ``downscaled - truth``, one symmetric scale.

    The scale ends at the 99th percentile of |error| over all maps, so the typical errors
    show (the few larger ones saturate).
    """
    import cartopy.crs as ccrs
    from matplotlib.figure import Figure

    lim = float(np.nanpercentile(np.abs(np.stack([e.values for e in errors.values()])), 99))
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    for i, (name, err) in enumerate(errors.items()):
        r = rows[name]
        title = (
            f"bicubic + {name}: RMSE {r['rmse']:.3f} kg m-2, mass {r['rel']:+.1e}, "
            f"{r['neg']} negative"
        )
        ax = fig.add_subplot(2, 2, i + 1, projection=ccrs.PlateCarree(central_longitude=180))
        plot.field(err, ax=ax, cmap="RdBu_r", vmin=-lim, vmax=lim, title=title)
        ax.title.set_fontsize(10)
    fig.suptitle("error of 4x downscaling (downscaled - truth), ERA5 TCWV 2020-06-01")
    fig.savefig(path, dpi=dpi)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="example-out", help="folder for the maps")
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="low-resolution maps")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    ds = open_sample("global")
    truth = ds["tcwv"].isel(time=0, latitude=slice(0, 120)).load()  # 90N..88.5S: 4 x 30 rows
    lr = truth.climdown.coarsen(a.factor)
    area = Grid.from_xarray(truth).area  # m^2 of each fine cell
    print(f"truth {dict(truth.sizes)} -> LR {dict(lr.sizes)}, {truth.attrs.get('units')}")

    rows, preds, errors = {}, {}, {}
    for name in CONSTRAINTS:
        hr = lr.climdown.downscale(factor=a.factor, constraint=name, model="bicubic")
        budget = lr.climdown.conservation(hr)
        preds[name] = hr
        errors[name] = (hr - truth).assign_attrs(units="kg m-2", long_name="error")
        rows[name] = {
            "mass_lr": float(budget["mass_lr"]),
            "mass_hr": float(budget["mass_hr"]),
            "rel": float(budget["mass_rel_diff"]),
            "block": float(budget["max_block_violation"]),
            "neg": int(budget["neg_count"]),
            "rmse": metrics.rmse(hr.values, truth.values, area=area),
        }
    print(
        f"{'constraint':<10} {'mass LR (kg)':>13} {'mass HR (kg)':>13} {'rel. diff':>10} "
        f"{'worst cell':>11} {'negatives':>9} {'RMSE area-wt':>13}"
    )
    for name, r in rows.items():
        print(
            f"{name:<10} {r['mass_lr']:>13.6e} {r['mass_hr']:>13.6e} {r['rel']:>10.1e} "
            f"{r['block']:>11.1e} {r['neg']:>9d} {r['rmse']:>13.4f}"
        )
    print("(worst cell: largest |area-weighted mean of a fine block - its coarse value|, kg m-2)")

    dpi = 60 if a.quick else 100
    maps = out / "constraint_errors.png"
    error_maps(errors, rows, maps, dpi)
    softmax = out / "compare_softmax.png"
    fig = plot.compare(lr, preds["softmax"], truth, title="bicubic + softmax, 6 deg -> 1.5 deg")
    fig.savefig(softmax, dpi=dpi)
    print(f"wrote {maps} and {softmax}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return {"rows": rows, "maps": [maps, softmax]}


if __name__ == "__main__":
    main()
