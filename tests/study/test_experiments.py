"""``climdown experiments`` end to end: the study's table (--quick), resume, real-ERA5 rows, errors."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from climdown._machine import machine_info
from climdown.cli import main
from climdown.errors import ConfigError, RecipeError
from climdown.study import recipes_dir
from climdown.study.experiments import NOTES_MARKER, load_experiments, run_experiments
from climdown.study.runner import PAGE_MARKER

RECIPES = recipes_dir()
# the default layouts' rows: the study's 14, the CRPS-trained GANs, the same pair on real ERA5
STUDY_IDS = [f"E{i}" for i in range(1, 13)] + ["T1a", "T1b", "E10c", "E12c", "E12cs"]
STUDY_IDS += ["E10-rhine", "E10c-rhine", "E10c4-rhine", "E10c4s-rhine", "E10c0-rhine", "E10a-rhine"]
STUDY_IDS += ["E3h", "E4h"]
REFERENCE_IDS = ["E3r", "E4r", "E6r", "E10r", "T1br"]  # opt-in: --layout reference
EXACT = 1e-5  # the bound on the relative mass violation of hard constraints


def _tables(doc: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``doc`` as a list of rows keyed by the header cells."""
    tables: list[list[dict[str, str]]] = []
    block: list[str] = []
    for line in [*doc.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block]
            tables.append([dict(zip(cells[0], row, strict=True)) for row in cells[2:]])
        block = []
    return tables


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# One row, and a re-run that resumes
# ---------------------------------------------------------------------------------------
@pytest.mark.integration
def test_only_e4_writes_results_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, results = tmp_path / "exp", tmp_path / "docs" / "results.md"
    argv = ["experiments", "--quick", "--out", str(out), "--only", "E4"]
    argv += ["--results", str(results)]
    printed = _run(argv, capsys)
    marker, doc = results.read_text().split("\n", 1)
    assert marker == PAGE_MARKER  # a page the study may replace on its next run
    assert doc.strip() in printed  # the file holds the table the command printed
    # where the rows were made (each row keeps its machine) and where the page was written
    assert f"Page written on: {machine_info()}." in doc and "epoch" in doc
    assert f"- {machine_info()}; device cpu: E4, 2 bicubic bars\n" in doc

    assert "## Real ERA5\n\nNot in this document" in doc  # --only E4 has no real-data rows
    study = _tables(doc)[0]
    ids = [r["id"] for r in study]
    assert ids.count("E4") == 1 and not set(ids) & (set(STUDY_IDS) - {"E4"})
    e4 = next(r for r in study if r["id"] == "E4")
    assert (e4["model"], e4["constraint"]) == ("cnn", "softmax")
    assert e4["neg num"] == "0"
    bicubic = {r["constraint"]: r for r in study if r["model"] == "bicubic"}
    assert set(bicubic) == {"none", "softmax"}  # the bar beside the model

    scores_file = out / "runs" / "E4" / "scores.json"
    scores = json.loads(scores_file.read_text())["scores"]
    assert scores["neg_num"] == 0
    assert 0.0 <= scores["mass_violation_rel"] <= EXACT
    assert float(e4["mass viol. (rel)"]) <= EXACT
    stamp = scores_file.stat().st_mtime_ns

    results.write_text(doc + f"\n{NOTES_MARKER}\n\nHand-written reading of the table.\n")
    t0 = time.perf_counter()
    again = _run(argv, capsys)
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0, f"resume re-trained? took {elapsed:.1f} s"
    assert scores_file.stat().st_mtime_ns == stamp
    e4_again = next(r for r in _tables(again)[0] if r["id"] == "E4")
    assert e4_again == e4
    kept = results.read_text()  # notes below the marker survive the rewrite, once
    assert kept.count("Hand-written reading of the table.") == 1
    assert kept.count("## The study's table") == 1

    # a row from before rows kept their machine is read back, and said to be unrecorded
    saved = json.loads(scores_file.read_text())
    del saved["machine"]
    scores_file.write_text(json.dumps(saved))
    old = _run([*argv, "--finished-only"], capsys)
    assert "- not recorded (rows made before climdown recorded their machine): E4\n" in old
    assert next(r for r in _tables(old)[0] if r["id"] == "E4") == e4


