"""Open ERA5-like data (netCDF, zarr, GRIB, cloud zarr, packaged samples, reference .pt) as xarray.

Every opener returns the same normalised layout, so the rest of climdown never meets ERA5's
quirks, and keeps the file's own names, so what it returns lines up with ``xr.open_dataset``
of the same file (``open_sample("rhine") - xr.open_dataset(path)`` is a difference per cell,
not an outer product of two latitude axes):

* one data variable (its name unchanged: ``tcw``, ``tcwv``, ``total_column_water``, ...) with
  dims ``(..., time, <latitude>, <longitude>)`` in kg m-2 (converted once here with
  :func:`climdown.units.to_kg_m2`; the original units are kept in ``units_original``);
* latitude and longitude under the file's names (``latitude``/``longitude`` for ERA5, ``lat``/
  ``lon`` elsewhere; found with :func:`climdown.grid.find_latlon`), made dimension coordinates
  in float64; latitude order and longitude convention are kept as stored (:mod:`climdown.grid`
  handles both); ``valid_time`` becomes ``time`` (the one axis climdown names: a CDS file's
  ``valid_time``, or cfgrib's valid times replacing its forecast reference ``time``);
* :func:`open_source`, the opener of recipes, alone renames latitude/longitude to the
  ``lat``/``lon`` of the training stores it feeds (synthetic data already use those names);
* packed integers (``scale_factor``/``add_offset``) decoded to float32, lazily, also in a
  dataset opened with ``mask_and_scale=False`` (:func:`climdown.units.decode_packed`); no
  packing attribute is kept;
* singleton dims such as ``level``, ``pressure_level``, ``number`` or ``expver`` and scalar
  coordinates such as ``step`` or ``surface`` dropped;
* a ``history`` line and ``climdown_source`` attribute naming where the data came from.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from climdown.errors import ClimdownError, CoordinateError, DataValueError, RecipeError, UnitsError
from climdown.grid import Horizontal, find_horizontal, find_latlon
from climdown.units import (
    CANONICAL,
    append_history,
    canonical_units,
    to_kg_m2,
    without_packing,
)

__all__ = [
    "KNOWN_VARIABLES",
    "SAMPLES",
    "open_era5",
    "open_dataarray",
    "normalize_dataset",
    "find_variable",
    "sample_path",
    "open_sample",
    "open_source",
    "load_reference_pt",
]

#: Variable names tried in this order when none is given.
KNOWN_VARIABLES = ("tcw", "total_column_water", "tcwv", "total_column_water_vapour")

#: Packaged real ERA5 samples (``climdown/_data/``, see its README for sources and licences).
SAMPLES = {
    "rhine": "era5_tcw_rhine_2020-01-01.nc",
    "global": "era5_tcwv_global_1.5deg_2020-06-01.nc",
}

_ZARR_MARKERS = (".zgroup", ".zarray", ".zmetadata", "zarr.json")
_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb2")
_SYNTHETIC_KEYS = ("seed", "resolution", "times", "start", "freq", "region")
# fsspec protocol -> the package that provides it (gcsfs comes with the [cloud] extra)
_PROTOCOL_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs"}


# ---------------------------------------------------------------------------------------
# Opening
# ---------------------------------------------------------------------------------------
def _is_url(path: str) -> bool:
    return "://" in path


def _guess_engine(path: str) -> str | None:
    p = path.rstrip("/")
    low = p.lower()
    # "store.zarr", "store.zarr.zip", ARCO's "full_37-1h-0p25deg-chunk-1.zarr-v3"
    if ".zarr" in low.rsplit("/", 1)[-1]:
        return "zarr"
    if low.endswith(_GRIB_SUFFIXES):
        return "cfgrib"
    if not _is_url(p) and os.path.isdir(p):
        if any(os.path.exists(os.path.join(p, m)) for m in _ZARR_MARKERS):
            return "zarr"
    return None


def _check_engine(engine: str, path: str) -> None:
    available = xr.backends.list_engines()
    if engine in available:
        return
    hint = {
        "cfgrib": "GRIB files need cfgrib and eccodes: `pip install cfgrib` (or "
        "`conda install -c conda-forge cfgrib`), or convert the file to netCDF "
        "(`grib_to_netcdf -o out.nc in.grib`)",
        "zarr": "zarr stores need the zarr package: `pip install zarr`",
        "h5netcdf": "`pip install h5netcdf`",
    }.get(engine, f"install the xarray backend that provides engine {engine!r}")
    raise ClimdownError(
        f"cannot open {path!r}: xarray engine {engine!r} is not installed (available: "
        f"{', '.join(sorted(available))}). {hint}."
    )


def _check_protocol(path: str) -> None:
    """Raise a clear error when an fsspec URL needs a filesystem package that is missing."""
    if not _is_url(path):
        return
    protocol = path.split("://", 1)[0]
    if protocol in ("http", "https", "file"):
        return
    try:
        import fsspec

        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        package = _PROTOCOL_PACKAGES.get(protocol)
        install = (
            '`pip install "climdown[cloud]"` (fsspec and gcsfs)'
            if package == "gcsfs"
            else f"`pip install {package or 'fsspec[full]'}`"
        )
        raise ClimdownError(
            f"cannot open {path!r}: the {protocol}:// protocol needs "
            f"{package or 'an fsspec filesystem package'}, which is not installed; "
            f"install it with {install} (original error: {err})"
        ) from err
    except ValueError as err:
        raise ClimdownError(f"cannot open {path!r}: unknown URL protocol {protocol!r}") from err


def _float32_packing(ds: xr.Dataset) -> xr.Dataset:
    """Make packed integer variables decode to float32 (CF: unpacked type = scale_factor type).

    ERA5 netCDF stores ``scale_factor``/``add_offset`` as float64, which would decode to
    float64; the packing resolution (~1e-3 kg m-2) is far coarser than float32's.
    """
    for var in ds.data_vars.values():
        attrs = var.attrs
        packed = "scale_factor" in attrs or "add_offset" in attrs
        if packed and np.issubdtype(var.dtype, np.integer):
            for key in ("scale_factor", "add_offset"):
                if key in attrs:
                    attrs[key] = np.float32(attrs[key])
    return ds


def _local_zarr_consolidated(path: str) -> bool | None:
    """Whether a local zarr store has consolidated metadata (None: let zarr decide).

    Saying so avoids xarray's fallback warning when a store was written unconsolidated.
    """
    if os.path.exists(os.path.join(path, ".zmetadata")):
        return True
    meta = os.path.join(path, "zarr.json")
    if os.path.exists(meta):
        import json

        with open(meta, encoding="utf-8") as f:
            return json.load(f).get("consolidated_metadata") is not None
    if os.path.exists(os.path.join(path, ".zgroup")):
        return False
    return None


def _open_one(
    path: str, engine: str | None, chunks: Any, storage_options: Mapping[str, Any] | None
) -> xr.Dataset:
    if engine == "cfgrib":
        # cfgrib does no CF packing; keep its own decoding and no index file beside the data
        return xr.open_dataset(
            path, engine="cfgrib", chunks=chunks, backend_kwargs={"indexpath": ""}
        )
    kwargs: dict[str, Any] = {}
    if storage_options:
        if not _is_url(path):  # zarr would raise a TypeError that names neither
            raise ClimdownError(
                f"storage_options {dict(storage_options)} apply to URLs (gs://, s3://, "
                f"file://, ...), not to the local path {path!r}: drop them, or write the path "
                f"as a URL (file://{os.path.abspath(path)})"
            )
        if engine != "zarr":
            raise ClimdownError(
                f"storage_options are only used for zarr stores, got engine={engine!r} for "
                f"{path!r}; open remote netCDF with fsspec yourself and pass the file object"
            )
        kwargs["storage_options"] = dict(storage_options)
    if engine == "zarr" and not _is_url(path):
        kwargs["consolidated"] = _local_zarr_consolidated(path)
    raw = xr.open_dataset(path, engine=engine, chunks=chunks, decode_cf=False, **kwargs)
    return xr.decode_cf(_float32_packing(raw), decode_timedelta=False)


def open_era5(
    path_or_url: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    var: str | None = None,
    *,
    chunks: Any = None,
    engine: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Open ERA5 (or any ERA5-like) total column water and normalise it.

    Parameters
    ----------
    path_or_url : str, path or sequence of them
        A netCDF file, a zarr store (local path or URL such as ``gs://...zarr``, read through
        fsspec; ``gs://`` needs gcsfs), a GRIB file (needs cfgrib), a glob pattern or a list
        of netCDF files (combined by coordinates).
    var : str, optional
        Variable to keep; found with :func:`find_variable` when omitted.
    chunks : optional
        Passed to xarray: ``None`` reads netCDF/GRIB lazily into numpy on first use, ``{}``
        uses the file's own chunks with dask, ``{"time": 24}`` sets them. Zarr stores default
        to ``{}`` (dask) because they are often too large for memory (ARCO-ERA5 is ~2 PB).
    engine : str, optional
        xarray engine; guessed from the path (``.zarr`` or a zarr directory -> ``"zarr"``,
        ``.grib``/``.grb`` -> ``"cfgrib"``, otherwise xarray's default).
    storage_options : mapping, optional
        fsspec options for zarr URLs, e.g. ``{"token": "anon"}`` for public buckets.

    Returns
    -------
    xarray.Dataset
        The chosen variable alone in kg m-2, dims ``(..., time, <latitude>, <longitude>)``
        under the file's coordinate names; see the module docstring for the normalisation.

    Raises
    ------
    ClimdownError
        If the engine or URL protocol needs a package that is not installed, or the variable
        cannot be chosen.
    CoordinateError
        If latitude, longitude or time cannot be found.
    UnitsError
        If the variable's units are missing or not a column mass / water depth (e.g. K).

    Examples
    --------
    >>> ds = open_era5(sample_path("rhine"))
    >>> ds.tcw.dims
    ('time', 'latitude', 'longitude')

    The public ARCO-ERA5 store (needs gcsfs and network)::

        open_era5("gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3",
                  "total_column_water", storage_options={"token": "anon"})
    """
    ds, description = _open_raw(
        path_or_url, chunks=chunks, engine=engine, storage_options=storage_options
    )
    return normalize_dataset(ds, var, source=description)


