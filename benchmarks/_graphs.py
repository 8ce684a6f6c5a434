"""Timing helpers shared by the GPU benchmark scripts: CUDA-graph replays and interleaved
rounds (ours and the anchor measured in alternation, so drift in the host's or the
device's load reaches both sides alike)."""

import statistics

import torch
from triton.testing import do_bench


def capture_replay(step):
    """A CUDA graph holding one call of ``step``; returns its ``replay``. Warms up on a side
    stream first, as capture requires."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


def graph_replay_ms(step) -> float:
    """Median ms of replaying a CUDA graph that holds one call of ``step``: the call's device
    time without launch gaps."""
    return do_bench(capture_replay(step), warmup=25, rep=100, return_mode="median")


def interleaved(timers: dict, rounds: int) -> tuple[dict, dict]:
    """Call every timer (name -> zero-argument function returning a time) once per round,
    the order rotated each round; returns (median per name, the per-round values)."""
    names = list(timers)
    per = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            per[k].append(timers[k]())
    return {k: statistics.median(v) for k, v in per.items()}, per

