"""The ``climdown`` command line end to end: build, train, evaluate, downscale, plot, version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from climdown import __version__
from climdown.cli import main
from climdown.data.sources import open_sample
from climdown.data.store import is_complete, store_info
from climdown.errors import CheckpointError, StoreError
from climdown.evaluate import evaluate_checkpoint
from climdown.grid import coarsen_dataarray
from climdown.study import recipes_dir
from climdown.train import train

RECIPES = recipes_dir()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _recipe(tmp: Path, name: str = "tiny", **changes: object) -> Path:
    """The packaged tiny.yaml copied to ``tmp`` with its output under ``tmp`` (plus ``changes``)."""
    raw = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    raw.update(name=name, output=str(tmp / f"{name}.zarr"), **changes)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``climdown argv`` in-process, expecting exit code 2 and one line on stderr."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith(f"climdown {argv[0]}: error: ")
    assert len(err.splitlines()) == 1, err
    return err


def _png_is_drawn(path: Path) -> None:
    """A PNG that decodes and is not one flat colour."""
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)[..., :3]
    assert img.shape[0] > 50 and img.shape[1] > 50
    assert img.std() > 0.02
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged tiny.yaml built by ``climdown build`` (4x, 16 x 16 HR, 32/16/16 samples)."""
    tmp = tmp_path_factory.mktemp("cli-store")
    assert main(["build", str(_recipe(tmp)), "--quiet"]) == 0
    return tmp / "tiny.zarr"


