"""Train the packaged default models: ``python -m climdown.study.build_pretrained --out DIR``.

The defaults cover two grid-spacing regimes, each trained on the real ERA5 sample packaged for
it, and :mod:`climdown.inference` picks the regime nearest the input's spacing:

* ``rhine``: 0.25 deg hourly TCW over the Rhine (recipes ``era5-rhine-x<f>``; hours 0-15
  train, 16-19 choose the epoch, 20-23 held out), LR 0.5/1/2 deg at 2x/4x/8x;
* ``global``: the 1.5 deg global TCWV day (recipes ``era5-global-x<f>``; longitudes 0-192E
  train, 192-276E choose, 276-360E held out), LR 3/6/12 deg.

The global regime ships a *final fit* (:data:`FINAL_FIT`, recipes ``era5-global-all-x<f>``):
the same settings and seeds trained on every longitude but the validation band (276-360E and
0-192E), its epoch, seed and fallback chosen on 192-276E as before. The held-out scores are
those of its twin, the same settings trained on 0-192E only. One day of global data split by
longitude leaves half the globe's geography out of training; a field of another day brings
it back, and the final fit has seen it.

For each factor (2, 4, 8), regime and constraint (``softmax``, ``none``): a CNN (fast layout,
width 32, residual to bicubic) trained up to 120 epochs with flips/quarter-turn augmentation, the
checkpoint chosen by area-weighted validation RMSE, early stopping after 20 epochs without
gain; ``softmax`` with seeds 0, 1, 2 (the one with the best validation score ships),
``none`` with seed 0. Every model is scored on the held-out part beside bicubic, bicubic with
the same constraint and the pycnophylactic baseline.

Never knowingly worse than a baseline: a trained model ships for its factor, constraint and
regime only if, on the validation part (never the held-out one), it beats the best baseline
of its kind (for a conserving constraint: the better of pycnophylactic and bicubic + the
constraint; for ``none``: bicubic) and its blockiness is within
:data:`BLOCKINESS_RANGE`. Otherwise that baseline ships there instead, and the index says
why; :mod:`climdown.inference` then uses it with a one-line notice.

``DIR`` receives the checkpoints, ``index.json`` (merged into one already there) and
``models.md`` (the table of docs/models.md). It defaults to ``pretrained-work/models``,
never the installed package: a maintainer refreshing the shipped files passes
``--out src/climdown/pretrained`` in a source checkout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from climdown._version import __version__
from climdown.errors import ConfigError
from climdown.evaluate import markdown_table
from climdown.study import read_recipe
from climdown.study.runner import (
    check_replaceable,
    run_row,
    write_markdown,
    write_text_atomic,
)

__all__ = [
    "build_defaults",
    "format_index",
    "format_final_fits",
    "format_tables",
    "choose",
    "FACTORS",
    "CONSTRAINTS",
    "REGIMES",
    "FINAL_FIT",
    "OPTIONS",
    "SEEDS",
    "BLOCKINESS_RANGE",
]

FACTORS = (2, 4, 8)
CONSTRAINTS = ("softmax", "none")
OPTIONS = {"width": 32, "blocks": 4, "skip": "bicubic"}
EPOCHS = 120
BATCH = 16
PATIENCE = 20
#: Seeds trained per constraint (the held-out scores are reported over all of them; the seed
#: with the best validation score ships).
SEEDS = {"softmax": (0, 1, 2), "none": (0, 1, 2)}
#: A shipped model's (or fallback's) blockiness must lie in this range (truth: near 1).
BLOCKINESS_RANGE = (0.67, 1.5)
WORK = "pretrained-work"

#: Regime -> (recipe pattern, training data, held-out part).
REGIMES: dict[str, tuple[str, str, str]] = {
    "rhine": (
        "era5-rhine-x{factor}",
        "ERA5 total column water, Rhine 55-45.25N 0-9.75E, 0.25 deg, 2020-01-01 00-15 UTC "
        "(packaged sample); epoch chosen on 16-19 UTC",
        "held-out hours 2020-01-01 20-23 UTC",
    ),
    "global": (
        "era5-global-x{factor}",
        "ERA5 total column water vapour, global 1.5 deg, 2020-06-01 (packaged sample), "
        "longitudes 0-192E; epoch chosen on 192-276E",
        "held-out longitudes 276-360E",
    ),
}

#: Regime -> (recipe pattern, training data) of the final fit that ships, where the regime has
#: one. The global day's train split (0-192E) leaves out the held-out longitudes, so a model
#: trained on it has never seen their geography (the Andes, the Atlantic, ...), which a field
#: of another day brings back. The final fit trains with the same settings and seeds on every
#: longitude but the validation band (which still chooses its epoch, its seed and whether it
#: ships); the held-out scores in the table are those of the same settings trained without the
#: held-out longitudes (the regime's own recipe). The Rhine hours cover one box already, so the
#: Rhine regime ships the models its held-out scores are of.
FINAL_FIT: dict[str, tuple[str, str]] = {
    "global": (
        "era5-global-all-x{factor}",
        "ERA5 total column water vapour, global 1.5 deg, 2020-06-01 (packaged sample), "
        "longitudes 276-360E and 0-192E; epoch chosen on 192-276E",
    ),
}

log = logging.getLogger("climdown")


def build_defaults(
    work: str | os.PathLike[str] = WORK,
    *,
    out: str | os.PathLike[str] | None = None,
    epochs: int = EPOCHS,
    factors: Sequence[int] = FACTORS,
    regimes: Sequence[str] = tuple(REGIMES),
    constraints: Sequence[str] = CONSTRAINTS,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train, score, choose and copy the defaults to ``out``; return the index written there.

    Parameters
    ----------
    work : path
        Folder for the stores and training runs; finished runs are reused on a re-run with
        the same settings (:func:`climdown.study.runner.run_row`).
    out : path, optional
        Folder for the checkpoints, ``index.json`` and ``models.md``; default
        ``work/models``.
    epochs : int
        Training epochs of each model (at most: early stopping may end a run sooner).
    factors, regimes, constraints : sequences
        What to (re)build; index entries of others already in ``out`` are kept.
    device : str
        Torch device (``cpu`` by default: the shipped models were trained on CPU).
    """
    from climdown.data.dataset import PatchDataset, patch_spacing
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store

    for name, given, known in (
        ("regimes", regimes, REGIMES),
        ("constraints", constraints, CONSTRAINTS),
    ):
        unknown = [v for v in given if v not in known]
        if unknown:
            raise ConfigError(
                f"unknown {name} {unknown} for the packaged defaults; choose from {list(known)}"
            )
    work = Path(work)
    out = Path(out) if out is not None else work / "models"
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    check_replaceable(out / "models.md")  # before hours of training, not after
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    command = f"python -m climdown.study.build_pretrained --epochs {epochs} --out DIR"
    for factor in factors:
        for regime in regimes:
            recipe_name, training_data, held_out = REGIMES[regime]
            recipe = recipe_name.format(factor=factor)
            store = build_store(load_recipe(read_recipe(recipe, stores=work / "stores")))
            head = {"factor": factor, "regime": regime}
            base = _baselines(work / f"x{factor}-{regime}", head, store, device)
            fit = FINAL_FIT.get(regime)
            fit_store, fit_base = None, None
            if fit is not None:
                fit_recipe = read_recipe(fit[0].format(factor=factor), stores=work / "stores")
                fit_store = build_store(load_recipe(fit_recipe))
                fit_base = _baselines(work / f"x{factor}-{regime}-all", head, fit_store, device)
            for constraint in constraints:
                rows = _seeds(work / f"x{factor}-{regime}", head, store, constraint, epochs, device)
                final = None
                if fit_store is not None:
                    final = _seeds(
                        work / f"x{factor}-{regime}-all",
                        head,
                        fit_store,
                        constraint,
                        epochs,
                        device,
                    )
                entry = choose(rows, base, constraint, final=final, final_base=fit_base)
                key = f"{factor}-{constraint}-{regime}"
                if entry["fallback"] is None:
                    name = f"cnn-x{factor}-{constraint}-{regime}.pt"
                    shutil.copyfile(entry.pop("checkpoint"), out / name)
                    entry["file"] = name
                else:
                    entry.pop("checkpoint")
                    (out / f"cnn-x{factor}-{constraint}-{regime}.pt").unlink(missing_ok=True)
                test = f"{held_out} (never seen in training or selection)"
                ships_from = {"recipe": recipe, "training_data": training_data}
                if fit is not None:
                    # what ships was trained on the final fit's data; the held-out scores
                    # are its twin's, which never saw the held-out part
                    entry["final_fit"].update(
                        held_out_recipe=recipe, held_out_training_data=training_data
                    )
                    ships_from = {"recipe": fit[0].format(factor=factor), "training_data": fit[1]}
                    test = (
                        f"{held_out}, scored on the held-out twin ({recipe}: the same "
                        "settings and seeds without them); the shipped final fit trained on them"
                    )
                index[key] = {
                    **entry,
                    **patch_spacing(PatchDataset(store, "train")),
                    "factor": factor,
                    "constraint": constraint,
                    "regime": regime,
                    **ships_from,
                    "model": "cnn",
                    "options": OPTIONS,
                    "test": test,
                    "epochs": epochs,
                    "augment": True,
                    "patience": PATIENCE,
                    # the rows' own times (train + score), also when read back from the cache
                    "train_seconds": sum(float(r["seconds"]) for r in [*rows, *(final or [])]),
                    "climdown_version": __version__,
                    "command": command,
                }
                log.info(_summary_line(key, index[key]))
                write_text_atomic(index_path, json.dumps(index, indent=1, sort_keys=True))
    write_markdown(out / "models.md", format_tables(index) + "\n")
    return index


