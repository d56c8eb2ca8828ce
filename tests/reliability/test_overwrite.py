"""``--overwrite`` replaces only what climdown wrote; everything else is refused and untouched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import climdown.fileio
from climdown.cli import main
from climdown.data.sources import open_sample
from climdown.data.store import OUTPUT_MARKER, written_by_climdown
from climdown.errors import StoreError
from climdown.fileio import downscale_file

OPTIONS = {"factor": 4, "constraint": "softmax", "model": "bicubic"}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour of the Rhine sample, 16 x 16 cells, as netCDF."""
    crop = open_sample("rhine").isel(
        time=slice(0, 1), latitude=slice(0, 16), longitude=slice(0, 16)
    )
    path = tmp_path_factory.mktemp("overwrite") / "in.nc"
    crop.load().to_netcdf(path)
    return path


def _snapshot(path: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``path`` (itself included) with its bytes (None: a folder)."""
    if path.is_symlink() or path.is_file():
        return {".": os.readlink(path).encode() if path.is_symlink() else path.read_bytes()}
    out: dict[str, bytes | None] = {".": None}
    for p in sorted(path.rglob("*")):
        out[str(p.relative_to(path))] = None if p.is_dir() else p.read_bytes()
    return out


def _user_folder(tmp: Path, name: str) -> Path:
    d = tmp / name
    (d / "sub").mkdir(parents=True)
    (d / "thesis.tex").write_text("years of work")
    (d / "sub" / "data.csv").write_text("1,2,3")
    return d


def _empty_folder(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _text_file(tmp: Path, name: str) -> Path:
    (tmp / name).write_text("my notes, not a netCDF file")
    return tmp / name


def _foreign_zarr(tmp: Path, name: str) -> Path:
    xr.Dataset({"x": ("a", np.arange(3.0))}).to_zarr(tmp / name, consolidated=False)
    return tmp / name


def _climdown_zarr_as(tmp: Path, name: str, src: Path) -> Path:
    """A zarr store downscale_file wrote, at a path whose name says netCDF."""
    downscale_file(src, tmp / "made.zarr", **OPTIONS)
    os.replace(tmp / "made.zarr", tmp / name)
    return tmp / name


def _netcdf_as(tmp: Path, name: str, src: Path) -> Path:
    """A netCDF file downscale_file wrote, at a path whose name says zarr."""
    downscale_file(src, tmp / "made.nc", **OPTIONS)
    os.replace(tmp / "made.nc", tmp / name)
    return tmp / name


def _link_to_netcdf(tmp: Path, name: str, src: Path) -> Path:
    target = tmp / "theirs.nc"
    target.write_bytes(src.read_bytes())
    (tmp / name).symlink_to(target)
    return tmp / name


REFUSED = [  # (what is at the output, output name, maker)
    ("a folder of the user's files", "out", _user_folder),
    ("a folder of the user's files named .nc", "out.nc", _user_folder),
    ("a folder of the user's files named .zarr", "out.zarr", _user_folder),
    ("an empty folder", "out.nc", _empty_folder),
    ("a text file named .nc", "out.nc", _text_file),
    ("a text file named .zarr", "out.zarr", _text_file),
    ("a zarr store climdown did not write", "out.zarr", _foreign_zarr),
]


@pytest.mark.parametrize(("what", "name", "make"), REFUSED, ids=[r[0] for r in REFUSED])
def test_overwrite_refuses_what_climdown_did_not_write(src, tmp_path, what, name, make):
    dst = make(tmp_path, name)
    before = _snapshot(dst)
    with pytest.raises(StoreError, match="refusing to replace it"):
        downscale_file(src, dst, overwrite=True, **OPTIONS)
    assert _snapshot(dst) == before, what
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("make", "name"),
    [(_climdown_zarr_as, "out.nc"), (_netcdf_as, "out.zarr"), (_link_to_netcdf, "out.nc")],
    ids=["zarr-as-nc", "nc-as-zarr", "link"],
)
def test_overwrite_refuses_another_format_or_a_link(src, tmp_path, make, name):
    dst = make(tmp_path, name, src)
    before = _snapshot(dst)
    with pytest.raises(StoreError, match="refusing"):
        downscale_file(src, dst, overwrite=True, **OPTIONS)
    assert _snapshot(dst) == before


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_overwrite_replaces_what_climdown_wrote(src, tmp_path, suffix):
    dst = tmp_path / f"out{suffix}"
    downscale_file(src, dst, **{**OPTIONS, "model": "nearest"})
    if suffix == ".zarr":
        assert written_by_climdown(dst)
        with xr.open_zarr(dst, consolidated=False) as z:
            assert OUTPUT_MARKER in z.attrs
    with pytest.raises(StoreError, match="exists.*overwrite=True"):
        downscale_file(src, dst, **OPTIONS)  # contrast: without overwrite, nothing is replaced
    downscale_file(src, dst, overwrite=True, **OPTIONS)
    opts = {"engine": "zarr", "consolidated": False} if suffix == ".zarr" else {}
    with xr.open_dataset(dst, **opts) as out:
        assert "'bicubic'" in out.attrs["history"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name]  # no temporary left


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_a_failed_overwrite_keeps_the_old_output(src, tmp_path, monkeypatch, suffix):
    dst = tmp_path / f"out{suffix}"
    downscale_file(src, dst, **OPTIONS)
    before = _snapshot(dst)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr" if suffix == ".zarr" else "to_netcdf", fail)
    with pytest.raises(OSError, match="No space left"):
        downscale_file(src, dst, overwrite=True, **OPTIONS)
    assert _snapshot(dst) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name]


def test_the_cli_refuses_a_folder_in_one_line_and_deletes_nothing(src, tmp_path, capsys):
    folder = _user_folder(tmp_path, "results")
    before = _snapshot(folder)
    argv = ["downscale", str(src), str(folder), "--factor", "4", "--model", "bicubic"]
    assert main(argv + ["--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("climdown downscale: error: ") and len(err.splitlines()) == 1
    assert str(folder) in err and "--overwrite" in err and "overwrite=True" not in err
    assert _snapshot(folder) == before


def test_downscale_file_checks_before_computing(src, tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(climdown.fileio, "downscale", lambda *a, **k: called.append(1))
    with pytest.raises(StoreError):
        downscale_file(src, _user_folder(tmp_path, "out"), overwrite=True, **OPTIONS)
    assert called == []


def test_the_input_is_never_the_output(src: Path, tmp_path: Path) -> None:
    """``climdown downscale in.nc in.nc --overwrite`` would replace the data it reads: refused,
    the input untouched, also through another spelling of the path or a link; a zarr input
    can neither be written over nor have the output put inside it."""
    copy = tmp_path / "in.nc"
    copy.write_bytes(src.read_bytes())
    before = _snapshot(copy)
    link = tmp_path / "link.nc"
    link.symlink_to(copy)
    for dst in (copy, tmp_path / "." / "in.nc", link):
        with pytest.raises(StoreError, match="is the input"):
            downscale_file(link if dst is copy else copy, dst, overwrite=True, **OPTIONS)
    assert _snapshot(copy) == before
    store = downscale_file(copy, tmp_path / "lr.zarr", factor=1, model="nearest")
    stored = _snapshot(store)
    for dst in (store, store / "inside.nc"):
        with pytest.raises(StoreError, match="is the input"):
            downscale_file(store, dst, overwrite=True, **OPTIONS)
    assert _snapshot(store) == stored
    code = main(["downscale", str(copy), str(copy), "--overwrite", "--model", "bicubic"])
    assert code == 2 and _snapshot(copy) == before
