"""Tests for ssmts.ssm.conv: kernels against powers of Ā and the recurrence, FFT convolutions
against direct loops, and the three views (recurrent, convolutional) agreeing."""

from __future__ import annotations

import pytest
import torch

from ssmts.ssm.conv import (
    cauchy,
    fft_conv,
    fft_conv_bidirectional,
    kernel_dplr,
    kernel_from_powers,
    kernel_vandermonde,
)
from ssmts.ssm.discretize import discretize, discretize_bilinear, discretize_zoh

F64, C128 = torch.float64, torch.complex128


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _crandn(*shape, gen, scale=1.0) -> torch.Tensor:
    re = torch.randn(*shape, dtype=F64, generator=gen)
    im = torch.randn(*shape, dtype=F64, generator=gen)
    return scale * torch.complex(re, im)


def _diag_system(H: int, N: int, seed: int, M: int | None = None):
    """Random stable diagonal SSMs: Lambda (H, N) with Re < 0, B, C complex, dt (H,)."""
    g = _gen(seed)
    re = -torch.rand(H, N, dtype=F64, generator=g) - 0.1
    lam = torch.complex(re, 3 * torch.randn(H, N, dtype=F64, generator=g))
    B = _crandn(H, N, gen=g)
    C = _crandn(*((M,) if M else ()), H, N, gen=g)
    dt = 0.02 + 0.1 * torch.rand(H, dtype=F64, generator=g)
    return lam, B, C, dt


