"""Tests of climdown.plot: maps are drawn where the cells are, with vendored coastlines, offline."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.request

import matplotlib

matplotlib.use("Agg")

import cartopy  # noqa: E402
import cartopy.crs as ccrs  # noqa: E402
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from cartopy.mpl.geoaxes import GeoAxes  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from climdown import plot  # noqa: E402
from climdown.data.sources import open_dataarray  # noqa: E402
from climdown.errors import (  # noqa: E402
    ClimdownError,
    CoordinateError,
    GridShapeError,
    StoreError,
)
from climdown.grid import Grid, coarsen_dataarray  # noqa: E402


def tcw(lat, lon, nt=2, seed=0, name="tcw"):
    """A smooth TCW-like field (kg m-2) with a time axis on the given 1-D centres."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    rng = np.random.default_rng(seed)
    base = 5.0 + 45.0 * np.cos(np.deg2rad(lat))[:, None] ** 2
    wave = 5.0 * np.sin(np.deg2rad(3 * lon))[None, :] * np.cos(np.deg2rad(lat))[:, None]
    data = base + wave + rng.normal(0, 1.0, (nt, lat.size, lon.size))
    return xr.DataArray(
        np.clip(data, 0.5, None),
        dims=("time", "latitude", "longitude"),
        coords={
            "time": np.array(["2020-01-01T00", "2020-01-01T06"][:nt], dtype="datetime64[ns]"),
            "latitude": lat,
            "longitude": lon,
        },
        name=name,
        attrs={"units": "kg m-2", "long_name": "Total column water"},
    )


@pytest.fixture
def rhine_like():
    """Regional, latitude descending like ERA5, 0.25 deg: HR 32 x 32, LR 4x coarser."""
    hr = tcw(np.arange(55.0, 47.0, -0.25), np.arange(0.0, 8.0, 0.25))
    return coarsen_dataarray(hr, 4), hr


def meshes(ax):
    return [c for c in ax.collections if isinstance(c, QuadMesh)]


def geo_axes(fig):
    return [a for a in fig.axes if isinstance(a, GeoAxes)]


def colorbar_axes(fig):
    return [a for a in fig.axes if not isinstance(a, GeoAxes)]


def has_coastline(ax):
    return any(a.get_gid() == plot.COASTLINE_GID for a in ax.get_children())


def pixels(path):
    img = mpimg.imread(path)
    assert img.ndim == 3
    return img[..., :3]


# ---------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------
def test_compare_png_is_non_blank_with_coastlines(tmp_path, rhine_like):
    lr, hr = rhine_like
    truth = hr + 0.3
    out = tmp_path / "maps" / "compare.png"
    fig = plot.compare(lr, hr, truth, path=out)
    assert isinstance(fig, Figure)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = pixels(out)
    assert img.var() > 1e-3
    axes = geo_axes(fig)
    assert len(axes) == 4  # LR | downscaled | truth | error
    assert all(has_coastline(ax) for ax in axes)

    # the coastline really changes the picture: draw the same without it
    blank = tmp_path / "nocoast.png"
    orig = plot.coastlines
    try:
        plot.coastlines = lambda ax, **kw: None
        plot.compare(lr, hr, truth, path=blank)
    finally:
        plot.coastlines = orig
    other = pixels(blank)
    assert other.shape == img.shape
    assert np.abs(other - img).max() > 0.1


def test_a_map_replaces_only_a_png(tmp_path, rhine_like):
    """``path`` that exists and is not a PNG (the user's data, a folder, a link) is refused
    and left as it was; an earlier map is replaced."""
    lr, hr = rhine_like
    data = tmp_path / "data.nc"
    data.write_bytes(b"CDF\x01 years of data")
    link = tmp_path / "link.png"
    link.symlink_to(data)
    for path in (data, tmp_path, link):
        with pytest.raises(StoreError, match="is not a PNG image"):
            plot.compare(lr, hr, path=path)
    assert data.read_bytes() == b"CDF\x01 years of data" and link.is_symlink()
    old = tmp_path / "map.png"
    plot.compare(lr, hr, path=old)
    first = old.read_bytes()
    plot.compare(lr, hr + 1.0, path=old)  # a map over a map: replaced
    assert old.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and old.read_bytes() != first


