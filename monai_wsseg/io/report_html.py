"""A static HTML report of a cohort run: each slide's map over its thumbnail with its metrics, the pooled
metrics, the (α, β) matrix when a sweep is given, and links to the TIFF and GeoJSON outputs
(:func:`build_report`; ``scripts/report.py`` is its command line).

Inputs are the folders the bundles and scripts write:

* ``maps_dir``: a cohort inference output (``<stem>.png`` map over the thumbnail, ``<stem>.tif``,
  ``<stem>.geojson``, optionally ``<stem>.json`` slide reports);
* ``evaluation_dir`` (optional): ``evaluation.csv`` of ``evaluate.json``. Rows with ``scope`` ``slide``
  are matched to maps by file stem; ``pooled`` / ``location`` / ``validation`` rows form the pooled
  table. A CSV without ``scope`` (the WSSS patch evaluation) is shown whole as the pooled table;
* ``sweep_dir`` (optional): an (α, β) sweep's output (``sweep.csv``, ``sweep.png``; :mod:`monai_wsseg.mil.sweep`).

The report links its images and files by relative path (move the folders together), or embeds the
images (``embed``) for a single file to share. An inline script marks images that fail to load:
they get a visible warning, and ``<body data-images-broken="N" data-images-total="M">`` lets a test
(or a browser's DOM dump) read the count. Written atomically; standard library only.
"""

from __future__ import annotations

import base64
import csv
import html
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_wsseg.utils.atomic import write_text_atomically

__all__ = ["SLIDE_FIGURES", "SWEEP_FIGURES", "Links", "build_report", "fmt", "read_csv", "slide_cards",
           "sweep_section", "table"]

