"""Tests for ssmts.ssm.discretize: scipy refs, per-step dt, tiny ΔΛ, validation, gradients."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from ssmts.ssm.discretize import discretize, discretize_bilinear, discretize_euler, discretize_zoh

F64, C128 = torch.float64, torch.complex128

# our method name -> (scipy cont2discrete method, alpha)
SCIPY_METHODS = {
    "zoh": ("zoh", None),
    "bilinear": ("bilinear", None),
    "euler": ("euler", None),
    "backward_euler": ("backward_diff", None),
    "gbt": ("gbt", 0.3),
}


def _stable_dense(n: int, h: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random real A (n, n) with every eigenvalue's real part <= -0.3, and B (n, h)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    shift = np.linalg.eigvals(M).real.max() + 0.3
    return M - shift * np.eye(n), rng.standard_normal((n, h))


def _stable_diag(n: int, seed: int) -> np.ndarray:
    """Random complex diagonal with negative real parts."""
    rng = np.random.default_rng(seed)
    return -rng.uniform(0.1, 1.5, n) + 1j * rng.uniform(-4, 4, n)


def _scipy(A: np.ndarray, B: np.ndarray, dt: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.cont2discrete on (A, B, I, 0) for our method name."""
    sp_method, alpha = SCIPY_METHODS[method]
    n, h = B.shape
    sys = (A, B, np.eye(n), np.zeros((n, h)))
    Ad, Bd, *_ = scipy.signal.cont2discrete(sys, dt, method=sp_method, alpha=alpha)
    return Ad, Bd


def _ours(A, B, dt, method):
    alpha = SCIPY_METHODS[method][1] if method == "gbt" else None
    return discretize(A, B, dt, method=method, alpha=alpha)


@pytest.mark.parametrize("method", list(SCIPY_METHODS))
@pytest.mark.parametrize("n", [4, 5, 6])
def test_dense_matches_scipy(method, n):
    A, B = _stable_dense(n, 2, seed=n)
    dt = 0.37
    Ad, Bd = _scipy(A, B, dt, method)
    Ab, Bb = _ours(torch.tensor(A), torch.tensor(B), dt, method)
    err = max(np.abs(Ab.numpy() - Ad).max(), np.abs(Bb.numpy() - Bd).max())
    print(f"{method} n={n}: max err {err:.2e}")
    assert Ab.dtype == F64 and Ab.shape == (n, n) and Bb.shape == (n, 2)
    assert err < 1e-12


def test_dense_zoh_matches_expm_and_vector_B():
    A, B = _stable_dense(5, 1, seed=11)
    dt = 0.8
    Ab, Bb = discretize_zoh(torch.tensor(A), torch.tensor(B[:, 0]), dt)
    assert Bb.shape == (5,)
    np.testing.assert_allclose(Ab.numpy(), scipy.linalg.expm(dt * A), rtol=1e-12, atol=1e-13)
    # B̄ = A⁻¹(e^{ΔA} − I)B for invertible A
    ref = np.linalg.solve(A, (scipy.linalg.expm(dt * A) - np.eye(5)) @ B[:, 0])
    np.testing.assert_allclose(Bb.numpy(), ref, rtol=1e-11, atol=1e-13)
    # real A with complex B: Ab stays real, Bb is complex and linear in B
    Ab_c, Bb_c = discretize_zoh(torch.tensor(A), torch.tensor(B[:, 0] * (1 - 2j)), dt)
    assert Ab_c.dtype == F64 and Bb_c.dtype == C128
    np.testing.assert_allclose(Bb_c.numpy(), ref * (1 - 2j), rtol=1e-11, atol=1e-13)


