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
  steps, and all chunks advance together through ``T`` vectorised steps twice:
  first from a zero state (giving each chunk's end state and product of ``a``),
  then, once the carries have crossed the ``L / T`` chunks one step per chunk,
  from each chunk's true entry state straight into the output. Its backward is
  the same scheme run backwards in time on the adjoint recurrence, so neither
  direction builds per-step autograd nodes: about ``3 sqrt(L)`` vectorised
  steps each way instead of ``L``. Nothing is ever divided by a cumulative
  product (they underflow). NaN/inf in ``a``/``b`` is detected on the final
  state (non-finite values always propagate there) and then located in the
  inputs, so the common case costs no extra pass over the data.

``linear_scan`` dispatches between them and the compiled CPU loop
(``ssmts.kernels.cpu_scan.linear_scan_cpu``: one pass through time per lane, forward
and adjoint; the default for CPU tensors where a C compiler is found). All public
functions validate their inputs once; the private helpers work on a time-first layout
and trust them.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.autograd.function import once_differentiable

from ._validate import as_tensor, check_finite

__all__ = ["linear_scan", "linear_scan_ref", "linear_scan_parallel", "linear_scan_chunked"]

_METHODS = ("auto", "compiled", "chunked", "parallel", "sequential")
_warned: set[str] = set()


# ----------------------------------------------------------------------------- validation
def _sum_finite(x: torch.Tensor) -> bool:
    """One reduction: False if x holds NaN/inf (or its sum overflows)."""
    return bool(torch.isfinite(_real_view(x).sum()))


def _check_finite_fast(x: torch.Tensor, name: str) -> None:
    """One reduction decides the common case; the element-wise check runs only if it fails."""
    if x.numel() and not _sum_finite(x):
        check_finite(x, name)  # raises unless the sum merely overflowed


def _name_non_finite(a, b) -> None:
    """After a scan whose last state was not finite: raise naming ``a`` or ``b`` if either
    holds NaN/inf; otherwise the states merely overflowed, which is not an input error."""
    for name, t in (("a", a), ("b", b)):
        check_finite(as_tensor(t, name).detach(), name)


def _real_view(x: torch.Tensor) -> torch.Tensor:
    """x as real numbers (complex: a (..., 2) view): real reductions are the cheaper ones."""
    return torch.view_as_real(x) if x.is_complex() and not x.is_conj() else x


def _result_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    """Promoted dtype of the inputs; integer/bool inputs compute in the default float dtype."""
    dtype = None
    for t in ts:
        if t is not None:
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    if not (dtype.is_floating_point or dtype.is_complex):
        dtype = torch.get_default_dtype()
    return dtype


def _check_args(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, dim) -> int:
    """Raise ``ValueError`` naming a, b, h0 or dim on a shape/device problem; return dim >= 0."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"dim: expected an int (the time axis of b), got {type(dim).__name__}")
    if b.ndim < 1:
        raise ValueError("b: expected at least 1 dimension (time), got a scalar; pass shape (batch, L, ...)")
    if not -b.ndim <= dim < b.ndim:
        raise ValueError(f"dim: {dim} is out of range for b with shape {tuple(b.shape)}")
    dim %= b.ndim
    if b.shape[dim] == 0:
        raise ValueError(f"b: the time axis (dim={dim}) has length 0; pass at least one step")
    try:
        ok = a.shape == b.shape or (  # equal shapes: skip broadcast_shapes (~30 us in Python)
            a.ndim <= b.ndim and torch.broadcast_shapes(a.shape, b.shape) == b.shape)
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
    return dim


def _prepare(a, b, h0, dim, check_values: bool = True):
    """Validate and move to the time-first layout used by the private helpers.

    Returns ``a`` of shape (L, *rest_a) (time expanded to L, other dims
    broadcastable to rest), ``b`` of shape (L, *rest), ``h0`` of shape (*rest)
    or None, all of one dtype, and the normalised ``dim``. With
    ``check_values=False`` only ``h0`` is checked for NaN/inf here (the chunked
    scan checks ``a`` and ``b`` on its small intermediates instead).
    """
    a, b = as_tensor(a, "a"), as_tensor(b, "b")
    h0 = None if h0 is None else as_tensor(h0, "h0")
    dim = _check_args(a, b, h0, dim)
    for name, t in (("a", a), ("b", b), ("h0", h0)) if check_values else (("h0", h0),):
        if t is not None:
            _check_finite_fast(t.detach(), name)
    dtype = _result_dtype(a, b, h0)
    a, b = a.to(dtype), b.to(dtype)
    h0 = None if h0 is None else h0.to(dtype)
    a = a.reshape((1,) * (b.ndim - a.ndim) + a.shape)  # same ndim as b
    a, b = a.movedim(dim, 0), b.movedim(dim, 0)  # (La, *rest_a), (L, *rest)
    a = a.expand((b.shape[0],) + a.shape[1:])  # (L, *rest_a), a view
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
_SLICE = 1 << 16  # elements per vectorised step that keep intra-op threads busy
_SEQ_CARRIES = 32  # carry scans up to this long run step by step, longer ones recurse


def _default_chunk(length: int, lanes: int = 1) -> int:
    """Steps per chunk for ``lanes`` independent recurrences of ``length`` steps.

    About sqrt(L) balances steps within chunks against chunks. With several
    intra-op threads, shorter chunks (at least 4 steps) are used where they
    give every step at least ``_SLICE`` elements, enough to split across
    threads; the longer carry scan that results is itself chunked.
    """
    chunk = max(1, round(math.sqrt(length)))
    threaded = (length * lanes) // _SLICE  # the chunk that gives each step _SLICE elements
    if torch.get_num_threads() > 1 and 4 <= threaded < chunk:
        chunk = threaded
    return min(chunk, length)


def _carry_scan(coef, inp, init, out):
    """``out[0] = init`` (zero if None), ``out[k+1] = coef[k] * out[k] + inp[k]``.

    coef (n, *ra), inp (n, *r), init (*r) or None, out (n+1, *r). Short scans
    loop; long ones are themselves chunked (the carries of a chunked scan).
    """
    if init is None:
        out[0].zero_()
    else:
        out[0].copy_(init)
    n = inp.shape[0]
    if n <= _SEQ_CARRIES:
        o_s = out.unbind(0)
        for k, (c_k, x_k) in enumerate(zip(coef.unbind(0), inp.unbind(0))):
            torch.addcmul(x_k, c_k, o_s[k], out=o_s[k + 1])
    else:
        _chunked_forward(coef, inp, init, _default_chunk(n, inp[0].numel()), out[1:])


def _sweep(coef, inp, state, outs=None):
    """Run ``state = inp[i] + coef[i] * state`` over lists of equal-shape slices.

    Writes each state into ``outs[i]`` when given, else ping-pongs between two
    scratch buffers (no allocation per step). Returns the final state.
    """
    if outs is None:  # the first step reads the caller's state, so it is never written
        bufs = (torch.empty_like(state), torch.empty_like(state))
        outs = [bufs[i % 2] for i in range(len(inp))]
        if not len(inp):
            return state
    for i, (c, x) in enumerate(zip(coef, inp)):
        state = torch.addcmul(x, c, state, out=outs[i])
    return state


def _chunk_views(x, nc: int, chunk: int):
    """(L, *s) -> T slices of shape (nc, *s) over the first nc*T steps (views, never copies)."""
    return x[: nc * chunk].view((nc, chunk) + x.shape[1:]).unbind(1)  # T x (nc, *s)


def _chunked_forward(a, b, h0, chunk: int, out: torch.Tensor):
    """Fill ``out`` (L, *rest) with all states; trusts its inputs (see ``_prepare``).

    Time is split into ``nc`` chunks of ``T`` steps plus a tail of ``L mod T``.
    Sweep 1 finds every chunk's end state from a zero start; the carries cross
    the chunks one step per chunk (scaled by the chunk's product of ``a``);
    sweep 2 recomputes every chunk from its true entry state straight into
    ``out``; the tail runs step by step. Returns (products of a per chunk
    (nc, *ra), the last state (*rest)).
    """
    length, rest = b.shape[0], b.shape[1:]
    chunk = min(chunk, length)
    nc, main = length // chunk, (length // chunk) * chunk
    a_s, b_s, w_s = (_chunk_views(x, nc, chunk) for x in (a, b, out))
    # sweep 1: chunk end states from zero; products of a over each chunk
    end = _sweep(a_s[1:], b_s[1:], b_s[0])
    total = a[:main].reshape((nc, chunk) + a.shape[1:]).prod(1)  # (nc, *ra)
    # carries: entry[k] is the state entering chunk k, entry[nc] the one leaving the last
    entry = torch.empty((nc + 1,) + rest, dtype=b.dtype, device=b.device)  # (nc+1, *rest)
    _carry_scan(total, end, h0, entry)
    # sweep 2: every chunk again from its entry state, into out
    torch.addcmul(b_s[0], a_s[0], entry[:nc], out=w_s[0])
    _sweep(a_s[1:], b_s[1:], w_s[0], outs=w_s[1:])
    # tail, step by step from the state leaving the last chunk
    last = _sweep(a[main:].unbind(0), b[main:].unbind(0), entry[nc], outs=out[main:].unbind(0))
    return total, last


def _chunked_adjoint(ac, total_c, dh, chunk: int, g: torch.Tensor) -> torch.Tensor:
    """Adjoint ``g_t = dh_t + conj(a_{t+1}) g_{t+1}`` (``g_{L-1} = dh_{L-1}``) into ``g``.

    ac = conj(a) : (L, *ra); total_c : (nc, *ra), conj of the forward's chunk
    products; dh : (L, *rest). The forward's chunked scheme run from the end.
    Returns ``conj(a_0) g_0``, the gradient of h0, shape (*rest).
    """
    length, rest = dh.shape[0], dh.shape[1:]
    chunk = min(chunk, length)
    nc, main = length // chunk, (length // chunk) * chunk
    # tail first (it is last in time), step by step
    g[length - 1].copy_(dh[length - 1])
    idx = list(range(length - 2, main - 1, -1))
    _sweep([ac[t + 1] for t in idx], [dh[t] for t in idx], g[length - 1], outs=[g[t] for t in idx])
    a_s, d_s, g_s = (_chunk_views(x, nc, chunk) for x in (ac, dh, g))
    rev = list(range(chunk - 2, -1, -1))
    coef, inp = [a_s[j + 1] for j in rev], [d_s[j] for j in rev]
    # sweep 1: g at each chunk's first step from a zero start beyond its last step
    g_first = _sweep(coef, inp, d_s[chunk - 1])
    x = a_s[0] * g_first  # (nc, *rest): conj(a_{k,0}) g_{k,0} before the carry
    # carries: carry[k+1] = conj(a_{k+1,0}) g_{k+1,0} is added to chunk k's last step;
    # carry[nc] comes from the tail and carry[0] = conj(a_0) g_0 is the gradient of h0
    # (run forward in time on flipped copies: flipped[j] = carry[nc - j])
    init = torch.mul(ac[main], g[main]) if main < length else None
    flipped = torch.empty((nc + 1,) + rest, dtype=g.dtype, device=g.device)  # (nc+1, *rest)
    _carry_scan(total_c.flip(0), x.flip(0), init, flipped)
    carry = flipped.flip(0)  # (nc+1, *rest)
    # sweep 2: every chunk again from its carry, into g
    torch.add(d_s[chunk - 1], carry[1:], out=g_s[chunk - 1])
    _sweep(coef, inp, g_s[chunk - 1], outs=[g_s[j] for j in rev])
    return carry[0]


class _ChunkedScanFn(torch.autograd.Function):
    """Chunked scan with the adjoint recurrence as analytic backward (time-first inputs).

    Returns the states and a non-differentiable 0-d bool: False if a non-finite
    value appeared (the caller then locates it in the inputs).
    """

    @staticmethod
    def forward(ctx, a, b, h0, chunk):
        h = torch.empty_like(b)  # b's memory layout, so moving time back is free
        total, last = _chunked_forward(a, b, h0, chunk, h)
        # NaN/inf anywhere in a or b reaches the last state through the carries (0 * inf = NaN);
        # one sum decides the common case (an overflowing sum only costs the caller a re-check)
        ok = _sum_finite(last)
        ctx.save_for_backward(a, h0, h, total)
        ctx.chunk = chunk
        flag = torch.tensor(ok)
        ctx.mark_non_differentiable(flag)
        return h, flag

    @staticmethod
    @once_differentiable
    def backward(ctx, dh, _):
        # g_t = dh_t + conj(a_{t+1}) g_{t+1}; db = g; da_t = g_t conj(h_{t-1}); dh0 = conj(a_0) g_0
        # (PyTorch's conjugate-Wirtinger convention for complex inputs; conj is a no-op for real).
        a, h0, h, total = ctx.saved_tensors
        need_a, _, need_h0 = ctx.needs_input_grad[:3]
        g = torch.empty_like(h)
        # one full-size scratch buffer: conj(a) during the adjoint, then da (fresh pages are slow)
        buf = torch.empty_like(h) if a.shape == h.shape and (need_a or a.is_complex()) else None
        ac = torch.conj_physical(a, out=buf) if a.is_complex() else a
        dh0 = _chunked_adjoint(ac, total.conj_physical(), dh, ctx.chunk, g)
        da = None
        if need_a:  # da_t = g_t conj(h_{t-1})
            da = buf if buf is not None else torch.empty_like(h)
            torch.conj_physical(h[:-1], out=da[1:]).mul_(g[1:])
            if h0 is None:
                da[0].zero_()
            else:
                torch.mul(g[0], h0.conj_physical(), out=da[0])
            da = da.sum_to_size(a.shape)  # sum over dims a was broadcast along
        return da, g, (dh0 if need_h0 and h0 is not None else None), None


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
    a_in, b_in = a, b
    a, b, h0, dim = _prepare(a, b, h0, dim, check_values=False)
    if chunk is None:
        chunk = _default_chunk(b.shape[0], b[0].numel())
    h, ok = _ChunkedScanFn.apply(a, b, h0, chunk)
    if not bool(ok):  # a NaN/inf went in, or the states overflowed: name the culprit
        _name_non_finite(a_in, b_in)
    return h.movedim(0, dim)


def _compiled_applies(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> bool:
    """True for CPU tensors whose promoted dtype the compiled scan takes."""
    if any(t.device.type != "cpu" for t in (a, b, h0) if t is not None):
        return False
    from ssmts.kernels.cpu_scan import SUPPORTED_DTYPES

    return _result_dtype(a, b, h0) in SUPPORTED_DTYPES


def _compiled_or_warn() -> bool:
    """Whether the compiled CPU scan is usable; warns once per process when it failed to build."""
    from ssmts.kernels import cpu_scan

    if cpu_scan.available():
        return True
    why = cpu_scan.status()
    if why.startswith("could not build") and "cpu_scan" not in _warned:
        _warned.add("cpu_scan")
        warnings.warn(f"ssmts: {why}; linear_scan uses the chunked torch scan on the CPU "
                      "(2-3x slower at B=4, L=4096, P=64). SSMTS_CPU_SCAN=0 silences this.",
                      RuntimeWarning, stacklevel=3)
    return False


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
    method : {"auto", "compiled", "chunked", "parallel", "sequential"}
        ``auto`` is ``compiled`` for float32/64 and complex64/128 CPU tensors when the
        compiled scan (:mod:`ssmts.kernels.cpu_scan`) could be built here, else
        ``chunked`` (one warning if the build failed); ``compiled`` insists on it;
        ``sequential`` is ``linear_scan_ref``.

    Returns
    -------
    h : tensor, shape of ``b``
        All states.
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if method == "auto":  # arrays and scalars become tensors once, here
        a, b = as_tensor(a, "a"), as_tensor(b, "b")
        h0 = None if h0 is None else as_tensor(h0, "h0")
    if method == "compiled" or (method == "auto" and _compiled_applies(a, b, h0)
                                and _compiled_or_warn()):
        from ssmts.kernels.cpu_scan import linear_scan_cpu

        return linear_scan_cpu(a, b, h0, dim)
    if method in ("auto", "chunked"):
        return linear_scan_chunked(a, b, h0, dim)
    if method == "parallel":
        return linear_scan_parallel(a, b, h0, dim)
    return linear_scan_ref(a, b, h0, dim)