def test_error_panel_absent_without_truth(rhine_like):
    lr, hr = rhine_like
    assert len(geo_axes(plot.compare(lr, hr))) == 2
    assert len(geo_axes(plot.compare(lr, hr, hr * 1.01, error=False))) == 3
    fig = plot.compare(lr, hr, hr * 1.01)
    assert len(geo_axes(fig)) == 4
    assert "error" in geo_axes(fig)[-1].get_title()
    assert all("error" not in ax.get_title() for ax in geo_axes(plot.compare(lr, hr)))


def test_shared_scale_units_and_symmetric_error(rhine_like):
    lr, hr = rhine_like
    truth = hr.copy(data=hr.values * 0.9)
    fig = plot.compare(lr, hr, truth)
    axes = geo_axes(fig)
    field_meshes = [meshes(ax)[0] for ax in axes[:3]]
    lims = {(m.norm.vmin, m.norm.vmax) for m in field_meshes}
    assert len(lims) == 1  # one colour scale for LR, downscaled and truth
    vmin, vmax = lims.pop()
    all_vals = np.concatenate([lr.isel(time=0).values.ravel(), hr.isel(time=0).values.ravel()])
    all_vals = np.concatenate([all_vals, truth.isel(time=0).values.ravel()])
    assert vmin == pytest.approx(all_vals.min()) and vmax == pytest.approx(all_vals.max())
    assert field_meshes[0].get_cmap().name == "viridis"
    err = meshes(axes[3])[0]
    assert err.norm.vmin == -err.norm.vmax
    e = (hr - truth).isel(time=0).values
    assert err.norm.vmax == pytest.approx(np.percentile(np.abs(e), 99))
    assert err.get_cmap().name == "RdBu_r"
    # two colour bars: one for the fields, one for the error, both with units
    labels = [a.get_xlabel() or a.get_ylabel() for a in colorbar_axes(fig)]
    assert len(labels) == 2
    assert any("kg m-2" in s and "Total column water" in s for s in labels)
    assert any(s.startswith("downscaled - truth [kg m-2]") and "p99" in s for s in labels)
    assert axes[3].get_title() == "error: downscaled - truth"


def test_error_range_is_a_percentile_so_one_outlier_does_not_whiten_the_map(rhine_like):
    lr, hr = rhine_like
    rng = np.random.default_rng(1)
    truth = hr + rng.normal(0.0, 0.5, hr.shape)
    truth[0, 3, 7] += 50.0  # one bad cell
    e = np.abs((hr - truth).isel(time=0).values)
    err = meshes(geo_axes(plot.compare(lr, hr, truth))[3])[0]
    assert err.norm.vmax == pytest.approx(np.percentile(e, 99))
    assert err.norm.vmax < e.max() / 10  # the outlier does not set the scale
    # contrast: the maximum, as before, would be set by the outlier alone
    err100 = meshes(geo_axes(plot.compare(lr, hr, truth, error_percentile=100))[3])[0]
    assert err100.norm.vmax == pytest.approx(e.max())
    assert plot.error_limit(np.array([0.0, 0.0, 3.0]), 50) == 3.0  # never a zero range
    with pytest.raises(ClimdownError, match=r"error_percentile must be in \(0, 100\]"):
        plot.compare(lr, hr, truth, error_percentile=0)


