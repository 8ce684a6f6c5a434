"""Linear recurrences ``h_t = a_t * h_{t-1} + b_t`` computed three ways.

The recurrence is elementwise (a diagonal state matrix), real or complex, with
``h_{-1} = h0`` (zero by default). It is the core of every time-varying SSM
here: S5 with irregular steps, S4D in scan mode and Mamba's selective scan all
reduce to it once discretised (``a_t = exp(Δ_t A)``, ``b_t = B̄_t u_t``).

* ``linear_scan_ref`` - a Python loop over time; the oracle.
* ``linear_scan_parallel`` - a log-depth associative scan with the operator
  ``(a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2)`` (Hillis-Steele, any length),
  differentiated by autograd.
* ``linear_scan_chunked`` - the fast CPU path: time is cut into chunks of ``T``
  steps; all chunks advance together through ``T`` vectorised steps, the chunk
  carries are propagated across the ``L / T`` chunks, and a final fix-up adds
  ``cumprod(a) * carry``. Its backward is the same chunked pass run backwards
  in time (the adjoint recurrence), so neither direction has per-step autograd
  nodes. No quantity is ever divided by a cumulative product (they underflow).

``linear_scan`` dispatches between them. All public functions validate their
inputs once; the private helpers work on a time-first layout and trust them.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from ._validate import as_tensor, check_finite

__all__ = ["linear_scan", "linear_scan_ref", "linear_scan_parallel", "linear_scan_chunked"]

_METHODS = ("auto", "chunked", "parallel", "sequential")


# ----------------------------------------------------------------------------- validation
def _check_finite_fast(x: torch.Tensor, name: str) -> None:
    """One reduction decides the common case; the element-wise check runs only if it fails."""
    if x.numel() and not bool(torch.isfinite(x.sum())):
        check_finite(x, name)  # raises unless the sum merely overflowed


def _result_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    """Promoted dtype of the inputs; integer/bool inputs compute in the default float dtype."""
    dtype = None
    for t in ts:
        if t is not None:
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    if not (dtype.is_floating_point or dtype.is_complex):
        dtype = torch.get_default_dtype()
    return dtype


def _prepare(a, b, h0, dim):
    """Validate and move to the time-first layout used by the private helpers.

    Returns ``a`` of shape (L, *rest_a) (time expanded to L, other dims
    broadcastable to rest), ``b`` of shape (L, *rest), ``h0`` of shape (*rest)
    or None, all of one dtype, and the normalised ``dim``.
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    h0 = None if h0 is None else as_tensor(h0, "h0")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"dim: expected an int (the time axis of b), got {type(dim).__name__}")
    if b.ndim < 1:
        raise ValueError("b: expected at least 1 dimension (time), got a scalar; pass shape (batch, L, ...)")
    if not -b.ndim <= dim < b.ndim:
        raise ValueError(f"dim: {dim} is out of range for b with shape {tuple(b.shape)}")
    dim %= b.ndim
    length = b.shape[dim]
    if length == 0:
        raise ValueError(f"b: the time axis (dim={dim}) has length 0; pass at least one step")
    try:
        ok = a.ndim <= b.ndim and torch.broadcast_shapes(a.shape, b.shape) == b.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"a: shape {tuple(a.shape)} does not broadcast to b's shape {tuple(b.shape)}; "
            "give a the shape of b, or drop/size-1 the dimensions it shares (e.g. the batch)"
        )
    state_shape = b.shape[:dim] + b.shape[dim + 1:]
    if h0 is not None and h0.shape != state_shape:
        raise ValueError(
            f"h0: expected shape {tuple(state_shape)} (b's shape without the time axis dim={dim}), "
            f"got {tuple(h0.shape)}"
        )
    for name, t in (("a", a), ("h0", h0)):
        if t is not None and t.device != b.device:
            raise ValueError(f"{name}: on {t.device} but b is on {b.device}; move both to one device")
    for name, t in (("a", a), ("b", b), ("h0", h0)):
        if t is not None:
            _check_finite_fast(t.detach(), name)
    dtype = _result_dtype(a, b, h0)
    a, b = a.to(dtype), b.to(dtype)
    h0 = None if h0 is None else h0.to(dtype)
    a = a.reshape((1,) * (b.ndim - a.ndim) + a.shape)  # same ndim as b
    a, b = a.movedim(dim, 0), b.movedim(dim, 0)  # (La, *rest_a), (L, *rest)
    a = a.expand((length,) + a.shape[1:])  # (L, *rest_a), a view
    return a, b, h0, dim


