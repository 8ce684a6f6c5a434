"""Tests of the compiled CPU scan ``ssmts.kernels.cpu_scan`` against its oracle.

``linear_scan_cpu`` must equal ``linear_scan_ref`` (the Python loop) forward and backward
in float64 (1e-12) and float32 (1e-5), for real and complex inputs, broadcast ``a``, any
time axis, strided and lazily conjugated inputs, lane counts that cross the C code's
WMAX-lane blocks and thread splits, and lengths that cross its TB-step backward blocks;
its results must not depend on the thread count; and where it cannot be built,
``linear_scan`` must fall back to the chunked torch scan with one warning.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmts.kernels import cpu_scan
from ssmts.kernels.cpu_scan import linear_scan_cpu
from ssmts.ssm import scan as scan_mod
from ssmts.ssm.scan import linear_scan, linear_scan_chunked, linear_scan_ref

pytestmark = pytest.mark.skipif(not cpu_scan.available(), reason=cpu_scan.status())

CDT = {torch.float64: torch.complex128, torch.float32: torch.complex64}
_C_SRC = open(cpu_scan._SRC).read()  # the C file's lane block and backward time block
WMAX, TB = (int(re.search(rf"#define {k} (\d+)", _C_SRC).group(1)) for k in ("WMAX", "TB"))


def _rand_a(shape, gen, is_complex, dtype=torch.float64):
    """0.3 <= |a| < 0.99, random sign or phase."""
    mag = 0.3 + 0.69 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if not is_complex:
        sign = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < 0.3, -1.0, 1.0)
        return (mag * sign).to(dtype)
    return torch.polar(mag, 6.2832 * torch.rand(shape, generator=gen, dtype=torch.float64)
                       ).to(CDT[dtype])


def _rand_b(shape, gen, is_complex, dtype=torch.float64):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if is_complex:
        return torch.complex(x, torch.randn(shape, generator=gen, dtype=torch.float64)
                             ).to(CDT[dtype])
    return x.to(dtype)


def _rel(x, ref):
    """Max error relative to ref's largest entry (absolute where ref is all zero: da at L=1)."""
    scale = float(ref.abs().max())
    return float((x - ref).abs().max()) / (scale if scale > 0 else 1.0)


def _both(fn, a, b, h0, grad):
    """Output and gradients of a, b, h0 (None where not required)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (a, b, h0)]
    out = fn(*leaves)
    need = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, need, grad, materialize_grads=True)  # L=1: a unused
    return out.detach(), grads


A_SHAPES = {"full": lambda B, L, P: (B, L, P), "no_batch": lambda B, L, P: (L, P),
            "batch1": lambda B, L, P: (1, L, P), "const_time": lambda B, L, P: (B, 1, P)}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("length", [1, 7, TB, TB + 1, 100])
@pytest.mark.parametrize("a_kind", list(A_SHAPES))
@pytest.mark.parametrize("with_h0", [False, True])
def test_matches_loop_forward_and_backward(dtype, tol, is_complex, length, a_kind, with_h0):
    gen = torch.Generator().manual_seed(100 + length)
    batch, p = 3, 5
    a = _rand_a(A_SHAPES[a_kind](batch, length, p), gen, is_complex, dtype)
    b = _rand_b((batch, length, p), gen, is_complex, dtype)
    h0 = _rand_b((batch, p), gen, is_complex, dtype) if with_h0 else None
    grad = _rand_b((batch, length, p), gen, is_complex, dtype)
    wide = CDT[torch.float64] if is_complex else torch.float64  # float64 oracle
    ref, ref_g = _both(linear_scan_ref, a.to(wide), b.to(wide),
                       None if h0 is None else h0.to(wide), grad.to(wide))
    out, out_g = _both(linear_scan_cpu, a, b, h0, grad)
    assert out.dtype == b.dtype and out.shape == b.shape
    assert _rel(out.to(wide), ref) < tol
    for name, g, r in zip(("da", "db", "dh0"), out_g, ref_g):
        assert g.shape == r.shape, name
        assert _rel(g.to(wide), r) < tol, name


@pytest.mark.parametrize("is_complex", [False, True])
def test_gradcheck(is_complex):
    gen = torch.Generator().manual_seed(1)
    a = _rand_a((2, 6, 3), gen, is_complex).requires_grad_()
    b = _rand_b((2, 6, 3), gen, is_complex).requires_grad_()
    h0 = _rand_b((2, 3), gen, is_complex).requires_grad_()
    assert torch.autograd.gradcheck(linear_scan_cpu, (a, b, h0))
    a1 = _rand_a((1, 6, 3), gen, is_complex).requires_grad_()  # broadcast over the batch
    assert torch.autograd.gradcheck(lambda a, b: linear_scan_cpu(a, b), (a1, b))


def test_time_axis_and_state_dims():
    """Time on any axis; several state axes; the output keeps the input's layout."""
    gen = torch.Generator().manual_seed(2)
    a, b = _rand_a((2, 11, 3, 4), gen, True), _rand_b((2, 11, 3, 4), gen, True)
    h0 = _rand_b((2, 3, 4), gen, True)
    ref = linear_scan_ref(a, b, h0)
    for dim in (0, 2, 3, -1):
        a_m, b_m = a.movedim(1, dim), b.movedim(1, dim)
        out = linear_scan_cpu(a_m, b_m, h0, dim=dim)
        assert out.shape == b_m.shape
        assert _rel(out.movedim(dim, 1), ref) < 1e-12, dim
    a1, b1, h1 = _rand_a((50,), gen, False), _rand_b((50,), gen, False), torch.tensor(0.7)
    assert torch.autograd.gradcheck(lambda a, b, h: linear_scan_cpu(a, b, h, dim=0),
                                    (a1.requires_grad_(), b1.requires_grad_(),
                                     h1.double().requires_grad_()))  # one lane, no state dims


