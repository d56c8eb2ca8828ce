"""The packaged-model build writes where it is told, never into the installed package."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest

from climdown.checkpoint import load_checkpoint
from climdown.pretrained import index as packaged_index
from climdown.study.build_pretrained import build_defaults, format_index, main

PACKAGE = Path(str(resources.files("climdown.pretrained")))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_docs_table_is_the_packaged_index() -> None:
    """docs/models.md shows what index.json says, in the build's own table format."""
    if not DOCS.is_file():
        pytest.skip("no docs/ beside the tests (installed tests)")
    table = format_index(packaged_index())
    assert len(table.splitlines()) == 2 + 6
    docs = DOCS.read_text()
    for line in table.splitlines():
        assert line in docs, line


@pytest.mark.integration
def test_build_writes_to_out_and_merges_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_before = _digest(PACKAGE)
    out = tmp_path / "models"
    out.mkdir()
    (out / "index.json").write_text(json.dumps({"2-softmax": packaged_index()["2-softmax"]}))
    index = build_defaults(tmp_path / "work", out=out, epochs=1, factors=(4,))
    assert set(index) == {"2-softmax", "4-softmax", "4-none"}  # the x2 entry is kept
    assert json.loads((out / "index.json").read_text()) == index
    for constraint in ("softmax", "none"):
        entry = index[f"4-{constraint}"]
        assert entry["recipe"] == "era5-rhine-x4" and entry["epochs"] == 1
        model, meta = load_checkpoint(out / entry["file"])
        assert model.factor == 4 and model.config["constraint"] == constraint
    assert index["4-softmax"]["neg_num"] == 0 and index["4-softmax"]["mass_violation_rel"] < 1e-5
    assert (out / "models.md").read_text().strip() == format_index(index)
    assert _digest(PACKAGE) == package_before  # the installed package is untouched

    # the default output is under the work folder, not the package; finished rows are reused
    monkeypatch.chdir(tmp_path)
    main(["--work", "work", "--epochs", "1", "--factors", "4"])
    default = tmp_path / "work" / "models"
    assert {p.name for p in default.iterdir()} == {
        "cnn-x4-softmax.pt",
        "cnn-x4-none.pt",
        "index.json",
        "models.md",
    }
    again = json.loads((default / "index.json").read_text())
    assert again["4-softmax"]["rmse_area_weighted"] == index["4-softmax"]["rmse_area_weighted"]
    assert _digest(PACKAGE) == package_before
