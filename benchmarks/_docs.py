"""Write one benchmark's section of ``docs/benchmarks.md``, between its start and end markers.

Each ``bench_*.py`` owns the text from ``<!-- name:start -->`` to ``<!-- name:end -->``; a run
replaces that span (or appends it the first time) and keeps every other section and the
hand-written notes outside the markers.
"""

from __future__ import annotations

from pathlib import Path


def write_section(text: str, start: str, end: str, path: Path) -> None:
    """Put ``text`` (which begins with ``start`` and ends with ``end``) into ``path``."""
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + text.rstrip("\n") + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(doc)
