"""Tests for ssmts.ssm.lti: every response is checked against an independent computation
(scipy.signal, python-control, direct matrix exponentials, quadrature)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.signal as ssig
import torch
from scipy.integrate import quad_vec

from ssmts.ssm.lti import LTISystem


def _rand_stable(n: int, m: int, p: int, seed: int, d: bool = True):
    """Random stable continuous (A, B, C, D): eigenvalues shifted into Re < -0.3."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A -= (np.max(np.linalg.eigvals(A).real) + 0.3 + rng.uniform()) * np.eye(n)
    B, C = rng.standard_normal((n, m)), rng.standard_normal((p, n))
    D = rng.standard_normal((p, m)) if d else np.zeros((p, m))
    return A, B, C, D


def _rand_discrete(n: int, m: int, p: int, seed: int):
    """Random stable discrete (A, B, C, D): spectral radius 0.85."""
    A, B, C, D = _rand_stable(n, m, p, seed)
    rng = np.random.default_rng(seed + 100)
    A = rng.standard_normal((n, n))
    A *= 0.85 / np.max(np.abs(np.linalg.eigvals(A)))
    return A, B, C, D


def _rel(a, b) -> float:
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))
    print(f"max rel err {err:.2e}")
    return err


CASES = [(4, 2, 3), (3, 1, 1)]  # (n, m, p): MIMO and SISO


@pytest.fixture(params=CASES, ids=["mimo", "siso"])
def csys(request):
    n, m, p = request.param
    return LTISystem(*_rand_stable(n, m, p, seed=n), dt=0)


@pytest.fixture(params=CASES, ids=["mimo", "siso"])
def dsys(request):
    n, m, p = request.param
    return LTISystem(*_rand_discrete(n, m, p, seed=n), dt=0.1)


# ------------------------------------------------------------- time responses
def test_continuous_impulse_step_simulate_match_scipy(csys):
    T = np.linspace(0, 6, 121)
    _, yi = csys.impulse(T)
    _, ys = csys.step(T)
    assert yi.shape == ys.shape == (len(T), csys.n_outputs, csys.n_inputs)
    for j in range(csys.n_inputs):
        sub = (csys.A, csys.B[:, [j]], csys.C, csys.D[:, [j]])
        ref_i = ssig.impulse(sub, T=T)[1].reshape(len(T), -1)  # (K, p)
        ref_s = ssig.step(sub, T=T)[1].reshape(len(T), -1)
        assert _rel(yi[:, :, j], ref_i) < 1e-8
        assert _rel(ys[:, :, j], ref_s) < 1e-8
    rng = np.random.default_rng(1)
    u = rng.standard_normal((len(T), csys.n_inputs))
    x0 = rng.standard_normal(csys.n_states)
    t, y, x = csys.simulate(u, T, x0=x0)
    _, yref, xref = ssig.lsim(csys.to_scipy(), u, T, X0=x0)
    assert _rel(y, yref.reshape(len(T), -1)) < 1e-8 and _rel(x, xref) < 1e-8
    # zero-order hold option equals lsim(interp=False)
    _, y0, _ = csys.simulate(u, T, x0=x0, interp=False)
    yref0 = ssig.lsim(csys.to_scipy(), u, T, X0=x0, interp=False)[1]
    assert _rel(y0, yref0.reshape(len(T), -1)) < 1e-8


def test_continuous_nonuniform_grid_matches_expm():
    sys = LTISystem(*_rand_stable(3, 1, 2, seed=5))
    T = np.sort(np.random.default_rng(0).uniform(0, 5, 30))
    _, y = sys.impulse(T)
    ref = np.stack([sys.C @ sla.expm(sys.A * t) @ sys.B for t in T])
    assert _rel(y, ref) < 1e-10
    # piecewise-linear input on an irregular grid vs adaptive quadrature of the convolution
    u = np.sin(T)[:, None]
    _, ys, _ = sys.simulate(u, T - T[0])
    Tq, k = T - T[0], 17

    def integrand(s):
        return sla.expm(sys.A * (Tq[k] - s)) @ sys.B[:, 0] * np.interp(s, Tq, u[:, 0])

    xk = quad_vec(integrand, 0, Tq[k], epsabs=1e-12, epsrel=1e-11, points=Tq[:k + 1])[0]
    assert _rel(ys[k], sys.C @ xk + sys.D[:, 0] * u[k, 0]) < 1e-8


def test_default_time_grid_matches_scipy():
    sys = LTISystem(*_rand_stable(3, 1, 1, seed=3))
    t, y = sys.impulse(n=50)
    tref, yref = ssig.impulse(sys.to_scipy(), N=50)
    assert np.allclose(t, tref) and _rel(y[:, 0, 0], yref) < 1e-8


