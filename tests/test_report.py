"""One-page reports: Markdown with PNGs beside it, or one HTML file with the PNGs embedded;
the scores table, the maps, the spectra and the mass budget; ``climdown evaluate --report``."""

from __future__ import annotations

import base64
import json
import re
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402

from climdown import report  # noqa: E402
from climdown.cli import main  # noqa: E402
from climdown.conservation import conservation  # noqa: E402
from climdown.errors import ConfigError, StoreError  # noqa: E402
from climdown.evaluate import markdown_table  # noqa: E402
from climdown.grid import coarsen_dataarray  # noqa: E402
from climdown.testing import tcw_dataarray  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
SCORES = markdown_table(("name", "RMSE"), [("mine", "0.123"), ("bicubic", "0.456")])


@pytest.fixture
def fields() -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """16 x 16 cells of 0.25 deg, one hour at 22 UTC; a downscaling that gains 1% of mass."""
    truth = tcw_dataarray(16, 16, 1, spacing=0.25, origin=(52.0, 4.0), start="2020-01-01T22")
    lr = coarsen_dataarray(truth, 4)
    hr = truth * 1.01 + 0.05
    hr.attrs = truth.attrs
    return lr, hr, truth


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "metrics.jsonl"
    recs = [{"epoch": e, "train_loss": 1.0 / e, "val_rmse": 2.0 - 0.1 * e} for e in (1, 2, 3)]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return log


def test_markdown_report_has_the_table_maps_spectra_budget_and_pngs_beside_it(
    tmp_path: Path, fields: tuple[xr.DataArray, ...]
) -> None:
    lr, hr, truth = fields
    out = tmp_path / "share" / "result.md"
    written = report.field_report(
        out, lr, hr, truth, scores=SCORES, log=_log(tmp_path), title="my run", intro="hello"
    )
    assert written == out
    text = out.read_text()
    assert text.startswith("# my run\n\nhello\n\n## Scores\n\n" + SCORES + "\n")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == ["Scores", "Maps", "Power spectra", "Mass budget", "Training curves"]
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert images == ["result-maps.png", "result-spectra.png", "result-curves.png"]
    for name in images:  # relative links to PNG files beside the page
        assert (out.parent / name).read_bytes()[:8] == PNG
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["result.md", *images])
    # the mass budget: conservation's numbers, in kg, with units in the headers
    budget = conservation(hr, lr)
    assert "| time | mass_lr [kg] | mass_hr [kg] |" in text
    assert f"{float(budget['mass_lr'][0]):.6e}" in text
    assert f"{float(budget['mass_hr'][0]):.6e}" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| 2020-01-01 22:00 UTC |"))
    rel = float(row.split("|")[5])
    assert rel == pytest.approx(float(budget["mass_rel_diff"][0]), rel=1e-2)
    assert 0.01 < rel < 0.02  # the 1% (+ offset) gain shows: it is not a conserving field


def test_a_report_replaces_only_what_climdown_wrote(
    tmp_path: Path, fields: tuple[xr.DataArray, ...]
) -> None:
    """``--report README.md`` must not eat the user's README: a page without climdown's marker,
    or a non-PNG where a figure goes, is refused before anything is written; a report over a
    report (page and figures) is fine."""
    lr, hr, truth = fields
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n")
    page = tmp_path / "notes.html"
    page.write_text("<html>mine</html>")
    for path in (readme, page):
        with pytest.raises(StoreError, match="refusing to replace"):
            report.field_report(path, lr, hr, truth)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "notes.html"]
    assert readme.read_text() == "# my project\n"
    (tmp_path / "x.md").mkdir()  # a folder where the page goes
    with pytest.raises(StoreError, match="not a report page"):
        report.field_report(tmp_path / "x.md", lr, hr, truth)
    out = tmp_path / "run" / "r.md"
    report.field_report(out, lr, hr, truth)
    (out.parent / "r-maps.png").write_text("not a picture")  # a figure path taken over
    with pytest.raises(StoreError, match="not a PNG figure"):
        report.field_report(out, lr, hr, truth)
    (out.parent / "r-maps.png").unlink()
    first = out.read_text()
    report.field_report(out, lr, hr + 1.0, truth)  # a report over a report: replaced
    assert out.read_text() != first and report.MARKER in out.read_text()
    html = tmp_path / "run" / "r.html"
    report.field_report(html, lr, hr, truth)
    report.field_report(html, lr, hr, truth)
    assert report.MARKER in html.read_text()