def test_dense_zoh_singular_A():
    """An integrator chain (nilpotent A) has no inverse; the block exponential still works."""
    A = np.diag(np.ones(3), k=1)  # (4, 4) nilpotent
    A[0, 0] = 0.0
    B = np.random.default_rng(3).standard_normal((4, 2))
    Ad, Bd = _scipy(A, B, 0.5, "zoh")
    Ab, Bb = discretize_zoh(torch.tensor(A), torch.tensor(B), 0.5)
    np.testing.assert_allclose(Ab.numpy(), Ad, atol=1e-14)
    np.testing.assert_allclose(Bb.numpy(), Bd, atol=1e-14)
    # exact: Bb = Σ_k Δ^{k+1} A^k / (k+1)! B
    powers = [np.linalg.matrix_power(A, k) for k in range(4)]
    series = [0.5 ** (k + 1) / math.factorial(k + 1) * Ak for k, Ak in enumerate(powers)]
    exact = sum(series) @ B
    np.testing.assert_allclose(Bb.numpy(), exact, atol=1e-14)


@pytest.mark.parametrize("method", list(SCIPY_METHODS))
def test_diagonal_complex_matches_scipy_dense(method):
    lam = _stable_diag(5, seed=1)
    rng = np.random.default_rng(2)
    B = rng.standard_normal((5, 2)) + 1j * rng.standard_normal((5, 2))
    dt = 0.23
    Ad, Bd = _scipy(np.diag(lam), B, dt, method)
    Ab, Bb = _ours(torch.tensor(lam), torch.tensor(B), dt, method)
    err = max(np.abs(np.diag(Ad) - Ab.numpy()).max(), np.abs(Bd - Bb.numpy()).max())
    print(f"diag {method}: max err {err:.2e}")
    assert Ab.shape == (5,) and Bb.shape == (5, 2) and Ab.dtype == C128
    assert np.abs(Ad - np.diag(np.diag(Ad))).max() < 1e-14  # scipy's result is diagonal too
    assert err < 1e-12