def _open_raw(
    path_or_url: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    chunks: Any,
    engine: str | None,
    storage_options: Mapping[str, Any] | None,
    error: type[ClimdownError] = ClimdownError,
) -> tuple[xr.Dataset, str]:
    """The dataset at a path, URL, glob or list of files, not yet normalised, and its name.

    Raises ``error`` naming the path when xarray cannot read it as a dataset (a text file,
    a folder that is not a zarr store, a truncated netCDF); FileNotFoundError when it is
    missing.
    """
    many: str | list[str] | None = None  # for xr.open_mfdataset: a glob pattern or a list
    if isinstance(path_or_url, (str, os.PathLike)):
        path = os.fspath(path_or_url)
        if isinstance(path_or_url, str) and not _is_url(path) and any(c in path for c in "*?["):
            many = path
    else:
        many = [os.fspath(p) for p in path_or_url]
    if many is not None:
        description = many if isinstance(many, str) else ", ".join(many)
    else:
        description = path
        engine = engine or _guess_engine(path)
        if engine is not None:
            _check_engine(engine, path)
        _check_protocol(path)
        if engine == "zarr" and chunks is None:
            chunks = {}
        if not _is_url(path) and not os.path.exists(path):
            raise FileNotFoundError(f"no such file or store: {path!r}")
    try:
        if many is not None:
            ds = xr.open_mfdataset(
                many,
                engine=engine,
                chunks={} if chunks is None else chunks,
                combine="by_coords",
                decode_cf=False,
                preprocess=lambda d: xr.decode_cf(_float32_packing(d), decode_timedelta=False),
            )
        else:
            ds = _open_one(path, engine, chunks, storage_options)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as err:  # xarray's "no backend matched", netCDF's "unknown format"
        reason = " ".join(str(err).split())
        raise error(
            f"cannot read {description!r} as a dataset (netCDF, zarr or GRIB of ERA5-like "
            f"data): {reason}"
        ) from err
    return ds, description


