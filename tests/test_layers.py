"""The import-layer contract: the data flow reads off the tree, and nothing imports upward.

Every ``climdown`` module belongs to one layer; a module may import (at module level or lazily
inside a function) only from lower layers, or from its own layer inside its own package (e.g.
``climdown.nn.models.gan`` -> ``climdown.nn.constraints``). The graph has no cycles, the
package root is imported by no submodule, the library never imports the study (only the CLI,
the entry point, may run it), ``climdown.nn`` never imports xarray, and
``import climdown.errors`` loads neither xarray nor torch.

The graph is read off the source with :mod:`ast` (every ``import``/``from ... import``,
including lazy ones), so the contract holds for code paths a test never runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import climdown

SRC = Path(climdown.__file__).resolve().parent

#: Bottom to top. A module's layer is that of its longest matching prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("climdown._version", "climdown.errors"),
    ("climdown.validate", "climdown._machine", "climdown.sphere", "climdown.locks"),
    ("climdown.units", "climdown.grid"),
    ("climdown.tiling", "climdown.metrics", "climdown.cluster", "climdown.ddp"),
    ("climdown.data", "climdown.nn", "climdown.testing"),
    ("climdown.checkpoint", "climdown.pretrained"),
    ("climdown.evaluate", "climdown.inference", "climdown.conservation"),
    ("climdown.train", "climdown.fileio"),
    ("climdown.plot",),
    ("climdown.report",),
    ("climdown.accessor",),
    ("climdown.study",),
    ("climdown.cli",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph() -> dict[str, set[str]]:
    """module -> the climdown modules it imports (submodules named by ``from x import y`` too)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node, path.name == "__init__.py")
                # `from climdown import plot` imports the module climdown.plot; `from
                # climdown.grid import Grid` imports climdown.grid
                subs = [f"{target}.{a.name}" for a in node.names]
                names = [n if n in files else target for n in subs]
            else:
                continue
            for name in names:
                if name == "climdown" or name.startswith("climdown."):
                    # the longest prefix that is a module of ours
                    while name not in files and "." in name:
                        name = name.rsplit(".", 1)[0]
                    if name in files and name != module:
                        deps.add(name)
        graph[module] = deps
    return graph


def _layer(module: str) -> int:
    best, layer = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), i
    if layer is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return layer


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


GRAPH = _graph()


def test_every_module_has_a_layer() -> None:
    for module in GRAPH:
        if module != "climdown":
            _layer(module)


def test_nothing_imports_upward() -> None:
    bad = []
    for module, deps in GRAPH.items():
        if module == "climdown":
            continue
        for dep in deps:
            if dep == "climdown":
                bad.append(f"{module} imports the package root (import from the module itself)")
                continue
            lo, hi = _layer(dep), _layer(module)
            if lo > hi or (lo == hi and _package(dep) != _package(module)):
                bad.append(f"{module} (layer {hi}) imports {dep} (layer {lo})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_library_never_imports_the_study() -> None:
    bad = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if d.startswith("climdown.study")
        and not m.startswith("climdown.study")
        and m != "climdown.cli"
    ]
    assert not bad, "\n".join(bad)


def test_nn_never_imports_xarray() -> None:
    bad = []
    for path in (SRC / "nn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "xarray"]
    assert not bad, bad


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        ("import climdown.errors", {"xarray", "torch", "dask", "pandas", "matplotlib"}),
        ("import climdown", {"xarray", "torch", "matplotlib", "cartopy"}),
        ("import climdown.grid, climdown.units, climdown.tiling", {"xarray", "torch"}),
        ("import climdown.nn.models, climdown.nn.constraints", {"xarray", "matplotlib"}),
        ("import climdown.data.dataset", {"matplotlib", "cartopy"}),
        # registering the accessor (on import xarray) loads no model code
        ("import climdown, xarray", {"torch", "matplotlib", "cartopy"}),
    ],
)
def test_light_imports(statement: str, absent: set[str]) -> None:
    loaded = _loaded_after(statement)
    assert not (absent & loaded), f"{statement} loads {sorted(absent & loaded)}"


def test_contrast_the_probe_sees_heavy_imports() -> None:
    """The probe above is not vacuous: importing the accessor does load xarray."""
    assert "xarray" in _loaded_after("import climdown.accessor")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("climdown", "xarray"),
        ("xarray", "climdown"),
        # a module that imports xarray while it is half-initialised, then the accessor
        ("climdown.inference", "climdown.conservation"),
        ("climdown.conservation", "climdown.accessor"),
    ],
)
def test_import_climdown_registers_the_accessor(first: str, second: str) -> None:
    code = (
        f"import {first}\nimport {second}\nimport numpy as np\nimport xarray as xr\n"
        "da = xr.DataArray(np.ones((2, 2)), dims=('lat', 'lon'))\n"
        "print(type(da.climdown).__name__, type(da.to_dataset(name='x').climdown).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ClimdownDataArrayAccessor", "ClimdownDatasetAccessor"]


def _print_calls(source: str) -> list[int]:
    """Line numbers of ``print(...)`` calls in a module's source."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]


def test_library_modules_report_through_logging_not_print() -> None:
    """Only the command line and the study (its runs are commands) print; the library logs to
    ``logging.getLogger("climdown")`` and the caller decides what to show."""
    offenders = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "cli.py" and "study" not in path.relative_to(SRC).parts
        for lines in [_print_calls(path.read_text())]
        if lines
    }
    assert offenders == {}
    assert _print_calls("import sys\nprint('x', file=sys.stderr)\n") == [2]  # contrast
