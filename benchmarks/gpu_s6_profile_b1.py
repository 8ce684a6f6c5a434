"""Device time vs wall time at the B=1 S6 shapes: ours (dispatch -> v3) and mamba_ssm.

torch.profiler over 20 forward+backward steps per shape; prints each side's kernel time
per step (the CUDA kernels only), to tell GPU time from host overhead where do_bench's
wall-clock medians at small shapes are launch-bound. GPU machine only:
``python3 benchmarks/gpu_s6_profile_b1.py`` (mamba_ssm installed from ``.anchors/``).
"""

import sys, torch
sys.path.insert(0, "benchmarks")
import gpu_s6
from torch.profiler import profile, ProfilerActivity
from ssmts.ssm.dispatch import selective_scan as ours
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as theirs
for name, b, d, L, n in (("B1-L2K-N16", 1, 1024, 2048, 16), ("B1-L8K-N16", 1, 1024, 8192, 16)):
    t = gpu_s6.make_inputs(b, d, L, n, torch.bfloat16, seed=5)
    for x in (t[k] for k in ("u", "delta", "z", "B", "C")):
        x.requires_grad_(True)
    g = torch.randn_like(t["u"])
    for label, fn in (("ours", ours), ("mamba", theirs)):
        step = lambda: gpu_s6._call(fn, t).backward(g)
        for _ in range(5): step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(20): step()
            torch.cuda.synchronize()
        ev = prof.key_averages()
        cuda_total = sum(e.self_device_time_total for e in ev) / 20 / 1e3
        top = sorted(ev, key=lambda e: -e.self_device_time_total)[:5]
        print(name, label, f"device ms/iter {cuda_total:.3f}",
              [(e.key[:40], round(e.self_device_time_total / 20 / 1e3, 3), e.count // 20) for e in top])
