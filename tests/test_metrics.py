"""Tests of climdown.metrics against independent implementations and hand formulas."""

from __future__ import annotations

import math

import dask.array as dsa
import numpy as np
import properscoring
import pytest
import torch
import xarray as xr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from climdown import metrics
from climdown.errors import CoordinateError, DataValueError, GridShapeError
from climdown.grid import Grid, block_expand, block_sum


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 24, 32)) * 100.0
    pred = truth + rng.normal(0.0, 2.0, truth.shape)
    return pred, truth


def skimage_ssim(pred, truth, r):
    return float(
        np.mean(
            [
                structural_similarity(
                    p,
                    t,
                    data_range=r,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
                for p, t in zip(pred, truth, strict=True)
            ]
        )
    )


def regional_grid(ny=12, nx=16):
    lat = np.linspace(70.0, 40.0, ny)  # descending like ERA5; areas vary strongly with latitude
    lon = np.linspace(-10.0, 20.0, nx)
    return lat, lon


# ---------------------------------------------------------------------------------------
# Point-wise errors
# ---------------------------------------------------------------------------------------
def test_errors_match_numpy_formulas(pair):
    pred, truth = pair
    e = pred - truth
    assert metrics.mse(pred, truth) == pytest.approx(np.mean(e**2), rel=1e-12)
    assert metrics.rmse(pred, truth) == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-12)
    assert metrics.mae(pred, truth) == pytest.approx(np.mean(np.abs(e)), rel=1e-12)


def test_numpy_torch_xarray_and_dask_agree(pair):
    pred, truth = pair
    ref = metrics.score_table(pred, truth)
    as_torch = metrics.score_table(torch.tensor(pred), torch.tensor(truth))
    dims = ("time", "y", "x")
    as_xr = metrics.score_table(xr.DataArray(pred, dims=dims), xr.DataArray(truth, dims=dims))
    as_dask = metrics.score_table(
        xr.DataArray(dsa.from_array(pred, chunks=(1, 24, 32)), dims=dims),
        xr.DataArray(truth, dims=dims),
    )
    for other in (as_torch, as_xr, as_dask):
        assert other.keys() == ref.keys()
        for key in ref:
            assert other[key] == pytest.approx(ref[key], rel=1e-10)


def test_torch_float32_with_grad_gives_python_floats(pair):
    pred, truth = pair
    p = torch.tensor(pred, dtype=torch.float32, requires_grad=True)
    value = metrics.rmse(p, torch.tensor(truth, dtype=torch.float32))
    assert isinstance(value, float)
    assert value == pytest.approx(metrics.rmse(pred, truth), rel=1e-5)


def test_xarray_uses_lat_lon_as_the_grid_axes_whatever_their_order(pair):
    pred, truth = pair
    lat, lon = np.linspace(50, 40, 24), np.linspace(0, 10, 32)
    coords = {"lat": lat, "lon": lon}
    t = xr.DataArray(truth, dims=("time", "lat", "lon"), coords=coords)
    p = xr.DataArray(pred, dims=("time", "lat", "lon"), coords=coords).transpose(
        "lon", "time", "lat"
    )
    assert metrics.ssim(p, t) == pytest.approx(metrics.ssim(pred, truth), rel=1e-12)


def test_shape_mismatch_is_a_clear_error(pair):
    pred, truth = pair
    with pytest.raises(GridShapeError, match="shape"):
        metrics.mse(pred[:, :-1], truth)


# ---------------------------------------------------------------------------------------
# Area-weighted variants
# ---------------------------------------------------------------------------------------
def test_area_weighted_errors_match_np_average(pair):
    pred, truth = pair
    area = Grid(*regional_grid(24, 32)).area
    w = np.broadcast_to(area, pred.shape)
    e = pred - truth
    assert metrics.mse(pred, truth, area=area) == pytest.approx(np.average(e**2, weights=w))
    assert metrics.mae(pred, truth, area=area) == pytest.approx(np.average(np.abs(e), weights=w))
    assert metrics.rmse(pred, truth, area=Grid(*regional_grid(24, 32))) == pytest.approx(
        math.sqrt(np.average(e**2, weights=w))
    )


