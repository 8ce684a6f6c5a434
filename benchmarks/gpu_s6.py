"""GPU check and timing of the fused selective scan (S6) against mamba_ssm's CUDA kernel.

One call does everything (see benchmarks/NOTES_s6.md):

1. measures the device-to-device copy bandwidth;
2. per case, checks ours against the float64 torch reference on fresh random inputs
   (a slice of the case: batch <= 2, D <= 128, same L and N; outputs poisoned with NaN
   through the caching allocator before the call), forward, final state and every gradient;
3. times ours (``--impl v2|v3|both``, default both: ``kernels/selective_scan.py`` and
   ``kernels/selective_scan_v3.py``) and mamba_ssm's ``selective_scan_fn`` on the same full-size inputs
   (z gating, D skip, delta_bias, softplus), forward and forward+backward,
   ``triton.testing.do_bench`` medians, and the peak memory of one forward+backward;
   then both again as CUDA-graph replays (each side's device time without launch gaps:
   at B=1 the wall-clock medians are host-bound, see ``gpu_s6_host.py``). Ours and the
   anchor are timed in interleaved rounds (``S6_ROUNDS``, default 7: one ``do_bench``
   median of each per round, the order rotated), so drift in the host's load reaches
   both alike; rows give the medians over rounds and the range of per-round ratios;
4. prints a table and writes JSON to ``$OUT/s6.json``.

Floors: bytes / measured copy bandwidth, and the exp-unit floor B*D*L*N exp2 (forward;
twice that for forward+backward, whose backward recomputes them) at
SMs x 16 ex2/clk x max SM clock (nvidia-smi; 1.98 GHz if unknown).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
import triton.testing

from _checkout import ensure_ssmts_kernels  # noqa: E402
from _graphs import capture_replay, interleaved  # noqa: E402

ensure_ssmts_kernels()

from ssmts.kernels.selective_scan import selective_scan as selective_scan_v2  # noqa: E402
from ssmts.kernels.selective_scan_v3 import selective_scan as selective_scan_v3  # noqa: E402
from ssmts.ssm.selective import selective_scan_ref  # noqa: E402



def selective_scan_dispatch(*args, **kw):
    """What ``ssmts.ssm.dispatch.selective_scan(backend="triton")`` runs for these tensors."""
    from ssmts.ssm.dispatch import _triton_kernel_for

    return _triton_kernel_for(args[0])(*args, **kw)


IMPLS = {"v2": selective_scan_v2, "v3": selective_scan_v3, "dispatch": selective_scan_dispatch}

CASES = [  # name, batch, D, L, N, dtype
    ("S6-A", 8, 2048, 4096, 16, torch.bfloat16),
    ("S6-A", 8, 2048, 4096, 16, torch.float32),
    ("TS-S6", 64, 256, 1024, 16, torch.float32),
] + [(f"B1-L{L // 1024}K-N{n}", 1, 1024, L, n, torch.bfloat16)
     for n in (16, 64) for L in (2048, 8192, 32768)]


def make_inputs(batch, dim, length, n, dtype, seed, device="cuda"):
    """Random inputs, never zeros; softplus(delta + bias) roughly 1e-3 .. 1e-1."""
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape, dt=dtype, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, device=device) * scale + shift).to(dt)

    return dict(u=r(batch, dim, length), delta=r(batch, dim, length, scale=0.7, shift=-4.0),
                A=-(torch.rand(dim, n, generator=g, device=device) * 3 + 0.3),
                B=r(batch, n, length), C=r(batch, n, length), D=r(dim, dt=torch.float32),
                z=r(batch, dim, length), delta_bias=r(dim, dt=torch.float32, scale=0.3))


def _call(fn, t):
    return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
              delta_softplus=True)


def _poison():
    """Fill freed allocator blocks with NaN so unwritten outputs show up."""
    free = torch.cuda.mem_get_info()[0]
    x = torch.empty(int(min(free * 0.5, 8e9)) // 4, device="cuda")
    x.fill_(float("nan"))
    del x


def check_case(batch, dim, length, n, dtype, impls, seed=1234):
    """Per implementation: max relative error (vs the float64 reference, computed once) of
    the output and all gradients, and the per-tensor errors."""
    t = make_inputs(min(batch, 2), min(dim, 128), min(length, 8192), n, dtype, seed)
    ref = {k: v.detach().double().requires_grad_(True) for k, v in t.items()}
    rout = _call(selective_scan_ref, ref)
    gout = torch.randn(rout.shape, device="cuda", dtype=torch.float64)
    g_ref = torch.autograd.grad((rout * gout).sum(), list(ref.values()))
    res = {}
    for name in impls:
        ours = {k: v.clone().requires_grad_(True) for k, v in t.items()}
        # a first call compiles and fills the launch caches: the checked one takes the
        # cached launch path that the timings use
        warm = _call(IMPLS[name], ours)
        torch.autograd.grad((warm.double() * gout).sum(), list(ours.values()))
        del warm
        _poison()
        out = _call(IMPLS[name], ours)
        _poison()
        g_ours = torch.autograd.grad((out.double() * gout).sum(), list(ours.values()))
        errs = {"out": (out.double() - rout).abs().max().item() / rout.abs().max().item()}
        for k, a, b in zip(ours, g_ours, g_ref):
            errs["d" + k] = (a.double() - b).abs().max().item() / b.abs().max().item()
        errs = {k: (float("inf") if v != v else v) for k, v in errs.items()}  # NaN -> inf
        res[name] = (max(errs.values()), errs)
    return res


def _graph_ms(step):
    """Median ms of CUDA-graph replays of ``step`` (its device time), NaN if the step
    cannot be captured."""
    replay = _capture(step)
    if replay is None:
        return float("nan")
    return triton.testing.do_bench(replay, warmup=25, rep=100, return_mode="median")


def _bench_graphs(fn, t, grads):
    """(forward, forward+backward) medians of CUDA-graph replays, ms."""
    leaves = [t[k] for k in ("u", "delta", "z", "A", "B", "C", "D", "delta_bias")]
    fwd = _graph_ms(lambda: _call(fn, t))
    for x in leaves:
        x.requires_grad_(True)
        x.grad = None

    def step():
        _call(fn, t).backward(grads)

    fb = _graph_ms(step)
    for x in leaves:
        x.grad = None
        x.requires_grad_(False)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return fwd, fb


def _bench(fn, t, grads):
    """One implementation alone (the sweeps): forward and forward+backward ``do_bench``
    medians (ms), peak GB and the autograd node."""
    fwd = triton.testing.do_bench(lambda: _call(fn, t), warmup=25, rep=100, return_mode="median")
    leaves = [t[k] for k in ("u", "delta", "z", "A", "B", "C", "D", "delta_bias")]
    for x in leaves:
        x.requires_grad_(True)
    fb = triton.testing.do_bench(lambda: _call(fn, t).backward(grads), warmup=25, rep=100,
                                 grad_to_none=leaves, return_mode="median")
    peak, node = _peak_and_node(fn, t, grads, leaves)
    for x in leaves:
        x.requires_grad_(False)
    return fwd, fb, peak, node


ROUNDS = int(os.environ.get("S6_ROUNDS", "7"))  # interleaved rounds per timing


def _peak_and_node(fn, t, grads, leaves):
    """Peak GB of one forward+backward and the autograd node's class (CppFunction: ssmts'
    C++ host path, kernels/_host.py)."""
    for x in leaves:
        x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = _call(fn, t)
    node = type(out.grad_fn).__name__
    out.backward(grads)
    del out
    torch.cuda.synchronize()
    for x in leaves:
        x.grad = None
    return torch.cuda.max_memory_allocated() / 1e9, node


def _bench_interleaved(fns: dict, t, grads, rounds: int = ROUNDS) -> dict:
    """Time every implementation in ``fns`` (name -> function) on the same inputs, in
    interleaved rounds: per round, one ``do_bench`` median of each (order rotated), for the
    forward, the forward+backward, and CUDA-graph replays of both. Returns per name the
    medians over rounds (ms), the per-round values, peak GB and the autograd node."""
    leaves = [t[k] for k in ("u", "delta", "z", "A", "B", "C", "D", "delta_bias")]
    bench = lambda f, **kw: triton.testing.do_bench(f, warmup=25, rep=100,  # noqa: E731
                                                    return_mode="median", **kw)
    res = {k: {} for k in fns}

    def record(key, timers):
        med, per = interleaved(timers, rounds)
        for k in fns:
            res[k][key], res[k][key + "_rounds"] = med.get(k, float("nan")), per.get(k, [])

    record("fwd", {k: (lambda fn=fn: bench(lambda: _call(fn, t))) for k, fn in fns.items()})
    graphs = {k: _capture(lambda fn=fn: _call(fn, t)) for k, fn in fns.items()}
    record("graph_fwd", {k: (lambda g=g: bench(g)) for k, g in graphs.items() if g})
    del graphs
    for x in leaves:
        x.requires_grad_(True)
        x.grad = None
    step = lambda fn: _call(fn, t).backward(grads)  # noqa: E731
    record("fb", {k: (lambda fn=fn: bench(lambda: step(fn), grad_to_none=leaves))
                  for k, fn in fns.items()})
    torch.cuda.empty_cache()
    for k, fn in fns.items():
        res[k]["peak"], res[k]["node"] = _peak_and_node(fn, t, grads, leaves)
    # graph replays of forward+backward: the captured graphs accumulate into the leaves'
    # .grad as they stand at capture, so those stay alive until the replays are timed
    graphs = {k: _capture(lambda fn=fn: step(fn)) for k, fn in fns.items()}
    record("graph_fb", {k: (lambda g=g: bench(g)) for k, g in graphs.items() if g})
    del graphs
    for x in leaves:
        x.grad = None
        x.requires_grad_(False)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return res


def _capture(step):
    """``capture_replay(step)``, or None (printed) if the step cannot be captured."""
    try:
        return capture_replay(step)
    except RuntimeError as err:
        print("graph capture failed:", err)
        return None


def copy_bandwidth():
    x = torch.empty(int(1e9) // 4, device="cuda")
    y = torch.empty_like(x)
    ms = triton.testing.do_bench(lambda: y.copy_(x), return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def exp_rate():
    props = torch.cuda.get_device_properties(0)
    try:
        clk = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm",
                                    "--format=csv,noheader,nounits"], capture_output=True,
                                   text=True, timeout=20).stdout.split()[0]) * 1e6
    except Exception:
        clk = 1.98e9
    return props.multi_processor_count * 16 * clk, clk


def _floors(batch, dim, length, n, dtype, bw, ex_rate):
    es = torch.finfo(dtype).bits // 8
    bdl, bnl = batch * dim * length, batch * n * length
    fwd_bytes = es * (4 * bdl + 2 * bnl)  # u, delta, z in; out
    # backward: reads u, delta, z, gout, B, C and carries; writes du, ddelta, dz, dB, dC
    bwd_bytes = es * (7 * bdl + 4 * bnl) + 4 * bdl * n // 16
    ex = bdl * n / ex_rate * 1e3
    return max(fwd_bytes / bw * 1e3, ex), max((fwd_bytes + bwd_bytes) / bw * 1e3, 2 * ex)


def check_and_time_s6(cases=CASES, impls=("v2", "v3"), sink=None):
    """Check and time each case and implementation; returns one dict per (case, impl)
    (times in ms, memory in GB). ``sink(rows)`` is called after every case."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_fn
    except Exception as exc:  # anchor missing: time ours only
        print("mamba_ssm not importable:", exc)
        mamba_fn = None
    bw = copy_bandwidth()
    ex_rate, clk = exp_rate()
    meta = dict(copy_bw_tbs=bw / 1e12, exp_rate_t=ex_rate / 1e12, sm_clock_ghz=clk / 1e9)
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s; exp2 rate {ex_rate / 1e12:.2f} T/s "
          f"(SM clock {clk / 1e9:.2f} GHz)", flush=True)
    rows = []
    for name, batch, dim, length, n, dtype in cases:
        t0 = time.time()
        checks = check_case(batch, dim, length, n, dtype, impls)
        t = make_inputs(batch, dim, length, n, dtype, seed=99)
        grads = torch.randn_like(t["u"])
        fns = {impl: IMPLS[impl] for impl in impls}
        if mamba_fn is not None:
            fns["anchor"] = mamba_fn
        # the smallest shapes are host-bound on the wall clock (a few 0.1 ms of host work for
        # ~0.3 ms of device work), and the host's speed drifts: three times the rounds there
        res = _bench_interleaved(fns, t, grads, ROUNDS * (3 if batch * dim * length * n <= 2 ** 26
                                                          else 1))
        nan = float("nan")
        anc = res.get("anchor", dict(fwd=nan, fb=nan, peak=nan, graph_fwd=nan, graph_fb=nan,
                                     fwd_rounds=[], fb_rounds=[]))
        f_fwd, f_fb = _floors(batch, dim, length, n, dtype, bw, ex_rate)
        for impl in impls:
            ours = res[impl]
            err, errs = checks[impl]
            # round by round: anchor / ours measured back to back
            rf = [a / o for a, o in zip(anc["fwd_rounds"], ours["fwd_rounds"])] or [nan]
            rb = [a / o for a, o in zip(anc["fb_rounds"], ours["fb_rounds"])] or [nan]
            row = dict(case=name, impl=impl, shape=[batch, dim, length, n],
                       dtype=str(dtype).split(".")[-1], rounds=len(ours["fb_rounds"]),
                       ours_fwd=ours["fwd"], ours_fb=ours["fb"], ours_peak_gb=ours["peak"],
                       anchor_fwd=anc["fwd"], anchor_fb=anc["fb"], anchor_peak_gb=anc["peak"],
                       ratio_fwd=anc["fwd"] / ours["fwd"], ratio_fb=anc["fb"] / ours["fb"],
                       ratio_fwd_rounds=[min(rf), max(rf)], ratio_fb_rounds=[min(rb), max(rb)],
                       ours_fwd_rounds=ours["fwd_rounds"], anchor_fwd_rounds=anc["fwd_rounds"],
                       ours_fb_rounds=ours["fb_rounds"], anchor_fb_rounds=anc["fb_rounds"],
                       floor_fwd=f_fwd, floor_fb=f_fb, pct_floor_fwd=100 * f_fwd / ours["fwd"],
                       pct_floor_fb=100 * f_fb / ours["fb"], max_rel_err=err, errs=errs,
                       graph_fwd=ours["graph_fwd"], graph_fb=ours["graph_fb"],
                       anchor_graph_fwd=anc["graph_fwd"], anchor_graph_fb=anc["graph_fb"],
                       graph_ratio_fwd=anc["graph_fwd"] / ours["graph_fwd"],
                       graph_ratio_fb=anc["graph_fb"] / ours["graph_fb"],
                       autograd_node=ours["node"], seconds=time.time() - t0)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del t, grads
        torch.cuda.empty_cache()
        if sink is not None:
            sink(rows, meta)
    return rows, meta


