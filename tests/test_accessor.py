"""The .climdown accessor: registered, stateless, each method the public function it names."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import xarray as xr

import climdown.accessor  # noqa: F401  (registers .climdown; climdown/__init__ imports it too)
from climdown.conservation import conservation
from climdown.errors import ConservationError, CoordinateError, UnitsError
from climdown.grid import coarsen_dataarray
from climdown.inference import downscale
from climdown.testing import raise_if_dask_computes, tcw_dataarray


@pytest.fixture(scope="module")
def da() -> xr.DataArray:
    return tcw_dataarray(8, 12, 2, seed=3)


def test_accessor_stores_the_object_and_validates_only_in_methods() -> None:
    bare = xr.DataArray(np.ones((3, 3)), dims=("y", "x"))  # no lat/lon, no units
    acc = bare.climdown  # must not raise (xarray would turn it into a RuntimeError)
    assert vars(acc) == {"_obj": bare}
    with pytest.raises(CoordinateError, match="latitude not found"):
        acc.downscale(model="bicubic")
    assert vars(xr.Dataset().climdown).keys() == {"_obj"}


def test_downscale_is_the_public_function(da: xr.DataArray) -> None:
    got = da.climdown.downscale(factor=2, constraint="softmax", model="bicubic", tile=4, halo=2)
    want = downscale(da, 2, "softmax", model="bicubic", tile=4, halo=2)
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())
    assert "'bicubic'" in got.attrs["history"]


def test_downscale_passes_every_option_by_keyword(monkeypatch, da: xr.DataArray) -> None:
    """The accessor has no signature of its own: reordering downscale's cannot break it."""
    import climdown.inference

    for acc in (
        climdown.accessor.ClimdownDataArrayAccessor,
        climdown.accessor.ClimdownDatasetAccessor,
    ):
        kinds = [p.kind for p in inspect.signature(acc.downscale).parameters.values()]
        assert kinds == [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_KEYWORD]
    names = list(inspect.signature(downscale).parameters)[1:]
    options = {name: object() for name in names}  # every option, as a sentinel
    seen = []
    monkeypatch.setattr(climdown.inference, "downscale", lambda *a, **kw: seen.append((a, kw)))
    da.climdown.downscale(**options)
    assert len(seen) == 1 and seen[0][0] == (da,) and seen[0][1] == options


def test_downscale_kwargs_name_every_option() -> None:
    """The TypedDict that types ``**options`` for editors names downscale's options, no more."""
    names = list(inspect.signature(downscale).parameters)[1:]
    assert sorted(climdown.accessor.DownscaleKwargs.__annotations__) == sorted(names)


def test_dataset_downscale_and_lazy(da: xr.DataArray) -> None:
    ds = xr.Dataset({"tcw": da.chunk({"time": 1})})
    with raise_if_dask_computes():
        out = ds.climdown.downscale(factor=2, model="nearest", var="tcw")
    assert isinstance(out, xr.Dataset) and out["tcw"].chunks is not None
    np.testing.assert_allclose(coarsen_dataarray(out["tcw"], 2), da, rtol=1e-5)


def test_coarsen_conservation_and_assert(da: xr.DataArray) -> None:
    hr = da.climdown.downscale(factor=2, model="bicubic")
    xr.testing.assert_identical(hr.climdown.coarsen(2), coarsen_dataarray(hr, 2))
    xr.testing.assert_identical(
        da.climdown.conservation(hr).drop_attrs(), conservation(hr, da).drop_attrs()
    )
    report = da.climdown.assert_conserves(hr)
    assert abs(float(report["mass_rel_diff"].max())) < 1e-6
    # contrast: bicubic without a constraint does not conserve
    loose = da.climdown.downscale(factor=2, constraint="none", model="bicubic")
    with pytest.raises(ConservationError):
        da.climdown.assert_conserves(loose)
    # lr= overrides the object: hr against itself coarsened is the same budget
    other = xr.Dataset({"x": hr}).climdown.conservation(hr, lr=da)
    np.testing.assert_allclose(other["mass_diff"], da.climdown.conservation(hr)["mass_diff"])


def test_dataset_coarsen_and_variable_choice(da: xr.DataArray) -> None:
    ds = xr.Dataset({"tcw": da, "tcw2": da * 2, "step": ("time", [1, 2])}, attrs={"a": 1})
    out = ds.climdown.coarsen(2)
    got = out["tcw2"].copy(deep=True)
    for name in ("lat", "lon"):  # the Dataset carries the coarse cells' CF bounds
        assert got[name].attrs.pop("bounds") == f"{name}_bnds" and f"{name}_bnds" in out.coords
    xr.testing.assert_identical(got, coarsen_dataarray(ds["tcw2"], 2))
    assert "step" in out and out.attrs == {"a": 1}
    hr = ds.climdown.downscale(factor=2, model="nearest")
    assert set(hr.data_vars) == {"tcw", "tcw2", "step"}
    ds.climdown.assert_conserves(hr, var="tcw2")
    with pytest.raises(CoordinateError, match="pass var="):
        ds.climdown.assert_conserves(hr)


def test_dataset_downscale_names_the_variable_that_fails(da: xr.DataArray) -> None:
    """A dataset holding a temperature beside the water column: the error says which variable
    fails and how to leave it out, instead of a bare units error."""
    ds = xr.Dataset({"tcw": da, "t2m": (da * 0 + 280).assign_attrs(units="K")})
    with pytest.raises(UnitsError, match=r"variable 't2m' of the dataset: units 'K'.*var='tcw'"):
        ds.climdown.downscale(factor=2, model="nearest")
    out = ds.climdown.downscale(factor=2, model="nearest", var="tcw")
    assert set(out.data_vars) == {"tcw"}
    # one variable: the error is the variable's own, unchanged
    with pytest.raises(UnitsError, match="^units 'K'"):
        ds[["t2m"]].climdown.downscale(factor=2, model="nearest")


def test_plot_delegates_to_compare(monkeypatch, da: xr.DataArray) -> None:
    plot = pytest.importorskip("climdown.plot")
    seen = {}

    def fake(lr, hr, truth=None, **kwargs):
        seen.update(lr=lr, hr=hr, truth=truth, kwargs=kwargs)
        return "figure"

    monkeypatch.setattr(plot, "compare", fake)
    hr = da.climdown.downscale(factor=2, model="nearest")
    assert da.climdown.plot(hr, path="x.png") == "figure"
    assert seen["lr"] is da and seen["hr"] is hr and seen["truth"] is None
    assert seen["kwargs"] == {"path": "x.png"}