def test_strided_conjugated_and_unmergeable_layouts():
    """Inputs the lanes cannot describe as three dims run on copies; lazy conj views and
    zero-stride gradients are read as the values they stand for."""
    gen = torch.Generator().manual_seed(3)
    big = _rand_b((3, 9, 4, 5, 6), gen, True)
    b = big[:, :, ::2, 1:, ::2]  # 5 lane dims that do not merge: (3, 2, 4, 3) per step
    a = _rand_a(b.shape, gen, True).conj()  # a lazily conjugated view
    assert a.is_conj() and not b.is_contiguous()
    ref, ref_g = _both(linear_scan_ref, a.resolve_conj(), b, None, torch.ones_like(b))
    out, out_g = _both(linear_scan_cpu, a, b, None, torch.ones(()).expand(b.shape).to(b.dtype))
    assert _rel(out, ref) < 1e-12
    for g, r in zip(out_g, ref_g):
        assert _rel(g, r) < 1e-12
    s_ref = linear_scan_ref(a, b).abs().sum()  # .sum().backward() hands in a zero-stride dh
    a2, b2 = a.detach().resolve_conj().requires_grad_(), b.detach().requires_grad_()
    linear_scan_cpu(a2, b2).abs().sum().backward()
    a3, b3 = a.detach().resolve_conj().requires_grad_(), b.detach().requires_grad_()
    linear_scan_ref(a3, b3).abs().sum().backward()
    assert float(s_ref) > 0
    assert _rel(a2.grad, a3.grad) < 1e-12 and _rel(b2.grad, b3.grad) < 1e-12


@pytest.mark.parametrize("is_complex", [False, True])
def test_threads_and_lane_blocks_do_not_change_results(is_complex):
    """Bitwise equal on 1 and 2 threads, with rows wider than WMAX and splits mid-row."""
    gen = torch.Generator().manual_seed(4)
    shape = (3, 120, 2 * WMAX + 37)  # work above the serial threshold: threads are used
    a, b = _rand_a(shape, gen, is_complex, torch.float32), _rand_b(shape, gen, is_complex,
                                                                    torch.float32)
    grad, h0 = _rand_b(shape, gen, is_complex, torch.float32), _rand_b((3, shape[2]), gen,
                                                                        is_complex, torch.float32)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_both(linear_scan_cpu, a, b, h0, grad))
    finally:
        torch.set_num_threads(threads)
    for out, grads in results[1:]:
        assert torch.equal(out, results[0][0])
        assert all(torch.equal(g, r) for g, r in zip(grads, results[0][1]))
    wide = CDT[torch.float64] if is_complex else torch.float64
    ref = linear_scan_ref(a.to(wide), b.to(wide), h0.to(wide))
    assert _rel(results[0][0].to(wide), ref) < 1e-5


def test_only_needed_gradients():
    gen = torch.Generator().manual_seed(5)
    a, b = _rand_a((2, 9, 3), gen, True), _rand_b((2, 9, 3), gen, True).requires_grad_()
    h0 = _rand_b((2, 3), gen, True)
    linear_scan_cpu(a, b, h0).abs().sum().backward()
    b_ref = b.detach().clone().requires_grad_()
    linear_scan_ref(a, b_ref, h0).abs().sum().backward()
    assert a.grad is None and h0.grad is None
    assert _rel(b.grad, b_ref.grad) < 1e-12