def _conj_full(t: torch.Tensor) -> torch.Tensor:
    """Append the conjugate states: (..., N) -> (..., 2N)."""
    return torch.cat([t, t.conj()], dim=-1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _recurrence(Ab, Bb, C, u):
    """x_k = Ab x_{k-1} + Bb u_k, y_k = C x_k for H diagonal channels.

    Ab, Bb, C (H, N), u (..., H, L) -> y (..., H, L), complex.
    """
    x = torch.zeros(*u.shape[:-1], Ab.shape[-1], dtype=Ab.dtype)  # (..., H, N)
    ys = []
    for k in range(u.shape[-1]):
        x = Ab * x + Bb * u[..., k, None]
        ys.append((C * x).sum(-1))
    return torch.stack(ys, dim=-1)  # (..., H, L)


# ----------------------------------------------------------------------------- kernel_from_powers
def test_kernel_from_powers_matches_matrix_power_and_shapes():
    g = _gen(0)
    Ab = 0.4 * _crandn(4, 4, gen=g)
    Bb, C = _crandn(4, 3, gen=g), _crandn(2, 4, gen=g)
    K = kernel_from_powers(Ab, Bb, C, 7)
    assert K.shape == (2, 3, 7) and K.dtype == C128
    for j in range(7):
        ref = C @ torch.linalg.matrix_power(Ab, j) @ Bb
        torch.testing.assert_close(K[..., j], ref, rtol=1e-12, atol=1e-14)
    assert kernel_from_powers(Ab, Bb[:, 0], C[0], 7).shape == (7,)
    K11 = kernel_from_powers(Ab, Bb[:, 1], C[1], 7)
    torch.testing.assert_close(K11, K[1, 1], rtol=1e-14, atol=1e-14)
    # a 1-D Ab is a diagonal
    K_diag = kernel_from_powers(Ab.diagonal(), Bb, C, 7)
    K_dense = kernel_from_powers(torch.diag(Ab.diagonal()), Bb, C, 7)
    torch.testing.assert_close(K_diag, K_dense, rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------- kernel_vandermonde
@pytest.mark.parametrize("method", ["zoh", "bilinear"])
@pytest.mark.parametrize("conj_sym", [False, True])
def test_vandermonde_equals_powers_and_impulse(method, conj_sym):
    H, N, L = 3, 4, 40
    lam, B, C, dt = _diag_system(H, N, seed=1)
    K = kernel_vandermonde(lam, B, C, dt, L, method=method, conj_sym=conj_sym)
    assert K.shape == (H, L) and K.dtype == F64
    expand = _conj_full if conj_sym else (lambda t: t)
    for h in range(H):
        Ab, Bb = discretize(torch.diag(expand(lam[h])), expand(B[h]), dt[h], method=method)  # dense
        ref = kernel_from_powers(Ab, Bb, expand(C[h]), L)
        if conj_sym:  # the 2N-state system is real: its kernel has no imaginary part
            assert ref.imag.abs().max() < 1e-12 * ref.real.abs().max()
        print(f"{method} conj_sym={conj_sym} h={h}: rel err {_rel(K[h], ref.real):.2e}")
        assert _rel(K[h], ref.real) < 1e-10
    # the recurrence driven by a unit impulse prints the kernel
    impulse = torch.zeros(H, L, dtype=F64)
    impulse[:, 0] = 1.0
    Abs, Bbs = zip(*(discretize(lam[h], B[h], dt[h], method=method) for h in range(H)))
    y = _recurrence(torch.stack(Abs), torch.stack(Bbs), C, impulse)
    y = 2 * y.real if conj_sym else y.real
    assert _rel(K, y) < 1e-10


def test_vandermonde_float32():
    H, N, L = 2, 4, 32
    lam, B, C, dt = _diag_system(H, N, seed=2)
    K64 = kernel_vandermonde(lam, B, C, dt, L)
    c64 = torch.complex64
    K32 = kernel_vandermonde(lam.to(c64), B.to(c64), C.to(c64), dt.float(), L)
    assert K32.dtype == torch.float32
    print("float32 rel err", _rel(K32.double(), K64))
    assert _rel(K32.double(), K64) < 1e-5


def test_vandermonde_output_channels_and_per_state_dt():
    H, N, M, L = 2, 3, 2, 10
    lam, B, C, _ = _diag_system(H, N, seed=3, M=M)
    dt = 0.05 + 0.1 * torch.rand(H, N, dtype=F64, generator=_gen(4))  # per channel and state
    K = kernel_vandermonde(lam, B, C, dt, L)
    assert K.shape == (M, H, L)
    for m in range(M):
        for h in range(H):
            Ab, Bb = discretize_zoh(lam[h], B[h], dt[h])
            ref = 2 * kernel_from_powers(Ab, Bb, C[m, h], L).real
            assert _rel(K[m, h], ref) < 1e-10


# ----------------------------------------------------------------------------- kernel_dplr
def _dplr_system(H: int, N: int, r: int, seed: int):
    """Random DPLR with Re(Λ) < 0 and P, Q small enough that diag(Λ) − P Qᴴ stays stable."""
    g = _gen(seed)
    re = -0.5 - torch.rand(H, N, dtype=F64, generator=g)
    lam = torch.complex(re, 4 * torch.randn(H, N, dtype=F64, generator=g))
    P, Q = _crandn(H, r, N, gen=g, scale=0.25), _crandn(H, r, N, gen=g, scale=0.25)
    B, C = _crandn(H, N, gen=g), _crandn(H, N, gen=g)
    dt = 0.05 + 0.1 * torch.rand(H, dtype=F64, generator=g)
    return lam, P, Q, B, C, dt


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("conj_sym", [False, True])
@pytest.mark.parametrize("L", [16, 15])
def test_dplr_equals_dense_powers(r, conj_sym, L):
    H, N = 2, 4
    lam, P, Q, B, C, dt = _dplr_system(H, N, r, seed=10 * r + L)
    K = kernel_dplr(lam, P, Q, B, C, dt, L, conj_sym=conj_sym)
    assert K.shape == (H, L) and K.dtype == F64
    expand = _conj_full if conj_sym else (lambda t: t)
    for h in range(H):
        A = torch.diag(expand(lam[h])) - expand(P[h]).T @ expand(Q[h]).conj()  # (N', N')
        assert torch.linalg.eigvals(A).real.max() < 0  # stable
        Ab, Bb = discretize_bilinear(A, expand(B[h]), dt[h])
        ref = kernel_from_powers(Ab, Bb, expand(C[h]), L)
        if conj_sym:
            assert ref.imag.abs().max() < 1e-12 * ref.real.abs().max()
        err = _rel(K[h], ref.real)
        print(f"dplr r={r} conj_sym={conj_sym} L={L} h={h}: rel err {err:.2e}")
        assert err < 1e-10


def test_dplr_shared_low_rank_and_scalar_dt():
    H, N, L = 2, 3, 12
    lam, P, Q, B, C, _ = _dplr_system(H, N, 1, seed=5)
    K = kernel_dplr(lam, P[0], Q[0], B, C, 0.1, L)  # P, Q (r, N) shared by the channels
    P_rep, Q_rep = P[:1].expand(H, -1, -1), Q[:1].expand(H, -1, -1)  # (H, 1, N)
    K_rep = kernel_dplr(lam, P_rep, Q_rep, B, C, torch.full((H,), 0.1, dtype=F64), L)
    torch.testing.assert_close(K, K_rep, rtol=1e-13, atol=1e-14)


def test_gradcheck_dplr():
    lam, P, Q, B, C, dt = _dplr_system(1, 2, 1, seed=6)
    inputs = tuple(t.clone().requires_grad_() for t in (lam, P, dt))
    def fn(lam_, P_, dt_):
        return kernel_dplr(lam_, P_, Q, B, C, dt_, 5, conj_sym=True)

    assert torch.autograd.gradcheck(fn, inputs)


def test_cauchy_matches_loop():
    g = _gen(7)
    v, w, z = _crandn(2, 5, gen=g), _crandn(2, 5, gen=g), _crandn(6, gen=g)
    k = cauchy(v, z, w)
    assert k.shape == (2, 6)
    for b in range(2):
        for l in range(6):
            ref = sum(v[b, n] / (z[l] - w[b, n]) for n in range(5))
            torch.testing.assert_close(k[b, l], ref, rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------- FFT convolutions
def _direct_causal(u, K, D=None):
    L = u.shape[-1]
    y = torch.zeros_like(u)
    for t in range(L):
        for j in range(min(t + 1, K.shape[-1])):
            y[..., t] += K[..., j] * u[..., t - j]
    return y if D is None else y + D[:, None] * u


@pytest.mark.parametrize("Lk", [9, 5, 14])  # equal to, shorter and longer than L
def test_fft_conv_matches_direct(Lk):
    g = _gen(8)
    u = torch.randn(3, 2, 9, dtype=F64, generator=g)  # (batch, H, L)
    K, D = torch.randn(2, Lk, dtype=F64, generator=g), torch.randn(2, dtype=F64, generator=g)
    y = fft_conv(u, K, D)
    assert y.shape == u.shape and y.dtype == F64
    torch.testing.assert_close(y, _direct_causal(u, K, D), rtol=1e-12, atol=1e-13)
    uc, Kc = _crandn(3, 2, 9, gen=g), _crandn(2, Lk, gen=g)  # complex path
    torch.testing.assert_close(fft_conv(uc, Kc), _direct_causal(uc, Kc), rtol=1e-12, atol=1e-13)


def test_fft_conv_is_causal():
    g = _gen(9)
    u = torch.randn(2, 20, dtype=F64, generator=g)
    K = torch.randn(2, 20, dtype=F64, generator=g)
    y = fft_conv(u, K)
    for t in (0, 7, 18):
        u2 = u.clone()
        u2[:, t + 1 :] = torch.randn(2, 19 - t, dtype=F64, generator=g)
        y2 = fft_conv(u2, K)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-12, atol=1e-12)
        assert (y2[:, t + 1 :] - y[:, t + 1 :]).abs().max() > 1e-3


def test_fft_conv_bidirectional_matches_double_loop():
    g = _gen(10)
    H, L = 2, 11
    u = torch.randn(2, H, L, dtype=F64, generator=g)
    Kf = torch.randn(H, L, dtype=F64, generator=g)
    Kb = torch.randn(H, 6, dtype=F64, generator=g)  # shorter than L: zero-padded
    D = torch.randn(H, dtype=F64, generator=g)
    y = fft_conv_bidirectional(u, Kf, Kb, D)
    ref = D[:, None] * u
    Kb_pad = torch.cat([Kb, torch.zeros(H, L - 6, dtype=F64)], dim=-1)
    for t in range(L):
        for j in range(t + 1):
            ref[..., t] += Kf[:, j] * u[..., t - j]
        for j in range(L - t):
            ref[..., t] += Kb_pad[:, j] * u[..., t + j]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- three views
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-5)])
def test_recurrent_and_convolutional_views_agree(dtype, tol):
    H, N, L = 3, 4, 64
    lam, B, C, dt = _diag_system(H, N, seed=11)
    u = torch.randn(2, H, L, dtype=F64, generator=_gen(12))
    D = torch.randn(H, dtype=F64, generator=_gen(13))
    cdt = torch.complex64 if dtype == torch.float32 else C128
    lam_, B_, C_ = lam.to(cdt), B.to(cdt), C.to(cdt)
    dt_, u_, D_ = dt.to(dtype), u.to(dtype), D.to(dtype)
    # recurrent view: per-channel ZOH, plain loop, y = 2 Re(C x) + D u
    Abs, Bbs = zip(*(discretize_zoh(lam_[h], B_[h], dt_[h]) for h in range(H)))
    y_rec = 2 * _recurrence(torch.stack(Abs), torch.stack(Bbs), C_, u_).real + D_[:, None] * u_
    # convolutional view: Vandermonde kernel + FFT
    y_conv = fft_conv(u_, kernel_vandermonde(lam_, B_, C_, dt_, L), D_)
    assert y_conv.dtype == dtype
    err = _rel(y_conv.double(), y_rec.double())
    print(f"{dtype}: recurrent vs convolutional rel err {err:.2e}")
    assert err < tol
    if dtype == torch.float32:  # both float32 views are also close to the float64 truth
        y64 = fft_conv(u, kernel_vandermonde(lam, B, C, dt, L), D)
        assert _rel(y_conv.double(), y64) < tol and _rel(y_rec.double(), y64) < tol