def test_discrete_impulse_step_simulate_match_scipy(dsys):
    sc = dsys.to_scipy()
    t, yi = dsys.impulse(n=40)
    _, ys = dsys.step(n=40)
    tref, ref_i = ssig.dimpulse(sc, n=40)
    ref_s = ssig.dstep(sc, n=40)[1]
    assert np.allclose(t, tref)
    for j in range(dsys.n_inputs):
        assert _rel(yi[:, :, j], ref_i[j]) < 1e-8
        assert _rel(ys[:, :, j], ref_s[j]) < 1e-8
    rng = np.random.default_rng(2)
    u = rng.standard_normal((40, dsys.n_inputs))
    x0 = rng.standard_normal(dsys.n_states)
    _, y, x = dsys.simulate(u, x0=x0)
    _, yref, xref = ssig.dlsim(sc, u, x0=x0)
    assert _rel(y, yref) < 1e-8 and _rel(x, xref) < 1e-8


# ------------------------------------------------------------- frequency domain
def test_freqresp_matches_scipy_and_transfer_function(csys, dsys):
    w = np.logspace(-2, 1.4, 60)
    H = csys.freqresp(w)
    assert H.shape == (60, csys.n_outputs, csys.n_inputs)
    assert _rel(H, csys.transfer_function(1j * w)) < 1e-12
    Hd = dsys.freqresp(w)
    for i in range(csys.n_outputs):
        for j in range(csys.n_inputs):
            ref = ssig.freqresp((csys.A, csys.B[:, [j]], csys.C[[i]], csys.D[[i]][:, [j]]), w=w)[1]
            assert _rel(H[:, i, j], ref) < 1e-8
    for i in range(dsys.n_outputs):
        for j in range(dsys.n_inputs):
            sub = (dsys.A, dsys.B[:, [j]], dsys.C[[i]], dsys.D[[i]][:, [j]], dsys.dt)
            ref = ssig.dfreqresp(sub, w=w * dsys.dt)[1]  # scipy: rad/sample
            assert _rel(Hd[:, i, j], ref) < 1e-8
    # diagonal fast path of transfer_function vs the dense solve
    lam = np.array([-1 + 2j, -0.5 - 1j, -2.0])
    rng = np.random.default_rng(3)
    Bc, Cc = rng.standard_normal((3, 2)) + 1j, rng.standard_normal((2, 3)) - 1j
    s = rng.standard_normal((4, 5)) + 1j * rng.standard_normal((4, 5))
    Hdiag = LTISystem.from_diagonal(lam, Bc, Cc).transfer_function(s)
    dense = np.stack([Cc @ np.linalg.solve(z * np.eye(3) - np.diag(lam), Bc) for z in s.ravel()])
    assert Hdiag.shape == (4, 5, 2, 2) and _rel(Hdiag.reshape(20, 2, 2), dense) < 1e-12


def test_tf_siso_and_mimo(csys):
    w = np.array([0.3, 1.7])
    H = csys.freqresp(w)
    tf = csys.tf()
    pairs = [[tf]] if csys.n_inputs == 1 else tf
    for i in range(csys.n_outputs):
        for j in range(csys.n_inputs):
            num, den = pairs[i][j]
            assert _rel(np.polyval(num, 1j * w) / np.polyval(den, 1j * w), H[:, i, j]) < 1e-9


def test_poles_zeros(csys):
    assert _rel(np.sort_complex(csys.poles()), np.sort_complex(np.linalg.eigvals(csys.A))) < 1e-12
    if csys.n_inputs == 1:
        num, _ = csys.tf()
        z = csys.zeros()
        assert len(z) == len(num) - 1
        assert _rel(np.sort_complex(z), np.sort_complex(np.roots(num))) < 1e-8
    else:
        with pytest.raises(ValueError, match="square"):
            csys.zeros()
    A, B, C, _ = _rand_stable(4, 2, 2, seed=11, d=False)
    sq = LTISystem(A, B, C)
    z = sq.zeros()
    assert len(z) == 2  # generic strictly proper square: n - m finite zeros
    sv = [np.linalg.svd(sq.transfer_function(zi), compute_uv=False) for zi in z]
    sv_ref = np.linalg.svd(sq.transfer_function(0.123 + 0.4j), compute_uv=False)
    print("smallest singular values at zeros", [s[-1] for s in sv])
    assert all(s[-1] < 1e-9 * s[0] for s in sv) and sv_ref[-1] > 1e-3


def test_dcgain(csys, dsys):
    assert _rel(csys.dcgain(), csys.freqresp([0.0])[0]) < 1e-12
    assert _rel(dsys.dcgain(), dsys.transfer_function(1.0)) < 1e-12
    # long step response settles to the DC gain
    _, y = csys.step(np.linspace(0, 80, 400))
    assert _rel(y[-1], csys.dcgain()) < 1e-8
    with pytest.raises(ValueError, match="s = 0"):
        LTISystem([[0.0, 1.0], [0.0, -1.0]], [0.0, 1.0], [1.0, 0.0]).dcgain()
    with pytest.raises(ValueError, match="z = 1"):
        LTISystem([[1.0]], [1.0], [1.0], dt=1.0).dcgain()


