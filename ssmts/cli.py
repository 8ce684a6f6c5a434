"""The ``ssmts`` command line: ``ssmts --version``, ``ssmts demo`` and ``ssmts bench ltsf``.

Exit codes: 0 success, 2 a bad command line, an unusable ``--out`` or (bench) an
unknown set / unreadable file (one line on stderr, checked before any fitting), 130
interrupted with Ctrl-C (one line on stderr). Any other error is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ssmts import __version__

_DESCRIPTION = ("ssmts: time-series forecasting with deep state-space models "
                "(S4, S5, Mamba) behind a scikit-learn style API.")
_DEMO_DESCRIPTION = (
    "Forecast the weekly Mauna Loa CO2 record (statsmodels' co2 data set) 104 weeks ahead "
    "with SSMForecaster and with baselines (seasonal naive, UnobservedComponents). Each "
    "model's settings are chosen on a validation window that ends before the 104 test "
    "weeks, the chosen model is refitted on all the data before the test weeks, and the "
    "test errors are reported once. Writes metrics.json and forecast.png (with "
    "matplotlib) into --out. Takes a few minutes on a 2-core CPU; --quick under a minute.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssmts", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"ssmts {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="forecast weekly CO2, compare with tuned baselines",
                       description=_DEMO_DESCRIPTION)
    p.add_argument("--out", default="ssmts_demo", metavar="FOLDER",
                   help="folder for metrics.json and forecast.png, created when missing "
                        "(default: ssmts_demo)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: a tiny model, one candidate per model and one seed "
                        "(under a minute; its numbers are no benchmark)")
    p.set_defaults(func=_demo)
    from ssmts.bench import ltsf

    b = sub.add_parser("bench", help="benchmarks (ltsf: the long-horizon protocol)",
                       description="Benchmarks of SSMForecaster against anchors and peers.")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    p = bsub.add_parser("ltsf", help="ETTh1/ETTh2/ETTm1/exchange_rate or CSV files, "
                        "lookback 96, every test window; selection on validation",
                        description=_BENCH_LTSF_DESCRIPTION)
    ltsf.add_arguments(p)
    p.set_defaults(func=_bench_ltsf)
    return parser


_BENCH_LTSF_DESCRIPTION = (
    "Fit SSMForecaster (with its default settings unless --lrs/--channels/--dropouts/"
    "--epochs/--batch-size ask for a sweep) under the standard long-horizon protocol: "
    "lookback 96, the published train/validation/test borders (70/10/20 for other CSV "
    "files), one scaler fitted on the training rows, MSE/MAE over every test window. "
    "Anchors (repeat last value, channel-independent ridge) and, with --peers, "
    "neuralforecast's PatchTST/NHITS/iTransformer run on the same windows. Writes "
    "PREFIX.jsonl (rows as they finish), PREFIX.json and PREFIX.md; --report only "
    "re-renders jsonl files.")


def _bench_ltsf(args: argparse.Namespace) -> int:
    import shlex

    from ssmts.bench import ltsf

    try:
        return ltsf.run(args, command="ssmts " + shlex.join(args.argv_))
    except ltsf.BadArgs as exc:
        print(f"ssmts bench ltsf: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from ssmts.demo import out_problem, run_demo

    problem = out_problem(args.out)  # before minutes of fitting
    if problem is not None:
        print(f"ssmts demo: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    return run_demo(out=args.out, quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for an unusable ``--out`` or (bench) an unknown set or
        unreadable file, 130 when interrupted (Ctrl-C).
        argparse itself exits (``SystemExit``) for ``--help``, ``--version`` and
        a bad command line, as usual.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    args.argv_ = argv
    interrupted = []

    def on_sigint(signum, frame):  # remember it: Lightning turns Ctrl-C into SystemExit(1)
        interrupted.append(signum)
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _interrupted(args)
    except SystemExit:
        if interrupted:
            return _interrupted(args)
        raise
    finally:
        if in_main:  # None: a handler not set from Python; restore Python's default
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None
                          else previous)


def _interrupted(args: argparse.Namespace) -> int:
    name = " ".join(filter(None, (args.command, getattr(args, "bench", None))))
    print(f"ssmts {name}: interrupted (Ctrl-C)", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