def test_cos_lat_column_weights_broadcast(pair):
    pred, truth = pair
    lat, _ = regional_grid(24, 32)
    coslat = np.cos(np.deg2rad(lat))[:, None]  # [H, 1]
    e2 = (pred - truth) ** 2
    expected = np.average(e2, weights=np.broadcast_to(coslat, e2.shape))
    assert metrics.mse(pred, truth, area=coslat) == pytest.approx(expected)


def test_area_weighting_matters_where_errors_depend_on_latitude():
    lat, lon = regional_grid(24, 32)
    area = Grid(lat, lon).area
    truth = np.zeros((24, 32))
    pred = np.zeros((24, 32))
    pred[:12] = 1.0  # errors only in the northern rows, whose cells are smaller
    uniform = metrics.mse(pred, truth, area=np.ones_like(area))
    assert uniform == pytest.approx(metrics.mse(pred, truth))
    assert metrics.mse(pred, truth, area=area) < uniform - 0.05  # the contrast


def test_weights_that_do_not_broadcast_are_refused(pair):
    pred, truth = pair
    with pytest.raises(GridShapeError, match="broadcast"):
        metrics.mse(pred, truth, area=np.ones((32, 24)))


# ---------------------------------------------------------------------------------------
# PSNR and SSIM
# ---------------------------------------------------------------------------------------
def test_psnr_matches_skimage_with_the_same_range(pair):
    pred, truth = pair
    r = float(truth.max() - truth.min())
    assert metrics.psnr(pred, truth) == pytest.approx(
        peak_signal_noise_ratio(truth, pred, data_range=r), rel=1e-12
    )
    assert metrics.psnr(pred, truth, data_range=100.0) == pytest.approx(
        peak_signal_noise_ratio(truth, pred, data_range=100.0), rel=1e-12
    )
    assert metrics.default_data_range(truth) == r


def test_psnr_of_exact_prediction_is_infinite(pair):
    _, truth = pair
    assert metrics.psnr(truth, truth) == math.inf


def test_psnr_with_constant_truth_needs_a_range():
    with pytest.raises(DataValueError, match="data_range"):
        metrics.psnr(np.ones((4, 4)) * 2.0, np.ones((4, 4)))


@pytest.mark.parametrize("r", [None, 100.0, 7.0])
def test_ssim_matches_skimage_gaussian_ssim(pair, r):
    pred, truth = pair
    ref_r = float(truth.max() - truth.min()) if r is None else r
    assert metrics.ssim(pred, truth, data_range=r) == pytest.approx(
        skimage_ssim(pred, truth, ref_r), abs=1e-10
    )


def test_ssim_on_a_non_square_single_image_matches_skimage():
    rng = np.random.default_rng(3)
    truth = np.cumsum(rng.random((13, 40)), axis=1)
    pred = truth + rng.normal(0, 1.0, truth.shape)
    r = float(truth.max() - truth.min())
    assert metrics.ssim(pred, truth) == pytest.approx(skimage_ssim([pred], [truth], r), abs=1e-10)


def test_ssim_is_one_for_identical_fields_and_lower_for_noise(pair):
    pred, truth = pair
    assert metrics.ssim(truth, truth) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(pred, truth) < 0.999


def test_ssim_needs_the_window_to_fit():
    with pytest.raises(GridShapeError, match="11 x 11"):
        metrics.ssim(np.ones((10, 20)), np.arange(200.0).reshape(10, 20))


# ---------------------------------------------------------------------------------------
# Negatives and mass
# ---------------------------------------------------------------------------------------
def test_neg_count_counts_strictly_negative_values():
    x = np.array([[-1.0, 0.0], [2.0, -1e-12]])
    assert metrics.neg_count(x) == 2
    assert metrics.neg_count(torch.tensor(x)) == 2
    assert metrics.neg_count(np.abs(x)) == 0


