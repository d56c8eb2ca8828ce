"""Every ```python block of README.md and docs/*.md runs as written.

Blocks run page by page, in order, in one namespace per page (a later block may use names an
earlier one defined), in a fresh temporary working directory, with matplotlib's Agg backend and
this suite's ``filterwarnings = error``: a snippet that warns fails. ```bash and plain ```
blocks are not run.

A block that cannot run here is marked in the Markdown on the line just before its fence::

    <!-- doc-test: skip (needs network: the ARCO-ERA5 zarr on Google Cloud) -->

The reason in parentheses is required and says what is missing: ``needs ...`` (network, a
GPU, torchrun, a cluster) or ``slow: ...`` (few of those: make the snippet cheap instead). A
page with python blocks must run at least one of them, unless every skip reason names network,
GPU, torchrun or a cluster (the things a test machine cannot have).
"""

from __future__ import annotations

import re
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: skip reasons that excuse a page from running any block: what no test machine has
UNAVAILABLE = ("network", "gpu", "torchrun", "cluster")
#: at most this many blocks in all the pages may be skipped for being slow
MAX_SLOW = 3

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^\s*<!--\s*doc-test:(?P<body>.*?)-->\s*$")
SKIP = re.compile(r"^skip\s*\((?P<reason>.*\S.*)\)$")


class DocTestError(Exception):
    """A malformed doc-test marker, or a failing block (names the page and line)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its code, and a skip reason."""

    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None


def extract(text: str, name: str = "<page>") -> list[Block]:
    """The fenced blocks of a Markdown text, with their doc-test markers.

    Raises
    ------
    DocTestError
        For a marker that is not ``skip (reason)``, a skip without a reason, a marker not
        followed on the next line by a python fence, or a fence never closed.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # (line, reason) of a marker awaiting its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        if marker:
            body = marker["body"].strip()
            skip = SKIP.match(body)
            if not skip:
                raise DocTestError(
                    f"{name}:{i + 1}: doc-test marker {body!r}: expected 'skip (reason)', "
                    "e.g. <!-- doc-test: skip (needs network: ...) -->"
                )
            pending = (i + 1, skip["reason"].strip())
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            lang = fence["info"].lower()
            if pending is not None and (pending[0] != i or lang not in ("python", "py")):
                raise DocTestError(
                    f"{name}:{pending[0]}: a doc-test marker must be on the line just before "
                    "a ```python fence"
                )
            close = re.compile(rf"^{re.escape(fence['fence'][0])}{{{len(fence['fence'])},}}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
            if end is None:
                raise DocTestError(f"{name}:{i + 1}: the fence opened here is never closed")
            code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(i + 1, lang, code, pending[1] if pending else None))
            pending = None
            i = end + 1
            continue
        if pending is not None and line.strip():
            raise DocTestError(
                f"{name}:{pending[0]}: a doc-test marker must be on the line just before "
                "a ```python fence"
            )
        i += 1
    if pending is not None:
        raise DocTestError(f"{name}:{pending[0]}: a doc-test marker with no block after it")
    return blocks


def python_blocks(text: str, name: str = "<page>") -> list[Block]:
    return [b for b in extract(text, name) if b.lang in ("python", "py")]


def run_page(text: str, name: str = "<page>") -> tuple[int, list[Block]]:
    """Run a page's python blocks in one namespace; return (blocks run, blocks skipped)."""
    blocks = python_blocks(text, name)
    namespace: dict[str, object] = {"__name__": "__main__"}
    ran, skipped = 0, []
    for block in blocks:
        if block.skip is not None:
            skipped.append(block)
            continue
        # pad so that tracebacks give the page's own line numbers
        source = "\n" * block.line + block.code
        start = time.perf_counter()
        try:
            exec(compile(source, f"{name}:{block.line}", "exec"), namespace)
        except Exception as exc:
            tb = "".join(traceback.format_exception(exc, chain=False)[-6:])
            raise DocTestError(
                f"{name}: the ```python block at line {block.line} failed:\n"
                f"{textwrap.indent(block.code, '    ')}\n{tb}"
            ) from exc
        ran += 1
        print(f"{name}:{block.line}: ran in {time.perf_counter() - start:.1f} s")
    if blocks and not ran:
        excused = all(any(w in str(b.skip).lower() for w in UNAVAILABLE) for b in skipped)
        if not excused:
            raise DocTestError(
                f"{name}: every ```python block is skipped; run at least one, or say in each "
                f"reason what this machine lacks ({', '.join(UNAVAILABLE)})"
            )
    return ran, skipped