@pytest.fixture(scope="module")
def tiny_run(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``climdown train`` of CNN + softmax, one epoch, batch 8, on the tiny store."""
    out = tmp_path_factory.mktemp("cli-run") / "run"
    argv = ["train", "--store", str(tiny_store), "--model", "cnn", "--constraint", "softmax"]
    argv += ["--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet"]
    assert main(argv + ["--option", "width=8"]) == 0
    return out


def test_build_creates_then_skips_then_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path)
    store = tmp_path / "tiny.zarr"
    assert main(["build", str(recipe), "--quiet"]) == 0
    assert f"store ready: {store}" in capsys.readouterr().out
    assert is_complete(store)
    info = store_info(store)
    assert info["factor"] == 4 and info["samples"] == {"train": 32, "val": 16, "test": 16}
    stamp = (store / "zarr.json").stat().st_mtime_ns

    t0 = time.perf_counter()
    assert main(["build", str(recipe), "--quiet"]) == 0  # exists and matches: a no-op
    assert time.perf_counter() - t0 < 1.0
    assert (store / "zarr.json").stat().st_mtime_ns == stamp
    assert store_info(store)["created"] == info["created"]

    time.sleep(0.01)  # the rebuilt metadata file gets a later mtime
    assert main(["build", str(recipe), "--quiet", "--overwrite"]) == 0
    assert is_complete(store)
    assert (store / "zarr.json").stat().st_mtime_ns != stamp
    assert store_info(store)["recipe_hash"] == info["recipe_hash"]


def test_build_reports_each_splits_patches_and_speaks_in_cli_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(_recipe(tmp_path)), "--quiet"]) == 0
    out = capsys.readouterr().out
    # tiny: 1 deg, 120 x 360 cells, 16-cell patches every 4 cells; 24/12/12 hours per split
    positions = len(range(0, 120 - 16 + 1, 4)) * len(range(0, 360 - 16 + 1, 4))
    available = {"train": 24 * positions, "val": 12 * positions, "test": 12 * positions}
    assert store_info(tmp_path / "tiny.zarr")["patches_available"] == available
    counts = ", ".join(
        f"{s} {n} patches of {available[s]}" for s, n in zip(available, (32, 16, 16), strict=True)
    )
    assert f"store ready: {tmp_path / 'tiny.zarr'} ({counts})" in out
    # another recipe at the same output: the message names the CLI's flag, not the keyword
    err = _error_line(capsys, ["build", str(_recipe(tmp_path, sampling={"seed": 1}))])
    assert "different recipe" in err and "--overwrite" in err and "overwrite=True" not in err


def test_build_unknown_recipe_key_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe(tmp_path, patch_size=16)  # a plausible typo for `patch`
    err = _error_line(capsys, ["build", str(recipe)])
    assert "patch_size" in err
    assert not (tmp_path / "tiny.zarr").exists()


def test_build_exit_code_and_stderr_through_a_real_process(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, bogus_key=1)
    proc = subprocess.run(
        [sys.executable, "-m", "climdown.cli", "build", str(recipe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bogus_key" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------
def test_train_writes_checkpoints_and_log(tiny_run: Path) -> None:
    assert (tiny_run / "best.pt").is_file() and (tiny_run / "last.pt").is_file()
    records = [json.loads(s) for s in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["epoch"] == 1
    assert all(np.isfinite(v) for v in records[0].values() if isinstance(v, float))


@pytest.mark.parametrize(
    ("flag", "bad", "choices"),
    [("--model", "unet", "cnn"), ("--constraint", "softmx", "softmax")],
)
def test_train_unknown_name_is_exit_2(
    tiny_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    bad: str,
    choices: str,
) -> None:
    argv = ["train", "--store", str(tiny_store), flag, bad, "--out", str(tmp_path / "run")]
    err = _error_line(capsys, argv + ["--quiet"])
    assert repr(bad) in err and choices in err  # names what was seen and what exists
    assert not (tmp_path / "run" / "last.pt").exists()


def _store_without_normalisation(store: Path, dst: Path) -> Path:
    """A copy of ``store`` whose root attributes lack ``normalisation``."""
    shutil.copytree(store, dst)
    meta_path = dst / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["normalisation"]
    meta_path.write_text(json.dumps(meta))
    assert "normalisation" not in store_info(dst)  # what store_info reads
    return dst


def test_train_on_store_without_normalisation_is_store_error(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _store_without_normalisation(tiny_store, tmp_path / "nonorm.zarr")
    with pytest.raises(StoreError, match="normalisation"):
        train(bad, epochs=1, out=tmp_path / "api", progress=False)
    err = _error_line(capsys, ["train", "--store", str(bad), "--out", str(tmp_path / "r")])
    assert "normalisation" in err and "--overwrite" in err


def test_evaluate_on_store_without_normalisation_is_store_error(
    tiny_store: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _store_without_normalisation(tiny_store, tmp_path / "nonorm.zarr")
    argv = ["evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--store", str(bad)]
    err = _error_line(capsys, argv)
    assert "normalisation" in err


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------
def test_evaluate_prints_table_and_writes_csv_md(
    tiny_store: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(tiny_run / "best.pt"), "--store", str(tiny_store)]
    assert main(argv + ["--split", "test", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    assert head[:4] == ["name", "data", "model", "constraint"] and "RMSE" in head
    rows = {c[0]: c for c in ([x.strip() for x in t.strip("|").split("|")] for t in table[2:])}
    # bicubic + softmax: the model's own constraint on the baseline, the fair bar
    assert set(rows) == {"best.pt", "bicubic", "nearest", "pycnophylactic", "bicubic + softmax"}
    assert float(rows["pycnophylactic"][head.index("mass viol. (rel)")]) <= 1e-5
    assert float(rows["bicubic + softmax"][head.index("mass viol. (rel)")]) <= 1e-5
    assert rows["best.pt"][2:4] == ["cnn", "softmax"]
    assert rows["best.pt"][head.index("neg num")] == "0"
    assert float(rows["best.pt"][head.index("mass viol. (rel)")]) <= 1e-5
    assert float(rows["bicubic"][head.index("mass viol. (rel)")]) > 1e-3  # contrast

    assert (out / "metrics.md").read_text().strip() == "\n".join(table)
    csv = (out / "metrics.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert header[:3] == ["name", "model", "constraint"] and "RMSE" in header
    assert [line.split(",")[0] for line in csv[1:]] == [
        "best.pt",
        "bicubic",
        "nearest",
        "pycnophylactic",
        "bicubic + softmax",
    ]
    rmse = [float(line.split(",")[header.index("RMSE")]) for line in csv[1:]]
    assert all(np.isfinite(rmse)) and min(rmse) > 0


def test_evaluate_other_factor_checkpoint_is_exit_2(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store2 = tmp_path / "tiny2.zarr"
    assert main(["build", str(_recipe(tmp_path, name="tiny2", factor=2)), "--quiet"]) == 0
    run2 = tmp_path / "run2"
    argv = ["train", "--store", str(store2), "--epochs", "1", "--max-steps", "1"]
    argv += ["--batch-size", "8", "--out", str(run2), "--quiet", "--option", "width=8"]
    assert main(argv) == 0
    capsys.readouterr()

    ckpt = run2 / "best.pt"
    with pytest.raises(CheckpointError, match=r"factor 2 .*factor 4"):
        evaluate_checkpoint(ckpt, tiny_store, split="test")
    err = _error_line(capsys, ["evaluate", "--checkpoint", str(ckpt), "--store", str(tiny_store)])
    assert "factor 2" in err and "factor 4" in err


# ---------------------------------------------------------------------------------------
# downscale and plot
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rhine_nc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of the packaged ERA5 Rhine TCW sample, cropped to 40 x 40, as netCDF."""
    crop = open_sample("rhine").isel(
        time=slice(20, 22), latitude=slice(0, 40), longitude=slice(0, 40)
    )
    path = tmp_path_factory.mktemp("rhine") / "rhine.nc"
    crop.load().to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def rhine_hr(rhine_nc: Path) -> Path:
    """``climdown downscale`` of ``rhine_nc``: 4x, softmax, bicubic backbone."""
    out = rhine_nc.with_name("rhine_x4.nc")
    argv = ["downscale", str(rhine_nc), str(out), "--factor", "4", "--constraint", "softmax"]
    assert main(argv + ["--model", "bicubic"]) == 0
    return out


def test_downscale_file_conserves_the_input(rhine_nc: Path, rhine_hr: Path) -> None:
    with xr.open_dataset(rhine_nc) as src, xr.open_dataset(rhine_hr) as hr:
        lr, fine = src["tcw"].load(), hr["tcw"].load()
    assert fine.sizes == {"time": 2, "latitude": 160, "longitude": 160}  # the file's names
    np.testing.assert_array_equal(fine["time"].values, lr["time"].values)
    assert fine.attrs["units"] == "kg m-2"
    assert "bicubic" in fine.attrs["history"] and "softmax" in fine.attrs["history"]
    assert float(fine.min()) >= 0.0
    back = coarsen_dataarray(fine, 4)
    np.testing.assert_allclose(back["latitude"], lr["latitude"], atol=1e-9)
    np.testing.assert_allclose(back["longitude"], lr["longitude"], atol=1e-9)
    scale = float(np.abs(lr).max())
    assert float(np.abs(back.values - lr.values).max()) <= 1e-5 * scale
    # contrast: plain bicubic (constraint none) does not coarsen back to the input
    plain = rhine_hr.with_name("rhine_x4_none.nc")
    argv = ["downscale", str(rhine_nc), str(plain), "--factor", "4", "--constraint", "none"]
    assert main(argv + ["--model", "bicubic"]) == 0
    with xr.open_dataset(plain) as hr_none:
        back_none = coarsen_dataarray(hr_none["tcw"].load(), 4)
    assert float(np.abs(back_none.values - lr.values).max()) > 1e-3 * scale


def test_downscaled_longitude_is_monotonic(rhine_hr: Path) -> None:
    # the input's centres are 0, 0.25, ..., 9.75 E: the westmost fine cells lie west of 0 E
    with xr.open_dataset(rhine_hr) as hr:
        lon = hr["longitude"].values
    assert np.all(np.diff(lon) > 0), lon[:4]
    np.testing.assert_allclose(lon[:3], [-0.09375, -0.03125, 0.03125])


def test_downscale_wrong_units_is_exit_2(
    rhine_nc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with xr.open_dataset(rhine_nc) as src:
        ds = src.load()
    ds["tcw"].attrs["units"] = "K"
    bad = tmp_path / "kelvin.nc"
    ds.to_netcdf(bad)
    out = tmp_path / "out.nc"
    argv = ["downscale", str(bad), str(out), "--factor", "4", "--model", "bicubic"]
    err = _error_line(capsys, argv)
    assert "units" in err and "'K'" in err and "kg m-2" in err
    assert not out.exists()


def test_plot_writes_png(
    rhine_nc: Path, rhine_hr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "maps.png"
    assert main(["plot", str(rhine_nc), str(rhine_hr), "--out", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    _png_is_drawn(png)


def test_downscale_and_plot_a_rotated_pole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from climdown.testing import rotated_pole_field

    # as CORDEX writes it: rlat/rlon, the grid mapping a data variable, no 2-D lat/lon
    lr = rotated_pole_field(12, 12, ntime=2)
    lr = lr.drop_vars(["lat", "lon", "lat_bnds", "lon_bnds"]).reset_coords("rotated_pole")
    lr.to_netcdf(tmp_path / "cordex.nc")
    out, png = tmp_path / "cordex_x2.nc", tmp_path / "cordex.png"
    argv = ["downscale", str(tmp_path / "cordex.nc"), str(out), "--factor", "2"]
    assert main(argv + ["--model", "bicubic", "--constraint", "softmax"]) == 0
    with xr.open_dataset(tmp_path / "cordex.nc") as src, xr.open_dataset(out) as hr:
        assert hr["tcw"].sizes == {"time": 2, "rlat": 24, "rlon": 24}
        assert hr["tcw"].attrs["grid_mapping"] == "rotated_pole" and hr["lat"].shape == (24, 24)
        report = src.climdown.assert_conserves(hr, rtol=1e-6)
        assert float(abs(report["mass_rel_diff"]).max()) < 1e-6
    assert main(["plot", str(tmp_path / "cordex.nc"), str(out), "--out", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    _png_is_drawn(png)


# ---------------------------------------------------------------------------------------
# version
# ---------------------------------------------------------------------------------------
def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"climdown {__version__}"


def test_version_console_script() -> None:
    script = Path(sys.executable).with_name("climdown")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "climdown.cli"]
    proc = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"climdown {__version__}"