def test_h2_norm_is_impulse_energy():
    A, B, C, _ = _rand_stable(4, 2, 3, seed=4, d=False)
    sys = LTISystem(A, B, C)
    T = np.linspace(0, 40, 8001)
    _, h = sys.impulse(T)
    energy = sla.norm(h.reshape(len(T), -1), axis=1) ** 2
    from scipy.integrate import simpson

    assert _rel(sys.h2_norm(), np.sqrt(simpson(energy, x=T))) < 1e-6
    dsys = LTISystem(*_rand_discrete(4, 2, 3, seed=4), dt=0.5)
    _, hd = dsys.impulse(n=400)
    assert _rel(dsys.h2_norm(), np.sqrt(np.sum(np.abs(hd) ** 2))) < 1e-10


# ------------------------------------------------------------- discretisation
@pytest.mark.parametrize("method,alpha", [("zoh", None), ("bilinear", None), ("euler", None),
                                          ("backward_diff", None), ("gbt", 0.3)])
def test_discretize_matches_cont2discrete(method, alpha):
    A, B, C, D = _rand_stable(4, 2, 3, seed=6)
    d = LTISystem(A, B, C, D).discretize(0.05, method, alpha)
    ref = ssig.cont2discrete((A, B, C, D), 0.05, method, alpha)
    assert d.is_discrete and d.dt == 0.05
    for got, want in zip((d.A, d.B, d.C, d.D), ref[:4]):
        assert _rel(got, want) < 1e-12


def test_zoh_step_equals_sampled_continuous_step(csys):
    d = csys.discretize(0.2, "zoh")
    _, yd = d.step(n=50)
    _, yc = csys.step(np.arange(50) * 0.2)
    assert _rel(yd, yc) < 1e-10
    # any piecewise-constant input: ZOH is exact at the samples
    u = np.random.default_rng(7).standard_normal((50, csys.n_inputs))
    _, yz, _ = d.simulate(u)
    _, yl, _ = csys.simulate(u, np.arange(50) * 0.2, interp=False)
    assert _rel(yz, yl) < 1e-10


# ------------------------------------------------------------- complex / diagonal
def test_from_diagonal_conj_sym_is_real_and_matches_direct():
    rng = np.random.default_rng(8)
    P, m, p = 3, 2, 2
    lam = -rng.uniform(0.2, 1.0, P) + 1j * rng.uniform(0.5, 3.0, P)
    Bt = rng.standard_normal((P, m)) + 1j * rng.standard_normal((P, m))
    Ct = rng.standard_normal((p, P)) + 1j * rng.standard_normal((p, P))
    sys = LTISystem.from_diagonal(torch.tensor(lam), torch.tensor(Bt), torch.tensor(Ct), dt=None,
                                  conj_sym=True)
    assert sys.is_real and not np.iscomplexobj(sys.A) and sys.n_states == 2 * P
    T = np.linspace(0, 5, 51)
    _, h = sys.impulse(T)
    direct = np.stack([2 * np.real(Ct @ np.diag(np.exp(lam * t)) @ Bt) for t in T])
    assert _rel(h, direct) < 1e-10
    half = LTISystem.from_diagonal(lam, Bt, Ct)
    assert not half.is_real
    w = np.linspace(-3, 3, 13)
    H_half, H_conj = half.freqresp(w), half.freqresp(-w).conj()
    assert _rel(sys.freqresp(w), H_half + H_conj) < 1e-12
    # full (both conjugates) complex system -> to_real() of the same size, same response
    full = LTISystem.from_diagonal(np.r_[lam, lam.conj(), -0.7], np.r_[Bt, Bt.conj(), [[1j, 2j]]],
                                   np.c_[Ct, Ct.conj(), [[-1j], [0.5j]]])
    real = full.to_real()
    assert real.is_real and real.n_states == 2 * P + 1
    assert _rel(real.freqresp(w), full.freqresp(w)) < 1e-12
    with pytest.raises(ValueError, match="conjugate"):
        half.to_real()
    with pytest.raises(ValueError, match="conj_sym=True"):
        half.to_scipy()


