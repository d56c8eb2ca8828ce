"""``plot.compare`` draws a fine field beside the coarse one only when it refines it.

Same region within half a coarse cell, one integer factor on both axes, and a time both
fields have: anything else is refused with an error naming the mismatch, from the Python
API and from ``climdown plot`` alike.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from climdown import plot  # noqa: E402
from climdown.cli import main  # noqa: E402
from climdown.data.sources import open_sample, sample_path  # noqa: E402
from climdown.errors import CoordinateError, GridShapeError  # noqa: E402
from climdown.grid import Grid  # noqa: E402

TIMES = np.array(["2020-01-01T00", "2020-01-01T01", "2020-01-01T02"], dtype="datetime64[ns]")


def _field(lat, lon, times=TIMES, name="tcw") -> xr.DataArray:
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    data = 20.0 + np.cos(np.deg2rad(lat))[:, None] * (1.0 + np.sin(np.deg2rad(4 * lon)))[None, :]
    hours = (np.asarray(times) - TIMES[0]) / np.timedelta64(1, "h")
    return xr.DataArray(
        data[None] + hours[:, None, None],  # each time step its own values
        dims=("time", "lat", "lon"),
        coords={"time": times, "lat": lat, "lon": lon},
        name=name,
        attrs={"units": "kg m-2"},
    )


LR_LAT = np.arange(55.0, 47.0, -1.0)  # 8 rows, descending like ERA5
LR_LON = np.arange(0.0, 8.0, 1.0)


def _fine(factor_lat=4, factor_lon=None, dlat=0.0, dlon=0.0, times=TIMES) -> xr.DataArray:
    """The fine grid of LR refined by the factors, shifted by (dlat, dlon) degrees."""
    fine = Grid(LR_LAT, LR_LON).refine(factor_lat)
    lat = fine.lat
    lon = fine.lon if factor_lon is None else Grid(LR_LAT, LR_LON).refine(factor_lon).lon
    return _field(lat + dlat, lon + dlon, times)


@pytest.fixture
def lr() -> xr.DataArray:
    return _field(LR_LAT, LR_LON)


REFUSED = [  # (what, hr maker, compare keywords, error class, words in the message)
    ("shifted one coarse cell east", lambda: _fine(dlon=1.0), {}, CoordinateError, ["region"]),
    ("shifted 0.6 coarse cell north", lambda: _fine(dlat=0.6), {}, CoordinateError, ["region"]),
    ("4x in latitude, 2x in longitude", lambda: _fine(4, 2), {}, GridShapeError, ["integer"]),
    (
        "another grid altogether",
        lambda: _field(np.arange(60.0, 20.0, -0.3), np.arange(100.0, 120.0, 0.7)),
        {},
        GridShapeError,
        [],
    ),
    (
        "no time in common",
        lambda: _fine(times=TIMES + np.timedelta64(5, "h")),
        {},
        CoordinateError,
        ["time", "2020-01-01 05:00"],
    ),
    (
        "--time the fine field lacks",
        lambda: _fine(times=TIMES[:2]),
        {"time": "2020-01-01T02"},
        CoordinateError,
        ["2020-01-01T02"],
    ),
    (
        "--time neither has",
        lambda: _fine(),
        {"time": "1999-01-01"},
        CoordinateError,
        ["1999-01-01", "2020-01-01 00:00"],
    ),
    ("--time that is not a time", lambda: _fine(), {"time": "noon"}, CoordinateError, ["noon"]),
]


@pytest.mark.parametrize(
    ("make", "kw", "error", "words"),
    [pytest.param(*r[1:], id=r[0]) for r in REFUSED],
)
def test_compare_refuses_a_fine_field_that_does_not_refine_the_coarse_one(
    lr, make, kw, error, words
):
    with pytest.raises(error) as info:
        plot.compare(lr, make(), **kw)
    for word in words:
        assert word in str(info.value)


ACCEPTED = [  # (what, hr maker, compare keywords, time in the title)
    ("an exact refinement", lambda: _fine(), {}, "2020-01-01 00:00"),
    (
        "shifted 0.4 coarse cell (rounding)",
        lambda: _fine(dlat=-0.4, dlon=0.4),
        {},
        "2020-01-01 00:00",
    ),
    (
        "only later times shared: the first shared one",
        lambda: _fine(times=TIMES[1:]),
        {},
        "2020-01-01 01:00",
    ),
    ("longitudes in the other convention", lambda: _fine(dlon=-360.0), {}, "2020-01-01 00:00"),
    ("a chosen shared time", lambda: _fine(), {"time": "2020-01-01T02"}, "2020-01-01 02:00"),
]


@pytest.mark.parametrize(
    ("make", "kw", "when"),
    [pytest.param(*r[1:], id=r[0]) for r in ACCEPTED],
)
def test_compare_draws_a_true_refinement(lr, make, kw, when):
    hr = make()
    fig = plot.compare(lr, hr, hr, **kw)
    title = fig.get_suptitle()
    assert "4x downscaling" in title and when in title, title
    t = np.datetime64(when.replace(" ", "T"), "ns")
    for ax, da in zip(fig.axes, (lr, hr, hr), strict=False):  # every panel draws that time
        drawn = np.asarray(next(c for c in ax.collections if hasattr(c, "get_array")).get_array())
        np.testing.assert_allclose(drawn.ravel(), da.sel(time=t).values.ravel())


def test_the_cli_refuses_the_global_sample_beside_a_rhine_output(tmp_path: Path, capsys):
    rhine = tmp_path / "rhine.nc"
    open_sample("rhine").isel(
        time=slice(0, 1), latitude=slice(0, 16), longitude=slice(0, 16)
    ).load().to_netcdf(rhine)
    hr = tmp_path / "rhine_x4.nc"
    assert main(["downscale", str(rhine), str(hr), "--factor", "4", "--model", "bicubic"]) == 0
    png = tmp_path / "map.png"
    argv = ["plot", str(sample_path("global")), str(hr), "--out", str(png)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("climdown plot: error: ") and len(err.splitlines()) == 1
    assert "refine" in err
    assert not png.exists()
    assert main(["plot", str(rhine), str(hr), "--out", str(png)]) == 0  # contrast: its own input
    assert png.exists()
