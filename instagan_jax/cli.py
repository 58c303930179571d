"""The `instagan` command line."""

from __future__ import annotations

import argparse
import sys

from instagan_jax import __version__
from instagan_jax.data.cli import add_prepare_parser


def _parity(args: argparse.Namespace) -> int:
    from instagan_jax.parity import format_report, run_parity

    checks = run_parity(args.fixture)
    print(format_report(checks))
    return 0 if all(c.passed for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="instagan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"instagan-jax {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    parity = commands.add_parser("parity", help="compare our networks with a PyTorch reference fixture")
    parity.add_argument("fixture", help="reference fixture .npz (its .json beside it)")
    parity.set_defaults(func=_parity)
    add_prepare_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `instagan` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"instagan {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
