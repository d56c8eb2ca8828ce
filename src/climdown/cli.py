"""Command line: argparse -> one library call per command (no logic lives here)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from climdown._version import __version__
from climdown.errors import ClimdownError, ConfigError

__all__ = ["main", "build_parser"]


def _cmd_build(a: argparse.Namespace) -> int:
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store, store_info, up_to_date
    from climdown.study import recipe_path

    for path in a.recipes:
        recipe = load_recipe(recipe_path(path))
        built = not a.overwrite and up_to_date(recipe)  # then build_store leaves it as it is
        out = build_store(
            recipe,
            overwrite=a.overwrite,
            progress=not a.quiet,
            scheduler=a.scheduler,
            workers=a.workers,
        )
        info = store_info(out)
        available = info.get("patches_available", {})  # absent from older stores
        counts = ", ".join(
            f"{split} {n} patches" + (f" of {available[split]}" if split in available else "")
            for split, n in info["samples"].items()
        )
        if built:
            print(f"store up to date: {out} (nothing to do; {counts})")
        else:
            print(f"store ready: {out} ({counts})")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from climdown.train import TrainConfig, train

    config = TrainConfig(
        model=a.model,
        constraint=a.constraint,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        max_steps=a.max_steps,
        model_options=_options(a.option),
        soft_lambda=a.soft_lambda,
        precision=a.precision,
        augment=a.augment,
        select=a.select,
        patience=a.patience,
        keep_epochs=a.keep_epochs,
        adversarial_weight=a.adversarial_weight,
        loss=a.loss,
        crps_members=a.crps_members,
        normalisation=a.normalisation,
    )
    summary = train(
        a.store,
        config,
        out=a.out,
        device=a.device,
        resume=not a.no_resume,
        progress=not a.quiet,
        num_workers=a.num_workers,
    )
    from climdown.ddp import dist_env

    if dist_env().is_main:  # under torchrun only rank 0 reports and draws
        if summary["log"]:
            from climdown.plot import training_curves

            curves = Path(summary["out"]) / "curves.png"
            training_curves(summary["log"], path=curves)
            summary["curves"] = str(curves)
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


def _options(pairs: list[str] | None) -> dict[str, object]:
    """``["width=32", "skip=bicubic"]`` -> ``{"width": 32, "skip": "bicubic"}`` (YAML scalars)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE (e.g. --option width=32), got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _cmd_evaluate(a: argparse.Namespace) -> int:
    if a.report is None:
        from climdown.evaluate import evaluate_checkpoint

        table = evaluate_checkpoint(
            a.checkpoint, a.store, split=a.split, out=a.out, device=a.device
        )
    else:
        from climdown.report import evaluation_report

        table = evaluation_report(
            a.checkpoint, a.store, a.report, split=a.split, out=a.out, device=a.device
        )
    print(table)
    if a.report is not None:
        print(f"wrote {a.report}")
    return 0


def _cmd_experiments(a: argparse.Namespace) -> int:
    from climdown.study.experiments import run_experiments

    table = run_experiments(
        a.config,
        epochs=a.epochs,
        quick=a.quick,
        out=a.out,
        results=a.results,
        device=a.device,
        only=a.only,
        seeds=a.seeds,
        layout=a.layout,
        finished_only=a.finished_only,
        time_steps=a.time_steps,
    )
    print(table)
    return 0


def _cmd_downscale(a: argparse.Namespace) -> int:
    from climdown.cluster import dask_client
    from climdown.fileio import downscale_file

    # options left off the command line are absent here: climdown.inference.downscale's apply
    names = ("factor", "constraint", "model", "var", "device")
    options = {k: getattr(a, k) for k in names if hasattr(a, k)}
    with dask_client(a.scheduler, a.workers) as client:
        downscale_file(a.src, a.dst, overwrite=a.overwrite, scheduler=client, **options)
    print(f"wrote {a.dst}")
    return 0


