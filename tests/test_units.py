"""Tests of CF units handling (climdown.units): spellings, water depths, refusals, laziness, history."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import climdown
from climdown.errors import ClimdownError, UnitsError
from climdown.testing import raise_if_dask_computes
from climdown.units import (
    CANONICAL,
    WATER_DENSITY,
    append_history,
    canonical_units,
    cf_conventions,
    cf_global_attrs,
    cf_time_coordinate,
    cf_variable_attrs,
    factor_to_kg_m2,
    to_kg_m2,
)


def _da(units, data=None):
    data = np.array([[1.0, 2.5], [0.0, 4.0]]) if data is None else data
    attrs = {"long_name": "Total column water"}
    if units is not None:
        attrs["units"] = units
    return xr.DataArray(data, dims=("latitude", "longitude"), name="tcw", attrs=attrs)


@pytest.mark.parametrize(
    "units",
    ["kg m**-2", "kg m-2", "kg/m2", "kg m^-2", "kg/m^2", " kg  m-2 ", "kg.m-2", "kgm-2"],
)
def test_column_mass_spellings_are_canonical(units):
    assert canonical_units(units) == "kg m-2"
    assert factor_to_kg_m2(units) == 1.0


@pytest.mark.parametrize(
    ("units", "factor"),
    [
        ("mm", 1.0),
        ("millimetres", 1.0),
        ("mm of water", 1.0),
        ("m", 1000.0),
        ("metres", 1000.0),
        ("m of water equivalent", 1000.0),
        ("cm", 10.0),
        ("g m-2", 1e-3),
        ("g/m2", 1e-3),
    ],
)
def test_water_depths_convert_with_density_of_water(units, factor):
    assert factor_to_kg_m2(units) == pytest.approx(factor, rel=1e-15)


def test_constants():
    assert CANONICAL == "kg m-2"
    assert WATER_DENSITY == 1000.0


@pytest.mark.parametrize(
    "units",
    # unit strings are case-sensitive (UDUNITS): "M" is not metres, "KG M-2" not kg m-2
    ["K", "Pa", "1", "kg m-2 s-1", "mm/day", "kg m-3", "kg", "KG M-2", "M", "MM", "Kg m-2"],
)
def test_other_units_are_refused_with_a_helpful_message(units):
    with pytest.raises(UnitsError) as info:
        factor_to_kg_m2(units)
    msg = str(info.value)
    assert repr(units) in msg  # what was seen
    assert "kg m-2" in msg and "mm" in msg  # what was expected
    assert "Convert" in msg  # the fix


@pytest.mark.parametrize("units", [None, "", "   "])
def test_missing_units_are_refused(units):
    with pytest.raises(UnitsError, match="no 'units' attribute") as info:
        canonical_units(units)
    assert "da.attrs['units'] = 'kg m-2'" in str(info.value)


def test_units_error_is_catchable_as_climdown_and_value_error():
    for cls in (UnitsError, ClimdownError, ValueError):
        with pytest.raises(cls):
            factor_to_kg_m2("K")


def test_to_kg_m2_identity_keeps_values_and_does_not_touch_input():
    da = _da("kg m**-2")
    da.encoding = {"dtype": "int16", "scale_factor": 0.001}
    out = to_kg_m2(da)
    assert out.attrs["units"] == "kg m-2"
    assert "units_original" not in out.attrs
    assert out.attrs["long_name"] == "Total column water"
    assert out.encoding == {}  # packed-int encoding of the source must not leak into writes
    np.testing.assert_array_equal(out.values, da.values)
    assert da.attrs["units"] == "kg m**-2"  # the input is unchanged
    assert da.encoding["dtype"] == "int16"


@pytest.mark.parametrize(("units", "factor"), [("m", 1000.0), ("mm", 1.0), ("cm", 10.0)])
def test_to_kg_m2_converts_depths(units, factor):
    da = _da(units)
    out = to_kg_m2(da)
    np.testing.assert_allclose(out.values, da.values * factor)
    assert out.attrs["units"] == "kg m-2"
    assert out.name == "tcw"
    assert out.attrs["long_name"] == "Total column water"
    if factor != 1.0:
        assert out.attrs["units_original"] == units
    assert da.attrs["units"] == units


@pytest.mark.parametrize("units", ["K", None])
def test_to_kg_m2_refuses(units):
    with pytest.raises(UnitsError):
        to_kg_m2(_da(units))


@pytest.mark.parametrize("units", ["m", "kg m**-2"])
def test_to_kg_m2_keeps_dask_lazy(units):
    da = _da(units, data=dsa.from_array(np.arange(16.0).reshape(4, 4), chunks=2))
    with raise_if_dask_computes():
        out = to_kg_m2(da)
    assert isinstance(out.data, dsa.Array)
    np.testing.assert_allclose(out.values, np.arange(16.0).reshape(4, 4) * factor_to_kg_m2(units))


def test_append_history_appends_lines():
    a0 = {"units": "kg m-2"}
    a1 = append_history(a0, "coarsened by 4")
    a2 = append_history(a1, "downscaled with softmax")
    assert "history" not in a0  # a copy, not in place
    assert a1["units"] == "kg m-2"
    lines = a2["history"].split("\n")
    assert len(lines) == 2
    assert lines[0].endswith("coarsened by 4")
    assert lines[1].endswith("downscaled with softmax")
    assert all(f"climdown {climdown.__version__}" in line for line in lines)
    # an existing (non-climdown) history is kept on top
    a3 = append_history({"history": "ERA5 from CDS"}, "step")
    assert a3["history"].split("\n")[0] == "ERA5 from CDS"
    # lines start with a UTC ISO timestamp
    assert lines[0][:20].endswith("Z") and lines[0][4] == "-" and lines[0][10] == "T"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "CF-1.8"),
        ("", "CF-1.8"),
        ("CF-1.6", "CF-1.8"),  # ERA5's grib_to_netcdf files
        ("CF-1.8", "CF-1.8"),
        ("CF-1.6 ACDD-1.3", "CF-1.8 ACDD-1.3"),  # other conventions are kept
        ("CF-1.7, ACDD-1.3", "CF-1.8 ACDD-1.3"),
        ("CF-1.10", "CF-1.10"),  # a later CF is not downgraded (1.10 > 1.8, not 1.1)
        ("ACDD-1.3", "CF-1.8 ACDD-1.3"),
    ],
)
def test_cf_conventions_names_cf_1_8_and_keeps_the_rest(given, expected):
    assert cf_conventions(given) == expected


def test_cf_global_attrs_keeps_the_input_and_adds_what_cf_wants():
    era5 = {"Conventions": "CF-1.6", "history": "grib_to_netcdf", "Licence": "Copernicus"}
    out = cf_global_attrs(era5, "downscaled", title="Total column water, downscaled 4x")
    assert out["Licence"] == "Copernicus" and out["Conventions"] == "CF-1.8"
    assert out["title"] == "Total column water, downscaled 4x"
    assert out["history"].splitlines()[0] == "grib_to_netcdf"
    assert out["history"].splitlines()[1].endswith("downscaled")
    assert era5["Conventions"] == "CF-1.6"  # a copy
    assert cf_global_attrs({"title": "mine"}, "x", title="made")["title"] == "mine"
    assert cf_global_attrs({"title": " "}, "x", title="made")["title"] == "made"


@pytest.mark.parametrize(
    ("name", "units", "standard_name"),
    [
        ("tcw", "kg m**-2", "atmosphere_mass_content_of_water"),
        ("TCW", "kg m-2", "atmosphere_mass_content_of_water"),
        ("total_column_water", "kg m-2", "atmosphere_mass_content_of_water"),
        ("tcw", "mm", None),  # CF has no lwe_ name for all of the column's water
        ("tcwv", "kg m-2", "atmosphere_mass_content_of_water_vapor"),
        ("prw", "kg m-2", "atmosphere_mass_content_of_water_vapor"),
        ("tcwv", "mm", "lwe_thickness_of_atmosphere_mass_content_of_water_vapor"),
        ("tco3", "kg m-2", None),  # not a variable climdown knows
        ("tcw", None, None),  # no units: no standard_name to vouch for
    ],
)
def test_cf_variable_attrs_names_what_it_knows(name, units, standard_name):
    attrs = {} if units is None else {"units": units}
    out = cf_variable_attrs(name, attrs)
    assert out.get("standard_name") == standard_name
    assert out["cell_methods"] == "area: mean"
    assert "cell_methods" not in attrs  # a copy


def test_cf_variable_attrs_never_replaces_what_the_input_says():
    given = {
        "units": "kg m-2",
        "standard_name": "mine",
        "long_name": "TCW",
        "cell_methods": "time: mean",
    }
    out = cf_variable_attrs("tcw", given)
    assert out["standard_name"] == "mine" and out["long_name"] == "TCW"
    assert out["cell_methods"] == "time: mean area: mean"
    assert cf_variable_attrs("tcw", out)["cell_methods"] == "time: mean area: mean"  # once
    assert cf_variable_attrs("tcw", {})["long_name"] == "Total column water"


@pytest.mark.parametrize(
    ("dtype", "stored"),
    [
        ("int32", "int32"),  # ERA5's hours since 1900 stay int32
        (np.dtype("float64"), "float64"),
        (np.dtype("int64"), "float64"),  # CF-1.8 has no int64 (it came with CF-1.9)
        (None, "float64"),  # times made in memory: xarray would pick int64
    ],
)
def test_cf_time_coordinate_stores_a_cf_1_8_type(dtype, stored):
    encoding = {"units": "hours since 1900-01-01", "calendar": "gregorian", "zlib": True}
    if dtype is not None:
        encoding["dtype"] = dtype
    attrs, enc = cf_time_coordinate({"long_name": "time"}, encoding, dimension=True)
    assert attrs == {"long_name": "time", "standard_name": "time", "axis": "T"}
    assert str(np.dtype(enc["dtype"])) == stored
    assert enc["units"] == "hours since 1900-01-01" and enc["calendar"] == "gregorian"
    assert enc["_FillValue"] is None and "zlib" not in enc
    scalar, _ = cf_time_coordinate({}, {}, dimension=False)
    assert scalar == {"standard_name": "time"}  # axis only on a dimension coordinate