def print_table(rows):
    """Medians over the interleaved rounds; [lo-hi] is the range of the per-round ratios."""
    hdr = (f"{'case':14s} {'impl':8s} {'dtype':8s} {'fwd ms':>7s} {'anchor':>7s} {'x':>5s} "
           f"{'rounds':>11s} {'%fl':>4s} | {'f+b ms':>7s} {'anchor':>7s} {'x':>5s} {'rounds':>11s} "
           f"{'%fl':>4s} | {'peakGB':>6s} {'anchor':>6s} | {'rel err':>8s} | graph x fwd f+b")
    print(hdr)
    nan2 = [float("nan")] * 2
    for r in rows:
        lo_f, hi_f = r.get("ratio_fwd_rounds", nan2)
        lo_b, hi_b = r.get("ratio_fb_rounds", nan2)
        print(f"{r['case']:14s} {r.get('impl', 'v2'):8s} {r['dtype']:8s} {r['ours_fwd']:7.3f} "
              f"{r['anchor_fwd']:7.3f} {r['ratio_fwd']:5.2f} [{lo_f:4.2f}-{hi_f:4.2f}] "
              f"{r['pct_floor_fwd']:4.0f} | {r['ours_fb']:7.3f} {r['anchor_fb']:7.3f} "
              f"{r['ratio_fb']:5.2f} [{lo_b:4.2f}-{hi_b:4.2f}] {r['pct_floor_fb']:4.0f} | "
              f"{r['ours_peak_gb']:6.2f} {r['anchor_peak_gb']:6.2f} | {r['max_rel_err']:8.1e} | "
              f"{r.get('graph_ratio_fwd', float('nan')):5.2f} {r.get('graph_ratio_fb', float('nan')):5.2f}")


