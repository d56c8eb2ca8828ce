"""The packaged-model build writes where it is told, never into the installed package."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest

from climdown.checkpoint import load_checkpoint
from climdown.errors import ConfigError
from climdown.pretrained import index as packaged_index
from climdown.study.build_pretrained import (
    BLOCKINESS_RANGE,
    SEEDS,
    build_defaults,
    choose,
    format_final_fits,
    format_index,
    format_tables,
    main,
)
from climdown.study.runner import PAGE_MARKER

PACKAGE = Path(str(resources.files("climdown.pretrained")))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_docs_table_is_the_packaged_index() -> None:
    """docs/models.md shows what index.json says, in the build's own table format."""
    if not DOCS.is_file():
        pytest.skip("no docs/ beside the tests (installed tests)")
    index = packaged_index()
    table = format_index(index)
    assert len(table.splitlines()) == 2 + len(index) == 2 + 12  # 3 factors x 2 x 2 regimes
    docs = DOCS.read_text()
    for line in table.splitlines():
        assert line in docs, line
    fits = format_final_fits(index)  # the global entries' final fits, a table of their own
    assert len(fits.splitlines()) == 2 + 6  # 3 factors x 2 constraints, global regime
    for line in fits.splitlines():
        assert line in docs, line


def test_packaged_defaults_are_never_knowingly_worse_than_a_baseline() -> None:
    """Every shipped entry: a model that beat the best baseline on validation, or that baseline;
    positive, conserving and not blocky on the held-out data."""
    low, high = BLOCKINESS_RANGE
    for key, e in packaged_index().items():
        if e["constraint"] != "none":  # the conserving defaults, on the held-out data too
            assert e["neg_num"] == 0 and e["mass_violation_rel"] < 1e-5, key
            assert low <= e["blockiness"] <= high, key
        val = {k: b["val_rmse_area_weighted"] for k, b in e["baselines"].items()}
        if e["fallback"] is None:
            assert (PACKAGE / e["file"]).is_file()
            bar = (
                ["bicubic+none"]
                if e["constraint"] == "none"
                else ["pycnophylactic+none", f"bicubic+{e['constraint']}"]
            )
            assert e["val_rmse_area_weighted"] < min(val[k] for k in bar), key
            assert low <= e["val_blockiness"] <= high, key  # the rule decides on validation
        else:
            assert e["why"] and "file" not in e, key
    size = sum(p.stat().st_size for p in PACKAGE.glob("*.pt"))
    assert size < 5e6  # all packaged weights together


def test_choose_falls_back_on_validation_never_on_test() -> None:
    def row(val: float, test: float, blk: float = 1.0, seed: int = 0) -> dict:
        scores = {"RMSE_area_weighted": test, "blockiness": blk, "neg_num": 0}
        return {
            "val_scores": {"RMSE_area_weighted": val, "blockiness": blk},
            "scores": {**scores, "mass_violation_rel": 1e-7},
            "settings": {"seed": seed},
            "checkpoint": f"seed{seed}.pt",
        }

    base = {
        "bicubic+none": row(1.0, 1.0, 0.9),
        "bicubic+softmax": row(0.95, 0.95, 1.6),
        "pycnophylactic+none": row(0.9, 0.9, 1.1),
    }
    seeds = [row(0.85, 2.0, seed=0), row(0.8, 0.99, seed=1)]
    won = choose(seeds, base, "softmax")
    assert won["fallback"] is None and won["seed"] == 1 and won["checkpoint"] == "seed1.pt"
    assert won["model_rmse_area_weighted_seeds"] == [2.0, 0.99]  # test reported, not used
    lost = choose([row(0.92, 0.5)], base, "softmax")  # better on test, worse on val
    assert lost["fallback"] == "pycnophylactic" and "0.92" in lost["why"]
    assert lost["rmse_area_weighted"] == 0.9  # the fallback's held-out score is the entry's
    blocky = choose([row(0.5, 0.5, blk=1.7)], base, "softmax")
    assert blocky["fallback"] == "pycnophylactic" and "blockiness" in blocky["why"]
    plain = choose([row(0.97, 0.97)], base, "none")  # none: bicubic is the bar
    assert plain["fallback"] is None

    # a final fit: its candidate ships or falls back on its own validation scores, against
    # the baselines on its store; the held-out columns stay those of the held-out twin
    def fit(val: float, seed: int) -> dict:
        r = row(val, 0.0, seed=seed)
        del r["scores"]  # a final fit has no test split
        r["checkpoint"] = f"all-seed{seed}.pt"
        return r

    final = choose(seeds, base, "softmax", final=[fit(0.7, 0), fit(0.75, 1)], final_base=base)
    assert final["fallback"] is None and final["checkpoint"] == "all-seed0.pt"
    assert final["seed"] == 0 and final["val_rmse_area_weighted"] == 0.7
    assert final["model_rmse_area_weighted"] == 0.99  # held-out twin's candidate (seed 1)
    assert final["final_fit"]["held_out_seed"] == 1
    assert final["final_fit"]["val_rmse_area_weighted_seeds"] == [0.7, 0.75]
    worse = choose(seeds, base, "softmax", final=[fit(0.93, 0)], final_base=base)
    assert worse["fallback"] == "pycnophylactic" and "0.93" in worse["why"]
    assert worse["rmse_area_weighted"] == 0.9
    with pytest.raises(ConfigError, match="final_base"):
        choose(seeds, base, "softmax", final=[fit(0.7, 0)])