def test_titles_name_valid_time_and_factor(rhine_like):
    lr, hr = rhine_like
    fig = plot.compare(lr, hr, time="2020-01-01T06")
    sup = fig.get_suptitle()
    assert sup == "Total column water, 4x downscaling, valid 2020-01-01 06:00 UTC"
    titles = [ax.get_title() for ax in geo_axes(fig)]
    assert titles == ["LR (1°)", "downscaled (4x, 0.25°)"]
    # the chosen time is drawn, not the first
    drawn = meshes(geo_axes(fig)[1])[0].get_array()
    np.testing.assert_allclose(np.asarray(drawn).ravel(), hr.isel(time=1).values.ravel())
    # a title of one's own keeps the valid time
    assert plot.compare(lr, hr, title="mine").get_suptitle() == "mine, valid 2020-01-01 00:00 UTC"
    # no time at all: no valid time claimed
    fig = plot.compare(lr.isel(time=0, drop=True), hr.isel(time=0, drop=True))
    assert fig.get_suptitle() == "Total column water, 4x downscaling"


def test_valid_time_from_a_scalar_time_coordinate(rhine_like):
    """After ``sel(time=...)`` the time is a scalar coordinate, as in the demo's held-out hour."""
    lr, hr = rhine_like
    at = "2020-01-01T06"
    lr1, hr1 = lr.sel(time=at), hr.sel(time=at)
    assert lr1.coords["time"].ndim == 0 and "time" not in hr1.dims
    fig = plot.compare(lr1, hr1, hr1 + 0.1, title="held-out hour")
    assert fig.get_suptitle() == "held-out hour, valid 2020-01-01 06:00 UTC"
    assert geo_axes(plot.field(hr1))[0].get_title() == "2020-01-01 06:00 UTC"
    # a length-1 time dimension reads the same
    assert plot.field(hr.isel(time=[1])).axes[0].get_title() == "2020-01-01 06:00 UTC"


def gridline_labels(fig):
    """The visible gridline label texts of each map (made when the figure is drawn)."""
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    out = []
    for ax in geo_axes(fig):
        (gl,) = [a for a in ax.get_children() if a.get_gid() == plot.GRIDLINES_GID]
        out.append([t.get_text() for t in gl.label_artists if t.get_visible()])
    return out


def test_gridlines_labelled_in_degrees(rhine_like):
    lr, hr = rhine_like
    first, *others = gridline_labels(plot.compare(lr, hr, hr + 0.1))
    assert {"2°E", "4°E", "50°N", "54°N"} <= set(first)
    assert len(others) == 3
    for labels in others:  # latitudes only on the first panel, longitudes on each
        assert "4°E" in labels and not any(t.endswith("N") for t in labels)
    # across the date line: east and west of it, not just 180
    lon = np.concatenate([np.arange(160.5, 180.0, 1.0), np.arange(-179.5, -160.0, 1.0)])
    da = tcw(np.arange(-10.5, -30.0, -1.0), lon, nt=1)
    (labels,) = gridline_labels(plot.field(da, colorbar=False))
    assert {"170°E", "180°", "170°W", "20°S"} <= set(labels)
    # a global map: every 60 deg
    world = tcw(np.arange(88.0, -90.0, -4.0), np.arange(0.0, 360.0, 4.0), nt=1)
    (labels,) = gridline_labels(plot.field(world, colorbar=False))
    assert {"60°E", "120°E", "180°", "120°W", "60°W"} <= set(labels)
    # contrast: without gridlines there is nothing to find
    fig = plot.field(da, gridlines=False)
    assert not [a for a in geo_axes(fig)[0].get_children() if a.get_gid() == plot.GRIDLINES_GID]


def test_descending_regional_cells_drawn_where_they_are(rhine_like):
    lr, hr = rhine_like
    fig = plot.compare(lr, hr)
    ax_lr, ax_hr = geo_axes(fig)
    for ax, da in ((ax_lr, lr), (ax_hr, hr)):
        g = Grid.from_xarray(da)
        coords = meshes(ax)[0].get_coordinates()  # [ny + 1, nx + 1, 2] in the map frame
        np.testing.assert_allclose(coords[:, 0, 1], g.lat_b)  # descending rows kept in order
        assert coords[0, 0, 1] == 55.125 and coords[-1, 0, 1] == 47.125
        centre = -ax.projection.transform_point(0.0, 0.0, ccrs.PlateCarree())[0]
        np.testing.assert_allclose(coords[0, :, 0] + centre, g.lon_b, atol=1e-9)
        # the drawn values are the field's, row for row
        np.testing.assert_allclose(
            np.asarray(meshes(ax)[0].get_array()).reshape(da.shape[1:]), da.isel(time=0).values
        )
    assert ax_hr.get_xlim() == pytest.approx((-4.0, 4.0))
    assert ax_hr.get_ylim() == pytest.approx((47.125, 55.125))


