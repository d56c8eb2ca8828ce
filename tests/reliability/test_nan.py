"""NaN never disappears in a reduction: every area-weighted reduction propagates it.

One table of reductions (coarsening, mass, the conservation report, every metric), each run on
numpy, dask and torch inputs where it takes them. The field has two time steps: step 0 holds a
block with 12 of its 16 cells NaN, step 1 is clean. A reduction over a NaN cell is NaN (never
the sum of the other cells, never 0 for an all-NaN block), and the clean step, the contrast,
stays finite. ``skipna=True`` on coarsening is the one explicit way to skip NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr

from climdown import grid, metrics
from climdown.conservation import assert_conserves, conservation
from climdown.errors import DataValueError
from climdown.testing import tcw_dataarray

F = 4  # coarsening factor: the fine field is 8 x 16, the coarse one 2 x 4


def _fine(all_nan: bool = False) -> xr.DataArray:
    """``tcw`` (time 2, lat 8, lon 16): step 0 has 12 NaN cells in block (0, 0), step 1 none."""
    da = tcw_dataarray(8, 16, 2, seed=3)
    v = da.values.copy()
    v[0, :3, :4] = np.nan  # 12 of the block's 16 cells
    if all_nan:
        v[0, 3, :4] = np.nan  # all 16
    return da.copy(data=v)


def _backend(x: Any, kind: str) -> Any:
    if kind == "numpy":
        return np.asarray(x)
    if kind == "dask":
        return dsa.from_array(np.asarray(x), chunks=(1,) * (np.ndim(x) - 2) + (4, 8))
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _values(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    return np.asarray(x.compute() if hasattr(x, "compute") else x, dtype=np.float64)


# ------------------------------------------------------------------ coarsening, on every backend
@pytest.mark.parametrize("all_nan", [False, True], ids=["12-of-16-nan", "all-nan"])
@pytest.mark.parametrize("kind", ["numpy", "dask", "torch", "xarray", "xarray-dask", "accessor"])
def test_coarsening_keeps_nan(kind: str, all_nan: bool) -> None:
    da = _fine(all_nan)
    area = grid.Grid.from_xarray(da).area
    if kind.startswith("xarray"):
        out = grid.coarsen_dataarray(da.chunk({"time": 1}) if kind == "xarray-dask" else da, F)
    elif kind == "accessor":
        out = da.climdown.coarsen(F)
    else:
        out = grid.coarsen(_backend(da.values, kind), _backend(area, kind), F)
    got = _values(out)
    assert math.isnan(got[0, 0, 0])  # was 2.5-like (12 NaN) or 0.0 (all NaN) with skipna sums
    # contrast: every block without NaN is the finite area-weighted mean
    assert np.isfinite(got[0].ravel()[1:]).all() and np.isfinite(got[1]).all()
    want = (da[1, :F, :F] * area[:F, :F]).sum() / area[:F, :F].sum()
    np.testing.assert_allclose(got[1, 0, 0], float(want), rtol=1e-6)


def test_xarrays_own_coarsen_sum_would_hide_the_nan() -> None:
    """Why the table above is needed: xarray's default reduction skips NaN."""
    da = _fine(all_nan=True)
    skipping = da.coarsen(lat=F, lon=F).sum()  # what a naive implementation does
    assert float(skipping[0, 0, 0]) == 0.0
    assert math.isnan(float(grid.coarsen_dataarray(da, F)[0, 0, 0]))


@pytest.mark.parametrize("kind", ["numpy", "dask", "torch", "xarray", "xarray-dask"])
def test_skipna_is_the_explicit_way_to_average_the_valid_cells(kind: str) -> None:
    da = _fine()
    area = grid.Grid.from_xarray(da).area
    if kind.startswith("xarray"):
        src = da.chunk({"time": 1}) if kind == "xarray-dask" else da
        got = _values(grid.coarsen_dataarray(src, F, skipna=True))
        got_all = _values(grid.coarsen_dataarray(_fine(all_nan=True), F, skipna=True))
    else:
        got = _values(grid.coarsen(_backend(da.values, kind), _backend(area, kind), F, skipna=True))
        all_nan = _fine(all_nan=True).values
        got_all = _values(
            grid.coarsen(_backend(all_nan, kind), _backend(area, kind), F, skipna=True)
        )
    # the 4 valid cells of the block (row 3), weighted by their areas
    row, w = da.values[0, 3, :F], area[3, :F]
    np.testing.assert_allclose(got[0, 0, 0], (row * w).sum() / w.sum(), rtol=1e-6)
    np.testing.assert_allclose(got[1], _values(grid.coarsen_dataarray(da, F))[1], rtol=1e-6)
    assert math.isnan(got_all[0, 0, 0])  # no valid cell: NaN, never 0
    assert np.isfinite(got_all[0].ravel()[1:]).all()


# ------------------------------------------------------------------ mass and the mass budget
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_mass_is_nan_where_a_cell_is(chunked: bool) -> None:
    da = _fine()
    src = da.chunk({"time": 1}) if chunked else da
    g = grid.Grid.from_xarray(da)
    results = {
        "mass_dataarray": grid.mass_dataarray(src),
        "mass_over": grid.mass_over(src, grid.area_dataarray(g, "lat", "lon"), ("lat", "lon")),
        "total_mass": grid.total_mass(src.data, g.area),
    }
    for name, out in results.items():
        got = _values(out)
        assert math.isnan(got[0]), name
        np.testing.assert_allclose(got[1], float((da[1] * g.area).sum()), rtol=1e-6)


