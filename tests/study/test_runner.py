"""The study's row runner and Markdown writer: a row is made once per settings, tables are plain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from climdown.data.recipe import load_recipe
from climdown.data.store import build_store
from climdown.errors import ConfigError
from climdown.evaluate import markdown_table
from climdown.study import read_recipe
from climdown.study.runner import (
    LEDGER_KEY,
    NOTES_MARKER,
    PAGE_MARKER,
    cached_row,
    check_ledger,
    check_replaceable,
    ledger_path,
    restore_ledger,
    run_row,
    save_ledger,
    write_markdown,
)


def test_markdown_table() -> None:
    table = markdown_table(("a", "b"), [(1, "x"), ("2", 3.5)])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | 3.5 |"]
    with pytest.raises(ValueError, match="3 cells for 2 headers"):
        markdown_table(("a", "b"), [(1, 2, 3)])


def test_write_markdown_keeps_the_notes(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "r.md"
    write_markdown(path, "# T\n\n| a |\n")
    assert path.read_text() == f"{PAGE_MARKER}\n# T\n\n| a |\n"
    write_markdown(path, "# T\n\n| c |\n")  # a page it wrote, without notes: replaced
    assert path.read_text() == f"{PAGE_MARKER}\n# T\n\n| c |\n"
    path.write_text(path.read_text() + f"\n{NOTES_MARKER}\n\nmy reading\n")
    write_markdown(path, "# T\n\n| b |\n")
    text = path.read_text()
    assert "| b |" in text and "| a |" not in text  # the generated part is replaced ...
    assert text.count("my reading") == 1 and text.count(NOTES_MARKER) == 1  # ... the notes kept
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.md"]  # no temporary left


def test_write_markdown_refuses_what_it_did_not_write(tmp_path: Path) -> None:
    """A README, a folder or a link at the results path is refused and left as it was."""
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    folder = tmp_path / "results.md"
    folder.mkdir()
    page = tmp_path / "page.md"
    write_markdown(page, "# T\n")
    link = tmp_path / "link.md"
    link.symlink_to(page)
    for p in (readme, folder, link):
        with pytest.raises(ConfigError, match="not a results page climdown wrote.*another path"):
            write_markdown(p, "# T\n\n| a |\n")
        with pytest.raises(ConfigError, match=p.name):
            check_replaceable(p)
    assert readme.read_text() == "# my project\n" and folder.is_dir() and link.is_symlink()
    assert page.read_text() == f"{PAGE_MARKER}\n# T\n"
    # a page written before the page marker existed (notes marker only) is still ours
    old = tmp_path / "old.md"
    old.write_text(f"# T\n\n{NOTES_MARKER}\n\nnotes\n")
    assert check_replaceable(old) == old


def test_cached_row_computes_once_per_settings(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"scores": {"RMSE": float(len(calls))}}

    first = cached_row(tmp_path / "run", {"epochs": 2, "options": {"w": 8}}, compute)
    again = cached_row(tmp_path / "run", {"epochs": 2, "options": {"w": 8}}, compute)
    assert len(calls) == 1 and again == first
    assert json.loads((tmp_path / "run" / "scores.json").read_text()) == first
    other = cached_row(tmp_path / "run", {"epochs": 3, "options": {"w": 8}}, compute)
    assert len(calls) == 2 and other["scores"]["RMSE"] == 2.0  # contrast: new settings, new row
    assert other["settings"] == {"epochs": 3, "options": {"w": 8}}


def _row(out: Path, run: str, epochs: int, rmse: float) -> dict:
    """A finished row in ``out/run`` as :func:`cached_row` leaves it, with an epoch log."""
    settings = {"store": str(out / "stores" / "s.zarr"), "epochs": epochs}
    row = cached_row(out / run, settings, lambda: {"scores": {"RMSE": rmse}, "checkpoint": ""})
    (out / run / "metrics.jsonl").write_text('{"time_s": 3.0}\n{"time_s": 5.0}\n')
    return row


def test_the_ledger_keeps_rows_after_the_out_folder_is_gone(tmp_path: Path) -> None:
    """The rows of a page survive their out folder: restored into a new one, paths moved."""
    old, new = tmp_path / "old", tmp_path / "new"
    ledger = ledger_path(tmp_path / "docs" / "results.md")
    assert ledger == tmp_path / "docs" / "results.rows.json"
    _row(old, "runs/A", 2, 0.5)
    _row(old, "runs/A-seed1", 2, 0.6)
    save_ledger(old, ledger)
    kept = json.loads(ledger.read_text())[LEDGER_KEY]
    assert [e["run"] for e in kept] == ["runs/A", "runs/A-seed1"]
    assert kept[0]["row"]["settings"]["store"] == "$OUT/stores/s.zarr"  # not old's path
    assert kept[0]["row"]["epoch_s"] == 4.0  # the measured epoch time travels with the row
    assert restore_ledger(new, ledger) == 2
    back = json.loads((new / "runs" / "A" / "scores.json").read_text())
    assert back["settings"]["store"] == str(new / "stores" / "s.zarr")
    # so the cache in the new folder reads the row back instead of computing it again
    settings = {"store": str(new / "stores" / "s.zarr"), "epochs": 2}
    again = cached_row(new / "runs" / "A", settings, lambda: pytest.fail("retrained"))
    assert again["scores"]["RMSE"] == 0.5
    assert restore_ledger(new, ledger) == 0  # never replaces what is there
    # stores and stores being built are not searched for rows (nor walked: they are large)
    for store in ("stores/s.zarr/train", "stores/.t.zarr.partial/train"):
        (old / store).mkdir(parents=True)
        (old / store / "scores.json").write_text("{}")
    save_ledger(old, ledger)
    assert [e["run"] for e in json.loads(ledger.read_text())[LEDGER_KEY]] == [
        "runs/A",
        "runs/A-seed1",
    ]


def test_the_ledger_never_drops_a_row(tmp_path: Path) -> None:
    """A row with other settings in the same run folder is kept beside the old one, and a
    second out folder's rows are merged in, not put in place of the first's."""
    a, b = tmp_path / "a", tmp_path / "b"
    ledger = tmp_path / "results.rows.json"
    _row(a, "runs/A", 2, 0.5)
    save_ledger(a, ledger)
    _row(b, "runs/A", 3, 0.4)  # the same row id, trained longer elsewhere
    _row(b, "runs/B", 3, 0.7)
    save_ledger(b, ledger)
    kept = json.loads(ledger.read_text())[LEDGER_KEY]
    got = sorted((e["run"], e["row"]["settings"]["epochs"]) for e in kept)
    assert got == [("runs/A", 2), ("runs/A", 3), ("runs/B", 3)]
    save_ledger(b, ledger)  # saving again changes nothing
    assert json.loads(ledger.read_text())[LEDGER_KEY] == kept


def test_a_ledger_path_holding_something_else_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "results.rows.json"
    for content in ('{"rows": []}', "not json", "[1, 2]"):
        theirs.write_text(content)
        for call in (check_ledger, lambda p: save_ledger(tmp_path, p)):
            with pytest.raises(ConfigError, match="not a ledger of study rows.*Move it away"):
                call(theirs)
        assert theirs.read_text() == content  # left as it was
    theirs.unlink()
    theirs.mkdir()
    with pytest.raises(ConfigError, match="results.rows.json"):
        restore_ledger(tmp_path / "out", theirs)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(
        load_recipe(read_recipe("tiny", stores=tmp_path_factory.mktemp("s"))), progress=False
    )


def test_run_row_trains_scores_and_resumes(tiny_store: Path, tmp_path: Path) -> None:
    head = {"id": "X", "model": "cnn", "constraint": "softmax"}
    kw = {"epochs": 1, "batch_size": 8, "quick": True, "progress": False, "device": "cpu"}
    row = run_row(tmp_path / "cnn", head, tiny_store, "cnn", "softmax", **kw)
    assert row["id"] == "X" and row["best_epoch"] == 1 and Path(row["checkpoint"]).is_file()
    assert row["scores"]["neg_num"] == 0 and row["scores"]["mass_violation_rel"] <= 1e-5
    assert row["settings"]["options"] == {} and row["settings"]["quick"] is True
    stamp = (tmp_path / "cnn" / "scores.json").stat().st_mtime_ns
    assert run_row(tmp_path / "cnn", head, tiny_store, "cnn", "softmax", **kw) == row
    assert (tmp_path / "cnn" / "scores.json").stat().st_mtime_ns == stamp
    # no epochs: no checkpoint to score, refused before training (was a TypeError after it)
    with pytest.raises(ConfigError, match="epochs must be a positive integer, got 0"):
        run_row(tmp_path / "none", head, tiny_store, "cnn", "softmax", **{**kw, "epochs": 0})
    assert not (tmp_path / "none").exists()


def test_baseline_rows_ignore_training_settings(tiny_store: Path, tmp_path: Path) -> None:
    head = {"id": "b", "model": "bicubic", "constraint": "none"}
    row = run_row(tmp_path / "b", head, tiny_store, "bicubic", "none", epochs=1, device="cpu")
    assert "checkpoint" not in row and not list((tmp_path / "b").glob("*.pt"))
    assert row["scores"]["mass_violation_rel"] > 1e-3  # plain bicubic does not conserve
    same = run_row(tmp_path / "b", head, tiny_store, "bicubic", "none", epochs=20, device="cpu")
    assert same == row  # nothing to train: read back whatever the epochs
    cnn = {"epochs": 1, "quick": True, "progress": False, "device": "cpu"}
    a = run_row(tmp_path / "c", head, tiny_store, "cnn", "none", **cnn)["settings"]
    assert a["epochs"] == 1 and "epochs" not in row["settings"]  # contrast: a model with weights


def test_a_store_without_test_scores_on_val_only(tmp_path: Path) -> None:
    """A final fit's store (train and val, no test): its row has validation scores only, and
    asking it for test scores fails before any training, naming the fix."""
    raw = read_recipe("tiny", stores=tmp_path)
    del raw["splits"]["test"]
    store = build_store(load_recipe(raw), progress=False)
    head = {"id": "F", "model": "cnn", "constraint": "softmax"}
    kw = {"epochs": 1, "batch_size": 8, "quick": True, "progress": False, "device": "cpu"}
    with pytest.raises(ConfigError, match="no test split.*val=True"):
        run_row(tmp_path / "no", head, store, "cnn", "softmax", **kw)
    assert not (tmp_path / "no").exists() or not list((tmp_path / "no").glob("*.pt"))
    row = run_row(tmp_path / "fit", head, store, "cnn", "softmax", val=True, **kw)
    assert "scores" not in row and row["val_scores"]["neg_num"] == 0
    assert Path(row["checkpoint"]).is_file()
