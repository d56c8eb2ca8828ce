"""Every evaluation score once: errors, PSNR, SSIM, negatives, mass violation, CRPS and spectra.

Each metric is written once on array-likes shaped ``[..., H, W]`` (the last two axes are the
horizontal grid) and accepts numpy arrays, torch tensors (on any device, no GPU needed) and
xarray DataArrays (numpy- or dask-backed). The conversion happens at the edge, in
:func:`_as_arrays`:

* xarray DataArrays are transposed so that latitude and longitude come last (when they can be
  found) and their ``.data`` is used, so dask-backed inputs are reduced lazily until the final
  ``float``;
* torch tensors stay on their device and are promoted to float64 (float32 on Apple MPS, which
  has no float64); numpy inputs that meet a tensor are moved to the tensor's device;
* everything else is promoted to float64 numpy (dask arrays stay dask).

The maths below then uses only operations that numpy, torch and dask share (arithmetic,
``abs``, slicing, ``reshape``, ``sum``, ``max``), so there is one implementation per score.
Scores are returned as python floats (``neg_count`` as an int).

Cell areas, coarsening and mass come from :mod:`climdown.grid`; this module never computes
them itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import climdown.grid as _grid
from climdown.errors import CoordinateError, DataValueError, GridShapeError

__all__ = [
    "mse",
    "rmse",
    "mae",
    "psnr",
    "ssim",
    "neg_count",
    "mass_violation",
    "blockiness",
    "crps_ensemble",
    "crps_pixels",
    "spread_skill",
    "spread_skill_ratio",
    "rank_histogram",
    "power_spectrum",
    "score_table",
    "default_data_range",
]

#: SSIM constants of Wang et al. (2004), as in scikit-image.
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
#: Gaussian window of Wang et al. (2004): sigma 1.5, truncated at 3.5 sigma -> 11 taps.
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5


# ---------------------------------------------------------------------------------------
# The edge: numpy / torch / xarray -> arrays of one kind
# ---------------------------------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _is_xarray(x: Any) -> bool:
    return type(x).__module__.startswith("xarray")


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask")


def _unwrap(x: Any) -> Any:
    """Raw array of ``x``: DataArrays with lat/lon moved last, Grids as their cell areas."""
    if isinstance(x, _grid.Grid):
        return x.area
    if _is_xarray(x):
        if hasattr(x, "data_vars"):
            raise TypeError(
                "metrics take DataArrays, not Datasets: select the variable, e.g. ds['tcw']"
            )
        try:
            lat, lon = _grid.find_latlon(x)
        except CoordinateError:
            return x.data  # no lat/lon coordinates: trust the axis order
        y_dim, x_dim = x[lat].dims[0], x[lon].dims[0]
        return x.transpose(..., y_dim, x_dim).data
    return x


def _as_arrays(*xs: Any) -> list[Any]:
    """Bring the inputs to one array kind (see the module docstring); ``None`` passes through."""
    raw = [None if x is None else _unwrap(x) for x in xs]
    tensor = next((r for r in raw if r is not None and _is_torch(r)), None)
    if tensor is not None:
        import torch

        device = tensor.device
        dtype = torch.float32 if device.type == "mps" else torch.float64
        return [
            None
            if r is None
            else (r.detach() if _is_torch(r) else torch.as_tensor(np.asarray(r))).to(
                device=device, dtype=dtype
            )
            for r in raw
        ]
    out: list[Any] = []
    for r in raw:
        if r is None:
            out.append(None)
        elif _is_dask(r):
            out.append(r.astype(np.float64))
        else:
            out.append(np.asarray(r, dtype=np.float64))
    return out


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of any supported input (computes dask, moves tensors to the CPU)."""
    (a,) = _as_arrays(x)
    if _is_torch(a):
        return a.detach().cpu().numpy().astype(np.float64)
    return np.asarray(a, dtype=np.float64)


def _check_same_shape(pred: Any, truth: Any) -> None:
    if tuple(pred.shape) != tuple(truth.shape):
        raise GridShapeError(
            f"prediction has shape {tuple(pred.shape)} but truth has shape "
            f"{tuple(truth.shape)}; they must match ([..., H, W] on the same grid)"
        )


def _size(x: Any) -> int:
    return int(math.prod(tuple(x.shape)))


