"""Host (CPU) cost per call of the S6 selective scan, ours (dispatch -> v3) vs mamba_ssm.

At the B=1 shapes the kernels take ~40 us on an H100, so do_bench's wall-clock medians
measure the host path. This script, for each shape and side:

* ``do_bench`` medians of forward and forward+backward (as ``gpu_s6._bench``);
* host microseconds per call: a loop of calls without synchronisation at a tiny shape
  (B=1, D=64, L=64, where the device is idle most of the time), best of three loops:
  forward without grad, forward recording the graph, and forward+backward;
* the aten ops and CUDA kernels one forward+backward launches (torch.profiler);
* cProfile of our forward and forward+backward (Python functions by own time).

GPU machine only: ``python3 benchmarks/gpu_s6_host.py [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time

import torch
import triton

sys.path.insert(0, "benchmarks")
import gpu_s6

SHAPES = [("B1-L2K-N16", 1, 1024, 2048, 16), ("B1-L2K-N64", 1, 1024, 2048, 64),
          ("tiny", 1, 64, 64, 16)]


def _impls():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as theirs

    return {"ours": gpu_s6.selective_scan_dispatch, "mamba": theirs}


def _steps(fn, t, grads):
    leaves = [t[k] for k in ("u", "delta", "z", "A", "B", "C", "D", "delta_bias")]

    def fwd():
        with torch.no_grad():
            gpu_s6._call(fn, t)

    def fb():
        for x in leaves:
            x.grad = None
        gpu_s6._call(fn, t).backward(grads)

    return fwd, fb, leaves


def host_us(step, n=400):
    """Host microseconds per call of ``step`` (no sync inside the loop)."""
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6


def launches(step):
    """(aten ops, CUDA kernels) per call, by name."""
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    ev = prof.key_averages()
    aten = {e.key: e.count for e in ev if e.key.startswith("aten::")}
    kern = {e.key[:60]: e.count for e in ev if e.device_type.name == "CUDA" and e.count}
    return aten, kern


def profile_text(step, n=200, top=25):
    for _ in range(10):
        step()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        step()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def _per_call_us(f, n=2000):
    for _ in range(50):
        f()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return best


def stages():
    """Host microseconds of the pieces of our call at the tiny shape (best of 3 loops)."""
    from ssmts.kernels import selective_scan_v3 as v3

    from ssmts.ssm.selective import check_selective_scan_args

    t = gpu_s6.make_inputs(1, 64, 64, 16, torch.bfloat16, seed=3)
    u, dl, A, B, C, D, z, bias = (t[k] for k in ("u", "delta", "A", "B", "C", "D", "z",
                                                  "delta_bias"))
    B4, C4 = v3._as_bc4(B), v3._as_bc4(C)
    fcfg, bcfg, save = v3._configs(1, 64, 64, 64, 2)
    out, carry = v3._s6_fwd(u, dl, A, B4, C4, D, z, bias, None, True, fcfg, save)
    g = torch.randn_like(u)
    res = {
        "check_args": lambda: check_selective_scan_args(u, dl, A, B, C, D, z, bias, None,
                                                        values=False),
        "configs": lambda: v3._configs(1, 64, 64, 64, 2),
        "empty_like": lambda: torch.empty_like(u),
        "s6_fwd (allocs + launch)": lambda: v3._s6_fwd(u, dl, A, B4, C4, D, z, bias, None,
                                                       True, fcfg, save),
        "_forward": lambda: v3._forward(u, dl, A, B, C, D, z, bias, True, False, None),
        "public, no grad": lambda: v3.selective_scan(u, dl, A, B, C, D, z, bias, True),
        "s6_bwd (allocs + launch + sums)": lambda: v3._s6_bwd(
            g, None, u, dl, A, B4, C4, D, z, bias, None, carry, True, False, False, bcfg,
            save),
    }
    leaves = dict(t)
    for x in leaves.values():
        x.requires_grad_(True)
    args = [leaves[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]

    def fb(fn):
        def step():
            for x in args:
                x.grad = None
            fn(*args, delta_softplus=True).backward(g)
        return step

    res["apply with grad (fwd only)"] = lambda: v3.selective_scan(*args, delta_softplus=True)
    res["ours f+b"] = fb(v3.selective_scan)
    res["trivial Function f+b"] = fb(_Trivial.run)
    try:
        import selective_scan_cuda
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as theirs

        res["mamba C++ fwd"] = lambda: selective_scan_cuda.fwd(u, dl, A, B4, C4, D, z, bias,
                                                                 True)
        res["mamba apply with grad (fwd only)"] = lambda: theirs(*args, delta_softplus=True)
        res["mamba f+b"] = fb(theirs)
    except ImportError:
        pass
    out = {}
    for k, f in res.items():
        try:
            out[k] = _per_call_us(f)
        except RuntimeError as err:  # report, keep timing the rest
            print(f"stage {k}: {err}")
    return out


class _Trivial(torch.autograd.Function):
    """The engine's floor: same inputs, one allocation forward, one per gradient back."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias):
        ctx.save_for_backward(u, delta, A, B, C, D, z, bias)
        return torch.empty_like(u)

    @staticmethod
    def backward(ctx, g):
        return tuple(torch.empty_like(x) for x in ctx.saved_tensors)

    @staticmethod
    def run(u, delta, A, B, C, D, z, bias, delta_softplus=True):
        return _Trivial.apply(u, delta, A, B, C, D, z, bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", action="store_true", help="also print cProfile of ours")
    ap.add_argument("--stages", action="store_true", help="time the pieces of our call")
    args = ap.parse_args()
    if args.stages:
        for k, v in stages().items():
            print(f"stage {k:34s} {v:8.1f} us")
    impls = _impls()
    rows = []
    for name, b, d, L, n in SHAPES:
        t = gpu_s6.make_inputs(b, d, L, n, torch.bfloat16, seed=7)
        grads = torch.randn_like(t["u"])
        for side, fn in impls.items():
            fwd, fb, leaves = _steps(fn, t, grads)
            row = {"case": name, "impl": side}
            if name != "tiny":
                row["bench_fwd_ms"] = triton.testing.do_bench(fwd, warmup=25, rep=200,
                                                              return_mode="median")
            for x in leaves:
                x.requires_grad_(True)
            if name != "tiny":
                row["bench_fb_ms"] = triton.testing.do_bench(fb, warmup=25, rep=200,
                                                             return_mode="median")
            else:
                for x in leaves:
                    x.requires_grad_(False)
                row["host_fwd_us"] = min(host_us(fwd) for _ in range(3))
                for x in leaves:
                    x.requires_grad_(True)
                row["host_fwd_grad_us"] = min(host_us(lambda fn=fn, t=t: gpu_s6._call(fn, t))
                                              for _ in range(3))
                row["host_fb_us"] = min(host_us(fb) for _ in range(3))
                aten, kern = launches(fb)
                row["aten_fb"], row["kernels_fb"] = aten, kern
                row["n_aten_fb"], row["n_kernels_fb"] = sum(aten.values()), sum(kern.values())
                if side == "ours" and args.profile:
                    for x in leaves:
                        x.requires_grad_(False)
                    print(f"--- cProfile ours forward ({name})\n" + profile_text(fwd))
                    for x in leaves:
                        x.requires_grad_(True)
                    print(f"--- cProfile ours forward+backward ({name})\n" + profile_text(fb))
            for x in leaves:
                x.requires_grad_(False)
                x.grad = None
            rows.append(row)
    print(f"{'case':12s} {'impl':6s} {'fwd ms':>8s} {'f+b ms':>8s} {'host fwd us':>12s} "
          f"{'host f+b us':>12s} {'fwd grad us':>12s} {'aten':>5s} {'kern':>5s}")
    for r in rows:
        print(f"{r['case']:12s} {r['impl']:6s} {r.get('bench_fwd_ms', float('nan')):8.4f} "
              f"{r.get('bench_fb_ms', float('nan')):8.4f} {r.get('host_fwd_us', float('nan')):12.1f} "
              f"{r.get('host_fb_us', float('nan')):12.1f} {r.get('host_fwd_grad_us', float('nan')):12.1f} "
              f"{r.get('n_aten_fb', 0):5d} "
              f"{r.get('n_kernels_fb', 0):5d}")
    for r in rows:
        if "aten_fb" in r:
            print(r["impl"], "aten:", r["aten_fb"])
            print(r["impl"], "kernels:", r["kernels_fb"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)



def backward_stages(n=1000):
    """Host microseconds of backward alone (graph built once, retained) for ours, mamba and
    the trivial Function, and the time spent inside our backward's Python per call."""
    from ssmts.kernels import selective_scan_v3 as v3

    args, g = _tiny_grad_inputs()
    sides = _sides(v3.selective_scan)
    res = {}
    inside = {"backward": 0.0, "_s6_bwd": 0.0}
    orig_b, orig_s = v3.SelectiveScanFn.backward, v3._s6_bwd

    v3.SelectiveScanFn.backward = staticmethod(_timed(inside, "backward", orig_b))
    v3._s6_bwd = _timed(inside, "_s6_bwd", orig_s)
    try:
        for side, fn in sides.items():
            out = fn(*args, delta_softplus=True)

            def step(out=out):
                for x in args:
                    x.grad = None
                out.backward(g, retain_graph=True)

            step()  # compiles on a first call: kept out of the per-call times
            for k in inside:
                inside[k] = 0.0
            res[f"{side} backward (retained graph)"] = _per_call_us(step, n)
            if side == "ours":
                calls = 50 + 3 * n
                for k in inside:
                    res[f"ours inside {k}"] = inside[k] / calls * 1e6
    finally:
        v3.SelectiveScanFn.backward, v3._s6_bwd = orig_b, orig_s
    return res


def combined_stages(n=1000):
    """Our forward+backward loop with timers inside: per call, microseconds in the forward,
    the backward and its launcher, and how many launches took Triton's own path."""
    import triton.runtime.jit as tjit
    from ssmts.kernels import selective_scan_v3 as v3

    args, g = _tiny_grad_inputs()
    acc = {"_forward": 0.0, "backward": 0.0, "_s6_bwd": 0.0, "step": 0.0}
    count = {"triton_run": 0}
    saved = (v3._forward, v3.SelectiveScanFn.backward, v3._s6_bwd, tjit.JITFunction.run)

    def counted(self, *a, **k):
        count["triton_run"] += 1
        return saved[3](self, *a, **k)

    v3._forward = _timed(acc, "_forward", saved[0])
    v3.SelectiveScanFn.backward = staticmethod(_timed(acc, "backward", saved[1]))
    v3._s6_bwd = _timed(acc, "_s6_bwd", saved[2])
    tjit.JITFunction.run = counted
    try:
        for _ in range(20):
            v3.selective_scan(*args, delta_softplus=True).backward(g)
        torch.cuda.synchronize()
        for k in acc:
            acc[k] = 0.0
        count["triton_run"] = 0
        for _ in range(n):
            t0 = time.perf_counter()
            for x in args:
                x.grad = None
            v3.selective_scan(*args, delta_softplus=True).backward(g)
            acc["step"] += time.perf_counter() - t0
        torch.cuda.synchronize()
    finally:
        v3._forward, v3.SelectiveScanFn.backward, v3._s6_bwd, tjit.JITFunction.run = saved
    res = {f"in {k}": v / n * 1e6 for k, v in acc.items()}
    res["triton-path launches per step"] = count["triton_run"] / n
    return res


def threading_effect(n=1000):
    """Forward+backward host microseconds (tiny shape) of ours, mamba and the trivial
    Function, with the autograd engine's device threads on (default) and off
    (``torch.autograd.set_multithreading_enabled(False)``: backward on the calling thread)."""
    from ssmts.kernels import selective_scan_v3 as v3

    args, g = _tiny_grad_inputs()
    sides = _sides(v3.selective_scan)
    res = {}
    for threads in (True, False):
        for side, fn in sides.items():
            def step(fn=fn):
                for x in args:
                    x.grad = None
                fn(*args, delta_softplus=True).backward(g)

            with torch.autograd.set_multithreading_enabled(threads):
                res[f"{side} f+b, engine threads {'on' if threads else 'off'}"] = \
                    _per_call_us(step, n)
    return res


def profile_single_thread(n=500, top=30):
    """cProfile of forward+backward steps (tiny shape) with the engine's device threads off,
    so the backward's Python shows up in the same profile; ours and mamba."""
    from ssmts.kernels import selective_scan_v3 as v3

    args, g = _tiny_grad_inputs()
    sides = _sides(v3.selective_scan, trivial=False)
    with torch.autograd.set_multithreading_enabled(False):
        for side, fn in sides.items():
            def step(fn=fn):
                for x in args:
                    x.grad = None
                fn(*args, delta_softplus=True).backward(g)

            print(f"--- cProfile {side} forward+backward, engine threads off")
            print(profile_text(step, n, top))


def _timed(acc, name, f):
    """``f`` that adds its own seconds to ``acc[name]`` on every call."""
    def w(*a, **k):
        t0 = time.perf_counter()
        r = f(*a, **k)
        acc[name] += time.perf_counter() - t0
        return r
    return w


def _tiny_grad_inputs(seed=4):
    """The tiny shape's inputs as leaves that require grad, and an upstream gradient."""
    t = gpu_s6.make_inputs(1, 64, 64, 16, torch.bfloat16, seed=seed)
    for x in t.values():
        x.requires_grad_(True)
    return [t[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")], \
        torch.randn_like(t["u"])


def _sides(ours, trivial=True):
    """{name: selective scan}: ours, the trivial Function, mamba_ssm's if importable."""
    sides = {"ours": ours}
    if trivial:
        sides["trivial"] = _Trivial.run
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as theirs

        sides["mamba"] = theirs
    except ImportError:
        pass
    return sides


if __name__ == "__main__":
    main()