def test_total_mass_on_torch_is_nan_where_a_cell_is() -> None:
    da = _fine()
    got = grid.total_mass(torch.as_tensor(da.values), torch.as_tensor(grid.grid_of(da).area))
    assert math.isnan(float(got[0])) and math.isfinite(float(got[1]))


@pytest.mark.parametrize("where", ["hr", "lr"])
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_conservation_report_is_nan_at_the_step_with_nan(where: str, chunked: bool) -> None:
    lr = tcw_dataarray(2, 4, 2, spacing=1.0, seed=4)
    hr = lr.climdown.downscale(factor=F, constraint="softmax", model="nearest")
    bad = {"hr": hr, "lr": lr}
    v = bad[where].values.copy()
    v[0, 0, 0] = np.nan
    bad[where] = bad[where].copy(data=v)
    if chunked:
        bad = {k: a.chunk({"time": 1}) for k, a in bad.items()}
    report = conservation(bad["hr"], bad["lr"]).compute()
    for name in ("mass_lr" if where == "lr" else "mass_hr", "mass_diff", "mass_rel_diff"):
        assert math.isnan(float(report[name][0])), name
        assert math.isfinite(float(report[name][1])), name  # contrast: the clean step
    assert math.isnan(float(report["max_block_violation"][0]))
    assert float(report["max_block_violation"][1]) < 1e-4
    assert int(report["nan_count"][0]) == (where == "hr")
    with pytest.raises(DataValueError, match=f"{where} contains 1 NaN"):
        assert_conserves(bad["hr"], bad["lr"])


# ------------------------------------------------------------------ metrics, on every backend
def _pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pred and truth 12 x 12 (SSIM needs 11 x 11), lr 3 x 3, areas; pred has one NaN."""
    truth = tcw_dataarray(12, 12, 2, seed=5)
    area = grid.Grid.from_xarray(truth).area
    pred = truth.values + 0.5
    pred[0, 5, 5] = np.nan
    lr = _values(grid.coarsen(truth.values, area, F))
    return pred, truth.values.astype(np.float64), lr, area


METRICS: dict[str, Callable[..., Any]] = {
    "mse": lambda p, t, lr, a: metrics.mse(p, t),
    "mse_area": lambda p, t, lr, a: metrics.mse(p, t, area=a),
    "rmse_area": lambda p, t, lr, a: metrics.rmse(p, t, area=a),
    "mae": lambda p, t, lr, a: metrics.mae(p, t),
    "mae_area": lambda p, t, lr, a: metrics.mae(p, t, area=a),
    "psnr": lambda p, t, lr, a: metrics.psnr(p, t, data_range=60.0),
    "ssim": lambda p, t, lr, a: metrics.ssim(p, t, data_range=60.0),
    "mass_violation_max": lambda p, t, lr, a: metrics.mass_violation(p, lr, a)["max_abs"],
    "mass_violation_mean": lambda p, t, lr, a: metrics.mass_violation(p, lr, a)["mean_abs"],
    "mass_violation_rel": lambda p, t, lr, a: metrics.mass_violation(p, lr, a)["max_rel"],
    "crps": lambda p, t, lr, a: metrics.crps_ensemble(_stack(p, t), t),
    "power_spectrum": lambda p, t, lr, a: float(metrics.power_spectrum(p)[1].sum()),
    "data_range": lambda p, t, lr, a: metrics.default_data_range(p),
}


def _stack(p: Any, t: Any) -> Any:
    if isinstance(p, torch.Tensor):
        return torch.stack([p, torch.as_tensor(t, dtype=p.dtype)])
    if isinstance(p, dsa.Array):
        return dsa.stack([p, dsa.from_array(np.asarray(t))])
    return np.stack([p, t])


@pytest.mark.parametrize("kind", ["numpy", "dask", "torch"])
@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_are_nan_when_a_value_is(name: str, kind: str) -> None:
    pred, truth, lr, area = _pair()
    score = METRICS[name]
    got = score(_backend(pred, kind), truth, lr, area)
    assert math.isnan(got), f"{name} on {kind} skipped the NaN: {got}"
    # contrast: the same prediction without its NaN scores a finite number
    clean = np.where(np.isnan(pred), truth + 0.5, pred)
    assert math.isfinite(score(_backend(clean, kind), truth, lr, area))


def test_metrics_of_an_xarray_with_nan_are_nan() -> None:
    pred, truth, lr, area = _pair()
    da = tcw_dataarray(12, 12, 2, seed=5).chunk({"time": 1})
    p = da.copy(data=dsa.from_array(pred, chunks=(1, 12, 12)))
    assert math.isnan(metrics.mse(p, truth, area=grid.Grid.from_xarray(da)))
    lr_da = grid.coarsen_dataarray(da, F)
    row = metrics.score_table(p, da, lr=lr_da)
    for key in ("MSE", "RMSE", "PSNR", "MAE", "SSIM", "mass_violation_max", "mass_violation_rel"):
        assert math.isnan(row[key]), key
    # NaN in the coarse input (or the areas) is not skipped either
    lr_nan = lr.copy()
    lr_nan[1, 2, 2] = np.nan
    assert math.isnan(metrics.mass_violation(truth, lr_nan, area)["max_abs"])
    area_nan = area.copy()
    area_nan[0, 0] = np.nan
    assert math.isnan(metrics.mse(truth + 1.0, truth, area=area_nan))
