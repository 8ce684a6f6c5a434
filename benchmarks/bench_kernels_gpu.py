"""All GPU kernels in one call: check against float64 references, time against the anchors.

Runs, each in its own process (so JAX and torch allocators don't share the card):

1. ``gpu_s6.py --impl dispatch``: the selective scan the dispatcher picks per shape vs
   mamba_ssm's CUDA ``selective_scan_fn`` (S6-A bf16/fp32, TS-S6, B=1 with N 16/64 and
   L 2K/8K/32K);
2. ``gpu_s5_step.py --no-sweep --placement``: the S5 scan vs JAX ``lax.associative_scan``
   (S5-A, TS-S5, S5-B) and the streaming steps vs mamba_ssm's Triton
   ``selective_state_update`` under CUDA graphs (1, 64, 1024 streams; at 1 stream also on
   three state allocations each).

Each child checks correctness first (fresh random inputs, outputs poisoned), measures the
copy bandwidth in the same run, and writes its JSON under ``$OUT``; this script merges
them into ``$OUT/kernels.json`` and prints one summary table.

Usage on the GPU machine (anchors installed from ``.anchors/``, see ../shared/anchors):
``python3 benchmarks/bench_kernels_gpu.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str, *args: str) -> int:
    print(f"\n=== {script} {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, os.path.join(HERE, script), *args])


def _load(out: str, name: str):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def summary(s6, s5) -> list[str]:
    """One line per row: kernel, case, ours, anchor, ratio, % floor, peak mem, max rel err."""
    lines = [f"{'kernel':<10}{'case':<22}{'ours':>10}{'anchor':>10}{'ratio':>7}{'rounds':>12}"
             f"{'%floor':>7}{'peak GB':>9}{'max err':>9}{'graph ours/anchor, ratio':>30}"
             "  autograd node"]
    nan2 = [float("nan")] * 2
    for r in (s6 or {}).get("rows", []):
        case = f"{r['case']} {r['dtype'].replace('torch.', '')} {r.get('impl', '')}"
        for mode, key in (("fwd", "fwd"), ("fwdbwd", "fb")):
            ours, anc = r[f"ours_{key}"], r[f"anchor_{key}"]
            g_o, g_a = r.get(f"graph_{key}", float("nan")), r.get(f"anchor_graph_{key}", float("nan"))
            lo, hi = r.get(f"ratio_{key}_rounds", nan2)
            lines.append(f"{'s6 ' + mode:<10}{case:<22}{ours:>9.3f}m{anc:>9.3f}m{anc / ours:>7.2f}"
                         f"{f'[{lo:.2f}-{hi:.2f}]':>12}{r[f'pct_floor_{key}']:>7.0f}"
                         f"{r['ours_peak_gb']:>9.2f}"
                         f"{r['max_rel_err']:>9.1e}{g_o:>11.3f}m{g_a:>9.3f}m{g_a / g_o:>7.2f}"
                         f"  {r.get('autograd_node', '') if key == 'fb' else ''}")
    for r in (s5 or {}).get("s5", []):
        for mode in ("fwd", "fwdbwd"):
            ours, anc = r[f"{mode}_ms"], r[f"jax_{mode}_ms"]
            lines.append(f"{'s5 ' + mode:<10}{r['case']:<22}{ours:>9.3f}m{anc:>9.3f}m"
                         f"{anc / ours:>7.2f}{'':>12}{r[f'pct_floor_{mode}']:>7.0f}"
                         f"{r['peak_mem_fwdbwd_MB'] / 1e3:>9.2f}"
                         f"{max(r.get('err_x', 0), r.get('err_dBu', 0)):>9.1e}")
    for r in (s5 or {}).get("step", []):
        lo, hi = r.get("speedup_rounds", nan2)
        lines.append(f"{'step':<10}{r['case']:<22}{r['ours_us']:>9.2f}u{r['mamba_us']:>9.2f}u"
                     f"{r['speedup']:>7.2f}{f'[{lo:.2f}-{hi:.2f}]':>12}{r['pct_floor']:>7.0f}"
                     f"{'':>9}{r['err_out']:>9.1e}")
    return lines


def main() -> int:
    out = os.environ.get("OUT", ".")
    rc = _run("gpu_s6.py", "--impl", "dispatch")
    rc |= _run("gpu_s5_step.py", "--no-sweep", "--placement")
    s6, s5 = _load(out, "s6.json"), _load(out, "s5_step.json")
    with open(os.path.join(out, "kernels.json"), "w") as f:
        json.dump({"s6": s6, "s5_step": s5}, f, indent=1)
    print("\n" + "\n".join(summary(s6, s5)))
    return rc


if __name__ == "__main__":
    sys.exit(main())
