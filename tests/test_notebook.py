"""The Colab quick-start notebook: committed clean (no outputs, one parameters cell), and run end to end
with nbclient on a tiny config (the `packaging` marker: a separate CI step, needs the `notebook` extra)."""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import TINY_DEFAULT_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "notebooks" / "quickstart.ipynb"
WORKDIR = "run"  # relative to the kernel's folder, tmp_path
STEPS = 2
NUM_TEST_IMAGES = 2
NUM_EVAL = 3
TINY = [*TINY_DEFAULT_OVERRIDES, "log.log_every=1", "log.sample_every=1"]
KERNEL_PROBE = "import sys\nprint('kernel python:', sys.executable)"


def parameters(tmp_path: Path) -> dict:
    """The values the test gives the notebook: a tiny run, and an install spec that cannot install
    anything (the kernel must import this checkout, never pip install)."""
    return {"WORKDIR": WORKDIR, "CONFIG": "discs2squares", "STEPS": STEPS, "OVERRIDES": TINY, "PROGRESS": False,
            "NUM_EVAL": NUM_EVAL, "NUM_TEST_IMAGES": NUM_TEST_IMAGES, "INSTALL_SPEC": str(tmp_path / "no-such-package")}


def parameter_cells(cells: list[dict]) -> list[int]:
    """Indices of the cells tagged "parameters"."""
    return [i for i, cell in enumerate(cells) if "parameters" in cell["metadata"].get("tags", [])]


def assigned_names(source: str) -> set[str]:
    """The names a cell of plain assignments assigns; AssertionError if it holds anything else."""
    statements = ast.parse(source).body
    assert all(isinstance(s, ast.Assign) for s in statements), "the parameters cell holds only assignments"
    return {target.id for s in statements for target in s.targets}


def test_notebook_is_committed_clean(tmp_path):
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert notebook["nbformat"] == 4
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code), \
        "clear the notebook's outputs before committing it"
    [index] = parameter_cells(notebook["cells"])
    cell = notebook["cells"][index]
    assert cell["cell_type"] == "code"
    assert set(parameters(tmp_path)) <= assigned_names("".join(cell["source"]))


def with_parameters(notebook, values: dict):
    """The notebook with a cell setting `values` right after its parameters cell (as papermill does),
    and a last cell printing the kernel's interpreter."""
    from nbformat.v4 import new_code_cell

    [index] = parameter_cells(notebook.cells)
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    notebook.cells.append(new_code_cell(KERNEL_PROBE))
    return notebook


def text_outputs(notebook) -> str:
    """Everything the cells printed (streams and plain-text results), joined."""
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


@pytest.mark.packaging
def test_notebook_runs_a_tiny_training(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the notebook extra: "
                                   "pip install -e '.[notebook]' (nbclient, nbformat, ipykernel)")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (pip install -e '.[notebook]')")
    import nbformat

    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = with_parameters(nbformat.read(NOTEBOOK, as_version=4), parameters(tmp_path))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # CellExecutionError, with the cell and its traceback, if any cell fails
    print(f"notebook executed in {time.perf_counter() - start:.1f} s")

    printed = text_outputs(notebook)
    assert f"kernel python: {sys.executable}\n" in printed, "the kernel python3 runs another interpreter than pytest"
    assert f"from {ROOT / 'instagan_jax' / '__init__.py'}\n" in printed
    assert "on CPU only" in printed
    assert "targets of the discs2squares task" in printed and "-> FAIL" in printed  # 2 iterations learn nothing
    run = tmp_path / WORKDIR
    assert (run / "checkpoints" / str(STEPS)).is_dir() and (run / "checkpoints" / str(STEPS + 1)).is_dir()
    assert (run / "samples" / f"step_{STEPS:07d}.png").is_file()
    assert (run / "eval" / f"step_{STEPS:07d}.json").is_file()
    translated = sorted((run / "translated" / "images").glob("*.png"))
    assert len(translated) == NUM_TEST_IMAGES
    for path in translated:  # the masks read from the COCO results JSON give the same translations
        same = run / "translated_detections" / "images" / path.name
        np.testing.assert_array_equal(np.asarray(PIL.Image.open(same)), np.asarray(PIL.Image.open(path)))
    images = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) >= 4  # sample grid, loss curves, translations, the in-process translation
