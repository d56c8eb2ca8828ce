"""Every file climdown writes passes a real CF client: the IOOS compliance checker, CF-1.8.

``compliance-checker --test=cf:1.8`` reads the output of ``climdown downscale`` (and of the
accessor's Dataset, written with ``to_netcdf``) and must report no errors and no warnings. The
contrasts prove the checker is listening: the packaged ERA5 inputs have errors and warnings of
their own (``_FillValue`` on the coordinates, no ``standard_name`` on time, ...), and the same
output written with xarray's default encodings has the ``_FillValue`` errors back.

The metadata the issue asked to survive is checked by name: the input's global attributes
(Copernicus licence line), ``history`` with climdown's line appended, ``Conventions`` naming
CF-1.8, a ``title``, CF names of the variable and of its coordinates, and a line saying that
float64 input came back as float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climdown.cli import main
from climdown.data.sources import sample_path
from climdown.grid import cf_coordinate_attrs
from climdown.inference import downscale

pytest.importorskip("compliance_checker")

# a corner of the Rhine sample: two hours, 12 x 14 cells (small files, a quick checker run)
CROP = {"time": [0, 7], "latitude": slice(3, 15), "longitude": slice(5, 19)}


def cf_report(path: Path, tmp_path: Path) -> dict[str, list[str]]:
    """The checker's messages on ``path``: ``errors`` (high priority) and ``warnings`` (medium)."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite().load_all_available_checkers()
    report = tmp_path / f"{path.name}.cf.json"
    ComplianceChecker.run_checker(
        str(path), ["cf:1.8"], 0, "normal", output_filename=str(report), output_format="json"
    )
    result = json.loads(report.read_text())["cf:1.8"]

    def messages(items: list[dict]) -> list[str]:
        return [m for item in items for m in item["msgs"] + messages(item.get("children", []))]

    return {
        "errors": messages(result["high_priorities"]),
        "warnings": messages(result["medium_priorities"]),
    }


def _crop(tmp_path: Path) -> Path:
    """The Rhine sample's corner, written as ERA5 wrote it (packed int16, CF-1.6 attributes)."""
    path = tmp_path / "rhine_crop.nc"
    with xr.open_dataset(sample_path("rhine")) as ds:
        ds.isel(CROP).to_netcdf(path)
    return path


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("rhine", ["coordinate variable 'latitude' must not have the _FillValue", "title"]),
        ("global", ["datatype is int64", "should have standard_name='time'"]),
    ],
)
def test_climdown_downscale_leaves_each_packaged_sample_cleaner_than_it_found_it(
    sample: str, expected: list[str], tmp_path: Path
) -> None:
    src = sample_path(sample)
    before = cf_report(src, tmp_path)
    found = before["errors"] + before["warnings"]
    for words in expected:  # contrast: the checker reports what is wrong with the input
        assert any(words in m for m in found), (words, found)
    assert before["errors"]

    out = tmp_path / f"{sample}_x2.nc"
    args = ["downscale", str(src), str(out), "--factor", "2", "--model", "bicubic"]
    assert main(args) == 0
    assert cf_report(out, tmp_path) == {"errors": [], "warnings": []}


@pytest.mark.parametrize("grid", ["rotated_pole", "lambert_conformal"])
def test_curvilinear_outputs_pass_the_checker(grid: str, tmp_path: Path) -> None:
    from climdown import testing

    if grid == "rotated_pole":  # as CORDEX writes it: rlat/rlon, the mapping a data variable
        ds = testing.rotated_pole_field(8, 8).drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"])
        ds = ds.reset_coords("rotated_pole")
    else:
        pytest.importorskip("pyproj")
        ds = testing.lambert_conformal_field(8, 8)
    src = tmp_path / f"{grid}.nc"
    ds.to_netcdf(src)
    # contrast: the test domain as xarray writes it has the checker's errors (int64 time, no
    # names on time or the grid mapping, rlat/rlon without latitude/longitude)
    assert cf_report(src, tmp_path)["errors"]
    out = tmp_path / f"{grid}_x2.nc"
    assert main(["downscale", str(src), str(out), "--factor", "2", "--model", "bicubic"]) == 0
    assert cf_report(out, tmp_path) == {"errors": [], "warnings": []}


def test_accessor_outputs_pass_the_checker_and_default_encodings_do_not(tmp_path: Path) -> None:
    with xr.open_dataset(_crop(tmp_path)) as ds:
        hr = ds.climdown.downscale(factor=2, constraint="softmax", model="bicubic")
        lazy = ds.chunk({"time": 1}).climdown.downscale(factor=2, model="bicubic")
    for name, obj in (("eager", hr), ("lazy", lazy)):
        obj.to_netcdf(tmp_path / f"{name}.nc")
        assert cf_report(tmp_path / f"{name}.nc", tmp_path) == {"errors": [], "warnings": []}

    # contrast: the encodings are what keep _FillValue off the coordinates and bounds
    bare = hr.copy()
    for v in bare.variables.values():
        v.encoding = {}
    bare.to_netcdf(tmp_path / "bare.nc")
    report = cf_report(tmp_path / "bare.nc", tmp_path)
    assert any("'latitude' must not have the _FillValue" in m for m in report["errors"])
    assert any("should not have the attributes: '['_FillValue']'" in m for m in report["warnings"])


