"""``climdown demo --quick``: the five steps, the mass budget in kg, maps, spectra and netCDF."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from climdown.cli import main
from climdown.grid import coarsen_dataarray, mass_dataarray

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MASS_LINE = re.compile(
    r"mass LR (?P<lr>\S+) kg, HR (?P<hr>\S+) kg, relative difference (?P<rel>\S+), "
    r"worst block (?P<block>\S+) kg m-2, negatives (?P<neg>\d+)"
)


# every test here reads the one demo run of the fixture below
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``climdown demo --quick --out D`` run once: (D, what it printed)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--quick", "--out", str(out)])
    assert rc == 0, buf.getvalue()
    return out, buf.getvalue()


def test_demo_prints_the_five_steps(demo: tuple[Path, str]) -> None:
    _, printed = demo
    steps = [int(m) for m in re.findall(r"^\[(\d)/5\] ", printed, flags=re.M)]
    assert steps == [1, 2, 3, 4, 5]
    assert "bicubic" in printed and "RMSE" in printed  # scores against bicubic


def test_demo_mass_budget_is_conserved(demo: tuple[Path, str]) -> None:
    _, printed = demo
    (match,) = MASS_LINE.finditer(printed)
    mass_lr, mass_hr = float(match["lr"]), float(match["hr"])
    assert mass_lr > 1e12  # kg of water over the 10 x 10 degree Rhine box: ~7e12
    assert abs(float(match["rel"])) <= 1e-6
    assert abs(mass_hr - mass_lr) <= 1e-6 * mass_lr
    assert int(match["neg"]) == 0


def test_demo_netcdf_conserves(demo: tuple[Path, str]) -> None:
    out, _ = demo
    with xr.open_dataset(out / "downscaled.nc") as ds:
        hr, truth = ds["hr"].load(), ds["truth"].load()
    assert hr.shape == truth.shape == (40, 40)
    assert hr.attrs["units"] == "kg m-2" and "softmax" in hr.attrs["history"]
    with xr.open_dataset(out / "downscaled.nc") as ds:  # the sample's global attributes kept
        attrs = dict(ds.attrs)
    assert "Copernicus" in attrs["Licence"] and attrs["Conventions"].startswith("CF-1.8")
    assert "climdown demo" in attrs["history"] and attrs["title"]
    lr = coarsen_dataarray(truth, 4)
    back = coarsen_dataarray(hr, 4)
    scale = float(np.abs(lr).max())
    assert float(np.abs(back.values - lr.values).max()) <= 1e-5 * scale
    m_lr, m_hr = float(mass_dataarray(lr)), float(mass_dataarray(hr))
    assert abs(m_hr - m_lr) <= 1e-6 * m_lr
    # contrast: the same field moved one LR row south carries another mass
    shifted = hr.copy(data=np.roll(hr.values, 4, axis=0))
    assert abs(float(mass_dataarray(shifted)) - m_lr) > 1e-6 * m_lr
    assert float(np.abs(hr - truth).mean()) < 0.2 * float(truth.mean())  # a sensible field


def _png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    return mpimg.imread(path)[..., :3]


def test_demo_writes_maps_and_spectrum(demo: tuple[Path, str]) -> None:
    out, printed = demo
    for name in ("compare.png", "spectrum.png", "downscaled.nc"):
        assert (out / name).is_file(), name
        assert str(out / name) in printed
    compare = _png_pixels(out / "compare.png")
    assert compare.shape[1] > 400
    assert compare.std() > 0.05  # not blank
    assert len(np.unique(compare.reshape(-1, 3), axis=0)) > 100  # colour maps, not one tone
    spectrum = _png_pixels(out / "spectrum.png")
    assert spectrum.std() > 0.01