@pytest.mark.parametrize("lon0", [0.0, -180.0])
def test_global_field_both_longitude_conventions(tmp_path, lon0):
    hr = tcw(np.arange(88.0, -90.0, -4.0), lon0 + np.arange(0.0, 360.0, 4.0), nt=1)
    lr = coarsen_dataarray(hr, 3)
    out = tmp_path / "global.png"
    fig = plot.compare(lr, hr, hr * 1.02, path=out)
    assert pixels(out).var() > 1e-3
    for ax in geo_axes(fig):
        x = meshes(ax)[0].get_coordinates()[0, :, 0]
        assert np.all(np.diff(x) > 0)  # one piece, no wrap-around cell
        assert x[0] == pytest.approx(-180.0) and x[-1] == pytest.approx(180.0)
        assert ax.get_xlim() == pytest.approx((-180.0, 180.0))
        assert ax.get_ylim() == pytest.approx((-90.0, 90.0))
        assert has_coastline(ax)


def test_region_across_the_date_line():
    lon = np.concatenate([np.arange(160.5, 180.0, 1.0), np.arange(-179.5, -160.0, 1.0)])
    hr = tcw(np.arange(-10.5, -30.0, -1.0), lon, nt=1)
    fig = plot.compare(coarsen_dataarray(hr, 2), hr)
    ax = geo_axes(fig)[1]
    centre = -ax.projection.transform_point(0.0, 0.0, ccrs.PlateCarree())[0]
    assert centre % 360.0 == pytest.approx(180.0)
    x = meshes(ax)[0].get_coordinates()[0, :, 0]
    assert np.all(np.diff(x) > 0)
    assert ax.get_xlim() == pytest.approx((-20.0, 20.0))


def test_other_coordinate_names_are_found(rhine_like):
    lr, hr = rhine_like
    ren = {"latitude": "lat", "longitude": "lon"}
    fig = plot.compare(lr.rename(ren), hr.rename(ren))
    assert len(geo_axes(fig)) == 2


def test_bad_inputs(rhine_like):
    lr, hr = rhine_like
    with pytest.raises(GridShapeError, match="same fine grid"):
        plot.compare(lr, hr, lr)
    with pytest.raises(ClimdownError, match="DataArray"):
        plot.compare(lr, hr.values)
    lat2d, lon2d = np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij")
    curvi = xr.DataArray(
        np.ones((4, 5)),
        dims=("y", "x"),
        coords={"lat": (("y", "x"), lat2d), "lon": (("y", "x"), lon2d)},
    )
    with pytest.raises(CoordinateError, match="2-D latitude/longitude"):
        plot.field(curvi.drop_vars(["lat", "lon"]))
    member = hr.expand_dims(member=2)
    with pytest.raises(GridShapeError, match="member"):
        plot.compare(lr, member)


