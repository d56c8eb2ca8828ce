"""Downscaler: built once from a checkpoint, model or baseline; called on numpy, dask or xarray.

:class:`Downscaler` resolves the model once (a checkpoint path, a loaded
:class:`~climdown.nn.normalize.ConstrainedModel`, a baseline name such as ``"bicubic"``, or the
packaged default for the factor and constraint) and then downscales fields of any size:

* numpy input runs eagerly, in batches of tiles, with a progress bar;
* dask input builds a graph and computes nothing until asked: each chunk is extended by a halo
  of LR cells (``dask.array.overlap.overlap``, periodic in longitude on a global grid),
  downscaled with the same tiled code, and cropped, so chunk seams behave like tile seams;
* xarray input (DataArray or Dataset) is checked (packing decoded, units a column mass or a
  water depth of a variable that says it is water, 1-D lat/lon, finite values the model can
  take and, for positive constraints, non-negative values) and comes back on the fine grid
  with fine lat/lon centres from :meth:`climdown.grid.Grid.refine`, the input's other
  coordinates, its attributes and units (the model runs in kg m-2; a field in m comes back in
  m) and a ``history`` line, without packing attributes.

A model output that is not finite is an error naming the first bad cell, never a result.

:func:`downscale` is the one signature of downscaling: its keyword options (and
:class:`DownscaleOptions`, which holds their defaults) are what the ``.climdown`` accessor and
:func:`climdown.fileio.downscale_file` pass on, by keyword.

Recurrent models (``convgru``, ``flowconvgru``) trained on sequences of T frames see, for each
time step t, the window of frames t-T+1 .. t (the first frame repeated before the start of the
series) and give their last output frame, so every step has the temporal context the model was
trained with. The time axis is the DataArray's time dimension, or axis -3 of an array; dask
chunks along time overlap by T-1 steps, so a chunked series gives what the whole one gives.
A window whose frames are not the training step apart (checkpoint ``time_step_s``) is refused.

The model sees every input in the orientation it was trained on (checkpoint ``orientation``,
ERA5's latitude descending / longitude ascending where none is recorded): rows and columns
are reversed on the way in and back on the way out, so the answer does not depend on how the
input is stored. A Dataset's CF bounds are read (:meth:`climdown.grid.Grid.from_xarray`) and
the fine cells' bounds written on the output Dataset (:func:`climdown.grid.add_cf_bounds`).

Tiles and chunks follow :mod:`climdown.tiling` (:class:`~climdown.tiling.TilePlan`,
:class:`~climdown.tiling.ChunkAxis`): every coarse cell's fine block comes from exactly one
constrained tile, so a conserving constraint conserves the stitched field exactly. The
fine-cell areas given to the model are those of the LR grid refined by the factor
(:class:`climdown.grid.FineAreas`), so conservation is area-weighted on the sphere. Checkpoints
are loaded, cached and checked against the factor, constraint and grid spacing by
:mod:`climdown.checkpoint`.

torch is imported when a model is built, not when this module is imported.
"""

from __future__ import annotations

import copy
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climdown import validate
from climdown.errors import (
    CheckpointError,
    ClimdownError,
    ConfigError,
    CoordinateError,
    DataValueError,
)
from climdown.grid import (
    NO_FILL,
    CurvilinearGrid,
    FineAreas,
    Grid,
    Horizontal,
    Orientation,
    add_cf_bounds,
    cf_coordinate_attrs,
    curvilinear_coords,
    find_horizontal,
    grid_of,
    like_dtype,
)
from climdown.tiling import ChunkAxis, TilePlan
from climdown.units import (
    append_history,
    cf_global_attrs,
    cf_time_coordinate,
    cf_variable_attrs,
    water_column,
    without_packing,
)

__all__ = ["BASELINES", "MAX_INPUT_SCALES", "DownscaleOptions", "Downscaler", "downscale"]

#: Parameter-free models that need no checkpoint; any constraint applies to them.
BASELINES = ("nearest", "bilinear", "bicubic", "pycnophylactic")

log = logging.getLogger("climdown")

#: Inputs beyond this many normalisation scales (``|x| > MAX_INPUT_SCALES * scale`` in
#: kg m-2) are refused before the model runs: a network sees ``x / scale`` of order one in
#: training, and at 1e6 its float32 activations head for overflow (a TCW model's scale is
#: ~20 kg m-2, so anything past 2e7 kg m-2, e.g. an unmasked fill value of 9.97e36, is refused).
MAX_INPUT_SCALES = 1e6


