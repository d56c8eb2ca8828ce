"""File in, file out: downscale a netCDF file or zarr store into a new one, lazily and atomically.

:func:`downscale_file` opens the input lazily (one time step and at most ``max_chunk`` x
``max_chunk`` LR cells per dask chunk, so memory stays bounded on any file), downscales it with
:func:`climdown.inference.downscale` (every downscaling option is that function's, passed on by
keyword) and writes the result to a temporary path beside the output, renamed into place at the
end: an interrupted run never leaves a partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import xarray as xr

from climdown.errors import StoreError
from climdown.grid import find_latlon
from climdown.inference import downscale
from climdown.validate import positive_int

__all__ = ["downscale_file"]


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
    scheduler: Any = None,
    max_chunk: int = 512,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Downscale a netCDF file or zarr store into a new netCDF file or zarr store.

    Parameters
    ----------
    src : path-like
        netCDF file (``.nc``) or zarr store (``.zarr`` or a directory with ``zarr.json``).
    dst : path-like
        Output; ``.zarr`` writes a zarr store, anything else netCDF.
    scheduler : optional
        A dask scheduler for the computation (``"threads"``, ``"synchronous"``, a
        ``distributed.Client``); default: dask's current one.
    max_chunk : int
        Largest chunk in LR cells along latitude and longitude.
    overwrite : bool
        Replace an existing ``dst``.
    **options
        Keyword options of :func:`climdown.inference.downscale` (``factor``, ``constraint``,
        ``model``, ``var``, ``device``, ``batch_size``, ``tile``, ``halo``, ``lat``, ``lon``),
        with its defaults.

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
    lat_name, lon_name = find_latlon(ds, lat=options.get("lat"), lon=options.get("lon"))
    ds = _rechunk(ds, lat_name, lon_name, positive_int(max_chunk, "max_chunk"))
    out = downscale(ds, **options)
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