def _cmd_plot(a: argparse.Namespace) -> int:
    from climdown.data.sources import open_dataarray
    from climdown.plot import compare

    lr, hr = open_dataarray(a.lr, a.var), open_dataarray(a.hr, a.var)
    truth = None if a.truth is None else open_dataarray(a.truth, a.var)
    compare(lr, hr, truth, time=a.time, path=a.out)
    print(f"wrote {a.out}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from climdown.study.demo import run_demo

    run_demo(out=a.out, quick=a.quick)
    return 0


# The registries' names, listed here so that ``climdown --help`` loads no torch (importing the
# registries takes seconds); tests/test_cli_help.py checks they equal the registries' keys.
MODEL_NAMES = (
    "cnn",
    "gan",
    "convgru",
    "flowconvgru",
    "nearest",
    "bilinear",
    "bicubic",
    "pycnophylactic",
)
"""``climdown.nn.models.MODELS``' names: the ``--model`` choices of ``climdown train``."""
CONSTRAINT_NAMES = ("none", "softmax", "add", "mult", "scadd", "clip", "soft")
"""``climdown.nn.constraints.CONSTRAINTS``' names: the ``--constraint`` choices."""
BASELINE_NAMES = ("nearest", "bilinear", "bicubic", "pycnophylactic")
"""``climdown.inference.BASELINES``: models ``climdown downscale`` builds without a checkpoint."""
DOWNSCALE_DEFAULTS = {"factor": 4, "constraint": "softmax", "device": "auto"}
"""``climdown.inference.DownscaleOptions``' defaults, shown in ``climdown downscale --help``."""
SPLITS = ("train", "val", "test")
"""The splits of a store (``climdown evaluate --split``)."""


class _UsageError(SystemExit):
    """A command line argparse refused (exit status 2), its line already printed."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like the commands' own errors."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        print(f"{self.prog}: error: {line} (see `{self.prog} --help`)", file=sys.stderr)
        raise _UsageError(2)


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (or that it is required, or a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.nargs == 0 or "default" in text:
            return text  # positionals, switches and help that states its default itself
        if action.required:
            return f"{text} (required)"
        if action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The ``climdown`` argument parser."""
    p = _Parser(
        prog="climdown",
        description="Physics-constrained deep-learning downscaling of gridded climate fields.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"climdown {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=f"{summary}.", formatter_class=_HelpFormatter
        )

    def dask_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--scheduler",
            default=None,
            help="address or scheduler file of a running dask cluster (or env "
            "CLIMDOWN_SCHEDULER) (default: none, the env variable if set)",
        )
        sp.add_argument(
            "--workers",
            type=int,
            default=None,
            help="start a LocalCluster with N workers (default: none, no cluster)",
        )

    sp = command("build", "build training stores from YAML recipes")
    sp.add_argument(
        "recipes", nargs="+", help="recipe YAML file(s), or packaged recipe names (tcw4, tiny)"
    )
    sp.add_argument("--overwrite", action="store_true", help="rebuild even if the store exists")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    dask_opts(sp)
    sp.set_defaults(func=_cmd_build, parser=sp)

    sp = command("train", "train a model on a store")
    sp.add_argument("--store", required=True, help="the training store (`climdown build`)")
    sp.add_argument("--model", default="cnn", choices=MODEL_NAMES, help="model family")
    sp.add_argument(
        "--constraint", default="softmax", choices=CONSTRAINT_NAMES, help="constraint layer"
    )
    sp.add_argument("--epochs", type=int, default=20, help="epochs to train")
    sp.add_argument("--batch-size", type=int, default=64, help="patches per optimiser step")
    sp.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
    sp.add_argument("--out", default="run", help="folder for checkpoints, log and curves")
    sp.add_argument("--seed", type=int, default=0, help="random seed")
    sp.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    sp.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="optimiser steps per epoch (default: none, the whole training split)",
    )
    sp.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16"), help="bf16: autocast (GPU)"
    )
    sp.add_argument("--soft-lambda", type=float, default=1.0, help="weight of the soft penalty")
    sp.add_argument(
        "--adversarial-weight",
        type=float,
        default=0.01,
        help="GAN: weight of the adversarial term (the study's 0.01; its code's 1e-4)",
    )
    sp.add_argument(
        "--loss",
        default="mse",
        choices=("mse", "mse_area", "crps"),
        help="data term: mse, mse_area (weighted by cell area: the error on the sphere), or "
        "crps (GAN: fair CRPS of --crps-members draws, rewards spread)",
    )
    sp.add_argument(
        "--crps-members",
        type=int,
        default=2,
        help="GAN members per sample for --loss crps and --select val_crps_area",
    )
    sp.add_argument(
        "--normalisation",
        default="scale",
        choices=("scale", "minmax"),
        help="model input: x / scale (climdown's), or the reference code's min-max to 0..1",
    )
    sp.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="model option, e.g. --option width=32 --option skip=bicubic "
        "(default: none, the model's defaults)",
    )
    sp.add_argument(
        "--augment",
        action="store_true",
        help="train on random flips and quarter turns of each patch (little data)",
    )
    sp.add_argument(
        "--select",
        default="val_rmse_area",
        choices=("val_rmse_area", "val_rmse", "val_crps_area"),  # climdown.train.SELECT
        help="validation score that picks best.pt (area-weighted RMSE, per cell, or, for a "
        "GAN, the area-weighted fair CRPS of --crps-members members)",
    )
    sp.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a better --select score "
        "(default: none, every epoch)",
    )
    sp.add_argument(
        "--keep-epochs", action="store_true", help="also write each epoch as epoch-NNN.pt"
    )
    sp.add_argument("--no-resume", action="store_true", help="start afresh even if out/ has a run")
    sp.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    sp.set_defaults(func=_cmd_train, parser=sp)

    sp = command("evaluate", "score a checkpoint on a store, beside baselines")
    sp.add_argument("--checkpoint", required=True, help="checkpoint file (`climdown train`)")
    sp.add_argument("--store", required=True, help="the store to score on (`climdown build`)")
    sp.add_argument("--split", default="val", choices=SPLITS, help="the store's split to score")
    sp.add_argument(
        "--out",
        default=None,
        help="folder for metrics.csv / metrics.md (default: none, the table is only printed)",
    )
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
    sp.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="also write a one-page report (scores, maps, spectra, mass budget): PATH.md with "
        "PNG files beside it, or PATH.html, one file (default: none, no report)",
    )
    sp.set_defaults(func=_cmd_evaluate, parser=sp)

    sp = command("experiments", "run the study's experiment table")
    sp.add_argument(
        "config",
        nargs="?",
        default=None,
        help="experiments YAML (default: the packaged experiments.yaml)",
    )
    sp.add_argument(
        "--epochs", type=int, default=None, help="epochs per row (default: none, the YAML's)"
    )
    sp.add_argument("--quick", action="store_true", help="tiny data and few steps (CI)")
    sp.add_argument("--out", default="experiments-out", help="folder for runs and tables")
    sp.add_argument("--results", default=None, help="Markdown file for the table (default: none)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda, mps, ...")
    sp.add_argument("--only", nargs="*", default=None, help="experiment ids to run (default: all)")
    sp.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per row (default: none, the YAML's; 1 with --quick)",
    )
    sp.add_argument(
        "--layout",
        default="default",
        choices=("default", "reference", "all"),
        help="rows to run: climdown's default layouts, the reference code's (slow), or all "
        "(default: default)",
    )
    sp.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: write the rows finished in --out, list the others as not run",
    )
    sp.add_argument(
        "--time-steps",
        type=int,
        default=None,
        help="time each chosen row (--only, --layout) that is not run and has no epoch measured "
        "by N training steps, for the not-run estimates (default: none)",
    )
    sp.set_defaults(func=_cmd_experiments, parser=sp)

    from climdown.pretrained import available  # reads a JSON index: no torch

    packaged = sorted({f for f, _ in available()})
    sp = command("downscale", "downscale a netCDF/zarr file")
    sp.add_argument("src", help="input netCDF or zarr (coarse grid)")
    sp.add_argument("dst", help="output netCDF or zarr (fine grid)")
    unset = argparse.SUPPRESS  # defaults: climdown.inference.downscale's, not copies
    d = DOWNSCALE_DEFAULTS
    sp.add_argument(
        "--factor",
        type=int,
        default=unset,
        help=f"downscaling factor; packaged models for {', '.join(map(str, packaged))}, "
        f"baselines (--model bicubic, ...) for any (default: {d['factor']})",
    )
    sp.add_argument(
        "--constraint",
        default=unset,
        choices=CONSTRAINT_NAMES,
        help=f"constraint layer (default: {d['constraint']})",
    )
    sp.add_argument(
        "--model",
        default=unset,
        help=f"checkpoint path or baseline name ({', '.join(BASELINE_NAMES)}) "
        "(default: the packaged model for --factor and --constraint)",
    )
    sp.add_argument("--var", default=unset, help="variable(s) to downscale (default: all)")
    sp.add_argument(
        "--device", default=unset, help=f"auto, cpu, cuda, mps, ... (default: {d['device']})"
    )
    sp.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    dask_opts(sp)
    sp.set_defaults(func=_cmd_downscale, parser=sp)

    sp = command("plot", "maps LR | downscaled | truth | error to PNG")
    sp.add_argument("lr", help="the coarse field (netCDF or zarr)")
    sp.add_argument("hr", help="the downscaled field (netCDF or zarr)")
    sp.add_argument("--truth", default=None, help="the true fine field (default: none)")
    sp.add_argument("--out", default="compare.png", help="PNG to write")
    sp.add_argument("--time", default=None, help="time step to map (default: the first)")
    sp.add_argument(
        "--var", default=None, help="variable to map (default: tcw or the like, else the only one)"
    )
    sp.set_defaults(func=_cmd_plot, parser=sp)

    sp = command("demo", "the main job: build, train, downscale, report, map")
    sp.add_argument("--out", default="demo-out", help="folder for everything it writes")
    sp.add_argument("--quick", action="store_true", help="a few seconds, for tests")
    sp.set_defaults(func=_cmd_demo, parser=sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``climdown`` console script.

    A user error (a :class:`~climdown.errors.ClimdownError`, or an :class:`OSError` from the
    operating system: a path that cannot be read or written) prints one line, in the
    command's words (:func:`_cli_words`), and returns 2; so does a command line argparse
    refuses (an unknown option, an invalid choice). Anything else is a bug in climdown and
    keeps its traceback. A warning prints one line (:func:`_warning_lines`).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError:  # a usage error: one line (printed), exit status 2 like the others
        return 2
    try:
        with _warning_lines(args):
            return int(args.func(args) or 0)
    except ClimdownError as exc:  # user errors: one clear line, no traceback
        message = str(exc)
    except OSError as exc:  # the operating system's: name the path it could not use
        message = _os_error(exc)
    message = _cli_words(" ".join(message.split()), args.parser)
    print(f"climdown {args.command}: error: {message}", file=sys.stderr)
    return 2


@contextmanager
def _warning_lines(args: argparse.Namespace) -> Iterator[None]:
    """While a command runs, each warning is one line ``climdown CMD: warning: MESSAGE``.

    No source line and no file name: the message in the command's words (:func:`_cli_words`)
    on stderr. The previous ``warnings.showwarning`` (and filters) come back afterwards.

    The library's ``climdown`` logger is shown the same way while the command runs: its
    WARNINGs as such lines, its INFO lines (e.g. a line per training epoch) on stdout as they
    are, unless ``--quiet``.
    """
    import logging
    import warnings

    def show(message: Warning | str, *_: object, **__: object) -> None:
        text = _cli_words(" ".join(str(message).split()), args.parser)
        print(f"climdown {args.command}: warning: {text}", file=sys.stderr)

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                show(record.getMessage())
            else:
                print(record.getMessage(), flush=True)

    logger = logging.getLogger("climdown")
    handler = Lines(logging.WARNING if getattr(args, "quiet", False) else logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the command shows them once, as lines
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _os_error(exc: OSError) -> str:
    """``Permission denied: '/x/out.nc'`` from an OSError (the paths it names, if any)."""
    paths = [os.fsdecode(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {' -> '.join(repr(p) for p in paths)}" if paths else reason


def _cli_words(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message in the command's words: its keyword arguments become its options.

    The library names its own keywords (``pass overwrite=True``, ``e.g. var='tcw'``); for
    each option of the command, ``dest=True`` becomes the flag (``--overwrite``),
    ``resume=False`` the negated one (``--no-resume``) and ``dest=VALUE`` ``--option VALUE``.
    The one place where library messages are translated for the command line.
    """
    for action in parser._actions:  # argparse keeps a parser's options there (no public view)
        flags = [o for o in action.option_strings if o.startswith("--")]
        if not flags or action.dest in ("help", "version"):
            continue
        flag, dest = flags[0], re.escape(action.dest)
        if action.nargs == 0 and action.const is True:  # a switch (store_true)
            message = re.sub(rf"(?<![\w.]){dest}=True\b", flag, message)
            if action.dest.startswith("no_"):
                message = re.sub(rf"(?<![\w.]){dest[3:]}=False\b", flag, message)
            continue
        value = r"""(?:'([^']*)'|"([^"]*)"|([^\s,;)'"]+))"""

        def as_option(m: re.Match[str], flag: str = flag) -> str:
            return f"{flag} {next(g for g in m.groups() if g is not None)}"

        message = re.sub(rf"(?<![\w.]){dest}={value}", as_option, message)
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
