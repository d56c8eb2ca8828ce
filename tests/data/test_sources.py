"""Opening ERA5-like data: samples, ERA5 quirks, the ARCO cloud layout, units, bad input, .pt."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from climdown.data import (
    find_variable,
    load_reference_pt,
    normalize_dataset,
    open_era5,
    open_sample,
    open_source,
    sample_path,
    synthetic_tcw,
)
from climdown.data.sources import open_dataarray
from climdown.errors import (
    ClimdownError,
    CoordinateError,
    DataValueError,
    RecipeError,
    UnitsError,
)
from climdown.grid import Grid
from climdown.testing import raise_if_dask_computes, tcw_dataarray
from climdown.testing import write_arco_like as arco_like


def era5_style(units: str = "kg m**-2", name: str = "tcw", ntime: int = 3) -> xr.Dataset:
    """A small ERA5-looking dataset: latitude/longitude, descending latitude, 0..360."""
    da = tcw_dataarray(8, 8, ntime, lat_name="latitude", lon_name="longitude", units=units)
    return da.rename(name).to_dataset()


PACKING = {"dtype": "int16", "scale_factor": 0.002, "add_offset": 35.0, "_FillValue": -32767}


def write_arco_like(path, *, packed: bool, zarr_format: int) -> xr.Dataset:
    """A local zarr store laid out like ARCO-ERA5, 9 x 16 cells, six hours."""
    times = pd.date_range("2020-01-01", periods=6, freq="1h")
    packing = PACKING if packed else None
    return arco_like(path, times, spacing=22.5, packing=packing, zarr_format=zarr_format)


# ---------------------------------------------------------------------------------------
# Packaged samples
# ---------------------------------------------------------------------------------------
def test_rhine_sample_normalised(rhine_ds):
    tcw = rhine_ds["tcw"]
    assert list(rhine_ds.data_vars) == ["tcw"]
    assert tcw.dims == ("time", "latitude", "longitude")  # the file's names
    assert tcw.shape == (24, 41, 41)
    assert tcw.dtype == np.float32  # int16 packed -> float32, not float64
    assert tcw.attrs["units"] == "kg m-2"  # was "kg m**-2"
    lat = rhine_ds["latitude"].values
    assert lat[0] == 55.0 and lat[-1] == 45.0  # descending kept
    assert rhine_ds["latitude"].dtype == np.float64
    assert 0.9 < float(tcw.min()) < 1.0 and 19.0 < float(tcw.max()) < 19.5
    assert "era5_tcw_rhine" in rhine_ds.attrs["climdown_source"]
    assert "climdown" in rhine_ds.attrs["history"].splitlines()[-1]
    assert Grid.from_xarray(rhine_ds).shape == (41, 41)


def test_rhine_values_match_xarray_decoding_to_packing_precision(rhine_ds):
    raw = xr.open_dataset(sample_path("rhine"))
    half_step = 0.5 * raw["tcw"].encoding["scale_factor"]
    np.testing.assert_allclose(rhine_ds["tcw"].values, raw["tcw"].values, rtol=0, atol=half_step)
    raw.close()


def test_global_sample_keeps_tcwv(global_ds):
    assert find_variable(global_ds) == "tcwv"
    assert global_ds["tcwv"].shape == (1, 121, 240)
    assert global_ds["tcwv"].attrs["standard_name"] == "atmosphere_mass_content_of_water_vapor"
    assert Grid.from_xarray(global_ds).periodic


def test_sample_lookup():
    assert sample_path("rhine").name == "era5_tcw_rhine_2020-01-01.nc"
    assert sample_path("global").is_file()
    with pytest.raises(ClimdownError, match="'rhine', 'global'"):
        sample_path("alps")


def test_open_sample_with_chunks_is_dask():
    ds = open_sample("rhine", chunks={"time": 6})
    assert isinstance(ds["tcw"].data, dsa.Array)
    assert ds["tcw"].chunks[0] == (6, 6, 6, 6)
    assert ds["tcw"].dtype == np.float32


# ---------------------------------------------------------------------------------------
# One naming: the file's (issue 14, item 6)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rhine", "global"])
def test_open_sample_lines_up_with_xarray_of_the_same_file(name):
    with xr.open_dataset(sample_path(name)) as raw:
        ours = open_sample(name)
        var = find_variable(ours)
        assert ours[var].dims == raw[var].dims == ("time", "latitude", "longitude")
        assert set(ours[var].coords) == set(raw[var].coords)
        diff = ours[var] - raw[var]  # a difference per cell, not an outer product
        assert diff.dims == raw[var].dims and diff.shape == raw[var].shape
        # the packed values are decoded to float32 here, to float64 by xarray
        tol = raw[var].encoding.get("scale_factor", 0.0) / 2 + 1e-5 * float(abs(raw[var]).max())
        assert float(abs(diff).max()) <= tol


def test_renamed_coordinates_would_broadcast_to_an_outer_product():
    """Contrast: what lat/lon from open_sample did against xarray's latitude/longitude."""
    with xr.open_dataset(sample_path("rhine"), chunks={}) as raw:
        renamed = open_sample("rhine", chunks={}).rename(latitude="lat", longitude="lon")
        with raise_if_dask_computes():
            diff = renamed["tcw"] - raw["tcw"]  # lazy: only the shape is looked at
        assert diff.shape == (24, 41, 41, 41, 41)  # the 22 GB of issue 14, in miniature


