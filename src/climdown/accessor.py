"""The ``.climdown`` xarray accessor: thin, stateless delegation to climdown's public functions.

``import climdown`` registers ``ds.climdown`` (Dataset) and ``da.climdown`` (DataArray). An
accessor stores its object and nothing else: it validates nothing in ``__init__`` (xarray would
turn such an error into a bare RuntimeError) and holds no maths. Each method calls a public
function that works without it:

=====================  ==============================================================
accessor method        public function
=====================  ==============================================================
``downscale``          :func:`climdown.inference.downscale`
``conservation``       :func:`climdown.conservation.conservation` (``lr`` = the object)
``assert_conserves``   :func:`climdown.conservation.assert_conserves`
``coarsen``            :func:`climdown.grid.coarsen_dataarray` (what the recipes use)
``plot``               :func:`climdown.plot.compare` (``lr`` = the object)
=====================  ==============================================================

xarray caches an accessor per object and ``ds["tcw"]`` is a new object each time, so loaded
models are cached at module level by :mod:`climdown.checkpoint`, never here. On a Dataset,
methods that need one field take ``var=`` (default: the only variable on the lat/lon grid).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack

import xarray as xr

# inference and conservation are imported inside the methods: registering the accessor (which
# happens as soon as xarray is imported) then loads nothing heavy (no torch), and importing one
# of them first never meets this module half-way
from climdown.errors import CoordinateError
from climdown.grid import (
    CurvilinearGrid,
    Grid,
    Horizontal,
    add_cf_bounds,
    coarsen_dataarray,
    find_horizontal,
    grid_of,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from climdown.nn.normalize import ConstrainedModel

__all__ = ["ClimdownDataArrayAccessor", "ClimdownDatasetAccessor", "DownscaleKwargs"]

#: The object an accessor is on.
T = TypeVar("T", xr.DataArray, xr.Dataset)


class DownscaleKwargs(TypedDict, total=False):
    """The keyword options of ``obj.climdown.downscale`` (for editors and type checkers).

    Their meaning and defaults are :func:`climdown.inference.downscale`'s; the names are the
    same (a test keeps them so).
    """

    factor: int
    constraint: str
    model: str | os.PathLike[str] | ConstrainedModel | None
    var: str | Sequence[str] | None
    device: str
    batch_size: int
    tile: int
    halo: int
    lat: str | None
    lon: str | None
    progress: bool | None
    strict: bool


def _gridded(ds: xr.Dataset) -> list[str]:
    """Names of the data variables on the dataset's lat/lon grid."""
    spatial = set(find_horizontal(ds).dims)
    return [str(k) for k, v in ds.data_vars.items() if spatial <= set(v.dims)]


def _variable(obj: xr.DataArray | xr.Dataset, var: str | None) -> xr.DataArray:
    """``obj`` itself (DataArray), or its variable ``var`` / its only gridded variable."""
    if not isinstance(obj, xr.Dataset):
        return obj
    if var is None:
        names = _gridded(obj)
        if len(names) != 1:
            raise CoordinateError(
                f"the dataset has {len(names)} variables on its lat/lon grid ({names}); pass "
                "var='name' to choose one"
            )
        var = names[0]
    # a grid mapping held as a data variable (CORDEX) goes with the field: its grid needs it
    return obj[var].assign_coords(_mapping_coord(obj, find_horizontal(obj)))


def _cells(obj: xr.DataArray | xr.Dataset) -> Grid | CurvilinearGrid | None:
    """A Dataset's grid with its CF bounds and grid mapping (its DataArrays lose them); None
    for a DataArray."""
    return grid_of(obj) if isinstance(obj, xr.Dataset) else None


def _bounds_names(ds: xr.Dataset) -> tuple[str | None, str | None]:
    """The names of a Dataset's CF bounds variables (None where it has none)."""
    h = find_horizontal(ds)
    lat, lon = (None if n is None else ds[n].attrs.get("bounds") for n in (h.lat, h.lon))
    return lat, lon


def _mapping_coord(ds: xr.Dataset, h: Horizontal) -> dict[str, xr.Variable]:
    """The grid mapping variable as a coordinate for the fields, where it is a data variable."""
    if h.mapping is None or h.mapping not in ds.data_vars:
        return {}
    return {h.mapping: ds[h.mapping].variable}


