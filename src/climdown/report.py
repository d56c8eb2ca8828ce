"""One-page reports of a downscaling result: scores, maps, spectra and mass budget, to share.

* :func:`write_report`: sections (a heading, Markdown text, a figure) to ``PATH.md`` with each
  figure as a PNG file beside it, or to ``PATH.html``, one self-contained file with the PNGs
  embedded (base64), for e-mail or a wiki;
* :func:`field_report`: the report of fields in hand (coarse input, downscaled, truth): the
  maps (:func:`climdown.plot.compare`), the power spectra (:func:`climdown.plot.spectrum`), the
  mass budget (:func:`climdown.conservation.conservation`), and, when given, a scores table and
  the training curves (:func:`climdown.plot.training_curves`);
* :func:`evaluation_report`: ``climdown evaluate --report``: a checkpoint scored beside the
  baselines on a store split (:func:`climdown.evaluate.evaluate_checkpoint`), one sample of the
  split mapped.

This module assembles and writes: plot draws, evaluate and metrics score, conservation
budgets; nothing here imports matplotlib.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from climdown._version import __version__
from climdown.errors import ConfigError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "Section",
    "report_format",
    "write_report",
    "budget_table",
    "field_report",
    "evaluation_report",
    "holds_marker",
]

#: Resolution of the PNGs in a report (dots per inch).
DPI = 110
_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}


class _Figure(Protocol):
    """What a report needs of a figure (a :class:`matplotlib.figure.Figure`): saving it."""

    def savefig(self, fname: Any, **kwargs: Any) -> None: ...


@dataclass(frozen=True)
class Section:
    """One part of a report.

    Parameters
    ----------
    heading : str
        Its title (a level-2 heading).
    text : str
        Markdown: paragraphs, ``- `` lists, ``code`` spans and pipe tables (as
        :func:`climdown.evaluate.markdown_table` writes them), separated by blank lines.
    figure : matplotlib.figure.Figure, optional
        Drawn under the text.
    name : str
        Short name of the figure's PNG (``report-NAME.png`` beside a Markdown report).
    """

    heading: str
    text: str = ""
    figure: _Figure | None = None
    name: str = "figure"


def report_format(path: str | os.PathLike[str]) -> str:
    """``"markdown"`` or ``"html"``, from the report path's suffix.

    Raises
    ------
    ConfigError
        For any other suffix, naming the two that work.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ConfigError(
            f"a report is Markdown or HTML: the path must end in .md (PNG files beside it) or "
            f".html (one file, images embedded), got {str(path)!r}"
        )
    return _FORMATS[suffix]


def write_report(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    *,
    intro: str = "",
) -> Path:
    """Write a one-page report as Markdown (PNGs beside it) or HTML (one file).

    Parameters
    ----------
    path : path
        ``*.md``: the Markdown page; each section's figure is written beside it as
        ``<stem>-<name>.png`` and linked relatively, so the folder can be shared as is.
        ``*.html``: one self-contained page, the figures embedded as base64 PNGs.
        Parent folders are created.
    title : str
        The page title.
    sections : sequence of Section
        In order.
    intro : str
        Markdown text under the title.

    Returns
    -------
    pathlib.Path
        The page written.

    Raises
    ------
    ConfigError
        If ``path`` ends in neither ``.md`` nor ``.html``.
    """
    fmt = report_format(path)
    out = Path(path)
    _check_replaceable(out, sections if fmt == "markdown" else ())
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "markdown":
        out.write_text(_markdown(out, title, sections, intro), encoding="utf-8")
    else:
        out.write_text(_html(title, sections, intro), encoding="utf-8")
    return out


#: Written into every report page; a page is replaced only if it carries it.
MARKER = "written by climdown's report writer, which may replace this file"


def _check_replaceable(out: Path, sections: Sequence[Section]) -> None:
    """Refuse, before anything is written, to replace a file climdown did not write there: a
    page without :data:`MARKER` (a README.md, someone's notes) or a figure path holding
    something other than a PNG."""
    from climdown.plot import is_png

    checks: list[tuple[Path, str, Callable[[Path], bool]]] = [
        (out, "a report page", lambda p: holds_marker(p, MARKER))
    ]
    checks += [
        (_figure_path(out, s), "a PNG figure", is_png) for s in sections if s.figure is not None
    ]
    for p, what, written_here in checks:
        if os.path.lexists(p) and not written_here(p):
            raise StoreError(
                f"{str(p)!r} exists and is not {what} climdown wrote; refusing to replace it. "
                "Choose another report path (e.g. report.md in a new folder), or move it away"
            )