def _mean(x: Any, weights: Any = None) -> Any:
    """Mean of ``x``, or its weighted mean with ``weights`` broadcast over the trailing axes."""
    if weights is None:
        return x.sum() / _size(x)
    wshape = tuple(weights.shape)
    if len(wshape) > x.ndim or any(
        w not in (1, s) for w, s in zip(wshape[::-1], tuple(x.shape)[::-1], strict=False)
    ):
        raise GridShapeError(
            f"area/weights of shape {wshape} do not broadcast to the fields' shape "
            f"{tuple(x.shape)}; pass the fine-grid cell areas [H, W] (climdown.grid.Grid.area)"
        )
    # sum of the broadcast weights = sum(w) * (number of copies the broadcast makes)
    return (x * weights).sum() / (weights.sum() * (_size(x) // _size(weights)))


def default_data_range(truth: Any) -> float:
    """The data range PSNR and SSIM use by default: ``max(truth) - min(truth)`` over all of ``truth``.

    Compute it once over the whole evaluation set and pass it to every batch when scoring in
    batches, so that all batches share one range. The study scaled its data to 0-100, so its
    range was (close to) 100.
    """
    (t,) = _as_arrays(truth)
    return float(t.max() - t.min())


# ---------------------------------------------------------------------------------------
# Point-wise errors
# ---------------------------------------------------------------------------------------
def mse(pred: Any, truth: Any, *, area: Any = None) -> float:
    """Mean squared error, optionally area-weighted.

    Parameters
    ----------
    pred, truth : array_like ``[..., H, W]``
        numpy arrays, torch tensors or xarray DataArrays of the same shape.
    area : array_like ``[H, W]`` (or broadcastable, e.g. ``[H, 1]``), or Grid, optional
        Cell areas (``climdown.grid.Grid(lat, lon).area``) or any weights proportional to them
        (e.g. ``cos(lat)``). Without it every pixel counts equally.

    Returns
    -------
    float
        In the square of the fields' unit (e.g. (kg m-2)^2).

    Notes
    -----
    ``MSE = sum(w (p - t)^2) / sum(w)``, the sum running over all pixels of all leading
    indices; ``w = 1`` without ``area``.
    """
    p, t, w = _as_arrays(pred, truth, area)
    _check_same_shape(p, t)
    return float(_mean((p - t) ** 2, w))


def rmse(pred: Any, truth: Any, *, area: Any = None) -> float:
    """Root mean squared error, ``sqrt(MSE)`` (see :func:`mse`), in the fields' unit."""
    return math.sqrt(mse(pred, truth, area=area))


def mae(pred: Any, truth: Any, *, area: Any = None) -> float:
    """Mean absolute error ``sum(w |p - t|) / sum(w)`` in the fields' unit (see :func:`mse`)."""
    p, t, w = _as_arrays(pred, truth, area)
    _check_same_shape(p, t)
    return float(_mean(abs(p - t), w))


def psnr(pred: Any, truth: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    pred, truth : array_like ``[..., H, W]``
    data_range : float, optional
        The peak value ``R``. Default: ``max(truth) - min(truth)`` over all of ``truth`` (see
        :func:`default_data_range`); the study's data were scaled to 0-100, so ``R ~ 100``
        there. State the range when reporting PSNR: it shifts the score by ``20 log10(R)``.

    Returns
    -------
    float
        ``10 log10(R^2 / MSE)``; ``inf`` when the prediction is exact.
    """
    r = default_data_range(truth) if data_range is None else float(data_range)
    err = mse(pred, truth)
    if err == 0.0:
        return math.inf
    if r <= 0.0:
        raise DataValueError(
            f"PSNR needs a positive data range, got {r}; truth is constant, pass data_range="
        )
    return 10.0 * math.log10(r * r / err)


# ---------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------
def _gaussian_taps() -> list[float]:
    # the kernel of scipy.ndimage.gaussian_filter that scikit-image's SSIM uses
    radius = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    return [float(v) for v in phi / phi.sum()]


def _filter_valid(x: Any, taps: list[float]) -> Any:
    """Separable 'valid' filtering of the last two axes (no padding: the output shrinks)."""
    k = len(taps)
    h, w = x.shape[-2], x.shape[-1]
    rows = sum(c * x[..., i : h - k + 1 + i, :] for i, c in enumerate(taps))
    return sum(c * rows[..., :, i : w - k + 1 + i] for i, c in enumerate(taps))


def ssim(pred: Any, truth: Any, data_range: float | None = None) -> float:
    """Structural similarity index (Wang et al. 2004) with a Gaussian window, mean over images.

    Parameters
    ----------
    pred, truth : array_like ``[..., H, W]`` with ``H, W >= 11``
    data_range : float, optional
        ``R`` in the stabilising constants; default ``max(truth) - min(truth)`` as in
        :func:`psnr`.

    Returns
    -------
    float
        Mean SSIM over all images and all windows (1 for identical fields).

    Notes
    -----
    Local means, variances and the covariance are Gaussian-weighted (sigma 1.5, 11 x 11 taps,
    population covariance), ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``::

        SSIM = (2 mu_p mu_t + C1)(2 s_pt + C2) / ((mu_p^2 + mu_t^2 + C1)(s_p^2 + s_t^2 + C2))

    averaged over the windows that lie fully inside the image. This equals
    ``skimage.metrics.structural_similarity(p, t, data_range=R, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` per image (scikit-image filters with reflection
    and then crops the 5-pixel border, which leaves exactly these windows).
    """
    r = default_data_range(truth) if data_range is None else float(data_range)
    p, t = _as_arrays(pred, truth)
    _check_same_shape(p, t)
    taps = _gaussian_taps()
    if min(p.shape[-2], p.shape[-1]) < len(taps):
        raise GridShapeError(
            f"SSIM needs images of at least {len(taps)} x {len(taps)} pixels (its Gaussian "
            f"window), got {tuple(p.shape[-2:])}"
        )
    c1 = (_SSIM_K1 * r) ** 2
    c2 = (_SSIM_K2 * r) ** 2
    mu_p = _filter_valid(p, taps)
    mu_t = _filter_valid(t, taps)
    var_p = _filter_valid(p * p, taps) - mu_p * mu_p
    var_t = _filter_valid(t * t, taps) - mu_t * mu_t
    cov = _filter_valid(p * t, taps) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2)
    )
    return float(_mean(s))


# ---------------------------------------------------------------------------------------
# Physical checks
# ---------------------------------------------------------------------------------------
def neg_count(pred: Any) -> int:
    """Number of negative values in ``pred`` (all pixels of all leading indices)."""
    (p,) = _as_arrays(pred)
    return int((p < 0).sum())


def mass_violation(pred: Any, lr: Any, area: Any, factor: int | None = None) -> dict[str, float]:
    """How far the area-weighted coarsening of ``pred`` is from the coarse input ``lr``.

    Parameters
    ----------
    pred : array_like ``[..., H, W]``
        Fine (downscaled) field in kg m-2.
    lr : array_like ``[..., H/f, W/f]``
        The coarse input in kg m-2.
    area : array_like ``[H, W]`` or Grid
        Fine-cell areas in m^2 (``climdown.grid.Grid(lat, lon).area``, or for a fine grid
        made from a coarse one, ``Grid(...).refine(f).area``).
    factor : int, optional
        Block size; inferred from the shapes when omitted.

    Returns
    -------
    dict
        ``max_abs`` and ``mean_abs``: the largest and the mean (over coarse cells) of
        ``|coarsen(pred) - lr|`` in kg m-2; ``max_rel``: ``max_abs / mean(|lr|)``, the worst
        block violation relative to the mean magnitude of the coarse field (0 when both are 0,
        ``inf`` when only ``lr`` is all zero).

    Notes
    -----
    ``coarsen`` is :func:`climdown.grid.coarsen`, the area-weighted block mean
    ``sum(A y) / sum(A)``; a plain block mean would misreport violations wherever cell areas
    vary within a block (everywhere on a lat/lon grid).
    """
    p, c, a = _as_arrays(pred, lr, area)
    f = _grid.infer_factor(tuple(p.shape), tuple(c.shape), factor)
    coarse = _grid.coarsen(p, a, f)
    if tuple(coarse.shape) != tuple(c.shape):
        raise GridShapeError(
            f"coarsening the prediction {tuple(p.shape)} by {f} gives {tuple(coarse.shape)}, "
            f"but lr has shape {tuple(c.shape)}; check factor and the leading axes"
        )
    diff = abs(coarse - c)
    max_abs = float(diff.max())
    scale = float(_mean(abs(c)))
    if scale == 0.0:
        max_rel = 0.0 if max_abs == 0.0 else math.inf
    else:
        max_rel = max_abs / scale
    return {"max_abs": max_abs, "mean_abs": float(_mean(diff)), "max_rel": max_rel}


def blockiness(pred: Any, factor: int) -> float:
    """How much more the field jumps across coarse-block edges than within blocks.

    ``mean |y[i+1] - y[i]|`` over neighbouring fine cells on either side of a coarse-block
    edge, divided by the same mean over neighbours inside one block, both axes pooled. A smooth
    field (and the truth of a real one) is near 1; a field made of ``factor x factor`` tiles
    scores above 1 (the checkerboard of a sub-pixel head, or a constraint that rescales each
    block on its own); block-constant ``nearest`` output is ``inf`` (no change inside blocks).

    Parameters
    ----------
    pred : array_like ``[..., H, W]``
        Fine field; H and W multiples of ``factor`` (whole blocks).
    factor : int
        Block size f (>= 2: with f = 1 there are no cells inside a block to compare).

    Returns
    -------
    float
        The ratio; ``nan`` for a constant field (no differences at all), ``inf`` when only the
        within-block differences are all zero.
    """
    (p,) = _as_arrays(pred)
    f = int(factor)
    if f < 2:
        raise GridShapeError(f"blockiness needs factor >= 2 (cells inside a block), got {factor}")
    h, w = int(p.shape[-2]), int(p.shape[-1])
    if h % f or w % f:
        raise GridShapeError(
            f"blockiness needs whole {f} x {f} blocks, but the field is {h} x {w}; "
            "crop it to a multiple of the factor"
        )
    rows = _block_steps(h, f, p)
    cols = _block_steps(w, f, p)
    dy = abs(p[..., 1:, :] - p[..., :-1, :])
    dx = abs(p[..., :, 1:] - p[..., :, :-1])
    parts = (dy[..., rows[0], :], dx[..., cols[0]], dy[..., rows[1], :], dx[..., cols[1]])
    across = float(parts[0].sum()) + float(parts[1].sum())
    within = float(parts[2].sum()) + float(parts[3].sum())
    n_across = _size(parts[0]) + _size(parts[1])
    n_within = _size(parts[2]) + _size(parts[3])
    a, b = across / max(n_across, 1), within / max(n_within, 1)
    if b == 0.0:
        return math.nan if a == 0.0 else math.inf
    return a / b


def _block_steps(n: int, f: int, like: Any) -> tuple[Any, Any]:
    """Indices of the steps i -> i+1 (i < n - 1) that cross a block edge, and of those inside one.

    Index arrays of ``like``'s kind (a torch tensor on its device, else numpy).
    """
    edge = (np.arange(1, n) % f) == 0
    idx = np.flatnonzero(edge), np.flatnonzero(~edge)
    if _is_torch(like):
        import torch

        return tuple(torch.as_tensor(i, device=like.device) for i in idx)  # type: ignore[return-value]
    return idx


# ---------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------
def _sort_members(x: Any, axis: int) -> Any:
    if _is_torch(x):
        return x.sort(dim=axis).values
    return np.sort(np.asarray(x), axis=axis)


def crps_ensemble(members: Any, truth: Any, *, member_axis: int = 0, fair: bool = False) -> float:
    """Continuous ranked probability score of an ensemble, averaged over pixels.

    Parameters
    ----------
    members : array_like
        The ensemble, members along ``member_axis``; removing that axis gives truth's shape.
    truth : array_like ``[..., H, W]``
        The verifying field.
    member_axis : int
        Axis of ``members`` that holds the members.
    fair : bool
        False: the standard ECDF estimator. True: the fair (unbiased) estimator, which
        scores an m-member ensemble as if it had infinitely many members.

    Returns
    -------
    float
        Mean CRPS in the fields' unit (0 for a perfect deterministic ensemble).

    Raises
    ------
    DataValueError
        For an empty ensemble, or a one-member ensemble with ``fair=True``.

    Notes
    -----
    With members ``x_1..x_m`` and truth ``y`` at a pixel::

        standard: CRPS = 1/m sum_i |x_i - y| - 1/(2 m^2)      sum_{i,j} |x_i - x_j|
        fair:     CRPS = 1/m sum_i |x_i - y| - 1/(2 m (m-1))  sum_{i,j} |x_i - x_j|

    The double sum is computed in O(m log m) from the sorted members ``x_(1) <= ... <= x_(m)``:
    ``sum_{i,j} |x_i - x_j| = 2 sum_k (2k - m - 1) x_(k)``. The standard estimator equals
    ``properscoring.crps_ensemble``. The study's reference code divided the spread term by
    the number of grid points instead of the number of members, which is wrong; here the
    normalisation depends on ``m`` only.
    """
    x, y = _as_arrays(members, truth)
    axis = member_axis % x.ndim
    m = int(x.shape[axis])
    if m == 0 or (fair and m < 2):
        raise DataValueError(
            f"{'fair ' if fair else ''}CRPS needs at least {2 if fair else 1} member(s), "
            f"got {m} along axis {member_axis}"
        )
    rest = tuple(s for i, s in enumerate(x.shape) if i != axis)
    if rest != tuple(y.shape):
        raise GridShapeError(
            f"members of shape {tuple(x.shape)} without axis {member_axis} give {rest}, but "
            f"truth has shape {tuple(y.shape)}; check member_axis"
        )

    return float(_mean(crps_pixels(x, y, member_axis=axis, fair=fair)))


def crps_pixels(members: Any, truth: Any, *, member_axis: int = 0, fair: bool = False) -> Any:
    """Per-pixel CRPS of an ensemble, in the inputs' own kind: the maths of :func:`crps_ensemble`.

    No conversion and no checks: numpy in, numpy out; torch tensors keep their dtype, device
    and autograd graph, so a loss can minimise it (:func:`climdown.nn.losses.crps_loss`).
    ``members`` has the members along ``member_axis`` (at least 2 when ``fair``), ``truth``
    the rest of its shape. See :func:`crps_ensemble` for the estimators.
    """
    axis = member_axis % members.ndim
    m = int(members.shape[axis])

    def member(a: Any, k: int) -> Any:
        return a[(slice(None),) * axis + (k,)]

    skill = sum(abs(member(members, k) - truth) for k in range(m)) / m
    xs = _sort_members(members, axis)
    pair_sum = 2 * sum((2 * k - m + 1) * member(xs, k) for k in range(m))  # 0-based k
    spread = pair_sum / (2 * m * (m - 1) if fair else 2 * m * m)
    return skill - spread


def _members_and_truth(
    members: Any, truth: Any, member_axis: int, least: int
) -> tuple[Any, Any, int]:
    """``members`` with the member axis first, ``truth``, and the ensemble size (checked)."""
    x, y = _as_arrays(members, truth)
    axis = member_axis % x.ndim
    m = int(x.shape[axis])
    if m < least:
        raise DataValueError(f"needs at least {least} member(s), got {m} along axis {member_axis}")
    rest = tuple(s for i, s in enumerate(x.shape) if i != axis)
    if rest != tuple(y.shape):
        raise GridShapeError(
            f"members of shape {tuple(x.shape)} without axis {member_axis} give {rest}, but "
            f"truth has shape {tuple(y.shape)}; check member_axis"
        )
    x = x.movedim(axis, 0) if _is_torch(x) else np.moveaxis(x, axis, 0)
    return x, y, m


def spread_skill(members: Any, truth: Any, *, member_axis: int = 0) -> dict[str, float]:
    """Ensemble spread beside the error of the ensemble mean, and their ratio.

    Parameters
    ----------
    members : array_like
        The ensemble, members along ``member_axis`` (at least 2); removing that axis gives
        truth's shape.
    truth : array_like ``[..., H, W]``
        The verifying field.
    member_axis : int
        Axis of ``members`` that holds the members.

    Returns
    -------
    dict[str, float]
        ``spread`` (``sqrt((m+1)/m * mean(var))``, fields' unit), ``skill`` (RMSE of the
        ensemble mean, fields' unit) and ``ratio`` (spread / skill; inf for a perfect mean).

    Raises
    ------
    DataValueError
        For fewer than two members.

    Notes
    -----
    ``var`` is the unbiased (``1/(m-1)``) variance across the ``m`` members at each pixel,
    averaged over all pixels. For a reliable ensemble (truth indistinguishable from a member)
    ``(m+1)/m * mean(var)`` equals the mean squared error of the ensemble mean, so the ratio
    is 1 (Fortin et al., 2014, J. Hydrometeorol. 15); below 1 the ensemble is
    under-dispersive (overconfident), above 1 over-dispersive. Both terms are means over
    pixels: scoring in batches, average ``spread**2`` and ``skill**2`` weighted by batch size,
    then take square roots.
    """
    x, y, m = _members_and_truth(members, truth, member_axis, least=2)
    mean = sum(x[k] for k in range(m)) / m
    var = sum((x[k] - mean) ** 2 for k in range(m)) / (m - 1)
    spread = math.sqrt(float(_mean(var)) * (m + 1) / m)
    skill = math.sqrt(float(_mean((mean - y) ** 2)))
    return {"spread": spread, "skill": skill, "ratio": spread / skill if skill else math.inf}


def spread_skill_ratio(members: Any, truth: Any, *, member_axis: int = 0) -> float:
    """Spread/skill ratio of an ensemble (1 = reliable, < 1 overconfident); see :func:`spread_skill`."""
    return spread_skill(members, truth, member_axis=member_axis)["ratio"]


def rank_histogram(members: Any, truth: Any, *, member_axis: int = 0, seed: int = 0) -> np.ndarray:
    """Rank histogram (Talagrand diagram): where the truth falls among the sorted members.

    Parameters
    ----------
    members : array_like
        The ensemble, members along ``member_axis``; removing that axis gives truth's shape.
    truth : array_like ``[..., H, W]``
        The verifying field.
    member_axis : int
        Axis of ``members`` that holds the members.
    seed : int
        Seed of the tie-breaking draws.

    Returns
    -------
    ndarray of int64, shape ``[m + 1]``
        Count of pixels whose truth has rank 0 (below every member) ... m (above every
        member). A reliable ensemble gives a flat histogram; a U shape is an
        under-dispersive (overconfident) ensemble, a dome an over-dispersive one.

    Notes
    -----
    The rank is the number of members below the truth; where members equal the truth (a
    collapsed ensemble has many ties) the rank is drawn uniformly among the tied positions
    (Hamill, 2001, Mon. Wea. Rev. 129), so identical members do not pile up in one bin.
    """
    x, y, m = _members_and_truth(members, truth, member_axis, least=1)
    below = _to_numpy(sum(x[k] < y for k in range(m))).astype(np.int64).ravel()
    ties = _to_numpy(sum(x[k] == y for k in range(m))).astype(np.int64).ravel()
    rng = np.random.default_rng(seed)
    rank = below + np.floor(rng.random(below.size) * (ties + 1)).astype(np.int64)
    return np.bincount(rank, minlength=m + 1).astype(np.int64)


# ---------------------------------------------------------------------------------------
# Spectra
# ---------------------------------------------------------------------------------------
def power_spectrum(field: Any, *, window: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged 2-D power spectrum over the last two axes.

    Parameters
    ----------
    field : array_like ``[..., H, W]``
        One or many fields; the spectra of all leading indices are averaged.
    window : bool
        Multiply each (mean-removed) field by a 2-D Hann window before the FFT, to reduce the
        leakage from the non-periodic edges of a regional domain. The power is divided by
        the window's mean square so that white-noise levels are unchanged.

    Returns
    -------
    wavenumber : numpy.ndarray
        Bin centres ``k = j / min(H, W)``, ``j = 1 .. min(H, W) // 2``, in cycles per grid
        length (per cell; 0.5 is the Nyquist wavenumber). A wave with ``n`` crests across an
        ``N``-cell square domain sits at ``k = n / N``.
    power : numpy.ndarray
        Mean of ``|F(kx, ky)|^2 / (H W)`` over the annulus ``|k| in [k - dk/2, k + dk/2)``
        (``dk = 1 / min(H, W)``), in the square of the field's unit.

    Notes
    -----
    ``F`` is the 2-D DFT of the field with its mean removed. With this normalisation, white
    noise of variance ``s^2`` has a flat spectrum at ``s^2``, and (Parseval) the mean of
    ``|F|^2 / (H W)`` over all frequencies is the field's variance; power in the corners
    beyond the Nyquist circle is not returned.
    """
    x = _to_numpy(field)
    if x.ndim < 2:
        raise GridShapeError(f"power_spectrum needs a field [..., H, W], got shape {x.shape}")
    h, w = x.shape[-2:]
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    if window:
        win = np.outer(np.hanning(h), np.hanning(w))
        x = x * win / math.sqrt(float(np.mean(win**2)))
    spec = np.abs(np.fft.fft2(x)) ** 2 / (h * w)
    spec = spec.reshape(-1, h, w).mean(axis=0)
    n = min(h, w)
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.fftfreq(w)[None, :]
    bins = np.rint(np.hypot(ky, kx) * n).astype(np.int64).ravel()
    counts = np.bincount(bins)
    sums = np.bincount(bins, weights=spec.ravel())
    j = np.arange(1, n // 2 + 1)
    return j / n, sums[j] / counts[j]


# ---------------------------------------------------------------------------------------
# The table row
# ---------------------------------------------------------------------------------------
def score_table(
    pred: Any,
    truth: Any,
    lr: Any = None,
    area: Any = None,
    factor: int | None = None,
    members: Any = None,
    *,
    data_range: float | None = None,
    member_axis: int = 0,
    fair: bool = False,
) -> dict[str, float]:
    """All scores of one prediction, as one row of the evaluation table.

    Parameters
    ----------
    pred, truth : array_like ``[..., H, W]``
        Prediction (for an ensemble, e.g. its mean or one member) and truth.
    lr : array_like ``[..., H/f, W/f]``, optional
        Coarse input: adds the mass-violation scores.
    area : array_like ``[H, W]`` or Grid, optional
        Fine-cell areas (m^2). Needed with ``lr`` unless ``lr`` is a DataArray with
        latitude/longitude, whose refined grid then gives them
        (``Grid.from_xarray(lr).refine(f).area``). When given, area-weighted RMSE and MAE are
        added.
    factor : int, optional
        Block size; inferred from the shapes when omitted.
    members : array_like, optional
        An ensemble (members along ``member_axis``): adds CRPS (``fair`` picks the estimator).
    data_range : float, optional
        PSNR/SSIM data range; default ``max(truth) - min(truth)``.

    Returns
    -------
    dict[str, float]
        ``MSE, RMSE, PSNR, MAE, SSIM, neg_num``; with ``members``: ``CRPS``; with ``lr``:
        ``mass_violation_max, mass_violation_mean`` (kg m-2) and ``mass_violation_rel``; with
        ``area``: ``RMSE_area_weighted, MAE_area_weighted``; with ``factor`` (given, or
        inferred from ``lr``) of 2 or more: ``blockiness`` (:func:`blockiness`).
    """
    r = default_data_range(truth) if data_range is None else float(data_range)
    row: dict[str, float] = {}
    row["MSE"] = mse(pred, truth)
    row["RMSE"] = math.sqrt(row["MSE"])
    row["PSNR"] = psnr(pred, truth, data_range=r)
    row["MAE"] = mae(pred, truth)
    row["SSIM"] = ssim(pred, truth, data_range=r)
    row["neg_num"] = neg_count(pred)
    if members is not None:
        row["CRPS"] = crps_ensemble(members, truth, member_axis=member_axis, fair=fair)
    if lr is not None:
        fine_area = area
        if fine_area is None:
            if not _is_xarray(lr):
                raise CoordinateError(
                    "mass violation needs the fine-cell areas: pass area=Grid(lat, lon).area "
                    "of the fine grid, or give lr as a DataArray with latitude/longitude"
                )
            lr_shape = tuple(_unwrap(lr).shape)
            f = _grid.infer_factor(tuple(_unwrap(pred).shape), lr_shape, factor)
            fine_area = _grid.Grid.from_xarray(lr).refine(f).area
        mv = mass_violation(pred, lr, fine_area, factor)
        row["mass_violation_max"] = mv["max_abs"]
        row["mass_violation_mean"] = mv["mean_abs"]
        row["mass_violation_rel"] = mv["max_rel"]
    if area is not None:
        row["RMSE_area_weighted"] = rmse(pred, truth, area=area)
        row["MAE_area_weighted"] = mae(pred, truth, area=area)
    if factor is None and lr is not None:
        factor = _grid.infer_factor(tuple(_unwrap(pred).shape), tuple(_unwrap(lr).shape), None)
    if factor is not None and int(factor) >= 2:
        row["blockiness"] = blockiness(pred, int(factor))
    return row
