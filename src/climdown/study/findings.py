"""The report's claims against climdown's runs: confirmed, refuted or inconclusive.

The course study's table and claims are data (``recipes/report.yaml``); :func:`settle` sets
each claim against climdown's rows of the same ids, over all the seeds that ran, with a rule
that accounts for seed noise:

* ``order`` (``better`` has a lower ``metric`` than ``worse``): **confirmed** when every seed
  of ``better`` beats every seed of ``worse`` (the ranges over seeds do not overlap),
  **refuted** when every seed of ``worse`` beats every seed of ``better``, **inconclusive**
  when the ranges overlap or either row has fewer than two seeds;
* ``negatives`` (``row`` has negative pixels): confirmed when any seed has one, refuted when
  none of them has (a count, not a noisy score);
* ``collapse`` (``row``'s ``metric`` falls below ``below``, ``against``'s does not): confirmed
  when every seed of ``row`` is below and every seed of ``against`` above, refuted when every
  seed of ``row`` is above, else inconclusive (and with fewer than two seeds of ``row``).

The report's scores are on its 0-100 scaled data, climdown's in kg m-2: the verdicts compare
orderings, and the table shows the ratios beside each other.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from climdown import validate
from climdown.errors import RecipeError
from climdown.evaluate import markdown_table
from climdown.study import recipe_path

__all__ = ["Claim", "Report", "load_report", "settle", "format_findings", "VERDICTS"]

VERDICTS = ("confirmed", "refuted", "inconclusive", "not run")
_KINDS = {
    "order": ("better", "worse"),
    "negatives": ("row",),
    "collapse": ("row", "against", "below"),
}


@dataclass(frozen=True)
class Claim:
    """One claim of the report (see the module docstring for the kinds and their rules)."""

    id: str
    text: str
    kind: str
    better: str | None = None
    worse: str | None = None
    row: str | None = None
    against: str | None = None
    metric: str = "RMSE"
    below: float | None = None
    why: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """The report's table (id -> score -> value, its scaled units) and its claims."""

    table: Mapping[str, Mapping[str, float]]
    claims: tuple[Claim, ...]


def load_report(path: str | os.PathLike[str] | None = None) -> Report:
    """Read the report's table and claims (default: the packaged ``report.yaml``).

    Raises
    ------
    RecipeError
        For unknown keys, a claim without the ids its kind needs, or an unknown verdict.
    """
    path = recipe_path(path if path is not None else "report")
    raw = validate.check_keys(
        yaml.safe_load(path.read_text()) or {},
        ("table", "claims"),
        "recipe",
        required=("table", "claims"),
        error=RecipeError,
    )
    table = {str(k): {str(m): float(v) for m, v in row.items()} for k, row in raw["table"].items()}
    claims = []
    for i, entry in enumerate(raw["claims"]):
        where = f"{path.name}: claims[{i}]"
        c = validate.check_keys(
            entry,
            [f.name for f in Claim.__dataclass_fields__.values()],
            where,
            required=("id", "text", "kind"),
            error=RecipeError,
        )
        kind = str(c["kind"])
        if kind not in _KINDS:
            raise RecipeError(f"{where}: kind {kind!r}; use one of {', '.join(_KINDS)}")
        lacking = [k for k in _KINDS[kind] if c.get(k) is None]
        if lacking:
            raise RecipeError(f"{where}: a {kind!r} claim needs {', '.join(lacking)}")
        why = dict(c.get("why") or {})
        if set(why) - set(VERDICTS):
            raise RecipeError(f"{where}: why has {sorted(why)}; keys are verdicts {VERDICTS}")
        claims.append(Claim(**{**c, "id": str(c["id"]), "kind": kind, "why": why}))
    return Report(table, tuple(claims))


def _values(
    scores: Mapping[str, Sequence[Mapping[str, Any]]], row: str, metric: str
) -> list[float]:
    return [float(s[metric]) for s in scores.get(row, []) if s.get(metric) is not None]


