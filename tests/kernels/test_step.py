"""Single-step state updates: Triton vs ref, and a loop of steps vs the full scans."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

pytest.importorskip("triton")

from ssmts.kernels.step import s5_step, selective_state_update  # noqa: E402
from ssmts.ssm.selective import selective_scan_ref  # noqa: E402
from ssmts.ssm.step import s5_step_ref, selective_state_update_ref  # noqa: E402
from ssmts.ssm.step import selective_state_update as ssu_dispatch  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _rel(a, b):
    return ((a.to(device=b.device, dtype=b.dtype) - b).abs().max() / b.abs().max()).item()


def _s6_inputs(seed, batch, dim, N, G, L=None):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    tail = () if L is None else (L,)
    bc = (batch, G, N) + tail if G else (batch, N) + tail
    return dict(x=r(batch, dim, *tail), dt=r(batch, dim, *tail) - 3.0,
                A=-0.5 - torch.rand(dim, N, generator=g, dtype=torch.float64),
                B=r(*bc), C=r(*bc), D=r(dim), z=r(batch, dim, *tail), dt_bias=0.1 * r(dim),
                gap=0.5 + torch.rand(batch, *tail, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("G", [0, 2])
def test_ref_step_loop_equals_selective_scan(G):
    batch, dim, N, L = 2, 6, 4, 9
    d = _s6_inputs(1, batch, dim, N, G, L)
    out, last = selective_scan_ref(d["x"], d["dt"], d["A"], d["B"], d["C"], d["D"], d["z"],
                                   d["dt_bias"], True, True, gaps=d["gap"])
    state = torch.zeros(batch, dim, N, dtype=torch.float64)
    outs = [selective_state_update_ref(state, d["x"][..., t], d["dt"][..., t], d["A"],
                                       d["B"][..., t], d["C"][..., t], d["D"], d["z"][..., t],
                                       d["dt_bias"], True, d["gap"][:, t]) for t in range(L)]
    err = max(_rel(torch.stack(outs, -1), out), _rel(state, last))
    print("step loop vs scan", err)
    assert err < 1e-12


# G=2 at dim 24: a group per channel in a block; at dim 64 a block inside one group; G=1: one row
@pytest.mark.parametrize("batch,G,dim",
                         [(1, 0, 24), (3, 2, 24), (3, 2, 64), (2, 1, 24), (64, 0, 24)])
def test_triton_selective_state_update(batch, G, dim):
    N = 5
    d = _s6_inputs(batch + G, batch, dim, N, G)
    state = torch.randn(batch, dim, N, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s32 = state.float().to(DEV)
    ours = ssu_dispatch(s32, *(d[k].float().to(DEV) for k in ("x", "dt", "A", "B", "C", "D", "z",
                                                                 "dt_bias")),
                        dt_softplus=True, gap=d["gap"].float().to(DEV), backend="triton")
    ref = selective_state_update_ref(state, d["x"], d["dt"], d["A"], d["B"], d["C"], d["D"], d["z"],
                                     d["dt_bias"], True, d["gap"])
    err = max(_rel(ours, ref), _rel(s32, state))
    print("ssu", batch, G, err)
    assert ours.dtype == torch.float32 and err < 1e-5


def test_triton_step_softplus_tail():
    """Very negative dt (softplus ~1e-8..5e-5) into a tiny state: the new state is ~dt x B, so
    a softplus computed as log(exp(dt) + 1) in fp32 (off by up to 100% there) would show."""
    batch, dim, N = 2, 16, 4
    d = _s6_inputs(7, batch, dim, N, 0)
    g = torch.Generator().manual_seed(8)
    d["dt"] = -10.0 - 8.0 * torch.rand(batch, dim, generator=g, dtype=torch.float64)
    state = 1e-9 * torch.randn(batch, dim, N, generator=g, dtype=torch.float64)
    s32 = state.float().to(DEV)
    args = [d[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias")]
    ours = selective_state_update(s32, *(a.float().to(DEV) for a in args), dt_softplus=True)
    ref = selective_state_update_ref(state, *args, True)
    err = max(_rel(ours, ref), _rel(s32, state))
    print("ssu softplus tail", err)
    assert err < 1e-5


def _s5_inputs(seed, batch, P, H, L):
    g = torch.Generator().manual_seed(seed)
    c = lambda *s: torch.randn(*s, generator=g, dtype=torch.complex128)  # noqa: E731
    return dict(Lambda=torch.complex(-0.05 - 0.5 * torch.rand(P, generator=g, dtype=torch.float64),
                                     3 * torch.randn(P, generator=g, dtype=torch.float64)),
                log_dt=torch.log(0.01 + 0.09 * torch.rand(P, generator=g, dtype=torch.float64)),
                Bu=c(batch, L, P), gaps=0.1 + 2 * torch.rand(batch, L, generator=g, dtype=torch.float64),
                h0=c(batch, P), C=c(H, P), D=torch.randn(H, generator=g, dtype=torch.float64),
                u=torch.randn(batch, L, H, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_triton_s5_step(batch, method):
    d = _s5_inputs(batch, batch, 12, 4, 1)
    to32 = lambda t: t.to(torch.complex64 if t.is_complex() else torch.float32).to(DEV)  # noqa: E731
    state = to32(d["h0"])
    y, new = s5_step(state, to32(d["Bu"][:, 0]), to32(d["Lambda"]), to32(d["log_dt"]),
                     to32(d["gaps"][:, 0]), to32(d["C"]), to32(d["D"]), to32(d["u"][:, 0]), method)
    ref_state = d["h0"].clone()
    y_ref, _ = s5_step_ref(ref_state, d["Bu"][:, 0], d["Lambda"], d["log_dt"], d["gaps"][:, 0],
                           d["C"], d["D"], d["u"][:, 0], method)
    err = max(_rel(y, y_ref), _rel(state, ref_state))
    print("s5_step", batch, method, err)
    assert new is state and err < 1e-5
