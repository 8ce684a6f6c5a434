"""Tests of ssmts.ssm.hippo: HiPPO matrices, NPLR / DPLR forms, S4D and S5 inits, LegS basis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import eval_legendre

from ssmts.ssm.hippo import (
    DPLR,
    NPLR,
    dplr_init,
    dplr_to_dense,
    hippo_matrices,
    legs_basis,
    nplr,
    s4d_init,
    s4d_real_init,
    s5_init,
    s5_project,
)

F64 = torch.float64
MEASURES = [("legs", 1), ("legt", 2), ("lagt", 1), ("fout", 1)]
r3, r5, r15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)


def _ones(*shape: int) -> torch.Tensor:
    return torch.ones(*shape, dtype=F64)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------- known entries


def test_legs_n3_by_hand():
    A, B = hippo_matrices("legs", 3)
    A_hand = torch.tensor([[-1.0, 0, 0], [-r3, -2, 0], [-r5, -r15, -3]], dtype=F64)
    assert A.dtype == F64 and A.shape == (3, 3) and B.shape == (3,)
    torch.testing.assert_close(A, A_hand, rtol=0, atol=1e-15)
    torch.testing.assert_close(B, torch.tensor([1.0, r3, r5], dtype=F64), rtol=0, atol=1e-15)


def test_other_measures_by_hand():
    A, B = hippo_matrices("legt", 2)
    torch.testing.assert_close(A, torch.tensor([[-0.5, r3 / 2], [-r3 / 2, -1.5]], dtype=F64))
    torch.testing.assert_close(B, torch.tensor([0.5, r3 / 2], dtype=F64))
    A, B = hippo_matrices("lagt", 3)
    A_hand = [[-0.5, 0, 0], [-1, -0.5, 0], [-1, -1, -0.5]]
    torch.testing.assert_close(A, torch.tensor(A_hand, dtype=F64))
    torch.testing.assert_close(B, torch.ones(3, dtype=F64))
    A, B = hippo_matrices("fourier", 4)
    s2, pi = math.sqrt(2), math.pi
    A_hand = [[-1, 0, -s2, 0], [0, 0, 0, 0], [-s2, 0, -2, -pi], [0, 0, pi, 0]]
    torch.testing.assert_close(A, torch.tensor(A_hand, dtype=F64))
    torch.testing.assert_close(B, torch.tensor([1, 0, s2, 0], dtype=F64))


def test_legs_entries_loop_and_stability():
    """LegS against an entry-by-entry loop of the closed form; B > 0; A stable."""
    N = 12
    A, B = hippo_matrices("legs", N)
    for n in range(N):
        assert B[n] > 0 and abs(B[n] - math.sqrt(2 * n + 1)) < 1e-14
        for k in range(N):
            want = -math.sqrt((2 * n + 1) * (2 * k + 1)) if n > k else 0.0
            want = -(n + 1.0) if n == k else want
            assert abs(A[n, k] - want) < 1e-13
    for m, _ in MEASURES:
        A, _ = hippo_matrices(m, 10)
        assert float(torch.linalg.eigvals(A).real.max()) <= 1e-10, m
    A32, B32 = hippo_matrices("legt", 5, dtype=torch.float32)
    assert A32.dtype == torch.float32 and B32.dtype == torch.float32


# ----------------------------------------------------------------------------- NPLR / DPLR


@pytest.mark.parametrize("measure,rank", MEASURES)
@pytest.mark.parametrize("N", [8, 64])
def test_nplr_reconstructs_A(measure, rank, N):
    A, B = hippo_matrices(measure, N)
    o = nplr(measure, N, rank=rank)
    assert isinstance(o, NPLR) and o.Lambda.shape == (N,) and o.P.shape == (rank, N)
    assert o.V.shape == (N, N) and o.V.dtype == torch.complex128
    eye = torch.eye(N, dtype=torch.complex128)
    unit = float((o.V.conj().T @ o.V - eye).abs().max())
    # independent assembly of V (Lambda - P^T conj Q) V^H with explicit outer products
    low = sum(torch.outer(o.P[r], o.Q[r].conj()) for r in range(rank))
    A_rec = o.V @ (torch.diag(o.Lambda) - low) @ o.V.conj().T
    err = rel_err(A_rec, A.to(A_rec.dtype))
    print(f"{measure} N={N}: A rel err {err:.2e}, unitarity {unit:.2e}")
    assert err < 1e-10 and unit < 1e-10
    assert rel_err(o.V @ o.B, B.to(o.B.dtype)) < 1e-10
    assert float(o.Lambda.real.max()) <= 1e-12  # normal part is stable or marginal


@pytest.mark.parametrize("measure,rank", MEASURES)
@pytest.mark.parametrize("N", [6, 64])
def test_dplr_init_dense_recovers_A(measure, rank, N):
    A, B = hippo_matrices(measure, N)
    d = dplr_init(measure, N, rank=rank)
    M = N // 2
    assert isinstance(d, DPLR) and d.Lambda.shape == (M,) and d.V.shape == (N, M)
    assert d.P.shape == d.Q.shape == (rank, M) and d.B.shape == (M,)
    assert float(d.Lambda.imag.min()) >= 0.0
    V2 = torch.cat([d.V, d.V.conj()], dim=1)  # (N, N)
    unit = float((V2.conj().T @ V2 - torch.eye(N, dtype=V2.dtype)).abs().max())
    A_rec, B_rec = dplr_to_dense(*d)
    err = rel_err(A_rec, A.to(A_rec.dtype))
    print(f"{measure} N={N}: DPLR A rel err {err:.2e}, [V, conj V] unitarity {unit:.2e}")
    assert err < 1e-10 and unit < 1e-10
    assert float(A_rec.imag.abs().max()) < 1e-10 * float(A.abs().max())
    assert rel_err(B_rec, B.to(B_rec.dtype)) < 1e-10


def _charpoly_ratio(Lambda, p, q, z):
    """det(z - (Lambda - p q^H)) / prod_n (z + n + 1), by the matrix determinant lemma."""
    lemma = 1 + torch.sum(q.conj() * p / (z - Lambda))
    roots = -torch.arange(1, Lambda.numel() + 1, dtype=torch.float64)
    return lemma * torch.prod((z - Lambda) / (z - roots))


@pytest.mark.parametrize("N", [16, 64])
def test_dplr_legs_eigenvalues_equal_dense(N):
    """The DPLR form has the eigenvalues -1, ..., -N of dense LegS A (triangular)."""
    A, _ = hippo_matrices("legs", N)
    torch.testing.assert_close(torch.diagonal(A), -torch.arange(1, N + 1, dtype=F64))
    d = dplr_init("legs", N)
    L2 = torch.cat([d.Lambda, d.Lambda.conj()])  # (N,)
    p2, q2 = torch.cat([d.P[0], d.P[0].conj()]), torch.cat([d.Q[0], d.Q[0].conj()])
    # eig of LegS is hopelessly ill-conditioned for large N (non-normal, huge pseudospectra
    # around [-N, -1]), so compare characteristic polynomials by the determinant lemma at
    # 18 points where it is well conditioned (for N = 16, more than the N + 1 that fix it).
    worst = 0.0
    for z in [0.5 + 1j * j for j in range(-8, 9)] + [-1.5 + 0.1j]:
        worst = max(worst, abs(complex(_charpoly_ratio(L2, p2, q2, torch.tensor(z))) - 1))
    print(f"N={N}: max |det ratio - 1| = {worst:.2e}")
    assert worst < 1e-7


def test_dplr_legs_eigenvalues_plain_eig_small():
    """At small N plain eig of the eigenbasis DPLR matrix agrees with -1, ..., -N too."""
    d = dplr_init("legs", 8)
    A_eig, _ = dplr_to_dense(d.Lambda, d.P, d.Q, d.B)  # (8, 8), V omitted: eigenbasis
    ev = torch.linalg.eigvals(A_eig)
    ev = ev[torch.argsort(ev.real)]
    err = float((ev - (-torch.arange(8, 0, -1, dtype=F64))).abs().max())
    print(f"eig of DPLR LegS-8: {err:.2e}")
    assert err < 1e-7


def test_dplr_to_dense_eigenbasis_batch_and_full():
    N = 10
    A, B = hippo_matrices("legs", N)
    o = nplr("legs", N)
    A_eig, B_eig = dplr_to_dense(o.Lambda, o.P, o.Q, o.B, conj_sym=False)
    Vh = o.V.conj().T
    assert rel_err(A_eig, Vh @ A.to(Vh.dtype) @ o.V) < 1e-12
    assert rel_err(B_eig, Vh @ B.to(Vh.dtype)) < 1e-12
    # batched: two different systems stacked on a leading axis
    d1, d2 = dplr_init("legs", N), dplr_init("lagt", N)
    stack = [torch.stack([a, b]) for a, b in zip(d1, d2)]
    A_b, B_b = dplr_to_dense(*stack)
    assert A_b.shape == (2, N, N) and B_b.shape == (2, N)
    assert rel_err(A_b[1], hippo_matrices("lagt", N)[0].to(A_b.dtype)) < 1e-10
    assert rel_err(A_b[0], A.to(A_b.dtype)) < 1e-10


def test_float32_outputs():
    d = dplr_init("legs", 16, dtype=torch.float32)
    assert all(t.dtype == torch.complex64 for t in d)
    A_rec, _ = dplr_to_dense(*d)
    assert A_rec.dtype == torch.complex64
    assert rel_err(A_rec, hippo_matrices("legs", 16)[0].to(A_rec.dtype)) < 1e-5


# ----------------------------------------------------------------------------- S4D


def test_s4d_init_formulas():
    N = 8
    n = np.arange(N // 2)
    lin, inv = s4d_init(N, "lin"), s4d_init(N, "inv")
    assert lin.shape == inv.shape == (4,) and lin.dtype == torch.complex128
    np.testing.assert_allclose(lin.numpy(), -0.5 + 1j * np.pi * n, rtol=0, atol=1e-15)
    inv_ref = -0.5 + 1j * N / np.pi * (N / (2 * n + 1) - 1)
    np.testing.assert_allclose(inv.numpy(), inv_ref, rtol=0, atol=1e-13)
    # hand values: S4D-Inv n=0 -> i*8/pi*7, n=3 -> i*8/pi*(8/7-1)
    assert abs(inv[0].imag - 56 / math.pi) < 1e-12 and abs(inv[3].imag - 8 / (7 * math.pi)) < 1e-12
    for method in ("lin", "inv", "legs"):
        lam = s4d_init(16, method)
        assert lam.shape == (8,) and float(lam.real.max()) < 0
        assert float(lam.imag.min()) >= 0  # one of each conjugate pair


def test_s4d_legs_equals_legs_normal_part_eigenvalues():
    """S4D-LegS against a general eig of A + 1/2 B B^T (independent of eigh)."""
    N = 24
    A, B = hippo_matrices("legs", N)
    ev = torch.linalg.eigvals(A + 0.5 * torch.outer(B, B))  # HiPPO-N, normal: well conditioned
    full = torch.cat([s4d_init(N, "legs"), s4d_init(N, "legs").conj()])
    key = lambda z: z[torch.argsort(z.imag)]  # noqa: E731
    err = float((key(ev) - key(full)).abs().max())
    print(f"S4D-LegS vs eig of normal part: {err:.2e}")
    assert err < 1e-10
    torch.testing.assert_close(s4d_init(N, "legs"), dplr_init("legs", N).Lambda)


def test_s4d_real_init():
    A = s4d_real_init(5)
    torch.testing.assert_close(A, torch.tensor([-1.0, -2, -3, -4, -5], dtype=F64))
    A2 = s4d_real_init(4, D=3, dtype=torch.float32)
    assert A2.shape == (3, 4) and A2.dtype == torch.float32
    assert torch.equal(A2[2], torch.tensor([-1.0, -2, -3, -4]))


# ----------------------------------------------------------------------------- S5


def _hippo_n(n: int) -> torch.Tensor:
    """HiPPO-N = A_legs + 1/2 B B^T, built from hippo_matrices only."""
    A, B = hippo_matrices("legs", n)
    return A + 0.5 * torch.outer(B, B)


@pytest.mark.parametrize("P,blocks", [(16, 1), (12, 3), (9, 1)])
def test_s5_init_full_reconstructs_hippo_n(P, blocks):
    init = s5_init(P, blocks=blocks, conj_sym=False)
    assert init.Lambda.shape == (P,) and init.V.shape == init.Vinv.shape == (P, P)
    A_N = torch.block_diag(*[_hippo_n(P // blocks)] * blocks)
    A_rec = init.V @ torch.diag(init.Lambda) @ init.Vinv
    err = rel_err(A_rec, A_N.to(A_rec.dtype))
    print(f"S5 P={P} blocks={blocks}: V Lambda Vinv err {err:.2e}")
    assert err < 1e-10
    eye = torch.eye(P, dtype=init.V.dtype)
    assert float((init.Vinv @ init.V - eye).abs().max()) < 1e-10
    torch.testing.assert_close(init.Lambda.real, torch.full((P,), -0.5, dtype=F64))


@pytest.mark.parametrize("P,blocks", [(16, 1), (16, 4)])
def test_s5_conj_sym_impulse_response(P, blocks):
    """2 Re(C~ diag(exp(Lambda t)) B~) == C expm(A_N t) B for a real random (B, C)."""
    g = torch.Generator().manual_seed(0)
    H, Hout = 3, 2
    B = torch.randn(P, H, generator=g, dtype=F64)
    C = torch.randn(Hout, P, generator=g, dtype=F64)
    init = s5_init(P, blocks=blocks, conj_sym=True)
    assert init.Lambda.shape == (P // 2,) and init.V.shape == (P, P // 2)
    assert init.Vinv.shape == (P // 2, P) and float(init.Lambda.imag.min()) >= 0
    Bt, Ct = s5_project(B, C, init)
    assert Bt.shape == (P // 2, H) and Ct.shape == (Hout, P // 2)
    A_N = torch.block_diag(*[_hippo_n(P // blocks)] * blocks)
    for t in (0.05, 0.7, 3.0):
        dense = C @ torch.linalg.matrix_exp(A_N * t) @ B  # (Hout, H)
        diag = 2 * (Ct @ torch.diag(torch.exp(init.Lambda * t)) @ Bt).real
        err = float((dense - diag).abs().max())
        print(f"t={t}: impulse response err {err:.2e}")
        assert err < 1e-10 * max(1.0, float(dense.abs().max()))


def test_s5_blocks_structure():
    P, blocks = 24, 3
    full = s5_init(P, blocks=blocks)
    one = s5_init(P // blocks)
    n, m = P // blocks, P // blocks // 2
    for i in range(blocks):
        for j in range(blocks):
            blk = full.V[i * n:(i + 1) * n, j * m:(j + 1) * m]
            if i == j:
                torch.testing.assert_close(blk, one.V)
            else:
                assert float(blk.abs().max()) == 0.0
    torch.testing.assert_close(full.Lambda, one.Lambda.repeat(blocks))
    torch.testing.assert_close(full.Vinv, full.V.conj().T)


@pytest.mark.property
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), blocks=st.integers(1, 3))
def test_s5_property_halves_rebuild_hippo_n(n, blocks):
    init = s5_init(2 * n * blocks, blocks=blocks)
    A_rec = 2 * (init.V @ torch.diag(init.Lambda) @ init.Vinv).real
    A_N = torch.block_diag(*[_hippo_n(2 * n)] * blocks)
    assert rel_err(A_rec, A_N) < 1e-10


# ----------------------------------------------------------------------------- LegS basis


def test_legs_basis_matches_scipy_and_is_orthonormal():
    N = 20
    s = torch.linspace(0, 1, 57, dtype=F64)
    G = legs_basis(N, s)
    ref = np.stack([np.sqrt(2 * n + 1) * eval_legendre(n, 2 * s.numpy() - 1) for n in range(N)], -1)
    np.testing.assert_allclose(G.numpy(), ref, rtol=0, atol=1e-11)
    x, w = np.polynomial.legendre.leggauss(40)  # exact for degree < 80 on [-1, 1]
    Gq = legs_basis(N, torch.tensor((x + 1) / 2))
    gram = Gq.T @ (torch.tensor(w / 2)[:, None] * Gq)  # uniform measure on [0, 1]
    torch.testing.assert_close(gram, torch.eye(N, dtype=F64), rtol=0, atol=1e-12)
    assert legs_basis(1, [0, 1]).shape == (2, 1)


def _signal(t: torch.Tensor) -> torch.Tensor:
    return torch.sin(8 * math.pi * t) * torch.exp(-t) + 0.5 * torch.cos(3 * math.pi * t) + t**2


def _legs_online(N: int, L: int) -> torch.Tensor:
    """Run x' = (1/t)(A x + B u) online on t_k = k/L, k = 1..L (trapezoidal rule); return x(1).

    Why the trapezoidal (bilinear, GBT alpha = 1/2) rule, as in the HiPPO paper: with step
    1/L the coefficient (1/t) A becomes A/k, stiff for small k (eigenvalues down to -N), and
    the trapezoidal rule is A-stable and second order, so no tiny steps are needed:
        (I - A/(2(k+1))) x_{k+1} = (I + A/(2k)) x_k + B (u_k/(2k) + u_{k+1}/(2(k+1))).
    I - A/(2(k+1)) is lower triangular. Initial state at t_1: the projection of a constant,
    u(t_1/2) e_0; its error decays at least like t_1/t. Measured: errors fall 4x per
    doubling of L (second order).
    """
    A, B = hippo_matrices("legs", N)
    eye = torch.eye(N, dtype=F64)
    t = torch.arange(L + 1, dtype=F64) / L
    u = _signal(t)  # (L+1,)
    x = torch.zeros(N, dtype=F64)
    x[0] = _signal(t[1] / 2)
    for k in range(1, L):
        rhs = x + (A @ x) / (2 * k) + B * (u[k] / (2 * k) + u[k + 1] / (2 * (k + 1)))
        x = torch.linalg.solve_triangular(eye - A / (2 * (k + 1)), rhs[:, None], upper=False)[:, 0]
    return x


def test_legs_online_reconstruction_improves_with_N():
    tau = torch.linspace(0, 1, 1001, dtype=F64)
    f = _signal(tau)
    xq, wq = np.polynomial.legendre.leggauss(200)
    fq = _signal(torch.tensor((xq + 1) / 2)).numpy() * wq / 2
    errs = []
    for N in (8, 16, 32):
        x = _legs_online(N, 2000)
        rec = legs_basis(N, tau) @ x
        errs.append(float((rec - f).norm() / f.norm()))
        # the state is the projection c_n = int_0^1 f(s) sqrt(2n+1) P_n(2s-1) ds (scipy)
        c = np.array([np.sum(fq * np.sqrt(2 * n + 1) * eval_legendre(n, xq)) for n in range(N)])
        state_err = float(np.abs(x.numpy() - c).max())
        print(f"N={N}: reconstruction rel err {errs[-1]:.2e}, state vs quadrature {state_err:.2e}")
        assert state_err < 5e-5
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-4


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: hippo_matrices("legx", 4), "measure"),
        (lambda: hippo_matrices(3, 4), "measure"),
        (lambda: hippo_matrices("legs", 0), "N"),
        (lambda: hippo_matrices("legs", 2.5), "N"),
        (lambda: hippo_matrices("legs", True), "N"),
        (lambda: hippo_matrices("fout", 5), "N"),
        (lambda: hippo_matrices("legs", 4, dtype=torch.int64), "dtype"),
        (lambda: nplr("legt", 4, rank=1), "rank"),
        (lambda: nplr("nope", 4), "measure"),
        (lambda: dplr_init("legs", 7), "N"),
        (lambda: dplr_init("legs", -2), "N"),
        (lambda: s4d_init(7), "N"),
        (lambda: s4d_init(8, "foo"), "method"),
        (lambda: s4d_real_init(0), "N"),
        (lambda: s4d_real_init(4, D=0), "D"),
        (lambda: s5_init(0), "P"),
        (lambda: s5_init(10, blocks=3), "P"),
        (lambda: s5_init(12, blocks=0), "blocks"),
        (lambda: s5_init(6, blocks=2), "blocks"),
        (lambda: legs_basis(0, [0.5]), "N"),
        (lambda: legs_basis(3, [0.5, 1.2]), "s"),
        (lambda: legs_basis(3, [[0.5]]), "s"),
        (lambda: dplr_to_dense(_ones(3), _ones(1, 4), _ones(1, 4), _ones(3)), "P"),
        (lambda: dplr_to_dense(_ones(3), _ones(1, 3), _ones(1, 3), _ones(2)), "B"),
        (lambda: dplr_to_dense(_ones(3), _ones(1, 3), _ones(1, 3), _ones(3), _ones(6, 2)), "V"),
        (lambda: dplr_to_dense(_ones(3), _ones(1, 3), _ones(2, 3), _ones(3)), "Q"),
        (lambda: dplr_to_dense(_ones(3) * float("nan"), _ones(1, 3), _ones(1, 3), _ones(3)),
         "Lambda"),
        (lambda: s5_project(torch.ones(5, 2), torch.ones(2, 8), s5_init(8)), "B"),
        (lambda: s5_project(torch.ones(8, 2), torch.ones(2, 5), s5_init(8)), "C"),
    ],
)
def test_bad_inputs_name_the_argument(call, name):
    """Each bad input raises ValueError whose message starts with the argument's name."""
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
