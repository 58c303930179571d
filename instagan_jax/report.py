"""`instagan report RUN`: one static HTML page, RUN/report.html, about a training run.

It shows the loss curves of metrics.jsonl (generator terms, discriminators, learning rate), the latest
sample grids, every eval JSON in RUN/eval/ as a table and the run's config. Images are embedded as
data URIs, so the page is a single file that can be copied anywhere. A part the run does not have yet
(no metrics, samples or eval) is named on the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from PIL import Image

from instagan_jax.eval.tables import notes as table_notes
from instagan_jax.evaluate import table_rows
from instagan_jax.visuals import write_text

log = logging.getLogger(__name__)

CURVES = {  # figure title -> metrics.jsonl keys
    "Generator loss terms": ("G", "G_A", "G_B", "cyc_A", "cyc_B", "idt_A", "idt_B", "ctx_A", "ctx_B"),
    "Discriminators": ("D_A", "D_B"),
    "Learning rate": ("train/lr",),
}
SAMPLES_SHOWN = 3
SAMPLE_MIN_WIDTH = 720  # sample grids narrower than this (small training images) are shown scaled up
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
         "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{margin:4px;image-rendering:pixelated}"
         "pre{background:#f4f4f4;padding:1em}.missing{color:#a00}")


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(rows of a metrics.jsonl file, the numbers of the lines skipped: half-written or not a row)."""
    rows, skipped = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
        elif line.strip():
            skipped.append(number)
    return rows, skipped


def curve_png(rows: list[dict[str, Any]], keys: tuple[str, ...], title: str) -> bytes | None:
    """A PNG of `keys` against step (matplotlib, Agg), or None when no row has any of them."""
    from matplotlib.figure import Figure

    present = [k for k in keys if any(k in row for row in rows)]
    if not present:
        return None
    figure = Figure(figsize=(7, 3.2), dpi=100)
    axes = figure.add_subplot()
    for key in present:
        points = [(row["step"], row[key]) for row in rows if key in row]
        axes.plot(*zip(*points), label=key, linewidth=1)
    axes.set(title=title, xlabel="iteration")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncol=3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def image_tag(png: bytes, alt: str, min_width: int = 0) -> str:
    """An <img> with the PNG embedded as a data URI; an image narrower than `min_width` is shown scaled
    up by a whole factor, nearest neighbour (pixels stay sharp squares)."""
    width = Image.open(io.BytesIO(png)).width
    scale = max(1, min_width // width) if width else 1
    size = f' width="{width * scale}" style="image-rendering:pixelated"' if scale > 1 else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def html_table(rows: list[tuple[str, ...]]) -> str:
    """A table whose first row is the header."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def curves_section(run: Path) -> str:
    path = run / "metrics.jsonl"
    rows, skipped = read_metrics(path) if path.is_file() else ([], [])
    note = ""
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        note = missing(f"{len(skipped)} line(s) of {path} are not metrics rows and were skipped (line {shown})")
        log.warning("report: %d line(s) of %s are not metrics rows and were skipped (line %s)", len(skipped),
                    path, shown)
    if not rows:
        return note + missing(f"no metrics yet: {path} is missing or empty (training writes it every "
                              "log.log_every iterations)")
    pngs = [(title, curve_png(rows, keys, title)) for title, keys in CURVES.items()]
    return note + "".join(image_tag(png, title) for title, png in pngs if png is not None)


def samples_section(run: Path) -> str:
    grids = sorted((run / "samples").glob("step_*.png"))[-SAMPLES_SHOWN:]
    if not grids:
        return missing(f"no sample grids yet in {run / 'samples'} (training writes one every log.sample_every "
                       "iterations)")
    return "".join(f"<h3>{html.escape(p.stem)}</h3>{image_tag(p.read_bytes(), p.name, SAMPLE_MIN_WIDTH)}"
                   for p in reversed(grids))


def eval_section(run: Path) -> str:
    files = sorted((run / "eval").glob("*.json"))
    if not files:
        return missing(f"no evaluation yet in {run / 'eval'}: run `instagan eval --workdir {run}`")
    parts = []
    for path in reversed(files):
        try:
            results = json.loads(path.read_text())
            body = "".join(f"<p>{html.escape(n)}</p>" for n in table_notes(results)) + html_table(table_rows(results))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            body = missing(f"cannot read {path}: {err!r}")
        parts.append(f"<h3>{html.escape(path.name)}</h3>{body}")
    return "".join(parts)


def config_section(run: Path) -> str:
    path = run / "config.json"
    if not path.is_file():
        return missing(f"no {path}")
    return f"<pre>{html.escape(path.read_text())}</pre>"


def render(run: Path) -> str:
    """The report page of a run folder."""
    sections = [("Loss curves", curves_section), ("Latest samples", samples_section),
                ("Evaluation", eval_section), ("Config", config_section)]
    body = "".join(f"<h2>{title}</h2>{section(run)}" for title, section in sections)
    title = html.escape(f"instagan report: {run.resolve()}")
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>'
            f"</head><body><h1>{title}</h1>{body}</body></html>\n")


def write_report(workdir: str | Path) -> Path:
    """Write RUN/report.html atomically and return its path; FileNotFoundError if RUN holds nothing of a run."""
    run = Path(workdir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} not found")
    parts = ("config.json", "metrics.jsonl", "samples", "eval", "checkpoints")
    if not any((run / name).exists() for name in parts):
        raise FileNotFoundError(f"{run} is not a training workdir: it has none of {', '.join(parts)}")
    return write_text(run / "report.html", render(run))