def open_dataarray(
    path_or_url: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    var: str | None = None,
    **kw: Any,
) -> xr.DataArray:
    """The total column water of a file as a DataArray (:func:`open_era5`, its one variable).

    Parameters
    ----------
    path_or_url, var, **kw
        As in :func:`open_era5` (``var`` is found with :func:`find_variable` when omitted).

    Returns
    -------
    xarray.DataArray
        The chosen variable in kg m-2, dims ``(..., time, <latitude>, <longitude>)`` under the
        file's names (the dataset's ``climdown_source`` and ``history`` stay with
        :func:`open_era5`'s Dataset).

    Raises
    ------
    ClimdownError, CoordinateError, UnitsError
        As :func:`open_era5`.
    """
    ds = open_era5(path_or_url, var, **kw)
    return ds[find_variable(ds, var)]


def _drop_singletons(
    ds: xr.Dataset, keep: Sequence[Any], keep_scalars: Sequence[Any] = ()
) -> xr.Dataset:
    for dim, size in list(ds.sizes.items()):
        if size == 1 and dim not in keep:
            ds = ds.isel({dim: 0}, drop=True)
    scalars = [
        n for n, c in ds.coords.items() if c.ndim == 0 and n != "time" and n not in keep_scalars
    ]
    return ds.drop_vars(scalars)