# ----------------------------------------------------------------------------- sequential
def _scan_sequential(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Loop over time, out of place (autograd-friendly). a (L, *ra), b (L, *rest), h0 (*rest)."""
    hs = []
    h = h0
    for a_t, b_t in zip(a.unbind(0), b.unbind(0)):  # unbind: one backward node, not L
        h = b_t if h is None else a_t * h + b_t  # (*rest)
        hs.append(h)
    return torch.stack(hs)  # (L, *rest)


# ----------------------------------------------------------------------------- parallel
def _scan_parallel(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """Hillis-Steele inclusive scan in ceil(log2 L) out-of-place rounds (autograd-friendly).

    After round ``k`` entry ``t`` holds the composition of steps ``t - 2^k + 1 .. t``;
    the initial state is folded into step 0.
    """
    length = b.shape[0]
    if h0 is not None:
        b = torch.cat([(a[0] * h0 + b[0]).unsqueeze(0), b[1:]])  # (L, *rest)
    acc_a, acc_b = a, b
    d = 1
    while d < length:
        acc_b = torch.cat([acc_b[:d], acc_a[d:] * acc_b[:-d] + acc_b[d:]])  # (L, *rest)
        if 2 * d < length:
            acc_a = torch.cat([acc_a[:d], acc_a[d:] * acc_a[:-d]])  # (L, *ra)
        d *= 2
    return acc_b


# ----------------------------------------------------------------------------- chunked
def _default_chunk(length: int) -> int:
    """About sqrt(L) steps per chunk; a divisor of L in [T/2, 2T] avoids padding."""
    target = max(1, round(math.sqrt(length)))
    for off in range(target):
        for cand in (target - off, target + off):
            if target // 2 <= cand <= 2 * target and cand >= 1 and length % cand == 0:
                return cand
    return target


def _chunk_pass(a, b, h0, chunk: int, out: torch.Tensor, reverse: bool = False) -> None:
    """Write all states of the recurrence into ``out`` (no autograd; trusts its inputs).

    a : (L, *ra) broadcastable to rest; b, out : (L, *rest); h0 : (*rest) or None.
    ``reverse`` runs ``h_t = a_t h_{t+1} + b_t`` from ``t = L-1`` down, ``h_L = h0``.

    Two sweeps over the ``T`` steps of all chunks at once: the first finds each
    chunk's end state from a zero start, the carries then cross the chunks one
    step per chunk (scaled by the chunk's product of ``a``), and the second sweep
    recomputes every chunk from its true entry state straight into ``out``.
    """
    length, rest = b.shape[0], b.shape[1:]
    chunk = min(chunk, length)
    nc = -(-length // chunk)
    pad = nc * chunk - length
    work = out
    if pad:  # neutral steps (a = 1, b = 0) appended at the end, both directions
        a = torch.cat([a, a.new_ones((pad,) + a.shape[1:])])  # (nc*T, *ra)
        b = torch.cat([b, b.new_zeros((pad,) + rest)])  # (nc*T, *rest)
        work = b.new_empty(b.shape)
    a_c = a.reshape((nc, chunk) + a.shape[1:])  # (nc, T, *ra)
    b_c = b.reshape((nc, chunk) + rest)  # (nc, T, *rest)
    w_c = work.view((nc, chunk) + rest)  # (nc, T, *rest), writes into work
    a_s, b_s, w_s = a_c.unbind(1), b_c.unbind(1), w_c.unbind(1)  # T x (nc, *)
    order = range(chunk - 1, -1, -1) if reverse else range(chunk)
    # 1) end state of every chunk from a zero start (ping-pong buffers, no allocation per step)
    bufs = (b.new_empty((nc,) + rest), b.new_empty((nc,) + rest))  # 2 x (nc, *rest)
    end = bufs[0].copy_(b_s[order[0]])
    for i, t in enumerate(order[1:]):
        end = torch.addcmul(b_s[t], a_s[t], end, out=bufs[(i + 1) % 2])
    # 2) carries: the state entering each chunk, one step per chunk
    total = a_c.prod(1).unbind(0)  # nc x (*ra): product of a over the chunk
    carry = bufs[1] if end is bufs[0] else bufs[0]  # (nc, *rest), the free buffer
    ends, c_s = end.unbind(0), carry.unbind(0)
    state = h0
    for k in (range(nc - 1, -1, -1) if reverse else range(nc)):
        if state is None:
            c_s[k].zero_()
            state = ends[k]
        else:
            c_s[k].copy_(state)
            state = torch.addcmul(ends[k], total[k], state)
    # 3) every chunk again, from its entry state, into the output
    prev = torch.addcmul(b_s[order[0]], a_s[order[0]], carry, out=w_s[order[0]])
    for t in order[1:]:
        prev = torch.addcmul(b_s[t], a_s[t], prev, out=w_s[t])
    if pad:
        out.copy_(work[:length])


class _ChunkedScanFn(torch.autograd.Function):
    """Chunked scan with the adjoint recurrence as analytic backward (time-first inputs)."""

    @staticmethod
    def forward(ctx, a, b, h0, chunk):
        h = torch.empty_like(b)  # b's memory layout, so moving time back is free
        _chunk_pass(a, b, h0, chunk, h)
        ctx.save_for_backward(a, h0, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        # g_t = dh_t + conj(a_{t+1}) g_{t+1}; db = g; da_t = g_t conj(h_{t-1}); dh0 = conj(a_0) g_0
        a, h0, h = ctx.saved_tensors
        need_a, need_b, need_h0 = ctx.needs_input_grad[:3]
        alpha = torch.cat([a[1:].conj(), a.new_ones((1,) + a.shape[1:])])  # (L, *ra)
        g = torch.empty_like(h)
        _chunk_pass(alpha, dh, None, ctx.chunk, g, reverse=True)
        da = dh0 = None
        if need_a:
            da = torch.empty_like(g)
            torch.mul(g[1:], h[:-1].conj(), out=da[1:])
            if h0 is None:
                da[0].zero_()
            else:
                torch.mul(g[0], h0.conj(), out=da[0])
            da = da.sum_to_size(a.shape)  # sum over dims a was broadcast along
        if need_h0 and h0 is not None:
            dh0 = a[0].conj() * g[0]  # (*rest)
        return da, (g if need_b else None), dh0, None


# ----------------------------------------------------------------------------- public
def linear_scan_ref(a, b, h0=None, dim: int = 1) -> torch.Tensor:
    """Linear recurrence ``h_t = a_t * h_{t-1} + b_t`` by a sequential loop (the oracle).

    Parameters
    ----------
    a : real or complex tensor, broadcastable to ``b`` (e.g. shape (batch, L, *state),
        (1, L, *state) or (L, *state))
        Decay / transition coefficients (typically ``|a| < 1``).
    b : real or complex tensor, shape (batch, L, *state) with time on ``dim``
        Inputs of the recurrence.
    h0 : real or complex tensor, shape of ``b`` without the ``dim`` axis, optional
        Initial state ``h_{-1}``; zero if omitted.
    dim : int
        The time axis of ``b`` (default 1).

    Returns
    -------
    h : tensor, shape of ``b``, dtype promoted from ``a``, ``b``, ``h0``
        All states ``h_0 .. h_{L-1}``.
    """
    a, b, h0, dim = _prepare(a, b, h0, dim)
    return _scan_sequential(a, b, h0).movedim(0, dim)


def linear_scan_parallel(a, b, h0=None, dim: int = 1) -> torch.Tensor:
    """Linear recurrence by a log-depth associative scan (autograd-differentiable).

    Uses ``(a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2)`` in ``ceil(log2 L)`` rounds,
    for any length ``L`` (O(L log L) work).

    Parameters
    ----------
    a : real or complex tensor, broadcastable to ``b`` (e.g. shape (batch, L, *state),
        (1, L, *state) or (L, *state))
        Decay / transition coefficients (typically ``|a| < 1``).
    b : real or complex tensor, shape (batch, L, *state) with time on ``dim``
        Inputs of the recurrence.
    h0 : real or complex tensor, shape of ``b`` without the ``dim`` axis, optional
        Initial state ``h_{-1}``; zero if omitted.
    dim : int
        The time axis of ``b`` (default 1).

    Returns
    -------
    h : tensor, shape of ``b``, dtype promoted from ``a``, ``b``, ``h0``
        All states.
    """
    a, b, h0, dim = _prepare(a, b, h0, dim)
    return _scan_parallel(a, b, h0).movedim(0, dim)


def linear_scan_chunked(a, b, h0=None, dim: int = 1, chunk: int | None = None) -> torch.Tensor:
    """Linear recurrence by a chunked scan with an analytic backward (fast on CPU).

    Parameters
    ----------
    a : real or complex tensor, broadcastable to ``b`` (e.g. shape (batch, L, *state),
        (1, L, *state) or (L, *state))
        Decay / transition coefficients (typically ``|a| < 1``).
    b : real or complex tensor, shape (batch, L, *state) with time on ``dim``
        Inputs of the recurrence.
    h0 : real or complex tensor, shape of ``b`` without the ``dim`` axis, optional
        Initial state ``h_{-1}``; zero if omitted.
    dim : int
        The time axis of ``b`` (default 1).
    chunk : int, optional
        Steps per chunk; default about ``sqrt(L)`` (a divisor of ``L`` if one is near).

    Returns
    -------
    h : tensor, shape of ``b``, dtype promoted from ``a``, ``b``, ``h0``
        All states. Differentiable w.r.t. ``a``, ``b`` and ``h0`` (once; no double backward).
    """
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk: expected a positive int or None, got {chunk!r}")
    a, b, h0, dim = _prepare(a, b, h0, dim)
    if chunk is None:
        chunk = _default_chunk(b.shape[0])
    return _ChunkedScanFn.apply(a, b, h0, chunk).movedim(0, dim)


def linear_scan(a, b, h0=None, dim: int = 1, method: str = "auto") -> torch.Tensor:
    """Linear recurrence ``h_t = a_t * h_{t-1} + b_t``; dispatches to one implementation.

    Parameters
    ----------
    a : real or complex tensor, broadcastable to ``b`` (e.g. shape (batch, L, *state),
        (1, L, *state) or (L, *state))
        Decay / transition coefficients (typically ``|a| < 1``).
    b : real or complex tensor, shape (batch, L, *state) with time on ``dim``
        Inputs of the recurrence.
    h0 : real or complex tensor, shape of ``b`` without the ``dim`` axis, optional
        Initial state ``h_{-1}``; zero if omitted.
    dim : int
        The time axis of ``b`` (default 1).
    method : {"auto", "chunked", "parallel", "sequential"}
        ``auto`` is ``chunked``; ``sequential`` is ``linear_scan_ref``.

    Returns
    -------
    h : tensor, shape of ``b``
        All states.
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if method in ("auto", "chunked"):
        return linear_scan_chunked(a, b, h0, dim)
    if method == "parallel":
        return linear_scan_parallel(a, b, h0, dim)
    return linear_scan_ref(a, b, h0, dim)

