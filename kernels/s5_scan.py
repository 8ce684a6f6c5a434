"""Triton S5 scan: complex diagonal recurrence with fused per-step discretisation.

``x_t = Abar_t x_{t-1} + F_t Bu_t`` with ``Abar_t, F_t`` computed in registers from
``Lambda`` (P,), ``log_dt`` (P,) and the time gaps (batch, L) -- the discretised
(batch, L, P) tensors never reach global memory. Complex numbers travel as
interleaved (re, im) planes (``torch.view_as_real``) and are split in registers.

Forward: grid (batch, P blocks); each program walks L in chunks of ``CHUNK`` rows,
scans a chunk with ``tl.associative_scan`` on the complex pair (a, b) with
``(a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2)`` and carries the last state into the
next chunk. Backward: the same walk from the end with the adjoint recurrence
``g_t = conj(Abar_{t+1}) g_{t+1} + dL/dx_t`` (rows reversed so that the scan runs
forwards); it reads the states ``x`` the forward wrote (the forward output, kept by
autograd: no extra memory beyond the output) for ``dL/dAbar_t = conj(x_{t-1}) g_t``.
Gradients of ``Lambda``/``log_dt`` are summed over L in registers and written per
(batch, P); the sum over batch is a torch reduction (deterministic, no atomics).

Gradients follow PyTorch's convention for complex tensors (conjugate Wirtinger:
``grad = dL/dRe + i dL/dIm``); ``gaps`` get no gradient. The projection
``y = 2 Re(x C^T) + D u`` is not fused: it is a torch matmul on the kernel's states.
The plain-torch twin is ``ssmts.ssm.s5_ref.s5_scan_ref``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ssmts.ssm._validate import gpu_value_checks, result_finite
from ssmts.ssm.s5_ref import _complex_dtype, _project, check_s5_args, s5_scan_ref

from ._launch import ceil_div, launch, next_pow2

__all__ = ["s5_scan", "S5ScanFn", "CONFIG", "BWD_CONFIG"]

# fixed launch configuration (deterministic; the benchmark may override it)
# H100 sweep (run 5, NOTES_s5_step.md): (32, 8, 1 warp) is the best forward on every shape and
# the best (or within 4%) backward except TS-S5's
CONFIG = {"CHUNK": 32, "BLOCK_P": 8, "num_warps": 1, "PREFETCH": True}  # forward
BWD_CONFIG = {"CHUNK": 32, "BLOCK_P": 8, "num_warps": 1}  # backward (PREFETCH unused)


@triton.jit
def _cmul(ar, ai, br, bi):
    """(ar + i ai)(br + i bi)."""
    return ar * br - ai * bi, ar * bi + ai * br


@triton.jit
def _combine(a1r, a1i, b1r, b1i, a2r, a2i, b2r, b2i):
    """Compose x -> a1 x + b1 then x -> a2 x + b2."""
    ar, ai = _cmul(a2r, a2i, a1r, a1i)
    br, bi = _cmul(a2r, a2i, b1r, b1i)
    return ar, ai, br + b2r, bi + b2i


@triton.jit
def _hstep(sr, si, zr, zi, c):
    """One Horner step s * z + c (complex s, z; real c)."""
    return sr * zr - si * zi + c, sr * zi + si * zr


@triton.jit
def _dphi1_series(zr, zi):
    """phi1'(z) = sum_m (m+1) z^m/(m+2)!, accurate for |z| <= 0.5."""
    sr, si = _hstep(zr * 0 + 2.48015873015873e-06, zi * 0, zr, zi, 2.2045855379188714e-05)
    sr, si = _hstep(sr, si, zr, zi, 1.736111111111111e-04)
    sr, si = _hstep(sr, si, zr, zi, 1.1904761904761906e-03)
    sr, si = _hstep(sr, si, zr, zi, 6.944444444444444e-03)
    sr, si = _hstep(sr, si, zr, zi, 3.3333333333333333e-02)
    sr, si = _hstep(sr, si, zr, zi, 0.125)
    sr, si = _hstep(sr, si, zr, zi, 0.3333333333333333)
    return _hstep(sr, si, zr, zi, 0.5)