def test_torch_inputs_and_immutability():
    A, B, C, D = _rand_stable(3, 1, 1, seed=9)
    tsys = LTISystem(*(torch.tensor(M, requires_grad=True) for M in (A, B, C, D)),
                     dt=torch.tensor(0.0))
    nsys = LTISystem(A, B[:, 0], C[0], D[0, 0])
    assert tsys.A.dtype == np.float64 and _rel(tsys.freqresp([1.0]), nsys.freqresp([1.0])) < 1e-15
    assert LTISystem(torch.tensor(A, dtype=torch.float32), B, C).A.dtype == np.float64
    assert LTISystem(torch.tensor(A + 0j).conj(), B, C).A.dtype == np.complex128
    with pytest.raises(AttributeError):
        tsys.dt = 1.0
    with pytest.raises(ValueError):
        tsys.A[0, 0] = 1.0  # read-only array
    import copy
    import pickle

    assert np.array_equal(pickle.loads(pickle.dumps(tsys)).A, tsys.A)
    assert copy.deepcopy(tsys).dt == 0
    assert "n_states=3" in repr(tsys) and "stable=True" in repr(tsys)
    assert LTISystem(A, B, C, dt=True).is_discrete and LTISystem(A, B, C, dt=None).is_continuous


# ------------------------------------------------------------- conversions
def test_scipy_round_trip(csys, dsys):
    for s in (csys, dsys):
        back = LTISystem.from_scipy(s.to_scipy())
        assert back.dt == s.dt
        for a, b in zip((back.A, back.B, back.C, back.D), (s.A, s.B, s.C, s.D)):
            assert np.array_equal(a, b)
    tf_sys = LTISystem.from_scipy(ssig.TransferFunction([1.0, 2.0], [1.0, 3.0, 2.5]))
    assert _rel(np.sort_complex(tf_sys.poles()), np.sort_complex(np.roots([1.0, 3.0, 2.5]))) < 1e-12


def test_to_control_matches(csys, dsys):
    control = pytest.importorskip("control", reason="python-control not installed")
    w = np.logspace(-1, 1, 7)
    for s in (csys, dsys):
        c = s.to_control()
        assert isinstance(c, control.StateSpace) and c.dt == s.dt
        assert _rel(np.sort_complex(c.poles()), np.sort_complex(s.poles())) < 1e-10
        pts = np.exp(1j * w * s.dt) if s.is_discrete else 1j * w
        ref = np.moveaxis(c(pts, squeeze=False), -1, 0)  # (p, m, K) -> (K, p, m)
        assert _rel(s.freqresp(w), ref) < 1e-10
        back = LTISystem.from_control(c)
        assert np.allclose(back.A, s.A) and back.dt == s.dt


def test_bode_plot_agg(csys, dsys):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    w, mag, ph, fig = csys.bode(plot=True)
    assert mag.shape == (len(w),) + csys.D.shape
    assert np.all(np.isfinite(mag)) and np.all(np.isfinite(ph))
    assert _rel(10 ** (mag / 20), np.abs(csys.freqresp(w))) < 1e-12
    plt.close(fig)
    wd, magd, _ = dsys.bode()
    assert np.isclose(wd[-1], np.pi / dsys.dt) and np.all(np.isfinite(magd))


# ------------------------------------------------------------- bad input
def test_bad_inputs_name_the_argument():
    A, B, C, D = _rand_stable(3, 2, 2, seed=10)
    with pytest.raises(ValueError, match="^A:"):
        LTISystem(A[:, :2], B, C)
    with pytest.raises(ValueError, match="^B:"):
        LTISystem(A, B[:2], C)
    with pytest.raises(ValueError, match="^C:"):
        LTISystem(A, B, C[:, :2])
    with pytest.raises(ValueError, match="^D:"):
        LTISystem(A, B, C, D[:1])
    with pytest.raises(ValueError, match="^D:"):
        LTISystem(A, B, C, 2.0)  # scalar D only for SISO
    with pytest.raises(ValueError, match="^dt:"):
        LTISystem(A, B, C, D, dt=-0.1)
    bad = A.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^A: .*non-finite.*\(1, 2\)"):
        LTISystem(bad, B, C)
    unstable = LTISystem(A + 10 * np.eye(3), B, C)
    assert not unstable.is_stable()
    with pytest.raises(ValueError, match="unstable"):
        unstable.h2_norm()
    with pytest.raises(ValueError, match="nonzero D"):
        LTISystem(A, B, C, D).h2_norm()
    disc = LTISystem(A, B, C, D).discretize(0.1)
    with pytest.raises(ValueError, match="already discrete"):
        disc.discretize(0.1)
    with pytest.raises(ValueError, match="^method:"):
        LTISystem(A, B, C).discretize(0.1, "tustin")
    with pytest.raises(ValueError, match="^alpha:"):
        LTISystem(A, B, C).discretize(0.1, "gbt")
    with pytest.raises(ValueError, match="^t:"):
        LTISystem(A, B, C).simulate(np.ones((5, 2)))
    with pytest.raises(ValueError, match="^u:"):
        LTISystem(A, B, C).simulate(np.ones((5, 3)), np.arange(5.0))
