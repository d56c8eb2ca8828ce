"""Score the packaged defaults on whole held-out fields, the way a user applies them.

The build (``python -m climdown.study.build_pretrained``) scores every shipped model on the
held-out *patches* of its store (32 x 32 fine cells, each downscaled on its own). A user instead
downscales a whole field, where every coarse cell has its real neighbours as context. This script
does that on the packaged real ERA5 samples, at each factor:

* global 1.5 deg TCWV (2020-06-01, the south-pole row dropped): coarsened ``f`` x, downscaled back
  in one piece (periodic in longitude), scored on the held-out longitudes 276-360E only;
* Rhine 0.25 deg TCW (2020-01-01, cropped to 40 x 40): the held-out hours 20-23 UTC, each
  coarsened and downscaled whole.

Models: bicubic, bicubic + softmax, pycnophylactic and the packaged default for softmax
(``model=None``: picked by the input's spacing; it may be a fallback baseline, which the
``climdown`` logger says). Scores: area-weighted RMSE in kg m-2 (and relative to bicubic) and
blockiness (1 for the truth's own texture), over the held-out part only.

A global default that ships its *final fit* (``final_fit`` in the packaged index:
trained on every longitude but the validation band, 276-360E included) has seen the
"held-out" longitudes, so its row is labelled ``(final fit: trained here)``: that score is not
a held-out one. Its held-out twin (the same recipe and seeds without 276-360E) is what the
build's held-out table scores.

Run::

    python examples/held_out_sector.py --out example-out     # factors 2, 4, 8
    python examples/held_out_sector.py --quick --out DIR     # global 4x, no pycnophylactic

It writes ``held_out_sector.md`` (the table) to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import xarray as xr

import climdown  # noqa: F401  (registers the .climdown accessor)
from climdown import metrics
from climdown.data.sources import find_variable, open_sample
from climdown.grid import Grid

#: (label, model, constraint); model None = the packaged default
MODELS = [
    ("bicubic", "bicubic", "none"),
    ("bicubic + softmax", "bicubic", "softmax"),
    ("pycnophylactic", "pycnophylactic", "softmax"),
    ("packaged default + softmax", None, "softmax"),
]


def held_out_fields() -> dict[str, tuple[xr.DataArray, np.ndarray]]:
    """Per sample: (truth, its cell areas [lat, lon] with 0 outside the held-out part)."""
    g = open_sample("global")
    glob = g[find_variable(g)].isel(latitude=slice(0, 120))  # 120 = 8 x 15 rows
    r = open_sample("rhine")
    rhine = r[find_variable(r)].isel(latitude=slice(0, 40), longitude=slice(0, 40))
    rhine = rhine.isel(time=slice(20, 24))  # the held-out hours: every cell of them counts
    fields = {
        "global 1.5 deg, held-out 276-360E": (glob, glob.longitude.values >= 276.0),
        "Rhine 0.25 deg, held-out 20-23 UTC": (rhine, True),
    }
    return {
        name: (da, np.where(held_out, Grid(da.latitude.values, da.longitude.values).area, 0.0))
        for name, (da, held_out) in fields.items()
    }


def trained_here(lr: xr.DataArray, factor: int, constraint: str) -> bool:
    """Whether the packaged default chosen for ``lr`` is a trained final fit, which saw the
    held-out longitudes of the global sample in training."""
    from climdown.pretrained import index, select

    spacing = Grid(lr.latitude.values, lr.longitude.values).spacing
    chosen = select(factor, constraint, spacing)
    return chosen.fallback is None and bool(index()[chosen.key].get("final_fit"))


def score(
    hr: xr.DataArray, truth: xr.DataArray, weights: np.ndarray, factor: int
) -> tuple[float, float]:
    """(area-weighted RMSE over the held-out cells (``weights`` > 0), blockiness over their
    columns, which start and end on coarse-block edges)."""
    rmse = metrics.rmse(hr.values, truth.values, area=weights)
    cols = np.flatnonzero((weights > 0).any(axis=0))
    sl = slice(cols[0], cols[-1] + 1)
    return rmse, metrics.blockiness(hr.values[..., sl], factor)


def run(factors: list[int], models: list[tuple[str, str | None, str]]) -> list[dict]:
    rows = []
    for name, (truth, weights) in held_out_fields().items():
        for f in factors:
            lr = truth.climdown.coarsen(f)
            _, own = score(truth, truth, weights, f)  # the truth's own texture, for reference
            rows.append(
                {
                    "data": name,
                    "factor": f,
                    "model": "truth",
                    "rmse": 0.0,
                    "vs": float("nan"),
                    "blockiness": own,
                }
            )
            base = None
            for label, model, constraint in models:
                hr = lr.climdown.downscale(factor=f, constraint=constraint, model=model)
                if model is None and trained_here(lr, f, constraint):
                    label = f"{label} (final fit: trained here)"
                rmse, blk = score(hr, truth, weights, f)
                base = rmse if base is None else base
                rows.append(
                    {
                        "data": name,
                        "factor": f,
                        "model": label,
                        "rmse": rmse,
                        "vs": 100.0 * (rmse / base - 1.0),
                        "blockiness": blk,
                    }
                )
                print(
                    f"{name} {f}x {label}: RMSE {rmse:.4f} kg m-2 "
                    f"({rows[-1]['vs']:+.1f}% vs bicubic), blockiness {blk:.2f}",
                    flush=True,
                )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | factor | model | RMSE area-wt (kg m-2) | vs bicubic | blockiness |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['factor']}x | {r['model']} | {r['rmse']:.4f} | "
            f"{'–' if r['model'] == 'truth' else format(r['vs'], '+.1f') + '%'} | "
            f"{r['blockiness']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("example-out"))
    p.add_argument("--quick", action="store_true", help="4x only, without pycnophylactic")
    a = p.parse_args()
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    factors = [4] if a.quick else [2, 4, 8]
    models = [m for m in MODELS if not (a.quick and m[1] == "pycnophylactic")]
    rows = run(factors, models)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "held_out_sector.md").write_text(markdown(rows))
    print(f"wrote {a.out / 'held_out_sector.md'}")


if __name__ == "__main__":
    main()