@triton.jit
def _sincos(x, F64: tl.constexpr):
    """(sin x, cos x) with one shared range reduction (fp32: Cody-Waite to [-pi/4, pi/4],
    Taylor polynomials; ~1e-7 absolute, relative near 0). float64 keeps libdevice."""
    if F64:
        return tl.sin(x), tl.cos(x)
    k = tl.floor(x * 0.6366197723675814 + 0.5)  # nearest multiple of pi/2
    r = x - k * 1.5703125  # pi/2 = 1.5703125 + 4.8375129699707031e-4 + 7.5497899487686e-8
    r = r - k * 4.837512969970703e-4
    r = r - k * 7.549789948768648e-8
    r2 = r * r
    sr = r + r * r2 * (-0.16666666666666666 + r2 * (8.333333333333333e-3 + r2 * (
        -1.984126984126984e-4 + r2 * 2.7557319223985893e-6)))
    cr = 1.0 + r2 * (-0.5 + r2 * (4.1666666666666664e-2 + r2 * (-1.388888888888889e-3 + r2 * (
        2.48015873015873e-05 - r2 * 2.755731922398589e-07))))
    q = k.to(tl.int32) & 3  # quadrant
    swap = (q & 1) == 1
    sn = tl.where(swap, cr, sr)
    cs = tl.where(swap, sr, cr)
    return tl.where((q & 2) == 2, -sn, sn), tl.where(((q + 1) & 2) == 2, -cs, cs)


@triton.jit
def _cexp(zr, zi, F64: tl.constexpr):
    m = tl.exp(zr)
    sn, cs = _sincos(zi, F64)
    return m * cs, m * sn


@triton.jit
def _cdiv(ar, ai, br, bi):
    """(ar + i ai) / (br + i bi)."""
    inv = 1.0 / (br * br + bi * bi)
    return (ar * br + ai * bi) * inv, (ai * br - ar * bi) * inv


@triton.jit
def _expm1(x, F64: tl.constexpr):
    """e^x - 1 without cancellation: Horner series for |x| < 0.3, else exp(x) - 1."""
    if F64:  # degree 13: truncation < 1e-16 relative at |x| = 0.3
        p = x * 1.1470745597729725e-11 + 1.6059043836821613e-10
        p = p * x + 2.08767569878681e-09
        p = p * x + 2.505210838544172e-08
        p = p * x + 2.755731922398589e-07
        p = p * x + 2.7557319223985893e-06
        p = p * x + 2.48015873015873e-05
    else:  # degree 8: truncation < 2e-10 relative at |x| = 0.3
        p = x * 0 + 2.48015873015873e-05
    p = p * x + 1.984126984126984e-04
    p = p * x + 1.388888888888889e-03
    p = p * x + 8.333333333333333e-03
    p = p * x + 4.1666666666666664e-02
    p = p * x + 0.16666666666666666
    p = p * x + 0.5
    p = (p * x + 1.0) * x
    return tl.where(tl.abs(x) < 0.3, p, tl.exp(x) - 1.0)


@triton.jit
def _zoh(lr, li, delta, F64: tl.constexpr):
    """ZOH Abar = e^z and Abar - 1 (z = Lambda delta) with no cancellation near z = 0.

    With s, c = sin, cos of Im(z)/2: cos Im z = 1 - 2 s^2, sin Im z = 2 s c, and
    Re(e^z) - 1 = expm1(Re z) cos Im z - 2 s^2. The caller forms F = (Abar - 1) / Lambda
    with a precomputed 1/Lambda (no series, no divide per element). Returns
    (Re Abar, Im Abar, Re Abar - 1).
    """
    em = _expm1(lr * delta, F64)
    s, c = _sincos(0.5 * li * delta, F64)
    s2 = 2.0 * s * s
    cz = 1.0 - s2
    ex = 1.0 + em
    ai = ex * (2.0 * s * c)
    amr = em * cz - s2  # Re(Abar) - 1
    return amr + 1.0, ai, amr