@pytest.mark.parametrize("where", ["a_first", "a_mid", "b_mid", "b_last"])
def test_non_finite_inputs_raise_naming_them(where):
    gen = torch.Generator().manual_seed(6)
    a, b = _rand_a((2, 23, 3), gen, True), _rand_b((2, 23, 3), gen, True)
    name, t = where.split("_")
    pos = {"first": 0, "mid": 12, "last": 22}[t]
    (a if name == "a" else b)[1, pos, 2] = complex(float("nan"), 0.0)
    with pytest.raises(ValueError, match=rf"^{name}:.*index \(1, {pos}, 2\)"):
        linear_scan_cpu(a, b)
    h0 = _rand_b((2, 3), gen, True)
    h0[0, 1] = float("inf")
    with pytest.raises(ValueError, match="^h0:"):
        linear_scan_cpu(_rand_a((2, 5, 3), gen, True), _rand_b((2, 5, 3), gen, True), h0)


def test_overflow_is_not_an_input_error():
    a = torch.full((1, 400, 2), 10.0, dtype=torch.float64)
    b = torch.rand(1, 400, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64) + 0.5
    out, ref = linear_scan_cpu(a, b), linear_scan_ref(a, b)
    assert torch.isinf(out[:, -1]).all()
    assert _rel(out[:, :300], ref[:, :300]) < 1e-12


def test_bad_device_dtype_and_shapes():
    gen = torch.Generator().manual_seed(8)
    b = _rand_b((2, 5, 3), gen, False)
    with pytest.raises(ValueError, match="^b: dtype torch.float16"):
        linear_scan_cpu(_rand_a((2, 5, 3), gen, False).half(), b.half())
    with pytest.raises(ValueError, match="^a:"):
        linear_scan_cpu(_rand_a((3, 5, 3), gen, False), b)
    with pytest.raises(ValueError, match="^dim:"):
        linear_scan_cpu(_rand_a((2, 5, 3), gen, False), b, dim=3)


def test_linear_scan_auto_uses_it_and_falls_back_with_one_warning(monkeypatch):
    gen = torch.Generator().manual_seed(9)
    a, b = _rand_a((2, 17, 3), gen, True), _rand_b((2, 17, 3), gen, True)
    ref = linear_scan_ref(a, b)
    calls = []
    monkeypatch.setattr(cpu_scan, "linear_scan_cpu",
                        lambda *args: calls.append(1) or linear_scan_chunked(*args))
    linear_scan(a, b)
    assert calls == [1]  # auto took the compiled path on CPU tensors
    linear_scan(a.to(torch.complex64).numpy(), b.to(torch.complex64).numpy())
    assert calls == [1, 1]  # arrays too
    linear_scan(a.abs().half(), b.real.half())
    assert calls == [1, 1]  # float16: chunked
    monkeypatch.undo()
    monkeypatch.setitem(cpu_scan._state, "lib", None)
    monkeypatch.setitem(cpu_scan._state, "tried", True)
    monkeypatch.setitem(cpu_scan._state, "why", "could not build the compiled CPU scan: no cc")
    monkeypatch.setattr(scan_mod, "_warned", set())
    with pytest.warns(RuntimeWarning, match="no cc; linear_scan uses the chunked torch scan"):
        out = linear_scan(a, b)
    assert _rel(out, ref) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        linear_scan(a, b)
    with pytest.raises(RuntimeError, match="no cc; use ssmts.ssm.linear_scan_chunked"):
        linear_scan(a, b, method="compiled")


def test_build_in_a_fresh_cache_and_without_a_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMTS_CACHE_DIR", str(tmp_path))
    lib = cpu_scan._build()
    assert lib is not None and len(list(tmp_path.glob("cpu_scan-*.so"))) == 1
    assert cpu_scan._build() is not None  # found in the cache, no second file
    assert len(list(tmp_path.iterdir())) == 1
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(cpu_scan.sysconfig, "get_config_var", lambda name: None)
    with pytest.raises(RuntimeError, match="no C compiler found"):
        cpu_scan._build()


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 80), lanes=st.integers(1, 9), is_complex=st.booleans(),
       use_h0=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_equals_loop_property(length, lanes, is_complex, use_h0, seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = _rand_a((2, length, lanes), gen, is_complex), _rand_b((2, length, lanes), gen,
                                                                 is_complex)
    h0 = _rand_b((2, lanes), gen, is_complex) if use_h0 else None
    grad = _rand_b((2, length, lanes), gen, is_complex)
    ref, ref_g = _both(linear_scan_ref, a, b, h0, grad)
    out, out_g = _both(linear_scan_cpu, a, b, h0, grad)
    assert _rel(out, ref) < 1e-12
    for g, r in zip(out_g, ref_g):
        assert _rel(g, r) < 1e-12
