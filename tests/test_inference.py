"""Downscaler: tiled == untiled, exact conservation across seams, laziness, the date line, checks."""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pytest
import torch
import xarray as xr

from climdown.checkpoint import clear_model_cache, save_checkpoint
from climdown.conservation import assert_conserves
from climdown.errors import (
    CheckpointError,
    ConfigError,
    ConservationError,
    CoordinateError,
    DataValueError,
    StoreError,
    UnitsError,
)
from climdown.fileio import downscale_file
from climdown.grid import FineAreas, Grid, coarsen_dataarray
from climdown.inference import DownscaleOptions, Downscaler, downscale
from climdown.nn.models import get_model
from climdown.testing import raise_if_dask_computes, tcw_dataarray

# conv3x3 stem + 1 residual block (2 convs) + conv3x3 + 3x3 head = 5 LR cells of receptive radius
RADIUS = 5


def tiny_cnn(constraint: str = "softmax", factor: int = 4, seed: int = 0) -> torch.nn.Module:
    """A 1-block CNN with random weights: rough enough to show any tiling seam."""
    torch.manual_seed(seed)
    model = get_model("cnn", factor, constraint, scale=30.0, width=8, blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            # larger weights and sub-pixel kernels apart from their block-constant ICNR start:
            # a busier output, seams stand out
            p.mul_(3.0).add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


def untiled(model: torch.nn.Module, da: xr.DataArray, factor: int = 4) -> np.ndarray:
    """The model run once on the whole field, with the refined grid's areas."""
    area = torch.from_numpy(Grid(da.lat.values, da.lon.values).refine(factor).area)
    x = torch.from_numpy(da.values.astype(np.float32))[:, None, None]
    with torch.inference_mode():
        return model(x, area=area)[:, 0, 0].numpy()


@pytest.fixture(scope="module")
def regional() -> xr.DataArray:
    return tcw_dataarray(13, 19, 2, seed=1)  # sizes with remainders for any tile


@pytest.fixture(scope="module")
def global_da() -> xr.DataArray:
    return tcw_dataarray(12, 24, 2, global_=True, seed=2)


# --------------------------------------------------------------------------- tiling seams
def test_tiled_equals_untiled_and_conserves(regional: xr.DataArray) -> None:
    model = tiny_cnn()
    hr = downscale(regional, 4, "softmax", model=model, tile=4, halo=RADIUS)
    want = untiled(model, regional)
    np.testing.assert_allclose(hr.values, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    assert_conserves(hr, regional, rtol=1e-5)
    # contrast: a halo smaller than the receptive field shows seams (still conserving)
    seamy = downscale(regional, 4, "softmax", model=model, tile=4, halo=1)
    assert np.abs(seamy.values - want).max() > 1e-3 * float(np.abs(want).max())
    assert_conserves(seamy, regional, rtol=1e-5)


def test_unconstrained_model_does_not_conserve(regional: xr.DataArray) -> None:
    hr = downscale(regional, 4, "none", model=tiny_cnn("none"), tile=4, halo=RADIUS)
    with pytest.raises(ConservationError):
        assert_conserves(hr, regional, rtol=1e-5)


def test_many_tiles_in_many_batches(global_da: xr.DataArray) -> None:
    big = tcw_dataarray(30, 60, 2, global_=True, seed=4)  # 15 x 30 windows, 57 batches
    hr = downscale(big, 2, "softmax", model="bicubic", tile=2, halo=2, batch_size=16)
    want = downscale(big, 2, "softmax", model="bicubic", tile=64, halo=2)
    np.testing.assert_allclose(hr.values, want.values, rtol=1e-5)
    assert_conserves(hr, big)


def test_irregular_longitudes_use_each_windows_areas() -> None:
    lat = np.linspace(70.0, 10.0, 7)  # rows of very different area
    lon = np.cumsum(np.r_[0.0, np.linspace(0.5, 6.0, 15)])  # widths grow 12x west to east
    da = xr.DataArray(
        np.random.default_rng(5).uniform(1, 50, (7, 16)).astype(np.float32),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
        attrs={"units": "kg m-2"},
    )
    hr = downscale(da, 2, "softmax", model=tiny_cnn(factor=2), tile=3, halo=2)
    assert_conserves(hr, da, rtol=1e-5)
    # contrast: equal weights (no grid) put the wrong mass in each block
    plain = Downscaler(tiny_cnn(factor=2), factor=2, tile=3, halo=2)(da.values)
    with pytest.raises(ConservationError):
        assert_conserves(hr.copy(data=plain), da, rtol=1e-5)


def test_fine_areas_of_windows_are_the_refined_grids() -> None:
    widths = np.linspace(10.0, 30.0, 18)
    lon_b = np.r_[0.0, np.cumsum(widths * 360.0 / widths.sum())]  # global, irregular columns
    grid = Grid(np.arange(55.0, 15.0, -10.0), 0.5 * (lon_b[:-1] + lon_b[1:]), lon_b=lon_b)
    assert grid.periodic
    fine = grid.refine(2).area
    areas = FineAreas(grid, 2)
    np.testing.assert_allclose(areas(1, 2, 3, 4), fine[2:6, 6:14], rtol=1e-12)
    west = np.take(fine[0:4], np.arange(-2, 4), axis=1, mode="wrap")  # across the date line
    np.testing.assert_allclose(areas(0, 2, -1, 3), west, rtol=1e-12)
    east = np.take(fine[0:4], np.arange(34, 40), axis=1, mode="wrap")
    np.testing.assert_allclose(areas(0, 2, 17, 3), east, rtol=1e-12)
    assert areas(0, 2, 5, 3) is not areas(0, 2, 0, 3)  # each column its own areas
    # contrast: uniform longitudes share one array per row (block weights computed once)
    uniform = FineAreas(Grid(grid.lat, np.arange(0.0, 360.0, 20.0)), 2)
    assert uniform(0, 2, 5, 3) is uniform(0, 2, -1, 3)


@pytest.mark.parametrize("factor", [2, 3])
def test_other_factors(regional: xr.DataArray, factor: int) -> None:
    model = tiny_cnn(factor=factor)
    hr = downscale(regional, factor, "softmax", model=model, tile=5, halo=RADIUS)
    assert hr.shape == (2, 13 * factor, 19 * factor)
    np.testing.assert_allclose(hr.values, untiled(model, regional, factor), rtol=1e-5, atol=1e-4)
    assert_conserves(hr, regional, rtol=1e-5)


def test_date_line_uses_a_periodic_halo(global_da: xr.DataArray) -> None:
    model = tiny_cnn()
    hr = downscale(global_da, 4, "softmax", model=model, tile=5, halo=RADIUS).values
    n = global_da.sizes["lon"]
    rolled = global_da.roll(lon=n // 2, roll_coords=True)  # the date line in the middle
    want = np.roll(untiled(model, rolled), -4 * (n // 2), axis=-1)
    near = np.r_[0 : 4 * (n // 4), 4 * (3 * n // 4) : 4 * n]  # fine columns by the date line
    np.testing.assert_allclose(hr[..., near], want[..., near], rtol=1e-5, atol=1e-4)
    assert_conserves(downscale(global_da, 4, "softmax", model=model, tile=5), global_da)
    # contrast: an untiled run on the unrolled field pads with zeros at the date line
    plain = untiled(model, global_da)
    assert np.abs(plain[..., :4] - hr[..., :4]).max() > 1e-2


# --------------------------------------------------------------------------- laziness
def test_dask_input_stays_lazy_until_compute(global_da: xr.DataArray) -> None:
    model = tiny_cnn()
    lazy_in = global_da.chunk({"time": 1, "lat": 5, "lon": 7})
    with raise_if_dask_computes():
        hr = downscale(lazy_in, 4, "softmax", model=model, tile=4, halo=RADIUS)
        _ = hr.attrs, hr.lat.values, hr.shape
    assert hr.chunks is not None
    assert hr.chunks[0] == lazy_in.chunks[0]
    # several spatial chunks; chunks thinner than the halo (2 rows, 3 columns) are merged
    assert hr.chunks[1] == (20, 28) and hr.chunks[2] == (28, 28, 40)
    with raise_if_dask_computes(max_computes=1):
        got = hr.compute()
    eager = downscale(global_da, 4, "softmax", model=model, tile=4, halo=RADIUS)
    np.testing.assert_allclose(got.values, eager.values, rtol=1e-5, atol=1e-4)
    assert_conserves(got, global_da)


def test_dask_bad_values_raise_at_compute(regional: xr.DataArray) -> None:
    bad = regional.copy(data=np.where(regional.values > 50, np.nan, regional.values)).chunk()
    with raise_if_dask_computes():
        hr = downscale(bad, 4, "softmax", model="bicubic")
    with pytest.raises(DataValueError, match="NaN"):
        hr.compute()


def test_dask_arrays_and_numpy_arrays(regional: xr.DataArray) -> None:
    import dask.array as dsa

    down = Downscaler("bicubic", factor=2, constraint="softmax", tile=4, halo=3)
    grid = Grid(regional.lat.values, regional.lon.values)
    eager = down(regional.values, grid=grid)
    lazy = down(dsa.from_array(regional.values, chunks=(1, 6, 6)), grid=grid)
    assert isinstance(eager, np.ndarray) and isinstance(lazy, dsa.Array)
    np.testing.assert_allclose(lazy.compute(), eager, rtol=1e-6)
    with pytest.raises(CoordinateError, match="does not match"):
        down(regional.values[..., :5], grid=grid)


# --------------------------------------------------------------------------- xarray output
def test_output_coords_attrs_and_history(regional: xr.DataArray) -> None:
    src = regional.transpose("lat", "time", "lon")  # dimension order is kept
    hr = downscale(src, 4, "softmax", model="bicubic", tile=8)
    assert hr.dims == ("lat", "time", "lon") and hr.name == "tcw"
    fine = Grid(regional.lat.values, regional.lon.values).refine(4)
    np.testing.assert_allclose(hr.lat.values, fine.lat)
    np.testing.assert_allclose(hr.lon.values, fine.lon)
    assert np.all(np.diff(hr.lat.values) < 0)  # descending latitude stays descending
    assert hr.lat.attrs["standard_name"] == "latitude"
    np.testing.assert_array_equal(hr.time.values, regional.time.values)
    assert hr.attrs["units"] == "kg m-2"
    assert hr.attrs["long_name"] == "Total column water"
    line = hr.attrs["history"].splitlines()[-1]
    for word in ("'bicubic'", "'softmax'", "4x", "climdown 0."):
        assert word in line
    assert hr.dtype == np.float32


def test_dataset_in_dataset_out(regional: xr.DataArray) -> None:
    ds = xr.Dataset({"tcw": regional, "step": ("time", [1, 2])}, attrs={"title": "t"})
    out = downscale(ds, 2, "softmax", model="nearest")
    assert isinstance(out, xr.Dataset)
    assert out["tcw"].shape == (2, 26, 38) and "step" in out and out.attrs["title"] == "t"
    assert "'nearest'" in out.attrs["history"]
    np.testing.assert_allclose(coarsen_dataarray(out["tcw"], 2), regional, rtol=1e-5)
    with pytest.raises(CoordinateError, match="not in the dataset"):
        downscale(ds, 2, "softmax", model="nearest", var="tp")
    with pytest.raises(ConfigError, match="Dataset"):
        downscale(regional, 2, "softmax", model="nearest", var="tcw")


def test_water_depth_is_converted(regional: xr.DataArray) -> None:
    # the model runs in kg m-2 and the output comes back in the input's units (issue 12)
    metres = regional / 1000.0
    metres.attrs = {**regional.attrs, "units": "m"}
    hr = downscale(metres, 2, "softmax", model="nearest")
    assert hr.attrs["units"] == "m" and "units_original" not in hr.attrs
    np.testing.assert_allclose(coarsen_dataarray(hr, 2) * 1000.0, regional, rtol=1e-5)


# --------------------------------------------------------------------------- bad input
def test_units_coordinates_and_values_are_checked(regional: xr.DataArray) -> None:
    kelvin = regional.assign_attrs(units="K")
    with pytest.raises(UnitsError, match="'K'"):
        downscale(kelvin, model="bicubic")
    with pytest.raises(CoordinateError, match="latitude not found"):
        downscale(regional.drop_vars("lat"), model="bicubic")
    nan = regional.copy(data=regional.values.copy())
    nan[0, 0, :3] = np.nan
    with pytest.raises(DataValueError, match=r"3 NaN/inf value\(s\).*fillna"):
        downscale(nan, model="bicubic")
    neg = regional - 30.0
    neg.attrs = regional.attrs
    with pytest.raises(DataValueError, match="negative"):
        downscale(neg, model="bicubic", constraint="softmax")
    # contrast: a signed constraint takes negative values
    hr = downscale(neg, 2, "add", model="bicubic")
    assert_conserves(hr, neg)


def test_curvilinear_grid_is_downscaled_and_unstructured_refused() -> None:
    # 2-D lat/lon: a curvilinear grid, downscaled in index space (tests/test_curvilinear.py)
    lat2d, lon2d = np.meshgrid(np.linspace(40, 50, 6), np.linspace(0, 10, 8), indexing="ij")
    da = xr.DataArray(
        np.ones((6, 8)),
        dims=("y", "x"),
        coords={"lat": (("y", "x"), lat2d), "lon": (("y", "x"), lon2d)},
        attrs={"units": "kg m-2"},
    )
    hr = downscale(da, model="bicubic")
    assert hr["lat"].shape == (24, 32) and hr.dims == ("y", "x")
    # lat and lon on one dimension (an unstructured mesh) stay refused
    cells = xr.DataArray(
        np.ones(6),
        dims="cell",
        coords={"lat": ("cell", np.arange(6.0)), "lon": ("cell", np.arange(6.0))},
        attrs={"units": "kg m-2"},
    )
    with pytest.raises(CoordinateError, match="unstructured"):
        downscale(cells, model="bicubic")


@pytest.mark.parametrize("constraint", ["softmax", "mult"])
def test_zeros_give_zeros(regional: xr.DataArray, constraint: str) -> None:
    x = regional.copy(data=regional.values.copy())
    x[:, 3:7, 2:9] = 0.0  # a dry patch
    hr = downscale(x, 4, constraint, model=tiny_cnn(constraint), tile=4, halo=2)
    dry = hr.isel(lat=slice(12, 28), lon=slice(8, 36)).values
    assert np.all(dry == 0.0) and not np.isnan(hr.values).any()
    zeros = downscale(x * 0.0, 4, constraint, model="bicubic")
    assert np.all(zeros.values == 0.0)


def test_bad_options_raise(regional: xr.DataArray) -> None:
    with pytest.raises(ConfigError, match="tile"):
        Downscaler("bicubic", tile=0)
    with pytest.raises(ConfigError, match="halo"):
        Downscaler("bicubic", halo=-1)
    with pytest.raises(ConfigError, match="constraint"):
        Downscaler("bicubic", constraint="magic")
    with pytest.raises(ConfigError, match="model must be"):
        Downscaler(3.5)
    with pytest.raises(CheckpointError, match="factor 4"):
        Downscaler(tiny_cnn(), factor=2)
    with pytest.raises(CheckpointError, match="constraint 'softmax'"):
        Downscaler(tiny_cnn(), constraint="none")


# --------------------------------------------------------------------------- models
@pytest.fixture()
def ckpt(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny_cnn(), meta={"variable": "tcw", "lr_spacing_deg": 0.25})
    clear_model_cache()
    yield path
    clear_model_cache()


def test_checkpoint_is_loaded_once_and_cached(ckpt, regional: xr.DataArray) -> None:
    a = Downscaler(ckpt, factor=4, constraint="softmax", device="cpu")
    b = Downscaler(str(ckpt), factor=4, constraint="softmax", device="cpu")
    assert a.model is b.model and a.name == "tiny.pt"
    np.testing.assert_allclose(a(regional).values, untiled(tiny_cnn(), regional), atol=1e-4)
    with pytest.raises(CheckpointError, match="factor 4"):
        Downscaler(ckpt, factor=2)
    with pytest.raises(CheckpointError, match="constraint 'softmax'"):
        Downscaler(ckpt, constraint="none")
    with pytest.raises(CheckpointError, match="neither a file nor a baseline"):
        Downscaler(ckpt.with_name("missing.pt"))


def test_grid_spacing_far_from_training_warns(ckpt, regional: xr.DataArray) -> None:
    coarse = tcw_dataarray(6, 8, 1, spacing=1.5)
    with pytest.warns(UserWarning, match="spacing"):
        downscale(coarse, model=ckpt)
    downscale(regional, model=ckpt)  # 0.25 deg, as trained: no warning (warnings are errors)


def _packaged(monkeypatch, folder, entries: dict) -> None:
    """Point climdown.pretrained at ``folder`` holding ``entries`` as its index.json."""
    import json

    import climdown.pretrained

    folder.mkdir(exist_ok=True)
    (folder / "index.json").write_text(json.dumps(entries))
    monkeypatch.setattr(climdown.pretrained, "_HERE", folder)


def test_no_default_model_names_bicubic_and_takes_it_explicitly(
    monkeypatch, tmp_path, regional: xr.DataArray
) -> None:
    # no silent fallback (issue 12): an error naming model='bicubic', which runs when asked for
    _packaged(monkeypatch, tmp_path / "none", {})
    with pytest.raises(ConfigError, match="model='bicubic'"):
        Downscaler(None, factor=2)
    down = Downscaler("bicubic", factor=2)
    assert down.name == "bicubic"


def test_default_is_the_regime_nearest_the_input_spacing_or_its_fallback(
    monkeypatch, tmp_path, ckpt, caplog
) -> None:
    import logging
    import shutil

    folder = tmp_path / "pkg"
    folder.mkdir()
    shutil.copyfile(ckpt, folder / "fine.pt")
    entry = {"factor": 4, "constraint": "softmax"}
    why = "the trained model's validation RMSE 3.3 does not beat pycnophylactic + none's 3.2"
    _packaged(
        monkeypatch,
        folder,
        {
            "4-softmax-fine": {**entry, "file": "fine.pt", "lr_spacing_deg": [1.0, 1.0]},
            "4-softmax-coarse": {
                **entry,
                "fallback": "pycnophylactic",
                "fallback_constraint": "none",
                "why": why,
                "lr_spacing_deg": [6.0, 6.0],
            },
        },
    )
    down = Downscaler(None, factor=4)
    assert down.name == "fine.pt"  # before any input: the finest regime
    fine = tcw_dataarray(6, 8, 1, spacing=1.0)
    coarse = tcw_dataarray(6, 8, 1, spacing=6.0)
    with caplog.at_level(logging.INFO, logger="climdown"):
        out = down(fine)
        assert down.name == "fine.pt" and "fine.pt" in out.attrs["history"]
        assert not caplog.records
        out = down(coarse)  # 6 deg: the coarse regime, whose baseline ships
        assert down.name == "pycnophylactic" and "pycnophylactic" in out.attrs["history"]
        down(coarse)  # the notice comes once
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "4-softmax-coarse" in notices[0] and why in notices[0]
    assert down(fine).attrs["history"].count("fine.pt") == 1  # back to the trained model
    # a lazy result keeps the model chosen when it was built, whatever later calls pick
    expected = down(fine).values  # eager, the fine regime's checkpoint
    lazy = down(fine.chunk({"time": 1}))
    down(coarse)  # switches this Downscaler to the coarse regime's baseline
    assert down.name == "pycnophylactic"
    np.testing.assert_allclose(lazy.values, expected, rtol=1e-6, atol=1e-5)
    other = Downscaler("pycnophylactic", factor=4)(fine).values  # what a late switch would give
    assert not np.allclose(other, expected, rtol=1e-6, atol=1e-5)
    # spacing covered by no regime (0.25 deg: 4x finer than the finest): the usual warning
    with pytest.warns(UserWarning, match="spacing"):
        down(tcw_dataarray(6, 8, 1, spacing=0.25))
    # 2 deg is within 2x of the 1-deg regime: no warning (warnings are errors here)
    down(tcw_dataarray(6, 8, 1, spacing=2.0))
    # the defaults serve every water column: a vapour column raises no variable warning ...
    down(tcw_dataarray(6, 8, 1, spacing=1.0).rename("tcwv"))
    # ... where the same checkpoint named explicitly does (contrast)
    with pytest.warns(UserWarning, match="variable 'tcw'"):
        Downscaler(ckpt, factor=4)(tcw_dataarray(6, 8, 1, spacing=0.25).rename("tcwv"))


def test_fallback_notice_only_for_the_regime_a_call_runs(monkeypatch, tmp_path, ckpt, caplog):
    # the finest regime (adopted at construction) ships a baseline; an input of the other
    # regime must not hear about it, an input of the finest one must, once
    import logging
    import shutil

    folder = tmp_path / "pkg"
    folder.mkdir()
    shutil.copyfile(ckpt, folder / "coarse.pt")
    entry = {"factor": 4, "constraint": "softmax"}
    _packaged(
        monkeypatch,
        folder,
        {
            "4-softmax-fine": {
                **entry,
                "fallback": "pycnophylactic",
                "fallback_constraint": "none",
                "why": "it lost on validation",
                "lr_spacing_deg": [1.0, 1.0],
            },
            "4-softmax-coarse": {**entry, "file": "coarse.pt", "lr_spacing_deg": [6.0, 6.0]},
        },
    )
    with caplog.at_level(logging.INFO, logger="climdown"):
        down = Downscaler(None, factor=4)
        assert down.name == "pycnophylactic" and not caplog.records  # nothing ran yet
        down(tcw_dataarray(6, 8, 1, spacing=6.0))
        assert down.name == "coarse.pt" and not caplog.records
        down(tcw_dataarray(6, 8, 1, spacing=1.0))
        down(tcw_dataarray(6, 8, 1, spacing=1.0))
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "4-softmax-fine" in notices[0], notices


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_downscale_file(tmp_path, regional: xr.DataArray, suffix: str) -> None:
    src = tmp_path / "in.nc"
    xr.Dataset({"tcw": regional}).to_netcdf(src)
    dst = tmp_path / f"out{suffix}"
    downscale_file(src, dst, factor=2, constraint="softmax", model="bicubic", scheduler="sync")
    opts = {"engine": "zarr", "consolidated": False} if suffix == ".zarr" else {}
    with xr.open_dataset(dst, **opts) as out:
        want = downscale(regional, 2, "softmax", model="bicubic")
        np.testing.assert_allclose(out["tcw"].values, want.values, rtol=1e-6)
        assert "'bicubic'" in out.attrs["history"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.nc", dst.name])
    with pytest.raises(StoreError, match="exists"):
        downscale_file(src, dst, factor=2, constraint="softmax", model="bicubic")
    downscale_file(src, dst, factor=2, constraint="softmax", model="nearest", overwrite=True)
    with pytest.raises(StoreError, match="not found"):
        downscale_file(tmp_path / "nope.nc", tmp_path / "x.nc", factor=2, constraint="softmax")


def test_one_signature_one_set_of_defaults(monkeypatch, tmp_path, regional) -> None:
    """downscale's options are DownscaleOptions' defaults; downscale_file passes them by name."""
    import climdown.fileio

    params = inspect.signature(downscale).parameters
    for field in fields(DownscaleOptions):
        assert params[field.name].default == field.default, field.name
    own = set(inspect.signature(downscale_file).parameters)
    assert own == {"src", "dst", "scheduler", "max_chunk", "overwrite", "options"}
    options = {name: object() for name in list(params)[1:]}  # every option, as a sentinel
    options.update(lat="lat", lon="lon")  # the file's coordinates are looked up with them
    seen = []

    class Seen(Exception):
        """Raised by the spy: there is nothing to write."""

    def spy(obj, **kwargs):
        seen.append(kwargs)
        raise Seen

    monkeypatch.setattr(climdown.fileio, "downscale", spy)
    src = tmp_path / "in.nc"
    xr.Dataset({"tcw": regional}).to_netcdf(src)
    with pytest.raises(Seen):
        downscale_file(src, tmp_path / "out.nc", **options)
    assert seen == [options]
    with pytest.raises(ConfigError, match="did you mean 'tile'"):
        Downscaler("bicubic", tiles=4)


def test_downscale_file_to_zarr_with_uneven_chunks(tmp_path) -> None:
    # 45 x 90 LR cells in chunks of 16: the halo merge leaves uneven edge chunks, which zarr
    # cannot store as they are; the output is rechunked uniformly before writing
    da = tcw_dataarray(45, 90, 1, spacing=1.0, origin=(60.0, 0.0))
    src, dst = tmp_path / "in.nc", tmp_path / "out.zarr"
    da.to_dataset(name="tcw").to_netcdf(src)
    downscale_file(src, dst, factor=2, constraint="softmax", model="bicubic", max_chunk=16)
    out = xr.open_zarr(dst, consolidated=False)["tcw"]
    assert out.shape == (1, 90, 180)
    assert_conserves(out.load(), da, rtol=1e-5)


# --------------------------------------------------------------------------- recurrent models
# a model object records no training time step: downscale warns that it cannot check the
# spacing of its windows (tests/reliability/test_windows.py checks both)
unchecked_step = pytest.mark.filterwarnings(
    "ignore:the spacing of the recurrent model's:UserWarning"
)


def tiny_convgru(frames: int = 3, seed: int = 0) -> torch.nn.Module:
    """A ConvGRU trained (here: built) on sequences of ``frames`` steps, off its ICNR start."""
    torch.manual_seed(seed)
    model = get_model("convgru", 4, "softmax", frames=frames, scale=30.0, width=8, hidden=8)
    with torch.no_grad():
        head = model.backbone.head.conv.weight
        head.add_(0.3 * torch.randn(head.shape, generator=torch.Generator().manual_seed(seed)))
    return model.eval()


def windows_by_hand(model: torch.nn.Module, da: xr.DataArray, frames: int) -> np.ndarray:
    """Step t = last output frame of the model on frames t-T+1 .. t (frame 0 repeated before)."""
    area = torch.from_numpy(Grid(da.lat.values, da.lon.values).refine(4).area)
    x = torch.from_numpy(da.transpose("time", "lat", "lon").values.astype(np.float32))
    out = []
    with torch.inference_mode():
        for t in range(x.shape[0]):
            idx = [max(k, 0) for k in range(t - frames + 1, t + 1)]
            out.append(model(x[idx][None, :, None], area=area)[0, -1, 0].numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def series() -> xr.DataArray:
    return tcw_dataarray(9, 11, 6, seed=4)


@unchecked_step
def test_recurrent_model_sees_the_window_it_was_trained_on(series: xr.DataArray) -> None:
    model = tiny_convgru(frames=3)
    hr = downscale(series, 4, "softmax", model=model, tile=4, halo=12)
    want = windows_by_hand(model, series, 3)
    np.testing.assert_allclose(hr.values, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    assert_conserves(hr, series, rtol=1e-5)
    # contrast: each step alone (T = 1, no memory) gives a different field
    alone = windows_by_hand(model, series, 1)
    assert np.abs(hr.values - alone).max() > 1e-2


@unchecked_step
def test_recurrent_windows_across_dask_time_chunks_and_dim_orders(series: xr.DataArray) -> None:
    model = tiny_convgru(frames=3)
    want = downscale(series, 4, "softmax", model=model).values
    lazy = downscale(series.chunk(time=2, lat=5, lon=6), 4, "softmax", model=model)
    assert lazy.chunks is not None  # still lazy
    np.testing.assert_allclose(lazy.values, want, rtol=1e-5, atol=1e-4)
    # time last: the windows still run along time, and the dimension order comes back
    moved = downscale(series.transpose("lat", "lon", "time"), 4, "softmax", model=model)
    assert moved.dims == ("lat", "lon", "time")
    np.testing.assert_allclose(moved.transpose("time", ...).values, want, rtol=1e-5, atol=1e-4)
    # arrays: axis -3 is time
    arr = Downscaler(model, factor=4, constraint="softmax")(series.values)
    assert np.abs(arr - windows_by_hand(model, series, 3)).max() > 0  # equal-weight areas...
    np.testing.assert_allclose(
        Downscaler(model, factor=4, constraint="softmax")(
            series.values, grid=Grid(series.lat.values, series.lon.values)
        ),
        want,
        rtol=1e-5,
        atol=1e-4,
    )


def test_recurrent_model_needs_time_in_order(series: xr.DataArray) -> None:
    model = tiny_convgru(frames=3)
    with pytest.raises(CoordinateError, match="sortby"):
        downscale(series.isel(time=[0, 2, 1]), 4, "softmax", model=model)
    # a feed-forward model takes the steps in any order
    downscale(series.isel(time=[0, 2, 1]), 4, "softmax", model=tiny_cnn())


def test_feed_forward_models_treat_steps_alone(series: xr.DataArray) -> None:
    model = tiny_cnn()
    assert Downscaler(model, factor=4).frames == 1
    assert Downscaler(tiny_convgru(frames=3), factor=4).frames == 3
    hr = downscale(series, 4, "softmax", model=model)
    one = downscale(series.isel(time=[3]), 4, "softmax", model=model)
    # float32 round-off of fields near 500 kg m-2 is ~3e-5 (a batch of 4 and a batch of 1 take
    # different kernels); atol 1e-4 as for the windows above
    np.testing.assert_allclose(hr.values[3:4], one.values, rtol=1e-5, atol=1e-4)


def test_recurrent_checkpoint_keeps_its_window(tmp_path, series: xr.DataArray) -> None:
    model = tiny_convgru(frames=3)
    meta = {"variable": "tcw", "time_step_s": 3600.0}  # the series is hourly
    path = save_checkpoint(tmp_path / "gru.pt", model, meta=meta)
    clear_model_cache()
    try:
        loaded = Downscaler(path, factor=4, constraint="softmax", device="cpu")
        assert loaded.frames == 3
        np.testing.assert_allclose(
            loaded(series).values, windows_by_hand(model, series, 3), rtol=1e-5, atol=1e-4
        )
    finally:
        clear_model_cache()


@unchecked_step
def test_recurrent_windows_follow_cftime_but_not_member_labels(series: xr.DataArray) -> None:
    cftime = pytest.importorskip("cftime")
    model = tiny_convgru(frames=3)
    want = downscale(series, 4, "softmax", model=model).values
    noleap = series.rename(time="t_axis").assign_coords(
        t_axis=[cftime.DatetimeNoLeap(2020, 1, 1, h) for h in range(series.sizes["time"])]
    )
    got = downscale(noleap, 4, "softmax", model=model)
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-4)
    # labelled members (object strings) are not a time axis: every member alone
    members = series.rename(time="member").assign_coords(
        member=np.array([f"m{i}" for i in range(series.sizes["time"])], dtype=object)
    )
    alone = downscale(members, 4, "softmax", model=model).values
    assert np.abs(alone - want).max() > 1e-2