# ---------------------------------------------------------------------------------------
# Offline: cartopy must never download
# ---------------------------------------------------------------------------------------
@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty cartopy data directory and a network that raises on any use."""

    def no_network(*args, **kwargs):
        raise AssertionError("cartopy tried to download")

    empty = tmp_path / "cartopy-empty"
    empty.mkdir()
    monkeypatch.setitem(cartopy.config, "data_dir", str(empty))
    monkeypatch.setitem(cartopy.config, "pre_existing_data_dir", "")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(cartopy.io.Downloader, "_urlopen", no_network)
    plot._coastline_geometries.cache_clear()  # read the vendored file inside the test
    yield empty
    plot._coastline_geometries.cache_clear()


def test_maps_render_offline_without_cartopy_data(tmp_path, offline, rhine_like):
    lr, hr = rhine_like
    out = tmp_path / "offline.png"
    fig = plot.compare(lr, hr, hr + 1.0, path=out)
    assert pixels(out).var() > 1e-3
    assert all(has_coastline(ax) for ax in geo_axes(fig))
    plot.field(hr, path=tmp_path / "field.png")
    assert list(offline.iterdir()) == []  # nothing was fetched into the data directory


def test_offline_guard_catches_cartopys_own_coastlines(tmp_path, offline):
    """The contrast: cartopy's built-in coastlines would download, and the guard catches it."""
    fig = Figure()
    ax = fig.add_subplot(projection=ccrs.PlateCarree())
    ax.coastlines()
    with pytest.raises(AssertionError, match="cartopy tried to download"):
        fig.savefig(tmp_path / "bad.png")


def write_border_shapefile(path):
    """A two-line shapefile (pyshp, a cartopy dependency): a local file, no download."""
    import shapefile

    with shapefile.Writer(str(path), shapeType=shapefile.POLYLINE) as w:
        w.field("name", "C")
        w.line([[[2.0, 48.0], [6.0, 54.0]]])
        w.record("a")
        w.line([[[0.5, 50.0], [7.5, 50.0]]])
        w.record("b")
    return path.with_suffix(".shp")


def has_borders(ax):
    return any(a.get_gid() == plot.BORDERS_GID for a in ax.get_children())


def test_borders_from_a_local_shapefile_only(tmp_path, offline, rhine_like):
    lr, hr = rhine_like
    shp = write_border_shapefile(tmp_path / "borders")
    assert all(has_borders(ax) for ax in geo_axes(plot.compare(lr, hr, hr + 0.1, borders=shp)))
    assert not any(has_borders(ax) for ax in geo_axes(plot.compare(lr, hr)))  # off by default
    with_b, without = tmp_path / "b.png", tmp_path / "nob.png"
    assert has_borders(geo_axes(plot.field(hr, borders=shp, path=with_b))[0])
    plot.field(hr, path=without)
    assert np.abs(pixels(with_b) - pixels(without)).max() > 0.1  # the lines are drawn
    assert list(offline.iterdir()) == []  # nothing was fetched


def test_borders_true_needs_the_vendored_file_and_says_where(rhine_like, tmp_path):
    lr, hr = rhine_like
    vendored = plot.coastline_path().parents[1] / "cultural"
    assert not (vendored / "ne_110m_admin_0_boundary_lines_land.shp").exists()
    with pytest.raises(ClimdownError, match="not packaged") as exc:
        plot.compare(lr, hr, borders=True)
    assert str(vendored) in str(exc.value) and "borders='path/to/borders.shp'" in str(exc.value)
    with pytest.raises(ClimdownError, match="no border shapefile at"):
        plot.field(hr, borders=tmp_path / "missing.shp")


def test_coastline_is_the_vendored_file():
    p = plot.coastline_path()
    assert p.name == "ne_110m_coastline.shp" and p.is_file()
    assert "climdown" in str(p)
    assert len(plot._coastline_geometries()) > 100