def sweep():
    """S6-A bf16, v2: channels per program (env SSMTS_S6_BD) and deterministic mode, ms."""
    t = make_inputs(8, 2048, 4096, 16, torch.bfloat16, seed=99)
    grads = torch.randn_like(t["u"])
    res = []
    for bd in ("8", "16", "32"):
        os.environ["SSMTS_S6_BD"] = bd
        fwd, fb, peak, _ = _bench(selective_scan_v2, t, grads)
        res.append(dict(bd=int(bd), fwd=fwd, fb=fb, peak_gb=peak))
        print("sweep", res[-1], flush=True)
    os.environ.pop("SSMTS_S6_BD")
    det = lambda *a, **k: selective_scan_v2(*a, deterministic=True, **k)  # noqa: E731
    fwd, fb, peak, _ = _bench(det, t, grads)
    res.append(dict(bd="auto", deterministic=True, fwd=fwd, fb=fb, peak_gb=peak))
    print("sweep", res[-1], flush=True)
    return res


V3_FWD = ["2,512,2", "1,256,1", "1,256,2", "1,512,4", "1,1024,4", "1,2048,8"]
V3_BWD = ["1,128,1", "1,256,2", "1,256,4", "1,512,4", "1,1024,4"]
V3_SWEEP_CASES = [("S6-A", 8, 2048, 4096, 16, torch.bfloat16),
                  ("TS-S6", 64, 256, 1024, 16, torch.float32),
                  ("B1-L2K-N16", 1, 1024, 2048, 16, torch.bfloat16),
                  ("B1-L8K-N16", 1, 1024, 8192, 16, torch.bfloat16),
                  ("B1-L2K-N64", 1, 1024, 2048, 64, torch.bfloat16),
                  ("B1-L32K-N64", 1, 1024, 32768, 64, torch.bfloat16)]


