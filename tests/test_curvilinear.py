"""Regional model grids (issue 16): rotated pole, polar stereographic, Lambert conformal.

Areas are checked against formulas climdown does not use (pyproj's geodesic polygon areas on
the same sphere, densified rotated-pole cells, the spherical excess of an octant); downscaling
against exact conservation, non-negativity, CF coordinates and laziness.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import xarray as xr

import climdown  # noqa: F401  (registers the accessor)
from climdown import sphere
from climdown.conservation import assert_conserves, conservation
from climdown.errors import CoordinateError, GridShapeError
from climdown.grid import (
    EARTH_RADIUS,
    CurvilinearGrid,
    Grid,
    corners_from_cf,
    find_horizontal,
    grid_of,
    infer_corners,
)
from climdown.inference import downscale
from climdown.nn.models.registry import get_model
from climdown.testing import (
    lambert_conformal_field,
    polar_stereographic_field,
    raise_if_dask_computes,
    rotated_pole_field,
)

pyproj = pytest.importorskip("pyproj")
SPHERE = pyproj.Geod(a=EARTH_RADIUS, b=EARTH_RADIUS)

DOMAINS = {
    "rotated": lambda **kw: rotated_pole_field(16, 16, **kw),
    "polar": lambda **kw: polar_stereographic_field(16, 16, **kw),
    "lambert": lambda **kw: lambert_conformal_field(16, 16, **kw),
}


def geod_areas(lat_v: np.ndarray, lon_v: np.ndarray) -> np.ndarray:
    """pyproj's geodesic polygon area (m^2) of every cell of CF bounds [ny, nx, 4]."""
    out = np.empty(lat_v.shape[:2])
    for j in range(lat_v.shape[0]):
        for i in range(lat_v.shape[1]):
            out[j, i] = abs(SPHERE.polygon_area_perimeter(lon_v[j, i], lat_v[j, i])[0])
    return out


# ---------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------
def test_octant_and_quadrilateral_areas() -> None:
    a, b, c = sphere.to_xyz(0, 0), sphere.to_xyz(0, 90), sphere.to_xyz(90, 0)
    assert sphere.triangle_area(a, b, c) == pytest.approx(np.pi / 2, rel=1e-14)
    assert sphere.triangle_area(a, c, b) == pytest.approx(-np.pi / 2, rel=1e-14)  # signed
    # a tiny cell (1 m) keeps its precision: the atan2 form does not cancel
    lat, lon = np.array([45, 45, 45 + 9e-6, 45 + 9e-6]), np.array([0, 9e-6, 9e-6, 0])
    q = sphere.quad_area(sphere.to_xyz(lat, lon)) * EARTH_RADIUS**2
    closed = Grid([45 + 4.5e-6], [4.5e-6], [45, 45 + 9e-6], [0, 9e-6]).area[0, 0]
    assert q == pytest.approx(closed, rel=1e-6)


def test_rotation_matches_pyproj() -> None:
    ds = rotated_pole_field(8, 10)
    attrs = dict(ds["rotated_pole"].attrs)
    to_geo = pyproj.Transformer.from_crs(pyproj.CRS.from_cf(attrs), "EPSG:4326", always_xy=True)
    rlat, rlon = np.meshgrid(ds.rlat, ds.rlon, indexing="ij")
    lon, lat = to_geo.transform(rlon, rlat)
    np.testing.assert_allclose(ds["lat"], lat, atol=1e-9)
    np.testing.assert_allclose(((ds["lon"] - lon + 180) % 360) - 180, 0.0, atol=1e-9)
    # EURO-CORDEX: the rotated origin lies at (90 - 39.25, -162 + 180)
    g = CurvilinearGrid.rotated([0.0], [0.0], grid_of(ds).mapping, [-1.0, 1.0], [-1.0, 1.0])
    assert (g.lat[0, 0], g.lon[0, 0]) == pytest.approx((50.75, 18.0))


