"""Every CLI failure is one line on stderr and exit code 2, in the CLI's own words.

Each row sets up one failure the way a user meets it (a file, a recipe, a checkpoint) and
runs ``climdown`` in-process. A traceback, a second line, or a Python keyword such as
``overwrite=True`` in the message fails the row.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from climdown.checkpoint import save_checkpoint
from climdown.cli import main
from climdown.data.sources import open_sample
from climdown.nn.models import get_model
from climdown.study import recipes_dir

PYTHON_KEYWORD = re.compile(r"(?<![\w.])[a-z_]+=(True|False|'[^']*')")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A coarse netCDF, its 4x downscaling, a text file, a small checkpoint and a tiny recipe."""
    tmp = tmp_path_factory.mktemp("cli-errors")
    lr = tmp / "lr.nc"
    crop = open_sample("rhine").isel(
        time=slice(0, 2), latitude=slice(0, 16), longitude=slice(0, 16)
    )
    crop.load().to_netcdf(lr)
    hr = tmp / "hr.nc"
    assert main(["downscale", str(lr), str(hr), "--factor", "4", "--model", "bicubic"]) == 0
    text = tmp / "notes.nc"
    text.write_text("not a dataset\n")
    ckpt = tmp / "small.pt"
    model = get_model("cnn", factor=4, constraint="softmax", width=4, blocks=1, scale=50.0)
    save_checkpoint(ckpt, model, meta={"variable": "tcw", "units": "kg m-2"})
    raw = yaml.safe_load((recipes_dir() / "tiny.yaml").read_text())
    raw["output"] = str(tmp / "tiny.zarr")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    store = tmp / "tiny.zarr"
    assert main(["build", str(recipe), "--quiet"]) == 0
    return {"lr": lr, "hr": hr, "text": text, "ckpt": ckpt, "recipe": recipe, "store": store}


def _checkpoint(files: dict[str, Path], tmp: Path, change: Callable[[dict], object]) -> str:
    """The small checkpoint with its metadata changed (``change`` returns the new metadata)."""
    payload = torch.load(files["ckpt"], weights_only=True)
    meta = json.loads(payload["meta_json"])
    payload["meta_json"] = json.dumps(change(meta))
    path = tmp / "changed.pt"
    torch.save(payload, path)
    return str(path)


def _meta_factor(meta: dict) -> dict:
    meta["factor"] = "four"
    meta["model"]["factor"] = "four"
    return meta


def _meta_width(meta: dict) -> dict:
    meta["model"]["options"]["width"] = 1_000_000
    return meta


def _recipe(files: dict[str, Path], tmp: Path, text: str | None = None, **changes) -> str:
    raw = yaml.safe_load(files["recipe"].read_text())
    raw["output"] = str(tmp / "out.zarr")
    raw.update(changes)
    if "name" in changes and "output" not in changes:
        raw.pop("output")
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False) + (text or ""))
    return str(path)


def _under_file(files: dict[str, Path], tmp: Path) -> str:
    return str(files["text"] / "out.nc")


def _read_only_folder(tmp: Path) -> Path:
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
ON_LINUX = sys.platform.startswith("linux") and os.path.isdir("/sys/kernel")

