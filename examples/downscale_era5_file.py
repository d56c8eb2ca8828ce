"""Downscale an ERA5 total column water file 4x with the ``.climdown`` accessor.

What it shows, on the packaged real ERA5 Rhine sample (24 hourly 0.25 deg TCW fields) or on any
ERA5 netCDF/zarr/GRIB file you pass:

1. open the file (ERA5 names, packed int16 and descending latitude are fine), crop it to a
   multiple of the factor (downscaling takes any size; the crop lets step 5 coarsen it);
2. ``ds.climdown.downscale(factor=4, constraint="softmax", model=...)``: the packaged default
   model when there is one for (4, "softmax"), else the parameter-free ``"bicubic"`` baseline
   with the softmax constraint (the script says which);
3. ``ds.climdown.conservation(hr)``: the mass budget per time step, in kg;
4. save the result to netCDF and a map with :func:`climdown.plot.compare`;
5. a check against a known truth: coarsen one hour 4x, downscale it back, score it against
   the field it came from (hour 22 UTC of the sample, which the default model never saw);
6. the lazy path: open with dask chunks, downscale, and see that nothing is computed until
   ``.compute()``.

Run::

    python examples/downscale_era5_file.py --out example-out
    python examples/downscale_era5_file.py my_era5_tcw.nc --out example-out

``--quick`` keeps two time steps (a few seconds).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import dask
import numpy as np
from dask.callbacks import Callback

import climdown  # noqa: F401  (registers the .climdown accessor)
from climdown import metrics, plot
from climdown.data.sources import find_variable, open_era5, sample_path
from climdown.grid import Grid, find_latlon
from climdown.pretrained import available


class CountTasks(Callback):
    """A dask callback that counts the tasks it sees run (0 means nothing was computed)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def _pretask(self, key, dsk, state):  # noqa: ANN001, ANN202  (dask's callback signature)
        self.n += 1


def choose_model(factor: int, constraint: str, model: str | None) -> str | None:
    """The model to use: ``model`` if given, else None (the packaged default, which
    ``downscale`` picks for each input's grid spacing), else bicubic where none is packaged."""
    if model is not None:
        print(f"model: {model} (from --model)")
        return model
    if (factor, constraint) in available():
        print(f"model: packaged default for factor {factor}, {constraint!r} (nearest spacing)")
        return None
    print(f"model: no packaged default for ({factor}, {constraint!r}); using 'bicubic'")
    return "bicubic"


def crop(ds, factor: int):
    """``ds`` cut to a whole number of ``factor`` x ``factor`` blocks (drops the last rows)."""
    lat, lon = find_latlon(ds)
    n_lat, n_lon = ds.sizes[lat], ds.sizes[lon]
    return ds.isel({lat: slice(0, n_lat - n_lat % factor), lon: slice(0, n_lon - n_lon % factor)})


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("path", nargs="?", default=None, help="ERA5 file (default: Rhine sample)")
    p.add_argument("--out", default="example-out", help="folder for the outputs")
    p.add_argument("--var", default=None, help="variable name (default: found from ERA5 names)")
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--model", default=None, help="checkpoint or baseline (default: see above)")
    p.add_argument("--quick", action="store_true", help="two time steps only")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(a.path) if a.path else sample_path("rhine")
    t0 = time.perf_counter()

    # 1. open and crop ------------------------------------------------------------------
    ds = open_era5(path, a.var)  # kg m-2, the file's dims (time, latitude, longitude), lazily
    name = find_variable(ds, a.var)
    ds = crop(ds, a.factor)
    if a.quick:
        ds = ds.isel(time=slice(0, 2))
    ds = ds.load()
    print(f"input: {path.name}, {name} {dict(ds[name].sizes)}, {ds[name].attrs.get('units')}")

    # 2. downscale ----------------------------------------------------------------------
    model = choose_model(a.factor, "softmax", a.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hr = ds.climdown.downscale(factor=a.factor, constraint="softmax", model=model)
    for w in caught:  # e.g. the input spacing is far from the model's training spacing
        print(f"warning: {w.message}")
    print(f"output: {dict(hr[name].sizes)}, history: {hr[name].attrs['history'].splitlines()[-1]}")

    # 3. mass budget in kg --------------------------------------------------------------
    report = ds.climdown.conservation(hr)
    print("mass budget per time step (kg):")
    print(
        report[["mass_lr", "mass_hr", "mass_rel_diff", "max_block_violation", "neg_count"]]
        .to_dataframe()
        .to_string(float_format=lambda v: f"{v:.4g}")
    )
    worst = float(np.abs(report["mass_rel_diff"]).max())
    print(f"largest relative mass difference over {report.sizes['time']} steps: {worst:.1e}")

    # 4. save and map -------------------------------------------------------------------
    nc = out / f"{name}_x{a.factor}.nc"
    hr.to_netcdf(nc)
    png = out / "downscaled.png"
    plot.compare(ds[name], hr[name], path=png)
    print(f"wrote {nc} and {png}")

    # 5. check against a truth: coarsen a held-out hour, downscale it back -----------------
    # hour 22 UTC of the Rhine sample was held out from the default model's training
    hour = ds[name].isel(time=min(22, ds.sizes["time"] - 1))
    lr = hour.climdown.coarsen(a.factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no spacing warning: 1 deg is trained on
        back = lr.climdown.downscale(factor=a.factor, constraint="softmax", model=model)
        bicubic = lr.climdown.downscale(factor=a.factor, constraint="none", model="bicubic")
    area = Grid.from_xarray(hour).area
    rmse = metrics.rmse(back.values, hour.values, area=area)
    rmse_bicubic = metrics.rmse(bicubic.values, hour.values, area=area)
    print(
        f"check on {str(hour.time.values)[:16]}: coarsened {a.factor}x and downscaled back, "
        f"area-weighted RMSE {rmse:.4f} kg m-2 (bicubic without constraint {rmse_bicubic:.4f})"
    )
    png_check = out / "check.png"
    plot.compare(lr, back, hour, path=png_check, title="coarsened and downscaled back")

    # 6. lazy: a dask graph, computed only when asked ------------------------------------
    lazy_in = open_era5(path, a.var, chunks={"time": 1})
    lazy_in = crop(lazy_in, a.factor).isel(time=slice(0, ds.sizes["time"]))
    with CountTasks() as counter, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported above
        lazy = lazy_in.climdown.downscale(factor=a.factor, constraint="softmax", model=model)
        print(
            f"lazy: {type(lazy[name].data).__name__} with {lazy[name].data.npartitions} chunks; "
            f"tasks run while building it: {counter.n}"
        )
        with dask.config.set(scheduler="threads"):
            done = lazy.compute()
        print(f"tasks run by .compute(): {counter.n}")
    diff = float(np.abs(done[name].values - hr[name].values).max())
    print(f"lazy result == eager result: max |difference| {diff:.1e} kg m-2")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return {"report": report, "netcdf": nc, "maps": [png, png_check], "rmse": rmse}


if __name__ == "__main__":
    main()