@triton.jit
def _discretize(lr, li, ilr, ili, delta, METHOD: tl.constexpr, F64: tl.constexpr):
    """Abar and F for Lambda = lr + i li, step delta: x_t = Abar x + F Bu (ZOH=0, bilinear=1).

    ilr + i ili is 1/Lambda (Lambda != 0: the callers require Re Lambda < 0).
    """
    if METHOD == 0:
        ar, ai, amr = _zoh(lr, li, delta, F64)
        fr, fi = _cmul(amr, ai, ilr, ili)
    else:
        zr = lr * delta
        zi = li * delta
        dr = 1.0 - 0.5 * zr
        di = -0.5 * zi
        ar, ai = _cdiv(1.0 + 0.5 * zr, 0.5 * zi, dr, di)
        fr, fi = _cdiv(delta, delta * 0, dr, di)
    return ar, ai, fr, fi


@triton.jit
def _abar(lr, li, delta, METHOD: tl.constexpr, F64: tl.constexpr):
    """Abar only (see _discretize)."""
    zr = lr * delta
    zi = li * delta
    if METHOD == 0:
        ar, ai = _cexp(zr, zi, F64)
    else:
        ar, ai = _cdiv(1.0 + 0.5 * zr, 0.5 * zi, 1.0 - 0.5 * zr, -0.5 * zi)
    return ar, ai


@triton.jit
def _sensitivities(lr, li, ilr, ili, delta, ar, ai, fr, fi, METHOD: tl.constexpr):
    """M1, DM2 with dAbar/dLambda = delta M1, dAbar/ddelta = Lambda M1, dF/ddelta = M1 and
    dF/dLambda = DM2 (delta^2 phi1'(z) for ZOH). (ar, ai) = Abar, (fr, fi) = F,
    (ilr, ili) = 1/Lambda."""
    zr = lr * delta
    zi = li * delta
    if METHOD == 0:
        sr, si = _dphi1_series(zr, zi)
        # |z| >= 0.5: delta^2 phi1'(z) = (delta Abar - F) / Lambda (no cancellation there)
        cr, ci = _cmul(delta * ar - fr, delta * ai - fi, ilr, ili)
        small = zr * zr + zi * zi < 0.25
        d2 = delta * delta
        return ar, ai, tl.where(small, sr * d2, cr), tl.where(small, si * d2, ci)
    d2r, d2i = _cmul(1.0 - 0.5 * zr, -0.5 * zi, 1.0 - 0.5 * zr, -0.5 * zi)
    rr, ri = _cdiv(zr * 0 + 1.0, zi * 0, d2r, d2i)
    return rr, ri, 0.5 * delta * delta * rr, 0.5 * delta * delta * ri


@triton.jit
def _load_c(ptr, roff, rmask, cols, cmask, CHUNK: tl.constexpr, BLOCK_P: tl.constexpr):
    """Load a (CHUNK, BLOCK_P) interleaved complex tile -> (re, im).

    roff/rmask (CHUNK, 1): offset and mask of each row; cols/cmask (2 BLOCK_P,): the
    block's float columns (2 p + {0, 1}). One contiguous run of 2 BLOCK_P floats per row,
    so the loads are vectorised; the (re, im) pairs are split in registers.
    """
    v = tl.load(ptr + roff + cols[None, :], mask=rmask & cmask[None, :], other=0.0)
    return tl.split(tl.reshape(v, (CHUNK, BLOCK_P, 2)))


@triton.jit
def _store_c(ptr, roff, rmask, cols, cmask, re, im, CHUNK: tl.constexpr, BLOCK_P: tl.constexpr):
    """Store (re, im) (CHUNK, BLOCK_P) as interleaved complex rows (see _load_c)."""
    v = tl.reshape(tl.join(re, im), (CHUNK, 2 * BLOCK_P))
    tl.store(ptr + roff + cols[None, :], v, mask=rmask & cmask[None, :])


@triton.jit
def _last_row(v, rows, CHUNK: tl.constexpr):
    return tl.sum(tl.where(rows[:, None] == CHUNK - 1, v, 0.0), axis=0)