def test_import_climdown_does_not_import_matplotlib_or_cartopy():
    code = (
        "import sys, climdown, climdown.plot\n"
        "bad = [m for m in ('matplotlib', 'cartopy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------------------------
# field, spectrum, training curves
# ---------------------------------------------------------------------------------------
def test_field_map(tmp_path, rhine_like):
    _, hr = rhine_like
    with_coast = tmp_path / "a.png"
    without = tmp_path / "b.png"
    fig = plot.field(hr, path=with_coast)
    assert has_coastline(geo_axes(fig)[0])
    assert "kg m-2" in colorbar_axes(fig)[0].get_xlabel()
    plot.field(hr, coast=False, path=without)
    assert np.abs(pixels(with_coast) - pixels(without)).max() > 0.1
    # drawing into an existing GeoAxes
    f2 = Figure()
    ax = f2.add_subplot(projection=ccrs.PlateCarree())
    assert plot.field(hr, ax=ax, colorbar=False, vmin=0, vmax=60) is f2
    assert meshes(ax)[0].norm.vmax == 60


def test_spectrum_plot(tmp_path, rhine_like):
    lr, hr = rhine_like
    out = tmp_path / "spec.png"
    fig = plot.spectrum({"LR": lr, "HR": hr}, path=out)
    assert pixels(out).var() > 1e-3
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel().startswith("wavenumber [cycles per km]")
    assert "cos latitude" in ax.get_xlabel()
    assert "km$^2$" in ax.get_ylabel() and "(kg m-2)$^2$" in ax.get_ylabel()
    lines = {ln.get_label().split(" (")[0]: ln for ln in ax.get_lines()}
    assert set(lines) == {"LR", "HR"}
    # the HR spectrum reaches 4x further in wavenumber (0.25 vs 1 deg cells)
    assert lines["HR"].get_xdata().max() == pytest.approx(4 * lines["LR"].get_xdata().max())
    # plain arrays: per grid cell
    fig = plot.spectrum({"noise": np.random.default_rng(0).normal(size=(32, 32))})
    assert "per cell" in fig.axes[0].get_xlabel()
    with pytest.raises(ClimdownError, match="at least one"):
        plot.spectrum({})


def test_spectrum_wavenumber_in_km_from_the_cell_area_on_the_sphere():
    """1 x 1 deg cells between 59 N and 61 N: cell side sqrt(mean area), worked out by hand."""
    r = 6371.0  # km
    lat, lon = np.array([60.5, 59.5]), np.arange(10.5, 30.0, 1.0)  # 2 x 20 cells
    band = np.sin(np.deg2rad(61.0)) - np.sin(np.deg2rad(59.0))  # of both rows together
    side = np.sqrt(r**2 * np.deg2rad(20.0) * band / 40)  # km: 1 deg x cos(60) ~ 55.6 x 111 km
    assert side == pytest.approx(78.6, abs=0.1)  # sqrt(55.6 x 111.2), not 111.2 km
    da = tcw(lat, lon, nt=1)
    assert plot.cell_size_km(da) == pytest.approx(side, rel=1e-9)
    # at the equator 0.25 deg cells are 27.8 km
    assert plot.cell_size_km(tcw([0.125, -0.125], [0.125, 0.375], nt=1)) == pytest.approx(
        27.80, abs=0.01
    )
    # drawn: k = (cycles per cell) / side, power density per mode x side^2
    big = tcw(np.arange(61.0, 59.0, -0.0625), np.arange(10.0, 30.0, 0.625), nt=1)  # 32 x 32
    from climdown.metrics import power_spectrum

    k_cell, p_cell = power_spectrum(big)
    (line,) = plot.spectrum({"x": big}).axes[0].get_lines()
    size = plot.cell_size_km(big)
    np.testing.assert_allclose(line.get_xdata(), k_cell / size)
    np.testing.assert_allclose(line.get_ydata(), p_cell * size**2)
    assert line.get_label() == f"x ({size:.3g} km cells)"
    assert plot.cell_size_km(np.ones((4, 4))) is None  # a plain array has no cells


def test_training_curves_from_jsonl(tmp_path):
    log = tmp_path / "log.jsonl"
    recs = [
        {"epoch": e, "train_loss": 1.0 / e, "val_rmse": 2.0 - 0.1 * e, "mass_violation": 1e-7}
        for e in range(1, 6)
    ]
    recs[2].pop("val_rmse")  # metrics may be missing in some epochs
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    out = tmp_path / "curves.png"
    fig = plot.training_curves(log, path=out)
    assert pixels(out).var() > 1e-3
    titles = [ax.get_title() for ax in fig.axes]
    # units in the titles; mass_violation is 1e-7 in every epoch: no flat panel, a note
    assert titles == [
        "loss [1: MSE of fields / normalisation scale]",
        "validation RMSE [kg m-2]",
    ]
    assert fig.get_supxlabel() == "not drawn: mass_violation = 1e-07 every epoch"
    rmse = fig.axes[1].get_lines()[0]
    np.testing.assert_array_equal(rmse.get_xdata(), [1, 2, 4, 5])
    # records directly, with a non-numeric field ignored
    fig = plot.training_curves([{"epoch": 1, "train_loss": 0.5, "note": "x"}])
    assert [ax.get_title() for ax in fig.axes] == ["loss [1: MSE of fields / normalisation scale]"]


def test_training_curves_no_empty_or_flat_panels():
    """The trainer's log under a positivity constraint: val_neg is 0 every epoch."""
    recs = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 1.0 / e,
            "val_rmse": 2.0 - 0.1 * e,
            "val_rmse_area": 2.1 - 0.1 * e,
            "val_mass_violation": 1e-6 * (1 + e % 2),
            "val_mass_violation_rel": 1e-7 * (1 + e % 2),
            "val_neg": 0,
            "grad_norm": float("nan"),
        }
        for e in range(1, 5)
    ]
    fig = plot.training_curves(recs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "loss [1: MSE of fields / normalisation scale]",
        "validation RMSE [kg m-2]",
        "validation RMSE, area-weighted [kg m-2]",
        "worst coarse-cell mass violation [kg m-2]",
        "worst mass violation / mean |LR| [1]",
    ]
    assert all(ax.get_lines() for ax in fig.axes)  # every panel has a curve
    note = fig.get_supxlabel()
    assert "val_neg = 0 every epoch" in note and "grad_norm: no finite value" in note
    # contrast: when negatives do occur, they get their panel
    recs[2]["val_neg"] = 3
    titles = [ax.get_title() for ax in plot.training_curves(recs).axes]
    assert "negative cells (validation) [count]" in titles
    assert plot.curve_title("val_crps_rel") == "val_crps_rel [1]"
    assert plot.curve_title("test_mae") == "test_mae [kg m-2]"
    assert plot.curve_title("lr_scale") == "lr_scale"


