"""Units that are not water are never taken for water, and water comes back in its own units.

* a length is a water depth only for a variable that says it is water (name, standard_name,
  long_name); boundary-layer height in m is refused, with how to declare real water;
* unit strings are case-sensitive (``M`` is not metres) and the usual spellings parse;
* the output is in the input's units (``tp`` in m comes back in m), ``units_original`` is kept,
  and the mass budget stays in kg;
* a checkpoint applied to another variable than its own warns, naming both (``strict=True``:
  an error).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climdown.checkpoint import clear_model_cache, save_checkpoint
from climdown.conservation import assert_conserves, conservation
from climdown.data.sources import normalize_dataset
from climdown.errors import CheckpointError, UnitsError
from climdown.inference import Downscaler, downscale
from climdown.nn.models import get_model
from climdown.testing import tcw_dataarray
from climdown.units import canonical_units, is_water, to_kg_m2


def _field(name: str, units: str, **attrs: str) -> xr.DataArray:
    """A 4 x 6 field of 1-60 (x 1e-3 for metres) named ``name`` with these attributes."""
    da = tcw_dataarray(4, 6, 2, seed=7)
    scale = 1e-3 if units == "m" else 1.0
    out = (da * scale).astype(np.float32).rename(name)
    out.attrs = {"units": units, **attrs}
    return out


# ------------------------------------------------------------------ which lengths are water
NOT_WATER = {
    "blh": {"long_name": "Boundary layer height"},
    "z": {"long_name": "Geopotential height", "standard_name": "geopotential_height"},
    "sd": {"long_name": "Snow depth"},  # a depth, but of snow: not declared as water
    "h": {},
}


@pytest.mark.parametrize("name", sorted(NOT_WATER))
def test_a_length_that_does_not_say_water_is_refused(name: str) -> None:
    da = _field(name, "m", **NOT_WATER[name])
    for call in (
        lambda: to_kg_m2(da),
        lambda: downscale(da, 2, "softmax", model="bicubic"),
        lambda: conservation(da, da.coarsen(lat=2, lon=2).mean()),
        lambda: normalize_dataset(da.to_dataset(), name),
    ):
        with pytest.raises(UnitsError, match=r"a length") as info:
            call()
        msg = str(info.value)
        assert repr(name) in msg and "'m'" in msg  # what was seen
        assert "standard_name" in msg and "lwe_" in msg  # how to declare water


WATER = {
    "tp": ("tp", {}),
    "pr": ("PR", {}),
    "tcwv": ("tcwv", {}),
    "prw": ("prw", {}),
    "tcw": ("tcw", {}),
    "lwe standard_name": ("x", {"standard_name": "lwe_thickness_of_precipitation_amount"}),
    "long_name tcw": ("x", {"long_name": "Total column water"}),
    "long_name tcwv": ("x", {"long_name": "Total column water vapour"}),
    "long_name precipitation": ("x", {"long_name": "Total precipitation"}),
    "long_name precipitable": ("x", {"long_name": "Precipitable water"}),
    "units of water": ("sf", {"units": "m of water equivalent"}),
}


@pytest.mark.parametrize("case", sorted(WATER))
def test_a_length_of_declared_water_converts(case: str) -> None:
    name, attrs = WATER[case]
    da = _field(name, "m")
    da.attrs.update(attrs)
    assert is_water(da.name, da.attrs)
    out = to_kg_m2(da)
    np.testing.assert_allclose(out.values, da.values * 1000.0, rtol=1e-6)
    assert out.attrs["units"] == "kg m-2" and out.attrs["units_original"] == da.attrs["units"]


def test_mass_per_area_needs_no_declaration() -> None:
    # kg m-2 is a column mass whatever it is a column of (the checkpoint check names the
    # variable, see below); only lengths need the variable to say it is water
    ozone = _field("tco3", "kg m**-2", long_name="Total column ozone")
    assert to_kg_m2(ozone).attrs["units"] == "kg m-2"


# ------------------------------------------------------------------ spellings, case-sensitive
@pytest.mark.parametrize(
    ("units", "canonical"),
    [
        ("kg m-2", "kg m-2"),
        ("kg m**-2", "kg m-2"),
        ("kg/m2", "kg m-2"),
        ("kg/m^2", "kg m-2"),
        ("kg m^-2", "kg m-2"),
        ("mm", "mm"),
        ("m", "m"),
    ],
)
def test_the_usual_spellings_parse(units: str, canonical: str) -> None:
    assert canonical_units(units) == canonical


@pytest.mark.parametrize("units", ["M", "MM", "Mm", "KG M-2", "Kg m-2", "kg M-2", "KG/M2"])
def test_unit_strings_are_case_sensitive(units: str) -> None:
    with pytest.raises(UnitsError, match="case-sensitive"):
        canonical_units(units)
    with pytest.raises(UnitsError):
        downscale(_field("tp", units), 2, "softmax", model="bicubic")


# ------------------------------------------------------------------ output in the input's units
@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
@pytest.mark.parametrize("units", ["m", "mm", "kg m**-2"])
def test_output_is_in_the_input_units_and_the_budget_in_kg(units: str, chunked: bool) -> None:
    lr = _field("tp", units, long_name="Total precipitation")
    kg = to_kg_m2(lr)
    src = lr.chunk({"time": 1}) if chunked else lr
    hr = downscale(src, 2, "softmax", model="bicubic").compute()
    assert hr.attrs["units"] == units  # a user who gives m gets m
    want = downscale(kg, 2, "softmax", model="bicubic")  # the same in kg m-2
    factor = {"m": 1000.0, "mm": 1.0, "kg m**-2": 1.0}[units]
    np.testing.assert_allclose(hr.values * factor, want.values, rtol=2e-6)
    report = conservation(hr, lr)
    np.testing.assert_allclose(report["mass_hr"], conservation(want, kg)["mass_hr"], rtol=1e-5)
    assert report["mass_hr"].attrs["units"] == "kg"
    assert float(report["mass_lr"][0]) > 1e9  # kg over ~1e9 m2 cells, not metres x m2 / 1000
    assert_conserves(hr, lr, rtol=1e-5)


def test_units_original_is_never_lost() -> None:
    opened = to_kg_m2(_field("tp", "m", long_name="Total precipitation"))  # as open_era5 gives it
    assert opened.attrs["units_original"] == "m"
    hr = downscale(opened, 2, "softmax", model="bicubic")
    assert hr.attrs["units"] == "kg m-2" and hr.attrs["units_original"] == "m"
    # a field converted twice (m -> kg m-2 by open_era5, then to mm by the user) keeps the
    # first original through the second conversion and through downscaling
    mm = opened.assign_attrs(units="mm")
    assert to_kg_m2(mm).attrs["units_original"] == "m"
    hr = downscale(mm, 2, "softmax", model="bicubic")
    assert hr.attrs["units"] == "mm" and hr.attrs["units_original"] == "m"


def test_each_dataset_variable_comes_back_in_its_own_units() -> None:
    ds = xr.Dataset({"tp": _field("tp", "m"), "tcw": _field("tcw", "kg m-2")})
    out = downscale(ds, 2, "softmax", model="bicubic")
    assert out["tp"].attrs["units"] == "m" and out["tcw"].attrs["units"] == "kg m-2"
    np.testing.assert_allclose(out["tp"].values * 1000.0, out["tcw"].values, rtol=2e-6)


# ------------------------------------------------------------------ variable identity
@pytest.fixture()
def tcw_ckpt(tmp_path):
    clear_model_cache()
    model = get_model("cnn", 2, "softmax", scale=30.0, width=4, blocks=1)
    yield save_checkpoint(tmp_path / "tcw.pt", model, meta={"variable": "tcw"})
    clear_model_cache()


def test_a_checkpoint_on_another_variable_warns_naming_both(tcw_ckpt) -> None:
    ozone = _field("tco3", "kg m-2", long_name="Total column ozone")
    with pytest.warns(UserWarning, match=r"'tcw' but the data here is 'tco3'"):
        downscale(ozone, 2, "softmax", model=tcw_ckpt)
    with pytest.raises(CheckpointError, match=r"'tcw' but the data here is 'tco3'"):
        downscale(ozone, 2, "softmax", model=tcw_ckpt, strict=True)
    with pytest.warns(UserWarning, match="an unnamed DataArray"):
        Downscaler(tcw_ckpt, factor=2)(ozone.rename(None))
    # contrast: the checkpoint's own variable is silent (warnings are errors here), and a
    # baseline has no variable to check
    downscale(_field("tcw", "kg m-2"), 2, "softmax", model=tcw_ckpt, strict=True)
    downscale(ozone, 2, "softmax", model="bicubic", strict=True)