def test_mass_violation_zero_for_block_expanded_field():
    lat, lon = regional_grid(12, 16)
    fine = Grid(lat, lon).refine(4)
    lr = np.random.default_rng(1).random((2, 12, 16)) * 50.0
    hr = block_expand(lr, 4)
    mv = metrics.mass_violation(hr, lr, fine.area, 4)
    assert mv["max_abs"] < 1e-12
    assert mv["mean_abs"] < 1e-12
    assert mv["max_rel"] < 1e-13
    assert metrics.mass_violation(torch.tensor(hr), lr, fine.area)["max_abs"] < 1e-12


def test_mass_violation_of_scaled_field_is_one_percent():
    lat, lon = regional_grid(12, 16)
    fine = Grid(lat, lon).refine(2)
    lr = np.full((12, 16), 20.0)
    mv = metrics.mass_violation(block_expand(lr, 2) * 1.01, lr, fine, 2)
    assert mv["max_abs"] == pytest.approx(0.2)
    assert mv["mean_abs"] == pytest.approx(0.2)
    assert mv["max_rel"] == pytest.approx(0.01)


def test_mass_violation_is_area_weighted_not_a_plain_mean():
    lat, lon = regional_grid(6, 8)
    fine = Grid(lat, lon).refine(4)
    rng = np.random.default_rng(2)
    hr = rng.random((24, 32)) * 40.0
    area_lr = block_sum(fine.area * hr, 4) / block_sum(fine.area, 4)
    plain_lr = block_sum(hr, 4) / 16.0
    assert metrics.mass_violation(hr, area_lr, fine.area)["max_abs"] < 1e-12
    # contrast: an LR made by a plain block mean does not match the area-weighted coarsening
    assert metrics.mass_violation(hr, plain_lr, fine.area)["max_abs"] > 1e-3


def test_mass_violation_of_dry_fields():
    area = Grid(*regional_grid(4, 4)).refine(2).area
    zeros = metrics.mass_violation(np.zeros((8, 8)), np.zeros((4, 4)), area)
    assert zeros == {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0}
    wet = metrics.mass_violation(np.ones((8, 8)), np.zeros((4, 4)), area)
    assert wet["max_rel"] == math.inf


def test_mass_violation_factor_must_fit():
    with pytest.raises(GridShapeError, match="factor"):
        metrics.mass_violation(np.ones((8, 8)), np.ones((3, 3)), np.ones((8, 8)))
    with pytest.raises(GridShapeError, match="factor=4 was given"):
        metrics.mass_violation(np.ones((8, 8)), np.ones((4, 4)), np.ones((8, 8)), factor=4)


# ---------------------------------------------------------------------------------------
# CRPS
# ---------------------------------------------------------------------------------------
def brute_force_crps(members, truth, fair):
    m = members.shape[0]
    skill = np.mean([np.abs(x - truth) for x in members], axis=0)
    spread = np.zeros_like(truth)
    for i in range(m):
        for j in range(m):
            spread += np.abs(members[i] - members[j])
    spread /= 2 * m * (m - 1) if fair else 2 * m * m
    return float(np.mean(skill - spread))


@pytest.fixture
def ensemble():
    rng = np.random.default_rng(4)
    truth = rng.gamma(2.0, 10.0, (2, 6, 7))
    members = truth + rng.normal(0.0, 3.0, (10, 2, 6, 7))
    return members, truth


def test_crps_standard_matches_properscoring(ensemble):
    members, truth = ensemble
    ref = properscoring.crps_ensemble(truth, np.moveaxis(members, 0, -1)).mean()
    assert metrics.crps_ensemble(members, truth) == pytest.approx(ref, rel=1e-12)
    assert metrics.crps_ensemble(members, truth) == pytest.approx(
        brute_force_crps(members, truth, fair=False), rel=1e-12
    )


def test_crps_fair_matches_brute_force_and_differs_from_standard(ensemble):
    members, truth = ensemble
    fair = metrics.crps_ensemble(members, truth, fair=True)
    assert fair == pytest.approx(brute_force_crps(members, truth, fair=True), rel=1e-12)
    assert fair < metrics.crps_ensemble(members, truth) - 1e-3  # the contrast


