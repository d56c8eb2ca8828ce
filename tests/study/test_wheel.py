"""The installed wheel runs the study: no source checkout, no ``recipes/`` beside the code.

Builds a wheel of the repository, installs it into a fresh virtual environment outside the
repository (``--system-site-packages``: torch, xarray and the rest come from this environment,
nothing is downloaded), and runs ``climdown experiments --quick`` (a row of every packaged
recipe, and the real-data rows) and ``climdown demo --quick`` from a folder outside the
repository with that environment's ``climdown`` script. The recipes and ``experiments.yaml``
must come from the wheel's package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import climdown

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SRC = Path(climdown.__file__).resolve().parent


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # no PYTHONPATH: the venv must find climdown in its own site-packages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (outside the repository) with the repository's wheel installed; its bin/."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert REPO not in tmp.parents
    # build from a copy of what a wheel is made of, so the build leaves nothing in the checkout
    # (and no stale build/lib of another build can slip into the wheel)
    tree = tmp / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", tree / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    wheels = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(tree)],
        cwd=tmp,
        timeout=300,
    )
    (wheel,) = wheels.glob("climdown-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for recipe in ("experiments", "tcw4", "tiny", "era5-rhine-x4", "era5-global-x4"):
        assert f"climdown/study/recipes/{recipe}.yaml" in names, recipe
    assert "climdown/pretrained/index.json" in names
    assert "climdown/py.typed" in names
    assert not any(n.startswith("climdown/pretrained/build") for n in names)

    env_dir = tmp / "venv"
    # the base interpreter's pip serves the venv through the system site-packages
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall"]
        + ["--no-index", str(wheel)],
        cwd=tmp,
        timeout=300,
    )
    return bin_dir


def test_the_wheel_is_what_runs(venv_bin: Path, tmp_path: Path) -> None:
    probe = (
        "import json, climdown, climdown.study as s; "
        "print(json.dumps([climdown.__file__, str(s.recipes_dir()), s.packaged_recipes()]))"
    )
    out = _run([str(venv_bin / "python"), "-c", probe], cwd=tmp_path, timeout=120).stdout
    module, recipes, names = json.loads(out.strip().splitlines()[-1])
    venv_root = venv_bin.parent.resolve()
    assert venv_root in Path(module).resolve().parents, module
    assert SRC not in Path(module).resolve().parents  # not the checkout
    assert venv_root in Path(recipes).resolve().parents, recipes
    assert {"experiments", "tcw2", "tcw4", "tcw8", "t1", "tiny"} <= set(names)
    # contrast: this interpreter's climdown is the checkout's (editable), not the wheel's
    assert venv_root not in SRC.parents


def test_wheel_runs_the_quick_experiments_and_the_demo(venv_bin: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    assert REPO not in cwd.parents
    climdown_bin = str(venv_bin / "climdown")

    # one row per packaged recipe and the real-data rows: every recipe and experiments.yaml come
    # from the wheel's package data (every row runs from source in test_experiments.py)
    exp = tmp_path / "exp"
    ids = ["E1", "E4", "E12", "T1b", "E10c4-rhine"]
    printed = _run(
        [climdown_bin, "experiments", "--quick", "--out", str(exp), "--only", *ids, "real"],
        cwd=cwd,
        timeout=900,
    ).stdout
    results = (exp / "results.md").read_text().split("\n", 1)[1]  # below the page marker
    assert results.strip() in printed
    for row in ("| E1 |", "| E12 |", "| T1b |", "| E10c4-rhine |", "## Real ERA5"):
        assert row in results, row
    from climdown.study.experiments import load_experiments

    plan = load_experiments()
    rows = [e for e in plan.experiments if e.id in ids]
    assert {e.recipe.stem for e in rows} == {"tcw2", "tcw4", "tcw8", "t1", "era5-rhine-x4"}
    baselines = {(e.recipe.stem, c) for e in rows for c in ("none", "softmax")}
    assert len(list((exp / "runs").glob("*/scores.json"))) == len(rows) + len(baselines)
    assert list((exp / "real" / "runs").glob("*/scores.json"))

    demo = tmp_path / "demo"
    printed = _run(
        [climdown_bin, "demo", "--quick", "--out", str(demo)], cwd=cwd, timeout=600
    ).stdout
    for name in ("compare.png", "spectrum.png", "downscaled.nc"):
        assert (demo / name).is_file(), name
        assert str(demo / name) in printed
    assert "[5/5]" in printed
    assert not list(cwd.iterdir())  # every output went where --out said
