"""CPU timing of one Mamba layer computed three ways: fast torch scan, mambapy, reference loop.

One ``ssmts.layers.mamba.Mamba(64, d_state=16, expand=2)`` layer, input (4, 1024, 64)
(issue 3's speed target). The layer's own projections and convolution
(``layer._ssm_inputs`` and ``out_proj``) are shared; only the selective scan differs:

* ``fast``    - :func:`ssmts.ssm.selective_fast.selective_scan_fast` (blocked recurrence,
  analytic backward);
* ``mambapy`` - mambapy's parallel scan ``mambapy.pscan.pscan`` on (b, L, D, N) ``deltaA`` and
  ``BX``, exactly as mambapy's ``MambaBlock.selective_scan`` builds them, then ``D`` skip and
  ``silu(z)`` gate (optional dependency: install the wheel into a private folder, e.g.
  ``pip install --no-deps --target /tmp/mambapy_site mambapy-1.2.0-py3-none-any.whl``; the
  folder is found through ``--mambapy-path`` or ``$MAMBAPY_PATH``; the row says "skipped"
  when mambapy is absent);
* ``ref``     - :func:`ssmts.ssm.selective.selective_scan_ref` (Python loop over time; timed
  ``--ref-repeats`` times only, it is slow).

"fwd" is inference (``torch.no_grad``); "fwd+bwd" is forward, then backward of
``(out * g).sum()`` into every parameter and the input. The outputs and the input
gradients of the three are compared. Prints medians and the ratios mambapy/fast and
ref/fast.

    python benchmarks/bench_mamba_cpu.py
    python benchmarks/bench_mamba_cpu.py --json mamba_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from ssmts.layers.mamba import Mamba
from ssmts.ssm.selective import selective_scan_ref
from ssmts.ssm.selective_fast import selective_scan_fast

DEFAULT_MAMBAPY = "/tmp/mambapy_site"


def load_pscan(path: str | None):
    """mambapy's ``pscan`` or None (mambapy is an optional benchmark dependency)."""
    path = path or os.environ.get("MAMBAPY_PATH") or DEFAULT_MAMBAPY
    if os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None
    return pscan


def scan_mambapy(pscan, xc, delta, A, B, C, D, z, bias):
    """mambapy's selective scan on our layer's tensors; xc, delta, z (b, D, L), B, C (b, N, L)."""
    delta = F.softplus(delta + bias[:, None]).transpose(1, 2)  # (b, L, D)
    x = xc.transpose(1, 2)  # (b, L, D)
    delta_a = torch.exp(delta.unsqueeze(-1) * A)  # (b, L, D, N)
    delta_b = delta.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)  # (b, L, D, N)
    bx = delta_b * x.unsqueeze(-1)  # (b, L, D, N)
    hs = pscan(delta_a, bx)  # (b, L, D, N)
    y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(3)  # (b, L, D)
    y = (y + D * x) * F.silu(z.transpose(1, 2))  # (b, L, D)
    return y.transpose(1, 2)  # (b, D, L)


def make_paths(pscan) -> dict:
    """name -> scan(xc, delta, A, B, C, D, z, bias) -> y (b, D, L), or None if unavailable."""
    def ours(fn):
        return lambda xc, delta, A, B, C, D, z, bias: fn(xc, delta, A, B, C, D, z=z,
                                                         delta_bias=bias, delta_softplus=True)
    return {"fast": ours(selective_scan_fast),
            "mambapy": None if pscan is None else (lambda *a: scan_mambapy(pscan, *a)),
            "ref": ours(selective_scan_ref)}


def layer_forward(layer: Mamba, x: torch.Tensor, scan) -> torch.Tensor:
    """The layer's math with the selective scan replaced by ``scan``; (b, L, d_model)."""
    xc, z, delta, B, C = layer._ssm_inputs(x)
    y = scan(xc, delta, layer.A, B, C, layer.D, z, layer.dt_proj.bias)  # (b, d_inner, L)
    return layer.out_proj(y.transpose(1, 2))  # (b, L, d_model)


def run_fwd(layer, x, g, scan):
    with torch.no_grad():
        return layer_forward(layer, x, scan), None