def test_rotated_pole_areas_are_closed_form_and_match_densified_cells() -> None:
    ds = rotated_pole_field(6, 6)
    g = grid_of(ds)
    assert isinstance(g, CurvilinearGrid) and g.exact_rotated
    # independent: each cell's boundary (rotated parallels and meridians) densified, rotated
    # to geographic coordinates with pyproj, its area by pyproj's geodesic polygon area
    to_geo = pyproj.Transformer.from_crs(
        pyproj.CRS.from_cf(dict(ds["rotated_pole"].attrs)), "EPSG:4326", always_xy=True
    )
    t = np.linspace(0.0, 1.0, 200)
    for j, i in [(0, 0), (2, 3), (5, 5)]:
        y0, y1 = ds.rlat_bnds.values[j]
        x0, x1 = ds.rlon_bnds.values[i]
        ry = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1)])
        rx = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 + (x0 - x1) * t])
        ry = np.concatenate([ry, y1 + (y0 - y1) * t])
        rx = np.concatenate([rx, np.full_like(t, x0)])
        lon, lat = to_geo.transform(rx, ry)
        dense = abs(SPHERE.polygon_area_perimeter(lon, lat)[0])
        assert g.area[j, i] == pytest.approx(dense, rel=1e-6)
    # the whole domain: the closed form of its rotated box
    y0, y1 = np.deg2rad(ds.rlat_bnds.values[[0, -1], [0, 1]])
    x0, x1 = np.deg2rad(ds.rlon_bnds.values[[0, -1], [0, 1]])
    box = EARTH_RADIUS**2 * (np.sin(y1) - np.sin(y0)) * (x1 - x0)
    assert g.area.sum() == pytest.approx(box, rel=1e-12)


@pytest.mark.parametrize("name", ["polar", "lambert"])
def test_projected_areas_match_pyproj_and_sum_to_the_domain(name: str) -> None:
    ds = DOMAINS[name]()
    g = grid_of(ds)
    lat_v, lon_v = g.cf_bounds()
    np.testing.assert_allclose(g.area, geod_areas(lat_v, lon_v), rtol=1e-9)
    # the cells tile the domain: their sum is the area of its outline (one polygon)
    ring_lat = np.concatenate(
        [g.lat_c[0], g.lat_c[1:, -1], g.lat_c[-1, -2::-1], g.lat_c[-2:0:-1, 0]]
    )
    ring_lon = np.concatenate(
        [g.lon_c[0], g.lon_c[1:, -1], g.lon_c[-1, -2::-1], g.lon_c[-2:0:-1, 0]]
    )
    outline = abs(SPHERE.polygon_area_perimeter(ring_lon, ring_lat)[0])
    assert g.area.sum() == pytest.approx(outline, rel=1e-9)


def test_regular_grid_as_curvilinear_matches_the_closed_form() -> None:
    lat, lon = np.linspace(40.125, 43.875, 16), np.linspace(0.125, 3.875, 16)
    regular = Grid(lat, lon)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    latc, lonc = np.meshgrid(regular.lat_b, regular.lon_b, indexing="ij")
    curvi = CurvilinearGrid.from_corners(lat2, lon2, latc, lonc)
    # great-circle edges vs parallels: the cells differ by the sliver between them
    np.testing.assert_allclose(curvi.area, regular.area, rtol=2e-5)
    assert np.abs(curvi.area / regular.area - 1).max() > 1e-9  # a different formula


