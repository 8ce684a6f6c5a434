"""Tests of the linear-recurrence scans in ``ssmts.ssm.scan``.

The sequential loop is the oracle; the parallel and chunked scans must match it
forward and backward, and a diagonal SSM run through the scan must match the
same SSM computed as a convolution with its kernel K_j = sum_n C_n Ā_n^j B̄_n.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmts.ssm.scan import (
    linear_scan,
    linear_scan_chunked,
    linear_scan_parallel,
    linear_scan_ref,
)

CDT = {torch.float64: torch.complex128, torch.float32: torch.complex64}


def _rand_a(shape, gen, is_complex, dtype=torch.float64):
    """Random coefficients with 0.3 <= |a| < 0.99 (stable), real or complex."""
    mag = 0.3 + 0.69 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if not is_complex:
        sign = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < 0.2, -1.0, 1.0)
        return (mag * sign).to(dtype)
    phase = 2 * torch.pi * torch.rand(shape, generator=gen, dtype=torch.float64)
    return torch.polar(mag, phase).to(CDT[dtype])


def _rand_b(shape, gen, is_complex, dtype=torch.float64):
    """Random inputs, real or complex (never zero)."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if is_complex:
        x = torch.complex(x, torch.randn(shape, generator=gen, dtype=torch.float64))
        return x.to(CDT[dtype])
    return x.to(dtype)


def _rel_err(x, ref):
    return float((x - ref).abs().max() / ref.abs().max())


A_SHAPES = {"full": lambda bt, L, P: (bt, L, P), "no_batch": lambda bt, L, P: (L, P),
            "batch1": lambda bt, L, P: (1, L, P), "const_time": lambda bt, L, P: (bt, 1, P)}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("length", [1, 7, 64, 100])
@pytest.mark.parametrize("a_kind", ["full", "no_batch", "batch1"])
def test_three_scans_agree(dtype, tol, is_complex, length, a_kind):
    gen = torch.Generator().manual_seed(1000 + length)
    batch, p = 3, 5
    a = _rand_a(A_SHAPES[a_kind](batch, length, p), gen, is_complex, dtype)
    b = _rand_b((batch, length, p), gen, is_complex, dtype)
    h0 = _rand_b((batch, p), gen, is_complex, dtype)
    # float64 oracle on the same (rounded) inputs
    ref = linear_scan_ref(a.to(CDT[torch.float64] if is_complex else torch.float64),
                          b.to(CDT[torch.float64] if is_complex else torch.float64),
                          h0.to(CDT[torch.float64] if is_complex else torch.float64))
    outs = {"ref": linear_scan_ref(a, b, h0), "parallel": linear_scan_parallel(a, b, h0),
            "chunked": linear_scan_chunked(a, b, h0), "chunked_3": linear_scan_chunked(a, b, h0, chunk=3),
            "auto": linear_scan(a, b, h0)}
    errs = {k: _rel_err(v.to(ref.dtype), ref) for k, v in outs.items()}
    print(f"L={length} {dtype} complex={is_complex} a={a_kind}: max rel err {errs}")
    for k, v in outs.items():
        assert v.shape == b.shape and v.dtype == b.dtype, k
        assert errs[k] < tol, k


def test_first_step_and_no_h0():
    """h_0 = a_0 h0 + b_0 literally, and h0=None means a zero initial state."""
    gen = torch.Generator().manual_seed(1)
    a, b = _rand_a((2, 9, 4), gen, True), _rand_b((2, 9, 4), gen, True)
    h0 = _rand_b((2, 4), gen, True)
    for fn in (linear_scan_ref, linear_scan_parallel, linear_scan_chunked):
        h = fn(a, b, h0)
        torch.testing.assert_close(h[:, 0], a[:, 0] * h0 + b[:, 0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h[:, 1], a[:, 1] * h[:, 0] + b[:, 1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fn(a, b), fn(a, b, torch.zeros_like(h0)), rtol=1e-12, atol=1e-12)


def test_constant_a_in_time_broadcast():
    """a of shape (batch, 1, P) is the same coefficient at every step."""
    gen = torch.Generator().manual_seed(2)
    a, b = _rand_a((2, 1, 3), gen, True), _rand_b((2, 20, 3), gen, True)
    ref = linear_scan_ref(a.expand(2, 20, 3).clone(), b)
    for fn in (linear_scan_ref, linear_scan_parallel, linear_scan_chunked):
        assert _rel_err(fn(a, b), ref) < 1e-12


@pytest.mark.parametrize("fn", [linear_scan_ref, linear_scan_parallel, linear_scan_chunked])
def test_time_dim_and_state_dims(fn):
    """Time may sit on any axis, and the state may have several axes."""
    gen = torch.Generator().manual_seed(3)
    a, b = _rand_a((2, 11, 3, 2), gen, True), _rand_b((2, 11, 3, 2), gen, True)
    h0 = _rand_b((2, 3, 2), gen, True)
    ref = linear_scan_ref(a, b, h0)  # time on dim 1
    for dim in (0, 2, 3, -1):
        a_m, b_m = a.movedim(1, dim), b.movedim(1, dim)
        out = fn(a_m, b_m, h0, dim=dim)
        assert out.shape == b_m.shape
        assert _rel_err(out.movedim(dim, 1), ref) < 1e-12, dim


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 40, 41, 100])
def test_chunk_sizes_including_padding(chunk):
    gen = torch.Generator().manual_seed(4)
    a, b = _rand_a((2, 41, 3), gen, True), _rand_b((2, 41, 3), gen, True)
    h0 = _rand_b((2, 3), gen, True)
    assert _rel_err(linear_scan_chunked(a, b, h0, chunk=chunk), linear_scan_ref(a, b, h0)) < 1e-12