def holds_marker(path: str | os.PathLike[str], *markers: str) -> bool:
    """Whether ``path`` is a regular file (not a link, not a folder) holding one of
    ``markers``: a page climdown wrote and may replace (a report page, :data:`MARKER`; a
    study page, :data:`climdown.study.runner.PAGE_MARKER`)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    text = path.read_bytes()
    return any(m.encode() in text for m in markers)


def _figure_path(out: Path, sec: Section) -> Path:
    return out.with_name(f"{out.stem}-{sec.name}.png")


def _png(figure: _Figure) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _markdown(out: Path, title: str, sections: Sequence[Section], intro: str) -> str:
    parts = [f"# {title}"] + ([intro.strip()] if intro.strip() else [])
    for sec in sections:
        parts.append(f"## {sec.heading}")
        if sec.text.strip():
            parts.append(sec.text.strip())
        if sec.figure is not None:
            png = _figure_path(out, sec)
            png.write_bytes(_png(sec.figure))
            parts.append(f"![{sec.heading}]({png.name})")
    parts.append(f"<!-- {MARKER} -->")
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
code { background: #f4f4f4; padding: 0 0.2em; }
img { max-width: 100%; }
"""


def _html(title: str, sections: Sequence[Section], intro: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", _html_text(intro)]
    for sec in sections:
        body.append(f"<h2>{html.escape(sec.heading)}</h2>")
        body.append(_html_text(sec.text))
        if sec.figure is not None:
            data = base64.b64encode(_png(sec.figure)).decode("ascii")
            alt = html.escape(sec.heading, quote=True)
            body.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="generator" content="{MARKER}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


def _inline(text: str) -> str:
    """Escaped text with ``code`` spans and **bold**."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _html_text(text: str) -> str:
    """The little Markdown a report uses: paragraphs, ``- `` lists and pipe tables."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    out = []
    for block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if all(ln.lstrip().startswith("|") for ln in lines) and len(lines) >= 2:
            head, rows = _cells(lines[0]), [_cells(ln) for ln in lines[2:]]
            th = "".join(f"<th>{_inline(c)}</th>" for c in head)
            trs = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>\n" for row in rows
            )
            out.append(f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}</tbody>\n</table>")
        elif all(ln.lstrip().startswith("- ") for ln in lines):
            items = "".join(f"<li>{_inline(ln.lstrip()[2:])}</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines))}</p>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# The report of fields in hand
# ---------------------------------------------------------------------------------------
def _format_value(value: Any, units: str) -> str:
    v = np.asarray(value)
    if np.issubdtype(v.dtype, np.integer):
        return f"{int(v)}"
    x = float(v)
    if units == "kg":
        return f"{x:.6e}"
    return f"{x:.2e}" if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4) else f"{x:.4g}"