#: Per-slide figures shown under each thumbnail (column of evaluation.csv, label), when present.
SLIDE_FIGURES: tuple[tuple[str, str], ...] = (
    ("label", "slide label"), ("auc_without_background", "pixel AUC (tissue)"),
    ("auc_with_background", "pixel AUC (with background)"), ("precision", "precision"), ("recall", "recall"),
    ("f1", "F1"), ("dice", "Dice"), ("threshold", "threshold"), ("error", "error"),
)
#: Sweep figures shown as α × β matrices (column of sweep.csv, title).
SWEEP_FIGURES: tuple[tuple[str, str], ...] = (
    ("auc_without_background", "pixel AUC (tissue)"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 20px; background: #fff; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; font-size: 14px; }
th { background: #eee; } td.name, th.name { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
.card img { width: 100%; height: auto; border: 1px solid #eee; }
.card h3 { font-size: 15px; margin: 0 0 6px; word-break: break-all; }
.card dl { display: grid; grid-template-columns: auto auto; gap: 2px 12px; font-size: 13px; margin: 8px 0; }
.card dt { color: #555; } .card dd { margin: 0; text-align: right; }
.links a { margin-right: 12px; font-size: 13px; }
.broken { color: #b00; font-weight: bold; }
#image-status { padding: 8px; margin-bottom: 12px; display: none; background: #fee; border: 1px solid #b00; }
.matrix td { min-width: 56px; }
.matrices { display: flex; flex-wrap: wrap; gap: 0 32px; }
.figure img { max-width: 100%; height: auto; }
"""

#: Marks images that did not load: a visible warning, and counts on <body> for tests and DOM dumps.
CHECK_IMAGES = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  broken.forEach(function (img) {
    var note = document.createElement("div");
    note.className = "broken";
    note.textContent = "image not found: " + img.getAttribute("data-src");
    img.parentNode.insertBefore(note, img.nextSibling);
  });
  document.body.setAttribute("data-images-total", images.length);
  document.body.setAttribute("data-images-broken", broken.length);
  if (broken.length) {
    var status = document.getElementById("image-status");
    status.textContent = broken.length + " of " + images.length + " images could not be loaded";
    status.style.display = "block";
  }
});
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as ``{column: text}``."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt(value: str | float | None) -> str:
    """Numbers to 4 decimals (integers as they are), empty for missing, ``n/a`` for NaN."""
    if value is None or value == "":
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "n/a"
    return str(int(number)) if number.is_integer() and "." not in str(value) else f"{number:.4f}"


def table(rows: Sequence[Mapping[str, str]], columns: Sequence[str] | None = None, name_columns: int = 1,
          labels: Mapping[str, str] | None = None) -> str:
    """An HTML table of ``rows`` (columns that are empty in every row are left out; headers from ``labels``)."""
    if not rows:
        return "<p>none</p>"
    labels = labels or {}
    columns = [c for c in (columns or list(rows[0])) if any(str(r.get(c, "")).strip() for r in rows)]
    head = "".join(f'<th class="{"name" if i < name_columns else ""}">{html.escape(labels.get(c, c))}</th>'
                   for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(f'<td class="{"name" if i < name_columns else ""}">'
                                    f'{html.escape(fmt(r.get(c)))}</td>'
                                    for i, c in enumerate(columns)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Links:
    """Paths as the report refers to them: relative to the report's folder, or embedded as data URIs."""

    def __init__(self, report_dir: Path, embed: bool) -> None:
        self.report_dir, self.embed = report_dir, embed

    def href(self, path: Path) -> str:
        """``path`` relative to the report's folder, POSIX style, HTML-escaped."""
        return html.escape(Path(os.path.relpath(path.resolve(), self.report_dir.resolve())).as_posix())

    def img(self, path: Path, alt: str) -> str:
        """An ``<img>`` of ``path``; ``data-src`` keeps the relative path for the page's load check."""
        shown = self.href(path)
        src = shown
        if self.embed and path.is_file():
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        return f'<img src="{src}" data-src="{shown}" alt="{html.escape(alt)}" loading="eager">'


def slide_cards(maps_dir: Path, slide_rows: Mapping[str, Mapping[str, str]], links: Links) -> tuple[str, int]:
    """One card per slide of ``maps_dir`` (and per evaluated slide without a map); returns (html, count)."""
    stems = sorted({p.stem for p in maps_dir.glob("*.png")} | {p.stem for p in maps_dir.glob("*.tif")}
                   | set(slide_rows))
    cards = []
    for stem in stems:
        row = slide_rows.get(stem, {})
        figures = "".join(f"<dt>{html.escape(label)}</dt><dd>{html.escape(fmt(row.get(col)))}</dd>"
                          for col, label in SLIDE_FIGURES if str(row.get(col, "")).strip())
        png = maps_dir / f"{stem}.png"
        picture = (links.img(png, f"{stem}: map over the slide") if png.exists()
                   else '<p class="broken">no map image</p>')
        files = [(suffix, label) for suffix, label in ((".tif", "TIFF map"), (".geojson", "GeoJSON regions"),
                                                         (".json", "slide report"))
                 if (maps_dir / f"{stem}{suffix}").exists()]
        anchors = "".join(f'<a href="{links.href(maps_dir / (stem + s))}">{label}</a>' for s, label in files)
        cards.append(f'<div class="card"><h3>{html.escape(stem)}</h3>{picture}'
                     f'<dl>{figures}</dl><div class="links">{anchors}</div></div>')
    return f'<div class="grid">{"".join(cards)}</div>', len(stems)


def sweep_section(sweep_dir: Path, links: Links) -> str:
    """The (α, β) matrices of a sweep: one table per figure (rows α, columns β), and ``sweep.png``."""
    parts = ["<h2>(α, β) matrix</h2>"]
    csv_path = sweep_dir / "sweep.csv"
    if csv_path.is_file():
        rows = [r for r in read_csv(csv_path) if r.get("alpha") and r.get("beta")]
        alphas = sorted({float(r["alpha"]) for r in rows})
        betas = sorted({float(r["beta"]) for r in rows})
        cell = {(float(r["alpha"]), float(r["beta"])): r for r in rows}
        tables = []
        for col, title in SWEEP_FIGURES:
            head = "".join(f"<th>β = {b:g}</th>" for b in betas)
            body = "".join(f"<tr><th>α = {a:g}</th>" + "".join(
                f"<td>{html.escape(fmt(cell.get((a, b), {}).get(col)))}</td>" for b in betas) + "</tr>" for a in alphas)
            tables.append(f'<div><h3>{html.escape(title)}</h3><table class="matrix"><tr><th></th>{head}</tr>'
                          f"{body}</table></div>")
        parts.append(f'<div class="matrices">{"".join(tables)}</div>')
    if (sweep_dir / "sweep.png").is_file():
        parts.append(f'<div class="figure">{links.img(sweep_dir / "sweep.png", "(alpha, beta) matrices")}</div>')
    if len(parts) == 1:
        parts.append(f"<p>{html.escape(str(sweep_dir))} holds no sweep.csv or sweep.png</p>")
    return "\n".join(parts)


def build_report(maps_dir: Path, output: Path, evaluation_dir: Path | None = None, sweep_dir: Path | None = None,
                 title: str = "Cohort report", embed: bool = False) -> Path:
    """Write the HTML report to ``output`` (atomically) and return its path."""
    if not maps_dir.is_dir():
        raise FileNotFoundError(f"{maps_dir}: no such maps folder")
    links = Links(output.parent, embed)
    slide_rows: dict[str, dict[str, str]] = {}
    pooled_html = "<p>no evaluation given</p>"
    if evaluation_dir is not None:
        csv_path = evaluation_dir / "evaluation.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path}: evaluation table not found")
        rows = read_csv(csv_path)
        if rows and "scope" in rows[0]:
            slide_rows = {Path(r["slide"]).stem: r for r in rows if r["scope"] == "slide"}
            pooled = [r for r in rows if r["scope"] != "slide"]
            columns = ["scope", "location", "slides"] + [c for c, _ in SLIDE_FIGURES if c not in ("label", "error")]
            pooled_html = table(pooled, columns, name_columns=2, labels=dict(SLIDE_FIGURES))
        else:
            pooled_html = table(rows)
    cards, n_slides = slide_cards(maps_dir, slide_rows, links)
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{n_slides} slides · maps: {html.escape(str(maps_dir))} · written '
        f'{time.strftime("%Y-%m-%d %H:%M")}</p>',
        '<div id="image-status"></div>',
        "<h2>Pooled metrics</h2>", pooled_html,
    ]
    if sweep_dir is not None:
        sections.append(sweep_section(sweep_dir, links))
    sections += ["<h2>Slides</h2>", cards]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style><script>{CHECK_IMAGES}</script></head>\n<body>\n" + "\n".join(sections)
            + "\n</body></html>\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(output, page)