@triton.jit
def _p_block_params(lam_ptr, logdt_ptr, offs_p, mask_p):
    """Per-state parameters of a P block as (1, BLOCK_P) rows: Lambda (lr, li), 1/Lambda
    (ilr, ili, once per program) and the base step exp(log_dt)."""
    lr = tl.load(lam_ptr + 2 * offs_p, mask=mask_p, other=-1.0)[None, :]
    li = tl.load(lam_ptr + 2 * offs_p + 1, mask=mask_p, other=0.0)[None, :]
    ilr, ili = _cdiv(1.0 + lr * 0, lr * 0, lr, li)
    dt0 = tl.exp(tl.load(logdt_ptr + offs_p, mask=mask_p, other=0.0))[None, :]
    return lr, li, ilr, ili, dt0


@triton.jit
def _s5_scan_fwd_kernel(lam_ptr, logdt_ptr, gaps_ptr, bu_ptr, h0_ptr, x_ptr,
                        L, P, stride_b, stride_l, gstride_b,
                        METHOD: tl.constexpr, HAS_GAPS: tl.constexpr, HAS_H0: tl.constexpr,
                        CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, PREFETCH: tl.constexpr,
                        F64: tl.constexpr):
    pid_b = tl.program_id(0)
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    lr, li, ilr, ili, dt0 = _p_block_params(lam_ptr, logdt_ptr, offs_p, mask_p)
    rows = tl.arange(0, CHUNK)
    cols = 2 * tl.program_id(1) * BLOCK_P + tl.arange(0, 2 * BLOCK_P)  # float columns
    cmask = cols < 2 * P
    rbase = pid_b * stride_b
    if PREFETCH:  # software pipelining: chunk k+1 is in flight while chunk k is scanned
        pr, pi = _load_c(bu_ptr, rbase + rows[:, None] * stride_l, (rows < L)[:, None],
                         cols, cmask, CHUNK, BLOCK_P)
    else:
        pr = tl.zeros([CHUNK, BLOCK_P], dtype=lr.dtype)
        pi = tl.zeros([CHUNK, BLOCK_P], dtype=lr.dtype)
    if HAS_H0:
        cr = tl.load(h0_ptr + pid_b * 2 * P + 2 * offs_p, mask=mask_p, other=0.0)
        ci = tl.load(h0_ptr + pid_b * 2 * P + 2 * offs_p + 1, mask=mask_p, other=0.0)
    else:
        cr = tl.zeros([BLOCK_P], dtype=lr.dtype)
        ci = tl.zeros([BLOCK_P], dtype=lr.dtype)
    for t0 in range(0, L, CHUNK):
        t = t0 + rows
        valid = t < L
        roff = rbase + t[:, None] * stride_l  # (CHUNK, 1)
        if PREFETCH:
            bur, bui = pr, pi
            pr, pi = _load_c(bu_ptr, roff + CHUNK * stride_l, ((t + CHUNK) < L)[:, None],
                             cols, cmask, CHUNK, BLOCK_P)
        else:
            bur, bui = _load_c(bu_ptr, roff, valid[:, None], cols, cmask, CHUNK, BLOCK_P)
        if HAS_GAPS:
            g = tl.load(gaps_ptr + pid_b * gstride_b + t, mask=valid, other=1.0)
            delta = dt0 * g[:, None].to(dt0.dtype)
        else:
            delta = dt0 + tl.zeros([CHUNK, 1], dtype=dt0.dtype)
        ar, ai, fr, fi = _discretize(lr, li, ilr, ili, delta, METHOD, F64)
        br, bi = _cmul(fr, fi, bur, bui)
        ar = tl.where(valid[:, None], ar, 1.0)
        ai = tl.where(valid[:, None], ai, 0.0)
        ar, ai, br, bi = tl.associative_scan((ar, ai, br, bi), 0, _combine)
        xr, xi = _cmul(ar, ai, cr[None, :], ci[None, :])
        xr += br
        xi += bi
        _store_c(x_ptr, roff, valid[:, None], cols, cmask, xr, xi, CHUNK, BLOCK_P)
        cr = _last_row(xr, rows, CHUNK)
        ci = _last_row(xi, rows, CHUNK)


