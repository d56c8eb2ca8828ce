"""Scoring: evaluate_model on a split (ensembles), evaluate_checkpoint beside the baselines,
and the one Markdown table writer."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from climdown.data.recipe import load_recipe
from climdown.data.store import build_store
from climdown.errors import ConfigError
from climdown.evaluate import evaluate_checkpoint, format_table, markdown_table
from climdown.nn.models import get_model
from climdown.train import train

RECIPES = Path(str(resources.files("climdown.study") / "recipes"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged tiny.yaml (32 train / 16 val / 16 test synthetic 4x pairs, 16 x 16 HR)."""
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe["output"] = str(tmp_path_factory.mktemp("stores") / "tiny.zarr")
    return build_store(load_recipe(recipe))


def test_evaluate_model_baseline_and_factor_check(store):
    from climdown.evaluate import evaluate_model

    scores = evaluate_model(get_model("bicubic", 4, "softmax"), store, "test", batch_size=8)
    assert scores["n_samples"] == 16 and scores["mass_violation_rel"] < 1e-5
    assert "CRPS" not in scores and scores["RMSE"] > 0
    with pytest.raises(ConfigError, match="factor 2"):
        evaluate_model(get_model("bicubic", 2, "softmax"), store, "val")


def test_evaluate_checkpoint_beside_the_baselines(store, tmp_path):
    summary = train(
        store,
        epochs=1,
        max_steps=1,
        batch_size=8,
        out=tmp_path / "run",
        progress=False,
        model_options={"width": 8, "blocks": 1},
    )
    table = evaluate_checkpoint(summary["best"], store, split="test", out=tmp_path / "eval")
    lines = table.splitlines()
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == ["best.pt", "bicubic", "nearest", "pycnophylactic", "bicubic + softmax"]
    head = [c.strip() for c in lines[0].split("|")[1:-1]]
    rows = {line.split("|")[1].strip(): line.split("|")[1:-1] for line in lines[2:]}
    block = head.index("blockiness")
    assert rows["nearest"][block].strip() == "inf"  # block-constant: no change inside blocks
    assert float(rows["pycnophylactic"][block]) < float(rows["bicubic + softmax"][block])
    assert (tmp_path / "eval" / "metrics.md").read_text() == table + "\n"
    csv = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("name,model,constraint,") and len(csv) == 6
    # contrast: a checkpoint of another factor is refused before any scoring
    with pytest.raises(Exception, match="factor"):
        evaluate_checkpoint(summary["best"], _store_at_factor(store, tmp_path, 2), split="test")


def test_evaluate_checkpoint_warns_on_a_grid_far_from_its_training(store, tmp_path):
    """The packaged Rhine 4x model (trained at 1 deg LR) scored on the tiny store (4 deg LR):
    the same spacing warning as downscale gives; on its own grid, none."""
    from climdown.pretrained import select

    rhine = select(4, "softmax", (1.0, 1.0)).path
    with pytest.warns(UserWarning, match=r"\(4 x 4 deg\) is more than 2x .*\(1 x 1 deg\)"):
        evaluate_checkpoint(rhine, store, split="test")
    summary = train(store, epochs=1, max_steps=1, batch_size=8, out=tmp_path / "run",
                    progress=False, model_options={"width": 8, "blocks": 1})  # fmt: skip
    evaluate_checkpoint(summary["best"], store, split="test")  # filterwarnings=error: none


def _store_at_factor(store: Path, tmp_path: Path, factor: int) -> Path:
    recipe = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    recipe.update(factor=factor, output=str(tmp_path / f"tiny{factor}.zarr"))
    return build_store(load_recipe(recipe))


def test_markdown_table_is_the_one_writer():
    assert markdown_table(("a", "b"), [(1, "x")]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | x |",
    ]
    rows = [
        {
            "id": "E4",
            "data": "TCW4",
            "model": "cnn",
            "constraint": "softmax",
            "scores": {"RMSE": 0.5, "neg_num": 0, "MSE": 0.25},
        }
    ]
    table = format_table(rows).splitlines()
    assert table[0].startswith("| id | data | model | constraint | MSE | RMSE |")
    assert table[2].startswith("| E4 | TCW4 | cnn | softmax | 0.25 | 0.5 |")
    assert "| – |" in table[2]  # a score the row lacks
    with pytest.raises(ValueError, match="3 cells for 2 headers"):
        markdown_table(("a", "b"), [(1, 2, 3)])


def test_gan_checkpoint_csv_has_one_cell_per_score(store, tmp_path):
    summary = train(
        store,
        model="gan",
        epochs=1,
        max_steps=1,
        batch_size=8,
        out=tmp_path / "run",
        progress=False,
        model_options={"width": 8, "blocks": 1},
    )
    evaluate_checkpoint(summary["best"], store, split="test", out=tmp_path / "eval", members=3)
    head, gan, *_ = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    keys = head.split(",")
    cells = dict(zip(keys, gan.split(","), strict=True))  # the rank histogram is one cell
    assert len(cells["rank_histogram"].split()) == 4  # members + 1 ranks
    assert float(cells["spread_skill"]) >= 0 and float(cells["RMSE_ens_mean"]) > 0
