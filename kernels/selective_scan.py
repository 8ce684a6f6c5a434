"""Fused selective scan (Mamba's S6) in Triton, forward and backward.

Same interface and semantics as :func:`ssmts.ssm.selective.selective_scan_ref`.
Hardware-aware in the Mamba sense: each program holds the state of ``BLOCK_D``
channels (``(BLOCK_D, N)`` fp32, in registers) and walks along time in tiles of
``BLOCK_L`` steps; a tile's ``(BLOCK_D, N, BLOCK_L)`` discretised terms live in
registers only and are combined by ``tl.associative_scan``. No ``(batch, D, L, N)``
tensor exists anywhere. The forward writes the state at the start of every chunk
of ``CHUNK`` steps, ``(batch, D, n_chunks, N)`` fp32; the backward walks the chunks
in reverse order, recomputes the states of a chunk from its carry, and runs the
adjoint recurrence ``h_l = C_l dy_l + exp(delta_{l+1} A) h_{l+1}`` as a reverse
scan of 3-tuples (so no shift of ``exp(delta A)`` by one step is needed).

Determinism: ``deterministic=True`` (or env ``SSMTS_DETERMINISTIC=1``) fixes the
launch configuration (no autotuning) and reduces the gradients shared across
channels (dB, dC, dgaps) through per-program partial sums that torch adds up in a
fixed order; the default fast mode autotunes and adds them with fp32 atomics.
dA, dD and ddelta_bias always go through a small (batch, D, N) partial buffer.

B/C of the fixed (D, N) form, complex A and float64 inputs are computed by the
torch reference (documented fallback); everything else runs here.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ssmts.ssm.selective import check_selective_scan_args, selective_scan_ref

__all__ = ["selective_scan", "selective_scan_fn"]

_LOG2E = 1.4426950408889634
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
#: Steps per saved carry (the backward's tile length); the forward's tile divides it.
CHUNK = 16 if _INTERPRET else int(os.environ.get("SSMTS_S6_CHUNK", "16"))


@triton.jit
def _fwd_combine(a1, b1, a2, b2):
    """(a1, b1) earlier, (a2, b2) later: x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _rev_combine(f1, p1, v1, f2, p2, v2):
    """Reverse scan: (f1, p1, v1) is the later segment, (f2, p2, v2) the earlier one.

    A segment [l..m] holds f = a_l, p = a_{l+1}..a_m, v = sum_j (a_{l+1}..a_j) b_j.
    """
    q = p2 * f1
    return f2, q * p1, v2 + q * v1


@triton.jit
def _softplus(x):
    """log(1 + e^x), accurate for large negative x (log1p by Goldberg's trick)."""
    t = tl.exp(-tl.abs(x))
    w = 1.0 + t
    lp = tl.where(w == 1.0, t, tl.log(w) * (t / (w - 1.0)))
    return tl.maximum(x, 0.0) + lp