@triton.jit
def _s5_scan_bwd_kernel(lam_ptr, logdt_ptr, gaps_ptr, bu_ptr, h0_ptr, x_ptr, gx_ptr,
                        gbu_ptr, glam_ptr, gdt_ptr, gh0_ptr,
                        L, P, stride_b, stride_l, gstride_b,
                        METHOD: tl.constexpr, HAS_GAPS: tl.constexpr, HAS_H0: tl.constexpr,
                        CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, F64: tl.constexpr):
    pid_b = tl.program_id(0)
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    lr, li, ilr, ili, dt0 = _p_block_params(lam_ptr, logdt_ptr, offs_p, mask_p)
    cr = tl.zeros([BLOCK_P], dtype=lr.dtype)
    ci = tl.zeros([BLOCK_P], dtype=lr.dtype)
    acc_lr = tl.zeros([BLOCK_P], dtype=lr.dtype)
    acc_li = tl.zeros([BLOCK_P], dtype=lr.dtype)
    acc_dt = tl.zeros([BLOCK_P], dtype=lr.dtype)
    rows = tl.arange(0, CHUNK)
    cols = 2 * tl.program_id(1) * BLOCK_P + tl.arange(0, 2 * BLOCK_P)  # float columns
    cmask = cols < 2 * P
    rbase = pid_b * stride_b
    for k in range(0, tl.cdiv(L, CHUNK)):
        t = L - 1 - k * CHUNK - rows  # row r holds time t (reversed)
        valid = t >= 0
        rv = valid[:, None]
        roff = rbase + t[:, None] * stride_l  # (CHUNK, 1)
        gxr, gxi = _load_c(gx_ptr, roff, rv, cols, cmask, CHUNK, BLOCK_P)
        bur, bui = _load_c(bu_ptr, roff, rv, cols, cmask, CHUNK, BLOCK_P)
        xpr, xpi = _load_c(x_ptr, roff - stride_l, (t >= 1)[:, None], cols, cmask, CHUNK, BLOCK_P)
        if HAS_H0:
            hr, hi = _load_c(h0_ptr, pid_b * 2 * P + t[:, None] * 0, (t == 0)[:, None], cols,
                             cmask, CHUNK, BLOCK_P)
            xpr += hr
            xpi += hi
        if HAS_GAPS:
            g = tl.load(gaps_ptr + pid_b * gstride_b + t, mask=valid, other=1.0)
            gn = tl.load(gaps_ptr + pid_b * gstride_b + t + 1, mask=valid & (t + 1 < L), other=1.0)
            delta = dt0 * g[:, None].to(dt0.dtype)
            dnext = dt0 * gn[:, None].to(dt0.dtype)
        else:
            delta = dt0 + tl.zeros([CHUNK, 1], dtype=dt0.dtype)
            dnext = delta
        anr, ani = _abar(lr, li, dnext, METHOD, F64)
        anr = tl.where(valid[:, None], anr, 1.0)
        ani = tl.where(valid[:, None], -ani, 0.0)  # conj(Abar_{t+1})
        anr, ani, bsr, bsi = tl.associative_scan((anr, ani, gxr, gxi), 0, _combine)
        gr, gi = _cmul(anr, ani, cr[None, :], ci[None, :])
        gr += bsr
        gi += bsi
        cr = _last_row(gr, rows, CHUNK)
        ci = _last_row(gi, rows, CHUNK)
        ar, ai, fr, fi = _discretize(lr, li, ilr, ili, delta, METHOD, F64)
        _store_c(gbu_ptr, roff, rv, cols, cmask, fr * gr + fi * gi, fr * gi - fi * gr,  # conj(F) g
                 CHUNK, BLOCK_P)
        gar, gai = _cmul(xpr, -xpi, gr, gi)  # conj(x_{t-1}) g
        gfr, gfi = _cmul(bur, -bui, gr, gi)  # conj(Bu_t) g
        m1r, m1i, m2r, m2i = _sensitivities(lr, li, ilr, ili, delta, ar, ai, fr, fi, METHOD)
        t1r, t1i = _cmul(m1r, -m1i, gar, gai)
        t2r, t2i = _cmul(m2r, -m2i, gfr, gfi)
        acc_lr += tl.sum(delta * t1r + t2r, axis=0)
        acc_li += tl.sum(delta * t1i + t2i, axis=0)
        # Re(conj(M1) (conj(Lambda) gA + gF))
        ur, ui = _cmul(lr, -li, gar, gai)
        acc_dt += tl.sum(delta * (m1r * (ur + gfr) + m1i * (ui + gfi)), axis=0)
    gl_offs = pid_b * 2 * P + 2 * offs_p
    tl.store(glam_ptr + gl_offs, acc_lr, mask=mask_p)
    tl.store(glam_ptr + gl_offs + 1, acc_li, mask=mask_p)
    tl.store(gdt_ptr + pid_b * P + offs_p, acc_dt, mask=mask_p)
    if HAS_H0:  # dL/dh0 = conj(Abar_0) g_0
        if HAS_GAPS:
            g0 = tl.load(gaps_ptr + pid_b * gstride_b).to(dt0.dtype)
        else:
            g0 = 1.0
        a0r, a0i = _abar(lr, li, dt0 * g0, METHOD, F64)
        hr, hi = _cmul(a0r, -a0i, cr[None, :], ci[None, :])
        tl.store(gh0_ptr + gl_offs, tl.sum(hr, axis=0), mask=mask_p)
        tl.store(gh0_ptr + gl_offs + 1, tl.sum(hi, axis=0), mask=mask_p)


