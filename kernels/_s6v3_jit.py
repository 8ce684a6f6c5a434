"""Triton programs of the v3 selective scan (forward and backward); the host side, the
launch configs and the algorithm's description are in :mod:`.selective_scan_v3`."""

import triton
import triton.language as tl

from ._s6v2_jit import _chan_params, _load_dt, _load_gap

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
def _chunk_steps(dt_ptrs, m2, ml, bias, gaps_ptr, gap_off, HAS_BIAS: tl.constexpr,
                 SOFTPLUS: tl.constexpr, HAS_GAPS: tl.constexpr):
    """(raw, softplus(raw), gap, dt) of one chunk, (BLOCK_D, BLOCK_L) fp32; dt is 0 off the end."""
    gap = _load_gap(gaps_ptr + gap_off, ml, HAS_GAPS)
    raw, sp, dt = _load_dt(dt_ptrs, m2, bias, gap, HAS_BIAS, SOFTPLUS, HAS_GAPS)
    return raw, sp, gap, dt


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
                     DETERMINISTIC: tl.constexpr, NCOPY: tl.constexpr):
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
        # dB/dC/dgaps rows: per program (deterministic) or per (batch, group) with atomics,
        # in NCOPY copies (program p adds into copy p % NCOPY; the host sums them): a row
        # that every program of a group adds into at once is slowed by the contention
        if DETERMINISTIC:
            slot = pid_p * batch + pid_b
        elif NCOPY == 1:
            slot = pid_b * n_groups + grp
        else:
            slot = (pid_p % NCOPY) * batch * n_groups + pid_b * n_groups + grp
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
                if c == 0:  # x_{-1} = 0: exact, where fused multiply-adds would leave the
                    q = tl.where(first, 0.0, q)  # rounding error of dt u B (dA of L=1 is 0)
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