def _normalise_time(ds: xr.Dataset) -> xr.Dataset:
    if "valid_time" in ds.variables:
        vt = ds["valid_time"]
        if "valid_time" in ds.dims:  # CDS netCDF (2024+): valid_time is the dimension
            ds = ds.drop_vars("time", errors="ignore").rename({"valid_time": "time"})
        elif vt.ndim == 1 and "time" in ds.dims and vt.dims == ("time",):
            # cfgrib: time = forecast reference time, valid_time = time + step
            ds = ds.assign_coords(time=("time", vt.values)).drop_vars("valid_time")
        elif vt.ndim == 0:
            ds = ds.drop_vars("time", errors="ignore").rename({"valid_time": "time"})
        else:
            raise CoordinateError(
                f"valid_time has dims {vt.dims}: forecast data with several steps per "
                "reference time is not supported; select one step first "
                "(e.g. ds.isel(step=0)) or stack to a single time axis"
            )
    if "time" not in ds.variables:
        raise CoordinateError(
            f"time not found: looked for 'time' and 'valid_time' among {list(ds.coords)}; "
            "add one, e.g. ds.expand_dims(time=[np.datetime64('2020-01-01')])"
        )
    if ds["time"].ndim == 0:
        ds = ds.expand_dims("time")
    return ds


def normalize_dataset(
    ds: xr.Dataset, var: str | None = None, *, source: str | None = None
) -> xr.Dataset:
    """Normalise an opened ERA5-like dataset to climdown's layout (see the module docstring).

    Parameters
    ----------
    ds : xarray.Dataset
        As opened by xarray (decoded).
    var : str, optional
        Variable to keep; found with :func:`find_variable` when omitted.
    source : str, optional
        Where the data came from, recorded in ``attrs['climdown_source']`` and ``history``.

    Returns
    -------
    xarray.Dataset
        Only ``var`` and its coordinates; dims ``(..., time, <latitude>, <longitude>)``
        under ``ds``'s own latitude/longitude names; kg m-2.

    Raises
    ------
    ClimdownError, CoordinateError, UnitsError
        As :func:`open_era5`.
    """
    name = find_variable(ds, var)
    out = ds[[name]]
    h = _curvilinear(ds, out)
    if h is not None:
        return _normalize_curvilinear(ds, name, h, source)
    lat_name, lon_name = find_latlon(out)  # kept: the file's names, not climdown's
    for coord in (lat_name, lon_name):
        dim = out[coord].dims[0]
        if dim != coord:  # e.g. lat(y): the coordinate becomes the dimension
            out = out.swap_dims({dim: coord})
    out = _normalise_time(out)
    out = _drop_singletons(out, keep=("time", lat_name, lon_name))
    da = _water_field(out, name)
    extra = [d for d in da.dims if d not in ("time", lat_name, lon_name)]
    da = da.transpose(*extra, "time", lat_name, lon_name)
    out = da.to_dataset(name=name)
    out = out.assign_coords(
        {c: out[c].astype(np.float64) for c in (lat_name, lon_name)}  # grid maths in float64
    )
    # no packing attributes travel on (a dataset opened with mask_and_scale=False has them)
    lat_attrs, lon_attrs = without_packing(ds[lat_name].attrs), without_packing(ds[lon_name].attrs)
    out[lat_name].attrs = {"units": "degrees_north", "standard_name": "latitude", **lat_attrs}
    out[lon_name].attrs = {"units": "degrees_east", "standard_name": "longitude", **lon_attrs}
    out.attrs = _opened_attrs(ds, source, name)
    return out