@triton.jit
def _load_tiles(u_ptrs, dt_ptrs, offs_l, bias, gaps_ptr, l_idx, m2, ml,
                HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr):
    """Load u and delta tiles (BLOCK_L, BLOCK_D) as fp32 and finish delta."""
    u = tl.load(u_ptrs + offs_l, mask=m2, other=0.0).to(tl.float32)
    raw = tl.load(dt_ptrs + offs_l, mask=m2, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[None, :]
    sp = raw
    if SOFTPLUS:
        sp = _softplus(raw)
    gap = tl.full((1,), 1.0, tl.float32)
    dt = sp
    if HAS_GAPS:
        gap = tl.load(gaps_ptr + l_idx, mask=ml, other=0.0).to(tl.float32)
        dt = sp * gap[:, None]
    dt = tl.where(m2, dt, 0.0)
    return u, raw, sp, gap, dt


@triton.jit
def _s6_fwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                   out_ptr, carry_ptr, last_ptr,
                   dim, length, nstate, d_per_group, n_groups, n_chunks,
                   NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                   CHUNK_L: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                   HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr,
                   STORE_CARRY: tl.constexpr, STORE_LAST: tl.constexpr):
    # tiles are time-major: (BLOCK_L, BLOCK_D) per channel, (BLOCK_L, NP) for B/C and
    # (BLOCK_L, NP, BLOCK_D) for the discretised terms; the scan runs over axis 0.
    pid_b = tl.program_id(0).to(tl.int64)
    d0 = tl.program_id(1) * BLOCK_D
    offs_d = d0 + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, BLOCK_L)
    mn = offs_n < nstate
    grp = d0 // d_per_group
    A2 = tl.load(A_ptr + offs_d[None, :] * nstate + offs_n[:, None], mask=mn[:, None],
                 other=0.0).to(tl.float32) * 1.4426950408889634  # (NP, BD), log2 units
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d).to(tl.float32)
    dsk = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
    row = (pid_b * dim + offs_d[None, :]) * length  # (1, BD)
    bc_off = ((pid_b * n_groups + grp) * nstate + offs_n[None, :]) * length  # (1, NP)
    gaps_b = gaps_ptr + pid_b * length
    x = tl.zeros((NP, BLOCK_D), tl.float32)
    carry_row = carry_ptr + ((pid_b * dim + offs_d[None, :]) * n_chunks) * nstate + offs_n[:, None]
    for start in range(0, length, BLOCK_L):
        if STORE_CARRY:
            if start % CHUNK_L == 0:
                tl.store(carry_row + (start // CHUNK_L) * nstate, x, mask=mn[:, None])
        l_idx = start + offs_l
        ml = l_idx < length
        m2 = ml[:, None] & (offs_d[None, :] < dim)
        lo = l_idx[:, None]
        u, raw, sp, gap, dt = _load_tiles(u_ptr + row, dt_ptr + row, lo, bias, gaps_b,
                                          l_idx, m2, ml, HAS_BIAS, SOFTPLUS, HAS_GAPS)
        mbc = ml[:, None] & mn[None, :]
        Bt = tl.load(B_ptr + bc_off + lo, mask=mbc, other=0.0).to(tl.float32)  # (BL, NP)
        Ct = tl.load(C_ptr + bc_off + lo, mask=mbc, other=0.0).to(tl.float32)  # (BL, NP)
        dA = tl.exp2(dt[:, None, :] * A2[None, :, :])  # (BL, NP, BD)
        dBu = (dt * u)[:, None, :] * Bt[:, :, None]  # (BL, NP, BD)
        aa, bb = tl.associative_scan((dA, dBu), axis=0, combine_fn=_fwd_combine)
        xs = bb + aa * x[None, :, :]  # (BL, NP, BD) states
        y = tl.sum(xs * Ct[:, :, None], axis=1)  # (BL, BD)
        x = tl.sum(tl.where(offs_l[:, None, None] == BLOCK_L - 1, xs, 0.0), axis=0)
        if HAS_D:
            y += u * dsk[None, :]
        if HAS_Z:
            zt = tl.load(z_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
            y = y * zt * tl.sigmoid(zt)
        tl.store(out_ptr + row + lo, y.to(out_ptr.dtype.element_ty), mask=m2)
    if STORE_LAST:
        tl.store(last_ptr + (pid_b * dim + offs_d[None, :]) * nstate + offs_n[:, None], x,
                 mask=mn[:, None])


def _fwd_configs():
    return [triton.Config({"BLOCK_D": bd, "BLOCK_L": bl}, num_warps=nw)
            for bd, bl, nw in [(32, 16, 4), (32, 16, 8), (16, 16, 4), (32, 8, 4), (64, 16, 8),
                               (16, 8, 4), (32, 8, 8), (32, 32, 8), (16, 32, 8), (8, 32, 4)]]


def _make_prune(max_per_thread: int):
    """Keep configs whose BLOCK_D divides the channels per group, whose BLOCK_L divides
    CHUNK, and whose (BLOCK_L, N, BLOCK_D) tile leaves at most ``max_per_thread``
    elements per thread (more spills registers)."""

    def prune(configs, named_args, **kwargs):
        dpg = named_args["d_per_group"]
        np_ = kwargs.get("NP", named_args.get("NP", 16))
        chunk = kwargs.get("CHUNK_L", kwargs.get("BLOCK_L", CHUNK))
        keep = [c for c in configs if dpg % c.kwargs["BLOCK_D"] == 0
                and chunk % c.kwargs.get("BLOCK_L", chunk) == 0
                and c.kwargs["BLOCK_D"] * np_ * c.kwargs.get("BLOCK_L", chunk)
                <= max_per_thread * 32 * c.num_warps]
        if keep:
            return keep
        meta = {"BLOCK_L": min(chunk, 8)} if "CHUNK_L" in kwargs else {}
        bl = meta.get("BLOCK_L", chunk)
        meta["BLOCK_D"] = _pick_block_d(dpg, max(1, max_per_thread * 128 // (np_ * bl)))
        return [triton.Config(meta, num_warps=4)]

    return prune


_s6_fwd_tuned = triton.autotune(
    configs=_fwd_configs(), key=["dim", "length", "nstate", "d_per_group", "HAS_Z", "STORE_CARRY"],
    prune_configs_by={"early_config_prune": _make_prune(64)},
)(_s6_fwd_kernel)


@triton.jit
def _s6_bwd_kernel(u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, Dsk_ptr, z_ptr, bias_ptr, gaps_ptr,
                   carry_ptr, gout_ptr, glast_ptr,
                   du_ptr, ddt_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr, dg_ptr,
                   batch, dim, length, nstate, d_per_group, n_groups, n_chunks, n_sub,
                   NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr, GAPS_GRAD: tl.constexpr,
                   HAS_GLAST: tl.constexpr, DETERMINISTIC: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_p = tl.program_id(1)
    offs_n = tl.arange(0, NP)
    offs_l = tl.arange(0, BLOCK_L)
    mn = offs_n < nstate
    gaps_b = gaps_ptr + pid_b * length
    for sub in range(n_sub):
        d0 = (pid_p * n_sub + sub) * BLOCK_D
        offs_d = d0 + tl.arange(0, BLOCK_D)
        grp = d0 // d_per_group
        # slot of the dB/dC/dgaps rows: per program (deterministic) or per (batch, group)
        slot = pid_p * batch + pid_b if DETERMINISTIC else pid_b * n_groups + grp
        dn = offs_d[None, :] * nstate + offs_n[:, None]  # (NP, BD)
        A = tl.load(A_ptr + dn, mask=mn[:, None], other=0.0).to(tl.float32)
        A2 = A * 1.4426950408889634
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + offs_d).to(tl.float32)
        dsk = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_D:
            dsk = tl.load(Dsk_ptr + offs_d).to(tl.float32)
        row = (pid_b * dim + offs_d[None, :]) * length  # (1, BD)
        bc_off = ((pid_b * n_groups + grp) * nstate + offs_n[None, :]) * length  # (1, NP)
        red_off = (slot * nstate + offs_n[None, :]) * length  # (1, NP)
        carry_row = carry_ptr + (pid_b * dim + offs_d[None, :]) * n_chunks * nstate + offs_n[:, None]
        kc = tl.zeros((NP, BLOCK_D), tl.float32)
        if HAS_GLAST:
            kc = tl.load(glast_ptr + pid_b * dim * nstate + dn, mask=mn[:, None], other=0.0)
        dA_acc = tl.zeros((NP, BLOCK_D), tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), tl.float32)
        db_acc = tl.zeros((BLOCK_D,), tl.float32)
        for i in range(n_chunks):
            c = n_chunks - 1 - i
            l_idx = c * BLOCK_L + offs_l
            ml = l_idx < length
            m2 = ml[:, None] & (offs_d[None, :] < dim)
            lo = l_idx[:, None]
            u, raw, sp, gap, dt = _load_tiles(u_ptr + row, dt_ptr + row, lo, bias, gaps_b, l_idx,
                                              m2, ml, HAS_BIAS, SOFTPLUS, HAS_GAPS)
            mbc = ml[:, None] & mn[None, :]
            Bt = tl.load(B_ptr + bc_off + lo, mask=mbc, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc_off + lo, mask=mbc, other=0.0).to(tl.float32)
            go = tl.load(gout_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
            x0 = tl.load(carry_row + c * nstate, mask=mn[:, None], other=0.0)
            dA = tl.exp2(dt[:, None, :] * A2[None, :, :])  # (BL, NP, BD)
            dtu = dt * u
            dBu = dtu[:, None, :] * Bt[:, :, None]  # (BL, NP, BD)
            aa, bb = tl.associative_scan((dA, dBu), axis=0, combine_fn=_fwd_combine)
            xs = bb + aa * x0[None, :, :]  # states x_l
            gy = go
            if HAS_Z:
                y = tl.sum(xs * Ct[:, :, None], axis=1) + u * dsk[None, :]
                zt = tl.load(z_ptr + row + lo, mask=m2, other=0.0).to(tl.float32)
                sg = tl.sigmoid(zt)
                gy = go * zt * sg
                dz = go * y * sg * (1.0 + zt * (1.0 - sg))
                tl.store(dz_ptr + row + lo, dz.to(dz_ptr.dtype.element_ty), mask=m2)
            bC = gy[:, None, :] * Ct[:, :, None]  # (BL, NP, BD)
            _f, pp, vv = tl.associative_scan((dA, tl.full(dA.shape, 1.0, tl.float32), bC), axis=0,
                                             combine_fn=_rev_combine, reverse=True)
            h = vv + pp * kc[None, :, :]  # adjoint of x_l, (BL, NP, BD)
            kc = tl.sum(tl.where(offs_l[:, None, None] == 0, dA * h, 0.0), axis=0)
            hx = h * (xs - dBu)  # h_l exp(dt_l A) x_{l-1}
            hB = tl.sum(h * Bt[:, :, None], axis=1)  # (BL, BD)
            ddt = tl.sum(hx * A[None, :, :], axis=1) + u * hB
            du = dt * hB + gy * dsk[None, :]
            dA_acc += tl.sum(hx * dt[:, None, :], axis=0)
            dD_acc += tl.sum(gy * u, axis=0)
            dBc = tl.sum(h * dtu[:, None, :], axis=2)  # (BL, NP)
            dCc = tl.sum(xs * gy[:, None, :], axis=2)  # (BL, NP)
            ddt = tl.where(m2, ddt, 0.0)
            if HAS_GAPS:
                if GAPS_GRAD:
                    dgc = tl.sum(ddt * sp, axis=1)  # (BL,)
                    if DETERMINISTIC:
                        gp = dg_ptr + slot * length + l_idx
                        tl.store(gp, tl.load(gp, mask=ml, other=0.0) + dgc, mask=ml)
                    else:
                        tl.atomic_add(dg_ptr + slot * length + l_idx, dgc, mask=ml)
                ddt = ddt * gap[:, None]
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            db_acc += tl.sum(ddt, axis=0)
            tl.store(du_ptr + row + lo, du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddt_ptr + row + lo, ddt.to(ddt_ptr.dtype.element_ty), mask=m2)
            if DETERMINISTIC:
                bp = dB_ptr + red_off + lo
                cp = dC_ptr + red_off + lo
                tl.store(bp, tl.load(bp, mask=mbc, other=0.0) + dBc, mask=mbc)
                tl.store(cp, tl.load(cp, mask=mbc, other=0.0) + dCc, mask=mbc)
                tl.debug_barrier()
            else:
                tl.atomic_add(dB_ptr + red_off + lo, dBc, mask=mbc)
                tl.atomic_add(dC_ptr + red_off + lo, dCc, mask=mbc)
        tl.store(dA_ptr + pid_b * dim * nstate + dn, dA_acc, mask=mn[:, None])
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc)
        tl.store(dbias_ptr + pid_b * dim + offs_d, db_acc)


def _bwd_configs():
    return [triton.Config({"BLOCK_D": bd}, num_warps=nw)
            for bd, nw in [(32, 8), (16, 4), (16, 8), (64, 8), (8, 8), (8, 4)]]


_s6_bwd_tuned = triton.autotune(
    configs=_bwd_configs(), key=["dim", "length", "nstate", "d_per_group", "HAS_Z", "HAS_GAPS"],
    prune_configs_by={"early_config_prune": _make_prune(32)},
    reset_to_zero=["dB_ptr", "dC_ptr", "dg_ptr"],
)(_s6_bwd_kernel)


def deterministic_default() -> bool:
    """The default of ``deterministic``: env ``SSMTS_DETERMINISTIC`` set to 1/true/yes."""
    return os.environ.get("SSMTS_DETERMINISTIC", "0").lower() in ("1", "true", "yes")


def _n_sub(batch: int, dim: int, bd: int, d_per_group: int, min_programs: int = 256) -> int:
    """Channel blocks per program in deterministic mode: few programs, small partial buffers."""
    nb = d_per_group // bd
    best = 1
    for k in range(1, nb + 1):
        if nb % k == 0 and batch * (dim // (bd * k)) >= min_programs:
            best = k
    return best


def _s6_bwd(gout, glast, u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus, deterministic,
            gaps_grad):
    """Launcher of the backward; returns the gradients in the inputs' dtypes."""
    batch, dim, length = u.shape
    groups, nstate = B4.shape[1], B4.shape[2]
    dpg = dim // groups
    n_chunks = carry.shape[2]
    dev, f32 = u.device, torch.float32
    du, ddt = torch.empty_like(u), torch.empty_like(dt)
    dz = torch.empty_like(z) if z is not None else du
    dA_p = torch.empty(batch, dim, nstate, device=dev, dtype=f32)
    dD_p = torch.empty(batch, dim, device=dev, dtype=f32)
    db_p = torch.empty(batch, dim, device=dev, dtype=f32)
    det = deterministic or _INTERPRET
    bd = _pick_block_d(dpg, 2 if _INTERPRET else max(1, 8192 // (nstate * CHUNK))) if det else 1
    n_sub = _n_sub(batch, dim, bd, dpg, 4 if _INTERPRET else 256) if deterministic else 1
    rows = (dim // (bd * n_sub)) * batch if deterministic else batch * groups
    dB = torch.zeros(rows, nstate, length, device=dev, dtype=f32)
    dC = torch.zeros(rows, nstate, length, device=dev, dtype=f32)
    dg = torch.zeros(rows, length, device=dev, dtype=f32) if gaps_grad else dB
    dummy = u
    args = (u, dt, A, B4, C4, dummy if Dsk is None else Dsk, dummy if z is None else z,
            dummy if bias is None else bias, dummy if gaps is None else gaps, carry, gout,
            dummy if glast is None else glast, du, ddt, dz, dA_p, dD_p, db_p, dB, dC, dg,
            batch, dim, length, nstate, dpg, groups, n_chunks)
    flags = dict(NP=triton.next_power_of_2(nstate), BLOCK_L=CHUNK, HAS_D=Dsk is not None,
                 HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus,
                 HAS_GAPS=gaps is not None, GAPS_GRAD=gaps_grad, HAS_GLAST=glast is not None,
                 DETERMINISTIC=deterministic)
    if det:
        _s6_bwd_kernel[(batch, dim // (bd * n_sub))](*args, n_sub, BLOCK_D=bd,
                                                     num_warps=4 if _INTERPRET else 8, **flags)
    else:
        grid = lambda meta: (batch, dim // meta["BLOCK_D"])  # noqa: E731
        _s6_bwd_tuned[grid](*args, 1, **flags)
    if deterministic:
        ppg = rows // (batch * groups)  # programs per group
        dB = dB.view(groups, ppg, batch, nstate, length).sum(1).transpose(0, 1)  # (b, G, N, L)
        dC = dC.view(groups, ppg, batch, nstate, length).sum(1).transpose(0, 1)  # (b, G, N, L)
        dgaps = dg.view(groups * ppg, batch, length).sum(0) if gaps_grad else None  # (b, L)
    else:
        dB = dB.view(batch, groups, nstate, length)  # (b, G, N, L)
        dC = dC.view(batch, groups, nstate, length)  # (b, G, N, L)
        dgaps = dg.view(batch, groups, length).sum(1) if gaps_grad else None  # (b, L)
    return (du, ddt, dA_p.sum(0).to(A.dtype), dB.to(B4.dtype), dC.to(C4.dtype),
            None if Dsk is None else dD_p.sum(0).to(Dsk.dtype), None if z is None else dz,
            None if bias is None else db_p.sum(0).to(bias.dtype),
            None if not gaps_grad else dgaps.to(gaps.dtype))


def _pick_block_d(d_per_group: int, target: int) -> int:
    bd = 1
    while bd * 2 <= target and d_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _s6_fwd(u, delta, A, B, C, Dsk, z, bias, gaps, softplus, need_carry, need_last, deterministic):
    """Launcher: u, delta, z contiguous (batch, D, L); B, C contiguous (batch, G, N, L)."""
    batch, dim, length = u.shape
    groups, nstate = B.shape[1], B.shape[2]
    n_chunks = triton.cdiv(length, CHUNK)
    out = torch.empty_like(u)
    carry = torch.empty(batch, dim, n_chunks, nstate, device=u.device, dtype=torch.float32) \
        if need_carry else out
    last = torch.empty(batch, dim, nstate, device=u.device, dtype=torch.float32) \
        if need_last else out
    dummy = u
    args = (u, delta, A, B, C, dummy if Dsk is None else Dsk, dummy if z is None else z,
            dummy if bias is None else bias, dummy if gaps is None else gaps, out, carry, last,
            dim, length, nstate, dim // groups, groups, n_chunks)
    flags = dict(NP=triton.next_power_of_2(nstate), CHUNK_L=CHUNK, HAS_D=Dsk is not None,
                 HAS_Z=z is not None, HAS_BIAS=bias is not None, SOFTPLUS=softplus,
                 HAS_GAPS=gaps is not None, STORE_CARRY=need_carry, STORE_LAST=need_last)
    if deterministic or _INTERPRET:
        bl = min(CHUNK, 16)
        bd = _pick_block_d(dim // groups, 2 if _INTERPRET else max(1, 8192 // (nstate * bl)))
        _s6_fwd_kernel[(batch, dim // bd)](*args, BLOCK_D=bd, BLOCK_L=bl, num_warps=4, **flags)
    else:
        grid = lambda meta: (batch, dim // meta["BLOCK_D"])  # noqa: E731
        _s6_fwd_tuned[grid](*args, **flags)
    return out, (carry if need_carry else None), (last if need_last else None)


def _as_bc4(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) stays; made contiguous."""
    return (t.unsqueeze(1) if t.ndim == 3 else t).contiguous()


class SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper: forward kernel saves chunk carries, backward kernel recomputes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
        bc_ndim = B.ndim
        u_c, dt_c = u.contiguous(), delta.contiguous()
        z_c = None if z is None else z.contiguous()
        B4, C4 = _as_bc4(B), _as_bc4(C)
        A_c = A.contiguous()
        gaps_c = None if gaps is None else gaps.contiguous()
        need_grad = any(ctx.needs_input_grad)
        out, carry, last = _s6_fwd(u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, softplus,
                                   need_grad, return_last, deterministic)
        ctx.save_for_backward(u_c, dt_c, A_c, B4, C4, Dsk, z_c, bias, gaps_c, carry)
        ctx.flags = (softplus, deterministic, bc_ndim)
        ctx.set_materialize_grads(False)
        return (out, last) if return_last else out

    @staticmethod
    def backward(ctx, gout, glast=None):
        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry = ctx.saved_tensors
        softplus, deterministic, bc_ndim = ctx.flags
        need_gaps = gaps is not None and ctx.needs_input_grad[10]
        if gout is None:
            gout = torch.zeros_like(u)
        grads = _s6_bwd(gout.contiguous(), None if glast is None else glast.contiguous(),
                        u, dt, A, B4, C4, Dsk, z, bias, gaps, carry, softplus, deterministic,
                        need_gaps)
        du, ddt, dA, dB, dC, dD, dz, dbias, dgaps = grads
        if bc_ndim == 3:
            dB, dC = dB[:, 0], dC[:, 0]
        return du, ddt, dA, dB, dC, dD, dz, dbias, None, None, dgaps, None


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
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, gaps)
    if (B.ndim == 2 or C.ndim == 2 or A.is_complex() or B.is_complex() or C.is_complex()
            or u.dtype == torch.float64 or B.ndim != C.ndim
            or (B.ndim == 4 and B.shape[1] != C.shape[1])):
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, gaps)
    if deterministic is None:
        deterministic = deterministic_default()
    return SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                 bool(return_last_state), gaps, bool(deterministic))


selective_scan_fn = selective_scan
