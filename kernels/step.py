"""Triton single-step state updates for many streams (streaming inference), S6 and S5.

``selective_state_update`` has mamba_ssm's semantics (state (batch, dim, dstate),
B/C (batch, dstate) or grouped (batch, ngroups, dstate)) plus a per-stream time
gap; ``s5_step`` advances a complex S5 state (batch, P). Both update the state in
place with one launch and no backward. Twins: ``ssmts.ssm.step.selective_state_update_ref``
and ``ssmts.ssm.step.s5_step_ref``. The S5 output projection ``2 Re(x C^T) + D u``
is a torch matmul after the kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ssmts.ssm.step import check_s5_step_args, check_state_update_args

from ._launch import ceil_div, next_pow2
from ._s6v2_jit import _softplus
from .s5_scan import _cdiv, _discretize

__all__ = ["selective_state_update", "s5_step", "STEP_CONFIG"]

# launch overrides for the S6 step (None: a rule on the shape; the benchmark sweeps these)
STEP_CONFIG = {"BLOCK_D": None, "num_warps": None}


@triton.jit
def _ssu_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, gap_ptr,
                out_ptr, dim, dstate, group_size, blocks_per_group,
                s_b, s_d, x_b, dt_b, b_b, b_g, c_b, c_g, z_b, o_b,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                SOFTPLUS: tl.constexpr, HAS_GAP: tl.constexpr, IS_F64: tl.constexpr,
                GROUPS: tl.constexpr, I64: tl.constexpr,
                BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    # GROUPS: 0 one B/C row per stream; 1 grouped, the block inside one group; 2 grouped,
    # a group per channel. I64: offsets past 2^31 (else int32 index math, shorter).
    # One stream is a latency chain (loads -> softplus -> exp -> store): every instruction
    # before the first load or on that chain shows in the time of a step.
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64) if I64 else tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    md = offs_d < dim
    m2 = md[:, None] & (offs_n[None, :] < dstate)
    if GROUPS == 2:  # (BLOCK_D, BLOCK_N) gathers of each channel's group row
        grp = offs_d // group_size
        bc_offs = grp[:, None] * b_g + offs_n[None, :]
        cc_offs = grp[:, None] * c_g + offs_n[None, :]
        mbc = m2
    else:  # one row of B and C for the whole block, loaded once
        grp = pid_d // blocks_per_group if GROUPS == 1 else 0
        bc_offs = grp * b_g + offs_n[None, :]
        cc_offs = grp * c_g + offs_n[None, :]
        mbc = (offs_n < dstate)[None, :]
    st = tl.load(state_ptr + b * s_b + offs_d[:, None] * s_d + offs_n[None, :], mask=m2, other=0.0)
    A = tl.load(A_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=m2, other=0.0)
    Bv = tl.load(B_ptr + b * b_b + bc_offs, mask=mbc, other=0.0)
    Cv = tl.load(C_ptr + b * c_b + cc_offs, mask=mbc, other=0.0)
    x = tl.load(x_ptr + b * x_b + offs_d, mask=md, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * dt_b + offs_d, mask=md, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=md, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt)
    if HAS_GAP:
        dt *= tl.load(gap_ptr + b).to(tl.float32)
    wdt = tl.float64 if IS_F64 else tl.float32
    st = st.to(wdt)
    dA = tl.exp(dt[:, None].to(wdt) * A.to(wdt))
    st = st * dA + (dt * x)[:, None].to(wdt) * Bv.to(wdt)
    tl.store(state_ptr + b * s_b + offs_d[:, None] * s_d + offs_n[None, :], st, mask=m2)
    out = tl.sum(st * Cv.to(wdt), axis=1)
    if HAS_D:
        out += (x * tl.load(D_ptr + offs_d, mask=md, other=0.0).to(tl.float32)).to(wdt)
    if HAS_Z:
        z = tl.load(z_ptr + b * z_b + offs_d, mask=md, other=0.0).to(tl.float32)
        out *= (z * tl.sigmoid(z)).to(wdt)
    tl.store(out_ptr + b * o_b + offs_d, out, mask=md)


def _ssu_launch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, gap, ngroups):
    """Launch on inputs whose last dims are contiguous; returns out (batch, dim)."""
    batch, dim, dstate = state.shape
    f64 = state.dtype == torch.float64
    out = torch.empty(batch, dim, dtype=torch.float64 if f64 else torch.float32,
                      device=state.device)
    Bg = B if ngroups else B[:, None, :]  # (batch, G, dstate)
    Cg = C if ngroups else C[:, None, :]  # (batch, G, dstate)
    group_size = dim // max(ngroups, 1)
    BLOCK_N = next_pow2(dstate)
    # H100 sweep at N=16: few streams want many small blocks, many streams big ones
    BLOCK_D = max(1, (8 if batch < 64 else 128) * 16 // BLOCK_N)
    BLOCK_D = min(STEP_CONFIG.get("BLOCK_D") or BLOCK_D, next_pow2(dim))
    warps = STEP_CONFIG.get("num_warps") or (1 if batch < 64 else 4)
    grid = (ceil_div(dim, BLOCK_D), batch)
    groups = 0 if ngroups <= 1 else (1 if group_size % BLOCK_D == 0 else 2)
    # the launch's strides; every offset the kernel forms is below `reach` (a bound from
    # these ints: a few integer operations, where asking each tensor costs ~15 us a step)
    s_b, s_d = state.stride(0), state.stride(1)
    b_g, c_g = (Bg.stride(1), Cg.stride(1)) if groups else (1, 1)
    per_b = (s_b, x.stride(0), dt.stride(0), Bg.stride(0), Cg.stride(0),
             z.stride(0) if z is not None else 1, out.stride(0))
    reach = batch * max(per_b) + dim * max(s_d, dstate) + max(ngroups, 1) * max(b_g, c_g) + dstate
    # absent inputs go in as None and unused ints as 1: Triton makes both compile-time
    # constants, so the launch carries only what this kernel reads (a 1-stream step is
    # latency-bound; its parameter block is part of every launch)
    _ssu_kernel[grid](
        state, x, dt, A, Bg, Cg, D, z, dt_bias, gap, out,
        dim, dstate, group_size if groups == 2 else 1,
        max(group_size // BLOCK_D, 1) if groups == 1 else 1, s_b, s_d, per_b[1], per_b[2],
        per_b[3], b_g, per_b[4], c_g, per_b[5], per_b[6],
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=bool(dt_softplus), HAS_GAP=gap is not None, IS_F64=f64, GROUPS=groups,
        I64=reach >= 2 ** 31, BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, num_warps=warps)
    return out


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus: bool = False, gap=None):
    """One S6 step on the GPU (Triton); same signature and semantics as the ref.

    Parameters
    ----------
    state : real tensor, shape (batch, dim, dstate), updated in place
    x, dt : tensor, shape (batch, dim)
    A : real tensor, shape (dim, dstate)
    B, C : tensor, shape (batch, dstate) or (batch, ngroups, dstate)
    D, dt_bias : tensor, shape (dim,), optional
    z : tensor, shape (batch, dim), optional
    dt_softplus : bool
    gap : real tensor, shape (batch,), optional

    Returns
    -------
    out : tensor, shape (batch, dim), dtype of ``x`` (computed in float32, or float64
        for a float64 state)
    """
    ngroups = check_state_update_args(state, x, dt, A, B, C, D, z, dt_bias, gap)
    last = lambda t: None if t is None else (t if t.stride(-1) == 1 else t.contiguous())  # noqa: E731
    work = state if state.stride(-1) == 1 else state.contiguous()
    out = _ssu_launch(work, last(x), last(dt), A.contiguous(), last(B), last(C),
                      None if D is None else D.contiguous(), last(z),
                      None if dt_bias is None else dt_bias.contiguous(), dt_softplus,
                      None if gap is None else gap.contiguous(), ngroups)
    if work is not state:
        state.copy_(work)
    return out.to(x.dtype)


@triton.jit
def _s5_step_kernel(state_ptr, bu_ptr, lam_ptr, logdt_ptr, gap_ptr, P,
                    METHOD: tl.constexpr, HAS_GAP: tl.constexpr, BLOCK_P: tl.constexpr,
                    F64: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    mp = offs_p < P
    two = tl.arange(0, 2)[None, :]
    m2 = mp[:, None]
    lr, li = tl.split(tl.load(lam_ptr + 2 * offs_p[:, None] + two, mask=m2, other=-1.0))
    delta = tl.exp(tl.load(logdt_ptr + offs_p, mask=mp, other=0.0))
    if HAS_GAP:
        delta = delta * tl.load(gap_ptr + b).to(delta.dtype)
    ilr, ili = _cdiv(1.0 + lr * 0, lr * 0, lr, li)  # 1/Lambda
    ar, ai, fr, fi = _discretize(lr, li, ilr, ili, delta, METHOD, F64)
    sp = state_ptr + b * 2 * P + 2 * offs_p[:, None] + two
    sr, si = tl.split(tl.load(sp, mask=m2, other=0.0))
    br, bi = tl.split(tl.load(bu_ptr + b * 2 * P + 2 * offs_p[:, None] + two, mask=m2, other=0.0))
    nr = ar * sr - ai * si + fr * br - fi * bi
    ni = ar * si + ai * sr + fr * bi + fi * br
    tl.store(sp, tl.join(nr, ni), mask=m2)


def _s5_step_launch(state, Bu_t, Lambda, log_dt, gap, method):
    """Launch on contiguous inputs of one precision; updates ``state`` (batch, P) in place."""
    batch, P = state.shape
    BLOCK_P = min(1024, next_pow2(P))
    grid = (batch, ceil_div(P, BLOCK_P))
    lam = torch.view_as_real(Lambda)  # (P, 2)
    _s5_step_kernel[grid](
        torch.view_as_real(state), torch.view_as_real(Bu_t), lam, log_dt,
        gap if gap is not None else log_dt, P,
        METHOD=0 if method == "zoh" else 1, HAS_GAP=gap is not None, BLOCK_P=BLOCK_P,
        F64=state.dtype == torch.complex128, num_warps=4 if BLOCK_P >= 512 else 1)


def s5_step(state, Bu_t, Lambda, log_dt, gap=None, C=None, D=None, u_t=None,
            method: str = "zoh"):
    """One S5 step on the GPU (Triton); same signature and returns as ``s5_step_ref``.

    Parameters
    ----------
    state : complex tensor, shape (batch, P), updated in place
    Bu_t : complex tensor, shape (batch, P)
    Lambda : complex tensor, shape (P,)
    log_dt : real tensor, shape (P,)
    gap : real tensor, shape (batch,), optional
    C : complex tensor, shape (H, P), optional
    D : real tensor, shape (H,), optional
    u_t : real tensor, shape (batch, H), optional
    method : {"zoh", "bilinear"}

    Returns
    -------
    out : complex tensor, shape (batch, P) (the new state) or real tensor, shape (batch, H)
    state : complex tensor, shape (batch, P), the same object as the input ``state``
    """
    check_s5_step_args(state, Bu_t, Lambda, log_dt, gap, C, D, u_t, method)
    cdt = state.dtype
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    work = state if state.is_contiguous() else state.contiguous()
    _s5_step_launch(work, Bu_t.to(cdt).contiguous(), Lambda.to(cdt).contiguous(),
                    log_dt.to(rdt).contiguous(), None if gap is None else gap.to(rdt).contiguous(),
                    method)
    if work is not state:
        state.copy_(work)
    if C is None:
        return state, state
    y = 2 * (state @ C.to(cdt).transpose(0, 1)).real  # (batch, H)
    if D is not None:
        y = y + D.to(rdt) * u_t.to(rdt)
    return y, state
