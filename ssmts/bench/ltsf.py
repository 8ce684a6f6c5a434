"""``ssmts bench ltsf``: SSMForecaster under the standard long-horizon protocol.

    ssmts bench ltsf ETTh1 ETTh2 ETTm1 exchange_rate --horizons 96 192 336 720 \\
        --backbones s5 mamba --device cuda --workers 8 --out benchmarks/ltsf
    ssmts bench ltsf my.csv --horizons 24 --backbones s5 --epochs 2 --out /tmp/my
    ssmts bench ltsf --report benchmarks/ltsf_sweep1.jsonl benchmarks/ltsf_sweep2.jsonl \\
        --out benchmarks/ltsf_sweep

Sets are names looked up in ``$SSMTS_DATA`` (default ``../shared/data`` beside the
repository) or CSV paths of the same layout (a date column, then numeric columns);
``ssmts.datasets.ltsf`` holds the protocol (borders, scaler, windows, anchors).

Without configuration flags each backbone runs with ``SSMForecaster()``'s defaults
(read from the class), so the benchmark measures what a user gets; the protocol sets
only ``lookback``, ``horizon``, ``val_size`` (the validation rows) and
``scaler="none"`` (the data are already protocol-scaled), plus ``device`` and
``random_state`` (the seed). ``--lrs --channels --dropouts --epochs --batch-size``
(lists for the first three) turn the run into a sweep; ``--baseline`` adds lr 1e-2,
mixed, dropout 0.1.

Each job (set, horizon, backbone, config, seed) fits ``SSMForecaster`` through its public
``fit`` on a DataFrame of the protocol-scaled rows [0, end of validation), so the
estimator's own split gives exactly the protocol's training windows and validation
windows; early stopping restores the best validation epoch. The fitted network then
scores every validation and test window in batches (the computation ``predict`` does
for one-block horizons); each job checks the first and last test window against
``predict`` and records the largest difference. ``--peers`` adds neuralforecast's
PatchTST / NHITS / iTransformer on the same windows (``ssmts.bench.peers``).

Jobs run in a process pool (``spawn``; ``--workers 0`` runs them in this process);
a failed job is recorded and never stops the pool. Rows are appended to ``<out>.jsonl``
as they finish; ``<out>.json`` and ``<out>.md`` hold all rows, the anchors
(repeat-last, channel-independent ridge) and, per backbone, the configuration with the
lowest mean validation MSE among those that finished every (set, horizon): selected on
validation, never on test. With ``--budget-s`` no job starts after that many seconds.

Exit codes: 0 done, 2 bad arguments (unknown set, unreadable file, bad ``--out``; one
line on stderr, before any fitting), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from ssmts.bench import report
from ssmts.bench.jobs import anchors, build_jobs, check_sets, estimator_defaults, run_pool

__all__ = ["add_arguments", "main", "run"]

DEFAULT_SETS = ["ETTh1", "ETTh2", "ETTm1", "exchange_rate"]
PROG = "ssmts bench ltsf"


class BadArgs(Exception):
    """A bad command line or input: one line for stderr, exit code 2."""


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``ssmts bench ltsf`` (and of ``benchmarks/bench_ltsf.py``)."""
    ap.add_argument("sets_pos", nargs="*", metavar="SET_OR_CSV",
                    help="set names (looked up in $SSMTS_DATA, default ../shared/data) or CSV "
                         "paths (a date column, then numeric columns); default ETTh1 ETTh2 "
                         "ETTm1 exchange_rate")
    ap.add_argument("--sets", nargs="+", default=None, help="the same as the positional sets")
    ap.add_argument("--data", default=None, help="folder of the named sets (sets SSMTS_DATA)")
    ap.add_argument("--horizons", type=int, nargs="+", default=None,
                    help="default 96 192 336 720 (in --report mode: those of the rows)")
    ap.add_argument("--backbones", nargs="*", default=["s5", "mamba"],
                    help="SSMForecaster backbones (default s5 mamba; none: only --peers)")
    ap.add_argument("--lrs", "--lr", type=float, nargs="+", default=None,
                    help="learning rates to sweep (default: the estimator's)")
    ap.add_argument("--channels", "--channel", nargs="+", default=None,
                    help="channel modes to sweep (default: the estimator's)")
    ap.add_argument("--dropouts", "--dropout", type=float, nargs="+", default=None,
                    help="dropouts to sweep (default: the estimator's)")
    ap.add_argument("--baseline", action="store_true", help="add lr 1e-2, mixed, dropout 0.1")
    ap.add_argument("--epochs", type=int, default=None,
                    help="max_epochs (default: the estimator's)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="batch size (default: the estimator's)")
    ap.add_argument("--lookback", type=int, default=96, help="L (96, the protocol)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--peers", nargs="*", default=[], metavar="PEER",
                    help="neuralforecast peers on the same windows: patchtst nhits "
                         "itransformer (needs pip install \"ssmts[bench]\")")
    ap.add_argument("--peer-max-steps", type=int, default=None,
                    help="max_steps of the peers (default: their documented setting)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=1,
                    help="processes (spawn); 0 runs the jobs in this process")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--budget-s", type=float, default=None, help="start no job after this")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--skip-done", nargs="*", default=[],
                    help="jsonl files whose finished jobs to skip")
    ap.add_argument("--report", nargs="*", default=None, metavar="JSONL",
                    help="only re-render the report of these jsonl files")
    ap.add_argument("--out", default="benchmarks/ltsf_sweep", metavar="PREFIX",
                    help="writes PREFIX.jsonl, PREFIX.json and PREFIX.md")
    return ap


def _check_args(args) -> None:
    if args.sets_pos and args.sets:
        raise BadArgs("give the sets either positionally or with --sets, not both")
    for name in ("workers", "threads", "lookback"):
        v = getattr(args, name)
        if v < (0 if name == "workers" else 1):
            raise BadArgs(f"--{name} {v}: too small")
    if args.horizons is not None and min(args.horizons) < 1:
        raise BadArgs(f"--horizons {args.horizons}: horizons must be positive")
    out = Path(args.out)
    if out.is_dir():
        raise BadArgs(f"--out {args.out}: is a folder; give a file prefix (PREFIX.json, ...)")
    for p in out.parents:
        if p.exists():
            if not p.is_dir():
                raise BadArgs(f"--out {args.out}: {p} is a file")
            if not os.access(p, os.W_OK):
                raise BadArgs(f"--out {args.out}: {p} is not writable")
            break
    for f in (args.report or []) + list(args.skip_done):
        if not Path(f).is_file():
            raise BadArgs(f"{f}: no such file")
    if args.report is not None:
        return
    from ssmts.layers.block import BACKBONES

    bad = [b for b in args.backbones if b not in BACKBONES]
    if bad:
        raise BadArgs(f"--backbones {' '.join(bad)}: unknown (expected some of "
                      f"{' '.join(BACKBONES)})")
    if args.peers:
        from ssmts.bench.peers import PEERS, require_neuralforecast

        bad = [p for p in args.peers if p not in PEERS]
        if bad:
            raise BadArgs(f"--peers {' '.join(bad)}: unknown (expected some of "
                          f"{' '.join(PEERS)})")
        try:
            require_neuralforecast()
        except ImportError as exc:
            raise BadArgs(str(exc)) from None
    if not args.backbones and not args.peers:
        raise BadArgs("nothing to run: no --backbones and no --peers")


def _meta(args, command: str) -> dict:
    import torch

    return dict(command=command, seeds=args.seeds, device=args.device, host=platform.node(),
                lookback=args.lookback, workers=args.workers, threads=args.threads,
                torch=torch.__version__, python=platform.python_version(),
                estimator_defaults=estimator_defaults(),
                started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def _render(args, command: str) -> int:
    rows = report.read_rows(args.report)
    seen = list(dict.fromkeys(r["set"] for r in rows))  # the rows' sets, canonical order
    sets = args.sets_pos or args.sets or (
        [s for s in DEFAULT_SETS if s in seen] + [s for s in seen if s not in DEFAULT_SETS])
    horizons = args.horizons or sorted({r["horizon"] for r in rows})
    anc = {}
    for s in sets:  # rows render without their data; only the anchors need the files
        try:
            anc.update(anchors(check_sets([s], args.lookback, horizons), horizons))
        except ValueError as exc:
            print(f"{PROG}: no anchors for {exc}", file=sys.stderr)
    meta = _meta(args, command)
    meta.update(device=rows[0]["device"] if rows else "?",
                host="(from " + ", ".join(args.report) + ")",
                torch=", ".join(sorted({str(r["torch"]) for r in rows if r.get("torch")}))
                or "? (not in the rows)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report.write_report(Path(args.out), rows, anc, sets, horizons, meta)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


def run(args: argparse.Namespace, command: str | None = None) -> int:
    """Run (or with ``--report`` re-render) the benchmark; returns the exit code.

    Raises :class:`BadArgs` for a bad command line or input (before any fitting).
    """
    command = command or shlex.join(sys.argv)
    if args.data:
        os.environ["SSMTS_DATA"] = str(Path(args.data).resolve())
    _check_args(args)
    if args.report is not None:
        return _render(args, command)
    sets = args.sets_pos or args.sets or DEFAULT_SETS
    horizons = args.horizons or [96, 192, 336, 720]
    t0 = time.time()
    try:
        data = check_sets(sets, args.lookback, horizons)
    except ValueError as exc:
        raise BadArgs(str(exc)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = _meta(args, command)
    anc = anchors(data, horizons)
    print(f"anchors {time.time() - t0:.1f} s", flush=True)
    done = {report.job_key(r) for r in report.read_rows(args.skip_done) if r.get("ok")}
    jobs = [j for j in build_jobs(args, sets, horizons) if report.job_key(j) not in done]
    if args.max_jobs:
        jobs = jobs[:args.max_jobs]
    print(f"{len(jobs)} jobs, {args.workers} workers, device {args.device}", flush=True)
    rows = []
    with open(out.with_suffix(".jsonl"), "a") as jl:
        def on_row(r: dict) -> None:
            rows.append(r)
            jl.write(json.dumps(r, default=str) + "\n")
            jl.flush()
            if r["ok"]:
                msg = (f"val {report._f(r.get('val_mse'), '.4f')} test {r['mse']:.4f}/"
                       f"{r['mae']:.4f} ep {r.get('epochs_run')} best {r.get('best_epoch')} "
                       f"fit {r['fit_s']:.1f}s diff {report._f(r.get('predict_max_abs_diff'), '.1e')}")
            else:
                msg = f"FAILED {r['error'][:300]}"
            print(f"[{time.time() - t0:5.0f}s] {report.cfg_name(r['config'])} {r['set']} "
                  f"H={r['horizon']} seed={r['seed']}: {msg}", flush=True)

        run_pool(jobs, args.workers, on_row, t0=t0, budget_s=args.budget_s)
    meta["wall_s"] = time.time() - t0
    report.write_report(out, rows, anc, sets, horizons, meta)
    sel = report.select(rows, sets, horizons)
    print(f"\ndone in {meta['wall_s']:.0f} s; chosen: {sel['chosen']}")
    for name, t in sorted(sel["configs"].items(), key=lambda kv: kv[1]["val_mse"]):
        print(f"  {name}: n={t['n']} val {t['val_mse']:.4f} test {t['test_mse']:.4f}")
    print(f"report: {out.with_suffix('.md')}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Command line of ``benchmarks/bench_ltsf.py`` (the old flags) and of the verb."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or PROG
    ap = add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0]))
    args = ap.parse_args(argv)
    try:
        return run(args, command=f"{prog} {shlex.join(argv)}".strip())
    except BadArgs as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
