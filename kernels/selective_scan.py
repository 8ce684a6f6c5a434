"""Fused selective scan (Mamba's S6) in Triton, forward and backward (v2: sequential walk).

Same interface and semantics as :func:`ssmts.ssm.selective.selective_scan_ref`.
Hardware-aware in the Mamba sense: one thread owns one channel and keeps its ``N``
states (fp32) in registers; a program of ``BLOCK_D`` channels walks time
*sequentially*, one step after the other (no parallel scan: the dependent chain per
step is one FMA per state, so the exp2 per state-update is the cost). ``u``, ``delta``,
``z`` (and ``y``) move as ``(BLOCK_D, TL)`` tiles, ``TL`` consecutive steps per thread
in one vector access, and step ``t`` is a compile-time column of the tile (no data
movement). ``B``/``C`` are read from a small time-major fp32 copy ``(batch, G, L, 2, NP)``
made by torch, so one step's ``B_t, C_t`` is one contiguous 2*NP row that every
thread of the program reads (a broadcast). No ``(batch, D, L, N)`` tensor exists.

The forward saves the state at the start of every chunk of ``CHUNK`` steps,
``(batch, D, n_chunks, N)`` fp32. The backward walks the chunks in reverse: it
recomputes the chunk's states from its carry, parks them in a per-program scratch
``(CHUNK, BLOCK_D, NP)`` fp32 (reused for every chunk, so it stays in L1/L2), then walks
the chunk backwards with the adjoint ``h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1}`` in
registers.

Determinism: ``deterministic=True`` (or env ``SSMTS_DETERMINISTIC=1``) fixes the
launch configuration and reduces the gradients shared across channels (dB, dC,
dgaps) through per-program partial rows that torch adds up in a fixed order; the
default fast mode adds them with fp32 atomics. dA, dD and ddelta_bias always go
through a small (batch, D, N) partial buffer.

B/C of the fixed (D, N) form, complex A and float64 inputs are computed by the
torch reference (documented fallback); everything else runs here.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ssmts.ssm._validate import gpu_value_checks, result_finite
from ssmts.ssm.selective import check_selective_scan_args, selective_scan_ref

__all__ = ["selective_scan", "selective_scan_fn"]

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
#: Steps per saved carry (the backward's chunk); a multiple of TL.
CHUNK = 16 if _INTERPRET else int(os.environ.get("SSMTS_S6_CHUNK", "16"))
#: Steps per tile of u / delta / z / y (one vector access per thread).
TL = 8


@triton.jit
def _col(tile, offs_t, t: tl.constexpr):
    """Column t of a (BLOCK_D, TL) tile as (BLOCK_D,); the -0.0 lets it fold to a move."""
    return tl.sum(tl.where(offs_t[None, :] == t, tile, -0.0), axis=1)


@triton.jit
def _put(tile, offs_t, t: tl.constexpr, v):
    """Tile with column t replaced by v (BLOCK_D,)."""
    return tl.where(offs_t[None, :] == t, v[:, None], tile)


@triton.jit
def _touch(ptr, row0, n_rows, ROW: tl.constexpr, TL: tl.constexpr):
    """Load rows row0 .. row0+TL of a (n_rows, ROW) fp32 array spread over the threads
    (a few registers each), so that they sit in L1 before the per-step broadcast
    loads of the next tile need them; returns a per-thread sum to keep alive."""
    idx = row0 * ROW + tl.arange(0, TL * ROW)
    v = tl.load(ptr + idx, mask=(idx >= 0) & (idx < n_rows * ROW), other=0.0)
    return tl.sum(v, axis=0)


@triton.jit
def _softplus(x):
    """log(1 + e^x), accurate for large negative x (log1p by Goldberg's trick)."""
    t = tl.exp(-tl.abs(x))
    w = 1.0 + t
    lp = tl.where(w == 1.0, t, tl.log(w) * (t / (w - 1.0)))
    return tl.maximum(x, 0.0) + lp


@triton.jit
def _load_dt(dt_ptrs, m2, bias, gap, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
             HAS_GAPS: tl.constexpr):
    """(raw, softplus(raw), final step) tiles (BLOCK_D, TL) fp32; the step is 0 off the end."""
    raw = tl.load(dt_ptrs, mask=m2, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    sp = raw
    if SOFTPLUS:
        sp = _softplus(raw)
    dt = sp
    if HAS_GAPS:
        dt = sp * gap[None, :]
    return raw, sp, tl.where(m2, dt, 0.0)


@triton.jit
def _s6_fwd_kernel(u_ptr, dt_ptr, A_ptr, bc_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                   out_ptr, carry_ptr, last_ptr,
                   dim, length, l_pad, nstate, d_per_group, n_groups, n_chunks,
                   NP: tl.constexpr, BLOCK_D: tl.constexpr, TL: tl.constexpr,
                   CHUNK_L: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                   HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr,
                   STORE_CARRY: tl.constexpr, STORE_LAST: tl.constexpr):
    # (BLOCK_D, NP) state and (BLOCK_D, TL) tiles: lanes along channels, NP / TL in-thread.
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, TL)
    mn = offs_n[None, :] < nstate
    A2 = tl.load(A_ptr + offs_d[:, None] * nstate + offs_n[None, :], mask=mn,
                 other=0.0).to(tl.float32) * 1.4426950408889634  # (BD, NP), log2 units
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    dsk = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
    row = (pid_b * dim + offs_d[:, None]) * length  # (BD, 1)
    bc_b = bc_ptr + (pid_b * n_groups + d0 // d_per_group) * l_pad * 2 * NP
    carry_row = carry_ptr + (pid_b * dim + offs_d[:, None]) * n_chunks * nstate + offs_n[None, :]
    x = tl.zeros((BLOCK_D, NP), tl.float32)
    sink = 0.0  # keeps the L1 prefetches alive
    m_d = offs_d[:, None] < dim
    # tile t+1 is loaded (into registers) while tile t is computed
    lo = offs_t[None, :]
    m2 = (lo < length) & m_d
    u_n = tl.load(u_ptr + row + lo, mask=m2, other=0.0)
    r_n = tl.load(dt_ptr + row + lo, mask=m2, other=0.0)
    z_n = u_n
    if HAS_Z:
        z_n = tl.load(z_ptr + row + lo, mask=m2, other=0.0)
    for start in range(0, length, TL):
        if STORE_CARRY:
            if start % CHUNK_L == 0:
                tl.store(carry_row + (start // CHUNK_L) * nstate, x, mask=mn)
        l_idx = start + offs_t
        ml = l_idx < length
        m2 = ml[None, :] & m_d
        lo = l_idx[None, :]
        u_c, r_c, z_c = u_n, r_n, z_n
        m2n = (lo + TL < length) & m_d
        u_n = tl.load(u_ptr + row + lo + TL, mask=m2n, other=0.0)
        r_n = tl.load(dt_ptr + row + lo + TL, mask=m2n, other=0.0)
        if HAS_Z:
            z_n = tl.load(z_ptr + row + lo + TL, mask=m2n, other=0.0)
        pf = _touch(bc_b, start + TL, l_pad, 2 * NP, TL)
        gap = tl.full((TL,), 1.0, tl.float32)
        if HAS_GAPS:
            gap = tl.load(gaps_ptr + pid_b * length + l_idx, mask=ml, other=0.0).to(tl.float32)
        u = u_c.to(tl.float32)
        raw = r_c.to(tl.float32)
        if HAS_BIAS:
            raw = raw + bias[:, None]
        dt = raw
        if SOFTPLUS:
            dt = _softplus(raw)
        if HAS_GAPS:
            dt = dt * gap[None, :]
        dt = tl.where(m2, dt, 0.0)
        dtu = dt * u
        yt = tl.zeros((BLOCK_D, TL), tl.float32)
        p = bc_b + start * (2 * NP) + offs_n
        Bn = tl.load(p)
        Cn = tl.load(p + NP)
        for t in tl.static_range(TL):
            Bt, Ct = Bn, Cn
            if t + 1 < TL:  # next step's B, C in flight while this step computes
                Bn = tl.load(p + (t + 1) * (2 * NP))
                Cn = tl.load(p + (t + 1) * (2 * NP) + NP)
            dt_t = _col(dt, offs_t, t)
            x = tl.exp2(dt_t[:, None] * A2) * x + _col(dtu, offs_t, t)[:, None] * Bt[None, :]
            yt = _put(yt, offs_t, t, tl.sum(x * Ct[None, :], axis=1))
        yt += u * dsk[:, None]
        if HAS_Z:
            zt = z_c.to(tl.float32)
            yt = yt * zt * tl.sigmoid(zt)
        tl.store(out_ptr + row + lo, yt.to(out_ptr.dtype.element_ty), mask=m2)
        sink += pf
    if length < 0:  # never true: only keeps the prefetch loads
        tl.store(carry_row, sink + x)
    if STORE_LAST:
        tl.store(last_ptr + (pid_b * dim + offs_d[:, None]) * nstate + offs_n[None, :], x,
                 mask=mn)


@triton.jit
def _s6_bwd_kernel(u_ptr, dt_ptr, A_ptr, bc_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                   carry_ptr, gout_ptr, glast_ptr, xs_ptr,
                   du_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dbc_ptr, dg_ptr,
                   batch, dim, length, l_pad, nstate, d_per_group, n_groups, n_chunks, n_sub,
                   NP: tl.constexpr, BLOCK_D: tl.constexpr, TL: tl.constexpr,
                   CHUNK_L: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                   HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr,
                   GAPS_GRAD: tl.constexpr, HAS_GLAST: tl.constexpr,
                   DETERMINISTIC: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_p = tl.program_id(1)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, TL)
    offs_bd = tl.arange(0, BLOCK_D)
    mn = offs_n[None, :] < nstate
    # this program's scratch for one chunk of states: (CHUNK, BLOCK_D, NP) fp32
    xs_prog = xs_ptr + (pid_b * tl.num_programs(1) + pid_p) * CHUNK_L * BLOCK_D * NP
    xs_base = xs_prog + offs_bd[:, None] * NP + offs_n[None, :]
    for sub in range(n_sub):
        d0 = (pid_p * n_sub + sub) * BLOCK_D
        offs_d = d0 + offs_bd
        grp = d0 // d_per_group
        # dB/dC/dgaps row: per program (deterministic) or per (batch, group) with atomics
        slot = pid_p * batch + pid_b if DETERMINISTIC else pid_b * n_groups + grp
        dn = offs_d[:, None] * nstate + offs_n[None, :]  # (BD, NP)
        A = tl.load(A_ptr + dn, mask=mn, other=0.0).to(tl.float32)
        A2 = A * 1.4426950408889634
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d).to(tl.float32)
        dsk = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_D:
            dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
        row = (pid_b * dim + offs_d[:, None]) * length  # (BD, 1)
        bc_b = bc_ptr + (pid_b * n_groups + grp) * l_pad * 2 * NP
        dbc_b = dbc_ptr + slot * l_pad * 2 * NP
        carry_row = carry_ptr + (pid_b * dim + offs_d[:, None]) * n_chunks * nstate + offs_n[None, :]
        kc = tl.zeros((BLOCK_D, NP), tl.float32)  # exp(dt_{t+1} A) h_{t+1}
        if HAS_GLAST:
            kc = tl.load(glast_ptr + pid_b * dim * nstate + dn, mask=mn, other=0.0)
        dA_acc = tl.zeros((BLOCK_D, NP), tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), tl.float32)
        db_acc = tl.zeros((BLOCK_D,), tl.float32)
        for i in range(n_chunks):
            c0 = (n_chunks - 1 - i) * CHUNK_L
            # 1) recompute the chunk's states from its carry into the scratch
            x = tl.load(carry_row + (c0 // CHUNK_L) * nstate, mask=mn, other=0.0)
            sink = tl.sum(x, axis=1)
            for s in range(0, CHUNK_L, TL):
                pf = _touch(bc_b, c0 + s + TL, l_pad, 2 * NP, TL)
                l_idx = c0 + s + offs_t
                ml = l_idx < length
                m2 = ml[None, :] & (offs_d[:, None] < dim)
                lo = l_idx[None, :]
                gap = tl.full((TL,), 1.0, tl.float32)
                if HAS_GAPS:
                    gap = tl.load(gaps_ptr + pid_b * length + l_idx, mask=ml,
                                  other=0.0).to(tl.float32)
                u = tl.load(u_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
                _raw, _sp, dt = _load_dt(dt_ptr + row + lo, m2, bias, gap, HAS_BIAS, SOFTPLUS,
                                         HAS_GAPS)
                dtu = dt * u
                for t in tl.static_range(TL):
                    Bt = tl.load(bc_b + (c0 + s + t) * (2 * NP) + offs_n)
                    x = (tl.exp2(_col(dt, offs_t, t)[:, None] * A2) * x
                         + _col(dtu, offs_t, t)[:, None] * Bt[None, :])
                    tl.store(xs_base + (s + t) * (BLOCK_D * NP), x)
                sink += pf
            # 2) walk the chunk backwards
            for s2 in range(0, CHUNK_L, TL):
                s = CHUNK_L - TL - s2
                pf = _touch(bc_b, c0 + s - TL, l_pad, 2 * NP, TL)
                pf += _touch(xs_prog, s - TL, CHUNK_L, BLOCK_D * NP, TL)
                l_idx = c0 + s + offs_t
                ml = l_idx < length
                m2 = ml[None, :] & (offs_d[:, None] < dim)
                lo = l_idx[None, :]
                gap = tl.full((TL,), 1.0, tl.float32)
                if HAS_GAPS:
                    gap = tl.load(gaps_ptr + pid_b * length + l_idx, mask=ml,
                                  other=0.0).to(tl.float32)
                u = tl.load(u_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
                raw, sp, dt = _load_dt(dt_ptr + row + lo, m2, bias, gap, HAS_BIAS, SOFTPLUS,
                                       HAS_GAPS)
                dtu = dt * u
                go = tl.load(gout_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
                gy = go
                if HAS_Z:
                    zt = tl.load(z_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
                    sg = tl.sigmoid(zt)
                    gy = go * zt * sg
                yt = tl.zeros((BLOCK_D, TL), tl.float32)  # pre-gate output, for dz
                hB_t = tl.zeros((BLOCK_D, TL), tl.float32)  # sum_n h B
                hA_t = tl.zeros((BLOCK_D, TL), tl.float32)  # sum_n h A exp(dt A) x_{t-1}
                p = bc_b + (c0 + s) * (2 * NP) + offs_n
                Bn = tl.load(p + (TL - 1) * (2 * NP))
                Cn = tl.load(p + (TL - 1) * (2 * NP) + NP)
                xn = tl.load(xs_base + (s + TL - 1) * (BLOCK_D * NP))
                for t in tl.static_range(TL - 1, -1, -1):
                    Bt, Ct, xt = Bn, Cn, xn
                    if t > 0:  # the previous step's operands in flight during this one
                        Bn = tl.load(p + (t - 1) * (2 * NP))
                        Cn = tl.load(p + (t - 1) * (2 * NP) + NP)
                        xn = tl.load(xs_base + (s + t - 1) * (BLOCK_D * NP))
                    dt_t = _col(dt, offs_t, t)
                    dtu_t = _col(dtu, offs_t, t)
                    gy_t = _col(gy, offs_t, t)
                    h = gy_t[:, None] * Ct[None, :] + kc
                    kc = tl.exp2(dt_t[:, None] * A2) * h
                    q = h * (xt - dtu_t[:, None] * Bt[None, :])  # h exp(dt A) x_{t-1}
                    dA_acc += q * dt_t[:, None]
                    hB_t = _put(hB_t, offs_t, t, tl.sum(h * Bt[None, :], axis=1))
                    hA_t = _put(hA_t, offs_t, t, tl.sum(q * A, axis=1))
                    if HAS_Z:
                        yt = _put(yt, offs_t, t, tl.sum(xt * Ct[None, :], axis=1))
                    dBt = tl.sum(h * dtu_t[:, None], axis=0)  # (NP,)
                    dCt = tl.sum(xt * gy_t[:, None], axis=0)  # (NP,)
                    q_ptr = dbc_b + (c0 + s + t) * (2 * NP) + offs_n
                    if DETERMINISTIC:
                        tl.store(q_ptr, tl.load(q_ptr) + dBt)
                        tl.store(q_ptr + NP, tl.load(q_ptr + NP) + dCt)
                    else:
                        tl.atomic_add(q_ptr, dBt, sem="relaxed")
                        tl.atomic_add(q_ptr + NP, dCt, sem="relaxed")
                if HAS_Z:
                    dz = go * (yt + u * dsk[:, None]) * sg * (1.0 + zt * (1.0 - sg))
                    tl.store(dz_ptr + row + lo, dz.to(dz_ptr.dtype.element_ty), mask=m2)
                du = dt * hB_t + gy * dsk[:, None]
                ddt = tl.where(m2, hA_t + u * hB_t, 0.0)
                dD_acc += tl.sum(gy * u, axis=1)
                if HAS_GAPS:
                    if GAPS_GRAD:
                        dgc = tl.sum(ddt * sp, axis=0)  # (TL,)
                        gp = dg_ptr + slot * l_pad + l_idx
                        if DETERMINISTIC:
                            tl.store(gp, tl.load(gp) + dgc)
                        else:
                            tl.atomic_add(gp, dgc, sem="relaxed")
                    ddt = ddt * gap[None, :]
                if SOFTPLUS:
                    ddt = ddt * tl.sigmoid(raw)
                db_acc += tl.sum(ddt, axis=1)
                tl.store(du_ptr + row + lo, du.to(du_ptr.dtype.element_ty), mask=m2)
                tl.store(ddt_ptr + row + lo, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
                sink += pf
            if length < 0:  # never true: only keeps the prefetch loads
                tl.store(dD_ptr + offs_d, sink)
        if DETERMINISTIC:
            tl.debug_barrier()
        tl.store(dA_ptr + pid_b * dim * nstate + dn, dA_acc, mask=mn)
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc)
        tl.store(dbias_ptr + pid_b * dim + offs_d, db_acc)


def deterministic_default() -> bool:
    """The default of ``deterministic``: env ``SSMTS_DETERMINISTIC`` set to 1/true/yes."""
    return os.environ.get("SSMTS_DETERMINISTIC", "0").lower() in ("1", "true", "yes")


def _pick_block_d(d_per_group: int, target: int) -> int:
    bd = 1
    while bd * 2 <= target and d_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _launch_bd(batch: int, dim: int, d_per_group: int) -> tuple[int, int]:
    """(BLOCK_D, num_warps): one thread a channel; fewer channels a program when the
    batch is small, so that more programs (warps) share the SMs."""
    if _INTERPRET:
        return _pick_block_d(d_per_group, 2), 1
    bd_env = int(os.environ.get("SSMTS_S6_BD", "0"))  # override for sweeps
    if bd_env:
        bd = _pick_block_d(d_per_group, bd_env)
    else:
        target = 32
        while target > 8 and batch * dim // target < 4 * 132:
            target //= 2
        bd = _pick_block_d(d_per_group, target)
    return bd, max(1, bd // 32)


def _n_sub(batch: int, dim: int, bd: int, d_per_group: int, min_programs: int = 256) -> int:
    """Channel blocks per program in deterministic mode: few programs, small partial buffers."""
    nb = d_per_group // bd
    best = 1
    for k in range(1, nb + 1):
        if nb % k == 0 and batch * (dim // (bd * k)) >= min_programs:
            best = k
    return best


def _bc_time_major(B4: torch.Tensor, C4: torch.Tensor, l_pad: int, np_: int) -> torch.Tensor:
    """(b, G, N, L) B and C -> one fp32 (b, G, l_pad, 2, NP) tensor, zero padded."""
    batch, groups, nstate, length = B4.shape
    bc = torch.zeros(batch, groups, l_pad, 2, np_, device=B4.device, dtype=torch.float32)
    bc[:, :, :length, 0, :nstate] = B4.transpose(-1, -2)  # (b, G, L, N)
    bc[:, :, :length, 1, :nstate] = C4.transpose(-1, -2)  # (b, G, L, N)
    return bc


def _s6_fwd(u, delta, A, bc, Dsk, z, bias, gaps, groups, nstate, softplus, need_carry,
            need_last):
    """Launcher: u, delta, z contiguous (batch, D, L); bc from ``_bc_time_major``."""
    batch, dim, length = u.shape
    n_chunks, l_pad, np_ = triton.cdiv(length, CHUNK), bc.shape[2], bc.shape[4]
    out = torch.empty_like(u)
    carry = torch.empty(batch, dim, n_chunks, nstate, device=u.device, dtype=torch.float32) \
        if need_carry else out
    last = torch.empty(batch, dim, nstate, device=u.device, dtype=torch.float32) \
        if need_last else out
    bd, nw = _launch_bd(batch, dim, dim // groups)
    dummy = u
    _s6_fwd_kernel[(batch, dim // bd)](
        u, delta, A, bc, dummy if Dsk is None else Dsk, dummy if z is None else z,
        dummy if bias is None else bias, dummy if gaps is None else gaps, out, carry, last,
        dim, length, l_pad, nstate, dim // groups, groups, n_chunks,
        NP=np_, BLOCK_D=bd, TL=TL, CHUNK_L=CHUNK, HAS_D=Dsk is not None, HAS_Z=z is not None,
        HAS_BIAS=bias is not None, SOFTPLUS=softplus, HAS_GAPS=gaps is not None,
        STORE_CARRY=need_carry, STORE_LAST=need_last, num_warps=nw)
    return out, (carry if need_carry else None), (last if need_last else None)


def _s6_bwd(gout, glast, u, dt, A, bc, Dsk, z, bias, gaps, carry, groups, nstate, softplus,
            deterministic, gaps_grad):
    """Launcher of the backward; returns the gradients (dB, dC as (b, G, N, L) fp32)."""
    batch, dim, length = u.shape
    dpg = dim // groups
    n_chunks, l_pad, np_ = carry.shape[2], bc.shape[2], bc.shape[4]
    dev, f32 = u.device, torch.float32
    du, ddt = torch.empty_like(u), torch.empty_like(dt)
    dz = torch.empty_like(z) if z is not None else du
    dA_p = torch.empty(batch, dim, nstate, device=dev, dtype=f32)
    dD_p = torch.empty(batch, dim, device=dev, dtype=f32)
    db_p = torch.empty(batch, dim, device=dev, dtype=f32)
    bd, nw = _launch_bd(batch, dim, dpg)
    n_sub = _n_sub(batch, dim, bd, dpg, 4 if _INTERPRET else 512) if deterministic else 1
    progs = dim // (bd * n_sub)
    rows = progs * batch if deterministic else batch * groups
    dbc = torch.zeros(rows, l_pad, 2, np_, device=dev, dtype=f32)
    dg = torch.zeros(rows, l_pad, device=dev, dtype=f32) if gaps_grad else dbc
    xs = torch.empty(batch * progs * CHUNK * bd * np_, device=dev, dtype=f32)
    dummy = u
    _s6_bwd_kernel[(batch, progs)](
        u, dt, A, bc, dummy if Dsk is None else Dsk, dummy if z is None else z,
        dummy if bias is None else bias, dummy if gaps is None else gaps, carry, gout,
        dummy if glast is None else glast, xs, du, ddt, dz, dA_p, dD_p, db_p, dbc, dg,
        batch, dim, length, l_pad, nstate, dpg, groups, n_chunks, n_sub,
        NP=np_, BLOCK_D=bd, TL=TL, CHUNK_L=CHUNK, HAS_D=Dsk is not None, HAS_Z=z is not None,
        HAS_BIAS=bias is not None, SOFTPLUS=softplus, HAS_GAPS=gaps is not None,
        GAPS_GRAD=gaps_grad, HAS_GLAST=glast is not None, DETERMINISTIC=deterministic,
        num_warps=nw)
    dbc = dbc[:, :length, :, :nstate]  # (rows, L, 2, N)
    if deterministic:
        ppg = rows // (batch * groups)  # programs per group
        dbc = dbc.reshape(groups, ppg, batch, length, 2, nstate).sum(1).transpose(0, 1)
        dgaps = dg[:, :length].reshape(groups * ppg, batch, length).sum(0) if gaps_grad else None
    else:
        dbc = dbc.reshape(batch, groups, length, 2, nstate)  # (b, G, L, 2, N)
        dgaps = dg[:, :length].reshape(batch, groups, length).sum(1) if gaps_grad else None
    dB = dbc[:, :, :, 0].transpose(-1, -2)  # (b, G, N, L)
    dC = dbc[:, :, :, 1].transpose(-1, -2)  # (b, G, N, L)
    return (du, ddt, dA_p.sum(0).to(A.dtype), dB, dC,
            None if Dsk is None else dD_p.sum(0).to(Dsk.dtype), None if z is None else dz,
            None if bias is None else db_p.sum(0).to(bias.dtype),
            None if not gaps_grad else dgaps.to(gaps.dtype))


def needs_reference(u, A, B, C) -> bool:
    """Inputs the kernels leave to ``selective_scan_ref``: fixed (D, N) B/C, complex,
    float64, or B and C of different layouts."""
    return (B.ndim == 2 or C.ndim == 2 or A.is_complex() or B.is_complex() or C.is_complex()
            or u.dtype == torch.float64 or B.ndim != C.ndim
            or (B.ndim == 4 and B.shape[1] != C.shape[1]))


def _as_bc4(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) stays."""
    return t.unsqueeze(1) if t.ndim == 3 else t


class SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper: forward kernel saves chunk carries, backward kernel recomputes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
        u_c, dt_c = u.contiguous(), delta.contiguous()
        z_c = None if z is None else z.contiguous()
        B4, C4 = _as_bc4(B), _as_bc4(C)
        groups, nstate, length = B4.shape[1], B4.shape[2], B4.shape[3]
        np_ = triton.next_power_of_2(nstate)
        bc = _bc_time_major(B4, C4, triton.cdiv(length, CHUNK) * CHUNK, np_)
        A_c = A.contiguous()
        gaps_c = None if gaps is None else gaps.contiguous()
        need_grad = any(ctx.needs_input_grad)
        out, carry, last = _s6_fwd(u_c, dt_c, A_c, bc, Dsk, z_c, bias, gaps_c, groups, nstate,
                                   softplus, need_grad, return_last)
        ctx.save_for_backward(u_c, dt_c, A_c, bc, Dsk, z_c, bias, gaps_c, carry)
        ctx.flags = (softplus, deterministic, B.ndim, groups, nstate, B.dtype, C.dtype)
        ctx.set_materialize_grads(False)
        return (out, last) if return_last else out

    @staticmethod
    def backward(ctx, gout, glast=None):
        u, dt, A, bc, Dsk, z, bias, gaps, carry = ctx.saved_tensors
        softplus, deterministic, bc_ndim, groups, nstate, b_dtype, c_dtype = ctx.flags
        need_gaps = gaps is not None and ctx.needs_input_grad[10]
        if gout is None:
            gout = torch.zeros_like(u)
        grads = _s6_bwd(gout.contiguous(), None if glast is None else glast.contiguous(),
                        u, dt, A, bc, Dsk, z, bias, gaps, carry, groups, nstate, softplus,
                        deterministic, need_gaps)
        du, ddt, dA, dB, dC, dD, dz, dbias, dgaps = grads
        if bc_ndim == 3:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddt, dA, dB.to(b_dtype), dC.to(c_dtype), dD, dz, dbias, None, None, dgaps,
                None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, gaps=None, deterministic: bool | None = None):
    """Fused selective scan (Triton); same signature and result as ``selective_scan_ref``.

    Parameters
    ----------
    u, delta : tensor, shape (batch, D, L), fp32 / bf16 / fp16
    A : real tensor, shape (D, N)
    B, C : tensor, shape (batch, N, L) or (batch, G, N, L); the fixed (D, N) form
        falls back to the torch reference.
    D, delta_bias : tensor, shape (D,), optional
    z : tensor, shape (batch, D, L), optional
    delta_softplus, return_last_state : bool
    gaps : tensor, shape (batch, L), optional, positive
    deterministic : bool, optional
        Fixed launch config and no atomics; default from env ``SSMTS_DETERMINISTIC``.

    Returns
    -------
    out : tensor, shape (batch, D, L), dtype of ``u``
    last_state : fp32 tensor, shape (batch, D, N), only if ``return_last_state``

    Notes
    -----
    Types and shapes are always checked. Values (NaN/inf, gaps > 0) are checked on CPU
    tensors; on CUDA only with ``SSMTS_CHECK_GPU_VALUES=1`` (a reduction and a host sync per
    call), otherwise non-finite inputs give non-finite outputs.
    """
    return run_checked(SelectiveScanFn.apply, u, delta, A, B, C, D, z, delta_bias,
                       delta_softplus, return_last_state, gaps, deterministic)


def run_checked(apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                gaps, deterministic):
    """The public path shared by the v2 and v3 kernels: check, fall back to the reference
    where the kernel does not apply, run ``apply`` (an autograd Function's ``apply``), and
    on CUDA check values through the result when ``SSMTS_CHECK_GPU_VALUES=1``."""
    args = (u, delta, A, B, C, D, z, delta_bias, gaps)
    check_selective_scan_args(*args, values=not u.is_cuda)  # CUDA: see gpu_value_checks
    if needs_reference(u, A, B, C):
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, gaps)
    if deterministic is None:
        deterministic = deterministic_default()
    res = apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                bool(return_last_state), gaps, bool(deterministic))
    if u.is_cuda and gpu_value_checks() and not result_finite(
            res[0] if return_last_state else res, gaps):
        check_selective_scan_args(*args)  # names a non-finite input or bad gap, if any
    return res


selective_scan_fn = selective_scan
