"""What the built-in learnable tasks should reach: figures of `instagan eval`'s results and their targets.

    lines, summary, outcome = standing(results, "discs2squares")   # outcome: PASS, FAIL or REPORTED

Keyed by config name (the tasks of docs/RESULTS.md). A figure without a threshold is reported only
(CycleGAN, the baseline, has none). `instagan eval` prints where a run of such a config stands, and
`experiments/learning_check.py` turns it into an exit status.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure: its label, where it is in `instagan eval`'s results, and its target (None: reported)."""

    label: str
    path: tuple[str, ...]
    threshold: float | None = None


def _shapes(direction: str, target: str, threshold: float | None, masks: bool = True) -> tuple[Figure, ...]:
    """The share of objects drawn in the target domain's shape: from the translated masks, from the images."""
    images = Figure(f"{direction} images in {target}'s shape",
                    ("directions", direction, "image_shape", "translated", "target_fraction"), threshold)
    if not masks:
        return (images,)
    return (Figure(f"{direction} masks in {target}'s shape",
                   ("directions", direction, "shape", "translated", "target_fraction"), threshold), images)


def _background(direction: str, threshold: float | None, section: str = "background") -> Figure:
    return Figure(f"{direction} background PSNR dB", ("directions", direction, section, "psnr_db"), threshold)


_TRANSFER = ("lomit", "accuracy", "translated_vs_exemplar", "per_attribute")  # LOMIT: per attribute, the share
# of translations that a classifier of real images gives the exemplar's label

TARGETS: dict[str, tuple[Figure, ...]] = {
    "discs2squares": (*_shapes("AtoB", "B", 0.7), *_shapes("BtoA", "A", 0.7),
                      _background("AtoB", 25.0), _background("BtoA", 25.0)),
    "discs2squares_cyclegan": (*_shapes("AtoB", "B", None, masks=False), *_shapes("BtoA", "A", None, masks=False),
                               _background("AtoB", None, "background_outside_objects"),
                               _background("BtoA", None, "background_outside_objects")),
    "discs2squares_pix2pix": (*_shapes("AtoB", "B", 0.8, masks=False),
                              Figure("AtoB PSNR to the target dB", ("directions", "AtoB", "target", "psnr_db"))),
    "lomit_learnable": (
        Figure("blue as the exemplar's", (*_TRANSFER, "blue"), 0.85),
        Figure("striped as the exemplar's", (*_TRANSFER, "striped"), 0.85),
        Figure("learned-mask IoU", ("lomit", "mask", "iou", "mean"), 0.6)),
}


def read(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at `path` in the results (None where it is absent)."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float("inf") if value == "inf" else float(value)


def standing(results: dict[str, Any], config_name: str) -> tuple[list[str], str, str]:
    """(a line per figure, the figures in one line, PASS | FAIL | REPORTED) of a run of a config in TARGETS."""
    lines, cells, passed = [], [], True
    figures = TARGETS[config_name]
    for figure in figures:
        value = read(results, figure.path)
        shown = "missing" if value is None else f"{value:.3f}"
        if figure.threshold is None:
            lines.append(f"  {figure.label:<30} {shown:>8}")
            cells.append(f"{figure.label} {shown}")
            continue
        ok = value is not None and value >= figure.threshold
        passed &= ok
        lines.append(f"  {figure.label:<30} {shown:>8}  target >= {figure.threshold:g}: {'met' if ok else 'NOT met'}")
        cells.append(f"{figure.label} {shown} (>= {figure.threshold:g})")
    if all(f.threshold is None for f in figures):
        outcome = "REPORTED"
    else:
        outcome = "PASS" if passed else "FAIL"
    return lines, ", ".join(cells), outcome