# (id, argv maker (files, tmp) -> argv, words the message must hold[, mark])
CASES = [
    (
        "plot --time not in the file",
        lambda f, t: [
            "plot",
            str(f["lr"]),
            str(f["hr"]),
            "--time",
            "1999-01-01",
            "--out",
            str(t / "x.png"),
        ],
        ["1999-01-01", "2020-01-01"],
    ),
    (
        "plot --time not a time",
        lambda f, t: [
            "plot",
            str(f["lr"]),
            str(f["hr"]),
            "--time",
            "noon",
            "--out",
            str(t / "x.png"),
        ],
        ["noon"],
    ),
    (
        "plot a file that is not a dataset",
        lambda f, t: ["plot", str(f["text"]), str(f["hr"]), "--out", str(t / "x.png")],
        ["notes.nc", "as a dataset"],
    ),
    (
        "plot --out under a file",
        lambda f, t: ["plot", str(f["lr"]), str(f["hr"]), "--out", str(f["text"] / "x.png")],
        ["notes.nc"],
    ),
    (
        "downscale to .",
        lambda f, t: ["downscale", str(f["lr"]), ".", "--factor", "4", "--model", "bicubic"],
        ["'.'", "folder"],
    ),
    (
        "downscale to . with --overwrite",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            ".",
            "--factor",
            "4",
            "--model",
            "bicubic",
            "--overwrite",
        ],
        ["'.'", "--overwrite"],
    ),
    (
        "downscale to an existing output without --overwrite",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            str(f["hr"]),
            "--factor",
            "4",
            "--model",
            "bicubic",
        ],
        ["hr.nc", "--overwrite"],
    ),
    (
        "downscale under a file",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            _under_file(f, t),
            "--factor",
            "4",
            "--model",
            "bicubic",
        ],
        ["notes.nc", "is a file"],
    ),
    (
        "downscale into a read-only system folder",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            "/sys/climdown-out.nc",
            "--factor",
            "4",
            "--model",
            "bicubic",
        ],
        ["/sys/climdown-out.nc"],
        pytest.mark.skipif(not ON_LINUX, reason="/sys is Linux's"),
    ),
    (
        "downscale into a read-only folder",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            str(_read_only_folder(t) / "x.nc"),
            "--factor",
            "4",
        ],
        ["read-only"],
        pytest.mark.skipif(ROOT, reason="root writes into read-only folders"),
    ),
    (
        "downscale a file that is not a dataset",
        lambda f, t: [
            "downscale",
            str(f["text"]),
            str(t / "o.nc"),
            "--factor",
            "4",
            "--model",
            "bicubic",
        ],
        ["notes.nc", "as a dataset"],
    ),
    (
        "downscale with a checkpoint whose metadata is a list",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            str(t / "o.nc"),
            "--factor",
            "4",
            "--constraint",
            "softmax",
            "--model",
            _checkpoint(f, t, lambda m: [m]),
        ],
        ["changed.pt", "metadata"],
    ),
    (
        "downscale with a checkpoint of factor 'four'",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            str(t / "o.nc"),
            "--factor",
            "4",
            "--constraint",
            "softmax",
            "--model",
            _checkpoint(f, t, _meta_factor),
        ],
        ["changed.pt", "four"],
    ),
    (
        "downscale with a checkpoint of width 1e6",
        lambda f, t: [
            "downscale",
            str(f["lr"]),
            str(t / "o.nc"),
            "--factor",
            "4",
            "--constraint",
            "softmax",
            "--model",
            _checkpoint(f, t, _meta_width),
        ],
        ["changed.pt", "width", "4096"],
    ),
    (
        "train --lr -1",
        lambda f, t: ["train", "--store", str(f["store"]), "--lr", "-1", "--out", str(t / "r")],
        ["lr", "-1"],
    ),
    (
        "train --lr nan",
        lambda f, t: ["train", "--store", str(f["store"]), "--lr", "nan", "--out", str(t / "r")],
        ["lr", "nan"],
    ),
    (
        "train --option width=1000000",
        lambda f, t: [
            "train",
            "--store",
            str(f["store"]),
            "--option",
            "width=1000000",
            "--out",
            str(t / "r"),
        ],
        ["width", "1000000", "4096"],
    ),
    (
        "train --option blocks=100000",
        lambda f, t: [
            "train",
            "--store",
            str(f["store"]),
            "--option",
            "blocks=100000",
            "--out",
            str(t / "r"),
        ],
        ["blocks", "100000"],
    ),
    (
        "train --out under a file",
        lambda f, t: [
            "train",
            "--store",
            str(f["store"]),
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--option",
            "width=4",
            "--out",
            _under_file(f, t),
            "--quiet",
        ],
        ["notes.nc"],
    ),
    (
        "evaluate --out under a file",
        lambda f, t: [
            "evaluate",
            "--checkpoint",
            str(f["ckpt"]),
            "--store",
            str(f["store"]),
            "--out",
            _under_file(f, t),
        ],
        ["notes.nc"],
    ),
    (
        "build a recipe whose source is not a dataset",
        lambda f, t: ["build", _recipe(f, t, source=str(f["text"])), "--quiet"],
        ["notes.nc", "as a dataset"],
    ),
    (
        "build a recipe whose source is a folder",
        lambda f, t: ["build", _recipe(f, t, source=str(t)), "--quiet"],
        ["{tmp}", "as a dataset"],
    ),
    (
        "build a recipe named ../../evil",
        lambda f, t: ["build", _recipe(f, t, name="../../evil"), "--quiet"],
        ["../../evil", "plain name"],
    ),
    (
        "build a recipe with a key given twice",
        lambda f, t: ["build", _recipe(f, t, text="factor: 2\n"), "--quiet"],
        ["factor", "twice"],
    ),
    (
        "build a recipe with an infinite scale",
        lambda f, t: ["build", _recipe(f, t, normalisation={"scale": math.inf}), "--quiet"],
        ["normalisation.scale"],
    ),
    (
        "build a recipe of t2m from the Rhine sample",
        lambda f, t: [
            "build",
            _recipe(
                f,
                t,
                source="sample:rhine",
                variable="t2m",
                region=None,
                splits={"train": {"start": "2020-01-01T00", "end": "2020-01-01T12", "samples": 4}},
            ),
            "--quiet",
        ],
        ["t2m", "tcw", "variable:"],
    ),
    (
        "build into a folder under a file",
        lambda f, t: ["build", _recipe(f, t, output=_under_file(f, t)), "--quiet"],
        ["notes.nc"],
    ),
]