def budget_table(budget: xr.Dataset) -> str:
    """The mass budget (:func:`climdown.conservation.conservation`) as a Markdown table.

    One row per index of its dims (e.g. per time step), one column per variable headed with
    its units, and a list under it of what each column is (its ``long_name``).
    """
    from climdown.evaluate import markdown_table
    from climdown.plot import format_time

    budget = budget.compute()
    names = [str(n) for n in budget.data_vars]
    dims = [str(d) for d in budget.dims]
    flat = budget.stack(_row=dims) if dims else budget.expand_dims("_row")
    headers = [" / ".join(dims) if dims else "field"] + [
        f"{n} [{budget[n].attrs['units']}]" if budget[n].attrs.get("units") else n for n in names
    ]
    rows = []
    for i in range(flat.sizes["_row"]):
        row = flat.isel(_row=i)
        label = (
            ", ".join(format_time(row[d].values) for d in dims if d in row.coords)
            if dims
            else "downscaled"
        )
        label = label or str(i)
        rows.append(
            [label]
            + [_format_value(row[n].values, str(budget[n].attrs.get("units", ""))) for n in names]
        )
    notes = [
        f"- `{n}`: {budget[n].attrs['long_name']}"
        for n in names
        if budget[n].attrs.get("long_name")
    ]
    return markdown_table(headers, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def field_report(
    path: str | os.PathLike[str],
    lr: xr.DataArray,
    hr: xr.DataArray,
    truth: xr.DataArray,
    *,
    scores: str | None = None,
    baselines: Mapping[str, xr.DataArray] | None = None,
    log: str | os.PathLike[str] | None = None,
    time: Any = None,
    title: str | None = None,
    intro: str = "",
) -> Path:
    """A one-page report of a downscaled field beside its coarse input and its truth.

    Sections: the scores (``scores``, when given), the maps LR | downscaled | truth | error
    (:func:`climdown.plot.compare`, at ``time``), the power spectra of the truth, the
    downscaled field, the ``baselines`` and the LR input (:func:`climdown.plot.spectrum`, in
    cycles per km, averaged over time steps), the mass budget of ``hr`` against ``lr`` in kg
    (:func:`climdown.conservation.conservation`, each time step) and, with ``log``, the
    training curves.

    Parameters
    ----------
    path : path
        ``*.md`` (PNG files beside it) or ``*.html`` (one file); see :func:`write_report`.
    lr, hr, truth : xarray.DataArray
        The coarse input, the downscaled field (on ``lr``'s grid refined) and the truth on
        ``hr``'s grid, in kg m-2 (or a water depth), with latitude/longitude coordinates.
    scores : str, optional
        Markdown (e.g. :func:`climdown.evaluate.evaluate_checkpoint`'s table and a note).
    baselines : mapping of name -> DataArray, optional
        Other downscalings of ``lr`` to add to the spectra (e.g. ``{"bicubic": ...}``).
    log : path, optional
        A training log (``metrics.jsonl``) to draw.
    time : optional
        The time step to map (see :func:`climdown.plot.compare`); the first by default.
    title : str, optional
        Page title; ``"climdown report: <variable>"`` by default.
    intro : str
        Markdown under the title.

    Returns
    -------
    pathlib.Path
        The page written.

    Raises
    ------
    ConfigError
        If ``path`` ends in neither ``.md`` nor ``.html`` (before anything is drawn).
    """
    from climdown import plot
    from climdown.conservation import conservation

    report_format(path)
    name = str(truth.attrs.get("long_name") or truth.name or "field")
    sections = []
    if scores is not None:
        sections.append(Section("Scores", scores))
    maps = plot.compare(lr, hr, truth, time=time)
    sections.append(
        Section(
            "Maps",
            "Coarse input | downscaled | truth | error (downscaled - truth; red: too high). The "
            "three fields share one colour scale; the error scale spans ±the 99th percentile "
            "of |error|, so a few cells saturate rather than one outlier setting the scale.",
            maps,
            "maps",
        )
    )
    fields = {"truth": truth, "downscaled": hr, **(baselines or {}), "LR": lr}
    sections.append(
        Section(
            "Power spectra",
            "Radially averaged power spectra (averaged over time steps). Wavenumber in cycles "
            "per km: each field's cell size is the square root of its mean cell area on the "
            "sphere, so it shrinks with the cosine of latitude. A downscaled curve under the "
            "truth's at high wavenumbers is smoother than the truth.",
            plot.spectrum(fields),
            "spectra",
        )
    )
    sections.append(
        Section(
            "Mass budget",
            "Total mass of the downscaled field against its coarse input, in kg, and the worst "
            "coarse cell: a mass-conserving downscaling leaves only float round-off.\n\n"
            + budget_table(conservation(hr, lr)),
        )
    )
    if log is not None:
        sections.append(
            Section("Training curves", f"From `{log}`.", plot.training_curves(log), "curves")
        )
    return write_report(path, title or f"climdown report: {name}", sections, intro=intro)


# ---------------------------------------------------------------------------------------
# climdown evaluate --report
# ---------------------------------------------------------------------------------------
def _sample_fields(
    checkpoint: str | os.PathLike[str],
    store: str | os.PathLike[str],
    split: str,
    sample: int,
    device: str,
) -> tuple[dict[str, xr.DataArray], dict[str, Any]]:
    """One sample of a store split as DataArrays: ``lr``, ``truth``, the checkpoint's ``hr``
    and ``bicubic``; and the model's configuration."""
    import torch
    import xarray as xr

    from climdown.checkpoint import load_checkpoint
    from climdown.data.dataset import PatchDataset
    from climdown.data.store import open_store
    from climdown.nn.device import pick_device
    from climdown.nn.models import get_model

    data = PatchDataset(store, split)
    if not -len(data) <= int(sample) < len(data):
        raise ConfigError(
            f"sample {sample} is not in the {split!r} split of {str(store)!r}, which holds "
            f"{len(data)} samples; pick sample=0..{len(data) - 1}"
        )
    item = data[int(sample)]
    dev = pick_device(device)
    model, _ = load_checkpoint(
        checkpoint, device=dev, expect_factor=data.factor, expect_variable=data.variable
    )
    bicubic = get_model("bicubic", factor=data.factor, constraint="none")
    x, area = item["lr"][None], item["area"][None]  # [1, T, C, h, w], [1, H, W]
    with torch.no_grad():
        pred = model(x.to(dev), area.to(dev)).cpu()[0, :, 0].numpy()  # [T, H, W]
        bic = bicubic(x, area)[0, :, 0].numpy()
    coords = open_store(store, split).isel(sample=int(sample)).compute()
    attrs = {"units": data.units, "long_name": str(data.attrs.get("long_name") or data.variable)}
    times = np.asarray(coords["time"].values)

    def field(values: Any, lat: str, lon: str) -> xr.DataArray:
        return xr.DataArray(
            np.asarray(values, dtype=np.float64),
            dims=("time", "lat", "lon"),
            coords={
                "time": times,
                "lat": np.asarray(coords[lat].values),
                "lon": np.asarray(coords[lon].values),
            },
            name=data.variable,
            attrs=attrs,
        )

    fields = {
        "lr": field(item["lr"][:, 0].numpy(), "lat_lr", "lon_lr"),
        "truth": field(item["hr"][:, 0].numpy(), "lat", "lon"),
        "hr": field(pred, "lat", "lon"),
        "bicubic": field(bic, "lat", "lon"),
    }
    return fields, dict(getattr(model, "config", {}))


def evaluation_report(
    checkpoint: str | os.PathLike[str],
    store: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    split: str = "val",
    out: str | os.PathLike[str] | None = None,
    device: str = "auto",
    sample: int = 0,
) -> str:
    """Score a checkpoint beside the baselines and write the one-page report of it.

    The scores table is :func:`climdown.evaluate.evaluate_checkpoint`'s (every sample of the
    split); the maps, spectra and mass budget are those of one sample of the split,
    downscaled by the checkpoint (spectra with bicubic beside it); the training curves are
    drawn when the run's ``metrics.jsonl`` lies beside the checkpoint.

    Parameters
    ----------
    checkpoint : path
        A checkpoint (``climdown train``'s ``best.pt``).
    store : path
        The store to score on (``climdown build``).
    path : path
        The report: ``*.md`` (PNG files beside it) or ``*.html`` (one file).
    split : str
        The store's split (``"train"``, ``"val"``, ``"test"``).
    out : path, optional
        Folder for ``metrics.csv`` / ``metrics.md`` too (see ``evaluate_checkpoint``).
    device : str
        ``"auto"`` or a torch device string.
    sample : int
        The sample of the split to map.

    Returns
    -------
    str
        The scores table (Markdown), as ``evaluate_checkpoint`` returns it.

    Raises
    ------
    ConfigError
        If ``path`` ends in neither ``.md`` nor ``.html`` (checked before any scoring), or the
        split has no sample ``sample``.
    CheckpointError
        If the checkpoint's factor or variable is not the store's.
    """
    from climdown.evaluate import evaluate_checkpoint
    from climdown.plot import format_time

    report_format(path)  # before minutes of scoring
    table = evaluate_checkpoint(checkpoint, store, split=split, out=out, device=device)
    fields, config = _sample_fields(checkpoint, store, split, sample, device)
    truth = fields["truth"]
    times = np.asarray(truth["time"].values)
    log = Path(checkpoint).with_name("metrics.jsonl")
    lat, lon = truth["lat"].values, truth["lon"].values
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    words = {"name": "model", "constraint": "constraint", "factor": "factor"}
    model = ", ".join(f"{w} {config[k]}" for k, w in words.items() if k in config)
    intro = (
        f"Checkpoint `{checkpoint}` ({model}) on store `{store}`, split `{split}`; written by "
        f"climdown {__version__} on {now}."
    )
    scores = (
        f"{table}\n\nScores over every sample of the `{split}` split, beside the interpolation "
        "baselines (and bicubic with the checkpoint's constraint), in the field's units "
        f"({truth.attrs.get('units', '')}); `mass viol. (rel)` is the worst coarse cell's "
        "violation relative to the mean coarse value."
    )
    where = (
        f"Maps, spectra and the mass budget below are of sample {sample} of the split: "
        f"{len(lat)} x {len(lon)} cells, latitude {min(lat):.4g}..{max(lat):.4g}, longitude "
        f"{min(lon):.4g}..{max(lon):.4g}, valid {format_time(times[-1])}."
    )
    field_report(
        path,
        fields["lr"],
        fields["hr"],
        truth,
        scores=f"{scores}\n\n{where}",
        baselines={"bicubic": fields["bicubic"]},
        log=log if log.is_file() else None,
        time=times[-1],
        title=f"{Path(checkpoint).name} on {Path(store).name} ({split})",
        intro=intro,
    )
    return table
