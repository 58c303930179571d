"""`instagan eval`'s results as a plain-text table: one column per direction, with its notes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from instagan_jax.eval.metrics import shape_summary


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}f}"


def quartiles(d: dict[str, Any]) -> str:
    return f"{number(d['mean'])} [{number(d['q25'])} {number(d['median'])} {number(d['q75'])}]"


def _before_after(field: str, section: str = "shape"):
    """A table cell 'input -> translated (real target)' of one field of the (image) shape results."""
    def cell(r: dict[str, Any]) -> str:
        parts = [r[section].get(side) or SHAPE_UNKNOWN for side in ("input", "translated", "target_real")]
        values = [p[field] if field.endswith("fraction") else p["rectangularity"][field] for p in parts]
        return f"{number(values[0])} -> {number(values[1])} ({number(values[2])})"

    return cell


SHAPE_UNKNOWN = shape_summary(np.array([]), "B")
TABLE_ROWS = (
    ("images / instances", lambda r: f"{r['images']} / {r['instances']}"),
    ("background L1 (0-255)", lambda r: number(r["background"]["l1"], 2)),
    ("background PSNR (dB)", lambda r: number(r["background"]["psnr_db"], 2)),
    ("background fraction of pixels", lambda r: number(r["background"]["fraction"])),
    ("PSNR outside the input masks (dB)", lambda r: number(r["background_outside_input"]["psnr_db"], 2)),
)
OBJECTS_BACKGROUND_ROWS = (
    ("PSNR outside input + output objects (dB)", lambda r: number(r["background_outside_objects"]["psnr_db"], 2)),
)
TARGET_ROWS = (
    ("L1 to the target (0-255)", lambda r: number(r["target"]["l1"], 2)),
    ("PSNR to the target (dB)", lambda r: number(r["target"]["psnr_db"], 2)),
)
MASK_ROWS = (
    ("mask IoU mean [q25 median q75]", lambda r: quartiles(r["masks"]["iou"])),
    ("mask area ratio out/in mean [q25 median q75]", lambda r: quartiles(r["masks"]["area_ratio"])),
)
SHAPE_ROWS = (
    ("target shape", lambda r: r["shape"]["target"]),
    ("rectangularity mean in -> out (real target)", _before_after("mean")),
    ("rectangularity median in -> out (real target)", _before_after("median")),
    ("target-shape fraction in -> out (real target)", _before_after("target_fraction")),
    ("irregular fraction in -> out (real target)", _before_after("irregular_fraction")),
    ("empty translated masks", lambda r: str(r["shape"]["empty_translated"])),
)
IMAGE_SHAPE_ROWS = (
    ("objects segmented from images: IoU on inputs", lambda r: quartiles(r["image_shape"]["segmentation_iou_on_inputs"])),
    ("  rectangularity mean in -> out (real target)", _before_after("mean", "image_shape")),
    ("  target-shape fraction in -> out (real target)", _before_after("target_fraction", "image_shape")),
)
LPIPS_ROWS = (
    ("background LPIPS mean [q25 median q75]", lambda r: quartiles(r["lpips_background"])),
)
FEATURE_ROWS = (
    ("FID", lambda r: number(r.get("fid"), 2)),
    ("KID mean (std)", lambda r: f"{number(r['kid']['mean'], 4)} ({number(r['kid']['std'], 4)})"
     if r.get("kid") else "-"),
)


def direction_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per-direction results as rows of cells: a header ('', directions...), then one row per number
    (the rows whose numbers every direction has)."""
    directions = results["directions"]
    rows = list(TABLE_ROWS)
    if all("background_outside_objects" in r for r in directions.values()):
        rows += OBJECTS_BACKGROUND_ROWS
    if all("target" in r for r in directions.values()):
        rows += TARGET_ROWS
    if all("masks" in r for r in directions.values()):
        rows += MASK_ROWS
    if all("shape" in r for r in directions.values()):
        rows += SHAPE_ROWS
    if all("image_shape" in r for r in directions.values()):
        rows += IMAGE_SHAPE_ROWS
    if all("lpips_background" in r for r in directions.values()):
        rows += LPIPS_ROWS
    if results.get("feature_network"):
        rows += FEATURE_ROWS
    return [("", *directions)] + [(label, *(value(r) for r in directions.values())) for label, value in rows]


def notes(results: dict[str, Any]) -> list[str]:
    """The lines printed around the table: which run, step and data; the feature network or its absence;
    the method's own notes (`results["notes"]`)."""
    lines = [f"step {results['step']} of {results['run']} ({results['checkpoint']})",
             f"data: {results['data']['kind']}, {results['data']['split']}"]
    if results.get("feature_network"):
        lines.append(f"FID/KID features: {results['feature_network']}")
    if results.get("lpips"):
        lines.append(f"LPIPS: {results['lpips']['weights']}, object pixels set to {results['lpips']['fill_value']} "
                     "in both images (docs/EVAL.md)")
    if "note" in results:
        lines.append(results["note"])
    return lines + list(results.get("notes", []))


def format_table(rows: list[tuple[str, ...]], lines: list[str]) -> str:
    """Rows of cells as a plain-text table, between the first two note lines and the rest."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines[:2] + table + lines[2:])
