"""The package type-checks clean with mypy (issue 14): what a user's editor relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy(tmp_path: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="needs the source checkout")
def test_mypy_reports_no_errors_in_the_package(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    done = _mypy(tmp_path)  # [tool.mypy] in pyproject.toml: files = src/climdown
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout
    # contrast: the same checker on a file with a type error fails
    bad = tmp_path / "bad.py"
    bad.write_text("from climdown.grid import Grid\n\nx: int = Grid.from_xarray\n")
    wrong = _mypy(tmp_path, str(bad))
    assert wrong.returncode == 1 and "Incompatible types" in wrong.stdout