@dataclass(frozen=True)
class DownscaleOptions:
    """How a model is run: the options of every downscaling entry point, and their defaults.

    :func:`downscale`, :class:`Downscaler`, the ``.climdown`` accessor and
    :func:`climdown.fileio.downscale_file` take these (by keyword) and no copies of them.

    Attributes
    ----------
    factor : int
        Downscaling factor (fine grid = factor x LR grid on both axes).
    constraint : str
        Constraint layer name (:mod:`climdown.nn.constraints`).
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
    progress : bool or None
        Show a tqdm bar on eager runs, on a terminal only (True or None; False: never).
    strict : bool
        A checkpoint trained on another variable than the data's (``tcw`` applied to
        ``tco3``): False warns, naming both; True raises
        :class:`~climdown.errors.CheckpointError` (:func:`climdown.checkpoint.check_expected`).

    Raises
    ------
    ConfigError
        A factor, batch size or tile that is not a positive integer, a negative halo, a
        constraint that is not a constraint's name (``None`` is not ``"none"``: say
        ``constraint="none"`` for the unconstrained model), or ``progress``/``strict`` that are
        not booleans.
    """

    factor: int = 4
    constraint: str = "softmax"
    device: str = "auto"
    batch_size: int = 8
    tile: int = 128
    halo: int = 12
    progress: bool | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", validate.factor(self.factor))
        object.__setattr__(self, "batch_size", validate.positive_int(self.batch_size, "batch_size"))
        object.__setattr__(self, "tile", validate.positive_int(self.tile, "tile"))
        object.__setattr__(self, "halo", validate.integer(self.halo, "halo", minimum=0))
        if not isinstance(self.constraint, str):
            from climdown.nn.constraints import CONSTRAINTS

            raise ConfigError(
                f"constraint must be the name of a constraint, one of "
                f"{', '.join(repr(c) for c in sorted(CONSTRAINTS))}; got {self.constraint!r}. "
                "For the unconstrained model say constraint='none'"
            )
        for name, value, allowed in (
            ("progress", self.progress, "True, False or None"),
            ("strict", self.strict, "True or False"),
        ):
            if not (isinstance(value, bool) or (value is None and name == "progress")):
                raise ConfigError(f"{name} must be {allowed}, got {value!r}")


def _default_model(factor: int, constraint: str) -> Any:
    """The packaged default for ``factor`` and ``constraint`` (its finest regime; a call picks
    the one nearest its input's spacing): a checkpoint, or the baseline that ships in its
    place, said in a notice; never a silent substitute.

    Raises
    ------
    ConfigError
        Where none is packaged, naming the packaged combinations and the explicit choices
        (a baseline such as ``model="bicubic"``, or a checkpoint).
    """
    from climdown.pretrained import available, select

    try:
        return select(factor, constraint)
    except CheckpointError as err:
        have = ", ".join(f"factor={f} constraint={c!r}" for f, c in available()) or "none"
        raise ConfigError(
            f"no packaged model for factor={factor}, constraint={constraint!r} (packaged: "
            f"{have}). Choose one explicitly: model='bicubic' (or "
            f"{', '.join(repr(b) for b in BASELINES if b != 'bicubic')}: parameter-free "
            f"baselines, any factor, with the {constraint!r} constraint), or "
            "model='path/to/checkpoint.pt' trained at this factor (`climdown train`)"
        ) from err