def sweep_v3():
    """v3 launch configs "BLOCK_D,BLOCK_L,warps" (env SSMTS_S6V3_FWD / _BWD) over
    V3_SWEEP_CASES, and deterministic mode at S6-A bf16; ms. Forward configs are timed with
    the default backward and the reverse."""
    res = []
    for name, batch, dim, length, n, dtype in V3_SWEEP_CASES:
        t = make_inputs(batch, dim, length, n, dtype, seed=99)
        grads = torch.randn_like(t["u"])
        for var, cfgs in (("SSMTS_S6V3_FWD", V3_FWD), ("SSMTS_S6V3_BWD", V3_BWD)):
            for cfg in cfgs:
                os.environ[var] = cfg
                try:
                    fwd, fb, peak, _ = _bench(selective_scan_v3, t, grads)
                except Exception as exc:  # a config that does not compile or fit
                    fwd = fb = peak = float("nan")
                    print("sweep_v3", var, cfg, "failed:", str(exc)[:200])
                res.append(dict(case=name, dtype=str(dtype), var=var, cfg=cfg, fwd=fwd, fb=fb,
                                peak_gb=peak))
                print("sweep_v3", res[-1], flush=True)
                os.environ.pop(var)
        if name == "S6-A" and dtype == torch.bfloat16:
            det = lambda *a, **k: selective_scan_v3(*a, deterministic=True, **k)  # noqa: E731
            fwd, fb, peak, _ = _bench(det, t, grads)
            res.append(dict(case=name, cfg="default", deterministic=True, fwd=fwd, fb=fb,
                            peak_gb=peak))
            print("sweep_v3", res[-1], flush=True)
        del t, grads
    return res


