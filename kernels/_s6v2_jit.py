"""Triton programs of the v2 selective scan (forward and backward); the host side and the
algorithm's description are in :mod:`.selective_scan`."""

import triton
import triton.language as tl


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
def _load_gap(gap_ptrs, ml, HAS_GAPS: tl.constexpr):
    """Time gaps of a run of steps, fp32; 1 where there are none, 0 off the end."""
    gap = tl.full(ml.shape, 1.0, tl.float32)
    if HAS_GAPS:
        gap = tl.load(gap_ptrs, mask=ml, other=0.0).to(tl.float32)
    return gap


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
def _load_tile(u_row, dt_row, gap_row, l_idx, length, offs_d, dim, bias,
               HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr):
    """A (channels, steps) tile of the backward at steps ``l_idx``: the mask, the column
    offsets, the gaps, u and the (raw, softplus, final) step sizes, fp32."""
    ml = l_idx < length
    m2 = ml[None, :] & (offs_d[:, None] < dim)
    lo = l_idx[None, :]
    gap = _load_gap(gap_row + l_idx, ml, HAS_GAPS)
    u = tl.load(u_row + lo, mask=m2, other=0.0).to(tl.float32)
    raw, sp, dt = _load_dt(dt_row + lo, m2, bias, gap, HAS_BIAS, SOFTPLUS, HAS_GAPS)
    return m2, lo, gap, u, raw, sp, dt


@triton.jit
def _load_dt(dt_ptrs, m2, bias, gap, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
             HAS_GAPS: tl.constexpr):
    """(raw, softplus(raw), final step) tiles (channels, steps) fp32; the step is 0 off the end."""
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
    bias, dsk = _chan_params(bias_ptr, Dsk_ptr, offs_d, HAS_BIAS, HAS_D)
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
        gap = _load_gap(gaps_ptr + pid_b * length + l_idx, ml, HAS_GAPS)
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
        bias, dsk = _chan_params(bias_ptr, Dsk_ptr, offs_d, HAS_BIAS, HAS_D)
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
                _m2, _lo, _gap, u, _raw, _sp, dt = _load_tile(
                    u_ptr + row, dt_ptr + row, gaps_ptr + pid_b * length, c0 + s + offs_t,
                    length, offs_d, dim, bias, HAS_BIAS, SOFTPLUS, HAS_GAPS)
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
                m2, lo, gap, u, raw, sp, dt = _load_tile(
                    u_ptr + row, dt_ptr + row, gaps_ptr + pid_b * length, l_idx, length, offs_d,
                    dim, bias, HAS_BIAS, SOFTPLUS, HAS_GAPS)
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
                    if t == 0:  # x_{-1} = 0 at step 0: exact (a fused multiply-add would
                        q = tl.where(c0 + s == 0, 0.0, q)  # leave dt u B's rounding error)
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