def test_dtype_promotion_and_numpy_inputs():
    gen = torch.Generator().manual_seed(5)
    a = _rand_a((2, 6, 3), gen, False)
    b = _rand_b((2, 6, 3), gen, True)
    out = linear_scan_chunked(a, b)  # real a, complex b
    assert out.dtype == torch.complex128
    assert _rel_err(out, linear_scan_ref(a.to(torch.complex128), b)) < 1e-12
    out_np = linear_scan_chunked(a.numpy(), b.real.numpy())
    assert out_np.dtype == torch.float64
    assert _rel_err(out_np, linear_scan_ref(a, b.real)) < 1e-12
    assert linear_scan_chunked(a.float(), b.real.float()).dtype == torch.float32


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("fn", [linear_scan_chunked, linear_scan_parallel])
@pytest.mark.parametrize("a_kind", ["full", "no_batch", "const_time"])
def test_gradcheck(fn, is_complex, a_kind):
    gen = torch.Generator().manual_seed(6)
    batch, length, p = 2, 5, 2
    a = _rand_a(A_SHAPES[a_kind](batch, length, p), gen, is_complex).requires_grad_()
    b = _rand_b((batch, length, p), gen, is_complex).requires_grad_()
    h0 = _rand_b((batch, p), gen, is_complex).requires_grad_()
    kw = {"chunk": 2} if fn is linear_scan_chunked else {}  # 2 chunks of 2 and a tail of 1
    assert torch.autograd.gradcheck(lambda a_, b_, h_: fn(a_, b_, h_, **kw), (a, b, h0))
    assert torch.autograd.gradcheck(lambda a_, b_: fn(a_, b_, **kw), (a, b))


@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("with_h0", [False, True])
def test_chunked_backward_matches_autograd_through_ref(is_complex, chunk, with_h0):
    gen = torch.Generator().manual_seed(7)
    batch, length, p = 3, 50, 4
    a0 = _rand_a((1, length, p), gen, is_complex)  # broadcast over batch
    b0 = _rand_b((batch, length, p), gen, is_complex)
    h00 = _rand_b((batch, p), gen, is_complex) if with_h0 else None
    grad_out = _rand_b((batch, length, p), gen, is_complex)
    grads = []
    for fn in (linear_scan_ref, lambda *x: linear_scan_chunked(*x, chunk=chunk)):
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        h0 = None if h00 is None else h00.clone().requires_grad_()
        fn(a, b, h0).backward(grad_out)
        grads.append([t.grad for t in (a, b, h0) if t is not None])
    for name, g_ref, g in zip(("a", "b", "h0"), *grads):
        err = _rel_err(g, g_ref)
        print(f"d{name}: max rel err {err:.2e}")
        assert g.shape == g_ref.shape and err < 1e-10, name


def test_chunked_backward_only_needed_grads():
    """Only b requires grad: the backward must still be right (and skip the others)."""
    gen = torch.Generator().manual_seed(8)
    a, b = _rand_a((2, 9, 3), gen, True), _rand_b((2, 9, 3), gen, True)
    h0 = _rand_b((2, 3), gen, True)
    b1, b2 = b.clone().requires_grad_(), b.clone().requires_grad_()
    linear_scan_chunked(a, b1, h0, chunk=4).abs().sum().backward()
    linear_scan_ref(a, b2, h0).abs().sum().backward()
    assert _rel_err(b1.grad, b2.grad) < 1e-12


