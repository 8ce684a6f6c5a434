"""Fast CPU selective scan (Mamba's S6): a cache-blocked recurrence with an analytic backward.

``selective_scan_fast`` has the signature and semantics of
:func:`ssmts.ssm.selective.selective_scan_ref`; it differs only in how the
recurrence is computed.

How (real A, B, C; the Mamba layer's case)
------------------------------------------
The core ``(delta, delta*u, A, B, C) -> y`` is one ``torch.autograd.Function``
working in a time-first layout (L, batch, N, D): states before channels, so the
sums over N run along contiguous rows of channels. Time is cut into blocks of
``T`` steps (about 1 MiB each) that stay in cache; for each block it forms
``a = exp(delta A)`` and ``x = delta u B`` (a broadcast product), runs the ``T``
steps ``h_t = a_t h_{t-1} + x_t`` in place (one fused multiply-add per step on a
(batch, N, D) slice), and contracts ``y_t = C_t . h_t`` while the block is still
in cache. Only ``a`` and ``h`` are kept for backward (nothing when no input needs
a gradient: the blocks then reuse one buffer).

The backward runs the blocks in reverse with the adjoint recurrence
``g_t = C_t dy_t + a_{t+1} g_{t+1}`` (same in-place steps), and per block

    d(delta u)_t = B_t . g_t          dB_t = sum_d g_t delta_t u_t
    dC_t = sum_d dy_t h_t             q_t  = g_t a_t h_{t-1}
    d delta_t (through a) = sum_n q_t A     dA = sum_{batch, t} q_t delta_t

so no gradient of an (L, batch, N, D) tensor is ever materialised for autograd
(the core is differentiable once: no double backward).
The gates around the core (bias, softplus, gaps, D skip, silu(z)) are (batch, D, L)
tensors and are left to autograd.

Fallback (documented slower path)
---------------------------------
Complex ``A``, ``B`` or ``C`` go through an autograd path built on
:func:`ssmts.ssm.scan.linear_scan_chunked` (a chunked scan with its own analytic
backward); still far faster than the reference loop, with more memory traffic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .scan import linear_scan_chunked
from .selective import _compute_dtype, _expand_bc, check_selective_scan_args

__all__ = ["selective_scan_fast"]

# elements of one (T, batch, D, N) block: ~1 MiB in float32, cache-sized
_BLOCK_ELEMS = 1 << 18


def _block_len(length: int, width: int) -> int:
    """Steps per block so a (T, width) block holds about ``_BLOCK_ELEMS`` elements."""
    return max(1, min(length, _BLOCK_ELEMS // max(width, 1)))


# ----------------------------------------------------------------------------- B/C helpers
# Blocks are (T, b, N, D): N before D, so sums over N run along contiguous rows of D.
# A "bc" (B, C, or A itself) is fixed, shape (N, D), or time-varying, a block (T, b, N, G)
# of the time-first (L, b, N, G) tensor; channel d belongs to group d // (D // G).
def _outer(w: torch.Tensor, bc: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out (T, b, N, D) = w (T, b, D) times bc, broadcast over N (resp. the group's channels)."""
    if bc.ndim == 2:
        return torch.mul(w.unsqueeze(2), bc, out=out)
    t, b, d = w.shape
    n, g = bc.shape[2:]
    torch.mul(w.view(t, b, 1, g, d // g), bc.unsqueeze(-1),
              out=out.view(t, b, n, g, d // g))  # (T, b, N, G, E)
    return out


def _contract(h: torch.Tensor, bc: torch.Tensor) -> torch.Tensor:
    """sum over N of h (T, b, N, D) times bc -> (T, b, D)."""
    if bc.ndim == 2:
        return (h * bc).sum(2)
    t, b, n, d = h.shape
    g = bc.shape[3]
    if g == 1:
        return torch.matmul(bc.transpose(2, 3), h).view(t, b, d)  # (T,b,1,N) @ (T,b,N,D)
    return (h.view(t, b, n, g, d // g) * bc.unsqueeze(-1)).sum(2).view(t, b, d)  # (T,b,G,E)


def _reduce_d(h: torch.Tensor, w: torch.Tensor, bc: torch.Tensor) -> torch.Tensor:
    """Gradient of a bc: sum of h (T, b, N, D) times w (T, b, D) over its shared axes.

    Returns (N, D) for a fixed bc (summed over time and batch), else (T, b, N, G)
    (summed over each group's channels).
    """
    if bc.ndim == 2:
        return (h * w.unsqueeze(2)).sum((0, 1))  # (N, D)
    t, b, n, d = h.shape
    g = bc.shape[3]
    if g == 1:
        return torch.matmul(h, w.unsqueeze(-1))  # (T, b, N, 1)
    return (h.view(t, b, n, g, d // g) * w.view(t, b, 1, g, d // g)).sum(-1)  # (T, b, N, G)


# ----------------------------------------------------------------------------- forward/backward
def _forward_blocks(delta, du, A, B, C, keep: bool):
    """Blocked forward pass. delta, du (L, b, D); A (N, D); B, C (N, D) or (L, b, N, G).

    Returns y (L, b, D), last state (b, N, D), and a, h (L, b, N, D) if ``keep``.
    """
    length, batch, dim = delta.shape
    nst = A.shape[0]
    T = _block_len(length, batch * dim * nst)
    rows = length if keep else T
    a = delta.new_empty((rows, batch, nst, dim))  # (L|T, b, N, D)
    h = delta.new_empty((rows, batch, nst, dim))  # (L|T, b, N, D)
    y = delta.new_empty((length, batch, dim))  # (L, b, D)
    prev = None
    for s in range(0, length, T):
        e = min(s + T, length)
        o = s if keep else 0
        a_b, h_b = a[o:o + e - s], h[o:o + e - s]  # (T, b, N, D) views
        torch.mul(delta[s:e].unsqueeze(2), A, out=a_b).exp_()
        _outer(du[s:e], B if B.ndim == 2 else B[s:e], out=h_b)
        hs, as_ = h_b.unbind(0), a_b.unbind(0)
        if prev is not None:
            hs[0].addcmul_(as_[0], prev)
        for i in range(1, e - s):
            hs[i].addcmul_(as_[i], hs[i - 1])
        y[s:e] = _contract(h_b, C if C.ndim == 2 else C[s:e])
        prev = hs[-1] if keep else hs[-1].clone()  # the buffer is overwritten next block
    if keep:
        return y, prev.clone(), (a, h)
    return y, prev, None


def _adjoint_block(g_b, a, s: int, e: int, carry):
    """In place: g_t += a_{t+1} g_{t+1} over block [s, e); ``carry`` is g_e (or None)."""
    gs = g_b.unbind(0)
    if carry is not None:
        gs[-1].addcmul_(a[e], carry)
    for i in range(e - s - 2, -1, -1):
        gs[i].addcmul_(a[s + i + 1], gs[i + 1])


def _backward_blocks(dy, delta, du, A, B, C, a, h, needs):
    """Blocked adjoint pass; returns d delta (through a), d(du), dA, dB, dC (None if unneeded)."""
    length, batch, dim = delta.shape
    nst = A.shape[0]
    T = _block_len(length, batch * dim * nst)
    need_delta, need_du, need_A, need_B, need_C = needs
    d_delta = torch.zeros_like(delta) if need_delta else None
    d_du = torch.empty_like(du) if need_du else None
    dA = torch.zeros_like(A) if need_A else None
    dB = torch.zeros_like(B) if need_B else None
    dC = torch.zeros_like(C) if need_C else None
    g_buf = a.new_empty((T, batch, nst, dim))  # (T, b, N, D)
    q_buf = a.new_empty((T, batch, nst, dim))  # (T, b, N, D)
    carry = a.new_empty((batch, nst, dim))  # g at the start of the later block
    have_carry = False
    for s in reversed(range(0, length, T)):
        e = min(s + T, length)
        g_b, q_b = g_buf[:e - s], q_buf[:e - s]
        B_b = B if B.ndim == 2 else B[s:e]
        C_b = C if C.ndim == 2 else C[s:e]
        _outer(dy[s:e], C_b, out=g_b)
        _adjoint_block(g_b, a, s, e, carry if have_carry else None)
        carry.copy_(g_b[0])
        have_carry = True
        if need_du:
            d_du[s:e] = _contract(g_b, B_b)
        if need_B:
            _store(dB, s, e, _reduce_d(g_b, du[s:e], B_b))
        if need_C:
            _store(dC, s, e, _reduce_d(h[s:e], dy[s:e], C_b))
        if need_delta or need_A:
            _q_block(q_b, g_b, a, h, s, e)  # q = g a h_prev
            if need_delta:
                d_delta[s:e] = _contract(q_b, A)
            if need_A:
                dA.add_(_reduce_d(q_b, delta[s:e], A))
    return d_delta, d_du, dA, dB, dC


def _store(grad: torch.Tensor, s: int, e: int, r: torch.Tensor) -> None:
    """Accumulate a fixed (N, D) gradient, or write the block [s, e) of a varying one."""
    if grad.ndim == 2:
        grad.add_(r)
    else:
        grad[s:e] = r


def _q_block(q_b, g_b, a, h, s: int, e: int) -> None:
    """q_b = g_b * a[s:e] * h[s-1:e-1] (h_{-1} = 0), in place into q_b."""
    if s > 0:
        torch.mul(a[s:e], h[s - 1:e - 1], out=q_b)
    else:
        q_b[0].zero_()
        torch.mul(a[1:e], h[0:e - 1], out=q_b[1:])
    q_b.mul_(g_b)


class _SelectiveCoreFn(torch.autograd.Function):
    """(delta, delta*u, A, B, C) -> (y, last state), time-first, real; analytic backward."""

    @staticmethod
    def forward(ctx, delta, du, A, B, C):
        keep = any(ctx.needs_input_grad)
        y, last, ah = _forward_blocks(delta, du, A, B, C, keep)
        if keep:
            ctx.save_for_backward(delta, du, A, B, C, *ah)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _dlast):
        delta, du, A, B, C, a, h = ctx.saved_tensors
        return _backward_blocks(dy.contiguous(), delta, du, A, B, C, a, h,
                                ctx.needs_input_grad)


# ----------------------------------------------------------------------------- paths
def _time_first_bc(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(D, N) -> (N, D); (b, N, L) -> (L, b, N, 1); (b, G, N, L) -> (L, b, N, G); contiguous."""
    t = t.to(dtype)
    if t.ndim == 2:
        return t.t().contiguous()  # (N, D)
    if t.ndim == 3:
        t = t.unsqueeze(1)  # (b, 1, N, L)
    return t.permute(3, 0, 2, 1).contiguous()  # (L, b, N, G)


def _core_real(u, delta, A, B, C, wdt):
    """Real path. u, delta (b, D, L) in ``wdt``; returns y (b, D, L), last state (b, D, N)."""
    delta_t = delta.permute(2, 0, 1).contiguous()  # (L, b, D)
    du_t = (delta * u).permute(2, 0, 1).contiguous()  # (L, b, D)
    y, last = _SelectiveCoreFn.apply(delta_t, du_t, _time_first_bc(A, wdt),
                                     _time_first_bc(B, wdt), _time_first_bc(C, wdt))
    return y.permute(1, 2, 0), last.transpose(1, 2)  # (b, D, L), (b, D, N)


def _core_complex(u, delta, A, B, C, wdt):
    """Complex fallback via ``linear_scan_chunked``; same returns as :func:`_core_real`."""
    cdt = torch.complex128 if wdt == torch.float64 else torch.complex64
    dim = u.shape[1]
    A = A.to(cdt)
    B, C = _expand_bc(B.to(cdt), dim), _expand_bc(C.to(cdt), dim)
    a = torch.exp(delta.unsqueeze(-1) * A[:, None, :])  # (b, D, L, N)
    bc_b = B[:, None, :] if B.ndim == 2 else B.transpose(-1, -2)  # (D, 1, N) | (b, D|1, L, N)
    x = (delta * u).unsqueeze(-1) * bc_b  # (b, D, L, N)
    h = linear_scan_chunked(a, x, dim=2)  # (b, D, L, N)
    bc_c = C[:, None, :] if C.ndim == 2 else C.transpose(-1, -2)  # (D, 1, N) | (b, D|1, L, N)
    y = 2 * (h * bc_c).sum(-1).real  # (b, D, L)
    return y, h[:, :, -1].detach()


def selective_scan_fast(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, return_last_state=False, gaps=None):
    """Selective scan, fast on CPU (cache-blocked recurrence, analytic backward).

    Same signature, semantics, dtypes and errors as
    :func:`ssmts.ssm.selective.selective_scan_ref`.

    Parameters
    ----------
    u : tensor, shape (batch, D, L)
        Input sequence.
    delta : tensor, shape (batch, D, L)
        Step sizes before ``delta_bias`` / softplus.
    A : real or complex tensor, shape (D, N)
        Continuous-time diagonal state matrix (negative real part for stability).
    B, C : tensor, shape (D, N), (batch, N, L) or (batch, G, N, L)
        Input and output matrices; 3-D/4-D ones vary with time (selective);
        G groups share B/C across ``D // G`` channels each.
    D : tensor, shape (D,), optional
        Skip connection.
    z : tensor, shape (batch, D, L), optional
        Gate: the output is multiplied by ``silu(z)``.
    delta_bias : tensor, shape (D,), optional
        Added to ``delta`` before softplus.
    delta_softplus : bool
        Apply softplus to ``delta + delta_bias``.
    return_last_state : bool
        Also return the state after the last step, shape (batch, D, N).
    gaps : tensor, shape (batch, L), optional
        Positive time gap before each sample; multiplies the step after softplus.

    Returns
    -------
    out : tensor, shape (batch, D, L), dtype of ``u``
    last_state : tensor, shape (batch, D, N), only if ``return_last_state``
        Float32 (float64 for float64 inputs); complex if A, B or C is. Not differentiable.

    Notes
    -----
    Real inputs use the blocked core (memory: two (L, batch, D, N) tensors kept
    for backward, none when no input needs a gradient). Complex A/B/C use a slower
    autograd path over :func:`ssmts.ssm.scan.linear_scan_chunked`.
    """
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, gaps)
    dtype_in = u.dtype
    wdt = _compute_dtype(u, delta, A, B, C)
    u, delta = u.to(wdt), delta.to(wdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(wdt)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if gaps is not None:
        delta = delta * gaps.to(wdt)[:, None, :]
    if A.is_complex() or B.is_complex() or C.is_complex():
        y, last = _core_complex(u, delta, A, B, C, wdt)
    else:
        y, last = _core_real(u, delta, A, B, C, wdt)
    out = y if D is None else y + u * D.to(wdt)[:, None]
    if z is not None:
        out = out * F.silu(z.to(wdt))
    out = out.to(dtype_in)
    return (out, last) if return_last_state else out
