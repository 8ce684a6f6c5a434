"""Fused selective scan (Mamba's S6) in Triton, forward and backward (v3: chunked 1-D scans).

Same interface and semantics as :func:`ssmts.ssm.selective.selective_scan_ref`, organised
like mamba_ssm's CUDA kernel: a program owns ``BLOCK_D`` channels of one batch row and
walks ``L`` in chunks of ``BLOCK_L`` steps; each thread owns ``SPT`` consecutive steps (one
16-byte load), so ``u``, ``delta``, ``z``, ``B``, ``C`` and ``y`` move as coalesced rows.
Per chunk the step sizes are computed once; then for each state ``n`` the pairs
``(exp(dt_t A_n), dt_t u_t B_tn)`` are combined by one ``tl.associative_scan`` along the
chunk, the carried state enters at the first step, ``y += x C_n``, and the threads that
end on a save point store the state there: every ``SAVE`` steps, (batch, D, L / SAVE + 1,
N) fp32, the only state kept for the backward (no (batch, D, L, N) tensor).

The backward walks chunks of its own (``SAVE`` divides them) in reverse, recomputes the
states from the saved ones and gets the adjoint g_t = C_t gy_t + exp(dt_{t+1} A) g_{t+1}
without a reverse scan (:func:`_adjoint`); a_0 g_0 carries into the chunk before. dB and
dC are summed over the program's channels in registers and added with relaxed fp32
atomics (default) or, with ``deterministic=True`` (env ``SSMTS_DETERMINISTIC=1``), into
per-program partial rows that torch adds in a fixed order. dA, dD and ddelta_bias go
through (batch, D, ...) partials in both modes.

B/C of the fixed (D, N) form, complex A/B/C, float64 inputs and B/C of different forms
are computed by the torch reference (documented fallback), as in v2.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from ._launch import launch
from .selective_scan import run_checked

__all__ = ["selective_scan", "selective_scan_fn"]

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _lin_combine(a1, b1, a2, b2):
    """(a1, b1) earlier, (a2, b2) later: x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _adj_combine(f_l, p_l, v_l, f_e, p_e, v_e):
    """Combine of adjoint segments, the later (l) one first, as a forward scan over
    time-reversed data passes them: a segment [t..s] means g_t = v + p a_{s+1} g_{s+1},
    f = a_t its first decay, p the product of its other decays."""
    t = p_e * f_l
    return f_e, t * p_l, v_e + t * v_l


@triton.jit
def _softplus(x):
    """log(1 + e^x), accurate for large negative x (log1p by Goldberg's trick)."""
    t = tl.exp(-tl.abs(x))
    w = 1.0 + t
    lp = tl.where(w == 1.0, t, tl.log(w) * (t / (w - 1.0)))
    return tl.maximum(x, 0.0) + lp