class Downscaler:
    """A model ready to downscale fields of any size, built once and called many times.

    Parameters
    ----------
    model : str, path-like, ConstrainedModel or None
        A checkpoint path (loaded once and cached per process), a baseline name
        (``"nearest"``, ``"bilinear"``, ``"bicubic"``: no parameters, combined with
        ``constraint``), a model object, or None for the packaged default of ``factor`` and
        ``constraint`` (:class:`~climdown.errors.ConfigError` where none is packaged: pass a
        baseline or a checkpoint explicitly).
    **options
        :class:`DownscaleOptions`: ``factor``, ``constraint``, ``device``, ``batch_size``,
        ``tile``, ``halo``, ``progress``, ``strict``, with its defaults. A checkpoint or model
        of another factor or constraint raises :class:`~climdown.errors.CheckpointError`.

    Attributes
    ----------
    options : DownscaleOptions
        The options, validated (``constraint`` by its registry name).
    model : ConstrainedModel
        In eval mode, on :attr:`device`.
    device : torch.device
        Where the model runs.
    meta : dict
        Checkpoint metadata (empty for baselines and model objects).
    name : str
        How the model is named in ``history`` (baseline name, checkpoint file, class name).
    frames : int
        Time steps each output step sees: the training sequence length of a recurrent model
        (``convgru``, ``flowconvgru``), 1 for the others (see the module docstring).
    orientation : climdown.grid.Orientation
        The order of rows and columns the model was trained on (checkpoint metadata
        ``orientation``; ERA5's, latitude descending and longitude ascending, where none is
        recorded). Every input is presented to the model in it and the result flipped back.
    time_step_s : float or None
        Seconds between the frames a recurrent model was trained on (checkpoint metadata
        ``time_step_s``); windows of other spacing are refused.
    max_input : float
        The largest ``|x|`` in kg m-2 the model is given: :data:`MAX_INPUT_SCALES` x its
        normalisation scale (1 kg m-2 for baselines). Larger inputs are refused before any
        compute (see :meth:`__call__`).
    """

    def __init__(self, model: Any = None, **options: Any) -> None:
        from climdown.nn.constraints import get_constraint

        names = [f.name for f in fields(DownscaleOptions)]
        opts = DownscaleOptions(**validate.check_keys(options, names, "Downscaler"))
        self.options = replace(opts, constraint=get_constraint(opts.constraint).name)
        from climdown.nn.device import pick_device  # torch loads only when a model is used

        self.device = pick_device(self.options.device)
        self.meta: dict = {}
        self._default: Any = None  # the packaged choice in use when model is None
        self._noticed: set[str] = set()
        if model is None:
            self._use_default(_default_model(self.factor, self.constraint))
        else:
            self._adopt(model)

    def _adopt(self, model: Any) -> None:
        """Load or build ``model`` and take the settings it brings (frames, orientation, ...)."""
        self.meta = {}
        if isinstance(model, str) and model.lower() in BASELINES:
            from climdown.nn.models import get_model

            self.name = model.lower()
            self.model = get_model(self.name, self.factor, self.constraint)
        elif isinstance(model, (str, os.PathLike)):
            self.name = Path(model).name
            self.model, self.meta = self._load(Path(model))
        elif hasattr(model, "constraint") and hasattr(model, "factor"):
            from climdown.checkpoint import check_expected

            self.model = model
            self.name = str(getattr(model, "config", {}).get("name", type(model).__name__))
            seen = {"factor": model.factor, "constraint": model.constraint.name}
            check_expected(
                f"model {self.name!r}", seen, factor=self.factor, constraint=self.constraint
            )
        else:
            raise ConfigError(
                f"model must be a checkpoint path, a baseline name ({', '.join(BASELINES)}), "
                f"a climdown model or None, got {type(model).__name__}: {model!r}"
            )
        from climdown.nn.device import to_device
        from climdown.nn.models import RECURRENT

        self.model = to_device(self.model, self.device).eval()  # channels-last convolutions

        config = getattr(self.model, "config", None) or {}
        recurrent = config.get("name") in RECURRENT
        self.frames = int(config.get("frames", 1)) if recurrent else 1
        try:  # checkpoints without a record (and model objects, baselines) are ERA5's
            self.orientation = Orientation.from_meta(self.meta.get("orientation"))
        except CoordinateError as err:
            raise CheckpointError(f"checkpoint {self.name!r}: {err}") from err
        self.time_step_s = self.meta.get("time_step_s")
        self._step_warned = False
        self._positive = self.model.constraint.positive and self.model.constraint.conserving
        scale = getattr(self.model, "scale", None)
        self.max_input = MAX_INPUT_SCALES * (1.0 if scale is None else float(scale))
        self._token = uuid.uuid4().hex

    def _use_default(self, pick: Any) -> None:
        """Adopt a packaged default (:class:`climdown.pretrained.Default`): its checkpoint, or
        the baseline that ships in its place, with a one-line notice saying why."""
        if self._default is not None and pick.key == self._default.key:
            return
        self._default = pick
        if pick.path is not None:
            self._adopt(pick.path)
            return
        self._adopt(pick.fallback)

    def _say_default(self) -> None:
        """Log, once per regime, why the packaged default about to run is a baseline (said when
        a call runs it, not for a regime no input used, such as the finest one adopted at
        construction)."""
        pick = self._default
        if pick is None or pick.path is not None or pick.key in self._noticed:
            return
        self._noticed.add(pick.key)
        log.warning(
            f"packaged default for factor={self.factor}, constraint={self.constraint!r} "
            f"({pick.key}): using the {pick.fallback!r} baseline, because {pick.why}"
        )

    def _pick_default(self, grid: Grid | CurvilinearGrid) -> None:
        """With no ``model`` given: the packaged default nearest this input's spacing."""
        if self._default is None:
            return
        from climdown.pretrained import select

        self._use_default(select(self.factor, self.constraint, grid.spacing))

    def _load(self, path: Path) -> tuple[Any, dict]:
        """The checkpoint at ``path``, loaded once per process, of this factor and constraint."""
        from climdown.checkpoint import load_cached

        if not path.is_file():
            raise CheckpointError(
                f"model {str(path)!r} is neither a file nor a baseline name; pass a checkpoint "
                f"written by `climdown train` or one of {', '.join(BASELINES)}"
            )
        return load_cached(
            path, device=self.device, expect_factor=self.factor, expect_constraint=self.constraint
        )

    @property
    def factor(self) -> int:
        """Downscaling factor."""
        return self.options.factor

    @property
    def constraint(self) -> str:
        """Registry name of the constraint layer."""
        return self.options.constraint

    def __repr__(self) -> str:
        o = self.options
        return (
            f"Downscaler(model={self.name!r}, factor={o.factor}, "
            f"constraint={o.constraint!r}, device='{self.device}', tile={o.tile}, "
            f"halo={o.halo}, batch_size={o.batch_size})"
        )

    @property
    def description(self) -> str:
        """One line for ``history``: model, constraint, factor, tiling."""
        o = self.options
        return (
            f"downscaled {o.factor}x with model {self.name!r}, constraint "
            f"{o.constraint!r} (tile {o.tile}, halo {o.halo} LR cells)"
        )

    # ------------------------------------------------------------------ dispatch
    def __call__(
        self,
        data: Any,
        *,
        grid: Grid | CurvilinearGrid | None = None,
        var: str | Sequence[str] | None = None,
        lat: str | None = None,
        lon: str | None = None,
    ) -> Any:
        """Downscale ``data``.

        Parameters
        ----------
        data : numpy.ndarray, dask.array.Array, xarray.DataArray or xarray.Dataset
            Coarse field(s): arrays in kg m-2, ``[..., h, w]`` (any leading dims); xarray in
            its units (see :func:`downscale`).
        grid : Grid, optional
            For arrays: the LR grid (area weights on the sphere, periodic longitude). Without
            it every fine cell of a block weighs the same and longitude does not wrap.
        var : str or list of str, optional
            Dataset variables to downscale (default: every variable on the lat/lon grid).
        lat, lon : str, optional
            Coordinate names when they cannot be found by name or CF attributes.

        Returns
        -------
        Same kind as ``data`` on the fine grid, float32, in the input's units. Dask input
        gives a lazy result; xarray input keeps its coordinates, attributes, units and
        dimension order.
        """
        if isinstance(data, xr.Dataset):
            return self._dataset(data, var, lat, lon)
        if var is not None:
            raise ConfigError("var= selects variables of a Dataset; this input is not one")
        if isinstance(data, xr.DataArray):
            return self._dataarray(data, lat, lon, grid)
        return self._run(data if _is_dask(data) else np.asarray(data), grid, timed=True)

    def _run(
        self,
        x: Any,
        grid: Grid | CurvilinearGrid | None,
        timed: bool,
        to_kg: float = 1.0,
        locate: Callable[[tuple[int, ...]], str] | None = None,
    ) -> Any:
        """Downscale the array ``x`` ``[..., h, w]`` (numpy: eagerly; dask: lazily) on ``grid``.

        The model sees ``x`` in the orientation it was trained on (:attr:`orientation`): the
        rows and/or columns are reversed on the way in and the result on the way out, so the
        answer does not depend on how the input is stored. Without a grid the array is taken
        to be in the model's orientation.
        """
        self._check_shape(x.shape, grid)
        self._say_default()
        flips = (False, False)
        if grid is not None:
            grid, flips = grid.oriented(self.orientation)
            x = _flip(x, flips)
        f = self.factor
        locate = _unflipped(locate or _index_text, flips, (x.shape[-2] * f, x.shape[-1] * f))
        timed = timed and x.ndim >= 3
        if _is_dask(x):
            return _flip(self._dask(x, grid, timed=timed, to_kg=to_kg, locate=locate), flips)
        area = FineAreas(grid, f) if grid is not None else None
        periodic = bool(grid is not None and grid.periodic)
        y = self._numpy(x, area, (0, 0), periodic, self.options.progress, timed, to_kg)
        self._check_output(y, (0,) * y.ndim, locate)
        return np.ascontiguousarray(_flip(y, flips))

    def _check_shape(self, shape: tuple[int, ...], grid: Grid | CurvilinearGrid | None) -> None:
        if len(shape) < 2:
            raise DataValueError(f"expected an array [..., lat, lon], got shape {shape}")
        if grid is not None and tuple(shape[-2:]) != grid.shape:
            raise CoordinateError(
                f"array of spatial shape {tuple(shape[-2:])} does not match the grid's "
                f"{grid.shape}; pass the LR grid of this array"
            )

    # ------------------------------------------------------------------ numpy (eager)
    def _check_values(self, x: np.ndarray, to_kg: float = 1.0) -> None:
        """Refuse input the model cannot take, in its own dtype and units (before any cast).

        NaN and inf are counted as such; finite values beyond :attr:`max_input` kg m-2 (which
        float32 may not even hold) are refused as too large, never as "NaN/inf".
        """
        n_nan = int(np.count_nonzero(np.isnan(x)))
        n_inf = int(np.count_nonzero(np.isinf(x)))
        if n_nan or n_inf:
            raise DataValueError(
                f"input has {n_nan + n_inf} NaN/inf value(s) of {x.size} ({n_nan} NaN, {n_inf} "
                "inf); the model needs finite values everywhere. Fill them (e.g. da.fillna(0) "
                "or interpolate_na) or downscale a region without missing data, then mask the "
                "output"
            )
        big = np.abs(np.asarray(x, dtype=np.float64)) * to_kg > self.max_input
        n_big = int(np.count_nonzero(big))
        if n_big:
            worst = float(np.max(np.abs(np.asarray(x, dtype=np.float64))))
            raise DataValueError(
                f"input has {n_big} finite value(s) too large for the model (largest |x| "
                f"{worst:.4g}, {worst * to_kg:.4g} kg m-2; float32 holds up to "
                f"{float(np.finfo(np.float32).max):.4g}): model {self.name!r} takes |x| <= "
                f"{self.max_input:.4g} kg m-2 ({MAX_INPUT_SCALES:g} x its normalisation scale). "
                "Such values are not a water column: check the units, and mask fill values "
                "(e.g. 9.97e36) before downscaling"
            )
        if self._positive:
            n_neg = int(np.count_nonzero(x < 0))
            if n_neg:
                raise DataValueError(
                    f"input has {n_neg} negative value(s) (min {float(x.min()) * to_kg:.4g} "
                    f"kg m-2) but the {self.constraint!r} constraint needs x >= 0 to stay "
                    "positive; clip them (da.clip(min=0)) or use a signed constraint such as "
                    "'add'"
                )

    def _check_output(
        self, y: np.ndarray, origin: Sequence[int], locate: Callable[[tuple[int, ...]], str]
    ) -> None:
        """Raise unless the model's output ``y`` (placed at ``origin`` of the whole output) is
        finite: a NaN or inf is never returned or written."""
        bad = ~np.isfinite(y)
        if not bad.any():
            return
        first = np.unravel_index(int(np.argmax(bad)), y.shape)
        index = tuple(int(i) + int(o) for i, o in zip(first, origin, strict=True))
        raise DataValueError(
            f"model {self.name!r} returned {int(bad.sum())} non-finite value(s) (NaN/inf) of "
            f"{y.size} from finite input; first at {locate(index)}. Nothing is returned: the "
            "model is broken for this input (a damaged checkpoint, or input far from its "
            "training data). Check the checkpoint, or use a baseline (model='bicubic')"
        )

    def _numpy(
        self,
        x: np.ndarray,
        area: FineAreas | None,
        offset: tuple[int, int],
        periodic: bool,
        progress: bool | None,
        timed: bool = False,
        to_kg: float = 1.0,
    ) -> np.ndarray:
        """Tiled eager run of ``x`` ``[..., h, w]`` -> ``[..., h f, w f]`` float32.

        ``offset`` places ``x`` in the (unwrapped) LR grid for the area lookup. ``timed``: axis
        -3 is time, and a recurrent model sees the window of its training length ending at
        each step (the first frame repeated before the start). ``to_kg``: ``x`` is in units
        of which one is ``to_kg`` kg m-2 (the model runs in kg m-2); the result is in ``x``'s
        units. Values are checked in their own dtype and units before anything is cast.
        """
        import torch
        from tqdm.auto import tqdm

        f = self.factor
        *lead, h, w = x.shape
        steps = lead[-1] if timed and self.frames > 1 else 1
        self._check_values(x, to_kg)
        xk = x if to_kg == 1.0 else np.asarray(x, dtype=np.float64) * to_kg
        x4 = np.ascontiguousarray(xk, dtype=np.float32).reshape(-1, steps, h, w)
        out = np.empty((*x4.shape[:2], h * f, w * f), dtype=np.float32)
        o = self.options
        plan = TilePlan((h, w), o.tile, o.halo, periodic=periodic)
        frames = self.frames if steps > 1 else 1
        window = {k: np.clip(np.arange(k - frames + 1, k + 1), 0, None) for k in range(steps)}
        items = [(t, n, k) for t in plan for n in range(x4.shape[0]) for k in range(steps)]
        bar = tqdm(
            total=len(items),
            desc=f"downscale {f}x",
            unit="tile",
            disable=True if progress is False else None,  # None: only on a terminal
        )
        with bar, torch.inference_mode():
            for b0 in range(0, len(items), o.batch_size):
                batch = items[b0 : b0 + o.batch_size]
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
                lr_t = torch.from_numpy(lr[:, :, None]).to(self.device)  # [B, frames, 1, h, w]
                y = self.model(lr_t, area=a)[:, -1, 0].float().cpu().numpy()  # last frame
                for (t, n, k), yb in zip(batch, y, strict=True):
                    rows, cols = t.fine_core(f)
                    out[n, k, rows, cols] = yb[t.fine_crop(f)]
                bar.update(len(batch))
        out = out.reshape(*lead, h * f, w * f)
        return out if to_kg == 1.0 else out / np.float32(to_kg)

    # ------------------------------------------------------------------ dask (lazy)
    def _dask(
        self,
        x: Any,
        grid: Grid | CurvilinearGrid | None,
        timed: bool = True,
        to_kg: float = 1.0,
        locate: Callable[[tuple[int, ...]], str] | None = None,
    ) -> Any:
        import dask.array as dsa
        from dask.base import tokenize

        self._check_shape(x.shape, grid)
        f = self.factor
        ax_t, ax_r, ax_c = x.ndim - 3, x.ndim - 2, x.ndim - 1
        periodic = bool(grid is not None and grid.periodic)
        # a recurrent model's window reaches frames - 1 steps back along time (axis -3)
        timed = timed and x.ndim >= 3 and self.frames > 1
        want = {ax_r: (self.options.halo, False), ax_c: (self.options.halo, periodic)}
        if timed:
            want[ax_t] = (self.frames - 1, False)
        # the halo/crop rules are climdown.tiling's; chunks shorter than the overlap merge first
        axes = {ax: ChunkAxis(x.chunks[ax], d, p) for ax, (d, p) in want.items()}
        x = x.rechunk(
            tuple(
                dsa.overlap.ensure_minimum_chunksize(axes[ax].min_chunk, c)
                if ax in axes and axes[ax].min_chunk
                else c
                for ax, c in enumerate(x.chunks)
            )
        )
        axes = {ax: ChunkAxis(x.chunks[ax], d, p) for ax, (d, p) in want.items()}
        depth = {ax: a.overlap for ax, a in axes.items()}
        if any(depth.values()):
            boundary = {ax: "periodic" if a.periodic else "none" for ax, a in axes.items()}
            xo = dsa.overlap.overlap(x, depth=depth, boundary=boundary)
        else:
            xo = x
        area = FineAreas(grid, f) if grid is not None else None
        rows, cols = axes[ax_r], axes[ax_c]
        scale = {ax: 1 if ax == ax_t else f for ax in axes}

        # the graph keeps the model chosen now: with model=None a later call on an input of
        # another spacing may adopt another packaged default (attributes are replaced, never
        # mutated in place, so a shallow copy holds this one)
        frozen = copy.copy(self)

        def run(block: np.ndarray, block_info: dict[Any, Any]) -> np.ndarray:  # dask fills it
            loc = block_info[0]["chunk-location"]
            i, j = loc[ax_r], loc[ax_c]
            offset = (rows.starts[i] - rows.pad(i)[0], cols.starts[j] - cols.pad(j)[0])
            y = frozen._numpy(block, area, offset, False, False, timed, to_kg)
            # crop to the chunk's own cells: time steps before it were context for its first
            # windows, and the next chunk computes the steps after it
            crop = [slice(None)] * y.ndim
            for ax, a in axes.items():
                crop[ax] = a.core(loc[ax], scale[ax])
            y = y[tuple(crop)]
            origin = [start for start, _ in block_info[None]["array-location"]]
            frozen._check_output(y, origin, locate or _index_text)
            return y

        out_chunks = (*x.chunks[:-2], *(tuple(c * f for c in a.chunks) for a in (rows, cols)))
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
        self,
        da: xr.DataArray,
        lat: str | None,
        lon: str | None,
        grid: Grid | CurvilinearGrid | None = None,
        h: Horizontal | None = None,
    ) -> xr.DataArray:
        h = h if h is not None else find_horizontal(da, lat=lat, lon=lon)
        lat_dim, lon_dim = h.dims
        # packing decoded, units and water identity checked; the values stay in their units
        # (converted to kg m-2 and back in each block) so the output is in the input's units
        da, to_kg = water_column(da)
        if grid is None:
            grid = grid_of(da, lat=lat, lon=lon)
        self._pick_default(grid)  # before the checks: they are of the model that will run
        self._check_variable(da)
        self._warn_spacing(grid)
        other = [d for d in da.dims if d not in (lat_dim, lon_dim)]
        time = _time_dim(da, other) if self.frames > 1 else None
        if time is not None:  # the recurrent model's windows run along axis -3
            other = [d for d in other if d != time] + [time]
            self._check_time_step(da, time)
        x = da.transpose(*other, lat_dim, lon_dim)
        fine = grid.refine(self.factor)
        locate = _locator(x, _fine_labels(fine, h))
        data = x.data if _is_dask(x.data) else np.asarray(x.values)
        y = self._run(data, grid, timed=time is not None, to_kg=to_kg, locate=locate)
        coords = _output_coords(x, lat_dim, lon_dim)
        if isinstance(fine, CurvilinearGrid):
            # 2-D lat/lon, the native rlat/rlon or x/y and the grid mapping, refined
            coords.update(curvilinear_coords(fine, h, da, clean=without_packing))
        else:
            for name, values, kind in ((h.lat, fine.lat, "lat"), (h.lon, fine.lon, "lon")):
                attrs = cf_coordinate_attrs(without_packing(da[name].attrs), kind)
                values = like_dtype(values, da[name])  # float32 coordinates stay float32
                coords[name] = xr.Variable(da[name].dims[0], values, attrs, dict(NO_FILL))
        # in the input's units (and its units_original, if any), never its packing, with CF's
        # names where known (climdown.units.cf_variable_attrs); a history line that says so
        # where the values come back in another type than they came in
        line = self.description
        if da.dtype != np.float32:
            line += f"; {da.dtype} values returned as float32 (the model computes in float32)"
        attrs = append_history(cf_variable_attrs(da.name, without_packing(da.attrs)), line)
        if isinstance(fine, CurvilinearGrid) and fine.mapping is not None:
            attrs["grid_mapping"] = fine.mapping.name
        out = xr.DataArray(y, dims=x.dims, coords=coords, name=da.name, attrs=attrs)
        return out.transpose(*da.dims)

    def _dataset(
        self, ds: xr.Dataset, var: str | Sequence[str] | None, lat: str | None, lon: str | None
    ) -> xr.Dataset:
        h = find_horizontal(ds, lat=lat, lon=lon)
        spatial = set(h.dims)
        if var is None:
            names = [k for k, v in ds.data_vars.items() if spatial <= set(v.dims)]
            if not names:
                raise CoordinateError(
                    f"no data variable of the dataset lies on the {sorted(map(str, spatial))} grid "
                    f"(variables: {list(ds.data_vars)}); pass var='name'"
                )
        else:
            names = [var] if isinstance(var, str) else list(var)
            missing = [n for n in names if n not in ds.data_vars]
            if missing:
                raise CoordinateError(
                    f"variable(s) {missing} not in the dataset; it has {list(ds.data_vars)}"
                )
        grid = grid_of(ds, lat=lat, lon=lon)  # reads (and checks) CF bounds
        out = {}
        for n in names:
            try:
                out[n] = self._dataarray(ds[n], h.lat, h.lon, grid, h)
            except ClimdownError as e:
                if len(names) == 1:
                    raise
                # which of several variables failed, and how to leave it out
                others = [m for m in names if m != n]
                why = str(e.args[0] if e.args else e).rstrip(".")
                raise type(e)(
                    f"variable {n!r} of the dataset: {why}. "
                    f"Without var=, every variable on the lat/lon grid is downscaled "
                    f"({names}); pass var={others if len(others) > 1 else others[0]!r} "
                    f"to leave {n!r} out"
                ) from e
        keep = {
            k: v
            for k, v in ds.data_vars.items()
            if k not in out and not (spatial & set(v.dims)) and k != h.mapping
        }
        # the input's global attributes (licence, source, ...) with CF-1.8 Conventions, a title
        # and a history line (climdown.units.cf_global_attrs)
        subject = ", ".join(str(out[n].attrs.get("long_name") or n) for n in names)
        title = f"{subject}, downscaled {self.factor}x by climdown"
        attrs = cf_global_attrs(ds.attrs, self.description, title=title)
        hr = xr.Dataset({**keep, **out}, attrs=attrs)
        # the fine cells' CF bounds, under the input's bounds names where it had them
        lat_b, lon_b = (None if n is None else ds[n].attrs.get("bounds") for n in (h.lat, h.lon))
        return add_cf_bounds(hr, grid.refine(self.factor), h.lat, h.lon, names=(lat_b, lon_b))

    def _check_variable(self, da: xr.DataArray) -> None:
        """A checkpoint applied to another variable than its own: a warning, or with
        ``strict=True`` an error, both naming the two (:func:`climdown.checkpoint.check_expected`)."""
        # a checkpoint records the variable it was trained on; the packaged defaults serve
        # every water column (TCW, TCWV), whose identity water_column() has checked
        if self.meta and self._default is None:
            from climdown.checkpoint import check_expected

            name = "an unnamed DataArray" if da.name is None else str(da.name)
            check_expected(
                f"checkpoint {self.name!r}", self.meta, variable=name, strict=self.options.strict
            )

    def _check_time_step(self, da: xr.DataArray, time: Hashable) -> None:
        """Refuse windows whose frames are not as far apart as the training frames.

        A recurrent model learns how a field moves from one frame to the next at its training
        step (checkpoint metadata ``time_step_s``). Where no step is recorded, or the time
        coordinate has no dates, the spacing cannot be checked: a warning says so, once.
        """
        coord = da.coords.get(time)
        if coord is None or coord.size < 2:
            return  # one step: its window is that frame repeated
        steps = _time_steps_s(coord)
        trained = self.time_step_s
        if trained is None or steps is None:
            if not self._step_warned:
                self._step_warned = True
                why = (
                    f"model {self.name!r} records no training time step (checkpoint metadata "
                    "'time_step_s'; checkpoints from before it was recorded, model objects)"
                    if trained is None
                    else f"time coordinate {str(time)!r} holds no dates"
                )
                warnings.warn(
                    f"the spacing of the recurrent model's {self.frames}-frame windows along "
                    f"{str(time)!r} cannot be checked: {why}. Make sure the input's steps are "
                    "as far apart as the training data's: a window of other spacing gives a "
                    "wrong result without an error",
                    UserWarning,
                    stacklevel=4,
                )
            return
        trained = float(trained)
        bad = np.abs(steps - trained) > 1e-6 * trained + 1e-3
        if np.any(bad):
            i = int(np.argmax(bad))
            t0, t1 = coord.values[i], coord.values[i + 1]
            raise CoordinateError(
                f"recurrent model {self.name!r} was trained on frames {_duration(trained)} "
                f"apart (checkpoint time_step_s={trained:g}), but the input's time coordinate "
                f"{str(time)!r} steps by {_duration(float(steps[i]))} from {t0} to {t1} "
                f"(index {i} to {i + 1}; {int(bad.sum())} of {steps.size} steps differ): its "
                f"{self.frames}-frame windows would join frames the model never saw together. "
                f"Select or resample the input at a step of {_duration(trained)} (e.g. "
                f"da.resample({str(time)}=...).nearest()), split it where it has gaps, or use a "
                "feed-forward model (cnn)"
            )

    def _warn_spacing(self, grid: Grid | CurvilinearGrid) -> None:
        from climdown.checkpoint import check_spacing

        if self._default is not None:  # the packaged defaults: warn outside all they cover
            from climdown.pretrained import covered_spacing

            near = self._default.lr_spacing_deg
            if near is not None and self._default.path is not None:
                covered = covered_spacing(self.factor, self.constraint)
                check_spacing({"lr_spacing_deg": list(near)}, grid.spacing, self.name, covered)
            return
        if self.meta:  # a checkpoint: it records the grid spacing it was trained on
            check_spacing(self.meta, grid.spacing, self.name)