@pytest.mark.parametrize("method", ["zoh", "bilinear", "euler", "backward_euler"])
def test_diagonal_real_equals_dense(method):
    lam = -np.random.default_rng(5).uniform(0.1, 2.0, 4)
    B = np.random.default_rng(6).standard_normal(4)
    Ab, Bb = _ours(torch.tensor(lam), torch.tensor(B), 0.4, method)
    Ad, Bd = _ours(torch.tensor(np.diag(lam)), torch.tensor(B), 0.4, method)
    assert Ab.dtype == F64
    torch.testing.assert_close(torch.diag(Ab), Ad, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(Bb, Bd, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("method", ["zoh", "bilinear", "euler"])
def test_per_step_dt_dense_equals_loop(method):
    A, B = _stable_dense(4, 2, seed=7)
    A, B = torch.tensor(A), torch.tensor(B)
    gen = torch.Generator().manual_seed(0)
    dt = torch.rand(3, 5, dtype=F64, generator=gen) + 0.05  # (batch, L)
    Ab, Bb = discretize(A, B, dt, method=method)
    assert Ab.shape == (3, 5, 4, 4) and Bb.shape == (3, 5, 4, 2)
    for i in range(3):
        for k in range(5):
            a, b = discretize(A, B, float(dt[i, k]), method=method)
            torch.testing.assert_close(Ab[i, k], a, rtol=1e-13, atol=1e-14)
            torch.testing.assert_close(Bb[i, k], b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("method", ["zoh", "bilinear", "euler"])
def test_per_step_and_per_state_dt_diagonal_equals_loop(method):
    lam = torch.tensor(_stable_diag(4, seed=8))
    B = torch.randn(4, dtype=F64, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    dt_step = torch.rand(2, 6, 1, dtype=F64, generator=gen) + 0.05  # (batch, L, 1)
    dt_both = torch.rand(2, 6, 4, dtype=F64, generator=gen) + 0.05  # (batch, L, N)
    for dt in (dt_step, dt_both):
        Ab, Bb = discretize(lam, B, dt, method=method)
        assert Ab.shape == (2, 6, 4) and Bb.shape == (2, 6, 4)
        for i in range(2):
            for k in range(6):
                for n in range(4):
                    d = float(dt[i, k, n if dt.shape[-1] == 4 else 0])
                    a, b = discretize(lam[n : n + 1], B[n : n + 1], d, method=method)
                    torch.testing.assert_close(Ab[i, k, n : n + 1], a, rtol=1e-13, atol=1e-15)
                    torch.testing.assert_close(Bb[i, k, n : n + 1], b, rtol=1e-13, atol=1e-15)


def _mp_zoh_factor(lam: complex, dt: float) -> complex:
    """(exp(Δλ) − 1)/λ in 50-digit arithmetic (Δ when λ = 0)."""
    mpmath.mp.dps = 50
    lam_mp, dt_mp = mpmath.mpc(lam), mpmath.mpf(dt)
    if lam_mp == 0:
        return complex(dt_mp)
    return complex(mpmath.expm1(dt_mp * lam_mp) / lam_mp)


def test_diagonal_zoh_tiny_and_zero_lambda():
    dt = 0.1
    # |Δλ| from 0 and 1e-13 up across the series radius (1e-4) to O(1)
    lam = np.array([1e-11 * (1 + 1j), -1e-11j, 0.0, 3e-12, -2.0 + 3.0j,
                    9.9e-4 + 1e-5j, 1.01e-3 - 2e-4j, -1e-3 + 1e-3j])
    B = np.linspace(0.5, 1.5, lam.size) + 0.25j
    Ab, Bb = discretize_zoh(torch.tensor(lam), torch.tensor(B), dt)
    ref = np.array([_mp_zoh_factor(complex(x), dt) for x in lam]) * B
    rel = np.abs(Bb.numpy() - ref) / np.abs(ref)
    print("tiny ΔΛ: max rel err of Bb", rel.max())
    assert np.isfinite(Bb.numpy()).all() and np.isfinite(Ab.numpy()).all()
    assert rel.max() < 1e-14
    np.testing.assert_allclose(Ab.numpy(), np.exp(dt * lam), rtol=1e-15)
    assert Bb[2] == dt * torch.tensor(B[2])  # λ = 0: exactly ΔB
    # real Λ with zeros and tiny values uses expm1; dense block-expm agrees
    lam_r = torch.tensor([0.0, 1e-13, -1e-9, -0.7], dtype=F64)
    b_r = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    _, Bb_r = discretize_zoh(lam_r, b_r, dt)
    _, Bb_dense = discretize_zoh(torch.diag(lam_r), b_r, dt)
    torch.testing.assert_close(Bb_r, Bb_dense, rtol=1e-14, atol=0)


def test_float32_and_python_scalar_dt_keep_precision():
    lam = torch.tensor(_stable_diag(4, seed=9)).to(torch.complex64)
    B = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    Ab, Bb = discretize_zoh(lam, B, 0.3)
    assert Ab.dtype == torch.complex64 and Bb.dtype == torch.complex64
    Ab64, Bb64 = discretize_zoh(lam.to(C128), B.double(), 0.3)
    assert (Ab.to(C128) - Ab64).abs().max() < 1e-6 and (Bb.to(C128) - Bb64).abs().max() < 1e-6
    A, Bd = _stable_dense(4, 2, seed=10)
    for method in ("zoh", "bilinear", "euler"):
        A32, B32 = torch.tensor(A, dtype=torch.float32), torch.tensor(Bd, dtype=torch.float32)
        Ab, Bb = discretize(A32, B32, 0.3, method)
        ref_a, ref_b = _scipy(A, Bd, 0.3, method)
        assert Ab.dtype == torch.float32
        assert np.abs(Ab.numpy() - ref_a).max() < 1e-5 and np.abs(Bb.numpy() - ref_b).max() < 1e-5


def test_dispatch_consistency():
    A, B = _stable_dense(4, 2, seed=12)
    A, B = torch.tensor(A), torch.tensor(B)
    pairs = [
        (discretize(A, B, 0.2, "gbt", alpha=0.0), discretize_euler(A, B, 0.2)),
        (discretize(A, B, 0.2, "gbt", alpha=0.5), discretize_bilinear(A, B, 0.2)),
        (discretize(A, B, 0.2, "backward_euler"), discretize_bilinear(A, B, 0.2, alpha=1.0)),
        (discretize(A, B, 0.2), discretize_zoh(A, B, 0.2)),
    ]
    for (a1, b1), (a2, b2) in pairs:
        torch.testing.assert_close(a1, a2, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(b1, b2, rtol=1e-14, atol=1e-15)
    # backward Euler really is (I − ΔA)⁻¹
    a, _ = discretize(A, B, 0.2, "backward_euler")
    inv = torch.linalg.inv(torch.eye(4, dtype=F64) - 0.2 * A)
    torch.testing.assert_close(a, inv, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize(
    "bad_dt", [0.0, -0.1, float("nan"), float("inf"), torch.tensor([0.1, -1.0])]
)
def test_bad_dt_raises(bad_dt):
    A, B = torch.tensor(_stable_dense(3, 1, 0)[0]), torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="dt"):
        discretize_zoh(A, B, bad_dt)
    with pytest.raises(ValueError, match="dt"):
        discretize_bilinear(torch.diagonal(A), B, bad_dt)


def test_bad_shapes_and_values_raise():
    A = torch.tensor(_stable_dense(3, 1, 0)[0])
    with pytest.raises(ValueError, match="B"):
        discretize_zoh(A, torch.ones(4, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="B"):
        discretize_euler(torch.ones(3, dtype=F64), torch.ones(2, 2, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="A"):
        discretize_zoh(torch.ones(3, 4, dtype=F64), torch.ones(3, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="A"):
        discretize_zoh(torch.ones(2, 3, 3, dtype=F64), torch.ones(3, dtype=F64), 0.1)
    A_nan = A.clone()
    A_nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match="A"):
        discretize_bilinear(A_nan, torch.ones(3, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="B"):
        discretize_zoh(A, torch.tensor([1.0, float("inf"), 0.5], dtype=F64), 0.1)
    with pytest.raises(ValueError, match="dt"):  # per-step dt for diagonal A needs a trailing axis
        dt_steps = torch.full((2, 5), 0.1, dtype=F64)
        discretize_zoh(torch.diagonal(A), torch.ones(3, dtype=F64), dt_steps)
    with pytest.raises(ValueError, match="dt"):
        discretize_zoh(A, torch.ones(3, dtype=F64), torch.tensor(0.1 + 0.1j))
    with pytest.raises(ValueError, match="method"):
        discretize(A, torch.ones(3, dtype=F64), 0.1, method="rk4")
    with pytest.raises(ValueError, match="alpha"):
        discretize(A, torch.ones(3, dtype=F64), 0.1, method="gbt", alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        discretize(A, torch.ones(3, dtype=F64), 0.1, method="gbt")


def test_gradcheck_diagonal_zoh_complex():
    gen = torch.Generator().manual_seed(4)
    lam = torch.tensor([-0.5 + 2.0j, -1.2 - 0.7j, -0.3 + 0.0j], dtype=C128, requires_grad=True)
    B = torch.randn(3, 2, dtype=C128, generator=gen).requires_grad_()
    dt = (torch.rand(3, dtype=F64, generator=gen) + 0.1).requires_grad_()  # per state
    assert torch.autograd.gradcheck(lambda *a: discretize_zoh(*a), (lam, B, dt))
    # near the series branch (|ΔΛ| ~ 1e-6) the gradient is still right
    lam_small = torch.tensor([1e-5 + 1e-5j, -2e-5j], dtype=C128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda l, d: discretize_zoh(l, torch.ones(2, dtype=C128), d),
                                    (lam_small, torch.tensor(0.1, dtype=F64, requires_grad=True)))


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_gradcheck_dense(method):
    A, B = _stable_dense(3, 1, seed=13)
    A = torch.tensor(A, requires_grad=True)
    B = torch.tensor(B[:, 0], requires_grad=True)
    dt = torch.tensor([0.2, 0.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, d: discretize(a, b, d, method=method), (A, B, dt))
