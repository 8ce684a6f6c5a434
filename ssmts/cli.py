"""Command line: ``ssmts demo`` (more verbs arrive with the estimators)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out=args.out, quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssmts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the main job on an embedded real data set")
    p.add_argument("--out", default="ssmts_demo", help="folder for the report and plot")
    p.add_argument("--quick", action="store_true", help="smaller model, for smoke tests")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
