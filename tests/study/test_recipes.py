"""The packaged recipes: found by name or path, valid, and what ``climdown build NAME`` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import climdown
from climdown.cli import main
from climdown.data.recipe import load_recipe
from climdown.data.store import store_info
from climdown.errors import RecipeError
from climdown.study import packaged_recipes, read_recipe, recipe_path, recipes_dir
from climdown.study.experiments import load_experiments
from climdown.study.realdata import real_recipe

STUDY = {"tcw2", "tcw4", "tcw8", "t1", "tiny"}
REAL = {f"era5-{s}-x{f}" for s in ("global", "rhine") for f in (2, 4, 8)}
CLOUD = {"era5-arco-tcw4"}  # ARCO-ERA5 on Google Cloud; built offline in test_arco_recipe.py
FINAL = {f"era5-global-all-x{f}" for f in (2, 4, 8)}  # the global defaults' final fits


def test_recipes_are_package_data() -> None:
    folder = recipes_dir()
    package = Path(climdown.__file__).resolve().parent
    assert folder.resolve() == package / "study" / "recipes"
    assert set(packaged_recipes()) == STUDY | REAL | CLOUD | FINAL | {"experiments", "report"}


@pytest.mark.parametrize("name", sorted(STUDY | REAL | CLOUD))
def test_every_packaged_recipe_is_valid(name: str) -> None:
    r = load_recipe(recipe_path(name))
    assert r.name == name
    assert {s.name for s in r.splits} == {"train", "val", "test"}
    assert r.output == Path.cwd() / "stores" / f"{name}.zarr"  # relative to where you run


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_final_fit_recipes_are_their_twin_with_the_held_out_part_trained(factor: int) -> None:
    """era5-global-all-x<f> is era5-global-x<f> with 276-360E moved from test into train: the
    same validation patches, so the same band chooses both."""
    fit = load_recipe(recipe_path(f"era5-global-all-x{factor}"))
    twin = load_recipe(recipe_path(f"era5-global-x{factor}"))
    assert fit.name == f"era5-global-all-x{factor}"
    assert {s.name for s in fit.splits} == {"train", "val"}
    split = {s.name: s for s in fit.splits}
    twin_split = {s.name: s for s in twin.splits}
    assert split["val"] == twin_split["val"]
    train = split["train"].region
    # one box across the 0 meridian: 276E (-84) to 192E, the twin's train and test together
    assert (train.lon_min, train.lon_max) == (-84.0, 191.9)
    assert (
        twin_split["test"].region.lon_min == 276.0 and twin_split["train"].region.lon_max == 191.9
    )
    for key in ("factor", "patch", "sampling", "normalisation", "source", "variable"):
        assert getattr(fit, key) == getattr(twin, key), key


@pytest.mark.parametrize(
    ("name", "factor"), [(s, f) for s in ("global", "rhine") for f in (2, 4, 8)]
)
def test_real_recipes_follow_their_factor(name: str, factor: int) -> None:
    r = load_recipe(recipe_path(real_recipe(name, factor)))
    assert r.factor == factor and r.sampling.mode == "stride"
    assert r.sampling.stride == max(4, factor)
    assert r.patch_lr > 4  # more than 4 LR cells of context, at 8x too
    assert r.source == f"sample:{name}"


def test_recipe_path_prefers_a_file_then_a_packaged_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert recipe_path("tcw4") == recipes_dir() / "tcw4.yaml"
    assert recipe_path("tcw4.yaml") == recipes_dir() / "tcw4.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tcw4.yaml").write_text("name: mine\n")
    assert recipe_path("tcw4.yaml") == Path("tcw4.yaml")  # a file here wins over the package
    assert recipe_path("tcw4") == recipes_dir() / "tcw4.yaml"
    with pytest.raises(RecipeError, match="tcw4, tcw8") as err:
        recipe_path("tcw5")
    assert "neither a file" in str(err.value)
    with pytest.raises(RecipeError, match="neither a file"):
        recipe_path("recipes/tcw4.yaml")  # a path is never looked up in the package


def test_read_recipe_redirects_the_store(tmp_path: Path) -> None:
    raw = read_recipe("era5-rhine-x4", stores=tmp_path / "s")
    assert raw["output"] == str(tmp_path / "s" / "era5-rhine-x4.zarr")
    assert load_recipe(raw).output == tmp_path / "s" / "era5-rhine-x4.zarr"
    assert read_recipe("era5-rhine-x4")["output"] == "stores/era5-rhine-x4.zarr"  # contrast
    # where the store goes is not part of what it holds: a store built elsewhere is reused
    assert load_recipe(raw).hash == load_recipe(read_recipe("era5-rhine-x4")).hash


def test_build_by_packaged_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["build", "tiny", "--quiet"]) == 0
    store = tmp_path / "stores" / "tiny.zarr"
    assert f"store ready: {store}" in capsys.readouterr().out
    assert store_info(store)["factor"] == 4
    # a local file of that name is built instead of the packaged recipe
    raw = yaml.safe_load(recipe_path("tiny").read_text())
    raw.update(name="local", output="mine.zarr")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(raw))
    assert main(["build", "tiny.yaml", "--quiet"]) == 0
    assert (tmp_path / "mine.zarr").is_dir()


def test_build_unknown_name_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["build", "tcw5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("climdown build: error:") and len(err.splitlines()) == 1
    assert "'tcw5'" in err and "tcw4" in err  # names what exists
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# experiments files
# ---------------------------------------------------------------------------------------
def _experiments(tmp_path: Path, **change: object) -> Path:
    raw = yaml.safe_load(recipe_path("experiments").read_text())
    raw.update(change)
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_packaged_experiments_file() -> None:
    plan = load_experiments()
    assert all(e.recipe.parent == recipes_dir() for e in plan.experiments)
    assert plan.real_data is not None
    assert set(plan.real_data.sets) == {"global", "rhine"} and plan.real_data.factors == (4, 2, 8)
    assert load_experiments("experiments") == plan  # a packaged name works too


def test_experiment_rows_find_packaged_recipes_by_name(tmp_path: Path) -> None:
    # a user's experiments file elsewhere: tcw4.yaml is not beside it, so the packaged one is used
    path = _experiments(tmp_path)
    plan = load_experiments(path)
    # the study's generated sets, and the real Rhine hours of the ensemble rows (E10*-rhine)
    assert {e.recipe for e in plan.experiments} == {
        recipes_dir() / f"{n}.yaml" for n in ("tcw2", "tcw4", "tcw8", "t1", "era5-rhine-x4")
    }
    raw = yaml.safe_load(path.read_text())
    raw["experiments"][0]["recipe"] = "tcw5.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(RecipeError, match="tcw5"):
        load_experiments(path)


@pytest.mark.parametrize(
    ("real_data", "match"),
    [
        ({"sets": {"rhine": "R"}, "factor": [4]}, "real_data.factor"),
        (
            {"sets": {"rhine": "R"}, "models": [{"model": "cnn", "constraint": "none", "skip": 1}]},
            "skip",
        ),
        ({"sets": {"alps": "A"}}, "era5-alps-x4"),  # no recipe for that set
        ({"sets": {"rhine": "R"}, "factors": [3]}, "era5-rhine-x3"),
        ({"sets": {}}, "sets"),
        ({"factors": [4]}, "sets"),
    ],
)
def test_bad_real_data_is_a_recipe_error(tmp_path: Path, real_data: dict, match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        load_experiments(_experiments(tmp_path, real_data=real_data))
    good = _experiments(tmp_path, real_data={"sets": {"rhine": "R"}, "factors": [2, 8]})
    assert load_experiments(good).real_data.factors == (2, 8)  # contrast


def test_results_md_documents_the_packaged_plan() -> None:
    """docs/results.md was written by this plan: its real-data rows are the plan's sets."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "results.md"
    if not docs.is_file():
        pytest.skip("no docs/ beside the tests (installed tests)")
    text = docs.read_text()
    plan = load_experiments()
    for label in plan.real_data.sets.values():
        assert label in text, label
    assert "climdown.realdata" not in text  # the module it once named is gone