def _curvilinear(ds: xr.Dataset, out: xr.Dataset) -> Horizontal | None:
    """The horizontal grid of ``out`` (one variable of ``ds``) when it is curvilinear, else None.

    A regular grid (1-D latitude/longitude) gives None; a grid without 1-D latitude/longitude
    is curvilinear when :func:`climdown.grid.find_horizontal` finds one (2-D latitude/longitude,
    or rlat/rlon or projection y/x with the grid mapping ``ds`` holds), else its error.
    """
    try:
        find_latlon(out)
        return None
    except CoordinateError:
        h = find_horizontal(ds)  # names what is missing and how to add it
    if not h.curvilinear:
        find_latlon(out)  # the 1-D grid is another variable's: say so as before
    return h


def _normalize_curvilinear(
    ds: xr.Dataset, name: str, h: Horizontal, source: str | None
) -> xr.Dataset:
    """:func:`normalize_dataset` of a curvilinear grid: the variable on ``(..., time, rows,
    columns)`` under the file's names, its 2-D latitude/longitude (float64), native 1-D
    coordinates, CF bounds and grid mapping (a scalar coordinate) kept as coordinates, so
    :func:`climdown.grid.grid_of` of the result is the file's grid."""
    extra: dict[Any, Any] = {}
    if h.mapping is not None and h.mapping in ds.variables:
        extra[h.mapping] = ds[h.mapping].variable
    for coord in (h.lat, h.lon, h.y, h.x):
        bounds = None if coord is None else ds[coord].attrs.get("bounds")
        if bounds is not None and bounds in ds.variables:
            extra[bounds] = ds[bounds].variable
    out = ds[[name]]
    out = _normalise_time(out)
    out = _drop_singletons(out, keep=("time", *h.dims), keep_scalars=tuple(extra))
    da = _water_field(out, name)
    others = [d for d in da.dims if d not in ("time", *h.dims)]
    da = da.transpose(*others, "time", *h.dims)
    res = da.to_dataset(name=name).assign_coords(extra)  # bounds: dims the field lacks
    for coord in (h.lat, h.lon):
        if coord is not None:
            attrs = without_packing(res[coord].attrs)
            res = res.assign_coords({coord: res[coord].astype(np.float64)})
            res[coord].attrs = attrs
    res.attrs = _opened_attrs(ds, source, name)
    return res


def _water_field(out: xr.Dataset, name: str) -> xr.DataArray:
    """Variable ``name`` of an opened dataset in kg m-2 (a field that varies in time).

    A water depth (mm, m, ...) keeps its units as ``units_original`` even when the factor is
    1; packed data another xarray call decoded to float64 comes back as float32.
    """
    if "time" not in out[name].dims:
        raise CoordinateError(
            f"variable {name!r} has dims {out[name].dims} without 'time' although the dataset "
            "has a time coordinate; select a variable that varies in time"
        )
    units = out[name].attrs.get("units")
    da = to_kg_m2(out[name])
    if canonical_units(units) != CANONICAL:
        da.attrs["units_original"] = units
    if da.dtype == np.float64 and np.dtype(out[name].encoding.get("dtype", "f8")).kind in "iu":
        da = da.astype(np.float32)
    return da


def _opened_attrs(ds: xr.Dataset, source: str | None, name: str) -> dict[str, Any]:
    """The source's global attributes, where it came from, and a history line."""
    attrs = dict(ds.attrs)
    if source is not None:
        attrs["climdown_source"] = source
    return append_history(attrs, f"opened {source or 'dataset'}, variable {name!r}")


# ---------------------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------------------
def _describe_vars(ds: xr.Dataset) -> str:
    return (
        ", ".join(f"{n} [{ds[n].attrs.get('units', 'no units')}]" for n in ds.data_vars) or "none"
    )