def run_fwd_bwd(layer, x, g, scan):
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    out = layer_forward(layer, x, scan)
    (out * g).sum().backward()
    return out.detach(), x.grad


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def benchmark(args) -> dict:
    torch.manual_seed(args.seed)
    layer = Mamba(args.d_model, d_state=args.d_state, expand=args.expand)
    x = torch.randn(args.batch, args.length, args.d_model)
    g = torch.randn(args.batch, args.length, args.d_model)
    paths = make_paths(load_pscan(args.mambapy_path))
    live = {k: v for k, v in paths.items() if v is not None}
    for k, f in live.items():  # warm-up (the slow reference is not run twice for it)
        if k != "ref":
            run_fwd(layer, x, g, f), run_fwd_bwd(layer, x, g, f)
    times = {(k, s): [] for k in live for s in ("fwd", "fwd+bwd")}
    results = {}  # outputs of each path's first timed run, compared below
    for r in range(args.repeats):  # interleaved, so load changes hit every path alike
        for k, f in live.items():
            if k == "ref" and r >= args.ref_repeats:
                continue
            for s, step in (("fwd", run_fwd), ("fwd+bwd", run_fwd_bwd)):
                t0 = time.perf_counter()
                res = step(layer, x, g, f)
                times[(k, s)].append(time.perf_counter() - t0)
                results.setdefault((k, s), res)
    results = {k: (results[(k, "fwd")][0], results[(k, "fwd+bwd")]) for k in live}
    out_ref, (_, gx_ref) = results["ref"][0], results["ref"][1]
    errors = {k: {"out": rel_err(o, out_ref), "fwdbwd_out": rel_err(ob, out_ref),
                  "grad_x": rel_err(gx, gx_ref)}
              for k, (o, (ob, gx)) in results.items() if k != "ref"}
    med = {f"{k}/{s}": statistics.median(v) * 1e3 for (k, s), v in times.items()}
    ratios = {}
    for s in ("fwd", "fwd+bwd"):
        ratios[f"ref/fast {s}"] = med[f"ref/{s}"] / med[f"fast/{s}"]
        if "mambapy" in live:
            ratios[f"mambapy/fast {s}"] = med[f"mambapy/{s}"] / med[f"fast/{s}"]
    cfg = {k: v for k, v in vars(args).items() if k != "json"}
    return {"config": cfg | {"threads": torch.get_num_threads(), "torch": torch.__version__,
                             "machine": platform.processor() or platform.machine()},
            "median_ms": med, "runs": {f"{k}/{s}": len(v) for (k, s), v in times.items()},
            "ratios": ratios, "max_rel_error_vs_ref": errors,
            "skipped": [k for k, v in paths.items() if v is None]}


def print_table(report: dict) -> None:
    cfg, med = report["config"], report["median_ms"]
    print(f"Mamba layer on CPU: d_model={cfg['d_model']} expand={cfg['expand']} N={cfg['d_state']}"
          f" B={cfg['batch']} L={cfg['length']} float32, {cfg['threads']} thread(s), "
          f"torch {cfg['torch']}")
    print(f"{'scan':<9}{'fwd ms':>10}{'fwd+bwd ms':>12}{'runs':>6}   max rel err vs ref: "
          "out / grad x")
    for k in ("fast", "mambapy", "ref"):
        if k in report["skipped"]:
            print(f"{k:<9}{'skipped (mambapy not importable)':>40}")
            continue
        e = report["max_rel_error_vs_ref"].get(k)
        err = "(reference)" if e is None else f"{e['out']:.1e} / {e['grad_x']:.1e}"
        print(f"{k:<9}{med[k + '/fwd']:>10.1f}{med[k + '/fwd+bwd']:>12.1f}"
              f"{report['runs'][k + '/fwd']:>6}   {err}")
    r = report["ratios"]
    for s in ("fwd", "fwd+bwd"):
        mp = r.get(f"mambapy/fast {s}")
        mp = "skipped" if mp is None else f"{mp:.2f}x"
        print(f"{s:<8} speed-up of fast: over mambapy {mp}, over ref {r[f'ref/fast {s}']:.1f}x")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7, help="timed runs per path (median)")
    p.add_argument("--ref-repeats", type=int, default=1, help="timed runs of the slow reference")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: keep)")
    p.add_argument("--mambapy-path", default=None,
                   help="folder holding the mambapy package "
                        f"(default $MAMBAPY_PATH or {DEFAULT_MAMBAPY})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-3, help="max relative error accepted vs ref")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the report as JSON")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = benchmark(args)
    print_table(report)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    worst = max(v for e in report["max_rel_error_vs_ref"].values() for v in e.values())
    if worst > args.tol:
        raise SystemExit(f"outputs disagree: max relative error {worst:.2e} > {args.tol:g}")
    return report


if __name__ == "__main__":
    main()
