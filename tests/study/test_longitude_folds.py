"""Cross-validation of the global regime by longitude sector: the folds tile the globe, and
each fold trains, chooses and holds out disjoint sectors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from climdown.data.recipe import load_recipe
from climdown.errors import ConfigError
from climdown.study.longitude_folds import (
    FOLDS,
    SECTOR,
    fold_recipe,
    format_folds,
    longitude_folds,
    main,
)
from climdown.study.runner import PAGE_MARKER


def _cells(region: dict, step: float = 1.5) -> set[int]:
    """The 1.5-degree longitude cells (index mod 240) whose centres a box holds."""
    west, east = region["lon_min"], region["lon_max"]
    return {round(c / step) % 240 for c in [west + i * step for i in range(1000)] if c <= east}


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_the_folds_tile_the_globe_and_keep_their_splits_apart(tmp_path: Path, factor: int) -> None:
    tests = []
    for k in range(FOLDS):
        raw = fold_recipe(factor, k, tmp_path)
        load_recipe(raw)  # a valid recipe (boundaries on the factor's patch grid)
        cells = {s: _cells(v["region"]) for s, v in raw["splits"].items()}
        assert len(cells["test"]) == len(cells["val"]) == SECTOR / 1.5
        assert len(cells["train"]) == 3 * SECTOR / 1.5
        assert not (cells["train"] & cells["val"] or cells["train"] & cells["test"])
        assert not cells["val"] & cells["test"]
        assert len(cells["train"] | cells["val"] | cells["test"]) == 240  # all of the globe
        assert raw["output"] == str(tmp_path / f"era5-global-x{factor}-fold{k}.zarr")
        tests.append(cells["test"])
    assert set().union(*tests) == set(range(240)) and sum(map(len, tests)) == 240
    with pytest.raises(ValueError, match="fold 5"):
        fold_recipe(4, FOLDS, tmp_path)


def test_format_pools_the_folds() -> None:
    """The pooled row is the root of the mean squared fold RMSE, and 'vs' compares with it."""
    row = {
        "test_lon": {"lon_min": 0.0, "lon_max": 71.9},
        "val_lon": {"lon_min": 288.0, "lon_max": 359.9},
        "seeds": [2.0, 2.2],
        "uses": "cnn",
    }
    base = {"bicubic+none": 4.0, "bicubic+softmax": 3.5, "pycnophylactic+none": 3.0}
    rows = [
        {**row, "fold": 0, "baselines": base, "used": 2.0},
        {**row, "fold": 1, "baselines": {k: 2 * v for k, v in base.items()}, "used": 4.0},
    ]
    lines = format_folds(rows).splitlines()
    assert lines[2].split(" | ")[1:4] == ["0-72E", "288-360E", "4.0000"]
    pooled = lines[-1].split(" | ")
    assert pooled[3] == f"{math.sqrt((16 + 64) / 2):.4f}"
    assert pooled[-2] == "-50.0%"  # the used model halves bicubic's pooled RMSE


@pytest.mark.integration
def test_one_fold_trains_chooses_on_validation_and_writes_a_page(tmp_path: Path) -> None:
    rows = longitude_folds(tmp_path / "work", factor=8, folds=[1], seeds=[0], epochs=1)
    (row,) = rows
    assert row["fold"] == 1 and row["test_lon"]["lon_min"] == SECTOR
    assert set(row["baselines"]) == {"bicubic+none", "bicubic+softmax", "pycnophylactic+none"}
    assert len(row["seeds"]) == 1 and all(v > 0 for v in row["seeds"])
    if row["uses"] == "cnn":
        assert row["why"] is None and row["used"] == row["seeds"][0]
    else:  # the fallback: the better conserving baseline on validation, and it says why
        assert row["uses"].endswith("(fallback)") and "validation" in row["why"]
        assert row["used"] in row["baselines"].values()
    # the command line reads the cached runs back and writes the page
    out = tmp_path / "folds.md"
    main(["--work", str(tmp_path / "work"), "--factor", "8", "--folds", "1", "--seeds", "0",
          "--epochs", "1", "--out", str(out)])  # fmt: skip
    text = out.read_text()
    assert text.startswith(PAGE_MARKER) and "| 1 | 72-144E | 0-72E |" in text
    readme = tmp_path / "README.md"
    readme.write_text("mine\n")
    with pytest.raises(ConfigError, match="not a results page"):
        main(["--work", str(tmp_path / "work"), "--folds", "1", "--out", str(readme)])
    assert readme.read_text() == "mine\n"
