"""How far bfloat16 compute (`model.compute_dtype=bfloat16`) moves us from the PyTorch reference.

On the float32 parity fixture, runs the parity check's own comparisons (`instagan_jax.methods.instagan.parity`:
standalone forwards, the inference path, one training iteration group by group and whole) twice from
the fixture's weights and inputs, once with float32 compute and once with bf16 compute, recording
|ours - reference| for every compared array, and prints a markdown table per output kind: max and mean
absolute error, float32 and bf16 side by side.

    PYTHONPATH=. python experiments/bf16_drift.py [../shared/parity/reference_small.npz]

Rows marked "later groups" / "whole iteration" follow the first Adam step, where even float32 is not
comparable element by element (see `methods.instagan.parity.INFORMATIONAL_WHY`); they are shown for scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from instagan_jax.methods.instagan import parity
from instagan_jax.nn.build import x64_scope
from instagan_jax.parity.common import Checker, keys_under

DEFAULT_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "parity" / "reference_small.npz"


class RecordingChecker(Checker):
    """The parity Checker, also keeping |ours - reference| of every array it compares (and of each loss)."""

    def __init__(self, arrays, tolerances, loss_values):
        super().__init__(arrays, tolerances)
        self.loss_values = loss_values  # the fixture's train_steps: per group {loss_<name>: value}
        self.diffs: list[tuple[str, np.ndarray]] = []

    def _record(self, name: str, ours, theirs) -> None:
        ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        if ours.shape == theirs.shape:
            self.diffs.append((name, np.abs(ours - theirs).ravel()))

    def compare(self, key, kind, ours, name=None, informational=False):
        if key in self.arrays:
            self._record(key, ours, self.arrays[key])
        super().compare(key, kind, ours, name=name, informational=informational)

    def compare_many(self, prefix, kind, ours, skip=frozenset(), label="tensors", informational=False,
                     exempt=None, scale=None):
        for k in keys_under(self.arrays, prefix):
            if k not in skip and k in ours:
                self._record(prefix + k, ours[k], self.arrays[prefix + k])
        super().compare_many(prefix, kind, ours, skip, label, informational, exempt, scale)

    def add(self, name, kind, error, informational=False):
        match = re.fullmatch(r"train/step(\d+)/loss_(\w+)", name)
        if kind == "losses" and match:  # the check's error is relative: back to absolute
            theirs = self.loss_values[int(match[1])][f"loss_{match[2]}"]
            self.diffs.append((name, np.array([error * max(abs(theirs), 1e-12)])))
        super().add(name, kind, error, informational)


def row_of(name: str) -> str | None:
    """The table row of a compared array's name (None: not shown)."""
    step = re.match(r"train/step(\d+)/", name)
    group = "" if step is None else (" (group 0)" if step[1] == "0" else " (later groups)")
    rules = [
        (r"fwd/G_\w+_full", "forward G: images + masks"),
        (r"fwd/D_\w+_real_after/", "forward D: spectral u, v after the call"),
        (r"fwd/D_", "forward D: scores"),
        (r"test/\w+_img", "inference: images"),
        (r"test/", "inference: masks"),
        (r"train/step\d+/real_", "train: group inputs"),
        (r"train/step\d+/fake_", "train: generated images + masks"),
        (r"train/step\d+/opt_\w+/grad/", "train: gradients"),
        (r"train/step\d+/opt_\w+/after/", "train: parameters after the Adam step"),
        (r"train/visual/", "train: visuals (whole iteration)"),
        (r"final/", "train: parameters + u, v (whole iteration)"),
    ]
    loss = re.fullmatch(r"train/step\d+/loss_(\w+)", name)
    if loss:
        return f"loss {loss[1]}{group}"
    for pattern, row in rules:
        if re.match(pattern, name):
            return row + group
    return None


def run(fixture: parity.Fixture, compute_dtype: str) -> dict[str, np.ndarray]:
    """|ours - reference| per table row, with `compute_dtype` compute."""
    fixture = dataclasses.replace(fixture, config=dataclasses.replace(fixture.config, compute_dtype=compute_dtype))
    checker = RecordingChecker(fixture.arrays, fixture.tolerances, fixture.meta.get("train_steps", []))
    with x64_scope(fixture.config.dtype):
        sets = parity._selected_sets(fixture)
        parity._forward_checks(checker, fixture, sets)
        parity._inference_checks(checker, fixture, sets)
        parity._training_checks(checker, fixture)
    rows = defaultdict(list)
    for name, diff in checker.diffs:
        row = row_of(name)
        if row is not None:
            rows[row].append(diff)
    return {row: np.concatenate(parts) for row, parts in rows.items()}


def table(results: dict[str, dict[str, np.ndarray]]) -> str:
    names = list(results)
    lines = ["| output | n | " + " | ".join(f"max abs {n} | mean abs {n}" for n in names) + " |",
             "|---|---:|" + "---:|---:|" * len(names)]
    first = results[names[0]]
    order = sorted(first, key=lambda r: ("loss" in r, "later" in r or "whole" in r, r))
    for row in order:
        cells = []
        for n in names:
            d = results[n].get(row, np.array([np.nan]))
            cells += [f"{d.max():.2e}", f"{d.mean():.2e}"]
        lines.append(f"| {row} | {first[row].size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture", nargs="?", default=str(DEFAULT_FIXTURE))
    args = parser.parse_args()
    fixture = parity.load_fixture(args.fixture)
    if fixture.config.dtype != "float32":
        raise SystemExit(f"{args.fixture}: a float32 fixture is needed (bf16 compute needs float32 parameters)")
    results = {}
    for compute in ("float32", "bfloat16"):
        start = time.time()
        results[compute] = run(fixture, compute)
        print(f"{compute}: {time.time() - start:.0f} s", flush=True)
    print(f"\nFixture {args.fixture}: |ours - reference| per output kind\n")
    print(table(results))


if __name__ == "__main__":
    main()