def _output_coords(x: xr.DataArray, lat_dim: Hashable, lon_dim: Hashable) -> dict[Hashable, Any]:
    """The coordinates of ``x`` off the lat/lon dimensions, as they go to an output.

    No packing of the input travels (:func:`climdown.units.without_packing`), no coordinate has
    a ``_FillValue`` (CF: coordinate variables have no missing values), and a time coordinate
    gets CF's ``standard_name``/``axis`` and a CF-1.8 storage type
    (:func:`climdown.units.cf_time_coordinate`).
    """
    coords: dict[Hashable, Any] = {}
    for name, c in x.coords.items():
        if lat_dim in c.dims or lon_dim in c.dims:
            continue
        v = c.variable
        attrs, encoding = without_packing(v.attrs), without_packing(v.encoding)
        if _is_dated(c):  # the input's storage type where CF-1.8 allows it (dtype is packing)
            attrs, encoding = cf_time_coordinate(attrs, v.encoding, dimension=v.dims == (name,))
        else:
            encoding.update(NO_FILL)
        coords[name] = xr.Variable(v.dims, v.data, attrs, encoding)
    return coords


def _is_dated(coord: xr.DataArray) -> bool:
    """Whether a coordinate holds dates: numpy datetimes or cftime dates (objects with a calendar)."""
    return np.issubdtype(coord.dtype, np.datetime64) or (
        coord.dtype == object and coord.size > 0 and hasattr(coord.values.flat[0], "calendar")
    )


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
        if not (
            (coord is not None and _is_dated(coord))
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


_TIME_UNITS_S = {
    "seconds": 1.0, "second": 1.0, "secs": 1.0, "sec": 1.0, "s": 1.0,
    "minutes": 60.0, "minute": 60.0, "mins": 60.0, "min": 60.0,
    "hours": 3600.0, "hour": 3600.0, "hrs": 3600.0, "hr": 3600.0, "h": 3600.0,
    "days": 86400.0, "day": 86400.0, "d": 86400.0,
}  # fmt: skip


def _time_steps_s(coord: xr.DataArray) -> np.ndarray | None:
    """Seconds between consecutive values of a time coordinate, or None where it has no dates.

    numpy datetimes, cftime dates and numbers with CF units (``hours since ...``) are read.
    """
    values = coord.values
    if np.issubdtype(values.dtype, np.datetime64):
        return np.diff(values).astype("timedelta64[ns]").astype(np.float64) / 1e9
    if values.dtype == object and hasattr(values.flat[0], "calendar"):
        return np.array([d.total_seconds() for d in np.diff(values)], dtype=np.float64)
    units = str(coord.attrs.get("units", "")).split(" since ")
    if np.issubdtype(values.dtype, np.number) and len(units) == 2:
        scale = _TIME_UNITS_S.get(units[0].strip().lower())
        if scale is not None:
            return np.diff(values.astype(np.float64)) * scale
    return None


def _duration(seconds: float) -> str:
    """A time step for messages: ``1 h``, ``5 days``, ``90 s``."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit[:-1] if unit == 'days' and n == 1 else unit}"
    return f"{seconds:g} s"


def _flip(a: Any, flips: tuple[bool, bool]) -> Any:
    """``a`` ``[..., lat, lon]`` with the rows (``flips[0]``) and/or columns reversed (a view)."""
    if not any(flips):
        return a
    rev = slice(None, None, -1)
    return a[..., rev if flips[0] else slice(None), rev if flips[1] else slice(None)]


def _unflipped(
    locate: Callable[[tuple[int, ...]], str], flips: tuple[bool, bool], shape: tuple[int, int]
) -> Callable[[tuple[int, ...]], str]:
    """``locate`` for indices of the flipped output (``shape``: its fine lat/lon sizes)."""
    if not any(flips):
        return locate

    def locate_flipped(index: tuple[int, ...]) -> str:
        *lead, i, j = index
        i = shape[0] - 1 - i if flips[0] else i
        j = shape[1] - 1 - j if flips[1] else j
        return locate((*lead, i, j))

    return locate_flipped


def _index_text(index: tuple[int, ...]) -> str:
    """Where a cell of an output array is, for messages: its index."""
    return f"index {index}"


def _locator(
    x: xr.DataArray, spatial: dict[Hashable, tuple[Hashable, np.ndarray]]
) -> Callable[[tuple[int, ...]], str]:
    """Names a cell of the output of ``x`` by its coordinates: ``time=... (index 3), lat=..., lon=...``.

    ``spatial`` maps ``x``'s lat/lon dims to the coordinate name and fine centres.
    """

    def locate(index: tuple[int, ...]) -> str:
        parts = []
        for dim, i in zip(x.dims, index, strict=True):
            if dim in spatial:
                name, centres = spatial[dim]
                parts.append(f"{name}={float(centres[i]):.4f}")
                continue
            label = ""
            if dim in x.coords:
                value = x[dim].values[i]
                if isinstance(value, np.datetime64):
                    value = np.datetime_as_string(value, unit="s")
                label = f"={value}"
            parts.append(f"{dim}{label} (index {i})")
        return ", ".join(parts)

    return locate


def _fine_labels(
    fine: Grid | CurvilinearGrid, h: Horizontal
) -> dict[Hashable, tuple[Hashable, np.ndarray]]:
    """What names a fine cell in an error: its lat/lon, or on a curvilinear grid its native
    coordinates (``rlat``/``rlon``, ``y``/``x``) or its row and column."""
    if not isinstance(fine, CurvilinearGrid):
        return {h.dims[0]: (str(h.lat), fine.lat), h.dims[1]: (str(h.lon), fine.lon)}
    out: dict[Hashable, tuple[Hashable, np.ndarray]] = {}
    for dim, name, values, n in (
        (h.dims[0], h.y, fine.y, fine.shape[0]),
        (h.dims[1], h.x, fine.x, fine.shape[1]),
    ):
        out[dim] = (
            (name, values) if name is not None and values is not None else (dim, np.arange(n))
        )
    return out


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


def downscale(
    obj: Any,
    factor: int = DownscaleOptions.factor,
    constraint: str = DownscaleOptions.constraint,
    model: Any = None,
    var: str | Sequence[str] | None = None,
    device: str = DownscaleOptions.device,
    batch_size: int = DownscaleOptions.batch_size,
    tile: int = DownscaleOptions.tile,
    halo: int = DownscaleOptions.halo,
    *,
    lat: str | None = None,
    lon: str | None = None,
    progress: bool | None = DownscaleOptions.progress,
    strict: bool = DownscaleOptions.strict,
) -> Any:
    """Downscale an xarray DataArray or Dataset (or an array) by ``factor``.

    A shortcut for ``Downscaler(model, factor=..., ...)(obj, var=var)``; build a
    :class:`Downscaler` once to downscale many objects with the same model. This is the one
    signature of downscaling: ``obj.climdown.downscale(**options)`` and
    :func:`climdown.fileio.downscale_file` pass their options on to it by keyword, and the
    defaults are :class:`DownscaleOptions`'.

    Parameters
    ----------
    obj : xarray.DataArray, xarray.Dataset, numpy or dask array
        Coarse field(s) on a regular lat/lon grid of any size: a column mass (kg m-2, or a
        water depth in mm or m for a variable that says it is water, see
        :func:`climdown.units.is_water`); arrays are taken as kg m-2. Packed data is decoded.
    factor, constraint, device, batch_size, tile, halo, progress, strict
        See :class:`DownscaleOptions`.
    model : str, path-like, ConstrainedModel or None
        See :class:`Downscaler`.
    var : str or list of str, optional
        Dataset variables to downscale (default: all on the lat/lon grid).
    lat, lon : str, optional
        Coordinate names when they cannot be found by name or CF attributes.

    Returns
    -------
    Same kind as ``obj``, on the fine grid, in ``obj``'s units (a field in m comes back in m;
    the model runs in kg m-2); lazy when ``obj`` is dask-backed. Packing attributes
    (``scale_factor``, ``_FillValue``, ...) are never carried over.

    Raises
    ------
    UnitsError
        Units missing or not a column mass / water depth (e.g. K), or a length (m) for a
        variable that does not say it is water (e.g. boundary-layer height).
    CoordinateError
        Latitude/longitude missing or 2-D (curvilinear grids are not supported yet), CF bounds
        that do not describe the cells, or a recurrent model's window of frames another time
        step apart than its training frames.
    DataValueError
        NaN/inf input, finite input too large for the model (beyond
        :data:`MAX_INPUT_SCALES` x its normalisation scale), negative input with a positive
        constraint (softmax, mult), or a model output that is not finite (naming where); on
        dask input this is raised when the result is computed.
    ConfigError
        An option that is not valid, such as ``constraint=None``, or ``model=None`` for a
        factor and constraint without a packaged model.
    CheckpointError
        A checkpoint of another factor or constraint, or (``strict=True``) variable.

    Warns
    -----
    UserWarning
        A checkpoint trained on another variable than the data's (``strict=False``).
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
        strict=strict,
    )
    return down(obj, var=var, lat=lat, lon=lon)
