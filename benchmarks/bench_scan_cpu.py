"""CPU timing of the linear scans in ``ssmts.ssm.scan`` and ``ssmts.kernels.cpu_scan``.

Times forward and forward+backward of the sequential loop (``linear_scan_ref``,
autograd backward), the log-depth parallel scan (autograd backward), the torch-op
chunked scan (analytic backward) and the compiled C scan (``linear_scan_cpu``, what
``linear_scan`` uses on the CPU; skipped with a note where it cannot be built) on
complex64 inputs with ``|a| < 1``, checks that outputs and gradients agree, and prints
medians and the speed-ups of the chunked and compiled scans over the sequential loop.

    python benchmarks/bench_scan_cpu.py                    # B=4, L=4096, P=64
    python benchmarks/bench_scan_cpu.py --json scan.json   # also write the numbers

All methods run with the same ``torch.set_num_threads`` (``--threads``; default: torch's,
all cores). Each round runs every method twice back to back: the first call's medians are
the headline (the inputs were pushed out of cache by the other methods), the second
call's are printed beside them (inputs cached, as when the op that made them just ran).
Medians are reported; the machine may be shared, so run it more than once. The garbage
collector is off inside each timed call (``timeit``'s convention) and runs between rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time

import torch

from ssmts.kernels import cpu_scan
from ssmts.ssm.scan import linear_scan_chunked, linear_scan_parallel, linear_scan_ref

METHODS = {"sequential": linear_scan_ref, "parallel": linear_scan_parallel,
           "chunked": linear_scan_chunked}
if cpu_scan.available():
    METHODS["compiled"] = cpu_scan.linear_scan_cpu
FAST = [m for m in ("chunked", "compiled") if m in METHODS]  # timed every round


def make_inputs(batch: int, length: int, state: int, seed: int):
    """a with 0.9 <= |a| < 1 (long memory), b and the upstream gradient, complex64."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, length, state)
    mag = 0.9 + 0.099 * torch.rand(shape, generator=gen)
    a = torch.polar(mag, 2 * torch.pi * torch.rand(shape, generator=gen))  # complex64
    b = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    grad = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    return a, b, grad


def run_forward(fn, a, b, grad):
    with torch.no_grad():
        return fn(a, b), None


def run_forward_backward(fn, a, b, grad):
    a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
    h = fn(a, b)
    h.backward(grad)
    return h.detach(), (a.grad, b.grad)