# ----------------------------------------------------------------------------- property
@pytest.mark.property
@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 80), chunk=st.integers(1, 90), is_complex=st.booleans(),
       use_h0=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_chunked_equals_ref_property(length, chunk, is_complex, use_h0, seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = _rand_a((2, length, 3), gen, is_complex), _rand_b((2, length, 3), gen, is_complex)
    h0 = _rand_b((2, 3), gen, is_complex) if use_h0 else None
    assert _rel_err(linear_scan_chunked(a, b, h0, chunk=chunk), linear_scan_ref(a, b, h0)) < 1e-10


# ----------------------------------------------------------------------------- three views
def test_diagonal_ssm_scan_equals_convolution():
    """x_k = Ā x_{k-1} + B̄ u_k, y_k = C x_k (scan) equals y = K * u with K_j = Σ C Āʲ B̄."""
    gen = torch.Generator().manual_seed(9)
    n, length, batch, dt = 6, 60, 2, 0.1
    lam = torch.complex(-0.1 - torch.rand(n, generator=gen, dtype=torch.float64),
                        4 * torch.randn(n, generator=gen, dtype=torch.float64))  # Re < 0: stable
    B = _rand_b((n,), gen, True)
    C = _rand_b((n,), gen, True)
    u = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    a_bar = torch.exp(dt * lam)  # ZOH
    b_bar = (a_bar - 1) / lam * B
    # convolution view, computed directly with numpy powers
    j = np.arange(length)
    kernel = (C.numpy()[None] * a_bar.numpy()[None] ** j[:, None] * b_bar.numpy()[None]).sum(-1)
    y_conv = np.stack([np.convolve(u[i].numpy(), kernel)[:length] for i in range(batch)])
    for method in ("sequential", "parallel", "chunked"):
        x = linear_scan(a_bar, b_bar * u[..., None], method=method)  # (batch, L, N)
        y = (x * C).sum(-1).numpy()
        err = np.abs(y - y_conv).max() / np.abs(y_conv).max()
        print(f"{method}: scan vs convolution max rel err {err:.2e}")
        assert err < 1e-10


# ----------------------------------------------------------------------------- bad inputs
ALL_FNS = [linear_scan_ref, linear_scan_parallel, linear_scan_chunked, linear_scan]


@pytest.mark.parametrize("fn", ALL_FNS)
def test_bad_inputs_raise_naming_the_argument(fn):
    gen = torch.Generator().manual_seed(10)
    a, b = _rand_a((2, 5, 3), gen, False), _rand_b((2, 5, 3), gen, False)
    h0 = _rand_b((2, 3), gen, False)
    with pytest.raises(ValueError, match="^a:"):
        fn(_rand_a((3, 5, 3), gen, False), b)
    with pytest.raises(ValueError, match="^a:"):
        fn(_rand_a((1, 2, 5, 3), gen, False), b)
    with pytest.raises(ValueError, match="^h0:"):
        fn(a, b, _rand_b((2, 5), gen, False))
    with pytest.raises(ValueError, match="^h0:"):
        fn(a, b, _rand_b((3,), gen, False))
    with pytest.raises(ValueError, match="^dim:"):
        fn(a, b, h0, dim=3)
    bad = b.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^b:.*non-finite"):
        fn(a, bad)
    bad = a.clone()
    bad[0, 4, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^a:.*non-finite"):
        fn(bad, b)
    bad = h0.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^h0:.*non-finite"):
        fn(a, b, bad)
    with pytest.raises(ValueError, match="^b:"):
        fn(a[:, :0], b[:, :0])


def test_bad_chunk_and_method():
    a, b = torch.full((2, 5, 3), 0.5, dtype=torch.float64), torch.ones(2, 5, 3, dtype=torch.float64)
    for chunk in (0, -2, 2.5):
        with pytest.raises(ValueError, match="^chunk:"):
            linear_scan_chunked(a, b, chunk=chunk)
    with pytest.raises(ValueError, match="^method:"):
        linear_scan(a, b, method="fft")


@pytest.mark.parametrize("where", ["a_first", "a_mid", "b_mid", "a_tail", "b_tail", "b_first"])
def test_chunked_finds_non_finite_anywhere(where):
    """The chunked path checks values on small intermediates; every position must still be caught."""
    gen = torch.Generator().manual_seed(11)
    length, chunk = 23, 5  # 4 chunks and a tail of 3
    a, b = _rand_a((2, length, 3), gen, True), _rand_b((2, length, 3), gen, True)
    name, t = where.split("_")
    pos = {"first": 0, "mid": 12, "tail": 21}[t]
    target = a if name == "a" else b
    target[1, pos, 2] = complex(float("inf"), 0.0) if name == "a" else complex(float("nan"), 1.0)
    with pytest.raises(ValueError, match=rf"^{name}:.*index \(1, {pos}, 2\)"):
        linear_scan_chunked(a, b, chunk=chunk)
    a[:, 7] = 0.0  # an exact zero in a later chunk must not hide it (0 * NaN = NaN)
    with pytest.raises(ValueError, match=rf"^{name}:"):
        linear_scan_chunked(a, b, chunk=chunk)


def test_chunked_overflow_is_not_an_input_error():
    """Finite inputs whose states overflow are not rejected (same result as the loop)."""
    a = torch.full((1, 400, 2), 10.0, dtype=torch.float64)
    b = torch.rand(1, 400, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64) + 0.5
    out, ref = linear_scan_chunked(a, b, chunk=20), linear_scan_ref(a, b)
    assert torch.isinf(ref[:, -1]).all() and torch.isinf(out[:, -1]).all()
    assert _rel_err(out[:, :300], ref[:, :300]) < 1e-12