def test_corners_inferred_from_centres_at_the_edges() -> None:
    # the rule: interior corners are the mean of the four centres around them; the centres
    # are first extended by linear extrapolation, so an edge corner lies half a cell out
    lat, lon = np.linspace(40.125, 43.875, 16), np.linspace(0.125, 3.875, 16)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    lat_c, lon_c = infer_corners(lat2, lon2)  # on the sphere (no grid mapping)
    np.testing.assert_allclose(lat_c[0], 40.0, atol=2e-3)
    np.testing.assert_allclose(lat_c[-1], 44.0, atol=2e-3)
    np.testing.assert_allclose(lon_c[:, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(lon_c[:, -1], 4.0, atol=1e-5)
    # in a projection's plane (pyproj) the rule is exact for a grid uniform in that plane
    ds = lambert_conformal_field(8, 8)
    g = grid_of(ds)
    inferred = grid_of(ds.drop_vars(["lat_bnds", "lon_bnds", "y_bnds", "x_bnds"]))
    np.testing.assert_allclose(inferred.lat_c, g.lat_c, atol=1e-9)
    np.testing.assert_allclose(inferred.area, g.area, rtol=1e-9)
    with pytest.raises(CoordinateError, match="at least 2 x 2"):
        infer_corners(lat2[:1], lon2[:1])


# ---------------------------------------------------------------------------------------
# downscaling
# ---------------------------------------------------------------------------------------
def check_cf(hr: xr.Dataset, lr: xr.Dataset, factor: int) -> None:
    h = find_horizontal(hr)
    assert h.curvilinear and h.dims == find_horizontal(lr).dims
    ny, nx = (lr.sizes[d] * factor for d in h.dims)
    for name, std, units in (
        ("lat", "latitude", "degrees_north"),
        ("lon", "longitude", "degrees_east"),
    ):
        assert hr[name].dims == h.dims and hr[name].shape == (ny, nx)
        assert hr[name].attrs["standard_name"] == std and hr[name].attrs["units"] == units
        bounds = hr[hr[name].attrs["bounds"]]
        assert bounds.shape == (ny, nx, 4)
    mapping = lr["tcw"].attrs["grid_mapping"]
    assert hr["tcw"].attrs["grid_mapping"] == mapping
    assert hr[mapping].attrs == lr[mapping].attrs
    for axis in (h.y, h.x):
        assert hr[axis].size == lr[axis].size * factor and "bounds" in hr[axis].attrs
    # read back, the output's cells are the refined input grid's (its areas unscaled: the
    # plane's straight edges and the great circles differ by < 1e-5 of a cell)
    again = grid_of(hr)
    ref = grid_of(lr).refine(factor)
    np.testing.assert_allclose(again.lat_c, ref.lat_c, atol=1e-9)
    np.testing.assert_allclose(again.area, ref.area, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(DOMAINS))
@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_softmax_conserves_exactly(name: str, factor: int) -> None:
    lr = DOMAINS[name]()
    hr = lr.climdown.downscale(factor=factor, model="bicubic", constraint="softmax", progress=False)
    report = lr.climdown.assert_conserves(hr, rtol=1e-6)
    assert float(abs(report["mass_rel_diff"]).max()) < 1e-7
    assert int(report["neg_count"].sum()) == 0 and float(hr["tcw"].min()) >= 0.0
    check_cf(hr, lr, factor)
    # the fine cells' areas are pyproj's geodesic polygons', scaled by < 1e-5 to tile exactly
    fine = grid_of(lr).refine(factor)
    np.testing.assert_allclose(fine.area, geod_areas(*fine.cf_bounds()), rtol=1e-5)
    # contrast: plain bicubic interpolation does not conserve
    plain = lr.climdown.downscale(factor=factor, model="bicubic", constraint="none", progress=False)
    assert (
        float(conservation(plain["tcw"], lr["tcw"], grid=grid_of(lr))["max_block_violation"].max())
        > 1e-3
    )


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_lazy_equals_eager(name: str) -> None:
    lr = DOMAINS[name]()
    dims = find_horizontal(lr).dims
    lazy_in = lr.assign(tcw=lr["tcw"].chunk({dims[0]: 6, dims[1]: 10}))
    options = dict(factor=2, model="bicubic", constraint="softmax", tile=4, halo=2, progress=False)
    with raise_if_dask_computes():
        lazy = lazy_in.climdown.downscale(**options)
        report = lazy_in.climdown.conservation(lazy)
    assert lazy["tcw"].chunks is not None
    eager = lr.climdown.downscale(**options)
    np.testing.assert_array_equal(lazy["tcw"].values, eager["tcw"].values)
    assert float(report["mass_rel_diff"].max()) < 1e-7


def trained_cnn(lr: xr.Dataset, factor: int, epochs: int = 2) -> torch.nn.Module:
    """A tiny CNN trained on (coarsened, fine) pairs of a curvilinear field, in index space."""
    hr = lr.climdown.downscale(factor=factor, model="bicubic", constraint="softmax", progress=False)
    area = torch.from_numpy(grid_of(lr).refine(factor).area)
    torch.manual_seed(0)
    model = get_model("cnn", factor, "softmax", scale=30.0, width=8, blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(lr["tcw"].values)[:, None, None]  # [B, T, C, h, w]
    y = torch.from_numpy(hr["tcw"].values)[:, None, None]
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.mean((model(x, area=area) - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    return model.eval()


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_trained_cnn_conserves(name: str) -> None:
    lr = DOMAINS[name]()
    model = trained_cnn(lr, 2)
    hr = lr.climdown.downscale(
        factor=2, model=model, constraint="softmax", tile=6, halo=5, progress=False
    )
    report = lr.climdown.assert_conserves(hr, rtol=1e-6)
    assert int(report["neg_count"].sum()) == 0
    check_cf(hr, lr, 2)
    dims = find_horizontal(lr).dims
    lazy = lr.assign(tcw=lr["tcw"].chunk({dims[0]: 8})).climdown.downscale(
        factor=2, model=model, constraint="softmax", tile=6, halo=5, progress=False
    )
    np.testing.assert_allclose(lazy["tcw"].values, hr["tcw"].values, rtol=1e-6, atol=1e-5)


def test_without_pyproj_cells_are_split_on_the_sphere(monkeypatch: pytest.MonkeyPatch) -> None:
    lr = lambert_conformal_field(8, 8)
    with_plane = grid_of(lr).refine(4)
    monkeypatch.setitem(sys.modules, "pyproj", None)  # `import pyproj` raises ImportError
    g = grid_of(lr)  # corners from the CF bounds: the same cells
    on_sphere = g.refine(4)
    # great-circle and plane subdivision differ by far less than a fine cell
    d = np.hypot(on_sphere.lat - with_plane.lat, on_sphere.lon - with_plane.lon)
    assert 0 < d.max() < 1e-3 * min(with_plane.spacing)
    hr = lr.climdown.downscale(factor=4, model="bicubic", constraint="softmax", progress=False)
    report = lr.climdown.assert_conserves(hr, rtol=1e-6)
    assert float(abs(report["mass_rel_diff"]).max()) < 1e-7
    # spherical subdivision tiles the coarse cell with no scaling at all
    raw = np.abs(sphere.quad_area(_vertices(on_sphere)))
    blocks = (raw * EARTH_RADIUS**2).reshape(8, 4, 8, 4).sum((1, 3))
    np.testing.assert_allclose(blocks, g.area, rtol=1e-10)
    # and without bounds, the corners are inferred on the sphere
    bare = lr.drop_vars(["lat_bnds", "lon_bnds"])
    assert np.abs(grid_of(bare).lat_c - g.lat_c).max() < 1e-3


def _vertices(g: CurvilinearGrid) -> np.ndarray:
    c = g.corners_xyz
    return np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, 1:], c[1:, :-1]], axis=2)


def test_netcdf_round_trip(tmp_path) -> None:
    lr = rotated_pole_field(8, 8)
    hr = lr.climdown.downscale(factor=2, model="bicubic", progress=False)
    path = tmp_path / "hr.nc"
    hr.to_netcdf(path)
    with xr.open_dataset(path) as back:
        assert back["tcw"].attrs["grid_mapping"] == "rotated_pole"
        assert "rotated_pole" in back.variables
        g = grid_of(back)
        assert g.exact_rotated
        np.testing.assert_allclose(g.area, grid_of(lr).refine(2).area, rtol=1e-12)
    # the coarsened output is the input back, with its grid
    again = hr.climdown.coarsen(2)
    np.testing.assert_allclose(again["tcw"], lr["tcw"], rtol=1e-5)
    np.testing.assert_allclose(again["lat"], lr["lat"], atol=1e-9)


def test_dataarray_without_bounds_is_its_own_grid() -> None:
    # a DataArray drops the Dataset's bounds and mapping variable: corners come from centres
    lr = polar_stereographic_field(8, 8)
    da = lr["tcw"]
    hr = downscale(da, 2, "softmax", model="bicubic", progress=False)
    assert hr["lat"].shape == (16, 16)
    assert_conserves(hr, da)


# ---------------------------------------------------------------------------------------
# bad input: a clear error naming the fix
# ---------------------------------------------------------------------------------------
def test_not_divisible_names_the_crop_in_the_grid_dims() -> None:
    hr = rotated_pole_field(9, 8).climdown.downscale(factor=2, model="bicubic", progress=False)
    with pytest.raises(GridShapeError, match=r"rlat=slice\(0, 16\)"):
        hr.isel(rlat=slice(0, 17)).climdown.coarsen(2)


def test_bad_bounds_are_refused() -> None:
    ds = lambert_conformal_field(6, 6)
    lat_v, lon_v = ds["lat_bnds"].values.copy(), ds["lon_bnds"].values.copy()
    bowtie = lat_v.copy()
    bowtie[2, 3, [1, 2]] = bowtie[2, 3, [2, 1]]
    with pytest.raises(CoordinateError, match="inconsistent|convex"):
        corners_from_cf(bowtie, lon_v)
    moved = lat_v.copy()
    moved[2, 3, 0] += 0.05
    with pytest.raises(CoordinateError, match=r"inconsistent: cell \(\d, \d\)"):
        corners_from_cf(moved, lon_v)
    with pytest.raises(CoordinateError, match="non-quadrilateral"):
        corners_from_cf(lat_v[..., :3], lon_v[..., :3])
    # self-intersecting cells from consistent corners: swap two corner rows
    g = grid_of(ds)
    lat_c = g.lat_c.copy()
    lat_c[[2, 3]] = lat_c[[3, 2]]
    with pytest.raises(CoordinateError, match="convex|folds"):
        CurvilinearGrid.from_corners(g.lat, g.lon, lat_c, g.lon_c)
    # centres that are not in their cells
    with pytest.raises(CoordinateError, match="outside its cell"):
        CurvilinearGrid.from_corners(g.lat + 0.3, g.lon, g.lat_c, g.lon_c)
    # clockwise CF bounds are read as the same cells
    cw = grid_of(
        ds.assign_coords(
            lat_bnds=ds["lat_bnds"][..., [0, 3, 2, 1]], lon_bnds=ds["lon_bnds"][..., [0, 3, 2, 1]]
        )
    )
    np.testing.assert_allclose(cw.area, g.area, rtol=1e-12)


def test_missing_coordinates_and_pole_are_refused() -> None:
    ds = rotated_pole_field(6, 6)
    no_pole = ds.copy()
    no_pole["rotated_pole"].attrs.pop("grid_north_pole_latitude")
    with pytest.raises(CoordinateError, match="grid_north_pole_latitude"):
        no_pole.climdown.downscale(factor=2, model="bicubic", progress=False)
    # rlat/rlon with the pole and no 2-D lat/lon: computed by the rotation
    bare = ds.drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"])
    hr = bare.climdown.downscale(factor=2, model="bicubic", progress=False)
    np.testing.assert_allclose(
        hr["lat"], ds.climdown.downscale(factor=2, model="bicubic", progress=False)["lat"]
    )
    # neither 2-D lat/lon nor a grid mapping
    plain = xr.Dataset({"tcw": (("y", "x"), np.ones((4, 4)), {"units": "kg m-2"})})
    with pytest.raises(CoordinateError, match="2-D latitude/longitude"):
        plain.climdown.downscale(factor=2, model="bicubic")
    # 2-D lat/lon on different dims
    odd = plain.assign_coords(lat=(("y", "x"), np.ones((4, 4))), lon=(("x", "y"), np.ones((4, 4))))
    with pytest.raises(CoordinateError, match="same two dimensions"):
        grid_of(odd)
    # LCC with x/y and a mapping but no lat/lon: needs pyproj (here: computed with it)
    lcc = lambert_conformal_field(6, 6).drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"])
    np.testing.assert_allclose(grid_of(lcc).lat, grid_of(lambert_conformal_field(6, 6)).lat)


def test_projection_without_pyproj_and_without_latlon_is_refused(monkeypatch) -> None:
    lcc = lambert_conformal_field(6, 6).drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"])
    monkeypatch.setitem(sys.modules, "pyproj", None)
    with pytest.raises(CoordinateError, match="pyproj"):
        grid_of(lcc)


def test_plot_on_the_grids_own_projection() -> None:
    import cartopy.crs as ccrs

    from climdown import plot

    for lr, kind in (
        (rotated_pole_field(8, 8, 1), ccrs.RotatedPole),
        (lambert_conformal_field(8, 8, 1), ccrs.LambertConformal),
        (polar_stereographic_field(8, 8, 1), ccrs.Stereographic),
    ):
        hr = lr.climdown.downscale(factor=2, model="bicubic", progress=False)
        fig = lr.climdown.plot(hr)
        assert all(isinstance(ax.projection, kind) for ax in fig.axes if hasattr(ax, "projection"))
        fig.canvas.draw()
        plot.field(hr["tcw"])  # one panel of the fine field


def test_downscale_file_keeps_the_grid(tmp_path) -> None:
    # what the CLI's downscale runs: file in, file out, lazily in chunks
    from climdown.fileio import downscale_file

    lambert_conformal_field(16, 16).to_netcdf(tmp_path / "in.nc")
    out = downscale_file(
        tmp_path / "in.nc", tmp_path / "out.nc", factor=2, model="bicubic", max_chunk=8
    )
    with xr.open_dataset(out) as hr, xr.open_dataset(tmp_path / "in.nc") as lr:
        assert hr["tcw"].attrs["grid_mapping"] == "crs" and "crs" in hr.variables
        assert hr["lat_bnds"].shape == (32, 32, 4)
        report = lr.climdown.assert_conserves(hr, rtol=1e-6)
        assert float(abs(report["mass_rel_diff"]).max()) < 1e-7


def test_cordex_layout_coarsens_and_budgets_through_the_accessor() -> None:
    # rlat/rlon only, the grid mapping a data variable (as CORDEX files hold it)
    full = rotated_pole_field(16, 16)
    cordex = full.drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"]).reset_coords("rotated_pole")
    assert "rotated_pole" in cordex.data_vars
    lr = cordex.climdown.coarsen(4)
    np.testing.assert_array_equal(lr["tcw"].values, full.climdown.coarsen(4)["tcw"].values)
    assert lr["tcw"].attrs["grid_mapping"] == "rotated_pole" and lr["lat"].shape == (4, 4)
    hr = cordex.climdown.downscale(factor=2, model="bicubic", constraint="softmax", progress=False)
    report = cordex.climdown.assert_conserves(hr, rtol=1e-6)
    assert float(abs(report["mass_rel_diff"]).max()) < 1e-7
    # contrast: the field alone has lost its grid mapping, and says what is missing
    with pytest.raises(CoordinateError, match="grid mapping"):
        cordex["tcw"].climdown.coarsen(4)