@pytest.fixture
def docs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh working directory and matplotlib's Agg backend; figures closed afterwards."""
    import matplotlib

    monkeypatch.setenv("MPLBACKEND", "Agg")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_snippets_run(page: Path, docs_env: Path) -> None:
    name = page.relative_to(ROOT).as_posix()
    ran, skipped = run_page(page.read_text(), name)
    for block in skipped:
        print(f"{name}:{block.line}: skipped ({block.skip})")
    print(f"{name}: {ran} blocks run, {len(skipped)} skipped")


def test_skips_say_what_is_missing_and_few_are_slow() -> None:
    skips = [
        (page.relative_to(ROOT).as_posix(), block)
        for page in PAGES
        for block in python_blocks(page.read_text(), page.name)
        if block.skip is not None
    ]
    vague = [
        f"{n}:{b.line}: {b.skip!r}" for n, b in skips if not re.match(r"needs |slow: ", b.skip)
    ]
    assert not vague, "skip reasons must start 'needs ...' or 'slow: ...':\n" + "\n".join(vague)
    slow = [f"{n}:{b.line}" for n, b in skips if b.skip.startswith("slow")]
    assert len(slow) <= MAX_SLOW, f"{len(slow)} blocks skipped as slow ({slow}): make them cheap"


# --- the extractor itself: it must be able to fail -------------------------------------------

GOOD = """\
# A page

```python
x = 1
```

```bash
exit 1
```

<!-- doc-test: skip (needs network: a bucket) -->
```python
raise SystemExit("never run")
```

~~~python
y = x + 1  # names carry over from earlier blocks
assert y == 2
~~~
"""


def test_extract_finds_blocks_languages_and_skips() -> None:
    blocks = extract(GOOD)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (3, "python", None),
        (7, "bash", None),
        (12, "python", "needs network: a bucket"),
        (16, "python", None),
    ]
    assert blocks[0].code == "x = 1\n"
    ran, skipped = run_page(GOOD)
    assert ran == 2 and [b.line for b in skipped] == [12]


def test_a_failing_block_fails_and_names_its_line() -> None:
    page = "text\n\n```python\nx = 1\n```\n\n```python\nundefined_name\n```\n"
    with pytest.raises(DocTestError, match=r"line 7 failed") as info:
        run_page(page, "page.md")
    assert "NameError" in str(info.value) and "undefined_name" in str(info.value)


def test_a_warning_is_an_error() -> None:
    page = "```python\nimport warnings\nwarnings.warn('careful', UserWarning)\n```\n"
    with pytest.raises(DocTestError, match="careful"):
        run_page(page)


@pytest.mark.parametrize(
    "marker",
    [
        "<!-- doc-test: skip -->",
        "<!-- doc-test: skip () -->",
        "<!-- doc-test: skip (  ) -->",
        "<!-- doc-test: ignore (because) -->",
    ],
    ids=["no-reason", "empty", "blank", "not-skip"],
)
def test_a_skip_needs_a_reason(marker: str) -> None:
    with pytest.raises(DocTestError, match="expected 'skip \\(reason\\)'"):
        extract(f"{marker}\n```python\nx = 1\n```\n")


@pytest.mark.parametrize(
    "page",
    [
        "<!-- doc-test: skip (slow: x) -->\n\n```python\nx = 1\n```\n",
        "<!-- doc-test: skip (slow: x) -->\n```bash\nls\n```\n",
        "<!-- doc-test: skip (slow: x) -->\n",
        "```python\nx = 1\n",
    ],
    ids=["not-the-line-before", "not-python", "nothing-after", "never-closed"],
)
def test_misplaced_markers_and_open_fences_are_errors(page: str) -> None:
    with pytest.raises(DocTestError):
        extract(page)


def test_a_page_that_skips_everything_must_say_why() -> None:
    slow = "<!-- doc-test: skip (slow: trains for an hour) -->\n```python\nx = 1\n```\n"
    with pytest.raises(DocTestError, match="every ```python block is skipped"):
        run_page(slow)
    offline = "<!-- doc-test: skip (needs network: a bucket) -->\n```python\nx = 1\n```\n"
    assert run_page(offline) == (0, python_blocks(offline))