@triton.jit
def _chan_params(bias_ptr, Dsk_ptr, offs_d, HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr):
    """(delta_bias, D) of the program's channels, fp32 (BD,), zeros where absent."""
    bias = tl.zeros(offs_d.shape, tl.float32)
    dsk = tl.zeros(offs_d.shape, tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    if HAS_D:
        dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
    return bias, dsk


@triton.jit
def _chunk_steps(dt_ptrs, m2, ml, bias, gaps_ptr, gap_off, HAS_BIAS: tl.constexpr,
                 SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr):
    """(raw, softplus(raw), gap, dt) of one chunk, (BLOCK_D, BLOCK_L) fp32; dt is 0 off the end."""
    raw = tl.load(dt_ptrs, mask=m2, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    sp = raw
    if SOFTPLUS:
        sp = _softplus(raw)
    dt = sp
    gap = tl.full(ml.shape, 1.0, tl.float32)
    if HAS_GAPS:
        gap = tl.load(gaps_ptr + gap_off, mask=ml, other=0.0).to(tl.float32)
        dt = sp * gap[None, :]
    return raw, sp, gap, tl.where(m2, dt, 0.0)


# A chunk is NT = BLOCK_L / SPT thread segments; (BD, BL) tiles reshape to (BD, NT, SPT)
# with the last axis in registers, so a column is a register, not a reduction (the -0.0
# makes the masked sum fold to the one element).

@triton.jit
def _seg_col(t3, r: tl.constexpr):
    """Column r of a (BD, NT, SPT) tile -> (BD, NT): step r of every thread segment."""
    rr = tl.arange(0, t3.shape[2])[None, None, :]
    return tl.sum(tl.where(rr == r, t3, -0.0), axis=2)


@triton.jit
def _add_to(ptr, val, mask, DETERMINISTIC: tl.constexpr):
    """ptr += val: relaxed fp32 atomics, or load + store (deterministic: one writer)."""
    if DETERMINISTIC:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + val, mask=mask)
    else:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")


@triton.jit
def _row_add(base, l0, length, val, NT: tl.constexpr, SPT: tl.constexpr,
             DETERMINISTIC: tl.constexpr):
    """base[l0 + t] += val[t] for l0 + t < length, val (BL,) fp32. With 8 steps a thread the
    row goes as two (NT, 4) halves: 16-byte vectors from each thread's registers, the layout
    Triton gives fp32 stores and atomics (a flat row is first moved between lanes)."""
    if SPT == 8:
        t = tl.arange(0, NT)[:, None] * 8 + tl.arange(0, 4)[None, :]  # (NT, 4)
        lo, hi = tl.split(tl.permute(tl.reshape(val, (NT, 2, 4)), (0, 2, 1)))
        _add_to(base + l0 + t, lo, l0 + t < length, DETERMINISTIC)
        _add_to(base + l0 + 4 + t, hi, l0 + 4 + t < length, DETERMINISTIC)
    else:
        t = l0 + tl.arange(0, NT * SPT)
        _add_to(base + t, val, t < length, DETERMINISTIC)


@triton.jit
def _adjoint(a, beta, k0, BD: tl.constexpr, NT: tl.constexpr, SPT: tl.constexpr):
    """Adjoint g_t = beta_t + a_{t+1} g_{t+1} of one chunk, (BD, BL), a_BL g_BL = k0 (BD,),
    without a reverse scan: each thread segment is scanned right to left in registers
    (in-thread flip, forward scan of (first decay, other decays, value) triples); the
    segment summaries (P = product of the decays, U = a_first g_first with nothing
    entering) are reversed across threads by ``tl.gather`` (a shuffle within a warp),
    scanned forward and gathered back one segment on: the adjoint entering each segment.
    Returns g and the scanned (BD, NT) tile T; T[:, NT - 1] = a_0 g_0."""
    a3 = tl.flip(tl.reshape(a, (BD, NT, SPT)), 2)
    b3 = tl.flip(tl.reshape(beta, (BD, NT, SPT)), 2)
    f, p, v = tl.associative_scan((a3, tl.full(a3.shape, 1.0, tl.float32), b3), axis=2,
                                  combine_fn=_adj_combine)
    f0 = _seg_col(f, SPT - 1)  # the segment's first step (time order)
    P = f0 * _seg_col(p, SPT - 1)
    U = f0 * _seg_col(v, SPT - 1)
    j = tl.arange(0, NT)[None, :] + tl.zeros((BD, NT), tl.int32)
    Pr = tl.gather(P, NT - 1 - j, 1)  # element j holds segment NT - 1 - j
    Ur = tl.gather(U, NT - 1 - j, 1)
    Ur = tl.where(j == 0, Ur + Pr * k0[:, None], Ur)
    _c, T = tl.associative_scan((Pr, Ur), axis=1, combine_fn=_lin_combine)
    # T[:, j] = a g at the first step of segment NT - 1 - j; segment j takes it from j + 1
    gin = tl.where(j == NT - 1, k0[:, None], tl.gather(T, tl.maximum(NT - 2 - j, 0), 1))
    g3 = tl.flip(v, 2) + tl.flip(p, 2) * gin[:, :, None]
    return tl.reshape(g3, (BD, NT * SPT)), T


# Per-state values that cross chunks (the forward's carry, the backward's a_0 g_0) go
# through small global buffers: stored by the thread that holds them, read one chunk
# later after a barrier, so no tile of N values sits in registers. State n + 1's
# operands are loaded while state n is scanned (B/C rows stay 16-bit until used).

@triton.jit
def _s6v3_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                     out_ptr, carry_ptr,
                     dim, length, nstate, d_per_group, n_groups, n_chunks, n_save,
                     NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                     SPT: tl.constexpr, SAVE: tl.constexpr, HAS_D: tl.constexpr,
                     HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                     HAS_GAPS: tl.constexpr):
    # tiles (BLOCK_D, BLOCK_L), threads along L; carry (batch, D, n_save + 1, N) fp32:
    # slot k is the state after k * SAVE steps (SAVE divides BLOCK_L, SPT divides SAVE)
    NT: tl.constexpr = BLOCK_L // SPT
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_l = tl.arange(0, BLOCK_L)
    offs_n = tl.arange(0, NP)
    bc_off = (pid_b * n_groups + d0 // d_per_group) * nstate * length
    row = (pid_b * dim + offs_d[:, None]) * length  # (BD, 1)
    cbase = (pid_b * dim + offs_d) * (n_save + 1) * nstate  # (BD,)
    tl.store(carry_ptr + cbase[:, None] + offs_n[None, :],
             tl.zeros((BLOCK_D, NP), tl.float32), mask=offs_n[None, :] < nstate)
    bias, dsk = _chan_params(bias_ptr, Dsk_ptr, offs_d, HAS_BIAS, HAS_D)
    first = offs_l[None, :] == 0  # (1, BL)
    # flat (channel, thread segment) index: stores of (BD, NT) tiles reshaped to (BD * NT,)
    # keep their layout (channels in registers, segments on lanes)
    seg = tl.arange(0, BLOCK_D * NT)
    seg_end = (seg % NT + 1) * SPT  # steps done after each thread segment
    cseg = carry_ptr + (pid_b * dim + d0 + seg // NT) * (n_save + 1) * nstate
    for c in range(n_chunks):
        tl.debug_barrier()  # the previous chunk's carry stores are visible
        l_idx = c * BLOCK_L + offs_l
        ml = l_idx < length
        m2 = ml[None, :] & (offs_d[:, None] < dim)
        u = tl.load(u_ptr + row + l_idx[None, :], mask=m2, other=0.0).to(tl.float32)
        _r, _s, _g, dt = _chunk_steps(dt_ptr + row + l_idx[None, :], m2, ml, bias, gaps_ptr,
                                      pid_b * length + l_idx, HAS_BIAS, SOFTPLUS, HAS_GAPS)
        dtu = dt * u
        y = u * dsk[:, None]
        cin = carry_ptr + cbase + c * (BLOCK_L // SAVE) * nstate  # (BD,) this chunk's start
        slot = c * (BLOCK_L // SAVE) + seg_end // SAVE  # (BD * NT,)
        pout = cseg + slot * nstate
        mout = (seg_end % SAVE == 0) & (slot <= n_save)
        pb = B_ptr + bc_off + l_idx
        pc = C_ptr + bc_off + l_idx
        A2 = tl.load(A_ptr + offs_d * nstate).to(tl.float32) * LOG2E
        Bn = tl.load(pb, mask=ml, other=0.0)
        Cn = tl.load(pc, mask=ml, other=0.0)
        x0 = tl.load(cin)
        for n in range(nstate):
            n1 = tl.minimum(n + 1, nstate - 1)
            A2x = tl.load(A_ptr + offs_d * nstate + n1).to(tl.float32) * LOG2E
            Bx = tl.load(pb + n1 * length, mask=ml, other=0.0)
            Cx = tl.load(pc + n1 * length, mask=ml, other=0.0)
            x0x = tl.load(cin + n1)
            a = tl.exp2(dt * A2[:, None])
            bu = dtu * Bn.to(tl.float32)[None, :]
            bu = tl.where(first, bu + a * x0[:, None], bu)
            _cum, x = tl.associative_scan((a, bu), axis=1, combine_fn=_lin_combine)
            y += x * Cn.to(tl.float32)[None, :]
            xe = _seg_col(tl.reshape(x, (BLOCK_D, NT, SPT)), SPT - 1)  # (BD, NT)
            tl.store(pout + n, tl.reshape(xe, (BLOCK_D * NT,)), mask=mout)
            A2, Bn, Cn, x0 = A2x, Bx, Cx, x0x
        if HAS_Z:
            zt = tl.load(z_ptr + row + l_idx[None, :], mask=m2, other=0.0).to(tl.float32)
            y = y * zt * tl.sigmoid(zt)
        tl.store(out_ptr + row + l_idx[None, :], y.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _s6v3_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                     carry_ptr, gout_ptr, kc_ptr,
                     du_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr, dg_ptr,
                     batch, dim, length, nstate, d_per_group, n_groups, n_save, n_sub,
                     NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                     SPT: tl.constexpr, RATIO: tl.constexpr, HAS_D: tl.constexpr,
                     HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                     HAS_GAPS: tl.constexpr, GAPS_GRAD: tl.constexpr,
                     DETERMINISTIC: tl.constexpr):
    # kc (2, batch, D, N) fp32: a_0 g_0 of the chunk after, double-buffered by chunk parity
    # (slot n_chunks % 2 holds the gradient of the last state); dA (batch, D, N) zeroed;
    # the chunk start's state is carry slot c * RATIO
    NT: tl.constexpr = BLOCK_L // SPT
    pid_b = tl.program_id(0).to(tl.int64)
    pid_p = tl.program_id(1)
    offs_l = tl.arange(0, BLOCK_L)
    n_chunks = tl.cdiv(length, BLOCK_L)
    first = offs_l[None, :] == 0  # (1, BL)
    kc_slot = batch * dim * nstate
    seg = tl.arange(0, BLOCK_D * NT)  # flat (channel, thread segment), see the forward
    kmask = seg % NT == NT - 1  # the segment that holds a_0 g_0
    for sub in range(n_sub):
        d0 = (pid_p * n_sub + sub) * BLOCK_D
        offs_d = d0 + tl.arange(0, BLOCK_D)
        grp = d0 // d_per_group
        # dB/dC/dgaps rows: per program (deterministic) or per (batch, group) with atomics
        slot = (pid_p * batch + pid_b) if DETERMINISTIC else (pid_b * n_groups + grp)
        bc_off = (pid_b * n_groups + grp) * nstate * length
        dbc_off = slot * nstate * length
        row = (pid_b * dim + offs_d[:, None]) * length  # (BD, 1)
        dbase = (pid_b * dim + offs_d) * nstate  # (BD,)
        cbase = (pid_b * dim + offs_d) * (n_save + 1) * nstate  # (BD,)
        bias, dsk = _chan_params(bias_ptr, Dsk_ptr, offs_d, HAS_BIAS, HAS_D)
        dD_acc = tl.zeros((BLOCK_D,), tl.float32)
        db_acc = tl.zeros((BLOCK_D,), tl.float32)
        for i in range(n_chunks):
            c = n_chunks - 1 - i
            tl.debug_barrier()  # the later chunk's a_0 g_0 stores are visible
            l_idx = c * BLOCK_L + offs_l
            ml = l_idx < length
            m2 = ml[None, :] & (offs_d[:, None] < dim)
            ptr2 = row + l_idx[None, :]
            u = tl.load(u_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            raw, sp, gap, dt = _chunk_steps(dt_ptr + ptr2, m2, ml, bias, gaps_ptr,
                                            pid_b * length + l_idx, HAS_BIAS, SOFTPLUS,
                                            HAS_GAPS)
            dtu = dt * u
            scale = gap[None, :] * tl.full(dt.shape, 1.0, tl.float32)  # d dt_final / d delta
            if SOFTPLUS:
                scale = scale * tl.sigmoid(raw)
            gy = tl.load(gout_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
                gy = gy * zt * tl.sigmoid(zt)
            hB = tl.zeros((BLOCK_D, BLOCK_L), tl.float32)  # sum_n g B
            hA = tl.zeros((BLOCK_D, BLOCK_L), tl.float32)  # sum_n g A exp(dt A) x_{t-1}
            yc = tl.zeros((BLOCK_D, BLOCK_L), tl.float32)  # sum_n x C (pre-gate, for dz)
            cin = carry_ptr + cbase + c * RATIO * nstate  # (BD,)
            k_in = kc_ptr + ((c + 1) % 2) * kc_slot + dbase
            kseg = kc_ptr + (c % 2) * kc_slot + (pid_b * dim + d0 + seg // NT) * nstate
            pb = B_ptr + bc_off + l_idx
            pc = C_ptr + bc_off + l_idx
            An = tl.load(A_ptr + offs_d * nstate).to(tl.float32)
            Bn = tl.load(pb, mask=ml, other=0.0)
            Cn = tl.load(pc, mask=ml, other=0.0)
            x0 = tl.load(cin)
            k0 = tl.load(k_in)
            for n in range(nstate):
                n1 = tl.minimum(n + 1, nstate - 1)
                Ax = tl.load(A_ptr + offs_d * nstate + n1).to(tl.float32)
                Bx = tl.load(pb + n1 * length, mask=ml, other=0.0)
                Cx = tl.load(pc + n1 * length, mask=ml, other=0.0)
                x0x = tl.load(cin + n1)
                k0x = tl.load(k_in + n1)
                Bf = Bn.to(tl.float32)[None, :]
                Cf = Cn.to(tl.float32)[None, :]
                a = tl.exp2(dt * (An * LOG2E)[:, None])
                bu = dtu * Bf
                _cum, x = tl.associative_scan((a, tl.where(first, bu + a * x0[:, None], bu)),
                                              axis=1, combine_fn=_lin_combine)
                g, T = _adjoint(a, Cf * gy, k0, BLOCK_D, NT, SPT)
                tl.store(kseg + n, tl.reshape(T, (BLOCK_D * NT,)), mask=kmask)  # a_0 g_0
                q = g * (x - bu)  # g exp(dt A) x_{t-1}
                hB += g * Bf
                hA += q * An[:, None]
                if HAS_Z:
                    yc += x * Cf
                dBr = tl.sum(g * dtu, axis=0)  # (BL,) summed over the program's channels
                dCr = tl.sum(x * gy, axis=0)
                _row_add(dB_ptr + dbc_off + n * length, c * BLOCK_L, length, dBr, NT, SPT,
                         DETERMINISTIC)
                _row_add(dC_ptr + dbc_off + n * length, c * BLOCK_L, length, dCr, NT, SPT,
                         DETERMINISTIC)
                pA = dA_ptr + dbase + n
                tl.store(pA, tl.load(pA) + tl.sum(dt * q, axis=1))
                An, Bn, Cn, x0, k0 = Ax, Bx, Cx, x0x, k0x
            # the per-step gradients; u, z and gout are read again (cheaper than keeping
            # them in registers through the state loop)
            u = tl.load(u_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                go = tl.load(gout_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
                zt = tl.load(z_ptr + ptr2, mask=m2, other=0.0).to(tl.float32)
                sg = tl.sigmoid(zt)
                dz = go * (yc + u * dsk[:, None]) * sg * (1.0 + zt * (1.0 - sg))
                tl.store(dz_ptr + ptr2, dz.to(dz_ptr.dtype.element_ty), mask=m2)
            tl.store(du_ptr + ptr2, (dt * hB + gy * dsk[:, None]).to(du_ptr.dtype.element_ty),
                     mask=m2)
            ddt = tl.where(m2, hA + u * hB, 0.0)  # d out / d dt_final
            dD_acc += tl.sum(gy * u, axis=1)
            if GAPS_GRAD:
                dgr = tl.sum(ddt * sp, axis=0)  # (BL,)
                _row_add(dg_ptr + slot * length, c * BLOCK_L, length, dgr, NT, SPT,
                         DETERMINISTIC)
            ddt = ddt * scale
            db_acc += tl.sum(ddt, axis=1)
            tl.store(ddt_ptr + ptr2, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc)
        tl.store(dbias_ptr + pid_b * dim + offs_d, db_acc)


def _env_cfg(v: str | None) -> tuple[int, int, int] | None:
    """``"BLOCK_D,BLOCK_L,num_warps"`` (an env override, for sweeps), else None."""
    return tuple(int(x) for x in v.split(",")) if v else None


def _fit_bd(d_per_group: int, target: int) -> int:
    """Largest power of two <= target dividing d_per_group (channels of one program)."""
    bd = 1
    while bd * 2 <= target and d_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _configs(batch: int, dim: int, d_per_group: int, length: int, esize: int):
    """((BD, BL, warps, SPT) forward, (BD, BL, warps, SPT) backward, SAVE): the forward
    saves the state every SAVE = min(BL_fwd, BL_bwd) steps, where backward chunks start.
    ``esize``: bytes per element of u. Env ``SSMTS_S6V3_FWD`` / ``_BWD`` override."""
    return _configs_for(batch, dim, d_per_group, length, esize,
                        os.environ.get("SSMTS_S6V3_FWD"), os.environ.get("SSMTS_S6V3_BWD"))


@functools.lru_cache(maxsize=512)
def _configs_for(batch, dim, d_per_group, length, esize, env_fwd, env_bwd):
    if _INTERPRET:  # forward chunk 16, backward 8: two saves per forward chunk
        fwd, bwd = (2, 16, 1), (2, 8, 1)
    else:
        # one warp a program (no shared memory or barrier in its scans) if that still gives
        # ~16 warps per SM (132 SMs), two channels (shared B/C rows) if that does too;
        # else 4 warps along a chunk. One 16-byte vector per thread.
        # H100 sweep (NOTES_s6.md, v3.1): many channels -> forward (2, 512, 2 warps) and
        # backward (1, 128, 1 warp); few channels (B=1 rows) -> forward (1, 1024, 4) and
        # backward (1, 256, 2)
        ch = batch * dim
        if ch >= 16 * 132:
            fwd, bwd = (2 if ch >= 2 * 16 * 132 else 1, 512, 2), (1, 128, 1)
        else:
            fwd = (1, min(1024, max(128, triton.next_power_of_2(length))), 4)
            bwd = (1, 256, 2)
    fwd = _env_cfg(env_fwd) or fwd
    bwd = _env_cfg(env_bwd) or bwd
    if fwd[1] & (fwd[1] - 1) or bwd[1] & (bwd[1] - 1):
        raise ValueError(f"BLOCK_L must be a power of two, got {fwd[1]}, {bwd[1]}")
    # steps a thread: one 16-byte load, at most BL / threads (interpreter: 4 segments)
    fwd, bwd = ((_fit_bd(d_per_group, c[0]), c[1], c[2], max(1, c[1] // 4) if _INTERPRET
                 else max(1, min(16 // esize, c[1] // (32 * c[2])))) for c in (fwd, bwd))
    save = min(fwd[1], bwd[1])
    if save % fwd[3]:
        raise ValueError(f"backward chunk {bwd[1]} shorter than a forward thread's {fwd[3]} steps")
    return fwd, bwd, save


def _n_sub(batch: int, dim: int, bd: int, d_per_group: int, min_programs: int) -> int:
    """Channel blocks per program in deterministic mode: few programs, small partial rows."""
    nb = d_per_group // bd
    best = 1
    for k in range(1, nb + 1):
        if nb % k == 0 and batch * (dim // (bd * k)) >= min_programs:
            best = k
    return best


def _s6_fwd(u, delta, A, B4, C4, Dsk, z, bias, gaps, softplus, cfg, save):
    """Launcher: u, delta, z contiguous (batch, D, L); B4, C4 contiguous (batch, G, N, L).
    Returns the output and the state every ``save`` steps, (batch, D, cdiv(L, save) + 1, N)
    fp32 (slot k: after k * save steps; the last slot is the final state)."""
    batch, dim, length = u.shape
    groups, nstate = B4.shape[1], B4.shape[2]
    bd, bl, nw, spt = cfg
    n_save = triton.cdiv(length, save)
    out = torch.empty_like(u)
    carry = torch.empty(batch, dim, n_save + 1, nstate, device=u.device, dtype=torch.float32)
    launch(_s6v3_fwd_kernel, (batch, dim // bd), (
        u, delta, A, B4, C4, u if Dsk is None else Dsk, u if z is None else z,
        u if bias is None else bias, u if gaps is None else gaps, out, carry,
        dim, length, nstate, dim // groups, groups, triton.cdiv(length, bl), n_save,
        triton.next_power_of_2(nstate), bd, bl, spt, save, Dsk is not None, z is not None,
        bias is not None, softplus, gaps is not None), 11, 7, nw)
    return out, carry


def _s6_bwd(gout, glast, u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus,
            deterministic, gaps_grad, cfg, save):
    """Launcher of the backward; returns the gradients (dB, dC as (b, G, N, L) fp32)."""
    batch, dim, length = u.shape
    groups, nstate = B4.shape[1], B4.shape[2]
    dpg = dim // groups
    dev, f32 = u.device, torch.float32
    bd, bl, nw, spt = cfg
    du, ddt = torch.empty_like(u), torch.empty_like(dt)
    dz = torch.empty_like(z) if z is not None else du
    dD_p, db_p = torch.empty(2, batch, dim, device=dev, dtype=f32).unbind(0)
    n_sub = _n_sub(batch, dim, bd, dpg, 4 if _INTERPRET else 1024) if deterministic else 1
    progs = dim // (bd * n_sub)
    rows = progs * batch if deterministic else batch * groups
    # every zero-initialised buffer in one allocation (one fill instead of five): dA
    # partials (b, D, N), kc (2, b, D, N), dB and dC rows (rows, N, L), dgaps rows (rows, L)
    sizes = (batch * dim * nstate, 2 * batch * dim * nstate, rows * nstate * length,
             rows * nstate * length, rows * length if gaps_grad else 0)
    dA_p, kc, dB, dC, dg = torch.zeros(sum(sizes), device=dev, dtype=f32).split(sizes)
    dA_p, kc = dA_p.view(batch, dim, nstate), kc.view(2, batch, dim, nstate)
    dB, dC = dB.view(rows, nstate, length), dC.view(rows, nstate, length)
    dg = dg.view(rows, length) if gaps_grad else dB
    if glast is not None:
        kc[triton.cdiv(length, bl) % 2] = glast
    launch(_s6v3_bwd_kernel, (batch, progs), (
        u, dt, A, B4, C4, u if Dsk is None else Dsk, u if z is None else z,
        u if bias is None else bias, u if gaps is None else gaps, carry, gout, kc,
        du, ddt, dz, dA_p, dD_p, db_p, dB, dC, dg,
        batch, dim, length, nstate, dpg, groups, carry.shape[2] - 1, n_sub,
        triton.next_power_of_2(nstate), bd, bl, spt, bl // save, Dsk is not None,
        z is not None, bias is not None, softplus, gaps is not None, gaps_grad,
        deterministic), 21, 8, nw)
    dgaps = None
    if deterministic:
        ppg = rows // (batch * groups)  # programs per group
        dB = dB.reshape(groups, ppg, batch, nstate, length).sum(1).transpose(0, 1)
        dC = dC.reshape(groups, ppg, batch, nstate, length).sum(1).transpose(0, 1)
        if gaps_grad:
            dgaps = dg.reshape(groups * ppg, batch, length).sum(0)
    else:
        dB = dB.reshape(batch, groups, nstate, length)
        dC = dC.reshape(batch, groups, nstate, length)
        if gaps_grad:
            dgaps = dg.reshape(batch, groups, length).sum(1)
    bsum = (lambda t: t[0]) if batch == 1 else (lambda t: t.sum(0))  # noqa: E731  (no launch at b=1)
    return (du, ddt, bsum(dA_p).to(A.dtype), dB, dC,
            None if Dsk is None else bsum(dD_p).to(Dsk.dtype), None if z is None else dz,
            None if bias is None else bsum(db_p).to(bias.dtype),
            None if dgaps is None else dgaps.to(gaps.dtype))


def _as_bc4(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> contiguous (batch, 1, N, L); (batch, G, N, L) made contiguous."""
    return (t.unsqueeze(1) if t.ndim == 3 else t).contiguous()


def _forward(u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps):
    """Contiguous operands, launch configs, the forward launch: (out, last or None, the
    tensors the backward needs, its config and save interval)."""
    u_c, dt_c, A_c = u.contiguous(), delta.contiguous(), A.contiguous()
    z_c = None if z is None else z.contiguous()
    gaps_c = None if gaps is None else gaps.contiguous()
    B4, C4 = _as_bc4(B), _as_bc4(C)
    batch, dim, length = u.shape
    fwd_cfg, bwd_cfg, save = _configs(batch, dim, dim // B4.shape[1], length, u_c.element_size())
    out, carry = _s6_fwd(u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, softplus, fwd_cfg, save)
    last = carry[:, :, -1].clone() if return_last else None
    return out, last, (u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, carry), bwd_cfg, save


class SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper: the forward kernel saves chunk carries, the backward recomputes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
        out, last, saved, bwd_cfg, save = _forward(u, delta, A, B, C, Dsk, z, bias, softplus,
                                                   return_last, gaps)
        ctx.save_for_backward(*saved)
        ctx.flags = (softplus, deterministic, B.ndim, B.dtype, C.dtype, bwd_cfg, save)
        ctx.set_materialize_grads(False)
        return (out, last) if return_last else out

    @staticmethod
    def backward(ctx, gout, glast=None):
        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry = ctx.saved_tensors
        softplus, deterministic, bc_ndim, b_dtype, c_dtype, bwd_cfg, save = ctx.flags
        need_gaps = gaps is not None and ctx.needs_input_grad[10]
        if gout is None:
            gout = torch.zeros_like(u)
        grads = _s6_bwd(gout.contiguous(), None if glast is None else glast.contiguous(),
                        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus, deterministic,
                        need_gaps, bwd_cfg, save)
        du, ddt, dA, dB, dC, dD, dz, dbias, dgaps = grads
        if bc_ndim == 3:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddt, dA, dB if dB.dtype == b_dtype else dB.to(b_dtype),
                dC if dC.dtype == c_dtype else dC.to(c_dtype), dD, dz, dbias, None, None, dgaps,
                None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, gaps=None, deterministic: bool | None = None):
    """Fused selective scan (Triton, v3); same signature and result as ``selective_scan_ref``.

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
        No atomics in the dB/dC/dgaps reductions (fixed-order partial sums) and fixed
        launch configs; default from env ``SSMTS_DETERMINISTIC``.

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
    return run_checked(_apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                       return_last_state, gaps, deterministic)


def _apply(u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
    """Through autograd when a gradient can be asked for, else the bare forward (no autograd
    node, no saved tensors: a few microseconds of host time, which is what small shapes
    cost)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in (u, delta, A, B, C, Dsk, z, bias, gaps)):
        return SelectiveScanFn.apply(u, delta, A, B, C, Dsk, z, bias, softplus, return_last,
                                     gaps, deterministic)
    out, last, _, _, _ = _forward(u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps)
    return (out, last) if return_last else out


selective_scan_fn = selective_scan