def test_crps_member_axis_torch_and_xarray(ensemble):
    members, truth = ensemble
    ref = metrics.crps_ensemble(members, truth, fair=True)
    last = np.moveaxis(members, 0, -1)
    assert metrics.crps_ensemble(last, truth, member_axis=-1, fair=True) == pytest.approx(ref)
    assert metrics.crps_ensemble(
        torch.tensor(members), torch.tensor(truth), fair=True
    ) == pytest.approx(ref)
    da = xr.DataArray(dsa.from_array(members, chunks=(5, 1, 6, 7)), dims=("m", "t", "y", "x"))
    assert metrics.crps_ensemble(da, truth, fair=True) == pytest.approx(ref)


def test_crps_of_a_deterministic_perfect_ensemble_is_zero(ensemble):
    _, truth = ensemble
    members = np.stack([truth] * 10)
    assert metrics.crps_ensemble(members, truth) == pytest.approx(0.0, abs=1e-12)
    assert metrics.crps_ensemble(members[:1], truth) == pytest.approx(0.0, abs=1e-12)


def test_crps_errors(ensemble):
    members, truth = ensemble
    with pytest.raises(DataValueError, match="at least 2"):
        metrics.crps_ensemble(members[:1], truth, fair=True)
    with pytest.raises(GridShapeError, match="member_axis"):
        metrics.crps_ensemble(members, truth, member_axis=1)


# ---------------------------------------------------------------------------------------
# Power spectrum
# ---------------------------------------------------------------------------------------
def sinusoid(n=32, waves=4, amplitude=3.0):
    x = np.arange(n)
    return amplitude * np.sin(2 * np.pi * waves * x / n)[None, :] * np.ones((n, 1))


@pytest.mark.parametrize("waves", [2, 4, 9])
def test_spectrum_peaks_at_the_sinusoid_wavenumber(waves):
    k, power = metrics.power_spectrum(sinusoid(32, waves) + 5.0)
    assert k[0] == pytest.approx(1 / 32) and k[-1] == pytest.approx(0.5)
    assert k[np.argmax(power)] == pytest.approx(waves / 32)
    others = np.delete(power, np.argmax(power))
    assert np.all(others < 1e-20)  # no leakage for a periodic wave without a window


def test_spectrum_peak_survives_the_hann_window():
    rng = np.random.default_rng(5)
    field = sinusoid(32, 4) + 0.1 * rng.standard_normal((32, 32))
    k, power = metrics.power_spectrum(field, window=True)
    assert k[np.argmax(power)] == pytest.approx(4 / 32)


