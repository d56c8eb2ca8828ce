"""The install claims in pyproject.toml hold for the installed dependencies.

``requires-python`` must not promise an interpreter that a hard dependency refuses: for each
entry of ``[project] dependencies`` the installed distribution's own ``Requires-Python`` lower
bound (read with ``importlib.metadata``) must not exceed ours. ``zarr>=3.0`` needs Python 3.11,
so ``>=3.10`` is flagged (the contrast below).
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

import climdown

REPO = Path(__file__).resolve().parents[1]

try:  # packaging is a dependency of many (pip, matplotlib, xarray ...); a fallback if absent
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:  # pragma: no cover - exercised only where packaging is missing
    Requirement = SpecifierSet = Version = None

_LOWER_OPS = (">=", "~=", "==", ">")
_SPEC_RE = re.compile(r"^\s*(>=|~=|==|>|<=|<|!=)\s*([0-9][0-9A-Za-z.*+!-]*)\s*$")
_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)")


def _release(text: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: '3.11' -> (3, 11), '2.13.0+cpu' -> (2, 13, 0)."""
    m = re.match(r"\d+(?:\.\d+)*", text.strip())
    if m is None:
        raise ValueError(f"no release number in version {text!r}")
    return tuple(int(p) for p in m.group(0).split("."))


def _pad(v: tuple[int, ...], n: int = 3) -> tuple[int, ...]:
    return v + (0,) * (n - len(v))


def lower_bound_simple(spec: str) -> tuple[int, ...] | None:
    """Greatest lower bound in a specifier string such as '>=3.9, !=3.9.1' (no packaging)."""
    bounds = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = _SPEC_RE.match(part)
        if m is None:
            raise ValueError(f"cannot parse specifier {part!r} in {spec!r}")
        op, ver = m.groups()
        if op in _LOWER_OPS:
            bounds.append(_pad(_release(ver.replace(".*", ""))))
    return max(bounds) if bounds else None


def lower_bound_packaging(spec: str) -> tuple[int, ...] | None:
    """The same with ``packaging.specifiers`` doing the parsing."""
    bounds = [
        _pad(Version(s.version.replace(".*", "")).release)
        for s in SpecifierSet(spec)
        if s.operator in _LOWER_OPS
    ]
    return max(bounds) if bounds else None


lower_bound = lower_bound_simple if SpecifierSet is None else lower_bound_packaging


def split_requirement(req: str) -> tuple[str, str]:
    """'dask[array]>=2024.1' -> ('dask', '>=2024.1')."""
    if Requirement is not None:
        r = Requirement(req)
        return r.name, str(r.specifier)
    m = _REQ_RE.match(req)
    assert m is not None, req
    return m.group(1), m.group(3).strip()


def python_too_low(requires_python: str, deps: dict[str, str]) -> list[str]:
    """Dependencies (name -> their Requires-Python) whose lower bound exceeds ours."""
    ours = lower_bound(requires_python)
    assert ours is not None, f"requires-python {requires_python!r} has no lower bound"
    return sorted(
        f"{name} needs Python {rp}"
        for name, rp in deps.items()
        if rp and (theirs := lower_bound(rp)) is not None and theirs > ours
    )


@pytest.fixture(scope="module")
def project() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def installed(project: dict) -> dict[str, tuple[str, str, str]]:
    """name -> (declared minimum specifier, installed version, installed Requires-Python)."""
    out = {}
    for req in project["dependencies"]:
        name, spec = split_requirement(req)
        meta = md.metadata(name)  # a missing hard dependency fails here, plainly
        out[name] = (spec, meta["Version"], meta.get("Requires-Python") or "")
    return out


def test_every_hard_dependency_is_installed_at_its_declared_minimum(installed) -> None:
    assert {"numpy", "xarray", "zarr", "torch"} <= set(installed)
    for name, (spec, version, _) in installed.items():
        minimum = lower_bound(spec)
        assert minimum is not None, f"{name}: no minimum version declared ({spec!r})"
        assert _pad(_release(version)) >= minimum, f"{name} {version} is below {spec}"


def test_requires_python_is_not_below_any_dependency(project, installed) -> None:
    ours = project["requires-python"]
    too_low = python_too_low(ours, {n: rp for n, (_, _, rp) in installed.items()})
    assert not too_low, f"requires-python {ours!r} promises too much: {too_low}"
    # the interpreter running the tests is one the claim admits
    assert _pad(sys.version_info[:3]) >= lower_bound(ours)


def test_zarr_3_is_what_sets_the_floor(installed) -> None:
    # the declared zarr minimum is 3.x, and zarr 3 (3.0.0 onward) requires Python >= 3.11
    spec, _, rp = installed["zarr"]
    assert lower_bound(spec)[0] >= 3
    assert lower_bound(rp) >= (3, 11, 0)


def test_contrast_310_is_flagged_against_zarr() -> None:
    assert python_too_low(">=3.10", {"zarr": ">=3.11", "tqdm": ">=3.7"}) == [
        "zarr needs Python >=3.11"
    ]
    assert python_too_low(">=3.11", {"zarr": ">=3.11", "tqdm": ">=3.7"}) == []
    assert python_too_low(">=3.11", {"numpy": ">=3.11.2"}) == ["numpy needs Python >=3.11.2"]
    assert python_too_low(">=3.12", {"zarr": ">=3.11", "old": ""}) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (">=3.11", (3, 11, 0)),
        (">=3.9, !=3.9.1, <4", (3, 9, 0)),
        ("~=3.10", (3, 10, 0)),
        (">=3.8,>=3.10.2", (3, 10, 2)),
        ("<4", None),
        ("==3.11.*", (3, 11, 0)),
    ],
)
def test_lower_bound_parsers(spec: str, expected) -> None:
    assert lower_bound_simple(spec) == expected
    if SpecifierSet is not None:
        assert lower_bound_packaging(spec) == expected


def test_both_parsers_agree_on_the_installed_metadata(installed) -> None:
    if SpecifierSet is None:
        pytest.skip("packaging is not installed; only the simple parser is in use")
    for name, (spec, _, rp) in installed.items():
        assert lower_bound_simple(spec) == lower_bound_packaging(spec), name
        assert lower_bound_simple(rp) == lower_bound_packaging(rp), (name, rp)
    for req in ["dask[array]>=2024.1", "netCDF4>=1.6", "pyyaml>=6.0"]:
        name, spec = split_requirement(req)
        m = _REQ_RE.match(req)
        assert (m.group(1), m.group(3).strip()) == (name, spec)


def test_py_typed_is_shipped() -> None:
    src = Path(climdown.__file__).resolve().parent
    assert (src / "py.typed").is_file()
    with open(REPO / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["climdown"]
    assert "py.typed" in data