B1_GRAPH_CASES = [("B1-L2K-N16", 1, 1024, 2048, 16), ("B1-L2K-N64", 1, 1024, 2048, 64),
                  ("B1-L8K-N16", 1, 1024, 8192, 16), ("B1-L8K-N64", 1, 1024, 8192, 64)]
B1_BWD = ["1,128,1", "1,256,2", "1,256,4", "1,512,2", "1,512,4", "1,1024,4", "1,1024,8",
          "2,256,2", "2,512,4"]


def sweep_b1_graphs():
    """Backward configs at the B=1 shapes, timed as CUDA-graph replays (device time: the
    wall clock there is host-bound); forward+backward ms, and the mamba anchor."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_fn

    res = []
    for name, batch, dim, length, n in B1_GRAPH_CASES:
        t = make_inputs(batch, dim, length, n, torch.bfloat16, seed=99)
        grads = torch.randn_like(t["u"])
        res.append(dict(case=name, cfg="mamba", fb=_bench_graphs(mamba_fn, t, grads)[1]))
        print("sweep_b1", res[-1], flush=True)
        for cfg in B1_BWD:
            os.environ["SSMTS_S6V3_BWD"] = cfg
            try:
                fb = _bench_graphs(selective_scan_v3, t, grads)[1]
            except Exception as exc:  # a config that does not compile or fit
                fb = float("nan")
                print("sweep_b1", cfg, "failed:", str(exc)[:200])
            os.environ.pop("SSMTS_S6V3_BWD")
            res.append(dict(case=name, cfg=cfg, fb=fb))
            print("sweep_b1", res[-1], flush=True)
        del t, grads
    return res


def _arg(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def diag():
    """One v3 forward+backward at S6-A bf16 after a warm-up, for ncu (-k regex:_s6v3)."""
    t = make_inputs(8, 2048, 4096, 16, torch.bfloat16, seed=99)
    leaves = [t[k] for k in ("u", "delta", "z", "B", "C")]
    for x in leaves:
        x.requires_grad_(True)
    grads = torch.randn_like(t["u"])
    for _ in range(2):
        _call(selective_scan_v3, t).backward(grads)
    torch.cuda.synchronize()


if __name__ == "__main__":
    if "--diag" in sys.argv:
        diag()
        sys.exit(0)
    if "--sweep-b1" in sys.argv:
        rows = sweep_b1_graphs()
        with open(os.path.join(os.environ.get("OUT", "."), "s6_b1_sweep.json"), "w") as f:
            json.dump(rows, f, indent=1)
        sys.exit(0)
    impl = _arg("--impl", "both")
    impls = ("v2", "v3") if impl == "both" else (impl,)  # or "dispatch": the dispatcher's pick
    skip = {"--impl", impl, "--sweep", "--sweep-v3"}
    sel = [a for a in sys.argv[1:] if a not in skip]
    cases = [c for c in CASES if not sel or c[0] in sel]
    out = os.environ.get("OUT", ".")

    def write(rows, meta):
        with open(os.path.join(out, "s6.json"), "w") as f:
            json.dump(dict(meta=meta, device=torch.cuda.get_device_name(0), impls=list(impls),
                           chunk_v2=int(os.environ.get("SSMTS_S6_CHUNK", "16")), rows=rows),
                      f, indent=1)

    t_start = time.time()
    rows, meta = check_and_time_s6(cases, impls, sink=write)
    budget = float(os.environ.get("S6_SWEEP_AFTER_S", "1e9"))  # skip sweeps past this
    if time.time() - t_start > budget:
        print(f"sweeps skipped: {time.time() - t_start:.0f} s > {budget:.0f} s", flush=True)
        sys.argv = [a for a in sys.argv if not a.startswith("--sweep")]
    if "--sweep" in sys.argv:
        meta["sweep_s6a_bf16"] = sweep()
        write(rows, meta)
    if "--sweep-v3" in sys.argv:
        meta["sweep_v3_s6a_bf16"] = sweep_v3()
        write(rows, meta)
    print_table(rows)
    write(rows, meta)