def test_unknown_only_id_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    assert main(["experiments", "--quick", "--out", str(out), "--only", "E4", "E99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("climdown experiments: error:") and len(err.splitlines()) == 1
    assert "E99" in err and "'E4'" not in err
    assert not out.exists()  # nothing was built or trained


def _write_experiments(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("where", ["top", "entry"])
def test_experiments_yaml_unknown_key_is_recipe_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    raw = yaml.safe_load((RECIPES / "experiments.yaml").read_text())
    for e in raw["experiments"]:
        e["recipe"] = str(RECIPES / e["recipe"])
    good = _write_experiments(tmp_path, raw)
    assert [e.id for e in load_experiments(good).experiments] == STUDY_IDS + REFERENCE_IDS
    if where == "top":
        raw["epoch"] = 5  # typo for `epochs`
        key = "epoch"
    else:
        raw["experiments"][3]["constriant"] = "softmax"
        key = "constriant"
    bad = _write_experiments(tmp_path, raw)
    with pytest.raises(RecipeError, match=key):
        load_experiments(bad)
    out = tmp_path / "exp"
    assert main(["experiments", str(bad), "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err
    assert not out.exists()


def test_a_results_path_it_did_not_write_is_refused_before_training(tmp_path: Path) -> None:
    """--results README.md: refused at once, with nothing built or trained and the file kept."""
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    out = tmp_path / "exp"
    with pytest.raises(ConfigError, match="README.md.*not a results page"):
        run_experiments(quick=True, out=out, results=readme, only=["E3"])
    assert readme.read_text() == "# my project\n" and not out.exists()


# ---------------------------------------------------------------------------------------
# The whole table, --quick (the issue: "runs all 14 rows end to end in CI in a few minutes")
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    """``climdown experiments --quick`` of the packaged experiments.yaml: (out, results, seconds)."""
    tmp = tmp_path_factory.mktemp("experiments")
    out, results = tmp / "exp", tmp / "results.md"
    t0 = time.perf_counter()
    assert main(["experiments", "--quick", "--out", str(out), "--results", str(results)]) == 0
    return out, results.read_text(), time.perf_counter() - t0


@pytest.mark.integration
def test_quick_runs_every_study_row(quick_table: tuple[Path, str, float]) -> None:
    out, doc, _ = quick_table
    study = _tables(doc)[0]
    ids = [r["id"] for r in study]
    assert [i for i in ids if i != "baseline"] == STUDY_IDS
    plan = {e.id: e for e in load_experiments().experiments}
    for row in study:
        if row["id"] == "baseline":
            continue
        assert (row["model"], row["constraint"]) == (
            plan[row["id"]].label,
            plan[row["id"]].constraint,
        )
    data = {r["data"] for r in study}
    assert data == {"TCW2-QUICK", "TCW4-QUICK", "TCW8-QUICK", "T1-QUICK", "ERA5-RHINE-X4-QUICK"}
    for d in data:  # bicubic baselines (none and softmax) on every store
        assert {r["constraint"] for r in study if r["data"] == d and r["model"] == "bicubic"} == {
            "none",
            "softmax",
        }
    gans = [r for r in study if r["model"].startswith("gan")]
    assert len(gans) == 14 and all(float(r["CRPS"]) > 0 for r in gans)  # ensembles drawn
    assert all(r["CRPS"] == "–" for r in study if not r["model"].startswith("gan"))
    assert "E3r" in doc.split("## Not run")[1]  # the reference rows are opt-in, and said so
    ensembles = _tables(doc.split("## Ensembles")[1])[0]  # spread/skill of every GAN row
    assert {r["id"] for r in ensembles} == {r["id"] for r in gans}
    assert all(float(r["spread / skill"]) >= 0 for r in ensembles)
    rhine = json.loads((out / "runs" / "E10-rhine" / "scores.json").read_text())
    assert rhine["settings"]["batch_size"] == 16  # the row's own batch


@pytest.mark.integration
def test_quick_softmax_conserves_and_none_does_not(quick_table: tuple[Path, str, float]) -> None:
    out, doc, _ = quick_table
    scores = {
        i: json.loads((out / "runs" / i / "scores.json").read_text())["scores"] for i in STUDY_IDS
    }
    plan = {e.id: e.constraint for e in load_experiments().experiments}
    softmax = [i for i in STUDY_IDS if plan[i] == "softmax"]
    none = [i for i in STUDY_IDS if plan[i] == "none"]
    assert len(softmax) == 16 and len(none) == 7
    for i in softmax:
        assert scores[i]["neg_num"] == 0, i
        assert scores[i]["mass_violation_rel"] <= EXACT, (i, scores[i]["mass_violation_rel"])
    for i in none:  # contrast: the unconstrained models of the same run do not conserve
        assert scores[i]["mass_violation_rel"] > 100 * EXACT, (i, scores[i])
    rows = {r["id"]: r for r in _tables(doc)[0]}
    for i in softmax:  # the written table says the same
        assert rows[i]["neg num"] == "0" and float(rows[i]["mass viol. (rel)"]) <= EXACT


@pytest.mark.integration
def test_quick_real_data_rows(quick_table: tuple[Path, str, float]) -> None:
    _, doc, _ = quick_table
    assert "## Real ERA5" in doc
    real = _tables(doc.split("## Real ERA5")[1])[0]
    assert {r["factor"] for r in real} == {"4x"}  # --quick keeps factor 4
    for name in ("global", "Rhine"):
        rows = [r for r in real if name in r["data"]]
        bicubic = {r["constraint"]: r for r in rows if r["model"] == "bicubic"}
        assert set(bicubic) == {"none", "softmax"}, name
        assert bicubic["none"]["vs bicubic"] == "+0.0%"
        assert float(bicubic["none"]["RMSE area-wt (kg m-2)"]) > 0
        assert any(r["model"].startswith("cnn") for r in rows), name
        for r in rows:
            if r["constraint"] == "softmax":
                assert r["neg num"] == "0" and float(r["mass viol. (rel)"]) <= EXACT, r
        assert float(bicubic["none"]["mass viol. (rel)"]) > 100 * EXACT  # contrast


@pytest.fixture(scope="module")
def quick_rerun(
    quick_table: tuple[Path, str, float],
) -> tuple[dict[Path, int], dict[Path, int], str, float]:
    """The same command again: (scores.json mtimes before, after, results, seconds)."""
    out, _, _ = quick_table
    files = sorted(out.glob("**/scores.json"))
    before = {f: f.stat().st_mtime_ns for f in files}
    results = out / "again.md"
    t0 = time.perf_counter()
    assert main(["experiments", "--quick", "--out", str(out), "--results", str(results)]) == 0
    elapsed = time.perf_counter() - t0
    after = {f: f.stat().st_mtime_ns for f in files}
    return before, after, results.read_text(), elapsed


@pytest.mark.integration
def test_quick_rerun_reuses_study_rows(
    quick_table: tuple[Path, str, float],
    quick_rerun: tuple[dict[Path, int], dict[Path, int], str, float],
) -> None:
    out, doc, _ = quick_table
    before, after, again, _ = quick_rerun
    study = [f for f in before if (out / "runs") in f.parents]
    assert len(study) == len(STUDY_IDS) + 10  # the rows + bicubic none/softmax on 5 stores
    assert {f: after[f] for f in study} == {f: before[f] for f in study}
    assert _tables(again)[0] == _tables(doc)[0]


@pytest.mark.integration
def test_quick_rerun_reuses_real_data_rows(
    quick_table: tuple[Path, str, float],
    quick_rerun: tuple[dict[Path, int], dict[Path, int], str, float],
) -> None:
    out, _, seconds = quick_table
    before, after, _, elapsed = quick_rerun
    real = [f for f in before if (out / "real") in f.parents]
    assert len(real) >= 4
    assert {f: after[f] for f in real} == {f: before[f] for f in real}
    assert elapsed < max(5.0, seconds / 10), f"re-run took {elapsed:.1f} s of {seconds:.1f} s"


# ---------------------------------------------------------------------------------------
# Layouts, training options, seeds and --finished-only (one tiny row each)
# ---------------------------------------------------------------------------------------
def _tiny_plan(tmp_path: Path, rows: list[dict], **top: object) -> Path:
    """An experiments file of ``rows`` on the packaged tiny recipe."""
    return _write_experiments(
        tmp_path, {"batch_size": 16, "members": 3, **top, "experiments": rows}
    )


def test_layout_row_trains_the_reference_layout_and_is_opt_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from climdown.checkpoint import load_checkpoint

    config = _tiny_plan(
        tmp_path,
        [
            {"id": "F", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
            {
                "id": "R",
                "recipe": "tiny",
                "model": "cnn",
                "constraint": "softmax",
                "layout": "reference",
            },
        ],
    )
    out = tmp_path / "exp"
    base = ["experiments", str(config), "--quick", "--out", str(out)]
    doc = _run([*base, "--layout", "reference"], capsys)
    assert not (out / "runs" / "F").exists()  # contrast: the default row did not run
    row = json.loads((out / "runs" / "R" / "scores.json").read_text())
    assert row["settings"]["options"] == {"layout": "reference"}
    model, _ = load_checkpoint(row["checkpoint"])
    assert model.config["options"]["layout"] == "reference"
    study = _tables(doc)[0]
    assert [r["model"] for r in study if r["id"] == "R"] == ["cnn (reference)"]
    assert "| F | cnn | softmax | 0 of 1 | not selected" in doc  # listed as not run
    _run([*base], capsys)  # the default layout runs the other row, with the fast layout
    fast = json.loads((out / "runs" / "F" / "scores.json").read_text())
    assert fast["settings"]["options"] == {}


def test_seeds_and_finished_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _tiny_plan(
        tmp_path,
        [
            {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
            {"id": "B", "recipe": "tiny", "model": "cnn", "constraint": "none"},
        ],
        seeds=2,
    )
    out = tmp_path / "exp"
    base = ["experiments", str(config), "--quick", "--seeds", "2", "--out", str(out)]
    _run([*base, "--only", "A"], capsys)
    a0, a1 = (json.loads((out / "runs" / d / "scores.json").read_text()) for d in ("A", "A-seed1"))
    assert (a0["settings"].get("seed", 0), a1["settings"]["seed"]) == (0, 1)
    assert a0["scores"]["RMSE"] != a1["scores"]["RMSE"]  # another seed, another model
    doc = _run([*base, "--finished-only"], capsys)
    assert not (out / "runs" / "B").exists()  # nothing was trained
    seeds = {r["id"]: r for r in _tables(doc)[1]}
    assert set(seeds) == {"A"} and seeds["A"]["seeds"] == "2"
    assert "±" in seeds["A"]["RMSE"]
    assert "| B | cnn | none | 0 of 2 | not started: seeds 0, 1 |" in doc
    assert "--finished-only" in doc.splitlines()[2]  # the command that made the file


def test_the_page_outlives_its_out_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ledger beside the page brings the finished rows into a new out folder: the page is
    rewritten, and the table finished, without retraining what was done."""
    import shutil

    config = _tiny_plan(
        tmp_path,
        [
            {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
            {"id": "B", "recipe": "tiny", "model": "cnn", "constraint": "none"},
        ],
    )
    page = tmp_path / "docs" / "results.md"
    base = ["experiments", str(config), "--quick", "--results", str(page)]
    first = _run([*base, "--out", str(tmp_path / "old"), "--only", "A"], capsys)
    assert (tmp_path / "docs" / "results.rows.json").is_file()
    shutil.rmtree(tmp_path / "old")  # the machine is gone
    new = tmp_path / "new"
    again = _run([*base, "--out", str(new), "--finished-only"], capsys)
    assert not (new / "runs" / "A" / "last.pt").exists()  # read back, not retrained
    rows = {r["id"]: r for r in _tables(again)[0]}
    assert rows["A"] == {r["id"]: r for r in _tables(first)[0]}["A"]
    # the bicubic bars come back too, though the store they were scored on is gone

    def bars(doc: str) -> list[dict[str, str]]:
        return [r for r in _tables(doc)[0] if r["id"] == "baseline"]

    assert not (new / "stores").exists()
    assert len(bars(first)) == 2 and bars(again) == bars(first)
    assert "| B | cnn | none | 0 of 1 |" in again
    _run([*base, "--out", str(new)], capsys)  # finishing the table trains only B
    assert (new / "runs" / "B" / "last.pt").is_file() and not (
        new / "runs" / "A" / "last.pt"
    ).exists()
    kept = json.loads((tmp_path / "docs" / "results.rows.json").read_text())
    assert sorted(
        e["run"] for e in kept["climdown_study_rows"] if "/A" in e["run"] or "/B" in e["run"]
    ) == ["runs/A", "runs/B"]


def test_a_finished_row_is_in_the_ledger_before_the_command_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine is lost while row B trains: row A, finished before, is in the ledger."""
    import functools

    from climdown.study import runner

    real = runner.train_and_score

    @functools.wraps(real)
    def lost_at_b(store, model, constraint, run, **kw):  # type: ignore[no-untyped-def]
        if Path(run).name == "B":
            raise KeyboardInterrupt  # the command is killed here
        return real(store, model, constraint, run, **kw)

    monkeypatch.setattr(runner, "train_and_score", lost_at_b)
    config = _tiny_plan(
        tmp_path,
        [
            {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
            {"id": "B", "recipe": "tiny", "model": "cnn", "constraint": "none"},
        ],
    )
    page = tmp_path / "docs" / "results.md"
    with pytest.raises(KeyboardInterrupt):
        run_experiments(config, quick=True, out=tmp_path / "exp", results=page, progress=False)
    assert not page.exists()  # the page is written at the end
    kept = json.loads((tmp_path / "docs" / "results.rows.json").read_text())
    assert [e["run"] for e in kept["climdown_study_rows"]] == ["runs/A"]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"layout": "sideways"}, "layout"),
        ({"training": {"los": "crps"}}, "los"),
        ({"training": {"loss": "crps"}}, "needs a model that samples"),
        ({"seeds": 0}, "seeds"),
        ({"batch_size": -4}, "batch_size"),
    ],
)
def test_bad_row_options_are_recipe_errors(tmp_path: Path, row: dict, match: str) -> None:
    good = {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"}
    assert load_experiments(_tiny_plan(tmp_path, [good])).experiments[0].layout == "default"
    with pytest.raises(RecipeError, match=match):
        load_experiments(_tiny_plan(tmp_path, [{**good, **row}]))


def test_findings_verdicts_account_for_seed_spread() -> None:
    from climdown.study.findings import load_report, settle

    report = load_report()
    assert {c.id for c in report.claims} >= {"C1", "C2", "C9"}
    assert report.table["T1a"]["RMSE"] == 21.28

    def rows(*rmse: float, neg: int = 0, ssim: float = 0.9) -> list[dict]:
        return [{"RMSE": r, "neg_num": neg, "SSIM": ssim} for r in rmse]

    verdicts = {
        c["id"]: c["verdict"]
        for c in settle(
            report,
            {
                "E1": rows(1.0, 1.1, 1.2),  # C1 claims E1 < E2: every seed says the opposite
                "E2": rows(0.5, 0.6, 0.55),
                "E3": rows(2.0, 2.1, 1.9),  # C3 claims E4 < E3: every seed agrees
                "E4": rows(0.7, 0.8, 0.75),
                "E5": rows(1.0, 1.2),  # C4: the ranges overlap
                "E6": rows(1.1, 0.9),
                "E8": rows(1.0),  # C5: one seed
                "E10": rows(0.5),
                "T1a": rows(3.0, 3.1, ssim=0.8),  # C9: no collapse
                "T1b": rows(1.0, 1.1),
            },
        )
    }
    assert verdicts["C1"] == "refuted" and verdicts["C3"] == "confirmed"
    assert verdicts["C4"].startswith("inconclusive") and verdicts["C5"].startswith("inconclusive")
    assert verdicts["C2"] == "refuted"  # E2 has no negatives in any seed
    assert verdicts["C9"] == "refuted" and verdicts["C6"] == "not run"
    collapsed = settle(report, {"T1a": rows(20.0, 21.0, ssim=0.2), "T1b": rows(1.0, 1.0)})
    assert [c["verdict"] for c in collapsed if c["id"] == "C9"] == ["confirmed"]


def test_time_steps_times_the_rows_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _tiny_plan(
        tmp_path,
        [
            {"id": "A", "recipe": "tiny", "model": "cnn", "constraint": "softmax"},
            {
                "id": "B",
                "recipe": "tiny",
                "model": "gan",
                "constraint": "softmax",
                "training": {"loss": "crps"},
            },
            {"id": "C", "recipe": "tiny", "model": "cnn", "constraint": "none"},
        ],
    )
    out = tmp_path / "exp"
    base = ["experiments", str(config), "--quick", "--out", str(out)]
    doc = _run([*base, "--only", "A"], capsys)
    assert (
        "| B | gan (loss crps) | softmax | 0 of 1 | not selected (--only) | not measured |" in doc
    )
    # times the chosen rows not run (B), not a finished one (A) nor one --only left out (C),
    # building the store they need where --finished-only finds none
    shutil.rmtree(out / "stores")
    doc = _run([*base, "--only", "A", "B", "--finished-only", "--time-steps", "1"], capsys)
    log = json.loads((out / "timing" / "B" / "metrics.jsonl").read_text())
    assert log["step"] == 1  # one step of B, not its epochs
    assert not (out / "runs" / "B").exists()
    assert not (out / "timing" / "A").exists() and not (out / "timing" / "C").exists()
    line = next(ln for ln in doc.splitlines() if ln.startswith("| B |"))
    assert "(timed steps)" in line and "h for the missing seeds at 1 epochs" in line
    assert "| C | cnn | none | 0 of 1 | not selected (--only) | not measured |" in doc
    # a second seed of A lacks, but A's epochs were measured when seed 0 trained: no timing
    doc = _run(
        [*base, "--only", "A", "--seeds", "2", "--finished-only", "--time-steps", "1"], capsys
    )
    assert not (out / "timing" / "A").exists()
    line = next(ln for ln in doc.splitlines() if ln.startswith("| A | cnn | softmax | 1 of 2 |"))
    assert "(whole epochs)" in line


@pytest.mark.parametrize("steps", ["0", "-2"])
def test_time_steps_must_be_positive_before_anything_is_trained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: str
) -> None:
    out = tmp_path / "exp"
    assert main(["experiments", "--quick", "--out", str(out), "--time-steps", steps]) == 2
    err = capsys.readouterr().err
    assert "time_steps must be a positive integer" in err and "--time-steps 4" in err
    assert not out.exists()  # refused before a store was built or a row trained


def test_timed_epoch_counts_the_first_step_once(tmp_path: Path, monkeypatch) -> None:
    """A timing run's first step carries the set-up: with it timed apart, an epoch is that step
    once plus the later steps' time for every other step (not every step at the mean)."""
    import climdown.checkpoint
    import climdown.data.store
    from climdown.study.experiments import _timed_epoch

    run = tmp_path / "timing" / "X"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"")
    monkeypatch.setattr(climdown.checkpoint, "read_meta", lambda p: {"store": "s"})
    monkeypatch.setattr(climdown.data.store, "store_info", lambda s: {"samples": {"train": 100}})
    rec = {"epoch": 1, "step": 3, "train_time_s": 14.0, "time_s": 16.0}
    (run / "metrics.jsonl").write_text(json.dumps({**rec, "first_step_s": 10.0}) + "\n")
    # batch 10: 10 steps = the first (10 s) + 9 x (14 - 10) / 2 s + 2 s of validation
    assert _timed_epoch(tmp_path, "X", 10) == pytest.approx(10.0 + 9 * 2.0 + 2.0)
    # a log without the first step apart (older runs, or one step): every step at the mean
    (run / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    assert _timed_epoch(tmp_path, "X", 10) == pytest.approx(14.0 / 3 * 10 + 2.0)