def _each_gridded(ds: xr.Dataset, fn: Callable[[xr.DataArray], xr.DataArray]) -> xr.Dataset:
    """Apply ``fn`` to every gridded variable; drop other variables on the lat/lon dims."""
    h = find_horizontal(ds)
    spatial = set(h.dims)
    names = _gridded(ds)
    out = {k: fn(ds[k]) for k in names}
    # the grid mapping travels as a coordinate of the fields (climdown.grid.curvilinear_coords)
    keep = {k: v for k, v in ds.data_vars.items() if not spatial & set(v.dims) and k != h.mapping}
    return xr.Dataset({**keep, **out}, attrs=dict(ds.attrs))


class _Base(Generic[T]):
    """Shared by both accessors: store the object, nothing else."""

    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    def downscale(self, **options: Unpack[DownscaleKwargs]) -> T:
        """Downscale this object: :func:`climdown.inference.downscale` with these keyword options.

        ``factor``, ``constraint``, ``model``, ``var``, ``device``, ``batch_size``, ``tile``,
        ``halo``, ``lat``, ``lon``, ``progress``: their meaning and defaults are that
        function's (one signature, one set of defaults). Lazy on dask-backed data.
        """
        from climdown.inference import downscale

        return downscale(self._obj, **options)

    def conservation(
        self,
        hr: xr.DataArray | xr.Dataset,
        lr: xr.DataArray | xr.Dataset | None = None,
        var: str | None = None,
    ) -> xr.Dataset:
        """Mass budget of ``hr`` against ``lr`` (default: this object) per time step, in kg.

        See :func:`climdown.conservation.conservation`.
        """
        lr = self._obj if lr is None else lr
        from climdown.conservation import conservation

        return conservation(_variable(hr, var), _variable(lr, var), grid=_cells(lr))

    def assert_conserves(
        self, hr: xr.DataArray | xr.Dataset, rtol: float = 1e-5, var: str | None = None
    ) -> xr.Dataset:
        """Raise :class:`~climdown.errors.ConservationError` unless ``hr`` conserves this field.

        See :func:`climdown.conservation.assert_conserves`.
        """
        from climdown.conservation import assert_conserves

        return assert_conserves(
            _variable(hr, var), _variable(self._obj, var), rtol=rtol, grid=_cells(self._obj)
        )

    def plot(
        self,
        hr: xr.DataArray | xr.Dataset,
        truth: xr.DataArray | xr.Dataset | None = None,
        var: str | None = None,
        **kwargs: Any,
    ) -> Figure:
        """Maps LR (this object) | downscaled | truth | error; see :func:`climdown.plot.compare`."""
        from climdown.plot import compare  # matplotlib and cartopy load only when plotting

        return compare(
            _variable(self._obj, var),
            _variable(hr, var),
            truth=None if truth is None else _variable(truth, var),
            **kwargs,
        )


@xr.register_dataarray_accessor("climdown")
class ClimdownDataArrayAccessor(_Base[xr.DataArray]):
    """``da.climdown``: downscale, conservation, assert_conserves, coarsen, plot."""

    def coarsen(self, factor: int) -> xr.DataArray:
        """Area-weighted coarsening; see :func:`climdown.grid.coarsen_dataarray`."""
        return coarsen_dataarray(self._obj, factor)


@xr.register_dataset_accessor("climdown")
class ClimdownDatasetAccessor(_Base[xr.Dataset]):
    """``ds.climdown``: downscale, conservation, assert_conserves, coarsen, plot."""

    def coarsen(self, factor: int) -> xr.Dataset:
        """Area-weighted coarsening of every gridded variable (:func:`climdown.grid.coarsen_dataarray`).

        The cells are the Dataset's (its CF bounds, where it has them), and the result carries
        the coarse cells' CF bounds (:func:`climdown.grid.add_cf_bounds`).
        """
        grid = grid_of(self._obj)
        h = find_horizontal(self._obj)
        # a grid mapping held as a data variable (CORDEX files) travels with each field, so a
        # field with only rlat/rlon still finds its grid
        mapping = _mapping_coord(self._obj, h)
        out = _each_gridded(
            self._obj,
            lambda da: coarsen_dataarray(
                da.assign_coords(mapping), factor, h.lat, h.lon, grid=grid
            ),
        )
        return add_cf_bounds(out, grid.coarsen(factor), names=_bounds_names(self._obj))
