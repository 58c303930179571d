"""`instagan report` and the labelled sample grids."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from instagan_jax import cli, evaluate, report
from instagan_jax.eval import metrics
from instagan_jax.methods.instagan.step import VISUAL_COLUMNS, Visuals, visual_rows
from instagan_jax.visuals import sample_grid


def test_sample_grid_has_a_labelled_header_and_row_labels():
    rng = np.random.default_rng(0)
    size, gap = 32, 2
    tiles = {name: rng.uniform(-1, 1, (2, size, size, 1 if "union" in name else 3)) for name in VISUAL_COLUMNS}
    visuals = Visuals(**tiles, rec_masks=None)
    grid = sample_grid(visual_rows({"A": visuals, "B": visuals}), sample=1, gap=gap)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    header = grid.shape[0] - 2 * size - 2 * gap  # header strip height
    side = grid.shape[1] - len(VISUAL_COLUMNS) * (size + gap)  # row-label strip width
    assert header > 10 and side > 10
    first_tile = grid[header + gap:header + gap + size, side + gap:side + gap + size]
    expected = ((np.clip(tiles["real_img"][1], -1, 1) + 1) / 2 * 255).astype(np.uint8)
    np.testing.assert_array_equal(first_tile, expected)
    assert (grid[:header, side + gap:side + gap + size] < 128).any()  # text in the header above the column
    assert (grid[header + gap:header + gap + size, :side] < 128).any()  # the row's label


def _eval_json(path):
    tally = metrics.Tally()
    directions = {d: tally.summary(target, shapes=True) for d, (_, target) in metrics.DOMAINS.items()}
    results = {"run": "r", "checkpoint": "r/checkpoints/3", "step": 3, "feature_network": None,
               "data": {"kind": "shapes", "split": "held out"}, "directions": directions, "note": evaluate.NO_FEATURES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics.json_ready(results)))


def test_report_on_a_tiny_run(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _eval_json(run / "eval" / "step_0000003.json")
    assert cli.main(["report", str(run)]) == 0
    assert str(run / "report.html") in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report.CURVES) + len(list((run / "samples").glob("*.png")))
    for text in ("Generator loss terms", "step_0000003", "step_0000003.json", "background PSNR (dB)",
                 "&quot;ngf&quot;: 4", "<table>"):
        assert text in page, text
    assert 'class="missing"' not in page
    grid_width = Image.open(sorted((run / "samples").glob("*.png"))[-1]).width  # 32 px tiles: a narrow grid
    scale = report.SAMPLE_MIN_WIDTH // grid_width
    assert scale > 1 and f'width="{grid_width * scale}" style="image-rendering:pixelated"' in page


def test_report_names_what_a_run_lacks(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "G": 1.0}\ngarbage\n{"step": 2, "G"')  # half-written
    page = (report.write_report(tmp_path)).read_text()
    assert "2 line(s) of" in page and "were skipped (line 2, 3)" in page
    assert "no sample grids yet" in page and "no evaluation yet" in page and page.count("data:image/png") == 1
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    assert "run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "is not a training workdir" in capsys.readouterr().err
