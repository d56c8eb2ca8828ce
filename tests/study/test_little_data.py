"""``python -m climdown.study.little_data``: what it refuses to replace, before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from climdown.errors import ConfigError
from climdown.study import little_data


def _no_training(*args: object, **kwargs: object) -> list:
    pytest.fail("trained before refusing")


def test_a_json_beside_the_page_that_is_not_ours_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(little_data, "little_data", _no_training)
    page, theirs = tmp_path / "t.md", tmp_path / "t.json"
    theirs.write_text('{"my": "numbers"}')
    with pytest.raises(ConfigError, match="t.json.*not a little-data table climdown wrote"):
        little_data.main(["--out", str(page)])
    assert theirs.read_text() == '{"my": "numbers"}' and not page.exists()


def test_the_json_beside_the_page_is_replaced_when_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"augment": False, "seed": 0, "picked_area": 3.1}]
    monkeypatch.setattr(little_data, "little_data", lambda *a, **k: rows)
    monkeypatch.setattr(little_data, "format_rows", lambda r: "| a |\n|---|\n| 1 |")
    page = tmp_path / "t.md"
    for _ in range(2):  # the second run replaces what the first wrote
        little_data.main(["--out", str(page)])
        doc = json.loads((tmp_path / "t.json").read_text())
        assert doc == {little_data.ROWS_KEY: rows}