@pytest.mark.parametrize(("lat", "lon"), [("latitude", "longitude"), ("lat", "lon")])
def test_every_opener_keeps_the_files_names_but_open_source(tmp_path, lat, lon):
    da = tcw_dataarray(4, 6, 2, lat_name=lat, lon_name=lon, units="kg m**-2")
    path = tmp_path / "f.nc"
    da.to_dataset().to_netcdf(path)
    want = ("time", lat, lon)
    assert open_era5(path)["tcw"].dims == want
    assert open_dataarray(path).dims == want
    assert normalize_dataset(da.to_dataset())["tcw"].dims == want
    # the recipes' opener gives the stores' names, whatever the file says
    for source in (str(path), {"kind": "era5", "path": str(path)}, da.to_dataset()):
        assert open_source(source)["tcw"].dims == ("time", "lat", "lon")


def test_a_coordinate_on_another_dimension_becomes_the_dimension():
    da = tcw_dataarray(4, 6, 2, lat_name="latitude", lon_name="longitude")
    ds = da.to_dataset().swap_dims(latitude="y", longitude="x")
    assert ds["tcw"].dims == ("time", "y", "x")
    out = normalize_dataset(ds)
    assert out["tcw"].dims == ("time", "latitude", "longitude")


# ---------------------------------------------------------------------------------------
# The ARCO-ERA5 cloud layout, built locally
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("packed", "zarr_format"), [(True, 2), (False, 3)])
def test_arco_layout_local_zarr(tmp_path, packed, zarr_format):
    store = tmp_path / "arco.zarr"
    src = write_arco_like(store, packed=packed, zarr_format=zarr_format)
    with raise_if_dask_computes():
        ds = open_era5(store)
    assert list(ds.data_vars) == ["total_column_water"]  # chosen by name, 2m_temperature dropped
    tcw = ds["total_column_water"]
    assert isinstance(tcw.data, dsa.Array)  # zarr opens lazily with dask by default
    assert tcw.dims == ("time", "latitude", "longitude")
    assert tcw.dtype == np.float32
    assert tcw.attrs["units"] == "kg m-2"
    assert ds["latitude"].values[0] == 90.0 and ds["latitude"].values[-1] == -90.0
    tol = PACKING["scale_factor"] / 2 * 1.01 if packed else 0
    np.testing.assert_allclose(tcw.values, src["total_column_water"].values, rtol=0, atol=tol)
    via_source = open_source({"kind": "era5", "path": str(store)})  # the stores' lat/lon
    renamed = tcw.rename(latitude="lat", longitude="lon")
    xr.testing.assert_identical(via_source["total_column_water"], renamed)


def test_zarr_explicit_variable_and_chunks(tmp_path):
    store = tmp_path / "arco.zarr"
    write_arco_like(store, packed=True, zarr_format=2)
    ds = open_era5(str(store), "total_column_water", chunks={"time": 2})
    assert ds["total_column_water"].chunks[0] == (2, 2, 2)
    with pytest.raises(UnitsError, match="'K'"):
        open_era5(store, "2m_temperature")


