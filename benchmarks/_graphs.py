"""CUDA-graph replay timing shared by the GPU benchmark scripts."""

import torch
from triton.testing import do_bench


def graph_replay_ms(step) -> float:
    """Median ms of replaying a CUDA graph that holds one call of ``step``: the call's device
    time without launch gaps. Warms up on a side stream first, as capture requires."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return do_bench(g.replay, warmup=25, rep=100, return_mode="median")
