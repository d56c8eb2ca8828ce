"""Downscaler: built once from a checkpoint, model or baseline; called on numpy, dask or xarray.

:class:`Downscaler` resolves the model once (a checkpoint path, a loaded
:class:`~climdown.nn.normalize.ConstrainedModel`, a baseline name such as ``"bicubic"``, or the
packaged default for the factor and constraint) and then downscales fields of any size:

* numpy input runs eagerly, in batches of tiles, with a progress bar;
* dask input builds a graph and computes nothing until asked: each chunk is extended by a halo
  of LR cells (``dask.array.overlap.overlap``, periodic in longitude on a global grid),
  downscaled with the same tiled code, and cropped, so chunk seams behave like tile seams;
* xarray input (DataArray or Dataset) is checked (units to kg m-2, 1-D lat/lon, finite and, for
  positive constraints, non-negative values) and comes back on the fine grid with fine
  lat/lon centres from :meth:`climdown.grid.Grid.refine`, the input's other coordinates, its
  attributes and a ``history`` line.

Recurrent models (``convgru``, ``flowconvgru``) trained on sequences of T frames see, for each
time step t, the window of frames t-T+1 .. t (the first frame repeated before the start of the
series) and give their last output frame, so every step has the temporal context the model was
trained with. The time axis is the DataArray's time dimension, or axis -3 of an array; dask
chunks along time overlap by T-1 steps, so a chunked series gives what the whole one gives.

Tiling and stitching follow :mod:`climdown.tiling`: every coarse cell's fine block comes from
exactly one constrained tile, so a conserving constraint conserves the stitched field exactly.
The fine-cell areas given to the model are those of the LR grid refined by the factor
(:func:`climdown.grid.cell_area` on refined bounds), so conservation is area-weighted on the
sphere. Loaded checkpoints are cached at module level (keyed by path, modification time and
device), never on an xarray accessor.

torch is imported when a model is built, not when this module is imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Hashable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from climdown.errors import (
    CheckpointError,
    ConfigError,
    CoordinateError,
    DataValueError,
    StoreError,
)
from climdown.grid import Grid, cell_area, find_latlon
from climdown.tiling import TilePlan
from climdown.units import CANONICAL, append_history, to_kg_m2

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BASELINES", "Downscaler", "downscale", "downscale_file", "clear_model_cache"]

#: Parameter-free models that need no checkpoint; any constraint applies to them.
BASELINES = ("nearest", "bilinear", "bicubic")

#: Checkpoint metadata keys read (in this order) for the LR grid spacing (deg) of the training
#: data; a float or ``[dlat, dlon]``.
SPACING_KEYS = ("lr_spacing_deg", "grid_spacing_deg", "grid_spacing")

#: Warn when the input spacing differs from the training spacing by more than this ratio.
SPACING_RATIO = 2.0

_MODEL_CACHE: dict[tuple[str, int, str], tuple[Any, dict]] = {}


def clear_model_cache() -> None:
    """Forget the checkpoints loaded so far (they are cached by path, mtime and device)."""
    _MODEL_CACHE.clear()


def _load_cached(path: Path, device: torch.device, factor: int) -> tuple[Any, dict]:
    from climdown.checkpoint import load_checkpoint

    path = path.resolve()
    if not path.is_file():
        raise CheckpointError(
            f"model {str(path)!r} is neither a file nor a baseline name; pass a checkpoint "
            f"written by `climdown train` or one of {', '.join(BASELINES)}"
        )
    key = (str(path), path.stat().st_mtime_ns, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_checkpoint(path, device=device)
    model, meta = _MODEL_CACHE[key]
    if int(meta.get("factor", getattr(model, "factor", -1))) != factor:
        raise CheckpointError(
            f"checkpoint {str(path)!r} downscales by factor {meta.get('factor')} but "
            f"factor={factor} was asked for; pass factor={meta.get('factor')} or a checkpoint "
            f"trained at factor {factor}"
        )
    return model, meta


def _default_model(factor: int, constraint: str) -> str | Path:
    try:
        from climdown.pretrained import default_checkpoint

        return default_checkpoint(factor, constraint)
    except (ImportError, AttributeError, CheckpointError) as err:
        warnings.warn(
            f"no default model for factor={factor}, constraint={constraint!r} ({err}); "
            f"falling back to the parameter-free 'bicubic' baseline with the {constraint!r} "
            "constraint. Pass model='bicubic' to silence this, or model='path/to/ckpt.pt'.",
            UserWarning,
            stacklevel=4,
        )
        return "bicubic"


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _FineArea:
    """Fine-cell areas (m^2) of windows of the LR grid, from the refined grid's bounds.

    Window coordinates are unwrapped: a periodic window may start below 0 or end past the
    last column; the longitude bounds continue by +-360 degrees there. On a grid with uniform
    longitude spacing the areas do not depend on the window's column, so windows in one row
    share one (cached) array, and their block weights are computed once per batch.
    """

    def __init__(self, grid: Grid, factor: int) -> None:
        fine = grid.refine(factor)
        self.factor = factor
        self.lat_b = fine.lat_b
        self.lon_b = fine.lon_b
        self.lon_span = fine.lon_b[-1] - fine.lon_b[0]
        self.radius = grid.radius
        width = np.diff(fine.lon_b)
        self.uniform_lon = bool(np.allclose(width, width[0], rtol=1e-9, atol=0.0))
        self._cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def __call__(self, row0: int, nrow: int, col0: int, ncol: int) -> np.ndarray:
        if self.uniform_lon:
            col0 = 0
        key = (row0, nrow, col0, ncol)
        if key not in self._cache:
            if len(self._cache) > 64:  # bounded: a few tile rows are live at a time
                self._cache.clear()
            f = self.factor
            lat_b = self.lat_b[row0 * f : (row0 + nrow) * f + 1]
            k = np.arange(col0 * f, (col0 + ncol) * f + 1)
            w = self.lon_b.size - 1
            lon_b = self.lon_b[k % w] + self.lon_span * (k // w)
            self._cache[key] = cell_area(lat_b, lon_b, self.radius)
        return self._cache[key]


def _spacing_of(meta: dict) -> tuple[float, float] | None:
    for key in SPACING_KEYS:
        value = meta.get(key)
        if value is None:
            continue
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
        return (float(v[0]), float(v[-1]))
    return None


class Downscaler:
    """A model ready to downscale fields of any size, built once and called many times.

    Parameters
    ----------
    model : str, path-like, ConstrainedModel or None
        A checkpoint path (loaded once and cached per process), a baseline name
        (``"nearest"``, ``"bilinear"``, ``"bicubic"``: no parameters, combined with
        ``constraint``), a model object, or None for the packaged default of ``factor`` and
        ``constraint`` (the bicubic baseline, with a UserWarning, where none exists).
    factor : int
        Downscaling factor (fine grid = factor x LR grid on both axes).
    constraint : str
        Constraint layer name (:mod:`climdown.nn.constraints`). A checkpoint or model
        trained with another constraint raises :class:`~climdown.errors.CheckpointError`.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``, ...
    batch_size : int
        Tiles (x time steps) per forward pass.
    tile : int
        Tile core size in LR cells (``tile x tile``).
    halo : int
        LR cells of context on each side of a tile (and of a dask chunk). The stitched result
        equals an untiled run where ``halo`` covers the model's receptive field; mass is
        conserved exactly whatever the halo.
    progress : bool, optional
        Show a tqdm bar on eager runs (default: only on a terminal).

    Attributes
    ----------
    model : ConstrainedModel
        In eval mode, on :attr:`device`.
    meta : dict
        Checkpoint metadata (empty for baselines and model objects).
    name : str
        How the model is named in ``history`` (baseline name, checkpoint file, class name).
    frames : int
        Time steps each output step sees: the training sequence length of a recurrent model
        (``convgru``, ``flowconvgru``), 1 for the others (see the module docstring).
    """

    def __init__(
        self,
        model: Any = None,
        *,
        factor: int = 4,
        constraint: str = "softmax",
        device: str = "auto",
        batch_size: int = 16,
        tile: int = 128,
        halo: int = 12,
        progress: bool | None = None,
    ) -> None:
        from climdown.nn.constraints import get_constraint

        self.factor = _check_positive("factor", factor)
        self.constraint = get_constraint(constraint).name
        self.batch_size = _check_positive("batch_size", batch_size)
        self.tile = _check_positive("tile", tile)
        if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
            raise ConfigError(f"halo must be an integer >= 0, got {halo!r}")
        self.halo = int(halo)
        self.progress = progress
        from climdown.nn.device import pick_device  # torch loads only when a model is used

        self.device = pick_device(device)
        self.meta: dict = {}
        if model is None:
            model = _default_model(self.factor, self.constraint)
        if isinstance(model, str) and model.lower() in BASELINES:
            from climdown.nn.models import get_model

            self.name = model.lower()
            self.model = get_model(self.name, self.factor, self.constraint)
        elif isinstance(model, (str, os.PathLike)):
            self.model, self.meta = _load_cached(Path(model), self.device, self.factor)
            self.name = Path(model).name
        elif hasattr(model, "constraint") and hasattr(model, "factor"):
            self.model = model
            self.name = str(getattr(model, "config", {}).get("name", type(model).__name__))
        else:
            raise ConfigError(
                f"model must be a checkpoint path, a baseline name ({', '.join(BASELINES)}), "
                f"a climdown model or None, got {type(model).__name__}: {model!r}"
            )
        if int(self.model.factor) != self.factor:
            raise CheckpointError(
                f"model {self.name!r} downscales by factor {self.model.factor} but "
                f"factor={self.factor} was asked for; pass factor={self.model.factor}"
            )
        seen = self.model.constraint.name
        if seen != self.constraint:
            raise CheckpointError(
                f"model {self.name!r} was built with constraint {seen!r} but "
                f"constraint={self.constraint!r} was asked for; pass constraint={seen!r} or a "
                f"model trained with {self.constraint!r}"
            )
        self.model = self.model.to(self.device).eval()
        from climdown.nn.models import RECURRENT

        config = getattr(self.model, "config", None) or {}
        recurrent = config.get("name") in RECURRENT
        self.frames = int(config.get("frames", 1)) if recurrent else 1
        self._positive = self.model.constraint.positive and self.model.constraint.conserving
        self._token = uuid.uuid4().hex

    def __repr__(self) -> str:
        return (
            f"Downscaler(model={self.name!r}, factor={self.factor}, "
            f"constraint={self.constraint!r}, device='{self.device}', tile={self.tile}, "
            f"halo={self.halo}, batch_size={self.batch_size})"
        )

    @property
    def description(self) -> str:
        """One line for ``history``: model, constraint, factor, tiling."""
        return (
            f"downscaled {self.factor}x with model {self.name!r}, constraint "
            f"{self.constraint!r} (tile {self.tile}, halo {self.halo} LR cells)"
        )

    # ------------------------------------------------------------------ dispatch
    def __call__(
        self,
        data: Any,
        *,
        grid: Grid | None = None,
        var: str | Sequence[str] | None = None,
        lat: str | None = None,
        lon: str | None = None,
    ) -> Any:
        """Downscale ``data``.

        Parameters
        ----------
        data : numpy.ndarray, dask.array.Array, xarray.DataArray or xarray.Dataset
            Coarse field(s) in kg m-2; arrays are ``[..., h, w]`` (any leading dims).
        grid : Grid, optional
            For arrays: the LR grid (area weights on the sphere, periodic longitude). Without
            it every fine cell of a block weighs the same and longitude does not wrap.
        var : str or list of str, optional
            Dataset variables to downscale (default: every variable on the lat/lon grid).
        lat, lon : str, optional
            Coordinate names when they cannot be found by name or CF attributes.

        Returns
        -------
        Same kind as ``data`` on the fine grid, float32, in kg m-2. Dask input gives a lazy
        result; xarray input keeps its coordinates, attributes and dimension order.
        """
        if isinstance(data, xr.Dataset):
            return self._dataset(data, var, lat, lon)
        if var is not None:
            raise ConfigError("var= selects variables of a Dataset; this input is not one")
        if isinstance(data, xr.DataArray):
            return self._dataarray(data, lat, lon, grid)
        if _is_dask(data):
            return self._dask(data, grid)
        arr = np.asarray(data)
        self._check_shape(arr.shape, grid)
        area = _FineArea(grid, self.factor) if grid is not None else None
        periodic = bool(grid is not None and grid.periodic)
        return self._numpy(arr, area, (0, 0), periodic, self.progress, arr.ndim >= 3)

    def _check_shape(self, shape: tuple[int, ...], grid: Grid | None) -> None:
        if len(shape) < 2:
            raise DataValueError(f"expected an array [..., lat, lon], got shape {shape}")
        if grid is not None and tuple(shape[-2:]) != grid.shape:
            raise CoordinateError(
                f"array of spatial shape {tuple(shape[-2:])} does not match the grid's "
                f"{grid.shape}; pass the LR grid of this array"
            )

    # ------------------------------------------------------------------ numpy (eager)
    def _check_values(self, x: np.ndarray) -> None:
        n_nan = int(np.count_nonzero(~np.isfinite(x)))
        if n_nan:
            raise DataValueError(
                f"input has {n_nan} NaN/inf value(s) of {x.size}; the model needs finite "
                "values everywhere. Fill them (e.g. da.fillna(0) or interpolate_na) or "
                "downscale a region without missing data, then mask the output"
            )
        if self._positive:
            n_neg = int(np.count_nonzero(x < 0))
            if n_neg:
                raise DataValueError(
                    f"input has {n_neg} negative value(s) (min {float(x.min()):.4g} kg m-2) but "
                    f"the {self.constraint!r} constraint needs x >= 0 to stay positive; clip "
                    "them (da.clip(min=0)) or use a signed constraint such as 'add'"
                )

    def _numpy(
        self,
        x: np.ndarray,
        area: _FineArea | None,
        offset: tuple[int, int],
        periodic: bool,
        progress: bool | None,
        timed: bool = False,
    ) -> np.ndarray:
        """Tiled eager run of ``x`` ``[..., h, w]`` -> ``[..., h f, w f]`` float32.

        ``offset`` places ``x`` in the (unwrapped) LR grid for the area lookup. ``timed``: axis
        -3 is time, and a recurrent model sees the window of its training length ending at
        each step (the first frame repeated before the start).
        """
        import torch
        from tqdm.auto import tqdm

        f = self.factor
        *lead, h, w = x.shape
        steps = lead[-1] if timed and self.frames > 1 else 1
        x4 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, steps, h, w)
        self._check_values(x4)
        out = np.empty((*x4.shape[:2], h * f, w * f), dtype=np.float32)
        plan = TilePlan((h, w), self.tile, self.halo, periodic=periodic)
        frames = self.frames if steps > 1 else 1
        window = {k: np.clip(np.arange(k - frames + 1, k + 1), 0, None) for k in range(steps)}
        items = [(t, n, k) for t in plan for n in range(x4.shape[0]) for k in range(steps)]
        bar = tqdm(
            total=len(items),
            desc=f"downscale {f}x",
            unit="tile",
            disable=None if progress is None else not progress,
        )
        with bar, torch.inference_mode():
            for b0 in range(0, len(items), self.batch_size):
                batch = items[b0 : b0 + self.batch_size]
                lr = np.stack([t.extract(x4[n])[window[k]] for t, n, k in batch])
                a = None
                if area is not None:
                    stack = [
                        area(
                            offset[0] + t.row.start,
                            t.row.length,
                            offset[1] + t.col.start,
                            t.col.length,
                        )
                        for t, _, _ in batch
                    ]
                    if all(s is stack[0] for s in stack):
                        stack = stack[:1]  # one [H, W] for the batch: weights computed once
                    a = torch.from_numpy(np.stack(stack)).to(self.device)
                lr = torch.from_numpy(lr[:, :, None]).to(self.device)  # [B, frames, 1, h, w]
                y = self.model(lr, area=a)[:, -1, 0].float().cpu().numpy()  # last frame
                for (t, n, k), yb in zip(batch, y, strict=True):
                    rows, cols = t.fine_core(f)
                    out[n, k, rows, cols] = yb[t.fine_crop(f)]
                bar.update(len(batch))
        return out.reshape(*lead, h * f, w * f)

    # ------------------------------------------------------------------ dask (lazy)
    def _dask(self, x: Any, grid: Grid | None, timed: bool = True) -> Any:
        import dask.array as dsa
        from dask.base import tokenize

        self._check_shape(x.shape, grid)
        f, halo = self.factor, self.halo
        ax_t, ax_r, ax_c = x.ndim - 3, x.ndim - 2, x.ndim - 1
        periodic = bool(grid is not None and grid.periodic)
        # a recurrent model's window reaches frames - 1 steps back along time (axis -3)
        timed = timed and x.ndim >= 3 and self.frames > 1
        depth = {ax_r: halo, ax_c: halo, **({ax_t: self.frames - 1} if timed else {})}
        # overlap needs chunks at least as deep as the overlap; merge smaller ones first
        chunks = list(x.chunks)
        for ax, d in depth.items():
            if d:
                chunks[ax] = dsa.overlap.ensure_minimum_chunksize(min(d, x.shape[ax]), x.chunks[ax])
        x = x.rechunk(tuple(chunks))
        # an axis held in one chunk needs no overlap (unless it wraps), and dask refuses a
        # depth deeper than the array: clip the depth per axis
        wraps = {ax_c: periodic}
        depth = {
            ax: min(d, x.shape[ax]) if (wraps.get(ax) or len(x.chunks[ax]) > 1) else 0
            for ax, d in depth.items()
        }
        depth_r, depth_c, depth_t = depth[ax_r], depth[ax_c], depth.get(ax_t, 0)
        if any(depth.values()):
            xo = dsa.overlap.overlap(
                x,
                depth=depth,
                boundary={ax: "periodic" if wraps.get(ax) else "none" for ax in depth},
            )
        else:
            xo = x
        area = _FineArea(grid, f) if grid is not None else None
        starts = [
            np.concatenate([[0], np.cumsum(c)[:-1]]) for c in (x.chunks[ax_r], x.chunks[ax_c])
        ]
        counts = (len(x.chunks[ax_r]), len(x.chunks[ax_c]))
        n_time = len(x.chunks[ax_t]) if timed else 1

        def run(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            k, i, j = ((0, 0, 0) + tuple(block_info[0]["chunk-location"]))[-3:]
            pre_r = depth_r if i > 0 else 0
            post_r = depth_r if i < counts[0] - 1 else 0
            pre_c = depth_c if (periodic or j > 0) else 0
            post_c = depth_c if (periodic or j < counts[1] - 1) else 0
            offset = (int(starts[0][i]) - pre_r, int(starts[1][j]) - pre_c)
            y = self._numpy(block, area, offset, False, False, timed)
            hh, ww = y.shape[-2:]
            y = y[..., pre_r * f : hh - post_r * f, pre_c * f : ww - post_c * f]
            if not depth_t:
                return y
            # steps before the chunk were context for the first windows; drop them and the
            # steps after it (the next chunk computes those)
            pre_t = depth_t if k > 0 else 0
            post_t = depth_t if k < n_time - 1 else 0
            return y[..., pre_t : y.shape[-3] - post_t, :, :]

        out_chunks = (
            *x.chunks[:-2],
            tuple(c * f for c in x.chunks[ax_r]),
            tuple(c * f for c in x.chunks[ax_c]),
        )
        return dsa.map_blocks(
            run,
            xo,
            chunks=out_chunks,
            dtype=np.float32,
            meta=np.empty((0,) * x.ndim, dtype=np.float32),
            name=f"climdown-downscale-{tokenize(xo, self._token)}",
        )

    # ------------------------------------------------------------------ xarray
    def _dataarray(
        self, da: xr.DataArray, lat: str | None, lon: str | None, grid: Grid | None = None
    ) -> xr.DataArray:
        lat_name, lon_name = find_latlon(da, lat=lat, lon=lon)
        lat_dim, lon_dim = da[lat_name].dims[0], da[lon_name].dims[0]
        if lat_dim == lon_dim:
            raise CoordinateError(
                f"{lat_name!r} and {lon_name!r} share the dimension {lat_dim!r} (an unstructured "
                "grid); climdown downscales regular lat/lon grids only: regrid first"
            )
        da = to_kg_m2(da)
        if grid is None:
            grid = Grid.from_xarray(da, lat_name, lon_name)
        self._warn_spacing(grid)
        other = [d for d in da.dims if d not in (lat_dim, lon_dim)]
        time = _time_dim(da, other) if self.frames > 1 else None
        if time is not None:  # the recurrent model's windows run along axis -3
            other = [d for d in other if d != time] + [time]
        x = da.transpose(*other, lat_dim, lon_dim)
        if _is_dask(x.data):
            y = self._dask(x.data, grid, timed=time is not None)
        else:
            y = self._numpy(
                np.asarray(x.values),
                _FineArea(grid, self.factor),
                (0, 0),
                grid.periodic,
                self.progress,
                timed=time is not None,
            )
        fine = grid.refine(self.factor)
        coords: dict[Hashable, Any] = {
            k: c for k, c in x.coords.items() if lat_dim not in c.dims and lon_dim not in c.dims
        }
        for name, values in ((lat_name, fine.lat), (lon_name, fine.lon)):
            attrs = {k: v for k, v in da[name].attrs.items() if k != "bounds"}
            dim = da[name].dims[0]
            coords[name] = xr.Variable(dim, values, attrs)
        attrs = append_history(da.attrs, self.description)
        attrs["units"] = CANONICAL
        out = xr.DataArray(y, dims=x.dims, coords=coords, name=da.name, attrs=attrs)
        return out.transpose(*da.dims)

    def _dataset(
        self, ds: xr.Dataset, var: str | Sequence[str] | None, lat: str | None, lon: str | None
    ) -> xr.Dataset:
        lat_name, lon_name = find_latlon(ds, lat=lat, lon=lon)
        spatial = {ds[lat_name].dims[0], ds[lon_name].dims[0]}
        if var is None:
            names = [k for k, v in ds.data_vars.items() if spatial <= set(v.dims)]
            if not names:
                raise CoordinateError(
                    f"no data variable of the dataset lies on the {sorted(spatial)} grid "
                    f"(variables: {list(ds.data_vars)}); pass var='name'"
                )
        else:
            names = [var] if isinstance(var, str) else list(var)
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise CoordinateError(
                    f"variable(s) {missing} not in the dataset; it has {list(ds.data_vars)}"
                )
        grid = Grid.from_xarray(ds, lat_name, lon_name)  # reads CF bounds variables
        out = {n: self._dataarray(ds[n], lat_name, lon_name, grid) for n in names}
        keep = {
            k: v for k, v in ds.data_vars.items() if k not in out and not (spatial & set(v.dims))
        }
        return xr.Dataset({**keep, **out}, attrs=append_history(ds.attrs, self.description))

    def _warn_spacing(self, grid: Grid) -> None:
        trained = _spacing_of(self.meta)
        if trained is None:
            return
        seen = grid.spacing
        ratios = [s / t for s, t in zip(seen, trained, strict=True) if t > 0]
        if any(r > SPACING_RATIO or r < 1.0 / SPACING_RATIO for r in ratios):
            warnings.warn(
                f"the input grid spacing ({seen[0]:.4g} x {seen[1]:.4g} deg) is more than "
                f"{SPACING_RATIO:g}x from the spacing model {self.name!r} was trained on "
                f"({trained[0]:.4g} x {trained[1]:.4g} deg); its output may be unreliable. "
                "Use a model trained at this resolution, or a baseline (model='bicubic')",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )


def _user_stacklevel() -> int:
    """``stacklevel`` for warnings.warn that points at the first caller outside climdown."""
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _time_dim(da: xr.DataArray, dims: Sequence[Hashable]) -> Hashable | None:
    """The time dimension among ``dims`` (datetime values, CF ``axis: T`` or the name), if any.

    Raises
    ------
    CoordinateError
        If the time coordinate does not increase step by step (a recurrent model reads the
        frames in order).
    """
    for dim in dims:
        coord = da.coords.get(dim)
        attrs = coord.attrs if coord is not None else {}
        dated = coord is not None and (
            np.issubdtype(coord.dtype, np.datetime64)
            or (
                coord.dtype == object
                and coord.size > 0
                and hasattr(coord.values.flat[0], "calendar")
            )
        )  # numpy datetimes or cftime dates (objects with a calendar), not any object labels
        if not (
            dated
            or attrs.get("axis") == "T"
            or attrs.get("standard_name") == "time"
            or str(dim) in ("time", "valid_time", "t")
        ):
            continue
        if coord is not None and coord.size > 1:
            values = coord.values
            if not bool(np.all(values[1:] > values[:-1])):
                raise CoordinateError(
                    f"time coordinate {dim!r} does not increase monotonically; a recurrent "
                    f"model reads the frames in order: sort first (da.sortby({str(dim)!r}))"
                )
        return dim
    return None


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


def downscale(
    obj: Any,
    factor: int = 4,
    constraint: str = "softmax",
    model: Any = None,
    var: str | Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 16,
    tile: int = 128,
    halo: int = 12,
    *,
    lat: str | None = None,
    lon: str | None = None,
    progress: bool | None = None,
) -> Any:
    """Downscale an xarray DataArray or Dataset (or an array) by ``factor``.

    A shortcut for ``Downscaler(model, factor=..., ...)(obj, var=var)``; build a
    :class:`Downscaler` once to downscale many objects with the same model.

    Parameters
    ----------
    obj : xarray.DataArray, xarray.Dataset, numpy or dask array
        Coarse field(s) in kg m-2 (water depths in mm or m are converted) on a regular
        lat/lon grid of any size.
    factor, constraint, model, device, batch_size, tile, halo, progress
        See :class:`Downscaler`.
    var : str or list of str, optional
        Dataset variables to downscale (default: all on the lat/lon grid).
    lat, lon : str, optional
        Coordinate names when they cannot be found by name or CF attributes.

    Returns
    -------
    Same kind as ``obj``, on the fine grid, in kg m-2; lazy when ``obj`` is dask-backed.

    Raises
    ------
    UnitsError
        Units missing or not a column mass / water depth (e.g. K).
    CoordinateError
        Latitude/longitude missing or 2-D (curvilinear grids are not supported yet).
    DataValueError
        NaN/inf input, or negative input with a positive constraint (softmax, mult); on dask
        input this is raised when the result is computed.
    CheckpointError
        A checkpoint of another factor or constraint.
    """
    down = Downscaler(
        model,
        factor=factor,
        constraint=constraint,
        device=device,
        batch_size=batch_size,
        tile=tile,
        halo=halo,
        progress=progress,
    )
    return down(obj, var=var, lat=lat, lon=lon)


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path.is_dir() and (path / "zarr.json").exists())


def _open(src: Path) -> xr.Dataset:
    if not src.exists():
        raise StoreError(f"input {str(src)!r} not found; pass a netCDF file or a zarr store")
    if _is_zarr(src):
        with warnings.catch_warnings():  # stores without consolidated metadata are fine
            warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
            return xr.open_zarr(src, chunks={})
    return xr.open_dataset(src, chunks={})


def _rechunk(ds: xr.Dataset, lat: str, lon: str, max_cells: int) -> xr.Dataset:
    """One time step (index of every non-spatial dim) per chunk, at most ``max_cells`` LR
    cells along lat and lon, so memory stays bounded on any file."""
    spatial = (ds[lat].dims[0], ds[lon].dims[0])
    chunks = {d: (min(max_cells, n) if d in spatial else 1) for d, n in ds.sizes.items()}
    return ds.chunk(chunks)


def downscale_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    factor: int = 4,
    constraint: str = "softmax",
    model: Any = None,
    var: str | Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 16,
    tile: int = 128,
    halo: int = 12,
    scheduler: Any = None,
    max_chunk: int = 512,
    overwrite: bool = False,
) -> Path:
    """Downscale a netCDF file or zarr store into a new netCDF file or zarr store.

    The input is opened lazily (one time step and at most ``max_chunk`` x ``max_chunk`` LR
    cells per dask chunk), downscaled chunk by chunk and written to a temporary path beside
    ``dst`` that is renamed into place at the end, so an interrupted run never leaves a
    partial output.

    Parameters
    ----------
    src : path-like
        netCDF file (``.nc``) or zarr store (``.zarr`` or a directory with ``zarr.json``).
    dst : path-like
        Output; ``.zarr`` writes a zarr store, anything else netCDF.
    factor, constraint, model, var, device, batch_size, tile, halo
        See :func:`downscale`.
    scheduler : optional
        A dask scheduler for the computation (``"threads"``, ``"synchronous"``, a
        ``distributed.Client``); default: dask's current one.
    max_chunk : int
        Largest chunk in LR cells along latitude and longitude.
    overwrite : bool
        Replace an existing ``dst``.

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    StoreError
        If ``src`` is missing or ``dst`` exists and ``overwrite`` is False.
    """
    import dask

    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise StoreError(f"output {str(dst)!r} exists; remove it or pass overwrite=True")
    ds = _open(src)
    lat_name, lon_name = find_latlon(ds)
    ds = _rechunk(ds, lat_name, lon_name, _check_positive("max_chunk", max_chunk))
    out = downscale(
        ds,
        factor=factor,
        constraint=constraint,
        model=model,
        var=var,
        device=device,
        batch_size=batch_size,
        tile=tile,
        halo=halo,
    )
    for v in out.variables.values():
        v.encoding = {k: e for k, e in v.encoding.items() if k in ("units", "calendar", "dtype")}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    target = tmp / dst.name
    try:
        with dask.config.set(scheduler=scheduler) if scheduler is not None else nullcontext():
            if _is_zarr(dst):
                # zarr needs uniform chunks; the halo merge can leave uneven ones at the edges
                out = out.chunk({d: max(c) for d, c in out.chunks.items()})
                out.to_zarr(target, mode="w", consolidated=False)
            else:
                out.to_netcdf(target)
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        os.replace(target, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ds.close()
    return dst