def test_open_dataarray_picks_the_variable_like_open_era5(tmp_path):
    ds = era5_style()
    ds["tcwv"] = (ds["tcw"] / 1000.0).assign_attrs(units="m")  # a water depth
    path = tmp_path / "two.nc"
    ds.to_netcdf(path)
    tcw = open_dataarray(path)
    assert isinstance(tcw, xr.DataArray) and tcw.name == "tcw"
    assert tcw.dims == ("time", "latitude", "longitude") and tcw.attrs["units"] == "kg m-2"
    xr.testing.assert_identical(tcw, open_era5(path)["tcw"])
    tcwv = open_dataarray(path, "tcwv")  # the named one, converted from metres
    assert tcwv.name == "tcwv" and tcwv.attrs["units"] == "kg m-2"
    np.testing.assert_allclose(tcwv.values, tcw.values, rtol=1e-6)
    with pytest.raises(ClimdownError, match="variable 'tcc' not found"):
        open_dataarray(path, "tcc")


# ---------------------------------------------------------------------------------------
# ERA5 quirks in netCDF
# ---------------------------------------------------------------------------------------
def test_cds_netcdf_layout(tmp_path):
    """CDS (2024+) netCDF: valid_time dim, singleton pressure_level, scalar number/expver."""
    ds = era5_style().rename(time="valid_time")
    ds = ds.expand_dims(pressure_level=[850.0], axis=1)
    ds = ds.assign_coords(number=0, expver=("valid_time", ["0001"] * 3))
    path = tmp_path / "cds.nc"
    ds.to_netcdf(path, encoding={"tcw": dict(PACKING)})
    out = open_era5(path)
    assert out["tcw"].dims == ("time", "latitude", "longitude")
    assert set(out.coords) == {"time", "latitude", "longitude", "expver"}
    assert "pressure_level" not in out.dims and "number" not in out.coords
    assert out["tcw"].dtype == np.float32


def test_cfgrib_like_valid_time_replaces_reference_time():
    ds = era5_style()
    ref = ds["time"].values
    valid = ref + np.timedelta64(6, "h")
    ds = ds.assign_coords(valid_time=("time", valid), step=np.timedelta64(6, "h"), surface=0.0)
    out = normalize_dataset(ds)
    np.testing.assert_array_equal(out["time"].values, valid)
    assert "step" not in out.coords and "surface" not in out.coords


def test_single_time_scalar_coordinate_becomes_a_dim():
    ds = era5_style(ntime=1).isel(time=0)
    assert "time" not in ds["tcw"].dims
    out = normalize_dataset(ds)
    assert out["tcw"].dims == ("time", "latitude", "longitude")


def test_in_memory_dataset_via_open_source_and_dim_order():
    ds = era5_style().transpose("latitude", "longitude", "time")
    out = open_source(ds)
    assert out["tcw"].dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(out["tcw"].values, ds["tcw"].transpose("time", ...).values)


def test_ascending_latitude_and_minus180_longitudes_kept():
    da = tcw_dataarray(4, 8, descending=False, lon_convention="-180..180")
    out = normalize_dataset(da.to_dataset())
    np.testing.assert_array_equal(out["lat"].values, da["lat"].values)
    np.testing.assert_array_equal(out["lon"].values, da["lon"].values)
    assert out["lon"].min() < 0


def test_multi_file_open(tmp_path, rhine_ds):
    raw = xr.open_dataset(sample_path("rhine"))
    paths = []
    for i, part in enumerate((slice(0, 12), slice(12, 24))):
        p = tmp_path / f"part{i}.nc"
        raw.isel(time=part).to_netcdf(p)
        paths.append(p)
    raw.close()
    out = open_era5(paths)
    assert out["tcw"].sizes["time"] == 24
    assert out["tcw"].dtype == np.float32
    np.testing.assert_array_equal(out["tcw"].values, rhine_ds["tcw"].values)
    globbed = open_era5(str(tmp_path / "part*.nc"))
    assert globbed["tcw"].sizes["time"] == 24


# ---------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------
def test_water_depth_in_metres_converted():
    ds = era5_style(units="m")
    ds["tcw"] = ds["tcw"] / 1000.0
    ds["tcw"].attrs["units"] = "m"
    out = normalize_dataset(ds)
    assert out["tcw"].attrs["units"] == "kg m-2"
    assert out["tcw"].attrs["units_original"] == "m"
    np.testing.assert_allclose(out["tcw"].values, ds["tcw"].values * 1000.0, rtol=1e-6)