# ------------------------------------------------------------------------ validation, gradients
def test_bad_inputs_raise():
    lam, B, C, dt = _diag_system(2, 3, seed=14)
    with pytest.raises(ValueError, match="dt"):
        kernel_vandermonde(lam, B, C, torch.tensor([0.1, 0.0], dtype=F64), 8)
    with pytest.raises(ValueError, match="dt"):
        kernel_vandermonde(lam, B, C, float("nan"), 8)
    with pytest.raises(ValueError, match="dt"):
        kernel_vandermonde(lam, B, C, torch.full((3,), 0.1, dtype=F64), 8)
    with pytest.raises(ValueError, match="B"):
        kernel_vandermonde(lam, B[:, :2], C, dt, 8)
    with pytest.raises(ValueError, match="C"):
        kernel_vandermonde(lam, B, C[:1], dt, 8)
    with pytest.raises(ValueError, match="L"):
        kernel_vandermonde(lam, B, C, dt, 0)
    with pytest.raises(ValueError, match="method"):
        kernel_vandermonde(lam, B, C, dt, 8, method="euler")
    P = _crandn(2, 1, 3, gen=_gen(15))
    with pytest.raises(ValueError, match="P"):
        kernel_dplr(lam, P[..., :2], P, B, C, dt, 8)
    with pytest.raises(ValueError, match="dt"):
        kernel_dplr(lam, P, P, B, C, -dt, 8)
    with pytest.raises(ValueError, match="Ab"):
        ones = torch.ones(3, dtype=F64)
        kernel_from_powers(torch.ones(3, 2, dtype=F64), ones, ones, 4)
    with pytest.raises(ValueError, match="K"):
        fft_conv(torch.ones(2, 3, 8, dtype=F64), torch.ones(4, 8, dtype=F64))
    with pytest.raises(ValueError, match="u"):
        fft_conv(torch.tensor([1.0, float("inf")]), torch.ones(2))


def test_gradcheck_vandermonde():
    lam, B, C, dt = _diag_system(2, 2, seed=16)
    for method in ("zoh", "bilinear"):
        inputs = (lam.clone().requires_grad_(), dt.clone().requires_grad_())
        def fn(lam_, dt_):
            return kernel_vandermonde(lam_, B, C, dt_, 6, method=method)

        assert torch.autograd.gradcheck(fn, inputs)
