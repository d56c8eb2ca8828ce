"""Still-packed data is decoded, never downscaled as raw counts, and packing never reaches an output.

The packaged ERA5 Rhine sample is int16 with ``scale_factor``/``add_offset``/``_FillValue``;
opened with ``mask_and_scale=False`` xarray hands over the raw counts with those attributes.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from climdown.conservation import assert_conserves
from climdown.data.sources import normalize_dataset, sample_path
from climdown.errors import DataValueError
from climdown.inference import downscale
from climdown.units import PACKING_KEYS, decode_packed

CROP = {"time": slice(0, 2), "latitude": slice(0, 40), "longitude": slice(0, 40)}


def _raw(chunks=None) -> xr.Dataset:
    ds = xr.open_dataset(sample_path("rhine"), mask_and_scale=False, chunks=chunks)
    return ds.isel(CROP)


def _decoded() -> xr.Dataset:
    return xr.open_dataset(sample_path("rhine")).isel(CROP)


def _assert_no_packing(obj: xr.Dataset | xr.DataArray) -> None:
    variables = obj.variables if isinstance(obj, xr.Dataset) else {obj.name: obj.variable}
    variables = {**variables, **{k: v.variable for k, v in obj.coords.items()}}
    for name, var in variables.items():
        for key in PACKING_KEYS:
            assert key not in var.attrs, (name, key)
            # _FillValue=None is the one allowed key: it keeps xarray from writing a fill value
            # on coordinates and bounds (CF: they must have none), it packs nothing
            assert key not in var.encoding or (key == "_FillValue" and var.encoding[key] is None), (
                name,
                key,
            )


def test_the_sample_is_packed_when_opened_raw() -> None:
    raw = _raw()["tcw"]
    assert raw.dtype == np.int16 and "scale_factor" in raw.attrs  # the situation under test


@pytest.mark.parametrize("chunks", [None, {"time": 1}], ids=["numpy", "dask"])
def test_packed_input_is_decoded_before_downscaling(chunks) -> None:
    raw = _raw(chunks)
    hr = downscale(raw, 2, "softmax", model="bicubic")
    want = downscale(_decoded(), 2, "softmax", model="bicubic")
    np.testing.assert_allclose(hr["tcw"].values, want["tcw"].values, rtol=1e-5)
    assert float(hr["tcw"].max()) < 100.0  # kg m-2, not int16 counts in the tens of thousands
    assert hr["tcw"].attrs["units"] == "kg m**-2"
    _assert_no_packing(hr)
    assert_conserves(hr["tcw"], raw["tcw"], rtol=1e-5)  # the budget decodes the LR too


def test_a_packed_dataarray_is_decoded_and_its_output_carries_no_packing() -> None:
    raw = _raw()["tcw"]
    hr = downscale(raw, 2, "softmax", model="bicubic")
    _assert_no_packing(hr)
    np.testing.assert_allclose(
        hr.values, downscale(_decoded()["tcw"], 2, "softmax", model="bicubic").values, rtol=1e-5
    )


def test_written_output_reads_back_as_the_values(tmp_path) -> None:
    hr = downscale(_raw(), 2, "softmax", model="bicubic")
    hr.to_netcdf(tmp_path / "hr.nc")
    with xr.open_dataset(tmp_path / "hr.nc") as back:
        np.testing.assert_allclose(back["tcw"].values, hr["tcw"].values, rtol=1e-6)
        assert back["tcw"].dtype == np.float32  # no stale int16 packing applied on write


def test_fill_values_become_missing_and_then_a_clear_error() -> None:
    raw = _raw()
    fill = raw["tcw"].attrs["_FillValue"]
    v = raw["tcw"].values.copy()
    v[0, 3, 4] = fill
    raw["tcw"] = raw["tcw"].copy(data=v)
    assert decode_packed(raw["tcw"]).isnull().sum() == 1
    with pytest.raises(DataValueError, match=r"1 NaN/inf value\(s\).*1 NaN"):
        downscale(raw, 2, "softmax", model="bicubic")


def test_normalize_dataset_decodes_a_raw_dataset() -> None:
    out = normalize_dataset(_raw())["tcw"]
    want = _decoded()["tcw"].values
    np.testing.assert_allclose(out.values, want, rtol=1e-6)
    assert out.dtype == np.float32
    _assert_no_packing(out)


def test_unpacked_data_is_left_alone() -> None:
    da = _decoded()["tcw"]
    assert decode_packed(da) is da  # contrast: nothing to decode, nothing changed