def test_mm_handled_explicitly_not_silently_relabelled():
    ds = era5_style(units="mm")
    out = normalize_dataset(ds)
    assert out["tcw"].attrs["units"] == "kg m-2"
    assert out["tcw"].attrs["units_original"] == "mm"  # the conversion is recorded
    np.testing.assert_array_equal(out["tcw"].values, ds["tcw"].values)  # 1 mm = 1 kg m-2
    same = normalize_dataset(era5_style(units="kg m-2"))
    assert "units_original" not in same["tcw"].attrs  # contrast: nothing converted


@pytest.mark.parametrize("units", ["K", "Pa", ""])
def test_wrong_or_missing_units(units):
    ds = era5_style(units=units)
    with pytest.raises(UnitsError):
        normalize_dataset(ds)


# ---------------------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------------------
def test_find_variable_order_and_explicit():
    ds = era5_style(name="tcwv")
    ds["total_column_water"] = ds["tcwv"]
    assert find_variable(ds) == "total_column_water"  # before tcwv
    assert find_variable(ds, "tcwv") == "tcwv"
    ds["tcw"] = ds["tcwv"]
    assert find_variable(ds) == "tcw"


def test_find_variable_single_mass_variable():
    ds = era5_style(name="iwv")
    ds["t2m"] = ds["iwv"].assign_attrs(units="K")
    assert find_variable(ds) == "iwv"


def test_find_variable_ambiguous_or_unknown():
    ds = era5_style(name="a")
    ds["b"] = ds["a"]
    with pytest.raises(ClimdownError, match=r"a \[kg m\*\*-2\], b \[kg m\*\*-2\]"):
        find_variable(ds)
    with pytest.raises(ClimdownError, match="variable 'tcw' not found"):
        find_variable(ds, "tcw")
    temps = era5_style(name="t2m", units="K")
    with pytest.raises(ClimdownError, match="no variable has column-mass units"):
        find_variable(temps)


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------
def test_missing_latlon():
    ds = era5_style().rename(latitude="y", longitude="x")
    for name in ("y", "x"):
        ds[name].attrs = {}
    with pytest.raises(CoordinateError, match="latitude not found"):
        normalize_dataset(ds)


def test_missing_time():
    ds = era5_style().isel(time=0, drop=True)
    with pytest.raises(CoordinateError, match="time not found"):
        normalize_dataset(ds)


def test_forecast_steps_refused():
    ds = era5_style().expand_dims(step=2)
    valid = ds["time"].values[:, None] + np.array([0, 6], "timedelta64[h]")[None, :]
    ds = ds.assign_coords(valid_time=(("time", "step"), valid))
    with pytest.raises(CoordinateError, match="select one step"):
        normalize_dataset(ds)


@pytest.mark.skipif("cfgrib" in xr.backends.list_engines(), reason="cfgrib is installed")
def test_grib_without_cfgrib(tmp_path):
    path = tmp_path / "era5.grib"
    path.write_bytes(b"GRIB")
    with pytest.raises(ClimdownError, match="pip install cfgrib"):
        open_era5(path)


def test_unknown_engine():
    with pytest.raises(ClimdownError, match="engine 'nope' is not installed"):
        open_era5(sample_path("rhine"), engine="nope")


def test_cloud_url_without_gcsfs():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed; the error path needs it absent")
    with pytest.raises(ClimdownError, match=r'needs gcsfs.*pip install "climdown\[cloud\]"'):
        open_era5("gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3")


def test_storage_options_are_for_zarr_urls():
    with pytest.raises(ClimdownError, match="storage_options are only used for zarr stores"):
        open_era5("https://example.invalid/era5.nc", storage_options={"token": "anon"})
    with pytest.raises(ClimdownError, match="not to the local path"):
        open_era5(sample_path("rhine"), storage_options={"token": "anon"})


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_era5(tmp_path / "absent.nc")


# ---------------------------------------------------------------------------------------
# open_source
# ---------------------------------------------------------------------------------------
def test_open_source_synthetic_forms_agree():
    a = open_source("synthetic", times=2, region=(0, 2, 0, 2), seed=5)
    b = open_source({"kind": "synthetic", "times": 2, "region": (0, 2, 0, 2), "seed": 5})
    c = synthetic_tcw(2, region=(0, 2, 0, 2), seed=5)
    xr.testing.assert_equal(a, c)
    xr.testing.assert_equal(b, c)


