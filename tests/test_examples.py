"""The runnable scripts in examples/ run with --quick and write what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, out: Path, *args: str) -> str:
    """Run ``examples/<name>`` with ``--quick --out out``; return its stdout."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000, f"{path} is suspiciously small (blank?)"


def test_downscale_era5_file(tmp_path: Path) -> None:
    import xarray as xr

    out = run_example("downscale_era5_file.py", tmp_path)
    assert_png(tmp_path / "downscaled.png")
    assert_png(tmp_path / "check.png")
    with xr.open_dataset(tmp_path / "tcw_x4.nc") as hr:
        assert dict(hr["tcw"].sizes) == {"time": 2, "latitude": 160, "longitude": 160}
        assert "downscaled 4x" in hr["tcw"].attrs["history"]
    # the mass budget is printed and conserving; the lazy path computes nothing until asked
    worst = float(re.search(r"largest relative mass difference over 2 steps: (\S+)", out)[1])
    assert worst < 1e-5
    assert "tasks run while building it: 0" in out
    assert int(re.search(r"tasks run by \.compute\(\): (\d+)", out)[1]) > 0
    assert float(re.search(r"max \|difference\| (\S+) kg m-2", out)[1]) < 1e-4


def test_downscale_era5_file_other_path_and_baseline(tmp_path: Path) -> None:
    """A path argument and --model: the global sample (1.5 deg) with bicubic."""
    from climdown.data.sources import sample_path

    out = run_example(
        "downscale_era5_file.py", tmp_path, str(sample_path("global")), "--model", "bicubic"
    )
    assert "model: bicubic (from --model)" in out
    assert "tcwv" in out and (tmp_path / "tcwv_x4.nc").is_file()


def test_build_store_and_train(tmp_path: Path) -> None:
    out = run_example("build_store_and_train.py", tmp_path)
    assert (tmp_path / "stores" / "tiny.zarr").is_dir()
    assert (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "eval" / "metrics.md").is_file()
    assert_png(tmp_path / "curves.png")
    assert "| bicubic |" in out and "| best.pt |" in out


def test_compare_constraints_map(tmp_path: Path) -> None:
    out = run_example("compare_constraints_map.py", tmp_path)
    assert_png(tmp_path / "constraint_errors.png")
    assert_png(tmp_path / "compare_softmax.png")
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("none", "softmax", "add", "mult") and len(parts) == 7:
            rows[parts[0]] = [float(v) for v in parts[1:]]
    assert set(rows) == {"none", "softmax", "add", "mult"}
    for name in ("softmax", "add", "mult"):
        assert abs(rows[name][2]) < 1e-6, name  # relative mass difference: conserved
    assert abs(rows["none"][2]) > 1e-5  # contrast: bicubic alone does not conserve
    assert rows["softmax"][4] == 0 and rows["mult"][4] == 0  # positive constraints


def test_held_out_sector(tmp_path: Path) -> None:
    """Whole held-out fields: the Rhine default beats bicubic, softmax rows keep no block
    structure the truth lacks beyond the documented range, the table is written."""
    out = run_example("held_out_sector.py", tmp_path)
    table = (tmp_path / "held_out_sector.md").read_text()
    rows = {}
    for line in table.splitlines()[2:]:
        data, factor, model, rmse, _, blk = (c.strip() for c in line.strip("|").split("|"))
        rows[(data.split()[0], factor, model)] = (float(rmse), float(blk))
    assert len(rows) == 8 and "wrote" in out  # 2 fields x (truth + 3 models) at 4x
    rhine = {m: v for (d, _, m), v in rows.items() if d == "Rhine"}
    assert rhine["packaged default + softmax"][0] < 0.9 * rhine["bicubic"][0]
    assert 0.67 <= rhine["packaged default + softmax"][1] <= 1.5
    assert 0.67 <= rhine["truth"][1] <= 1.5  # the truth's own texture is near 1


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_has_docstring_and_help(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    assert text.startswith('"""'), f"{name} needs a module docstring saying what it shows"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--out" in proc.stdout


DOCS = EXAMPLES.parent / "docs"


def test_docs_index_links_every_page_and_images_exist() -> None:
    index = (DOCS / "index.md").read_text()
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in index]
    assert not missing, f"docs/index.md does not link {missing}"
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\((img/[^)]+)\)", page.read_text()):
            img = DOCS / target
            assert img.is_file(), f"{page.name} shows {target}, which does not exist"
            assert img.stat().st_size < 300_000, f"{target} is over 300 KB"


def test_across_spacings(tmp_path: Path) -> None:
    """One model per spacing regime against one trained on pooled spacings: both are trained
    (1 epoch), scored on both held-out sets, and the table is written."""
    out = run_example("across_spacings.py", tmp_path)
    table = (tmp_path / "across_spacings.md").read_text()
    rows = {}
    for line in table.splitlines()[2:]:
        model, patches, _, glob, rhine = (c.strip() for c in line.strip("|").split("|"))
        rows[model] = (patches, float(glob), float(rhine))
    assert "wrote" in out and len(rows) == 5
    own, pooled = (
        rows["cnn + softmax, trained on global"],
        rows["cnn + softmax, trained on global + rhine"],
    )
    assert int(pooled[0]) > int(own[0])  # the Rhine patches were added to the global ones
    for scores in (own, pooled):  # conserving models start from bicubic + softmax's level
        assert scores[1] < rows["bicubic"][1] and scores[2] < rows["bicubic"][2]