@pytest.mark.integration
def test_build_writes_to_out_and_merges_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package_before = _digest(PACKAGE)
    out = tmp_path / "models"
    out.mkdir()
    kept = {k: v for k, v in packaged_index().items() if k.startswith("2-softmax")}
    (out / "index.json").write_text(json.dumps(kept))
    index = build_defaults(tmp_path / "work", out=out, epochs=1, factors=(4,), regimes=("rhine",))
    assert set(index) == set(kept) | {"4-softmax-rhine", "4-none-rhine"}
    assert json.loads((out / "index.json").read_text()) == index
    for constraint in ("softmax", "none"):
        entry = index[f"4-{constraint}-rhine"]
        assert entry["recipe"] == "era5-rhine-x4" and entry["epochs"] == 1
        assert entry["lr_spacing_deg"] == [1.0, 1.0]  # 0.25 deg x 4
        assert len(entry["model_rmse_area_weighted_seeds"]) == len(SEEDS[constraint])
        if entry["fallback"] is None:
            model, meta = load_checkpoint(out / entry["file"])
            assert model.factor == 4 and model.config["constraint"] == constraint
    assert index["4-softmax-rhine"]["neg_num"] == 0
    assert index["4-softmax-rhine"]["mass_violation_rel"] < 1e-5
    assert (out / "models.md").read_text().strip() == f"{PAGE_MARKER}\n{format_tables(index)}"
    assert _digest(PACKAGE) == package_before  # the installed package is untouched

    # the default output is under the work folder, not the package; finished rows are reused;
    # --constraints rebuilds only those entries
    monkeypatch.chdir(tmp_path)
    main(["--work", "work", "--epochs", "1", "--factors", "4", "--regimes", "rhine",
          "--constraints", "none"])  # fmt: skip
    default = tmp_path / "work" / "models"
    assert {"index.json", "models.md"} <= {p.name for p in default.iterdir()}
    again = json.loads((default / "index.json").read_text())
    assert set(again) == {"4-none-rhine"}
    assert (
        again["4-none-rhine"]["rmse_area_weighted"] == index["4-none-rhine"]["rmse_area_weighted"]
    )
    assert _digest(PACKAGE) == package_before


@pytest.mark.integration
def test_global_entries_ship_their_final_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The global regime trains its held-out twin and its final fit (every longitude but the
    validation band); the checkpoint that ships is the final fit's, the held-out scores the
    twin's, and the index and the table say so."""
    import climdown.study.build_pretrained as bp

    monkeypatch.setitem(bp.SEEDS, "softmax", (0,))  # one seed: the mechanism, not the spread
    out = tmp_path / "models"
    index = build_defaults(tmp_path / "work", out=out, epochs=1, factors=(8,),
                           regimes=("global",), constraints=("softmax",))  # fmt: skip
    entry = index["8-softmax-global"]
    fit = entry["final_fit"]
    # the entry's training data is what ships; the held-out twin is named beside
    assert entry["recipe"] == "era5-global-all-x8" and entry["lr_spacing_deg"][1] == 12.0
    assert "276-360E and 0-192E" in entry["training_data"]
    assert fit["held_out_recipe"] == "era5-global-x8" and "held-out twin" in entry["test"]
    twin = json.loads((tmp_path / "work" / "x8-global-softmax-seed0" / "scores.json").read_text())
    final = json.loads(
        (tmp_path / "work" / "x8-global-all-softmax-seed0" / "scores.json").read_text()
    )
    assert "scores" not in final  # the final fit has no held-out part of its own
    assert entry["model_rmse_area_weighted"] == twin["scores"]["RMSE_area_weighted"]
    assert entry["val_rmse_area_weighted"] == final["val_scores"]["RMSE_area_weighted"]
    assert final["settings"]["store"].endswith("era5-global-all-x8.zarr")
    table = (out / "models.md").read_text()
    assert format_final_fits(index) in table and "| 8x | softmax | global |" in table
    if entry["fallback"] is None:
        shipped = (out / entry["file"]).read_bytes()
        assert shipped == Path(final["checkpoint"]).read_bytes()
        assert "| cnn (final fit) |" in table


@pytest.mark.parametrize(
    ("option", "value"), [("constraints", ("clip",)), ("regimes", ("europe",))]
)
def test_build_names_an_unknown_regime_or_constraint(tmp_path: Path, option, value) -> None:
    with pytest.raises(ConfigError, match=f"unknown {option} .*choose from"):
        build_defaults(tmp_path / "work", **{option: value})
    assert not (tmp_path / "work").exists()  # refused before anything is written


@pytest.mark.slow
def test_rebuilding_reproduces_the_shipped_scores_within_one_percent(tmp_path: Path) -> None:
    """The 4x global entries rebuilt from scratch (same seeds): held-out scores within 1%."""
    shipped = packaged_index()
    index = build_defaults(tmp_path / "work", out=tmp_path / "models", factors=(4,),
                           regimes=("global",))  # fmt: skip
    for key in ("4-softmax-global", "4-none-global"):
        a, b = index[key], shipped[key]
        assert a["fallback"] == b["fallback"], key
        for name in ("rmse_area_weighted", "model_rmse_area_weighted_mean"):
            assert a[name] == pytest.approx(b[name], rel=0.01), (key, name)