def test_spectrum_parseval_for_a_field_inside_the_nyquist_circle():
    n = 32
    y, x = np.mgrid[0:n, 0:n]
    field = 2.0 * np.cos(2 * np.pi * (3 * x + 2 * y) / n) + np.sin(2 * np.pi * 5 * y / n)
    k, power = metrics.power_spectrum(field)
    radius = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) * n
    counts = np.array([np.sum(np.rint(radius) == j) for j in range(1, n // 2 + 1)])
    assert np.sum(power * counts) / (n * n) == pytest.approx(np.var(field), rel=1e-10)


def test_spectrum_of_white_noise_is_flat_at_its_variance():
    rng = np.random.default_rng(6)
    noise = 2.0 * rng.standard_normal((16, 64, 64))
    _, power = metrics.power_spectrum(torch.tensor(noise))
    assert np.mean(power) == pytest.approx(4.0, rel=0.03)
    assert np.all(np.abs(power[3:] / 4.0 - 1.0) < 0.25)


def test_spectrum_averages_leading_axes():
    a, b = sinusoid(16, 2), sinusoid(16, 5)
    _, pa = metrics.power_spectrum(a)
    _, pb = metrics.power_spectrum(b)
    _, pab = metrics.power_spectrum(np.stack([a, b]))
    np.testing.assert_allclose(pab, 0.5 * (pa + pb), atol=1e-12)


# ---------------------------------------------------------------------------------------
# score_table
# ---------------------------------------------------------------------------------------
def test_score_table_keys_and_values(pair, ensemble):
    pred, truth = pair
    lat, lon = regional_grid(6, 8)
    fine = Grid(lat, lon).refine(4)
    lr = block_sum(fine.area * truth, 4) / block_sum(fine.area, 4)
    members = np.stack([pred + d for d in np.linspace(-1, 1, 10)])
    row = metrics.score_table(pred, truth, lr=lr, area=fine.area, members=members)
    assert set(row) == {
        "MSE", "RMSE", "PSNR", "MAE", "SSIM", "neg_num", "CRPS",
        "mass_violation_max", "mass_violation_mean", "mass_violation_rel",
        "RMSE_area_weighted", "MAE_area_weighted", "blockiness",
    }  # fmt: skip
    assert row["RMSE"] == pytest.approx(metrics.rmse(pred, truth))
    assert row["CRPS"] == pytest.approx(metrics.crps_ensemble(members, truth))
    assert row["mass_violation_max"] > 0.01  # noisy prediction does not conserve
    exact = metrics.score_table(truth, truth, lr=lr, area=fine.area)
    assert exact["mass_violation_max"] < 1e-12 and exact["PSNR"] == math.inf
    assert "CRPS" not in exact


def test_score_table_derives_areas_from_an_xarray_lr():
    lat, lon = regional_grid(6, 8)
    coarse, fine = Grid(lat, lon), Grid(lat, lon).refine(2)
    rng = np.random.default_rng(7)
    lr = xr.DataArray(rng.random((6, 8)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    hr_values = block_expand(lr.values, 2) * 1.01
    hr = xr.DataArray(hr_values, dims=("lat", "lon"), coords={"lat": fine.lat, "lon": fine.lon})
    assert coarse.shape == lr.shape
    row = metrics.score_table(hr, hr, lr=lr)
    assert row["mass_violation_rel"] == pytest.approx(0.01 * float(lr.max() / lr.mean()), rel=1e-9)
    with pytest.raises(CoordinateError, match="area="):
        metrics.score_table(hr_values, hr_values, lr=lr.values)


# ---------------------------------------------------------------------------------------
# Blockiness
# ---------------------------------------------------------------------------------------
def test_blockiness_by_hand():
    # one row of 8 cells, factor 4: steps 0-1, 1-2, 2-3 inside, 3-4 across, 4-5, 5-6, 6-7 inside
    row = np.array([[0.0, 1.0, 2.0, 3.0, 7.0, 8.0, 9.0, 10.0]])
    field = np.repeat(row, 4, axis=0)  # 4 identical rows: vertical steps are all 0
    # across: |7-3| = 4 on 4 rows; within: 6 steps of 1 on 4 rows + vertical zeros
    within = (6 * 4 * 1.0) / (6 * 4 + 3 * 8)  # 3 vertical inside-block steps x 8 columns
    assert metrics.blockiness(field, 4) == pytest.approx(4.0 / within)


def test_blockiness_near_one_for_smooth_and_infinite_for_nearest(pair):
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.sin(y / 5.0) + np.cos(x / 7.0)
    assert metrics.blockiness(smooth, 4) == pytest.approx(1.0, abs=0.1)
    coarse = block_sum(smooth, 4) / 16
    assert metrics.blockiness(block_expand(coarse, 4), 4) == math.inf
    assert math.isnan(metrics.blockiness(np.ones((8, 8)), 4))
    # tiles with their own offsets: a smooth field plus a block pattern scores well above 1
    tiled = smooth + block_expand(np.random.default_rng(1).normal(0, 0.3, coarse.shape), 4)
    assert metrics.blockiness(tiled, 4) > 2.0


def test_blockiness_numpy_torch_xarray_dask_agree(pair):
    pred, _ = pair
    want = metrics.blockiness(pred, 4)
    assert metrics.blockiness(torch.tensor(pred), 4) == pytest.approx(want)
    da = xr.DataArray(pred, dims=("time", "lat", "lon"))
    assert metrics.blockiness(da, 4) == pytest.approx(want)
    assert metrics.blockiness(da.chunk({"time": 1}), 4) == pytest.approx(want)


def test_blockiness_needs_whole_blocks():
    with pytest.raises(GridShapeError, match="multiple of the factor"):
        metrics.blockiness(np.zeros((10, 12)), 4)
    with pytest.raises(GridShapeError, match="factor >= 2"):
        metrics.blockiness(np.zeros((8, 8)), 1)


# ---------------------------------------------------------------------------------------
# Ensemble reliability: spread/skill and the rank histogram
# ---------------------------------------------------------------------------------------
def _ensemble(spread: float, m: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Truth and ``m`` members drawn around a common centre; ``spread`` scales the members' noise
    (1 = the members are drawn like the truth: a reliable ensemble)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(200, 8, 8))
    truth = centre + rng.normal(size=centre.shape)
    members = centre + spread * rng.normal(size=(m, *centre.shape))
    return members, truth


def test_spread_skill_is_one_for_a_reliable_ensemble_and_small_for_a_collapsed_one():
    members, truth = _ensemble(1.0)
    ss = metrics.spread_skill(members, truth)
    assert ss["ratio"] == pytest.approx(1.0, abs=0.03)
    mean = members.mean(axis=0)
    assert ss["skill"] == pytest.approx(np.sqrt(np.mean((mean - truth) ** 2)))
    var = members.var(axis=0, ddof=1).mean()
    assert ss["spread"] == pytest.approx(np.sqrt(var * 11 / 10))
    # contrast: members that ignore their noise, and members too wide
    assert metrics.spread_skill_ratio(_ensemble(0.01)[0], truth) < 0.05
    assert metrics.spread_skill_ratio(_ensemble(3.0)[0], truth) > 2.0
    t = torch.as_tensor(members), torch.as_tensor(truth)
    assert metrics.spread_skill(*t) == pytest.approx(ss)  # torch agrees
    moved = np.moveaxis(members, 0, -1)
    assert metrics.spread_skill_ratio(moved, truth, member_axis=-1) == pytest.approx(ss["ratio"])
    with pytest.raises(DataValueError, match="at least 2"):
        metrics.spread_skill(members[:1], truth)


def test_rank_histogram_is_flat_when_reliable_and_u_shaped_when_too_narrow():
    members, truth = _ensemble(1.0, m=4)
    flat = metrics.rank_histogram(members, truth)
    assert flat.shape == (5,) and flat.sum() == truth.size
    assert flat.min() > 0.8 * truth.size / 5 and flat.max() < 1.2 * truth.size / 5
    narrow = metrics.rank_histogram(_ensemble(0.1, m=4)[0], truth)
    assert narrow[0] + narrow[-1] > 0.6 * truth.size  # piled at both ends
    torch_hist = metrics.rank_histogram(torch.as_tensor(members), torch.as_tensor(truth))
    assert np.array_equal(torch_hist, flat)


def test_rank_histogram_spreads_ties_of_identical_members():
    truth = np.zeros((1000,))
    members = np.zeros((3, 1000))  # every member equals the truth: all ranks tie
    hist = metrics.rank_histogram(members, truth)
    assert hist.sum() == 1000 and hist.min() > 150  # drawn uniformly over the 4 ranks
    # contrast: members all above the truth put it at rank 0
    assert metrics.rank_histogram(members + 1, truth)[0] == 1000


def test_crps_pixels_keeps_the_autograd_graph_and_matches_crps_ensemble():
    members = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    truth = torch.randn(2, 4, 4, dtype=torch.float64)
    field = metrics.crps_pixels(members, truth, fair=True)
    assert field.shape == truth.shape and field.requires_grad
    expected = metrics.crps_ensemble(members, truth, fair=True)
    assert float(field.mean().detach()) == pytest.approx(expected)