def _baselines(
    prefix: Path, head: Mapping[str, Any], store: Path, device: str
) -> dict[str, dict[str, Any]]:
    """The baselines' rows on ``store`` (validation scores too) by ``"model+constraint"``."""
    return {
        f"{model}+{constraint}": run_row(
            Path(f"{prefix}-{model}-{constraint}"),
            {**head, "model": model, "constraint": constraint},
            store,
            model,
            constraint,
            val=True,
            device=device,
        )
        for model, constraint in (
            ("bicubic", "none"),
            ("bicubic", "softmax"),
            ("pycnophylactic", "none"),
        )
    }


def _seeds(
    prefix: Path,
    head: Mapping[str, Any],
    store: Path,
    constraint: str,
    epochs: int,
    device: str,
    seeds: Sequence[int] | None = None,
    training: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The trained CNN's rows on ``store``, one per seed (default :data:`SEEDS`), the build's
    settings (``training``: further :class:`climdown.train.TrainConfig` options, e.g. a loss)."""
    return [
        run_row(
            Path(f"{prefix}-{constraint}-seed{seed}"),
            {**head, "model": "cnn", "constraint": constraint, "seed": seed},
            store,
            "cnn",
            constraint,
            epochs=epochs,
            batch_size=BATCH,
            options=OPTIONS,
            seed=seed,
            augment=True,
            patience=PATIENCE,
            training=dict(training) if training else None,
            val=True,
            device=device,
            progress=False,
            resume=False,
        )
        for seed in (SEEDS[constraint] if seeds is None else seeds)
    ]


def _bars(constraint: str, base: Mapping[str, Any]) -> list[str]:
    """The baselines (``"model+constraint"`` keys of ``base``) a trained model must beat: for
    a conserving constraint the conserving ones, pycnophylactic and bicubic + it; bicubic for
    ``none``."""
    if constraint == "none":
        kinds = ["bicubic+none"]
    else:
        kinds = ["pycnophylactic+none", f"bicubic+{constraint}"]
    return [k for k in kinds if k in base]


def _decide(
    rows: Sequence[Mapping[str, Any]], base: Mapping[str, Mapping[str, Any]], constraint: str
) -> tuple[Mapping[str, Any], str, str | None]:
    """The seed with the best validation score, the baseline it must beat, and why it does not
    ship (None when it does): validation scores only."""
    rmse = "RMSE_area_weighted"
    best = min(rows, key=lambda r: r["val_scores"][rmse])
    bar = min(_bars(constraint, base), key=lambda k: base[k]["val_scores"][rmse])
    low, high = BLOCKINESS_RANGE
    blocky = best["val_scores"].get("blockiness", 1.0)
    why = None
    if best["val_scores"][rmse] >= base[bar]["val_scores"][rmse]:
        why = (
            f"the trained model's validation RMSE {best['val_scores'][rmse]:.4g} does not beat "
            f"{bar.replace('+', ' + ')}'s {base[bar]['val_scores'][rmse]:.4g} kg m-2"
        )
    elif not low <= blocky <= high:
        why = f"the trained model's validation blockiness {blocky:.2f} is outside {low}-{high}"
    return best, bar, why


def choose(
    rows: Sequence[Mapping[str, Any]],
    base: Mapping[str, Mapping[str, Any]],
    constraint: str,
    *,
    final: Sequence[Mapping[str, Any]] | None = None,
    final_base: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The index entry of one factor, constraint and regime: a trained model, or a fallback.

    ``rows`` are the seeds' rows (``scores`` on test, ``val_scores`` on val), ``base`` the
    baselines' rows by ``"model+constraint"``. The seed with the best validation score is
    the candidate; it ships if, on validation, it beats the best baseline of its kind and its
    blockiness is in :data:`BLOCKINESS_RANGE`; otherwise that baseline ships. Only
    validation scores decide; the held-out (test) scores are reported.

    ``final`` (with ``final_base``, the baselines on its store): the seeds' rows of the final
    fit (:data:`FINAL_FIT`, validation scores only). Then the final fit's candidate is the one
    that ships or falls back, by the same rule on the same validation band, and the held-out
    columns are those of ``rows``' candidate, the same settings trained without the held-out
    part (``final_fit`` in the entry says so).
    """
    rmse = "RMSE_area_weighted"
    best, bar, why = _decide(rows, base, constraint)
    ships = best
    if final is not None:
        if final_base is None:
            raise ConfigError("choose(final=...) needs final_base, the baselines on its store")
        ships, bar, why = _decide(final, final_base, constraint)
    fallback_model, fallback_constraint = bar.split("+")
    test = [r["scores"][rmse] for r in rows]
    shipped = base[bar] if why else best
    entry = {
        "fallback": f"{fallback_model}" if why else None,
        "fallback_constraint": fallback_constraint if why else None,
        "why": why,
        "checkpoint": ships.get("checkpoint"),
        "seed": ships["settings"].get("seed", 0),
        "seeds": [r["settings"].get("seed", 0) for r in rows],
        "n_parameters": ships.get("n_parameters"),
        "best_epoch": ships.get("best_epoch"),
        "rmse_area_weighted": shipped["scores"][rmse],
        "model_rmse_area_weighted": best["scores"][rmse],
        "model_rmse_area_weighted_seeds": test,
        "model_rmse_area_weighted_mean": statistics.fmean(test),
        "val_rmse_area_weighted": ships["val_scores"][rmse],
        "val_blockiness": ships["val_scores"].get("blockiness", 1.0),
        "baselines": {
            k: {
                "rmse_area_weighted": v["scores"][rmse],
                "val_rmse_area_weighted": v["val_scores"][rmse],
                "blockiness": v["scores"].get("blockiness"),
            }
            for k, v in base.items()
        },
        "blockiness": shipped["scores"].get("blockiness"),
        "neg_num": shipped["scores"]["neg_num"],
        "mass_violation_rel": shipped["scores"]["mass_violation_rel"],
    }
    if final is not None:
        entry["final_fit"] = {
            "held_out_from": "the same settings trained without the held-out part",
            "held_out_seed": best["settings"].get("seed", 0),
            "held_out_val_rmse_area_weighted": best["val_scores"][rmse],
            "val_rmse_area_weighted_seeds": [r["val_scores"][rmse] for r in final],
        }
    return entry


def _summary_line(key: str, e: Mapping[str, Any]) -> str:
    bic = e["baselines"]["bicubic+none"]["rmse_area_weighted"]
    what = f"fallback {e['fallback']} ({e['why']})" if e["fallback"] else "cnn"
    return (
        f"{key}: ships {what}; held-out RMSE {e['rmse_area_weighted']:.4f} vs bicubic "
        f"{bic:.4f} kg m-2"
    )


def _pct(value: float, ref: float) -> str:
    return f"{100.0 * (value - ref) / ref:+.1f}%"


def format_index(index: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of docs/models.md from an index: one row per factor, constraint and regime."""
    order = list(REGIMES)
    entries = sorted(
        index.values(),
        key=lambda e: (
            e["factor"],
            CONSTRAINTS.index(e["constraint"]),
            order.index(e.get("regime", order[0])),
        ),
    )
    headers = (
        "factor",
        "constraint",
        "regime (LR spacing)",
        "ships",
        "RMSE (kg m-2)",
        "cnn, seeds",
        "bicubic",
        "bicubic + softmax",
        "pycnophylactic",
        "vs bicubic",
        "vs best conserving",
        "blockiness",
        "negatives",
        "mass violation (rel.)",
    )
    rows = []
    for e in entries:
        b = e["baselines"]
        bic = b["bicubic+none"]["rmse_area_weighted"]
        cons = min(
            b["bicubic+softmax"]["rmse_area_weighted"],
            b["pycnophylactic+none"]["rmse_area_weighted"],
        )
        seeds = e["model_rmse_area_weighted_seeds"]
        spread = f"{min(seeds):.4f}-{max(seeds):.4f}" if len(seeds) > 1 else f"{seeds[0]:.4f}"
        if e["fallback"] is not None:
            ships = f"{e['fallback']} (fallback)"
        else:  # a final fit (FINAL_FIT) ships: its held-out scores are of its held-out twin
            ships = "cnn (final fit)" if e.get("final_fit") else "cnn"
        rows.append(
            (
                f"{e['factor']}x",
                e["constraint"],
                f"{e.get('regime', 'rhine')} ({_lr_spacing(e)})",
                ships,
                f"{e['rmse_area_weighted']:.4f}",
                spread,
                f"{bic:.4f}",
                f"{b['bicubic+softmax']['rmse_area_weighted']:.4f}",
                f"{b['pycnophylactic+none']['rmse_area_weighted']:.4f}",
                _pct(e["rmse_area_weighted"], bic),
                _pct(e["rmse_area_weighted"], cons) if e["constraint"] != "none" else "–",
                f"{e['blockiness']:.2f}",
                int(e["neg_num"]),
                f"{e['mass_violation_rel']:.1e}",
            )
        )
    return markdown_table(headers, rows)


def format_tables(index: Mapping[str, Mapping[str, Any]]) -> str:
    """``models.md``: :func:`format_index`'s table, then :func:`format_final_fits`' if any."""
    fits = format_final_fits(index)
    return format_index(index) + ("\n\n" + fits if fits else "")


def format_final_fits(index: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of the final fits (:data:`FINAL_FIT`): their validation scores (they have no
    held-out part) beside their held-out twins' and the bar they had to beat; empty when no
    entry has a final fit."""
    rmse = "val_rmse_area_weighted"
    entries = sorted(
        (e for e in index.values() if e.get("final_fit")),
        key=lambda e: (e["factor"], CONSTRAINTS.index(e["constraint"])),
    )
    if not entries:
        return ""
    headers = (
        "factor",
        "constraint",
        "regime",
        "ships",
        "final fit: val RMSE, chosen seed",
        "final fit: val RMSE, seeds",
        "held-out twin: val RMSE",
        "bar (val RMSE)",
        "final fit: val blockiness",
    )
    rows = []
    for e in entries:
        fit, b = e["final_fit"], e["baselines"]
        seeds = fit["val_rmse_area_weighted_seeds"]
        bar = min(_bars(e["constraint"], b), key=lambda k: b[k][rmse])
        ships = f"{e['fallback']} (fallback)" if e["fallback"] else "cnn (final fit)"
        rows.append(
            (
                f"{e['factor']}x",
                e["constraint"],
                e["regime"],
                ships,
                f"{min(seeds):.4f}",
                f"{min(seeds):.4f}-{max(seeds):.4f}",
                f"{fit['held_out_val_rmse_area_weighted']:.4f}",
                f"{b[bar][rmse]:.4f} ({bar.replace('+', ' + ')})",
                f"{e['val_blockiness']:.2f}",
            )
        )
    return markdown_table(headers, rows)


def _lr_spacing(entry: Mapping[str, Any]) -> str:
    return f"{entry['lr_spacing_deg'][0]:.3g} deg"


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m climdown.study.build_pretrained``."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--work", default=WORK, help="folder for stores and runs")
    p.add_argument(
        "--out",
        default=None,
        help="folder for the models, index.json and models.md (default WORK/models; "
        "src/climdown/pretrained refreshes the shipped ones in a source checkout)",
    )
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--factors", type=int, nargs="*", default=list(FACTORS))
    p.add_argument("--regimes", nargs="*", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--constraints", nargs="*", default=list(CONSTRAINTS), choices=list(CONSTRAINTS))
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if not logging.getLogger("climdown").handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_defaults(
        a.work,
        out=a.out,
        epochs=a.epochs,
        factors=a.factors,
        regimes=a.regimes,
        constraints=a.constraints,
        device=a.device,
    )


if __name__ == "__main__":
    main()
