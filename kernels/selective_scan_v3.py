"""Fused selective scan (Mamba's S6) in Triton, forward and backward (v3: chunked 1-D scans).

Same interface and semantics as :func:`ssmts.ssm.selective.selective_scan_ref`, organised
like mamba_ssm's CUDA kernel: a program owns ``BLOCK_D`` channels (1-4) of one batch row
and walks ``L`` in chunks of ``BLOCK_L`` steps, the threads owning consecutive steps (so
``u``, ``delta``, ``z``, ``B``, ``C`` and ``y`` move as coalesced rows). Per chunk, the
step sizes are computed once; then for each state ``n`` the pairs
``(exp(dt_t A_n), dt_t u_t B_tn)`` are combined by one ``tl.associative_scan`` along the
chunk (warp shuffles), the chunk's carried state enters through the scanned cumulative
decay, ``y += x C_n``, and the state at the chunk's end is kept for the next chunk. No
``(batch, D, L, N)`` tensor exists; the only state saved for the backward is the state
at each chunk start, ``(batch, D, L / BLOCK_L, N)`` fp32.

The backward walks the chunks in reverse. For each state it recomputes the chunk's
states from the saved carry (the same forward scan) and gets the adjoint
``g_t = C_t gy_t + exp(dt_{t+1} A) g_{t+1}`` from one reverse scan of triples
``(first decay, product of the other decays, value)``, which needs no shifted copy of
the decays; ``a_0 g_0`` carries into the previous chunk. dB and dC are summed over the
program's channels in registers and added with relaxed fp32 atomics (default) or, with
``deterministic=True`` (env ``SSMTS_DETERMINISTIC=1``), written to per-program partial
rows that torch adds in a fixed order. dA, dD and ddelta_bias go through (batch, D, ...)
partials in both modes.

B/C of the fixed (D, N) form, complex A/B/C, float64 inputs and B/C of different forms
are computed by the torch reference (documented fallback), as in v2.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ssmts.ssm.selective import check_selective_scan_args, selective_scan_ref

from .selective_scan import deterministic_default, needs_reference

__all__ = ["selective_scan", "selective_scan_fn"]

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _lin_combine(a1, b1, a2, b2):
    """(a1, b1) earlier, (a2, b2) later: x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _adj_combine(f_l, p_l, v_l, f_e, p_e, v_e):
    """Reverse-scan combine of adjoint segments, later (l) then earlier (e) as Triton's
    reverse scan passes them: a segment [t..s] means g_t = v + p * (a_{s+1} g_{s+1}),
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


# Per-state values that cross chunk boundaries (the forward's carry, the backward's
# a_0 g_0) go through small global buffers: stored after the chunk's scan, read one
# chunk later, with the chunk's scans (bar.sync) and a barrier in between, so no tile of
# N values sits in registers. The where(offs_l == 0 / BLOCK_L - 1) tests fold per
# register (the -0.0 makes the masked sum fold to the one element).

@triton.jit
def _s6v3_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                     out_ptr, carry_ptr,
                     dim, length, nstate, d_per_group, n_groups, n_chunks,
                     NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                     SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr):
    # tiles (BLOCK_D, BLOCK_L), threads along L; carry (batch, D, n_chunks + 1, N) fp32
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_l = tl.arange(0, BLOCK_L)
    offs_n = tl.arange(0, NP)
    bc_off = (pid_b * n_groups + d0 // d_per_group) * nstate * length
    row = (pid_b * dim + offs_d[:, None]) * length  # (BD, 1)
    cbase = (pid_b * dim + offs_d) * (n_chunks + 1) * nstate  # (BD,)
    tl.store(carry_ptr + cbase[:, None] + offs_n[None, :],
             tl.zeros((BLOCK_D, NP), tl.float32), mask=offs_n[None, :] < nstate)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    dsk = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
    first = offs_l[None, :] == 0  # (1, BL)
    last = offs_l[None, :] == BLOCK_L - 1
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
        cin = carry_ptr + cbase + c * nstate  # (BD,)
        for n in range(nstate):
            A2 = tl.load(A_ptr + offs_d * nstate + n).to(tl.float32) * 1.4426950408889634
            Bn = tl.load(B_ptr + bc_off + n * length + l_idx, mask=ml, other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + bc_off + n * length + l_idx, mask=ml, other=0.0).to(tl.float32)
            a = tl.exp2(dt * A2[:, None])
            bu = dtu * Bn[None, :]
            x0 = tl.load(cin + n)
            bu = tl.where(first, bu + a * x0[:, None], bu)
            _cum, x = tl.associative_scan((a, bu), axis=1, combine_fn=_lin_combine)
            y += x * Cn[None, :]
            tl.store(cin + nstate + n, tl.sum(tl.where(last, x, -0.0), axis=1))
        if HAS_Z:
            zt = tl.load(z_ptr + row + l_idx[None, :], mask=m2, other=0.0).to(tl.float32)
            y = y * zt * tl.sigmoid(zt)
        tl.store(out_ptr + row + l_idx[None, :], y.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _s6v3_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                     carry_ptr, gout_ptr, kc_ptr,
                     du_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr, dg_ptr,
                     batch, dim, length, nstate, d_per_group, n_groups, n_chunks_f, n_sub,
                     NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                     RATIO: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                     HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr,
                     GAPS_GRAD: tl.constexpr, DETERMINISTIC: tl.constexpr):
    # kc (2, batch, D, N) fp32: a_0 g_0 of the chunk after, double-buffered by chunk parity
    # (slot n_chunks % 2 holds the gradient of the last state); dA (batch, D, N) zeroed
    pid_b = tl.program_id(0).to(tl.int64)
    pid_p = tl.program_id(1)
    offs_l = tl.arange(0, BLOCK_L)
    n_chunks = tl.cdiv(length, BLOCK_L)
    first = offs_l[None, :] == 0  # (1, BL)
    last = offs_l[None, :] == BLOCK_L - 1
    kc_slot = batch * dim * nstate
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
        cbase = (pid_b * dim + offs_d) * (n_chunks_f + 1) * nstate  # (BD,)
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d).to(tl.float32)
        dsk = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_D:
            dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
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
            k_out = kc_ptr + (c % 2) * kc_slot + dbase
            for n in range(nstate):
                An = tl.load(A_ptr + offs_d * nstate + n).to(tl.float32)
                Bn = tl.load(B_ptr + bc_off + n * length + l_idx, mask=ml, other=0.0).to(tl.float32)
                Cn = tl.load(C_ptr + bc_off + n * length + l_idx, mask=ml, other=0.0).to(tl.float32)
                a = tl.exp2(dt * (An * 1.4426950408889634)[:, None])
                bu = dtu * Bn[None, :]
                x0 = tl.load(cin + n)
                _cum, x = tl.associative_scan((a, tl.where(first, bu + a * x0[:, None], bu)),
                                              axis=1, combine_fn=_lin_combine)
                beta = Cn[None, :] * gy
                k0 = tl.load(k_in + n)
                _f, _p, g = tl.associative_scan((a, tl.full(a.shape, 1.0, tl.float32),
                                                 tl.where(last, beta + k0[:, None], beta)),
                                                axis=1, combine_fn=_adj_combine, reverse=True)
                tl.store(k_out + n, tl.sum(tl.where(first, a * g, -0.0), axis=1))
                q = g * (x - bu)  # g exp(dt A) x_{t-1}
                hB += g * Bn[None, :]
                hA += q * An[:, None]
                if HAS_Z:
                    yc += x * Cn[None, :]
                dBr = tl.sum(g * dtu, axis=0)  # (BL,) summed over the program's channels
                dCr = tl.sum(x * gy, axis=0)
                pB = dB_ptr + dbc_off + n * length + l_idx
                pC = dC_ptr + dbc_off + n * length + l_idx
                if DETERMINISTIC:
                    tl.store(pB, tl.load(pB, mask=ml, other=0.0) + dBr, mask=ml)
                    tl.store(pC, tl.load(pC, mask=ml, other=0.0) + dCr, mask=ml)
                else:
                    tl.atomic_add(pB, dBr, mask=ml, sem="relaxed")
                    tl.atomic_add(pC, dCr, mask=ml, sem="relaxed")
                pA = dA_ptr + dbase + n
                tl.store(pA, tl.load(pA) + tl.sum(dt * q, axis=1))
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
                gp = dg_ptr + slot * length + l_idx
                if DETERMINISTIC:
                    tl.store(gp, tl.load(gp, mask=ml, other=0.0) + dgr, mask=ml)
                else:
                    tl.atomic_add(gp, dgr, mask=ml, sem="relaxed")
            ddt = ddt * scale
            db_acc += tl.sum(ddt, axis=1)
            tl.store(ddt_ptr + ptr2, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc)
        tl.store(dbias_ptr + pid_b * dim + offs_d, db_acc)


def _env_cfg(name: str) -> tuple[int, int, int] | None:
    """``"BLOCK_D,BLOCK_L,num_warps"`` from env (sweeps), else None."""
    v = os.environ.get(name)
    return tuple(int(x) for x in v.split(",")) if v else None


def _fit_bd(d_per_group: int, target: int) -> int:
    """Largest power of two <= target dividing d_per_group (channels of one program)."""
    bd = 1
    while bd * 2 <= target and d_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _configs(batch: int, dim: int, d_per_group: int, length: int):
    """((BD, BL, warps) forward, (BD, BL, warps) backward); the backward's chunk is a
    multiple of the forward's (it reads the forward's chunk carries)."""
    if _INTERPRET:
        return (_fit_bd(d_per_group, 2), 8, 1), (_fit_bd(d_per_group, 2), 16, 1)
    # two channels a program share the B/C rows and the dB/dC atomics, unless that
    # leaves fewer than ~8 programs per SM
    bd = 2 if batch * dim >= 2 * 8 * 132 else 1
    bl = min(1024, max(128, triton.next_power_of_2(length)))
    fwd = _env_cfg("SSMTS_S6V3_FWD") or (bd, bl, 4)
    # backward: one channel, 4 warps (H100 sweep at S6-A bf16: 9.35 ms f+b against
    # 21.5 ms for two channels on 8 warps, which Triton spreads over warps)
    bwd = _env_cfg("SSMTS_S6V3_BWD") or (1, bl, 4)
    fwd = (_fit_bd(d_per_group, fwd[0]),) + tuple(fwd[1:])
    bwd = (_fit_bd(d_per_group, bwd[0]), max(bwd[1], fwd[1])) + tuple(bwd[2:])
    return fwd, bwd


def _n_sub(batch: int, dim: int, bd: int, d_per_group: int, min_programs: int) -> int:
    """Channel blocks per program in deterministic mode: few programs, small partial rows."""
    nb = d_per_group // bd
    best = 1
    for k in range(1, nb + 1):
        if nb % k == 0 and batch * (dim // (bd * k)) >= min_programs:
            best = k
    return best


def _s6_fwd(u, delta, A, B4, C4, Dsk, z, bias, gaps, softplus, cfg):
    """Launcher: u, delta, z contiguous (batch, D, L); B4, C4 contiguous (batch, G, N, L).
    Returns the output and the state at each chunk start, (batch, D, n_chunks + 1, N) fp32
    (the last slot is the final state)."""
    batch, dim, length = u.shape
    groups, nstate = B4.shape[1], B4.shape[2]
    bd, bl, nw = cfg
    n_chunks = triton.cdiv(length, bl)
    out = torch.empty_like(u)
    carry = torch.empty(batch, dim, n_chunks + 1, nstate, device=u.device, dtype=torch.float32)
    _s6v3_fwd_kernel[(batch, dim // bd)](
        u, delta, A, B4, C4, u if Dsk is None else Dsk, u if z is None else z,
        u if bias is None else bias, u if gaps is None else gaps, out, carry,
        dim, length, nstate, dim // groups, groups, n_chunks,
        NP=triton.next_power_of_2(nstate), BLOCK_D=bd, BLOCK_L=bl, HAS_D=Dsk is not None,
        HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus,
        HAS_GAPS=gaps is not None, num_warps=nw)
    return out, carry


def _s6_bwd(gout, glast, u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus,
            deterministic, gaps_grad, cfg, bl_fwd):
    """Launcher of the backward; returns the gradients (dB, dC as (b, G, N, L) fp32)."""
    batch, dim, length = u.shape
    groups, nstate = B4.shape[1], B4.shape[2]
    dpg = dim // groups
    dev, f32 = u.device, torch.float32
    bd, bl, nw = cfg
    du, ddt = torch.empty_like(u), torch.empty_like(dt)
    dz = torch.empty_like(z) if z is not None else du
    dA_p = torch.zeros(batch, dim, nstate, device=dev, dtype=f32)
    dD_p = torch.empty(batch, dim, device=dev, dtype=f32)
    db_p = torch.empty(batch, dim, device=dev, dtype=f32)
    kc = torch.zeros(2, batch, dim, nstate, device=dev, dtype=f32)
    if glast is not None:
        kc[triton.cdiv(length, bl) % 2] = glast
    n_sub = _n_sub(batch, dim, bd, dpg, 4 if _INTERPRET else 1024) if deterministic else 1
    progs = dim // (bd * n_sub)
    rows = progs * batch if deterministic else batch * groups
    dB = torch.zeros(rows, nstate, length, device=dev, dtype=f32)
    dC = torch.zeros(rows, nstate, length, device=dev, dtype=f32)
    dg = torch.zeros(rows, length, device=dev, dtype=f32) if gaps_grad else dB
    _s6v3_bwd_kernel[(batch, progs)](
        u, dt, A, B4, C4, u if Dsk is None else Dsk, u if z is None else z,
        u if bias is None else bias, u if gaps is None else gaps, carry, gout, kc,
        du, ddt, dz, dA_p, dD_p, db_p, dB, dC, dg,
        batch, dim, length, nstate, dpg, groups, carry.shape[2] - 1, n_sub,
        NP=triton.next_power_of_2(nstate), BLOCK_D=bd, BLOCK_L=bl, RATIO=bl // bl_fwd,
        HAS_D=Dsk is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None,
        SOFTPLUS=softplus, HAS_GAPS=gaps is not None, GAPS_GRAD=gaps_grad,
        DETERMINISTIC=deterministic, num_warps=nw)
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
    return (du, ddt, dA_p.sum(0).to(A.dtype), dB, dC,
            None if Dsk is None else dD_p.sum(0).to(Dsk.dtype), None if z is None else dz,
            None if bias is None else db_p.sum(0).to(bias.dtype),
            None if dgaps is None else dgaps.to(gaps.dtype))


def _as_bc4(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> contiguous (batch, 1, N, L); (batch, G, N, L) made contiguous."""
    return (t.unsqueeze(1) if t.ndim == 3 else t).contiguous()


class SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper: the forward kernel saves chunk carries, the backward recomputes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
        u_c, dt_c, A_c = u.contiguous(), delta.contiguous(), A.contiguous()
        z_c = None if z is None else z.contiguous()
        gaps_c = None if gaps is None else gaps.contiguous()
        B4, C4 = _as_bc4(B), _as_bc4(C)
        batch, dim, length = u.shape
        fwd_cfg, bwd_cfg = _configs(batch, dim, dim // B4.shape[1], length)
        out, carry = _s6_fwd(u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, softplus, fwd_cfg)
        last = carry[:, :, -1].clone() if return_last else None
        ctx.save_for_backward(u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, carry)
        ctx.flags = (softplus, deterministic, B.ndim, B.dtype, C.dtype, bwd_cfg, fwd_cfg[1])
        ctx.set_materialize_grads(False)
        return (out, last) if return_last else out

    @staticmethod
    def backward(ctx, gout, glast=None):
        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry = ctx.saved_tensors
        softplus, deterministic, bc_ndim, b_dtype, c_dtype, bwd_cfg, bl_fwd = ctx.flags
        need_gaps = gaps is not None and ctx.needs_input_grad[10]
        if gout is None:
            gout = torch.zeros_like(u)
        grads = _s6_bwd(gout.contiguous(), None if glast is None else glast.contiguous(),
                        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus, deterministic,
                        need_gaps, bwd_cfg, bl_fwd)
        du, ddt, dA, dB, dC, dD, dz, dbias, dgaps = grads
        if bc_ndim == 3:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddt, dA, dB.to(b_dtype), dC.to(c_dtype), dD, dz, dbias, None, None, dgaps,
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
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, gaps)
    if needs_reference(u, A, B, C):
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, gaps)
    if deterministic is None:
        deterministic = deterministic_default()
    return SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                 bool(return_last_state), gaps, bool(deterministic))


selective_scan_fn = selective_scan