def _launch_cfg(P: int, base: dict):
    cfg = dict(base)
    cfg["BLOCK_P"] = min(cfg["BLOCK_P"], next_pow2(P))
    return cfg


def _s5_scan_fwd(Lambda, log_dt, Bu, gaps, h0, method):
    """Launch the forward kernel; all inputs contiguous, one complex/real dtype. -> x (b, L, P)."""
    batch, length, P = Bu.shape
    x = torch.empty_like(Bu)
    bu_r = torch.view_as_real(Bu)  # (b, L, P, 2)
    cfg = _launch_cfg(P, CONFIG)
    grid = (batch, ceil_div(P, cfg["BLOCK_P"]))
    launch(_s5_scan_fwd_kernel, grid, (
        torch.view_as_real(Lambda), log_dt, gaps if gaps is not None else log_dt, bu_r,
        torch.view_as_real(h0) if h0 is not None else bu_r, torch.view_as_real(x),
        length, P, bu_r.stride(0), bu_r.stride(1), gaps.stride(0) if gaps is not None else 0,
        0 if method == "zoh" else 1, gaps is not None, h0 is not None, cfg["CHUNK"],
        cfg["BLOCK_P"], cfg["PREFETCH"], Bu.dtype == torch.complex128), 6, 5,
        cfg["num_warps"])
    return x


def _s5_scan_bwd(Lambda, log_dt, Bu, gaps, h0, x, gx, method):
    """Launch the backward kernel -> (gLambda (P,), glog_dt (P,), gBu (b, L, P), gh0 (b, P))."""
    batch, length, P = Bu.shape
    rdt = log_dt.dtype
    gbu = torch.empty_like(Bu)
    glam = torch.empty(batch, P, dtype=Bu.dtype, device=Bu.device)
    gdt = torch.empty(batch, P, dtype=rdt, device=Bu.device)
    gh0 = torch.empty(batch, P, dtype=Bu.dtype, device=Bu.device) if h0 is not None else None
    bu_r = torch.view_as_real(Bu)  # (b, L, P, 2)
    cfg = _launch_cfg(P, BWD_CONFIG)
    grid = (batch, ceil_div(P, cfg["BLOCK_P"]))
    launch(_s5_scan_bwd_kernel, grid, (
        torch.view_as_real(Lambda), log_dt, gaps if gaps is not None else log_dt, bu_r,
        torch.view_as_real(h0) if h0 is not None else bu_r, torch.view_as_real(x),
        torch.view_as_real(gx), torch.view_as_real(gbu), torch.view_as_real(glam), gdt,
        torch.view_as_real(gh0) if gh0 is not None else gdt,
        length, P, bu_r.stride(0), bu_r.stride(1), gaps.stride(0) if gaps is not None else 0,
        0 if method == "zoh" else 1, gaps is not None, h0 is not None, cfg["CHUNK"],
        cfg["BLOCK_P"], Bu.dtype == torch.complex128), 11, 5, cfg["num_warps"])
    return glam.sum(0), gdt.sum(0), gbu, gh0


