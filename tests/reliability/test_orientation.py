"""The answer does not depend on how the input is stored.

A convolutional network is not symmetric under reversing an axis, so
:class:`climdown.inference.Downscaler` presents every input in the orientation the model was
trained on (:class:`climdown.grid.Orientation`: the checkpoint's record, ERA5's latitude
descending / longitude ascending where there is none) and flips the result back. Property:
the same real ERA5 field stored with latitude ascending or descending, longitude eastward or
westward, in 0..360 or -180..180 and, on a global grid, with its longitude axis rolled, gives
the same downscaled field once mapped back (float32 round-off), eagerly and lazily (dask, with
periodic chunk halos), and conserves mass. Contrast: the same model given the flipped field
as it is stored (the orientation handling bypassed) gives another field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from climdown.checkpoint import clear_model_cache, save_checkpoint
from climdown.conservation import assert_conserves
from climdown.grid import ERA5_ORIENTATION, Grid, Orientation, coarsen_dataarray, wrap_lon
from climdown.inference import Downscaler
from climdown.nn.models import get_model

RADIUS = 5  # receptive radius in LR cells of the 1-block CNN below: halo=RADIUS is seamless
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def busy_cnn(factor: int = 4, seed: int = 0) -> torch.nn.Module:
    """A 1-block CNN kicked off its block-constant ICNR start: its output depends on orientation."""
    torch.manual_seed(seed)
    model = get_model("cnn", factor, "softmax", scale=30.0, width=8, blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


@pytest.fixture(scope="module")
def regional(rhine_ds: xr.Dataset) -> xr.Dataset:
    """Real ERA5 over the Rhine, moved 5 deg west so it crosses meridian 0 (-5..5 E)."""
    ds = rhine_ds.rename(latitude="lat", longitude="lon")  # the names these tests write
    ds = ds.isel(time=[0, 12], lat=slice(0, 24), lon=slice(0, 28))
    return ds.assign_coords(lon=ds.lon - 5.0)


@pytest.fixture(scope="module")
def global_band(global_ds: xr.Dataset) -> xr.Dataset:
    """Real global ERA5 from the North Pole (a pole-centred row) to 46.5 N, every 3 deg."""
    return global_ds.isel(latitude=slice(0, 30), longitude=slice(None, None, 2)).rename(
        latitude="lat", longitude="lon"
    )


@pytest.fixture(scope="module")
def down() -> Downscaler:
    return Downscaler(busy_cnn(), factor=4, constraint="softmax", tile=16, halo=RADIUS)


def stored_as(
    ds: xr.Dataset, flip_lat: bool, flip_lon: bool, east180: bool, roll: int = 0
) -> xr.Dataset:
    """The same field stored otherwise: axes reversed, longitudes relabelled, lon rolled."""
    if east180:  # the same places in -180..180 (array order unchanged)
        ds = ds.assign_coords(lon=wrap_lon(ds.lon, -180.0))
    if roll:
        ds = ds.roll(lon=roll, roll_coords=True)
    return ds.isel(
        lat=slice(None, None, -1 if flip_lat else 1), lon=slice(None, None, -1 if flip_lon else 1)
    )


def canonical(da: xr.DataArray) -> xr.DataArray:
    """Mapped back onto one order: north to south, eastward from 0 deg (0..360)."""
    return da.assign_coords(lon=wrap_lon(da.lon, 0.0)).sortby("lon").sortby("lat", ascending=False)


def assert_same_field(got: xr.DataArray, want: xr.DataArray) -> None:
    got, want = canonical(got), canonical(want)
    np.testing.assert_allclose(got.lat.values, want.lat.values, atol=1e-9)
    np.testing.assert_allclose(got.lon.values, want.lon.values, atol=1e-9)
    scale = float(np.abs(want.values).max())
    np.testing.assert_allclose(got.values, want.values, rtol=0, atol=2e-6 * scale)


def _check(down: Downscaler, ds: xr.Dataset, stored: xr.Dataset, lazy: bool) -> None:
    want = down(ds)["tcw" if "tcw" in ds else "tcwv"]
    src = stored.chunk(lat=11, lon=40) if lazy else stored
    got = down(src)
    name = "tcw" if "tcw" in ds else "tcwv"
    assert (got[name].chunks is not None) == lazy
    got = got.compute()
    assert_same_field(got[name], want)
    assert_conserves(got[name], stored[name], rtol=1e-5)  # against the input as stored
    # the CF bounds written describe the cells in the stored order
    assert Grid.from_xarray(got).orientation == Grid.from_xarray(stored).orientation


@SETTINGS
@given(flip_lat=st.booleans(), flip_lon=st.booleans(), east180=st.booleans(), lazy=st.booleans())
def test_regional_field_is_the_same_however_stored(
    down: Downscaler, regional: xr.Dataset, flip_lat: bool, flip_lon: bool, east180: bool, lazy
) -> None:
    _check(down, regional, stored_as(regional, flip_lat, flip_lon, east180), lazy)


@SETTINGS
@given(
    flip_lat=st.booleans(),
    flip_lon=st.booleans(),
    east180=st.booleans(),
    roll=st.integers(0, 119),
    lazy=st.booleans(),
)
def test_global_field_is_the_same_however_stored(
    down: Downscaler, global_band: xr.Dataset, flip_lat, flip_lon, east180, roll, lazy
) -> None:
    _check(down, global_band, stored_as(global_band, flip_lat, flip_lon, east180, roll), lazy)


@pytest.mark.parametrize(("flip_lat", "flip_lon"), [(True, False), (False, True), (True, True)])
def test_contrast_the_model_given_the_stored_order_differs(
    down: Downscaler, regional: xr.Dataset, flip_lat: bool, flip_lon: bool
) -> None:
    stored = stored_as(regional, flip_lat, flip_lon, False)
    want = down(regional)["tcw"]
    handled = down(stored)["tcw"]
    assert_same_field(handled, want)
    # the same model told the stored order is its own: the orientation handling bypassed
    bypass = Downscaler(busy_cnn(), factor=4, constraint="softmax", tile=16, halo=RADIUS)
    bypass.orientation = Grid.from_xarray(stored).orientation
    raw = canonical(bypass(stored)["tcw"]).values
    assert np.abs(raw - canonical(want).values).max() > 1.0  # kg m-2
    assert_conserves(bypass(stored)["tcw"], stored["tcw"], rtol=1e-5)  # conserving, but other


@pytest.mark.parametrize("lazy", [False, True])
def test_packaged_default_model_is_the_same_however_stored(rhine_ds: xr.Dataset, lazy) -> None:
    # the packaged 4x model was trained on 1 deg LR cells: the Rhine coarsened to 1 deg
    rhine = rhine_ds["tcw"].rename(latitude="lat", longitude="lon")  # stored_as writes these
    lr = coarsen_dataarray(rhine.isel(time=[0, 5], lat=slice(0, 40), lon=slice(0, 40)), 4)
    ds = lr.to_dataset()
    down = Downscaler(None, factor=4, constraint="softmax")
    want = down(ds)["tcw"]
    for flips in ((True, False), (False, True)):
        stored = stored_as(ds, *flips, east180=False)
        got = down(stored.chunk(lat=5, lon=6) if lazy else stored)["tcw"]
        assert_same_field(got.compute(), want)
        bypass = Downscaler(None, factor=4, constraint="softmax")
        bypass.orientation = Grid.from_xarray(stored).orientation
        raw = canonical(bypass(stored)["tcw"]).values
        assert np.abs(raw - canonical(want).values).max() > 0.1  # contrast, kg m-2


def _by_hand(model: torch.nn.Module, da: xr.DataArray) -> np.ndarray:
    """The model run once on the array as it lies, with the refined grid's areas, in the
    memory format inference uses (channels-last: the busy model's large weights turn the
    layouts' float32 round-off into 1e-2 kg m-2 differences)."""
    from climdown.nn.device import to_device

    area = torch.from_numpy(Grid(da.lat.values, da.lon.values).refine(4).area)
    x = torch.from_numpy(da.values.astype(np.float32))[:, None, None]
    with torch.inference_mode():
        return to_device(model, torch.device("cpu"))(x, area=area)[:, 0, 0].numpy()


def test_checkpoint_orientation_is_honoured(tmp_path, regional: xr.Dataset) -> None:
    model = busy_cnn()
    da = regional["tcw"]  # ERA5's order: latitude descending
    asc = {"lat": "ascending", "lon": "ascending"}
    ckpt_asc = save_checkpoint(tmp_path / "asc.pt", model, meta={"orientation": asc})
    ckpt_old = save_checkpoint(tmp_path / "old.pt", model, meta={})  # records none: ERA5's
    clear_model_cache()
    try:
        big = {"factor": 4, "constraint": "softmax", "device": "cpu", "tile": 64}
        got_asc = Downscaler(ckpt_asc, **big)
        got_old = Downscaler(ckpt_old, **big)
        assert got_asc.orientation == Orientation("ascending", "ascending")
        assert got_old.orientation == ERA5_ORIENTATION == Orientation("descending", "ascending")
        # trained south to north: it sees the field south to north, whatever it is given
        want_asc = _by_hand(model, da.sortby("lat"))[:, ::-1]
        np.testing.assert_allclose(got_asc(da).values, want_asc, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(
            got_asc(da.sortby("lat")).values[:, ::-1], want_asc, rtol=1e-5, atol=1e-4
        )
        # no record: ERA5's north to south, also for a field stored south to north
        want_old = _by_hand(model, da)
        np.testing.assert_allclose(got_old(da).values, want_old, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(
            got_old(da.sortby("lat")).values[:, ::-1], want_old, rtol=1e-5, atol=1e-4
        )
        assert np.abs(want_asc - want_old).max() > 1.0  # contrast: the two models differ
    finally:
        clear_model_cache()


def test_arrays_with_a_grid_are_oriented_too(down: Downscaler, regional: xr.Dataset) -> None:
    da = regional["tcw"]
    want = down(da).values
    flipped = da.isel(lat=slice(None, None, -1))
    grid = Grid(flipped.lat.values, flipped.lon.values)
    got = down(flipped.values, grid=grid)
    np.testing.assert_allclose(got[:, ::-1], want, rtol=0, atol=1e-4)
    lazy = down(flipped.chunk(lat=7).data, grid=grid)
    np.testing.assert_allclose(lazy.compute()[:, ::-1], want, rtol=0, atol=1e-4)
    # without a grid an array is taken to be in the model's orientation: as stored
    assert np.abs(down(flipped.values)[:, ::-1] - down(da.values)).max() > 1.0