def test_html_report_is_one_file_with_embedded_pngs(
    tmp_path: Path, fields: tuple[xr.DataArray, ...]
) -> None:
    lr, hr, truth = fields
    out = tmp_path / "result.html"
    report.field_report(out, lr, hr, truth, scores=SCORES + "\n\n- a `note` <b>")
    assert [p.name for p in tmp_path.iterdir()] == ["result.html"]  # nothing beside it
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<h1>climdown report: Total column water</h1>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2  # maps and spectra (no curves without a log)
    assert all(base64.b64decode(data)[:8] == PNG for data in images)
    # the scores table became an HTML table; the list item is escaped, code kept
    assert "<th>name</th><th>RMSE</th>" in page
    assert "<tr><td>mine</td><td>0.123</td></tr>" in page
    assert "<li>a <code>note</code> &lt;b&gt;</li>" in page
    assert "<th>mass_lr [kg]</th>" in page


def test_report_path_must_be_markdown_or_html(
    tmp_path: Path, fields: tuple[xr.DataArray, ...]
) -> None:
    assert report.report_format("a/b.MD") == "markdown"
    assert report.report_format("b.htm") == "html"
    lr, hr, truth = fields
    with pytest.raises(ConfigError, match=r"must end in \.md .* or \.html"):
        report.field_report(tmp_path / "r.pdf", lr, hr, truth)
    assert list(tmp_path.iterdir()) == []  # refused before anything was drawn or written


def test_html_text_tables_lists_paragraphs() -> None:
    html = report._html_text("one\nline `x<y`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- p\n- q")
    assert html.splitlines()[0] == "<p>one line <code>x&lt;y</code></p>"
    assert "<thead><tr><th>a</th><th>b</th></tr></thead>" in html
    assert html.count("<tr>") == 2 and "<ul><li>p</li><li>q</li></ul>" in html


# ---------------------------------------------------------------------------------------
# climdown evaluate --report
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The packaged tiny store (16 x 16 HR patches, 4x) and a CNN trained one step."""
    from climdown.data.recipe import load_recipe
    from climdown.data.store import build_store
    from climdown.train import train

    tmp = tmp_path_factory.mktemp("report")
    recipes = Path(str(resources.files("climdown.study") / "recipes"))
    recipe = yaml.safe_load((recipes / "tiny.yaml").read_text())
    recipe["output"] = str(tmp / "tiny.zarr")
    store = build_store(load_recipe(recipe), progress=False)
    summary = train(
        store,
        epochs=1,
        max_steps=1,
        batch_size=8,
        out=tmp / "run",
        progress=False,
        model_options={"width": 8, "blocks": 1},
    )
    return Path(summary["best"]), Path(store)


def test_climdown_evaluate_writes_the_report(
    run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, store = run
    out = tmp_path / "eval.html"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--store", str(store)]
    assert main([*argv, "--split", "test", "--device", "cpu", "--report", str(out)]) == 0
    printed = capsys.readouterr().out
    table = printed.split(f"\nwrote {out}")[0]
    assert table.startswith("| name |") and "| best.pt |" in table
    page = out.read_text()
    # the same table, as HTML, with the baselines' rows
    for name in ("best.pt", "bicubic", "nearest"):
        assert f"<tr><td>{name}</td>" in page
    # maps, spectra and the training curves (metrics.jsonl lies beside best.pt)
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
    assert "sample 0 of the split: 16 x 16 cells" in page and "valid 2020-01-02 " in page
    assert "(model cnn, constraint softmax, factor 4)" in page
    assert "<th>mass_rel_diff [1]</th>" in page


def test_the_sample_mapped_is_the_store_s(run: tuple[Path, Path]) -> None:
    from climdown.data.store import open_store

    checkpoint, store = run
    fields, config = report._sample_fields(checkpoint, store, "test", 3, "cpu")
    assert config["name"] == "cnn" and config["constraint"] == "softmax"
    ds = open_store(store, "test").isel(sample=3).compute()
    np.testing.assert_allclose(fields["truth"].values, ds["hr"].values, rtol=1e-6)
    np.testing.assert_array_equal(fields["truth"]["lat"].values, ds["lat"].values)
    np.testing.assert_array_equal(fields["lr"]["lon"].values, ds["lon_lr"].values)
    # the trained model's softmax constraint conserves the sample's mass; bicubic does not
    rel = float(np.abs(conservation(fields["hr"], fields["lr"])["mass_rel_diff"]).max())
    rel_bicubic = float(
        np.abs(conservation(fields["bicubic"], fields["lr"])["mass_rel_diff"]).max()
    )
    assert rel < 1e-5 < rel_bicubic
    with pytest.raises(ConfigError, match="holds 16 samples"):
        report._sample_fields(checkpoint, store, "test", 16, "cpu")