def test_training_curves_one_epoch_is_drawn():
    """A single record is not 'flat': each metric gets its panel (one point)."""
    fig = plot.training_curves([{"epoch": 1, "train_loss": 0.5, "val_rmse": 1.0, "val_neg": 0}])
    assert len(fig.axes) == 3 and not fig.get_supxlabel()


def test_training_curves_bad_logs(tmp_path):
    with pytest.raises(FileNotFoundError):
        plot.training_curves(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(ClimdownError, match="bad.jsonl:2"):
        plot.training_curves(bad)
    with pytest.raises(ClimdownError, match="no numeric metrics"):
        plot.training_curves([{"epoch": 1, "note": "x"}])
    with pytest.raises(ClimdownError, match="no training records"):
        plot.training_curves([])


def test_compare_fields_opened_from_files(tmp_path, rhine_like):
    lr, hr = rhine_like
    paths = {}
    for name, da in (("lr", lr), ("hr", hr), ("truth", hr + 0.5)):
        paths[name] = tmp_path / f"{name}.nc"
        da.to_dataset(name="tcw").to_netcdf(paths[name])
    out = tmp_path / "files.png"
    lr_f, hr_f, truth_f = (open_dataarray(paths[k]) for k in ("lr", "hr", "truth"))
    fig = plot.compare(lr_f, hr_f, truth_f, path=out)
    assert out.is_file() and pixels(out).var() > 1e-3
    assert len(geo_axes(fig)) == 4


def test_plot_draws_and_never_opens_files():
    """plot takes DataArrays: it imports nothing from climdown.data (the CLI opens the files)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(plot))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("climdown.data")}
    assert "climdown.grid" in imported  # contrast: the check does see plot's imports
    assert not hasattr(plot, "compare_files")