def test_open_source_samples(rhine_ds):
    stores_names = rhine_ds["tcw"].rename(latitude="lat", longitude="lon")
    xr.testing.assert_identical(open_source("sample:rhine")["tcw"], stores_names)
    assert open_source({"kind": "sample", "name": "global"})["tcwv"].shape == (1, 121, 240)


def test_open_source_path_same_layout_as_synthetic(synthetic_small):
    real = open_source(str(sample_path("rhine")))
    assert real["tcw"].dims == synthetic_small["tcw"].dims
    assert real["tcw"].attrs["units"] == synthetic_small["tcw"].attrs["units"] == "kg m-2"
    assert real["tcw"].dtype == synthetic_small["tcw"].dtype


@pytest.mark.parametrize(
    ("source", "kwargs", "match"),
    [
        ({"kind": "synthetic", "sead": 1}, {}, r"unknown key\(s\) \['sead'\]"),
        ({"kind": "satellite"}, {}, "source kind 'satellite' is unknown"),
        ({"kind": "era5"}, {}, "needs a 'path'"),
        ({"kind": "sample"}, {}, "needs a 'name'"),
        ("synthetic", {"variable": "tcwv"}, "synthetic data provide only 'tcw'"),
    ],
)
def test_open_source_bad_specs(source, kwargs, match):
    with pytest.raises(RecipeError, match=match):
        open_source(source, **kwargs)


# ---------------------------------------------------------------------------------------
# Reference tensors
# ---------------------------------------------------------------------------------------
def test_load_reference_pt(tmp_path):
    torch = pytest.importorskip("torch")
    t = torch.arange(2 * 3 * 1 * 4 * 5, dtype=torch.float32).reshape(2, 3, 1, 4, 5)
    path = tmp_path / "target_train.pt"
    torch.save(t, path)
    lat = np.array([50.0, 49.75, 49.5, 49.25])
    lon = np.arange(5) * 0.25
    da = load_reference_pt(path, lat=lat, lon=lon, start=["2020-01-01", "2020-01-02"])
    assert da.dims == ("sample", "frame", "channel", "y", "x")
    assert da.shape == (2, 3, 1, 4, 5)
    np.testing.assert_array_equal(da.values, t.numpy())
    np.testing.assert_array_equal(da["lat"].values, lat)
    assert da["time"].dims == ("sample", "frame")
    assert da["time"].values[1, 2] == np.datetime64("2020-01-02T02:00")
    assert da.attrs["units"] == "kg m-2"
    one_start = load_reference_pt(path, start="2020-01-01", freq="6h")
    assert one_start["time"].values[1, 1] == np.datetime64("2020-01-01T06:00")


def test_load_reference_pt_bad_input(tmp_path):
    torch = pytest.importorskip("torch")
    four = tmp_path / "four.pt"
    torch.save(torch.zeros(2, 1, 4, 5), four)
    with pytest.raises(DataValueError, match=r"4-D tensor of shape \(2, 1, 4, 5\).*unsqueeze"):
        load_reference_pt(four)
    pair = tmp_path / "pair.pt"
    torch.save({"lr": torch.zeros(1)}, pair)
    with pytest.raises(DataValueError, match="holds a dict"):
        load_reference_pt(pair)
    five = tmp_path / "five.pt"
    torch.save(torch.zeros(2, 1, 1, 4, 5), five)
    with pytest.raises(CoordinateError, match=r"lat has shape \(3,\), expected \(4,\)"):
        load_reference_pt(five, lat=[1.0, 2.0, 3.0])
    with pytest.raises(CoordinateError, match="start has 3 values"):
        load_reference_pt(five, start=["2020-01-01"] * 3)


def test_arco_store_name_recognised_as_zarr(tmp_path):
    """ARCO-ERA5's store is named '...chunk-1.zarr-v3': opened as zarr without engine=."""
    store = tmp_path / "full_37-1h-0p25deg-chunk-1.zarr-v3"
    write_arco_like(store, packed=False, zarr_format=2)
    ds = open_era5(str(store))
    assert ds["total_column_water"].sizes == {"time": 6, "latitude": 9, "longitude": 16}