def _summary(values: Sequence[float], digits: str = ".4g") -> str:
    """``mean ± sd (n seeds)``: the spread is the standard deviation over seeds (n - 1)."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:{digits}} (1 seed)"
    return f"{mean:{digits}} ± {statistics.stdev(values):.2g} ({len(values)} seeds)"


def settle(
    report: Report, scores: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[dict[str, str]]:
    """Each claim of ``report`` with its verdict against climdown's ``scores``.

    Parameters
    ----------
    report : Report
        From :func:`load_report`.
    scores : mapping
        Row id -> the score dicts of its seeds (:func:`climdown.evaluate.evaluate_model`).

    Returns
    -------
    list of dict
        Per claim: ``id``, ``claim``, ``report`` (its numbers), ``climdown`` (ours, mean ±
        sd over seeds), ``verdict`` (one of :data:`VERDICTS`) and ``why``.
    """
    out = []
    for c in report.claims:
        verdict, theirs, ours = _judge(c, report.table, scores)
        out.append(
            {
                "id": c.id,
                "claim": c.text,
                "report": theirs,
                "climdown": ours,
                "verdict": verdict,
                "why": c.why.get(verdict.split(" ")[0], ""),
            }
        )
    return out


def _judge(
    c: Claim, table: Mapping[str, Mapping[str, float]], scores: Mapping[str, Any]
) -> tuple[str, str, str]:
    """(verdict, the report's numbers, climdown's numbers) of one claim."""
    if c.kind == "negatives":
        assert c.row is not None
        negs = [int(v) for v in _values(scores, c.row, "neg_num")]
        theirs = f"{c.row}: {table.get(c.row, {}).get('neg_num', math.nan):.0f} negative pixels"
        if not negs:
            return "not run", theirs, "–"
        ours = f"{c.row}: {', '.join(str(n) for n in negs)} negative pixels (per seed)"
        return ("confirmed" if any(negs) else "refuted"), theirs, ours
    if c.kind == "order":
        assert c.better is not None and c.worse is not None
        good, bad = _values(scores, c.better, c.metric), _values(scores, c.worse, c.metric)
        rb, rw = table.get(c.better, {}).get(c.metric), table.get(c.worse, {}).get(c.metric)
        theirs = f"{c.metric} {c.worse} {rw} vs {c.better} {rb}"
        theirs += f" (ratio {rw / rb:.2f})" if rb and rw is not None else ""
        if not good or not bad:
            return "not run", theirs, "–"
        ratio = statistics.fmean(bad) / statistics.fmean(good)
        ours = (
            f"{c.metric} {c.worse} {_summary(bad)} vs {c.better} {_summary(good)} kg m-2 "
            f"(ratio {ratio:.2f})"
        )
        if min(len(good), len(bad)) < 2:
            return "inconclusive (one seed)", theirs, ours
        if max(good) < min(bad):
            return "confirmed", theirs, ours
        if max(bad) < min(good):
            return "refuted", theirs, ours
        return "inconclusive (seed ranges overlap)", theirs, ours
    assert c.row is not None and c.against is not None and c.below is not None
    low, high = _values(scores, c.row, c.metric), _values(scores, c.against, c.metric)
    rr, ra = table.get(c.row, {}).get(c.metric), table.get(c.against, {}).get(c.metric)
    theirs = f"{c.metric} {c.row} {rr} vs {c.against} {ra} (collapse: below {c.below})"
    if not low:
        return "not run", theirs, "–"
    ours = f"{c.metric} {c.row} {_summary(low)}"
    ours += f" vs {c.against} {_summary(high)}" if high else ""
    if len(low) < 2:
        return "inconclusive (one seed)", theirs, ours
    if max(low) < c.below and high and min(high) >= c.below:
        return "confirmed", theirs, ours
    if min(low) >= c.below:
        return "refuted", theirs, ours
    return "inconclusive (seed ranges overlap)", theirs, ours


def format_findings(settled: Sequence[Mapping[str, str]]) -> str:
    """The settled claims as a Markdown table."""
    return markdown_table(
        (
            "claim",
            "the report says",
            "report's numbers",
            "climdown (test, mean ± sd)",
            "verdict",
            "why",
        ),
        [
            (
                c["id"],
                c["claim"],
                c["report"],
                c["climdown"],
                f"**{c['verdict']}**",
                c["why"] or "–",
            )
            for c in settled
        ],
    )
