"""Training stores: the only writer and reader of LR/HR patch stores (zarr v3, dask, atomic).

One store per recipe, one group per split (``train``, ``val``, optionally ``test``). Each group
opens with ``xr.open_zarr(store, group=split)`` as a Dataset with

* ``hr`` [sample, frame, y, x] and ``lr`` [sample, frame, y_lr, x_lr], float32, kg m-2;
* per-patch coordinates ``lat`` [sample, y], ``lon`` [sample, x], ``lat_lr`` [sample, y_lr],
  ``lon_lr`` [sample, x_lr] (degrees, in the source's order) and ``time`` [sample, frame].

``lr`` is the area-weighted coarsening of ``hr`` (:func:`climdown.grid.coarsen` with the
patch's ``Grid(lat, lon).area``) and ``lat_lr``/``lon_lr`` come from :meth:`Grid.coarsen`.
The root group carries the units, variable, factor, patch, frames, the patches' orientation
(``orientation``: how their rows and columns are stored) and the source's time step
(``time_step_s``, seconds), the normalisation statistics of train HR, the patch count of
each split (``samples``, of ``patches_available``), the recipe text and hash, a source
description, the climdown version and, written last, ``complete = True``.

Which samples each split takes is decided by :mod:`climdown.data.patches` (indices only) and
the normalisation statistics are merged by :mod:`climdown.data.moments`; this module opens the
source, runs the chunks (dask, locally or on a cluster) and reads and writes the zarr store.

Building is lazy and chunked: the source is opened with dask (one time step per chunk) and
patches are cut and written ``chunks`` samples at a time, so memory stays bounded by one
chunk of samples plus the source steps it needs. Builds are atomic: everything is written to
a hidden sibling ``.NAME.partial`` and renamed into place at the end, so the final path only
ever holds a complete store. A killed run leaves the partial path, which the next run removes
and rebuilds; a re-run of the same recipe on a complete store is a no-op.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from climdown._version import __version__
from climdown.data.moments import Moments, moments
from climdown.data.patches import (
    SplitPlan,
    describe_patch,
    patch_columns,
    patch_coords,
    plan_splits,
    source_window,
)
from climdown.data.recipe import CURVILINEAR_STORE_FORMAT, STORE_FORMAT, Recipe
from climdown.errors import DataValueError, RecipeError, StoreError
from climdown.grid import CurvilinearGrid, Grid, coarsen, find_horizontal, grid_of
from climdown.locks import hold, lock_beside
from climdown.units import CANONICAL, append_history, canonical_units, to_kg_m2

__all__ = [
    "build_store",
    "concat_stores",
    "open_store",
    "store_info",
    "normalisation",
    "split_arrays",
    "is_complete",
    "up_to_date",
    "partial_path",
    "OUTPUT_MARKER",
    "written_by_climdown",
]

_MARKER = "complete"
_FORMAT_ATTR = "climdown_store_format"
#: The layouts this climdown reads: regular grids' and curvilinear sources' (docs/data.md).
_READS = (STORE_FORMAT, CURVILINEAR_STORE_FORMAT)
#: Root attribute that marks a zarr store written by :func:`climdown.fileio.downscale_file`.
OUTPUT_MARKER = "climdown_output"


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------
def build_store(
    recipe: Recipe,
    *,
    overwrite: bool = False,
    progress: bool = False,
    scheduler: Any = None,
    workers: int | None = None,
) -> Path:
    """Build the zarr store a recipe describes (or do nothing if it is already built).

    Parameters
    ----------
    recipe : Recipe
        From :func:`climdown.data.recipe.load_recipe`.
    overwrite : bool
        Rebuild and replace an existing store at ``recipe.output``.
    progress : bool
        Show a tqdm progress bar (one step per chunk of samples) on a terminal.
    scheduler : str, path or distributed.Client, optional
        Build on this dask cluster (address, scheduler file or Client; default: the
        ``CLIMDOWN_SCHEDULER`` environment variable). Each chunk of samples is one task that
        reads its source steps, coarsens and writes its own region of the store from the
        worker, so the output path must be on a filesystem every worker sees.
    workers : int, optional
        Start a local cluster of this many worker processes for the build
        (:func:`climdown.cluster.dask_client`). Without ``scheduler`` and ``workers`` the
        chunks are built one after another in this process (dask's threaded scheduler).

    Returns
    -------
    pathlib.Path
        The store path, ``recipe.output``.

    Raises
    ------
    StoreError
        If a store built from a different recipe (or an incomplete one) is at the output path
        and ``overwrite`` is False, or anything that is not a climdown store is there (never
        replaced, even with ``overwrite``).
    RecipeError
        If the source cannot supply the requested splits or sample counts.
    GridShapeError
        If the region is smaller than one patch.
    DataValueError
        If source patches hold NaN or inf (the message names the split and count); the
        partial store is removed.
    UnitsError
        If the source variable is not a column mass.

    Notes
    -----
    A re-run with the same recipe finds the complete store, compares ``recipe.hash`` and
    returns without opening the source (and without starting a cluster). The arrays are the
    same bytes however the build runs: each chunk is computed by the same function, and the
    normalisation statistics of train HR are merged from per-chunk moments in chunk order.
    Only those moments (a few numbers per chunk) come back to the client; a worker holds one
    chunk of samples plus the source steps it reads.

    One build of a store at a time: the build holds a lock beside the store
    (:func:`climdown.locks.lock_beside`, :func:`climdown.locks.hold`), so a second build of the same output (two
    ``climdown experiments`` in one out folder, two batch jobs) waits for the first and then
    finds the store built, instead of deleting its half-written store.
    """
    final = Path(recipe.output)
    if _built(recipe, final, overwrite):
        return final
    src, grid = _open_source(recipe)  # bad sources and plans fail here, before any write
    plans = plan_splits(recipe, *_coords(src, grid))
    final.parent.mkdir(parents=True, exist_ok=True)
    # one builder at a time: a second one waits, then finds the store built (up to date)
    with hold(lock_beside(final), f"store {str(final)!r}", wait=True):
        if _built(recipe, final, overwrite):
            return final
        return _write_store(recipe, final, src, grid, plans, progress, scheduler, workers)


def _built(recipe: Recipe, final: Path, overwrite: bool) -> bool:
    """True when ``final`` holds the store of ``recipe`` (nothing to build); a StoreError when
    something is there that may not be replaced; False when the store is to be (re)built."""
    if final.exists():
        if not overwrite and up_to_date(recipe):
            return True
        attrs = _root_attrs_or_none(final)
        if not written_by_climdown(final) and (final.is_file() or any(final.iterdir())):
            # never delete something that is not ours, even with overwrite
            raise StoreError(
                f"{str(final)!r} exists and is not a climdown store; refusing to replace it. "
                "Remove it yourself or set output: to another path"
            )
        if not overwrite:
            why = (
                "was built from a different recipe"
                if attrs is not None and attrs.get(_MARKER) is True
                else "is not a complete climdown store"
            )
            raise StoreError(
                f"{str(final)!r} {why} (recipe hash {recipe.hash[:12]} expected, found "
                f"{(attrs or {}).get('recipe_hash', 'none')!s:.12}); rebuild with "
                "overwrite=True (`climdown build RECIPE --overwrite`) or set another output "
                "path"
            )
    return False


def _write_store(
    recipe: Recipe,
    final: Path,
    src: xr.DataArray,
    grid: CurvilinearGrid | None,
    plans: list[SplitPlan],
    progress: bool,
    scheduler: Any,
    workers: int | None,
) -> Path:
    """Write the store of ``recipe`` into its partial path and swap it into place (the caller
    holds the store's lock)."""
    tmp = partial_path(final)
    if tmp.exists():  # left by a killed run
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    from climdown.cluster import dask_client

    try:
        with dask_client(scheduler, workers) as client:
            _write_all(recipe, src, grid, plans, tmp.resolve(), progress, client)
    except DataValueError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, final)
    return final


def concat_stores(
    stores: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """One store that trains on the ``train`` patches of several: pooled or multi-scale data.

    The ``train`` split of ``out`` holds the train patches of every store in ``stores``, in that
    order; its ``val`` and ``test`` splits (and so model selection and the held-out scores) are
    the first store's. The normalisation statistics are recomputed over the pooled train HR
    (with the first store's ``scale_method``). Each patch keeps its own coordinates, so the
    trainer weights every patch by its own cell areas. Written atomically
    (:func:`partial_path`, then renamed). A checkpoint trained on it records the grid spacing
    of the first store's patches (:func:`climdown.data.dataset.patch_spacing`), so the spacing
    warning of :class:`climdown.inference.Downscaler` is relative to that store.

    Parameters
    ----------
    stores : list of paths
        Complete regular-grid stores (``climdown build``) with the same factor, patch size,
        frames, units and patch orientation; variables may differ (e.g. ``tcw`` and
        ``tcwv``), and ``out`` records them all.
    out : path
        The new store.
    overwrite : bool
        Replace a store climdown wrote at ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    StoreError
        If fewer than two stores are given, one is incomplete or curvilinear, they differ in
        factor, patch, frames, units or orientation, or ``out`` exists (without
        ``overwrite``, or not written by climdown) or is one of ``stores``.
    """
    paths = [Path(s) for s in stores]
    final = Path(out)
    if len(paths) < 2:
        raise StoreError(f"concat_stores needs at least two stores, got {len(paths)}")
    infos = [store_info(s) for s in paths]  # StoreError for a missing or incomplete store
    for path, info in zip(paths, infos, strict=True):
        if info.get("grid") == "curvilinear":
            raise StoreError(
                f"store {str(path)!r} is cut from a curvilinear source; concat_stores pools "
                "regular-grid stores only (train on it alone)"
            )
    for key in ("factor", "patch", "frames", "units", "orientation"):
        values = [info.get(key) for info in infos]
        if any(v != values[0] for v in values):
            listed = ", ".join(f"{str(s)!r}: {v!r}" for s, v in zip(paths, values, strict=True))
            raise StoreError(
                f"the stores differ in {key} ({listed}); pool stores built at one {key} "
                "(rebuild the others from recipes that match the first)"
            )
    if final.resolve() in {s.resolve() for s in paths}:
        raise StoreError(f"out {str(final)!r} is one of the stores to pool; choose a new path")
    final.parent.mkdir(parents=True, exist_ok=True)
    with hold(lock_beside(final), f"store {str(final)!r}", wait=True):  # as build_store
        return _concat_locked(final, paths, infos, overwrite)


def _concat_locked(
    final: Path, paths: list[Path], infos: list[dict[str, Any]], overwrite: bool
) -> Path:
    """:func:`concat_stores` while holding the output store's lock."""
    if final.exists() and not (overwrite and written_by_climdown(final)):
        raise StoreError(
            f"{str(final)!r} exists; pass overwrite=True to replace it"
            if written_by_climdown(final)
            else f"{str(final)!r} exists and is not a climdown store; choose another path"
        )
    import zarr

    tmp = partial_path(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        shutil.copytree(paths[0], tmp)
        chunks = int(infos[0]["chunks"])
        parts = [open_store(s, "train") for s in paths]
        # the first store's on-disk chunks and compression; times get an encoding that
        # holds them all (hourly and daily stores may be pooled)
        encoding = {
            name: {
                k: v
                for k, v in var.encoding.items()
                if k in ("chunks", "shards", "compressors") and v is not None
            }
            for name, var in parts[0].variables.items()
            if name != "time"
        }
        group_attrs = dict(parts[0].attrs)  # the first store's train group attributes
        pooled = xr.concat(
            [part.drop_encoding() for part in parts],
            dim="sample",
            data_vars="all",
            coords="minimal",
            join="exact",
        )
        pooled = pooled.chunk({"sample": chunks})  # whole zarr chunks per dask chunk
        shutil.rmtree(tmp / "train")
        stats = Moments()
        hr = pooled["hr"]
        for lo in range(0, hr.sizes["sample"], chunks):
            stats.merge(moments(hr.isel(sample=slice(lo, lo + chunks)).values))
        method = infos[0]["normalisation"].get("scale_method", "max")
        norm = stats.result(
            float(infos[0]["normalisation"]["scale"]) if method == "fixed" else method
        )
        n_train = int(hr.sizes["sample"])
        variables = list(dict.fromkeys(str(i["variable"]) for i in infos))
        # the pooled data's own identity: no recipe builds it, so no recipe's hash may match
        pooled_hash = hashlib.sha256(
            "pooled:".join(str(i["recipe_hash"]) for i in infos).encode()
        ).hexdigest()
        ident: dict[str, Any] = {"normalisation": norm, "recipe_hash": pooled_hash}
        pooled.attrs = {**group_attrs, "samples": n_train, **ident}
        pooled.to_zarr(
            tmp, group="train", mode="w", zarr_format=3, consolidated=False, encoding=encoding
        )
        root = zarr.open_group(tmp, mode="r+")
        samples = {**infos[0]["samples"], "train": n_train}
        for split in samples:
            if split != "train":
                root[split].attrs.update(ident)
        attrs = append_history(
            dict(root.attrs),
            "pooled the train patches of " + ", ".join(str(s) for s in paths),
        )
        root.attrs.update(
            {
                **attrs,
                **ident,
                "name": final.name.removesuffix(".zarr"),
                "samples": samples,
                "variables": variables,
                "pooled_from": [
                    {"store": str(s), "name": i.get("name"), "train": int(i["samples"]["train"])}
                    for s, i in zip(paths, infos, strict=True)
                ],
                "title": f"climdown training store pooled from {len(paths)} stores",
                "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        _consolidate(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, final)
    return final


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The temporary sibling a build of ``path`` writes to before renaming it into place."""
    p = Path(path)
    return p.parent / f".{p.name}.partial"


def written_by_climdown(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a zarr store that climdown wrote: the only folders it replaces.

    Its root group carries a climdown marker: a training store's ``climdown_store_format``
    (:func:`build_store`, complete or not) or a downscaled file's :data:`OUTPUT_MARKER`
    (:func:`climdown.fileio.downscale_file`). ``overwrite`` replaces nothing else.
    """
    attrs = _zarr_root_attrs(Path(path))
    return attrs is not None and any(
        attrs.get(key) is not None for key in (_FORMAT_ATTR, OUTPUT_MARKER)
    )


def up_to_date(recipe: Recipe) -> bool:
    """True when ``recipe.output`` holds a complete store built from this very recipe.

    The one rule by which :func:`build_store` (without ``overwrite``) leaves a store as it is.
    """
    attrs = _root_attrs_or_none(Path(recipe.output))
    return (
        attrs is not None
        and attrs.get(_MARKER) is True
        and attrs.get("recipe_hash") == recipe.hash
        and attrs.get(_FORMAT_ATTR) in _READS
    )


def is_complete(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a climdown store whose completion marker is set."""
    attrs = _root_attrs_or_none(Path(path))
    return attrs is not None and attrs.get(_MARKER) is True


def store_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Attributes of a complete store: units, variable, factor, stats, recipe, provenance.

    Parameters
    ----------
    path : str or path
        The store.

    Returns
    -------
    dict
        The root attributes, with ``normalisation`` (``mean``, ``std``, ``min``, ``max``,
        ``scale``, ``scale_method``; kg m-2), ``samples`` per split (the patches it holds),
        ``patches_available`` per split (the distinct patches its time range and region
        offer, of which ``samples`` were drawn), ``recipe`` (YAML text),
        ``recipe_hash``, ``source``, ``climdown_version``, ``created``, ``orientation``
        (``{"lat": ..., "lon": ...}``, absent from stores built before it was recorded:
        ERA5's), ``time_step_s`` and ``complete``.

    Raises
    ------
    StoreError
        If ``path`` is missing, not a climdown store, or incomplete.
    """
    return dict(_complete_attrs(Path(path)))


def normalisation(
    path: str | os.PathLike[str], attrs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The store's normalisation statistics (kg m-2, computed on train HR), validated.

    Parameters
    ----------
    path : str or path
        The store.
    attrs : dict, optional
        Its root attributes, if already read (:func:`store_info`).

    Returns
    -------
    dict
        ``mean``, ``std``, ``min``, ``max``, ``scale`` (a positive, finite float) and
        ``scale_method``.

    Raises
    ------
    StoreError
        If the store records no normalisation or no usable scale.
    """
    norm = (store_info(path) if attrs is None else attrs).get("normalisation")
    value: Any = norm.get("scale") if isinstance(norm, dict) else None
    try:
        scale = float(value)  # None or a non-number: TypeError/ValueError, reported below
    except (TypeError, ValueError):
        scale = math.nan
    if not (isinstance(norm, dict) and math.isfinite(scale) and scale > 0):
        raise StoreError(
            f"store {str(path)!r} has no usable normalisation scale (its 'normalisation' "
            f"attribute is {norm!r}; expected a dict with a positive 'scale' in kg m-2); rebuild "
            "it with `climdown build RECIPE.yaml --overwrite`, which computes it on train HR"
        )
    return {**norm, "scale": scale}


def open_store(path: str | os.PathLike[str], split: str = "train") -> xr.Dataset:
    """Open one split of a complete store as a lazy (dask) Dataset.

    Parameters
    ----------
    path : str or path
        The store.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    xarray.Dataset
        ``hr``, ``lr`` and the per-patch coordinates (see the module docstring), chunked
        like the store's work units.

    Raises
    ------
    StoreError
        If the store is missing, incomplete or has no such split.
    """
    p = Path(path)
    attrs = _split_attrs(p, split)
    return xr.open_zarr(p, group=split, chunks={"sample": int(attrs["chunks"])})


def split_arrays(path: str | os.PathLike[str], split: str = "train") -> dict[str, Any]:
    """The zarr arrays of one split, for fast per-sample reads (used by ``PatchDataset``).

    Parameters
    ----------
    path : str or path
        A complete store.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.

    Returns
    -------
    dict
        ``hr``, ``lr``, ``lat``, ``lon``, ``lat_lr``, ``lon_lr`` and ``time`` as read-only
        :class:`zarr.Array` objects (``time`` holds encoded integers; use
        :func:`open_store` for decoded times). Indexing one sample reads one zarr chunk.
        A curvilinear store (``store_info(path)["grid"] == "curvilinear"``) has ``hr``,
        ``lr``, ``time``, ``y0``, ``x0`` and the domain's ``lat``, ``lon`` [row, col],
        ``lat_c``, ``lon_c`` [row + 1, col + 1] and ``area`` [row, col] (m^2) instead.

    Raises
    ------
    StoreError
        If the store is missing, incomplete or has no such split.
    """
    import zarr

    p = Path(path)
    _split_attrs(p, split)
    group = zarr.open_group(p, path=split, mode="r")
    return {k: group[k] for k in (_CURVILINEAR_ARRAYS if "area" in group else _ARRAYS)}


_ARRAYS = ("hr", "lr", "lat", "lon", "lat_lr", "lon_lr", "time")
_CURVILINEAR_ARRAYS = ("hr", "lr", "time", "y0", "x0", "lat", "lon", "lat_c", "lon_c", "area")


# ---------------------------------------------------------------------------------------
# Reading attributes
# ---------------------------------------------------------------------------------------
def _zarr_root_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes of a zarr (v3) store at ``path``; None if it is not one."""
    import zarr

    if not (path / "zarr.json").is_file():
        return None
    try:
        group = zarr.open_group(path, mode="r")
    except Exception:  # any unreadable metadata means "not a store we can trust"
        return None
    return dict(group.attrs)


def _root_attrs_or_none(path: Path) -> dict[str, Any] | None:
    """The root attributes of a climdown training store; None if ``path`` is not one."""
    attrs = _zarr_root_attrs(path)
    if attrs is None or attrs.get(_FORMAT_ATTR) is None:
        return None
    return attrs


def _split_attrs(path: Path, split: str) -> dict[str, Any]:
    """Root attributes of a complete store that has ``split``."""
    attrs = _complete_attrs(path)
    splits = list(attrs.get("samples", {}))
    if split not in splits:
        raise StoreError(f"store {str(path)!r} has no split {split!r}; it has {splits}")
    return attrs


def _complete_attrs(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise StoreError(
            f"no store at {str(path)!r}; build it first with `climdown build RECIPE.yaml` "
            "(climdown.data.store.build_store)"
        )
    attrs = _root_attrs_or_none(path)
    if attrs is None:
        raise StoreError(f"{str(path)!r} is not a climdown store (no climdown_store_format attr)")
    if attrs.get(_MARKER) is not True:
        raise StoreError(
            f"store {str(path)!r} is incomplete (its build was interrupted); rebuild it with "
            "`climdown build RECIPE.yaml --overwrite`"
        )
    fmt = attrs.get("climdown_store_format")
    if fmt not in _READS:
        raise StoreError(
            f"store {str(path)!r} has layout version {fmt}, this climdown reads "
            f"{' and '.join(map(str, _READS))}; rebuild it with `climdown build RECIPE.yaml "
            "--overwrite`"
        )
    return attrs


# ---------------------------------------------------------------------------------------
# Opening the source (cheap: no data are read)
# ---------------------------------------------------------------------------------------
def _is_synthetic(source: Any) -> bool:
    return source == "synthetic" or (isinstance(source, dict) and source.get("kind") == "synthetic")


def _open_source(recipe: Recipe) -> tuple[xr.DataArray, CurvilinearGrid | None]:
    """The recipe's variable as a dask DataArray (time, lat, lon) in kg m-2, region/time cut.

    A curvilinear source gives (time, rows, columns) under its own dims (``rlat``/``rlon``,
    ``y``/``x``, ...) and its grid (:func:`climdown.grid.grid_of`: CF bounds and grid mapping
    read); a regular one None for the grid.
    """
    import pandas as pd

    from climdown.data.sources import open_source

    tr = recipe.time_range
    kw: dict[str, Any] = {}
    if _is_synthetic(recipe.source):
        spec = recipe.source if isinstance(recipe.source, dict) else {}
        freq = spec.get("freq", "1h")
        times = pd.date_range(tr.start, tr.end, freq=freq, inclusive="left")
        if times.size == 0:
            raise RecipeError(f"time range [{tr.start}, {tr.end}) holds no step of freq {freq!r}")
        kw["times"] = list(times)
        if recipe.region is not None and "region" not in spec:
            kw["region"] = recipe.region.as_tuple()  # generate only what is used
    try:
        ds = open_source(recipe.source, variable=recipe.variable, chunks={"time": 1}, **kw)
    except FileNotFoundError as exc:
        raise RecipeError(f"source {recipe.source!r} cannot be opened: {exc}") from exc
    da = ds[recipe.variable]  # open_source keeps that variable or raises, never another one
    canonical_units(da.attrs.get("units"))  # UnitsError with the fix if not a column mass
    da = to_kg_m2(da)
    if find_horizontal(ds).curvilinear:
        return _curvilinear_source(recipe, ds, da)
    if set(da.dims) != {"time", "lat", "lon"}:
        raise RecipeError(
            f"source variable {da.name!r} has dims {da.dims}, expected (time, lat, lon); select "
            "one level or member first (e.g. ds.isel(level=0)) and save that as the source"
        )
    da = da.transpose("time", "lat", "lon")
    if da.chunks is None:
        da = da.chunk({"time": 1})

    da = da.isel(source_window(recipe, *_coords(da)))
    da.attrs["climdown_description"] = _describe_source(recipe, ds)
    return da, None


def _curvilinear_source(
    recipe: Recipe, ds: xr.Dataset, da: xr.DataArray
) -> tuple[xr.DataArray, CurvilinearGrid]:
    """:func:`_open_source` of a curvilinear source: the field on (time, rows, columns), its grid."""
    h = find_horizontal(ds)
    if set(da.dims) != {"time", *h.dims}:
        raise RecipeError(
            f"source variable {da.name!r} has dims {da.dims}, expected (time, "
            f"{', '.join(map(str, h.dims))}) on its curvilinear grid; select one level or "
            "member first (e.g. ds.isel(level=0)) and save that as the source"
        )
    grid = grid_of(ds)  # CoordinateError naming the fix for bad bounds or a missing mapping
    assert isinstance(grid, CurvilinearGrid)
    da = da.transpose("time", *h.dims)
    if da.chunks is None:
        da = da.chunk({"time": 1})
    window = source_window(recipe, *_coords(da, grid))  # rows/columns: the whole domain
    da = da.isel({"time": window["time"], h.dims[0]: window["lat"], h.dims[1]: window["lon"]})
    da.attrs["climdown_description"] = _describe_source(recipe, ds)
    return da, grid


def _coords(
    src: xr.DataArray, grid: CurvilinearGrid | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``time``, ``lat`` and ``lon`` of the source as numpy arrays (for :mod:`.patches`): 1-D,
    or the curvilinear grid's 2-D centres."""
    if grid is not None:
        return src["time"].values, grid.lat, grid.lon
    return src["time"].values, src["lat"].values, src["lon"].values


def _describe_source(recipe: Recipe, ds: xr.Dataset) -> str:
    src = recipe.source if isinstance(recipe.source, str) else json.dumps(recipe.source)
    detail = ds.attrs.get("climdown_source") or ds.attrs.get("source") or ds.attrs.get("title")
    return f"{src} ({detail})" if detail and str(detail) != src else src


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
def _layout(
    recipe: Recipe,
    plan: SplitPlan,
    coords: dict[str, Any],
    src: xr.DataArray,
    grid: CurvilinearGrid | None = None,
) -> xr.Dataset:
    import dask.array as dsa

    n, t, p, f, c = plan.n, recipe.frames, recipe.patch, recipe.factor, recipe.chunks
    name = src.attrs.get("long_name", recipe.variable)
    if grid is not None:
        patch_coords: dict[str, Any] = _domain_coords(grid, coords)
    else:
        patch_coords = {
            "lat": (
                ("sample", "y"),
                coords["lat"],
                {"units": "degrees_north", "standard_name": "latitude"},
            ),
            "lon": (
                ("sample", "x"),
                coords["lon"],
                {"units": "degrees_east", "standard_name": "longitude"},
            ),
            "lat_lr": (("sample", "y_lr"), coords["lat_lr"], {"units": "degrees_north"}),
            "lon_lr": (("sample", "x_lr"), coords["lon_lr"], {"units": "degrees_east"}),
        }
    ds = xr.Dataset(
        {
            "hr": (
                ("sample", "frame", "y", "x"),
                dsa.zeros((n, t, p, p), chunks=(c, t, p, p), dtype=np.float32),
                {"units": CANONICAL, "long_name": f"{name} (high resolution patch)"},
            ),
            "lr": (
                ("sample", "frame", "y_lr", "x_lr"),
                dsa.zeros((n, t, p // f, p // f), chunks=(c, t, p // f, p // f), dtype=np.float32),
                {
                    "units": CANONICAL,
                    "long_name": f"{name} (low resolution patch, area-weighted {f}x{f} mean)",
                },
            ),
        },
        coords={
            **patch_coords,
            "time": (("sample", "frame"), coords["time"], {"standard_name": "time"}),
        },
        attrs={
            "split": plan.split.name,
            "split_start": plan.split.start.isoformat(),
            "split_end": plan.split.end.isoformat(),
            "samples": n,
        },
    )
    return ds


def _domain_coords(grid: CurvilinearGrid, coords: dict[str, Any]) -> dict[str, Any]:
    """A curvilinear split's coordinates: each patch's first row and column (``y0``/``x0``) in
    the domain, and the domain's cells once: 2-D centres, corners and areas (m^2)."""
    deg_n, deg_e = {"units": "degrees_north"}, {"units": "degrees_east"}
    return {
        "y0": (("sample",), coords["y0"], {"long_name": "first row of the patch in the domain"}),
        "x0": (
            ("sample",),
            coords["x0"],
            {"long_name": "first column of the patch in the domain"},
        ),
        "lat": (("row", "col"), grid.lat, {**deg_n, "standard_name": "latitude"}),
        "lon": (("row", "col"), grid.lon, {**deg_e, "standard_name": "longitude"}),
        "lat_c": (("row_c", "col_c"), grid.lat_c, {**deg_n, "long_name": "cell corners"}),
        "lon_c": (("row_c", "col_c"), grid.lon_c, {**deg_e, "long_name": "cell corners"}),
        "area": (
            ("row", "col"),
            grid.area,
            {"units": "m2", "long_name": "cell area on the sphere (climdown.grid)"},
        ),
    }


def _encoding(recipe: Recipe, curvilinear: bool = False) -> dict[str, Any]:
    """Data: a zarr chunk per sample (cheap random reads) in shards of ``chunks`` samples."""
    t, p, f, c = recipe.frames, recipe.patch, recipe.factor, recipe.chunks
    data = {
        "hr": {"chunks": (1, t, p, p), "shards": (c, t, p, p)},
        "lr": {"chunks": (1, t, p // f, p // f), "shards": (c, t, p // f, p // f)},
        "time": {"chunks": (c, t)},
    }
    if curvilinear:  # the domain's arrays are small: one chunk each
        return {**data, "y0": {"chunks": (c,)}, "x0": {"chunks": (c,)}}
    return {
        **data,
        "lat": {"chunks": (c, p)},
        "lon": {"chunks": (c, p)},
        "lat_lr": {"chunks": (c, p // f)},
        "lon_lr": {"chunks": (c, p // f)},
    }


class _SourceHours:
    """The source hours one chunk samples, as a lazy dask array read *inside* its task.

    Wrapping keeps ``dask.delayed`` from turning the array into separate graph tasks: the
    chunk task computes it itself (on a cluster worker: read from the file there, no
    transfer between workers, one task per chunk for the scheduler).
    """

    def __init__(self, src: xr.DataArray, plan: SplitPlan, lo: int, hi: int, patch: int) -> None:
        hours, inverse = np.unique(plan.t[lo:hi], return_inverse=True)
        self.data = src.data[hours]  # [hours, lat, lon], lazy
        self.t = inverse.reshape(hi - lo, -1)  # [n, frames] rows of ``data``
        self.y0, self.x0, self.patch = plan.y0[lo:hi], plan.x0[lo:hi], patch

    def read(self, scheduler: str) -> np.ndarray:
        """HR patches ``[n, frames, patch, patch]`` float32."""
        import dask

        (block,) = dask.compute(self.data, scheduler=scheduler)
        p = self.patch
        cols = patch_columns(self.x0, p, block.shape[-1])  # [n, p]: may wrap round the circle
        return np.stack(
            [
                np.asarray(block[t, y : y + p][..., c], dtype=np.float32)
                for t, y, c in zip(self.t, self.y0, cols, strict=True)
            ]
        )


class _PatchAreas:
    """The fine-cell areas (m^2) of one chunk's patches, computed or read inside its task.

    A regular grid's come from each patch's 1-D coordinates (``Grid(lat, lon).area``); a
    curvilinear store's are windows of the domain's areas (:class:`climdown.grid.CurvilinearGrid`),
    which the store holds from its layout on: LR is coarsened with the very areas the store
    gives training.
    """

    def __init__(self, coords: dict[str, Any], lo: int, hi: int) -> None:
        self.curvilinear = "y0" in coords
        if self.curvilinear:
            self.y0, self.x0 = coords["y0"][lo:hi], coords["x0"][lo:hi]
            self.patch = int(coords["patch"])
        else:
            self.lat, self.lon = coords["lat"][lo:hi], coords["lon"][lo:hi]

    def read(self, tmp: str, split: str) -> np.ndarray:
        """Areas ``[n, patch, patch]`` float64."""
        if not self.curvilinear:
            return np.stack([Grid(la, lo).area for la, lo in zip(self.lat, self.lon, strict=True)])
        import zarr

        area = np.asarray(zarr.open_array(tmp, path=f"{split}/area", mode="r")[...])
        p = self.patch
        return np.stack([area[y : y + p, x : x + p] for y, x in zip(self.y0, self.x0, strict=True)])


def _build_chunk(
    source: _SourceHours,
    areas: _PatchAreas,
    tmp: str,
    split: str,
    lo: int,
    factor: int,
    with_moments: bool,
    scheduler: str,
) -> dict[str, Any]:
    """Read, coarsen and write one chunk of samples to its region of the store.

    Runs as one dask task (on a cluster worker, or in this process): it reads the source
    hours its samples use (with ``scheduler``), cuts the HR patches, writes ``hr`` and ``lr``
    for samples ``lo .. lo + n`` and returns only a small status: the count of non-finite
    values (then nothing is written) and, for the train split, the chunk's moments for the
    normalisation statistics.
    """
    hr = source.read(scheduler)
    bad = ~np.isfinite(hr)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(hr.shape[0], -1).any(axis=1))[0])
        return {"lo": lo, "bad": int(bad.sum()), "first_bad": lo + first, "moments": None}
    area = areas.read(tmp, split)
    lr = coarsen(hr.astype(np.float64), area[:, None], factor).astype(np.float32)
    _write_chunk(Path(tmp), split, lo, lo + hr.shape[0], hr, lr)
    return {
        "lo": lo,
        "bad": 0,
        "first_bad": None,
        "moments": moments(hr) if with_moments else None,
    }


def _raise_bad(status: dict[str, Any], plan: SplitPlan, coords: dict[str, Any], c: int) -> None:
    lo, i = status["lo"], status["first_bad"]
    hi = min(lo + c, plan.n)
    raise DataValueError(
        f"split {plan.split.name!r}: {status['bad']} NaN/inf values in source patches (samples "
        f"{lo}..{hi - 1}; first in sample {i} at {describe_patch(coords, i)}). Choose a region "
        "and time range where the variable is defined everywhere (missing values usually mean "
        "a masked or partly missing source), or fill the gaps in the source first"
    )


def _write_chunk(tmp: Path, split: str, lo: int, hi: int, hr: np.ndarray, lr: np.ndarray) -> None:
    import zarr

    zarr.open_array(tmp, path=f"{split}/hr", mode="r+")[lo:hi] = hr
    zarr.open_array(tmp, path=f"{split}/lr", mode="r+")[lo:hi] = lr


def _chunk_tasks(
    recipe: Recipe,
    src: xr.DataArray,
    plans: list[SplitPlan],
    coords: dict[str, Any],
    tmp: Path,
    scheduler: str,
) -> list[tuple[SplitPlan, Any]]:
    """One delayed :func:`_build_chunk` per chunk of samples, in split and sample order.

    ``scheduler`` reads each chunk's source hours: ``"threads"`` in this process,
    ``"synchronous"`` inside a single-threaded cluster worker.
    """
    import dask

    c, p, f = recipe.chunks, recipe.patch, recipe.factor
    tasks = []
    for plan in plans:
        pc = coords[plan.split.name]
        name = plan.split.name
        for lo in range(0, plan.n, c):
            hi = min(lo + c, plan.n)
            task = dask.delayed(_build_chunk, pure=False)(
                _SourceHours(src, plan, lo, hi, p),
                _PatchAreas(pc, lo, hi),
                str(tmp),
                name,
                lo,
                f,
                name == "train",
                scheduler,
            )
            tasks.append((plan, task))
    return tasks


def _run_tasks(
    tasks: list[tuple[SplitPlan, Any]],
    coords: dict[str, Any],
    c: int,
    client: Any,
    bar: Any,
) -> list[dict[str, Any]]:
    """Statuses of all chunk tasks in order; raises on the first chunk with bad values.

    Locally the chunks run one after another (dask's threaded scheduler inside each). On a
    cluster at most a few tasks per worker are in flight at once (a sliding window), so the
    scheduler, the workers and the client all hold a bounded amount; the client receives
    statuses only.
    """
    import dask

    statuses: list[dict[str, Any] | None] = [None] * len(tasks)
    if client is None:
        for k, (plan, task) in enumerate(tasks):
            (status,) = dask.compute(task)
            if status["bad"]:
                _raise_bad(status, plan, coords[plan.split.name], c)
            statuses[k] = status
            bar.update(1)
        return [s for s in statuses if s is not None]

    from distributed import as_completed, wait

    window = max(2 * sum(client.nthreads().values()), 2)
    pending = iter(enumerate(tasks))
    index: dict[str, int] = {}

    def submit() -> Any:
        nxt = next(pending, None)
        if nxt is None:
            return None
        k, (_, task) = nxt
        fut = client.compute(task)
        index[fut.key] = k
        return fut

    first = [fut for fut in (submit() for _ in range(window)) if fut is not None]
    done = as_completed(first, with_results=True)
    try:
        for fut, status in done:
            k = index.pop(fut.key)
            if status["bad"]:
                # tasks already running cannot be stopped: let them finish writing before
                # the caller removes the partial store, so none writes into it afterwards
                wait(list(done.futures))
                plan = tasks[k][0]
                _raise_bad(status, plan, coords[plan.split.name], c)
            statuses[k] = status
            bar.update(1)
            nxt = submit()
            if nxt is not None:
                done.add(nxt)
    finally:
        client.cancel(list(done.futures))
    return [s for s in statuses if s is not None]


def _write_all(
    recipe: Recipe,
    src: xr.DataArray,
    grid: CurvilinearGrid | None,
    plans: list[SplitPlan],
    tmp: Path,
    progress: bool,
    client: Any = None,
) -> None:
    import zarr
    from tqdm.auto import tqdm

    c, p, f = recipe.chunks, recipe.patch, recipe.factor
    fmt = STORE_FORMAT if grid is None else CURVILINEAR_STORE_FORMAT
    root = zarr.open_group(tmp, mode="w", zarr_format=3)
    # identify the store at once, marked incomplete until the very end
    root.attrs.update({"climdown_store_format": fmt, "recipe_hash": recipe.hash, _MARKER: False})
    coords = {}
    for plan in plans:
        coords[plan.split.name] = patch_coords(recipe, plan, *_coords(src, grid))
        ds = _layout(recipe, plan, coords[plan.split.name], src, grid)
        ds.to_zarr(
            tmp,
            group=plan.split.name,
            mode="w",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=_encoding(recipe, curvilinear=grid is not None),
        )

    tasks = _chunk_tasks(
        recipe, src, plans, coords, tmp, "threads" if client is None else "synchronous"
    )
    with tqdm(
        total=len(tasks),
        desc=f"build {recipe.name}",
        unit="chunk",
        disable=None if progress else True,  # None: only on a terminal
    ) as bar:
        statuses = _run_tasks(tasks, coords, c, client, bar)
    stats = Moments()
    for (plan, _), status in zip(tasks, statuses, strict=True):
        if plan.split.name == "train":
            stats.merge(status["moments"])  # in chunk order: the same numbers however it ran

    norm = stats.result(recipe.normalisation.scale)
    shared = {
        "units": CANONICAL,
        "variable": recipe.variable,
        "factor": f,
        "patch": p,
        "patch_lr": p // f,
        "frames": recipe.frames,
        "normalisation": norm,
        "recipe_hash": recipe.hash,
        **_trained_layout(src, coords[plans[0].split.name], grid),
        **_grid_attrs(grid),
    }
    root = zarr.open_group(tmp, mode="r+")
    for plan in plans:
        root[plan.split.name].attrs.update(shared)
    long_name = src.attrs.get("long_name", recipe.variable)
    attrs = {
        "climdown_store_format": fmt,
        "title": f"climdown training store {recipe.name}",
        "name": recipe.name,
        "long_name": long_name,
        **shared,
        "chunks": c,
        "samples": {plan.split.name: plan.n for plan in plans},
        "patches_available": {plan.split.name: plan.available for plan in plans},
        "splits": {
            plan.split.name: [plan.split.start.isoformat(), plan.split.end.isoformat()]
            for plan in plans
        },
        "recipe": recipe.text,
        "recipe_json": json.dumps(recipe.to_dict(), sort_keys=True),
        "source": src.attrs["climdown_description"],
        "climdown_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    attrs = append_history(attrs, f"built store {recipe.name} (recipe {recipe.hash[:12]})")
    root.attrs.update(attrs)
    root.attrs.update({_MARKER: True})  # last: only a finished build carries it
    _consolidate(tmp)


def _trained_layout(
    src: xr.DataArray, coords: dict[str, Any], grid: CurvilinearGrid | None = None
) -> dict[str, Any]:
    """How a model trained on the store must be given its input, for the checkpoint to record.

    ``orientation``: the order of the patches' rows and columns as stored (the source's, e.g.
    ERA5's latitude descending and longitude ascending; :class:`climdown.grid.Orientation`;
    a curvilinear grid's is :attr:`CurvilinearGrid.orientation`, the one downscaling reads
    off its input the same way).
    ``time_step_s``: seconds between consecutive source steps (the median step, the one a
    sequence's frames are apart), None for a single step.
    """
    if grid is not None:
        orientation = grid.orientation
    else:
        orientation = Grid(coords["lat"][0], coords["lon"][0]).orientation
    time = np.asarray(src["time"].values)
    step = None
    if time.size > 1:
        step = float(np.median(np.diff(time)) / np.timedelta64(1, "s"))
    return {"orientation": orientation.as_dict(), "time_step_s": step}


def _grid_attrs(grid: CurvilinearGrid | None) -> dict[str, Any]:
    """``grid`` (``"regular"`` or ``"curvilinear"``) and, for a curvilinear source, its
    domain's shape and CF grid mapping (name and attributes, for provenance)."""
    if grid is None:
        return {}  # a regular store's attributes are what they were before curvilinear ones
    mapping = None
    if grid.mapping is not None:
        mapping = {"name": grid.mapping.name, "attributes": _plain(dict(grid.mapping.attrs))}
    return {"grid": "curvilinear", "domain_shape": list(grid.shape), "grid_mapping": mapping}


def _plain(value: Any) -> Any:
    """Attribute values as JSON types (numpy numbers and arrays to numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _consolidate(path: Path) -> None:
    """Consolidate metadata so ``xr.open_zarr`` opens groups in one read and without warning."""
    import zarr

    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 spec yet; xarray relies on it
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(path)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` (``overwrite``) is moved aside first."""
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