def find_variable(ds: xr.Dataset, var: str | None = None) -> str:
    """Name of the total column water variable of ``ds``.

    Parameters
    ----------
    ds : xarray.Dataset
    var : str, optional
        Explicit name; returned if present.

    Returns
    -------
    str
        ``var``, else the first of :data:`KNOWN_VARIABLES` present, else the only data
        variable whose units are a column mass or water depth.

    Raises
    ------
    ClimdownError
        If ``var`` is absent, or no single candidate can be chosen; the message lists the
        variables and their units.
    """
    if var is not None:
        if var in ds.data_vars:
            return var
        raise ClimdownError(
            f"variable {var!r} not found; the dataset has {_describe_vars(ds)}. "
            "Pass one of these names (e.g. var='tcw')."
        )
    for name in KNOWN_VARIABLES:
        if name in ds.data_vars:
            return name
    candidates = []
    for key, da in ds.data_vars.items():
        try:
            canonical_units(da.attrs.get("units"))
        except UnitsError:
            continue
        candidates.append(str(key))
    if len(candidates) == 1:
        return candidates[0]
    why = "several variables have" if candidates else "no variable has"
    raise ClimdownError(
        f"cannot choose the total column water variable: none of {', '.join(KNOWN_VARIABLES)} "
        f"is present and {why} column-mass units (kg m-2, mm, m). The dataset has "
        f"{_describe_vars(ds)}. Pass the name explicitly, e.g. var='{candidates[0] if candidates else 'tcw'}'."
    )


# ---------------------------------------------------------------------------------------
# Packaged samples and source specifications
# ---------------------------------------------------------------------------------------
def sample_path(name: str) -> pathlib.Path:
    """Path of a packaged real ERA5 sample: ``"rhine"`` (tcw, 24 h, 0.25 deg) or ``"global"``.

    Raises
    ------
    ClimdownError
        If ``name`` is not a known sample.
    """
    if name not in SAMPLES:
        raise ClimdownError(
            f"unknown sample {name!r}: expected one of {', '.join(repr(k) for k in SAMPLES)}"
        )
    path = pathlib.Path(str(importlib.resources.files("climdown") / "_data" / SAMPLES[name]))
    if not path.is_file():
        raise ClimdownError(
            f"packaged sample {SAMPLES[name]} is missing at {path}; reinstall climdown "
            "(pip install -e .) so its package data is present"
        )
    return path


def open_sample(name: str, chunks: Any = None, variable: str | None = None) -> xr.Dataset:
    """Open a packaged ERA5 sample (see :func:`sample_path`) normalised like :func:`open_era5`.

    ``variable`` is the one to keep (``"tcw"`` for ``rhine``, ``"tcwv"`` for ``global``);
    found with :func:`find_variable` when omitted. The coordinates keep the file's names
    (``time``, ``latitude``, ``longitude``), so the result lines up with
    ``xr.open_dataset(sample_path(name))`` cell by cell.

    Examples
    --------
    >>> ds = open_sample("rhine")
    >>> ds.tcw.dims
    ('time', 'latitude', 'longitude')
    >>> (ds.tcw - xr.open_dataset(sample_path("rhine")).tcw).shape
    (24, 41, 41)
    """
    return open_era5(sample_path(name), variable, chunks=chunks)


def open_source(
    source: str | os.PathLike[str] | Mapping[str, Any] | xr.Dataset,
    *,
    variable: str | None = None,
    chunks: Any = None,
    **kw: Any,
) -> xr.Dataset:
    """Open any data source a recipe can name, in the layout of the stores it feeds.

    Parameters
    ----------
    source : str, path, mapping or xarray.Dataset
        * ``"synthetic"`` or ``{"kind": "synthetic", "seed": 0, "resolution": 0.25,
          "times": 48, "start": ..., "freq": ..., "region": ...}`` -> :func:`synthetic_tcw`;
        * ``"sample:rhine"`` / ``"sample:global"`` or ``{"kind": "sample", "name": "rhine"}``
          -> :func:`open_sample`;
        * ``{"kind": "era5", "path": ..., "variable": ..., "engine": ...,
          "storage_options": ...}``, or any other string/path -> :func:`open_era5`;
        * an opened Dataset -> :func:`normalize_dataset`.
    variable : str, optional
        Variable to keep (``"tcw"`` for synthetic data). Every kind of source honours it: a
        source without it raises :class:`RecipeError` naming the variables it has (found with
        :func:`find_variable` when omitted).
    chunks : optional
        As in :func:`open_era5` / :func:`synthetic_tcw`.
    **kw
        Passed on to the opener (e.g. ``times=48, region=(...)`` for synthetic data,
        ``engine=`` for files).

    Returns
    -------
    xarray.Dataset
        One variable in kg m-2 with dims ``(time, lat, lon)``: unlike
        the other openers, which keep a file's own names, this one renames latitude and
        longitude to the ``lat``/``lon`` of the training stores (and of synthetic data), so
        every source of a recipe looks the same to :mod:`climdown.data.store`.

    Raises
    ------
    RecipeError
        If a mapping has an unknown ``kind`` or key, the source has no ``variable``, or it is
        not a dataset xarray can read.
    """
    return _source_names(_open_any_source(source, variable=variable, chunks=chunks, **kw))


