"""Mass budget of a downscaled field against its coarse input, per time step, in kg.

:func:`conservation` returns an xarray Dataset with the total mass of the coarse (LR) and fine
(HR) fields, their difference, the worst coarse-cell violation in kg m-2 and the count of
negative values, one value per time step (and per index of any other non-spatial dimension).
:func:`assert_conserves` turns it into a check that names the worst block.

The fine cells' areas are those of the LR grid refined by the factor
(:meth:`climdown.grid.Grid.refine`), not areas re-inferred from the HR centres: the refined
cells tile each coarse cell exactly, so the budget is exact also at clipped polar rows. All
areas, block sums and masses come from :mod:`climdown.grid`. Lazy (dask) inputs stay lazy
until the report is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

import climdown.grid as _grid
from climdown.errors import (
    ConservationError,
    CoordinateError,
    DataValueError,
)
from climdown.units import append_history, to_kg_m2

__all__ = ["conservation", "assert_conserves"]

# HR centres may differ from the refined LR centres by this fraction of a fine cell
# (coordinates stored in float32 are off by ~1e-5 degrees).
_COORD_RTOL = 1e-3


@dataclass(frozen=True)
class _Pair:
    """HR and LR in kg m-2 with their spatial dims, the factor and the two grids."""

    hr: xr.DataArray
    lr: xr.DataArray
    hr_dims: tuple[str, str]
    lr_dims: tuple[str, str]
    hr_names: tuple[str | None, str | None]  # HR latitude and longitude coordinate names
    factor: int
    lr_grid: _grid.AnyGrid
    hr_grid: _grid.AnyGrid


def _as_dataarray(obj: Any, name: str) -> xr.DataArray:
    if not isinstance(obj, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray DataArray with latitude/longitude coordinates and "
            f"units, got {type(obj).__name__}; select the variable, e.g. ds['tcw']"
        )
    return obj


def _check_refinement(
    hr: xr.DataArray, lat: str | None, lon: str | None, ref: _grid.AnyGrid, factor: int
) -> None:
    """Raise CoordinateError unless the HR centres are those of the refined LR grid."""
    if isinstance(ref, _grid.CurvilinearGrid):
        _check_curvilinear_refinement(hr, lat, lon, ref, factor)
        return
    assert lat is not None and lon is not None
    for kind, name, want in (("latitude", lat, ref.lat), ("longitude", lon, ref.lon)):
        have = np.asarray(hr[name].values, dtype=np.float64)
        diff = have - want
        if kind == "longitude":
            diff = _grid.wrap_lon(diff, -180.0)  # 0..360 vs -180..180 is the same place
        tol = _COORD_RTOL * float(np.min(np.abs(np.diff(want))))
        bad = np.abs(diff) > tol
        if np.any(bad):
            i = int(np.argmax(np.abs(diff)))
            raise CoordinateError(
                f"the HR {kind} {name!r} is not the LR grid refined by {factor}: at index {i} "
                f"HR has {have[i]:.6f} but the refined LR grid has {want[i]:.6f} "
                f"({int(bad.sum())} of {have.size} centres differ by more than {tol:.2g} deg). "
                f"The HR cells must split each LR cell into {factor} x {factor} "
                f"(climdown.grid.Grid.from_xarray(lr).refine({factor})); pass the LR field the "
                "HR field was made from, on the same grid"
            )


def _check_curvilinear_refinement(
    hr: xr.DataArray, lat: str | None, lon: str | None, ref: _grid.CurvilinearGrid, factor: int
) -> None:
    """The curvilinear HR centres must be those of the refined LR grid (great-circle distance)."""
    if lat is None or lon is None:
        return  # the HR field's cells are given by its native coordinates: nothing to compare
    have_lat = np.asarray(hr[lat].transpose(*hr[lat].dims).values, dtype=np.float64)
    have_lon = np.asarray(hr[lon].values, dtype=np.float64)
    dist = _grid.great_circle_deg(have_lat, have_lon, ref.lat, ref.lon)
    tol = _COORD_RTOL * min(ref.spacing)
    bad = dist > tol
    if np.any(bad):
        ij = np.unravel_index(int(np.argmax(dist)), dist.shape)
        raise CoordinateError(
            f"the HR curvilinear grid is not the LR grid refined by {factor}: at cell "
            f"{tuple(int(i) for i in ij)} HR has ({have_lat[ij]:.6f}, {have_lon[ij]:.6f}) but "
            f"the refined LR grid has ({ref.lat[ij]:.6f}, {ref.lon[ij]:.6f}) ({int(bad.sum())} "
            f"of {bad.size} centres are more than {tol:.2g} deg off). The HR cells must split "
            f"each LR cell into {factor} x {factor} (climdown.grid.grid_of(lr).refine({factor})); "
            "pass the LR field the HR field was made from, with its grid mapping and bounds "
            "(the Dataset, or grid=)"
        )


def _check_other_dims(
    hr: xr.DataArray, lr: xr.DataArray, hr_dims: tuple[str, str], lr_dims: tuple[str, str]
) -> None:
    hr_other = [d for d in hr.dims if d not in hr_dims]
    lr_other = [d for d in lr.dims if d not in lr_dims]
    if sorted(map(str, hr_other)) != sorted(map(str, lr_other)):
        raise CoordinateError(
            f"HR has non-spatial dims {hr_other} but LR has {lr_other}; they must be the same "
            "(e.g. both ('time',))"
        )
    for d in hr_other:
        if hr.sizes[d] != lr.sizes[d]:
            raise CoordinateError(
                f"dim {d!r} has {hr.sizes[d]} entries in HR but {lr.sizes[d]} in LR"
            )
        if d in hr.indexes and d in lr.indexes and not hr.indexes[d].equals(lr.indexes[d]):
            raise CoordinateError(
                f"coordinate {d!r} differs between HR and LR (HR starts at "
                f"{hr.indexes[d][0]}, LR at {lr.indexes[d][0]}); align them first, e.g. "
                f"lr.sel({d}=hr.{d})"
            )


def _prepare(
    hr: Any,
    lr: Any,
    factor: int | None,
    lat: str | None,
    lon: str | None,
    grid: _grid.AnyGrid | None = None,
) -> _Pair:
    hr = to_kg_m2(_as_dataarray(hr, "hr"))
    lr = to_kg_m2(_as_dataarray(lr, "lr"))
    h_hr = _grid.find_horizontal(hr, lat=lat, lon=lon)
    h_lr = _grid.find_horizontal(lr, lat=lat, lon=lon)
    hr_dims = (str(h_hr.dims[0]), str(h_hr.dims[1]))
    lr_dims = (str(h_lr.dims[0]), str(h_lr.dims[1]))
    hr_lat, hr_lon = h_hr.lat, h_hr.lon
    f = _grid.infer_factor(
        (hr.sizes[hr_dims[0]], hr.sizes[hr_dims[1]]),
        (lr.sizes[lr_dims[0]], lr.sizes[lr_dims[1]]),
        factor,
    )
    # the LR cells: given (a Dataset's CF bounds, read by the accessor), or lr's coordinates
    lr_grid = grid if grid is not None else _grid.grid_of(lr, lat=lat, lon=lon)
    lr_shape = (lr.sizes[lr_dims[0]], lr.sizes[lr_dims[1]])
    if lr_grid.shape != lr_shape:
        raise CoordinateError(
            f"grid= has {lr_grid.shape[0]} x {lr_grid.shape[1]} cells but lr has "
            f"{lr_shape[0]} x {lr_shape[1]}; pass the LR grid (Grid.from_xarray(lr_dataset))"
        )
    hr_grid = lr_grid.refine(f)
    _check_refinement(hr, hr_lat, hr_lon, hr_grid, f)
    _check_other_dims(hr, lr, hr_dims, lr_dims)
    return _Pair(hr, lr, hr_dims, lr_dims, (hr_lat, hr_lon), f, lr_grid, hr_grid)


def _area(g: _grid.AnyGrid, dims: tuple[str, str]) -> xr.DataArray:
    return _grid.area_dataarray(g, *dims)


def _mass(da: xr.DataArray, g: _grid.AnyGrid, dims: tuple[str, str]) -> xr.DataArray:
    return _grid.mass_over(da, _area(g, dims), dims)


def _block_violation(p: _Pair) -> xr.DataArray:
    """|coarsen(HR) - LR| on the LR grid, kg m-2 (lazy on dask input)."""
    lat, lon = p.hr_names
    coarse = _grid.coarsen_dataarray(p.hr, p.factor, lat=lat, lon=lon, grid=p.hr_grid)
    # on the LR grid: LR's dim names and coordinates replace the coarse HR ones
    on_grid = [c for c in coarse.coords if set(coarse[c].dims) & set(p.hr_dims)]
    coarse = coarse.drop_vars(on_grid).rename(dict(zip(p.hr_dims, p.lr_dims, strict=True)))
    lr = p.lr.transpose(*coarse.dims)
    viol = abs(coarse - lr.data)
    return viol.assign_coords(lr.coords)


def conservation(
    hr: xr.DataArray,
    lr: xr.DataArray,
    *,
    factor: int | None = None,
    lat: str | None = None,
    lon: str | None = None,
    grid: _grid.AnyGrid | None = None,
) -> xr.Dataset:
    """Mass budget of a fine field ``hr`` against the coarse field ``lr`` it was made from.

    Parameters
    ----------
    hr : xarray.DataArray
        Fine (downscaled) field in kg m-2 or a water depth (``mm``, ``m``; converted with the
        density of water, see :func:`climdown.units.to_kg_m2`), on the LR grid refined by
        ``factor``.
    lr : xarray.DataArray
        Coarse input with the same non-spatial dims and coordinates as ``hr``.
    factor : int, optional
        Refinement factor; inferred from the grid sizes (and checked) when omitted.
    lat, lon : str, optional
        Coordinate names when they cannot be found by name or CF attributes.
    grid : climdown.grid.Grid, optional
        The LR grid, where ``lr``'s coordinates do not say it all: a DataArray taken from a
        Dataset loses its CF bounds variables, so pass ``Grid.from_xarray(lr_dataset)`` (the
        accessor does this for a Dataset). By default, ``Grid.from_xarray(lr)``.

    Returns
    -------
    xarray.Dataset
        One value per index of the non-spatial dims (e.g. per time step):

        ``mass_lr``, ``mass_hr`` [kg]
            ``sum(field * area)`` over the LR grid and over the refined grid.
        ``mass_diff`` [kg]
            ``mass_hr - mass_lr``.
        ``mass_rel_diff`` [1]
            ``mass_diff / mass_lr``; 0 when both are 0 (dry), ``inf`` when only ``mass_lr`` is.
        ``max_block_violation`` [kg m-2]
            ``max |coarsen(hr) - lr|`` over the coarse cells (area-weighted coarsening).
        ``neg_count``, ``nan_count``
            Number of negative and of NaN values in ``hr``.

        NaNs propagate into the masses and the block violation (they are never skipped).
        Lazy on dask-backed input.

    Raises
    ------
    UnitsError
        If either field's units are missing or not a column mass / water depth.
    GridShapeError
        If the HR grid is not a square integer refinement of the LR grid.
    CoordinateError
        If the HR coordinates are not the refined LR grid's, or the other dims differ.
    """
    return _report(_prepare(hr, lr, factor, lat, lon, grid))


def _report(p: _Pair) -> xr.Dataset:
    mass_lr = _mass(p.lr, p.lr_grid, p.lr_dims)
    mass_hr = _mass(p.hr, p.hr_grid, p.hr_dims)
    diff = mass_hr - mass_lr
    dry = mass_lr == 0
    rel = xr.where(dry, xr.where(diff == 0, 0.0, np.inf), diff / xr.where(dry, 1.0, mass_lr))
    block = _block_violation(p).max(list(p.lr_dims), skipna=False)
    hr_dims = list(p.hr_dims)
    ds = xr.Dataset(
        {
            "mass_lr": mass_lr.assign_attrs(units="kg", long_name="total mass of the LR field"),
            "mass_hr": mass_hr.assign_attrs(units="kg", long_name="total mass of the HR field"),
            "mass_diff": diff.assign_attrs(units="kg", long_name="mass_hr - mass_lr"),
            "mass_rel_diff": rel.assign_attrs(units="1", long_name="(mass_hr - mass_lr) / mass_lr"),
            "max_block_violation": block.assign_attrs(
                units="kg m-2",
                long_name="max over coarse cells of |area-weighted coarsening of HR - LR|",
            ),
            "neg_count": (p.hr < 0)
            .sum(hr_dims)
            .assign_attrs(units="1", long_name="number of negative HR values"),
            "nan_count": p.hr.isnull()
            .sum(hr_dims)
            .assign_attrs(units="1", long_name="number of NaN HR values"),
        }
    )
    desc = f"mass budget of a {p.factor}x downscaled field against its coarse input"
    ds.attrs = append_history({"title": desc, "factor": p.factor}, desc)
    return ds


def _describe_index(da: xr.DataArray, index: dict[str, int]) -> str:
    parts = []
    for dim, i in index.items():
        value = da[dim].values[i] if dim in da.coords else i
        if isinstance(value, np.datetime64):
            value = np.datetime_as_string(value, unit="s")
        elif isinstance(value, np.floating):
            value = f"{float(value):.4f}"
        parts.append(f"{dim}={value}")
    return ", ".join(parts)


def assert_conserves(
    hr: xr.DataArray,
    lr: xr.DataArray,
    *,
    rtol: float = 1e-5,
    atol: float | None = None,
    factor: int | None = None,
    lat: str | None = None,
    lon: str | None = None,
    grid: _grid.AnyGrid | None = None,
) -> xr.Dataset:
    """Check that every coarse cell's mass is conserved; return the computed report.

    A coarse cell passes when ``|coarsen(hr) - lr| <= atol + rtol * |lr|`` (kg m-2, after
    conversion to kg m-2), like :func:`numpy.isclose`.

    Parameters
    ----------
    hr, lr, factor, lat, lon, grid
        As in :func:`conservation`.
    rtol : float
        Relative tolerance per coarse cell.
    atol : float, optional
        Absolute tolerance in kg m-2 (default 0: a dry coarse cell must stay exactly dry).

    Returns
    -------
    xarray.Dataset
        The computed :func:`conservation` report.

    Raises
    ------
    ConservationError
        Naming the worst coarse cell (its latitude, longitude and time), its violation in
        kg m-2 and relative to the cell's value, and how many cells fail.
    DataValueError
        If ``hr`` or ``lr`` contains NaN (the budget is undefined there).
    """
    atol = 0.0 if atol is None else float(atol)
    p = _prepare(hr, lr, factor, lat, lon, grid)
    report = _report(p).compute()
    for name, da in (("hr", p.hr), ("lr", p.lr)):
        n_nan = int(da.isnull().sum())
        if n_nan:
            where = _describe_index(da, _first_true(da.isnull()))
            raise DataValueError(
                f"{name} contains {n_nan} NaN value(s) (first at {where}); the mass budget "
                "is undefined there: fill or mask them before checking conservation"
            )
    viol = _block_violation(p).compute()
    lr_c = p.lr.transpose(*viol.dims).compute()
    excess = viol - (atol + rtol * abs(lr_c))
    n_bad = int((excess > 0).sum())
    if n_bad == 0:
        return report
    worst = {
        str(d): int(i)
        for d, i in zip(
            viol.dims, np.unravel_index(int(np.argmax(excess.values)), viol.shape), strict=True
        )
    }
    h = _grid.find_horizontal(lr_c, lat=lat, lon=lon)
    lat_name, lon_name = (
        str(n) if n is not None else str(d) for n, d in zip((h.lat, h.lon), h.dims, strict=True)
    )
    cell = viol.isel(worst)
    v = float(cell)
    ref = float(lr_c.isel(worst))
    rel = v / abs(ref) if ref != 0 else np.inf
    others = {d: i for d, i in worst.items() if d not in p.lr_dims}
    when = _describe_index(viol, others) if others else "the only time step"
    total = report.isel(others) if others else report
    raise ConservationError(
        f"mass is not conserved: {n_bad} of {viol.size} coarse cells (all time steps) exceed "
        f"atol={atol:g} + rtol={rtol:g} * |lr|. Worst cell at "
        f"{lat_name}={float(cell[lat_name]):.4f}, {lon_name}={float(cell[lon_name]):.4f} "
        f"({when}): coarsened HR differs from LR = {ref:.6g} kg m-2 by {v:.6g} kg m-2 "
        f"(relative {rel:.3g}). Total mass difference at that time: "
        f"{float(total['mass_diff']):.6g} kg (relative {float(total['mass_rel_diff']):.3g}). "
        "Apply a mass-conserving constraint (e.g. constraint='softmax') or check that lr is "
        "the field hr was downscaled from."
    )


def _first_true(mask: xr.DataArray) -> dict[str, int]:
    flat = int(np.argmax(mask.values))
    return {
        str(d): int(i) for d, i in zip(mask.dims, np.unravel_index(flat, mask.shape), strict=True)
    }
