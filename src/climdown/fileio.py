"""File in, file out: downscale a netCDF file or zarr store into a new one, lazily and atomically.

:func:`downscale_file` opens the input lazily (one time step and at most ``max_chunk`` x
``max_chunk`` LR cells per dask chunk, so memory stays bounded on any file), downscales it with
:func:`climdown.inference.downscale` (every downscaling option is that function's, passed on by
keyword) and writes the result to a temporary path beside the output, renamed into place at the
end: an interrupted run never leaves a partial output.

``overwrite`` replaces only what climdown wrote: a netCDF file (recognised by its magic bytes)
when the output is netCDF, or a zarr store carrying climdown's marker
(:func:`climdown.data.store.written_by_climdown`; every zarr store written here carries
:data:`~climdown.data.store.OUTPUT_MARKER`) when it is zarr. A folder of other files, a file
of another kind, a foreign zarr store or a symbolic link is refused and left untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Hashable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import xarray as xr

from climdown._version import __version__
from climdown.data.store import OUTPUT_MARKER, written_by_climdown
from climdown.errors import StoreError
from climdown.grid import find_horizontal
from climdown.inference import downscale
from climdown.validate import positive_int

__all__ = ["downscale_file"]

#: First bytes of a netCDF file: classic, 64-bit offset and CDF-5 ("CDF" + version), and
#: netCDF-4 (an HDF5 file).
_NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


#: Encoding keys an output keeps from :func:`climdown.inference.downscale`'s result: CF time
#: units, calendar and storage type, and ``_FillValue: None`` on coordinates and bounds.
_OUTPUT_ENCODING = ("units", "calendar", "dtype", "_FillValue")


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path.is_dir() and (path / "zarr.json").exists())


def _is_netcdf(path: Path) -> bool:
    """True when ``path`` is a regular file that starts like a netCDF file."""
    with open(path, "rb") as f:
        head = f.read(8)
    return any(head.startswith(magic) for magic in _NETCDF_MAGIC)


def _check_output(dst: Path, zarr: bool, overwrite: bool) -> None:
    """Raise unless ``dst`` is free, or is what climdown wrote and ``overwrite`` is True.

    Nothing is touched: a refused output is left as it was.
    """
    if not os.path.lexists(dst):
        parent = next((p for p in dst.parents if os.path.lexists(p)), None)
        if parent is not None and not parent.is_dir():
            raise StoreError(
                f"cannot write {str(dst)!r}: {str(parent)!r} is a file, not a folder; choose "
                "an output path in a folder"
            )
        return
    kind = "a zarr store" if zarr else "a netCDF file"
    why: str | None  # why it may not be replaced; None: it may
    if dst.is_symlink():
        why = "is a symbolic link"
    elif zarr:
        why = None if written_by_climdown(dst) else "is not a zarr store climdown wrote"
        if why and dst.is_dir():
            why = "is a folder that climdown did not write (no climdown marker)"
    elif dst.is_dir():
        why = "is a folder, and climdown did not write it" + (
            " (a climdown zarr store; the output here is netCDF)"
            if written_by_climdown(dst)
            else ""
        )
    else:
        why = None if dst.is_file() and _is_netcdf(dst) else "is not a netCDF file"
    if why is not None:
        raise StoreError(
            f"output {str(dst)!r} exists and {why}; refusing to replace it, even with "
            f"overwrite=True: climdown replaces only what it wrote ({kind} here). Choose "
            "another output path, or move it away yourself"
        )
    if not overwrite:
        raise StoreError(f"output {str(dst)!r} exists; remove it or pass overwrite=True")


def _check_not_the_input(src: Path, dst: Path) -> None:
    """Refuse an output that is the input, or holds it or lies inside it (a zarr store): the
    write would replace the data it is reading, and ``overwrite`` does not make that safe."""
    a, b = Path(os.path.realpath(src)), Path(os.path.realpath(dst))
    if a == b or a in b.parents or b in a.parents:
        raise StoreError(
            f"output {str(dst)!r} is the input {str(src)!r} (or holds it, or lies inside it): "
            "writing it would replace the data being downscaled; choose another output path"
        )


def _open(src: Path) -> xr.Dataset:
    if not src.exists():
        raise StoreError(f"input {str(src)!r} not found; pass a netCDF file or a zarr store")
    try:
        if _is_zarr(src):
            with warnings.catch_warnings():  # stores without consolidated metadata are fine
                warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated")
                return xr.open_zarr(src, chunks={})
        return xr.open_dataset(src, chunks={})
    except (ValueError, OSError) as err:  # xarray's "no backend matched", netCDF's "unknown format"
        reason = " ".join(str(err).split())
        raise StoreError(
            f"cannot read input {str(src)!r} as a dataset (a netCDF file or a zarr store): {reason}"
        ) from err


def _rechunk(ds: xr.Dataset, spatial: tuple[Hashable, Hashable], max_cells: int) -> xr.Dataset:
    """One time step (index of every non-spatial dim) per chunk, at most ``max_cells`` LR
    cells along the grid's two dims, so memory stays bounded on any file. Only the fields
    are chunked: coordinates and cell bounds (small) stay as they are read."""
    chunks = {d: (min(max_cells, n) if d in spatial else 1) for d, n in ds.sizes.items()}
    fields = {k: v.chunk({d: chunks[d] for d in v.dims}) for k, v in ds.data_vars.items() if v.ndim}
    return ds.assign(fields)


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
        If ``src`` is missing; if ``dst`` exists and ``overwrite`` is False; if ``dst`` is
        something climdown did not write (see the module docstring), whatever ``overwrite``;
        or if ``dst`` cannot be written there (its folder is a file, read-only, ...).
    """
    import dask

    src, dst = Path(src), Path(dst)
    zarr = dst.suffix == ".zarr"  # the output's format is its name's, whatever is there now
    _check_not_the_input(src, dst)
    _check_output(dst, zarr, overwrite)
    ds = _open(src)
    try:
        h = find_horizontal(ds, lat=options.get("lat"), lon=options.get("lon"))
        ds = _rechunk(ds, h.dims, positive_int(max_chunk, "max_chunk"))
        out = downscale(ds, **options)
        for v in out.variables.values():  # the input's chunking and compression do not fit;
            # the CF encoding the library set (time units and type, no fill on coordinates) does
            v.encoding = {k: e for k, e in v.encoding.items() if k in _OUTPUT_ENCODING}
        if zarr:
            out.attrs[OUTPUT_MARKER] = f"climdown {__version__} downscale_file"
        tmp = _temporary_folder(dst)
        target = tmp / (dst.name or "output")
        try:
            with dask.config.set(scheduler=scheduler) if scheduler is not None else nullcontext():
                if zarr:
                    # zarr needs uniform chunks; the halo merge can leave uneven ones at the edges
                    out = out.chunk({d: max(c) for d, c in out.chunks.items()})
                    out.to_zarr(target, mode="w", consolidated=False)
                else:
                    out.to_netcdf(target)
            _check_output(dst, zarr, overwrite)  # still what it was when we started
            if dst.is_dir():  # a climdown zarr store: moved aside, removed with the temporary
                os.replace(dst, tmp / "replaced")
            os.replace(target, dst)  # a file is replaced in one step
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        ds.close()
    return dst


def _temporary_folder(dst: Path) -> Path:
    """A new hidden folder beside ``dst`` to write into; StoreError naming ``dst`` if impossible."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{dst.name or 'output'}.", dir=dst.parent))
    except OSError as err:  # read-only place, no such device, a file in the way, ...
        reason = err.strerror or str(err)
        where = f" ({err.filename})" if err.filename else ""
        raise StoreError(
            f"cannot write {str(dst)!r}: {reason}{where}; choose an output in a folder you can "
            "write to"
        ) from err
