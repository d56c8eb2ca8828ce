"""``climdown`` explains itself: help with defaults and choices, one-line usage errors and
warnings, "nothing to do" on an up-to-date store, progress bars only on a terminal."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from climdown import cli
from climdown.cli import build_parser, main
from climdown.study import recipes_dir
from climdown.testing import tcw_dataarray

COMMANDS = ("build", "train", "evaluate", "experiments", "downscale", "plot", "demo")
REQUIRED = {"train": ["--store", "s"], "evaluate": ["--store", "s", "--checkpoint", "c"]}
REQUIRED["downscale"] = ["in.nc", "out.nc"]


def _recipe(tmp: Path) -> Path:
    """The packaged tiny.yaml with its output under ``tmp``."""
    raw = yaml.safe_load((recipes_dir() / "tiny.yaml").read_text())
    raw.update(output=str(tmp / "tiny.zarr"))
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cmd: str) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([cmd, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _entries(text: str, section: str) -> list[str]:
    """The entries of a help section, each joined onto one line (wrapped help included)."""
    lines = text.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    entries: list[str] = []
    for line in lines:
        if line.startswith("  ") and not line.startswith("   "):
            entries.append(line.strip())
        else:
            entries[-1] += ("  " if "  " not in entries[-1] else " ") + line.strip()
    return entries


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_shows_its_default_or_is_a_switch(
    cmd: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(capsys, monkeypatch, cmd)
    # a one-line description under the usage
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[cmd]
    assert sub.description and len(sub.description.splitlines()) == 1
    assert f"\n{sub.description}\n" in text
    switches = {flag for a in sub._actions if a.nargs == 0 for flag in a.option_strings}
    options = _entries(text, "options")
    assert len(options) == sum(1 for a in sub._actions if a.option_strings)
    for entry in options:
        invocation = entry.split("  ", 1)[0]
        flags = [w.rstrip(",") for w in invocation.split() if w.startswith("-")]
        if set(flags) <= switches:
            continue
        assert "(default: " in entry or entry.endswith("(required)"), entry
        assert "(default: None)" not in entry, entry  # say what None means
    for entry in _entries(text, "positional arguments") if "positional" in text else []:
        assert len(entry.split(None, 1)) == 2, f"no help: {entry}"


def test_contrast_an_option_without_default_is_seen(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above is not vacuous: a plain option with help shows the default it adds."""
    text = _help(capsys, monkeypatch, "train")
    text = " ".join(text.split())
    assert "--epochs EPOCHS epochs to train (default: 20)" in text
    assert "--store STORE the training store (`climdown build`) (required)" in text


def test_registries_names_are_the_cli_choices() -> None:
    from climdown.inference import BASELINES, DownscaleOptions
    from climdown.nn.constraints import CONSTRAINTS
    from climdown.nn.models import MODELS

    assert cli.MODEL_NAMES == tuple(MODELS)
    assert cli.CONSTRAINT_NAMES == tuple(CONSTRAINTS)
    assert cli.BASELINE_NAMES == tuple(BASELINES)
    defaults = DownscaleOptions()
    assert cli.DOWNSCALE_DEFAULTS == {k: getattr(defaults, k) for k in cli.DOWNSCALE_DEFAULTS}