def timed(step, fn, *args):
    """Seconds for one call, the garbage collector off as in ``timeit`` (the sequential loop
    makes thousands of tensors; a collection landing in one of its calls cost it 3x)."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = step(fn, *args)
        return time.perf_counter() - t0, out
    finally:
        gc.enable()


def max_rel_err(x, ref):
    return float((x - ref).abs().max() / ref.abs().max())


def benchmark(args) -> dict:
    a, b, grad = make_inputs(args.batch, args.length, args.state, args.seed)
    times = {(m, s): [] for m in METHODS for s in ("fwd", "fwd+bwd")}
    warm = {(m, s): [] for m in METHODS for s in ("fwd", "fwd+bwd")}
    results = {}
    for m, fn in METHODS.items():  # warm-up, and the results compared below
        results[m] = (run_forward(fn, a, b, grad)[0], run_forward_backward(fn, a, b, grad)[1])
    for r in range(args.repeats):  # interleaved, so load changes hit every method alike
        gc.collect()  # between rounds, never right before a timed call
        for m, fn in METHODS.items():
            if m not in FAST and r >= args.slow_repeats:
                continue
            for s, step in (("fwd", run_forward), ("fwd+bwd", run_forward_backward)):
                # first call: after the other methods ran (inputs no longer in cache); the
                # second, right after it (inputs cached, as when the op that made them
                # ran just before): reported apart
                times[(m, s)].append(timed(step, fn, a, b, grad)[0])
                warm[(m, s)].append(timed(step, fn, a, b, grad)[0])
    h_ref, (ga_ref, gb_ref) = results["sequential"]
    errors = {m: {"h": max_rel_err(h, h_ref), "da": max_rel_err(ga, ga_ref),
                  "db": max_rel_err(gb, gb_ref)}
              for m, (h, (ga, gb)) in results.items() if m != "sequential"}
    med = {f"{m}/{s}": statistics.median(v) * 1e3 for (m, s), v in times.items()}
    best = {f"{m}/{s}": min(v) * 1e3 for (m, s), v in times.items()}
    med_warm = {f"{m}/{s}": statistics.median(v) * 1e3 for (m, s), v in warm.items()}

    def speedups(table):  # sequential over each fast method
        return {m: {s: table[f"sequential/{s}"] / table[f"{m}/{s}"] for s in ("fwd", "fwd+bwd")}
                for m in FAST}

    return {"config": vars(args) | {"dtype": "complex64", "threads": torch.get_num_threads(),
                                    "torch": torch.__version__, "machine": platform.processor()},
            "median_ms": med, "best_ms": best, "median_ms_second_call": med_warm,
            "runs": {f"{m}/{s}": len(v) for (m, s), v in times.items()},
            "compiled": cpu_scan.status(),
            "speedup_over_sequential": speedups(med),
            "speedup_over_sequential_best": speedups(best),
            "speedup_over_sequential_second_call": speedups(med_warm),
            "max_rel_error_vs_sequential": errors}


def print_table(report: dict) -> None:
    cfg, med, best = report["config"], report["median_ms"], report["best_ms"]
    print(f"linear scan on CPU: B={cfg['batch']} L={cfg['length']} P={cfg['state']} complex64, "
          f"{cfg['threads']} thread(s), torch {cfg['torch']}; median (and best) of the runs, ms")
    print(f"{'method':<12}{'fwd ms':>10}{'fwd+bwd ms':>12}{'best fwd':>10}{'best f+b':>10}{'runs':>6}"
          "   max rel err h / da / db")
    for m in METHODS:
        e = report["max_rel_error_vs_sequential"].get(m)
        err = "(reference)" if e is None else f"{e['h']:.1e} / {e['da']:.1e} / {e['db']:.1e}"
        print(f"{m:<12}{med[m + '/fwd']:>10.2f}{med[m + '/fwd+bwd']:>12.2f}"
              f"{best[m + '/fwd']:>10.2f}{best[m + '/fwd+bwd']:>10.2f}"
              f"{report['runs'][m + '/fwd']:>6}   {err}")
    if report["compiled"] != "ok":
        print(f"compiled: not timed ({report['compiled']})")
    mw = report["median_ms_second_call"]
    for m in report["speedup_over_sequential"]:
        r, rb = report["speedup_over_sequential"][m], report["speedup_over_sequential_best"][m]
        rw = report["speedup_over_sequential_second_call"][m]
        print(f"sequential / {m} (medians): fwd {r['fwd']:.1f}x, fwd+bwd {r['fwd+bwd']:.1f}x"
              f"   (best runs: fwd {rb['fwd']:.1f}x, fwd+bwd {rb['fwd+bwd']:.1f}x; second call, "
              f"inputs cached: {mw[m + '/fwd']:.2f} / {mw[m + '/fwd+bwd']:.2f} ms, "
              f"fwd {rw['fwd']:.1f}x, fwd+bwd {rw['fwd+bwd']:.1f}x)")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--state", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7, help="timed runs per method (median)")
    p.add_argument("--slow-repeats", type=int, default=5,
                   help="timed runs of the slow sequential and parallel scans")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads for all methods (default 0 keeps torch's default, "
                        "all cores; 1 measures one core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-3, help="max relative error accepted vs sequential")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the report as JSON")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    report = benchmark(args)
    print_table(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    worst = max(v for e in report["max_rel_error_vs_sequential"].values() for v in e.values())
    if worst > args.tol:
        raise SystemExit(f"outputs disagree: max relative error {worst:.2e} > {args.tol:g}")
    return report


if __name__ == "__main__":
    main()