@pytest.mark.parametrize(
    ("make", "words"),
    [pytest.param(*case[1:3], id=case[0], marks=case[3:]) for case in CASES],
)
def test_every_failure_is_one_line_and_exit_2(files, tmp_path, capsys, make, words):
    argv = make(files, tmp_path)
    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    err = out.err.strip()
    assert rc == 2, (rc, err)
    assert err.startswith(f"climdown {argv[0]}: error: "), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word.format(tmp=tmp_path) in err, (word, err)
    assert not PYTHON_KEYWORD.search(err), err  # CLI words: --overwrite, not overwrite=True


def test_a_plain_name_recipe_writes_only_under_its_output(files, tmp_path, monkeypatch, capsys):
    # contrast to the ../../evil row: a plain name builds <name>.zarr in the current folder
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["build", _recipe(files, work, name="fine"), "--quiet"]) == 0
    assert (work / "fine.zarr").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert "train 32 patches" in capsys.readouterr().out


def test_a_programming_error_is_not_swallowed(monkeypatch, files, tmp_path):
    # contrast: the CLI turns user errors into one line, not bugs
    import climdown.plot

    def broken(*args, **kwargs):
        raise AttributeError("a bug")

    monkeypatch.setattr(climdown.plot, "compare", broken)
    with pytest.raises(AttributeError, match="a bug"):
        main(["plot", str(files["lr"]), str(files["hr"]), "--out", str(tmp_path / "x.png")])


def test_python_messages_keep_python_words(files, tmp_path):
    # the library says overwrite=True; only the CLI says --overwrite
    from climdown.errors import StoreError
    from climdown.fileio import downscale_file

    with pytest.raises(StoreError, match=r"overwrite=True") as info:
        downscale_file(files["lr"], files["hr"], factor=4, model="bicubic")
    assert "--overwrite" not in str(info.value)