def _source_names(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its latitude/longitude renamed to ``lat``/``lon``, the stores' names.

    A curvilinear grid keeps its own names: its patches are cut in index space.
    """
    if find_horizontal(ds).curvilinear:
        return ds
    lat_name, lon_name = find_latlon(ds)  # "lat" and "lon" come first when a dataset has both
    return ds.rename({k: v for k, v in ((lat_name, "lat"), (lon_name, "lon")) if k != v})


def _open_any_source(
    source: str | os.PathLike[str] | Mapping[str, Any] | xr.Dataset,
    *,
    variable: str | None,
    chunks: Any,
    **kw: Any,
) -> xr.Dataset:
    """:func:`open_source` before the renaming: each kind of source to its opener."""
    from climdown.data.synthetic import synthetic_tcw

    if isinstance(source, xr.Dataset):
        where = kw.pop("description", None)
        _require_variable(source, variable, where or "the dataset")
        return normalize_dataset(source, variable, source=where)
    if isinstance(source, Mapping):
        spec: dict[str, Any] = {str(k): v for k, v in source.items()}
        kind = spec.pop("kind", None)
        allowed: dict[str, tuple[str, ...]] = {
            "synthetic": _SYNTHETIC_KEYS + ("chunks",),
            "sample": ("name", "chunks"),
            "era5": ("path", "variable", "engine", "storage_options", "chunks"),
        }
        if kind not in allowed:
            raise RecipeError(
                f"source kind {kind!r} is unknown: expected 'synthetic', 'sample' or 'era5', "
                "e.g. {kind: synthetic, seed: 0} or {kind: era5, path: era5.zarr}"
            )
        unknown = sorted(set(spec) - set(allowed[kind]))
        if unknown:
            raise RecipeError(
                f"unknown key(s) {unknown} in {kind} source; allowed: {', '.join(allowed[kind])}"
            )
        chunks = spec.pop("chunks", chunks)
        if kind == "synthetic":
            _check_synthetic_variable(variable)
            return synthetic_tcw(**{**spec, **kw}, chunks=chunks)
        if kind == "sample":
            if "name" not in spec:
                raise RecipeError("sample source needs a 'name': 'rhine' or 'global'")
            return _open_file(sample_path(str(spec["name"])), variable, chunks)
        if "path" not in spec:
            raise RecipeError("era5 source needs a 'path' (file, zarr store or URL)")
        path = spec.pop("path")
        variable = spec.pop("variable", variable)
        return _open_file(path, variable, chunks, **{**spec, **kw})
    if isinstance(source, str) and source == "synthetic":
        _check_synthetic_variable(variable)
        return synthetic_tcw(**kw, chunks=chunks)
    if isinstance(source, str) and source.startswith("sample:"):
        return _open_file(sample_path(source.split(":", 1)[1]), variable, chunks)
    return _open_file(source, variable, chunks, **kw)


def _open_file(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    variable: str | None,
    chunks: Any,
    *,
    engine: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """:func:`open_era5` for a recipe: a missing variable or unreadable file is a RecipeError."""
    ds, description = _open_raw(
        path, chunks=chunks, engine=engine, storage_options=storage_options, error=RecipeError
    )
    _require_variable(ds, variable, repr(description))
    return normalize_dataset(ds, variable, source=description)


def _require_variable(ds: xr.Dataset, variable: str | None, where: str) -> None:
    """A source holds the variable a recipe names, or the recipe is wrong (never relabelled)."""
    if variable is not None and variable not in ds.data_vars:
        raise RecipeError(
            f"source {where} has no variable {variable!r}; it has {_describe_vars(ds)}: set "
            "variable: to one of them"
        )


def _check_synthetic_variable(variable: str | None) -> None:
    if variable not in (None, "tcw"):
        raise RecipeError(
            f"synthetic data provide only 'tcw', got variable={variable!r}; drop the variable "
            "or use variable: tcw"
        )


# ---------------------------------------------------------------------------------------
# Reference tensors
# ---------------------------------------------------------------------------------------
def _coord_values(
    values: Any, size: int, dim: str, what: str
) -> tuple[tuple[str, ...], np.ndarray]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == size:
        return (dim,), arr
    raise CoordinateError(
        f"{what} has shape {arr.shape}, expected ({size},) to match the tensor's {dim} size"
    )


def load_reference_pt(
    path: str | os.PathLike[str],
    *,
    lat: Any = None,
    lon: Any = None,
    start: Any = None,
    freq: str = "1h",
    name: str = "tcw",
    units: str = "kg m-2",
) -> xr.DataArray:
    """Import a reference-code tensor file ``[N, T, C, H, W]`` as a labelled DataArray.

    Parameters
    ----------
    path : str or path
        A ``.pt`` file holding one tensor, loaded with ``torch.load(weights_only=True)``.
    lat, lon : array_like, optional
        Cell-centre latitudes (H values) and longitudes (W values) in degrees; become
        coordinates ``lat(y)`` and ``lon(x)``.
    start : datetime-like or sequence of N datetime-likes, optional
        Time of frame 0 of each sample (a single value is used for every sample); frames
        follow every ``freq``. Gives the coordinate ``time(sample, frame)``.
    freq : str
        pandas frequency between frames.
    name, units : str
        Name and units of the result. The study's tensors were rescaled to 0-100; pass the
        units that match (e.g. ``units="1"``) if they are not in kg m-2.

    Returns
    -------
    xarray.DataArray
        Dims ``(sample, frame, channel, y, x)``, the tensor's dtype, ``attrs['source']``.

    Raises
    ------
    DataValueError
        If the file does not hold a tensor, or the tensor is not 5-D.
    CoordinateError
        If ``lat``/``lon``/``start`` do not match the tensor's shape.
    """
    import torch

    obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, torch.Tensor):
        raise DataValueError(
            f"{os.fspath(path)!r} holds a {type(obj).__name__}, expected a single tensor "
            "[N, T, C, H, W]; save it with torch.save(tensor, path)"
        )
    if obj.ndim != 5:
        fix = (
            "add the frame axis first: tensor.unsqueeze(1)"
            if obj.ndim == 4
            else "reshape it to [N, T, C, H, W]"
        )
        raise DataValueError(
            f"{os.fspath(path)!r} holds a {obj.ndim}-D tensor of shape {tuple(obj.shape)}, "
            f"expected 5-D [N, T, C, H, W] (samples, frames, channels, rows, columns); {fix}"
        )
    n, t, _, h, w = obj.shape
    coords: dict[str, Any] = {}
    if lat is not None:
        coords["lat"] = _coord_values(lat, h, "y", "lat")
    if lon is not None:
        coords["lon"] = _coord_values(lon, w, "x", "lon")
    if start is not None:
        starts = pd.DatetimeIndex(
            [start]
            if isinstance(start, (str, np.datetime64, pd.Timestamp))
            or not hasattr(start, "__len__")
            else start
        )
        if starts.size == 1:
            starts = starts.repeat(n)
        if starts.size != n:
            raise CoordinateError(
                f"start has {starts.size} values, expected 1 or {n} (one per sample)"
            )
        step = pd.Timedelta(freq).to_timedelta64()
        times = starts.values[:, None] + np.arange(t)[None, :] * step
        coords["time"] = (("sample", "frame"), times.astype("datetime64[ns]"))
    data = obj.detach().cpu().contiguous().numpy()
    da = xr.DataArray(
        data,
        dims=("sample", "frame", "channel", "y", "x"),
        coords=coords,
        name=name,
        attrs={"units": units, "source": f"reference tensor {os.fspath(path)}"},
    )
    if "lat" in coords:
        da["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    if "lon" in coords:
        da["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    return da