class S5ScanFn(torch.autograd.Function):
    """Autograd wrapper: inputs already validated, contiguous and of one precision."""

    @staticmethod
    def forward(ctx, Lambda, log_dt, Bu, gaps, h0, method):
        x = _s5_scan_fwd(Lambda, log_dt, Bu, gaps, h0, method)
        ctx.save_for_backward(Lambda, log_dt, Bu, gaps, h0, x)
        ctx.method = method
        return x

    @staticmethod
    def backward(ctx, gx):
        Lambda, log_dt, Bu, gaps, h0, x = ctx.saved_tensors
        gx = torch.zeros_like(x) if gx is None else gx.to(x.dtype).contiguous()
        glam, gdt, gbu, gh0 = _s5_scan_bwd(Lambda, log_dt, Bu, gaps, h0, x, gx, ctx.method)
        return glam, gdt, gbu, None, gh0, None


def s5_scan(Lambda, log_dt, Bu, gaps=None, C=None, D=None, u=None, method: str = "zoh",
            h0=None, return_last_state: bool = False):
    """S5 scan on the GPU (Triton); same signature and returns as ``s5_scan_ref``.

    Parameters
    ----------
    Lambda : complex tensor, shape (P,)
    log_dt : real tensor, shape (P,)
    Bu : complex tensor, shape (batch, L, P)
    gaps : real tensor, shape (batch, L), optional (no gradient flows to it)
    C : complex tensor, shape (H, P), optional
    D : real tensor, shape (H,), optional
    u : real tensor, shape (batch, L, H), optional
    method : {"zoh", "bilinear"}
    h0 : complex tensor, shape (batch, P), optional
    return_last_state : bool

    Returns
    -------
    out : complex tensor, shape (batch, L, P) (states) or real tensor, shape (batch, L, H)
    last_state : complex tensor, shape (batch, P), if ``return_last_state``
        complex64 (complex128 if any input is 64-bit; the kernel then runs in float64).

    Notes
    -----
    Types and shapes are always checked; values (NaN/inf, gaps > 0, Re Lambda < 0) only with
    ``SSMTS_CHECK_GPU_VALUES=1`` on CUDA (one reduction and host sync per call).
    """
    args = (Lambda, log_dt, Bu, gaps, C, D, u, method, h0)
    cuda = isinstance(Bu, torch.Tensor) and Bu.is_cuda  # CUDA: see gpu_value_checks
    Lambda, log_dt, Bu, gaps, C, D, u, h0 = check_s5_args(*args, values=not cuda)
    if Bu.shape[1] == 0:
        return s5_scan_ref(Lambda, log_dt, Bu, gaps, C, D, u, method, h0, return_last_state)
    cdt = _complex_dtype(Lambda, log_dt, Bu, gaps, C, h0)
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    x = S5ScanFn.apply(
        Lambda.to(cdt).contiguous(), log_dt.to(rdt).contiguous(), Bu.to(cdt).contiguous(),
        None if gaps is None else gaps.to(rdt).contiguous(),
        None if h0 is None else h0.to(cdt).contiguous(), method)
    out = x if C is None else _project(x, C.to(cdt), D, u)
    if cuda and gpu_value_checks() and not result_finite(out, gaps, (Lambda.real < 0).all()):
        check_s5_args(*args)  # names a non-finite input, a bad gap or an unstable Lambda
    return (out, x[:, -1]) if return_last_state else out
