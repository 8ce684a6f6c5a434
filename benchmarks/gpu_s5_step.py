"""GPU check and timing of the S5 scan and the single-step kernels (run on the device machine).

One call: measures the copy bandwidth, checks each kernel against a float64 torch
reference on fresh random inputs (outputs poisoned with NaN first), then times ours
and the anchors on the same inputs with ``triton.testing.do_bench`` medians:

* S5 scan vs JAX ``lax.associative_scan`` (the S5 authors' algorithm; discretise +
  scan, jit; fwd+bwd = ``jax.grad`` of the sum of the real part);
* ``selective_state_update`` vs mamba_ssm's Triton kernel, both replayed from a CUDA graph
  in interleaved rounds; ``--placement`` adds both on three state allocations each (at
  1 stream the address of the state moves either kernel by a few percent).

Usage: ``python benchmarks/gpu_s5_step.py [--no-sweep] [--placement]`` (writes
``$OUT/s5_step.json``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from _checkout import ensure_ssmts_kernels  # noqa: E402
from _graphs import capture_replay, graph_replay_ms, interleaved  # noqa: E402

ensure_ssmts_kernels()

from ssmts.kernels import s5_scan as ks5  # noqa: E402
from ssmts.kernels import step as kstep  # noqa: E402
from ssmts.ssm.s5_ref import s5_scan_ref  # noqa: E402
from ssmts.ssm.step import selective_state_update_ref  # noqa: E402

DEV = "cuda"
S5_ANCHOR = {"S5-A": (1.69, 4.38), "S5-B": (0.65, 1.25), "TS-S5": (0.44, 0.75)}  # ms, README
STEP_ANCHOR = {"step-1": 6.6, "step-64": 22.8, "step-1024": 19.0}  # us, README
S5_CONFIGS = [dict(CHUNK=c, BLOCK_P=p, num_warps=w, PREFETCH=f) for c, p, w, f in
              [(16, 16, 2, True), (16, 8, 1, True), (32, 8, 1, True), (8, 8, 1, True),
               (8, 16, 1, True), (8, 16, 2, True), (16, 4, 1, True), (8, 4, 1, True),
               (16, 8, 2, True), (16, 16, 1, True), (32, 16, 2, True), (32, 32, 4, True),
               (16, 8, 1, False)]]
STEP_CONFIGS = [dict(BLOCK_D=d, num_warps=w) for d, w in
                [(None, None), (4, 1), (8, 1), (16, 1), (16, 2), (32, 2), (32, 4), (64, 4), (128, 4)]]


def copy_bandwidth() -> float:
    """Bytes/s of a 1 GiB device-to-device copy (read + write counted)."""
    x = torch.randn(2 ** 28, device=DEV)
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def poison(nbytes: int):
    """Fill the caching allocator's next blocks with NaN so unwritten outputs show."""
    junk = torch.full((nbytes // 4 + 1024,), float("nan"), device=DEV)
    del junk


def _rel(a, b):
    a, b = a.detach(), b.detach()
    if not bool(torch.isfinite(torch.view_as_real(a) if a.is_complex() else a).all()):
        return float("nan")
    return ((a.to(b.dtype) - b).abs().max() / b.abs().max()).item()


def _s5_inputs(B, L, P, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    lam = torch.complex(-0.05 - 0.5 * torch.rand(P, device=DEV, generator=g),
                        3 * torch.randn(P, device=DEV, generator=g))
    log_dt = torch.log(1e-3 + 0.099 * torch.rand(P, device=DEV, generator=g))
    bu = torch.randn(B, L, P, dtype=torch.complex64, device=DEV, generator=g)
    gaps = 0.5 + torch.rand(B, L, device=DEV, generator=g)
    return lam, log_dt, bu, gaps


def _jax_s5(lam, log_dt, bu, gaps, reps=30):
    """Median ms of JAX discretise+scan (fwd) and grad of sum(real) (fwd+bwd)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    def scan(Lam, ldt, Bu, g):
        dt = jnp.exp(ldt)[None, None, :] * g[:, :, None]
        Abar = jnp.exp(Lam * dt)
        b = ((Abar - 1) / Lam) * Bu

        def op(e1, e2):
            return e2[0] * e1[0], e2[0] * e1[1] + e2[1]
        return jax.lax.associative_scan(op, (Abar, b), axis=1)[1]

    fwd = jax.jit(scan)
    fb = jax.jit(jax.grad(lambda a, b, c, d: jnp.sum(scan(a, b, c, d).real), argnums=(0, 1, 2)))
    args = [jnp.asarray(t.cpu().numpy()) for t in (lam, log_dt, bu, gaps)]
    out = {}
    for name, f in (("fwd", fwd), ("fwdbwd", fb)):
        jax.block_until_ready(f(*args))
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            ts.append((time.perf_counter() - t0) * 1e3)
        out[name] = statistics.median(ts)
    x = np.asarray(fwd(*args))
    return out, torch.from_numpy(x).to(DEV)


def _s5_check(lam, log_dt, bu, gaps):
    """Poisoned-output check of fwd and every gradient vs float64 (first 2 batch rows)."""
    lam_, ldt_, bu_ = (t.clone().requires_grad_() for t in (lam, log_dt, bu[:2]))
    poison(8 * bu_.numel() * 4)
    x = ks5.s5_scan(lam_, ldt_, bu_, gaps[:2])
    gx = torch.randn_like(x)
    poison(8 * bu_.numel() * 4)
    gr = torch.autograd.grad(x, (lam_, ldt_, bu_), gx)
    w = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()
         for t in (lam, log_dt, bu[:2])]
    xr = s5_scan_ref(w[0], w[1], w[2], gaps[:2].double())
    grr = torch.autograd.grad(xr, w, gx.to(torch.complex128))
    errs = [_rel(x, xr)] + [_rel(a, b) for a, b in zip(gr, grr)]
    return dict(zip(("err_x", "err_dLambda", "err_dlog_dt", "err_dBu"), errs))


def _time_s5(lam, log_dt, bu, gaps):
    lam_, ldt_, bu_ = (t.clone().requires_grad_() for t in (lam, log_dt, bu))
    gx = torch.randn_like(bu)
    fwd = lambda: ks5.S5ScanFn.apply(lam, log_dt, bu, gaps, None, "zoh")  # noqa: E731
    fb = lambda: torch.autograd.grad(ks5.S5ScanFn.apply(lam_, ldt_, bu_, gaps, None, "zoh"),  # noqa: E731
                                     (lam_, ldt_, bu_), gx)
    t_f = do_bench(fwd, return_mode="median")
    t_fb = do_bench(fb, return_mode="median")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fb()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    return t_f, t_fb, peak


def check_and_time_s5(cases, bw=None, sweep=True):
    """Rows for the S5 scan: cases = [(name, B, L, P)]."""
    bw = bw or copy_bandwidth()
    rows = []
    for name, B, L, P in cases:
        lam, log_dt, bu, gaps = _s5_inputs(B, L, P)
        row = dict(kernel="s5_scan", case=name, B=B, L=L, P=P)
        # forward and backward configs are chosen separately (bwd = fwd+bwd - fwd per config)
        defaults = dict(ks5.CONFIG), dict(ks5.BWD_CONFIG)
        for cfg in (S5_CONFIGS if sweep else [dict(defaults[0])]):
            ks5.CONFIG.update(cfg)
            if sweep:
                ks5.BWD_CONFIG.update({k: v for k, v in cfg.items() if k != "PREFETCH"})
            t_f, t_fb, _ = _time_s5(lam, log_dt, bu, gaps)
            row.setdefault("sweep", []).append(dict(cfg, fwd_ms=t_f, fwdbwd_ms=t_fb, bwd_ms=t_fb - t_f))
        best_f = min(row["sweep"], key=lambda r: r["fwd_ms"])
        best_b = min(row["sweep"], key=lambda r: r["bwd_ms"])
        pick = lambda r, keys: {k: r[k] for k in keys}  # noqa: E731
        ks5.CONFIG.update(pick(best_f, ("CHUNK", "BLOCK_P", "num_warps", "PREFETCH")))
        if sweep:
            ks5.BWD_CONFIG.update(pick(best_b, ("CHUNK", "BLOCK_P", "num_warps")))
        cfg = dict(fwd=dict(ks5.CONFIG), bwd=dict(ks5.BWD_CONFIG))
        row.update(_s5_check(lam, log_dt, bu, gaps))  # the chosen configs, checked
        t_f, t_fb, peak = _time_s5(lam, log_dt, bu, gaps)  # the chosen pair, timed again
        ks5.CONFIG.update(defaults[0])
        ks5.BWD_CONFIG.update(defaults[1])
        try:
            jt, xj = _jax_s5(lam, log_dt, bu, gaps)
            row["err_jax_vs_ours"] = _rel(xj, ks5.S5ScanFn.apply(lam, log_dt, bu, gaps, None, "zoh"))
        except Exception as exc:  # JAX missing or failing: keep our numbers
            jt, row["jax_error"] = {"fwd": float("nan"), "fwdbwd": float("nan")}, repr(exc)[:200]
        n = B * L * P * 8
        row.update(best_cfg=cfg, fwd_ms=t_f, fwdbwd_ms=t_fb, peak_mem_fwdbwd_MB=peak / 1e6,
                   jax_fwd_ms=jt["fwd"], jax_fwdbwd_ms=jt["fwdbwd"],
                   anchor_readme_ms=S5_ANCHOR.get(name),
                   speedup_fwd=jt["fwd"] / t_f, speedup_fwdbwd=jt["fwdbwd"] / t_fb,
                   floor_fwd_ms=2 * n / bw * 1e3, floor_fwdbwd_ms=6 * n / bw * 1e3)
        row["pct_floor_fwd"] = 100 * row["floor_fwd_ms"] / t_f
        row["pct_floor_fwdbwd"] = 100 * row["floor_fwdbwd_ms"] / t_fb
        rows.append(row)
    return rows


def _graph_us(fn):
    """Median microseconds of replaying a CUDA graph that holds one call of ``fn``."""
    return 1e3 * graph_replay_ms(fn)


def _replay_timers(replays: dict) -> dict:
    """name -> timer (median us of ``do_bench`` over a captured graph's replay), for
    ``interleaved``."""
    return {k: (lambda g=g: 1e3 * do_bench(g, warmup=25, rep=100, return_mode="median"))
            for k, g in replays.items()}


def _step_inputs(batch, dim, N, seed=1):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=DEV, generator=gen)  # noqa: E731
    return dict(state=r(batch, dim, N), x=r(batch, dim), dt=r(batch, dim) - 3.0,
                A=-0.5 - torch.rand(dim, N, device=DEV, generator=gen), B=r(batch, N),
                C=r(batch, N), D=r(dim), z=r(batch, dim), dt_bias=0.1 * r(dim))


STEP_ROUNDS = int(os.environ.get("STEP_ROUNDS", "15"))  # interleaved rounds, ours vs mamba


def check_and_time_step(cases, bw=None, sweep=True):
    """Rows for selective_state_update: cases = [(name, batch, dim, N)]. The headline is our
    default launch config against mamba_ssm, both replayed from CUDA graphs in interleaved
    rounds (``STEP_ROUNDS``: one ``do_bench`` median of each per round, the order rotated);
    ``sweep`` adds the other configs of STEP_CONFIGS, each timed once (for information, not
    the headline)."""
    bw = bw or copy_bandwidth()
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update as mamba_ssu
    except Exception as exc:  # anchor missing
        mamba_ssu, anchor_err = None, repr(exc)[:200]
    rows = []
    for name, batch, dim, N in cases:
        d = _step_inputs(batch, dim, N)
        row = dict(kernel="selective_state_update", case=name, batch=batch, dim=dim, N=N)
        st = d["state"].clone()
        poison(4 * batch * dim * 4)
        out = kstep.selective_state_update(st, d["x"], d["dt"], d["A"], d["B"], d["C"], d["D"],
                                           d["z"], d["dt_bias"], True)
        st64 = d["state"].double()
        ref = selective_state_update_ref(st64, *(d[k].double() for k in ("x", "dt", "A", "B", "C",
                                                                         "D", "z", "dt_bias")), True)
        row.update(err_out=_rel(out, ref), err_state=_rel(st, st64))
        args = [d[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias")]
        st_o = d["state"].clone()
        ours = lambda: kstep._ssu_launch(st_o, *args, True, None, 0)  # noqa: E731
        if sweep:
            for cfg in STEP_CONFIGS[1:]:
                kstep.STEP_CONFIG.update(cfg)
                row.setdefault("sweep", []).append(dict(cfg, us=_graph_us(ours)))
        kstep.STEP_CONFIG.update(STEP_CONFIGS[0])  # the default rule
        replays = {"ours": capture_replay(ours)}
        if mamba_ssu is not None:
            st_m = d["state"].clone()
            out_m = mamba_ssu(st_m, *args[:6], z=args[6], dt_bias=args[7], dt_softplus=True)
            row["err_mamba_out"] = _rel(out_m, ref)
            replays["mamba"] = capture_replay(lambda: mamba_ssu(
                st_m, *args[:6], z=args[6], dt_bias=args[7], dt_softplus=True))
        med, per = interleaved(_replay_timers(replays), STEP_ROUNDS)
        row["ours_us"], row["ours_us_rounds"] = med["ours"], per["ours"]
        if mamba_ssu is not None:
            row["mamba_us"], row["mamba_us_rounds"] = med["mamba"], per["mamba"]
            rr = [m / o for m, o in zip(per["mamba"], per["ours"])]
            row["speedup_rounds"] = [min(rr), max(rr)]
        else:
            row["mamba_us"], row["mamba_error"] = float("nan"), anchor_err
        row["rounds"] = STEP_ROUNDS
        row["anchor_readme_us"] = STEP_ANCHOR.get(name)
        row["speedup"] = row["mamba_us"] / row["ours_us"]
        nbytes = 4 * (2 * batch * dim * N + dim * N + 2 * batch * N + 4 * batch * dim + 2 * dim)
        row["floor_us"] = nbytes / bw * 1e6
        row["pct_floor"] = 100 * row["floor_us"] / row["ours_us"]
        rows.append(row)
    return rows


def step_placement(batch=1, dim=5120, N=16, copies=3, rounds=15):
    """Ours and mamba_ssm's step, each on ``copies`` state allocations at different
    addresses, replayed from CUDA graphs in interleaved rounds (us): how much of a 1-stream
    difference is where the state lies rather than the code (``--placement``)."""
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update as mamba_ssu

    d = _step_inputs(batch, dim, N)
    args = [d[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias")]
    kstep.STEP_CONFIG.update(STEP_CONFIGS[0])
    graphs, keep = {}, []
    for i in range(copies):
        for side in ("ours", "mamba"):
            keep.append(torch.empty(4096 * (7 * i + 3), device=DEV))  # shifts the next address
            st = d["state"].clone()
            keep.append(st)
            if side == "ours":
                step = lambda st=st: kstep._ssu_launch(st, *args, True, None, 0)  # noqa: E731
            else:
                step = lambda st=st: mamba_ssu(st, *args[:6], z=args[6], dt_bias=args[7],  # noqa: E731
                                               dt_softplus=True)
            graphs[f"{side} {i} @{st.data_ptr() % (1 << 24):#08x}"] = capture_replay(step)
    med, per = interleaved(_replay_timers(graphs), rounds)
    print(f"\nStep placement ({batch} x {dim}, N={N}; us, medians of {rounds} interleaved rounds)")
    for k in sorted(med, key=med.get):
        print(f"  {k:22s} {med[k]:.3f}  (rounds {min(per[k]):.2f}-{max(per[k]):.2f})")
    return {k: dict(median_us=med[k], rounds_us=per[k]) for k in med}


def time_s5_step(cases):
    """Graph-replayed S5 step (no anchor): cases = [(name, batch, P)]."""
    rows = []
    for name, batch, P in cases:
        lam, log_dt, bu, gaps = _s5_inputs(batch, 1, P, seed=2)
        st = torch.randn(batch, P, dtype=torch.complex64, device=DEV)
        us = _graph_us(lambda: kstep._s5_step_launch(st, bu[:, 0], lam, log_dt, gaps[:, 0], "zoh"))
        rows.append(dict(kernel="s5_step", case=name, batch=batch, P=P, ours_us=us))
    return rows


def main():
    info = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                triton=triton.__version__)
    bw = copy_bandwidth()
    info["copy_bandwidth_TBps"] = bw / 1e12
    print(info, flush=True)
    s5 = check_and_time_s5([("S5-A", 8, 4096, 1024), ("TS-S5", 64, 1024, 64),
                            ("S5-B", 32, 1024, 256)], bw, sweep="--no-sweep" not in sys.argv)
    step = check_and_time_step([("step-1", 1, 5120, 16), ("step-64", 64, 5120, 16),
                                ("step-1024", 1024, 256, 16)], bw, sweep="--no-sweep" not in sys.argv)
    s5s = time_s5_step([("s5step-1", 1, 1024), ("s5step-64", 64, 1024), ("s5step-1024", 1024, 256)])
    placement = step_placement() if "--placement" in sys.argv else None
    out = os.environ.get("OUT", ".")
    with open(os.path.join(out, "s5_step.json"), "w") as f:
        json.dump(dict(info=info, s5=s5, step=step, s5_step=s5s, step_placement=placement), f,
                  indent=1)
    print("\nS5 scan (ms; ratio = JAX / ours; floor at measured copy bandwidth)")
    for r in s5:
        print(f"{r['case']:6s} fwd {r['fwd_ms']:.3f} vs JAX {r['jax_fwd_ms']:.3f} "
              f"({r['speedup_fwd']:.1f}x, {r['pct_floor_fwd']:.0f}% floor) | fwd+bwd "
              f"{r['fwdbwd_ms']:.3f} vs {r['jax_fwdbwd_ms']:.3f} ({r['speedup_fwdbwd']:.1f}x, "
              f"{r['pct_floor_fwdbwd']:.0f}% floor) | peak {r['peak_mem_fwdbwd_MB']:.0f} MB | err "
              f"x {r['err_x']:.1e} dL {r['err_dLambda']:.1e} ddt {r['err_dlog_dt']:.1e} "
              f"dBu {r['err_dBu']:.1e} | cfg {r['best_cfg']}")
        for s in r["sweep"]:
            print("    ", s)
    print("\nStep (us, CUDA graph replay, medians of interleaved rounds; ratio = mamba / ours,"
          " [range of the per-round ratios])")
    for r in step:
        lo, hi = r.get("speedup_rounds", [float("nan")] * 2)
        print(f"{r['case']:9s} ours {r['ours_us']:.2f} mamba {r['mamba_us']:.2f} "
              f"({r['speedup']:.2f}x [{lo:.2f}-{hi:.2f}]) readme {r['anchor_readme_us']} | "
              f"{r['pct_floor']:.0f}% floor | err out {r['err_out']:.1e} state "
              f"{r['err_state']:.1e} mamba err {r.get('err_mamba_out', float('nan')):.1e}")
        for s_ in r.get("sweep", []):
            print("    ", s_)
    for r in s5s:
        print(f"{r['case']:12s} ours {r['ours_us']:.2f} us")


if __name__ == "__main__":
    main()