@pytest.mark.parametrize(
    ("cmd", "flag", "choices"),
    [
        ("train", "--model", cli.MODEL_NAMES),
        ("train", "--constraint", cli.CONSTRAINT_NAMES),
        ("train", "--precision", ("fp32", "bf16")),
        ("downscale", "--constraint", cli.CONSTRAINT_NAMES),
        ("evaluate", "--split", ("train", "val", "test")),
    ],
)
def test_choices_are_listed_and_an_invalid_one_is_one_line(
    cmd: str,
    flag: str,
    choices: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = _help(capsys, monkeypatch, cmd)
    assert f"{flag} {{{','.join(choices)}}}" in text
    parser = build_parser()
    for choice in choices:  # each is accepted
        args = parser.parse_args([cmd, *REQUIRED[cmd], flag, choice])
        assert getattr(args, flag[2:]) == choice
    with pytest.raises(SystemExit) as exc:  # argparse's way outside main
        parser.parse_args([cmd, *REQUIRED.get(cmd, []), flag, "bogus"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith(f"climdown {cmd}: error: argument {flag}")
    assert main([cmd, flag, "bogus"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"climdown {cmd}: error: argument {flag}: invalid choice: 'bogus'")
    assert all(repr(c) in err for c in choices) and f"climdown {cmd} --help" in err


def test_downscale_factor_help_names_the_packaged_factors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from climdown.pretrained import available

    text = " ".join(_help(capsys, monkeypatch, "downscale").split())
    factors = ", ".join(str(f) for f in sorted({f for f, _ in available()}))
    assert f"packaged models for {factors}," in text
    # any factor parses (baselines take any): no choices on --factor
    assert build_parser().parse_args(["downscale", "a", "b", "--factor", "3"]).factor == 3


def test_evaluate_report_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--report PATH`` is listed with its default; a path that is neither .md nor .html is
    refused in one line before anything is opened or scored."""
    text = " ".join(_help(capsys, monkeypatch, "evaluate").split())
    assert "--report PATH also write a one-page report" in text
    assert (
        "PATH.md with PNG files beside it, or PATH.html, one file (default: none, no report)"
        in text
    )
    args = build_parser().parse_args([*(["evaluate"] + REQUIRED["evaluate"]), "--report", "r.md"])
    assert args.report == "r.md"
    assert build_parser().parse_args(["evaluate", *REQUIRED["evaluate"]]).report is None
    argv = ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--store", str(tmp_path)]
    assert main([*argv, "--report", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("climdown evaluate: error: a report is Markdown or HTML: the path must")
    assert "r.pdf" in err and not (tmp_path / "r.pdf").exists()


def test_help_loads_no_torch() -> None:
    code = (
        "import sys\nfrom climdown.cli import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules, 'xarray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_build_twice_says_nothing_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path)
    store = tmp_path / "tiny.zarr"
    assert main(["build", str(recipe), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert f"store ready: {store}" in first and "up to date" not in first
    assert main(["build", str(recipe), "--quiet"]) == 0
    second = capsys.readouterr().out
    assert second.startswith(f"store up to date: {store} (nothing to do; train 32 patches")
    assert main(["build", str(recipe), "--quiet", "--overwrite"]) == 0  # rebuilt: not a no-op
    third = capsys.readouterr().out
    assert third.startswith(f"store ready: {store}") and "up to date" not in third


@pytest.mark.filterwarnings("default::UserWarning")  # as Python runs the CLI
def test_a_warning_is_one_line_without_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0.05-degree input to the packaged 4x models (trained on 1 and 6 degree inputs) warns."""
    src = tmp_path / "fine_input.nc"
    tcw_dataarray(8, 8, 1, spacing=0.05, origin=(60.0, 0.0)).to_dataset().to_netcdf(src)
    before = warnings.showwarning
    assert main(["downscale", str(src), str(tmp_path / "fine.nc"), "--device", "cpu"]) == 0
    assert warnings.showwarning is before  # restored for the code after main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "climdown downscale: warning: the input grid spacing (0.05 x 0.05 deg)"
    )
    assert "model='bicubic'" not in lines[0] and "--model bicubic" in lines[0]  # CLI words
    assert "warnings.warn" not in err and ".py:" not in err


def test_progress_bars_only_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progress asked for (no --quiet), stderr not a terminal: epoch lines, no bars."""
    recipe = _recipe(tmp_path)
    assert main(["build", str(recipe)]) == 0
    build_err = capsys.readouterr().err
    argv = ["train", "--store", str(tmp_path / "tiny.zarr"), "--epochs", "1"]
    argv += ["--batch-size", "8", "--out", str(tmp_path / "run"), "--option", "width=8"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "epoch 1" in captured.out + captured.err  # progress on: the epoch line
    for err in (build_err, captured.err):
        assert "\r" not in err and "it/s" not in err and "chunk/s" not in err, err


def test_train_says_when_an_epoch_is_too_short_to_learn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default batch (64) on a 32-sample store: one step per epoch, said in CLI words."""
    assert main(["build", str(_recipe(tmp_path)), "--quiet"]) == 0
    capsys.readouterr()
    argv = ["train", "--store", str(tmp_path / "tiny.zarr"), "--epochs", "1", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "run"), "--option", "width=8"]) == 0
    err = capsys.readouterr().err.splitlines()
    warning = [line for line in err if "optimiser step" in line]
    assert len(warning) == 1 and warning[0].startswith("climdown train: warning: each epoch")
    assert "--batch-size 3" in warning[0] and "batch_size" not in warning[0]
    # contrast: a batch that makes 8 steps an epoch says nothing of the kind
    argv += ["--batch-size", "4", "--out", str(tmp_path / "run4"), "--option", "width=8"]
    assert main(argv) == 0
    assert "optimiser step" not in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_contrast_progress_bars_do_show_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same build with stderr a terminal draws its bar (the check above is not vacuous)."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["build", str(_recipe(tmp_path))]) == 0
    assert "\r" in terminal.getvalue() and "build tiny" in terminal.getvalue()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["build", str(_recipe(tmp_path)), "--overwrite", "--quiet"]) == 0
    assert "build tiny" not in terminal.getvalue()  # --quiet: never
