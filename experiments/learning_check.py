"""Does a method learn what it is for? Train its learnable task from scratch, evaluate, PASS or FAIL.

    python experiments/learning_check.py --method {instagan,cyclegan,pix2pix,lomit} [--seed S]
        [--minutes M] [--steps N] [--num N] [--workdir DIR] [--set key=value ...]

Trains the method's task of docs/RESULTS.md (`TASKS` below: config and iterations) in a fresh workdir,
with `train.seed` and the data's seed set to S, stopping early if M minutes of wall time pass (default
30); then `instagan eval` scores the final checkpoint on held-out data drawn with seed S + 1000. Prints
the evaluation table, one line per measured figure against its target (`instagan_jax/targets.py`), and
last one line `learning <method>: <figure> <value> (>= <target>), ... -> PASS` (or `-> FAIL`). Exit
status 0 on PASS, 1 on FAIL; CycleGAN, the baseline, has no targets (`-> REPORTED`, exit 0); 3 when stopped by
SIGTERM or Ctrl-C (nothing is evaluated).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# method -> (its learnable task's config, iterations): the runs of docs/RESULTS.md
TASKS = {
    "instagan": ("discs2squares", 6000),
    "cyclegan": ("discs2squares_cyclegan", 6000),
    "pix2pix": ("discs2squares_pix2pix", 3000),
    "lomit": ("lomit_learnable", 3000),
}


def overrides(seed: int, extra: list[str]) -> list[str]:
    """The seed of the initialisation, the data order and the data themselves (held-out: seed + 1000)."""
    return [f"train.seed={seed}", f"data.options.seed={seed}", *extra]


def check_workdir(workdir: Path) -> None:
    """Refuse a workdir that holds an earlier run: a check starts from scratch and never overwrites."""
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"error: workdir {workdir} already holds a run: remove it or pass another --workdir "
                         "(a learning check trains from scratch)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, choices=sorted(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget of the training (default 30)")
    parser.add_argument("--steps", type=int, help="iterations (default: the task's, docs/RESULTS.md)")
    parser.add_argument("--num", type=int, default=200, help="held-out images (per domain) to evaluate (default 200)")
    parser.add_argument("--workdir", type=Path, help="default: runs/learning_check/<method>-seed<S>")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value of the task (the check's thresholds stay)")
    args = parser.parse_args()
    config_name, task_steps = TASKS[args.method]
    if args.seed < 0 or args.num < 1 or args.minutes <= 0 or (args.steps is not None and args.steps < 1):
        parser.error("--seed must be >= 0, --num and --steps >= 1, --minutes > 0")
    workdir = args.workdir or ROOT / "runs" / "learning_check" / f"{args.method}-seed{args.seed}"
    check_workdir(workdir)

    from instagan_jax.evaluate import evaluate_run, format_table
    from instagan_jax.loop import train
    from instagan_jax.methods import load_config
    from instagan_jax.targets import standing

    try:
        config = load_config(config_name, overrides(args.seed, args.set))
    except ValueError as err:
        parser.error(str(err))
    steps = args.steps or task_steps
    print(f"learning check: {args.method} on {config_name}, seed {args.seed}, {steps} iterations "
          f"(at most {args.minutes:g} minutes), workdir {workdir}", flush=True)
    start = time.perf_counter()
    summary = train(config, workdir, steps=steps, minutes=args.minutes)
    if summary.interrupted:  # SIGTERM / Ctrl-C: a half-trained run is not judged
        print(f"interrupted after {summary.step} of {steps} iterations: no evaluation (checkpoint in {workdir})")
        return 3
    trained_minutes = (time.perf_counter() - start) / 60.0
    budget = f", stopped by the {args.minutes:g}-minute budget" if summary.out_of_time else ""
    print(f"trained {summary.step} of {steps} iterations in {trained_minutes:.1f} min{budget}", flush=True)
    results, path = evaluate_run(workdir=workdir, num=args.num)
    print(format_table(results))
    print(f"results: {path}")
    lines, figures, outcome = standing(results, config_name)
    print("\n".join(lines))
    print(f"learning {args.method}: {figures} -> {outcome}")
    return 1 if outcome == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