def test_a_dataarray_output_is_clean_but_for_the_global_attributes_it_cannot_hold(
    tmp_path: Path,
) -> None:
    with xr.open_dataset(_crop(tmp_path)) as ds:
        hr = ds["tcw"].climdown.downscale(factor=2, model="bicubic")
    hr.to_netcdf(tmp_path / "da.nc")
    report = cf_report(tmp_path / "da.nc", tmp_path)
    assert report["errors"] == []
    # a DataArray has no global attributes: title, history and Conventions are the Dataset's
    assert len(report["warnings"]) == 3
    assert all("global attribute" in m or "Conventions" in m for m in report["warnings"])


def test_metadata_survives_downscaling(tmp_path: Path) -> None:
    src = _crop(tmp_path)
    out = tmp_path / "out.nc"
    assert main(["downscale", str(src), str(out), "--factor", "2", "--model", "bicubic"]) == 0
    with xr.open_dataset(src) as lr, xr.open_dataset(out) as hr:
        # the input's global attributes, CF-1.8 named, a title made, history appended
        assert hr.attrs["Licence"] == lr.attrs["Licence"]
        assert lr.attrs["Conventions"] == "CF-1.6" and hr.attrs["Conventions"] == "CF-1.8"
        assert "title" not in lr.attrs
        assert hr.attrs["title"] == "Total column water, downscaled 2x by climdown"
        history = hr.attrs["history"].splitlines()
        assert history[0] == lr.attrs["history"]
        assert "climdown" in history[-1] and "'bicubic'" in history[-1]
        # the variable: its units and long_name, CF's standard_name and what a value is
        tcw = hr["tcw"]
        assert tcw.attrs["units"] == lr["tcw"].attrs["units"] == "kg m**-2"
        assert tcw.attrs["long_name"] == "Total column water"
        assert tcw.attrs["standard_name"] == "atmosphere_mass_content_of_water"
        assert tcw.attrs["cell_methods"] == "area: mean"
        # float64 in (ERA5's int16 decoded by xarray), float32 out, and the file says so
        assert lr["tcw"].dtype == np.float64 and tcw.dtype == np.float32
        assert "float64 values returned as float32" in tcw.attrs["history"]
        # coordinates: CF names and axes; time stored as the input stored it (int32)
        for name, axis in (("latitude", "Y"), ("longitude", "X"), ("time", "T")):
            assert hr[name].attrs["standard_name"] == name and hr[name].attrs["axis"] == axis
            assert "_FillValue" not in hr[name].encoding
        assert hr["time"].encoding["dtype"] == lr["time"].encoding["dtype"] == np.int32
        np.testing.assert_array_equal(hr["time"].values, lr["time"].values)


def test_global_title_is_kept_and_a_vapour_column_is_named(tmp_path: Path) -> None:
    with xr.open_dataset(sample_path("global")) as ds:
        hr = downscale(ds, 2, "softmax", model="bicubic")
        assert hr.attrs["title"] == ds.attrs["title"]
        assert hr.attrs["Licence"] == ds.attrs["Licence"]
        assert hr.attrs["source"] == ds.attrs["source"]
    assert hr["tcwv"].attrs["standard_name"] == "atmosphere_mass_content_of_water_vapor"
    assert (
        "history" in hr["tcwv"].attrs and "returned as float32" not in hr["tcwv"].attrs["history"]
    )


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        # ERA5: long_name and units only; CF's standard_name and axis are added
        (
            "lat",
            {"units": "degrees_north", "long_name": "latitude"},
            {"units": "degrees_north", "long_name": "latitude", "standard_name": "latitude"},
        ),
        # another CF spelling of the units is kept; a bounds pointer of the input's cells goes
        ("lon", {"units": "degree_E", "bounds": "lon_bnds"}, {"units": "degree_E"}),
        # "degrees" (or nothing) says no direction: CF's units replace it
        ("lat", {"units": "degrees"}, {"units": "degrees_north"}),
        ("lon", {}, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
        # what the input says is kept
        ("lat", {"standard_name": "latitude", "long_name": "Breite"}, {"long_name": "Breite"}),
    ],
)
def test_cf_coordinate_attrs(kind: str, given: dict, expected: dict) -> None:
    out = cf_coordinate_attrs(given, kind)
    assert {k: out[k] for k in expected} == expected
    assert out["axis"] == ("Y" if kind == "lat" else "X") and "bounds" not in out
    assert out["standard_name"] == ("latitude" if kind == "lat" else "longitude")
    with pytest.raises(ValueError, match="'lat' or 'lon'"):
        cf_coordinate_attrs(given, "latitude")
