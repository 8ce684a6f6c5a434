"""s5_scan_ref vs an independent dense real computation; gradcheck; errors; steps."""

import pytest
import torch

from ssmts.ssm.s5_ref import s5_scan, s5_scan_ref
from ssmts.ssm.step import s5_step_ref

f64, c128 = torch.float64, torch.complex128


def _inputs(seed, batch=2, L=7, P=3, H=2):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=f64)  # noqa: E731
    c = lambda *s: torch.complex(r(*s), r(*s))  # noqa: E731
    return dict(Lambda=torch.complex(-0.05 - 0.5 * torch.rand(P, generator=g, dtype=f64), 3 * r(P)),
                log_dt=torch.log(0.01 + 0.3 * torch.rand(P, generator=g, dtype=f64)),
                Bu=c(batch, L, P), gaps=0.1 + 2 * torch.rand(batch, L, generator=g, dtype=f64),
                h0=c(batch, P), C=c(H, P), D=r(H), u=r(batch, L, H))


def _dense_states(d, method, seed=0):
    """Same system as a dense real 2P-state in a random basis T, discretised per step
    with matrix_exp (Van Loan block for ZOH) or a linear solve (bilinear)."""
    lam, dt = d["Lambda"], torch.exp(d["log_dt"])
    P = lam.shape[0]
    blk = lambda v: torch.block_diag(*[torch.tensor([[z.real, -z.imag], [z.imag, z.real]])  # noqa: E731
                                       for z in v])
    T = torch.eye(2 * P, dtype=f64) + 0.3 * torch.randn(2 * P, 2 * P, generator=torch.Generator()
                                                         .manual_seed(seed), dtype=f64)
    Ti = torch.linalg.inv(T)
    to_vec = lambda z: T @ torch.stack([z.real, z.imag], -1).reshape(-1)  # noqa: E731
    batch, L, _ = d["Bu"].shape
    xs = torch.zeros(batch, L, P, dtype=c128)
    for b in range(batch):
        s = to_vec(d["h0"][b])
        for t in range(L):
            dl = dt * d["gaps"][b, t]
            M = T @ blk(lam * dl) @ Ti  # (2P, 2P) = Lambda Delta in the dense basis
            Dm = T @ blk(dl.to(c128)) @ Ti
            if method == "zoh":
                big = torch.zeros(4 * P, 4 * P, dtype=f64)
                big[:2 * P, :2 * P], big[:2 * P, 2 * P:] = M, Dm
                E = torch.linalg.matrix_exp(big)
                Abar, F = E[:2 * P, :2 * P], E[:2 * P, 2 * P:]
            else:
                I2 = torch.eye(2 * P, dtype=f64)
                Abar = torch.linalg.solve(I2 - M / 2, I2 + M / 2)
                F = torch.linalg.solve(I2 - M / 2, Dm)
            s = Abar @ s + F @ to_vec(d["Bu"][b, t])
            v = (Ti @ s).reshape(P, 2)  # (P, 2): real and imaginary parts
            xs[b, t] = torch.complex(v[:, 0], v[:, 1])
    return xs


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_ref_equals_dense_real_system(method):
    d = _inputs(1)
    x, last = s5_scan_ref(d["Lambda"], d["log_dt"], d["Bu"], d["gaps"], method=method,
                          h0=d["h0"], return_last_state=True)
    dense = _dense_states(d, method)
    err = ((x - dense).abs().max() / dense.abs().max()).item()
    print(method, "ref vs dense", err)
    assert err < 1e-10 and torch.equal(last, x[:, -1])
    y = s5_scan_ref(d["Lambda"], d["log_dt"], d["Bu"], d["gaps"], d["C"], d["D"], d["u"],
                    method=method, h0=d["h0"])
    y_dense = 2 * torch.einsum("blp,hp->blh", dense, d["C"]).real + d["D"] * d["u"]
    assert torch.allclose(y, y_dense, rtol=1e-10, atol=1e-10)


def test_gradcheck_ref():
    d = _inputs(2, batch=1, L=3, P=2, H=2)
    args = [d[k].requires_grad_() for k in ("Lambda", "log_dt", "Bu", "h0", "C", "D")]
    for method in ("zoh", "bilinear"):
        fn = lambda lam, ldt, bu, h0, C, D: s5_scan_ref(lam, ldt, bu, d["gaps"], C, D, d["u"],  # noqa: E731
                                                         method=method, h0=h0)
        assert torch.autograd.gradcheck(fn, args)


def test_step_loop_equals_scan():
    d = _inputs(3, batch=3, L=6, P=4, H=2)
    for method in ("zoh", "bilinear"):
        y, last = s5_scan_ref(d["Lambda"], d["log_dt"], d["Bu"], d["gaps"], d["C"], d["D"],
                              d["u"], method, d["h0"], return_last_state=True)
        state = d["h0"].clone()
        ys = [s5_step_ref(state, d["Bu"][:, t], d["Lambda"], d["log_dt"], d["gaps"][:, t], d["C"],
                          d["D"], d["u"][:, t], method)[0] for t in range(6)]
        assert torch.allclose(torch.stack(ys, 1), y, rtol=1e-12, atol=1e-12)
        assert torch.allclose(state, last, rtol=1e-12, atol=1e-12)


def test_regular_gaps_and_dispatch_torch():
    d = _inputs(4)
    a = s5_scan_ref(d["Lambda"], d["log_dt"], d["Bu"])
    b = s5_scan(d["Lambda"], d["log_dt"], d["Bu"], torch.ones(2, 7, dtype=f64), backend="torch")
    assert torch.allclose(a, b, rtol=1e-13, atol=1e-13)
    assert s5_scan(d["Lambda"], d["log_dt"], d["Bu"]).dtype == c128  # CPU: auto -> torch


@pytest.mark.parametrize("change,match", [
    (dict(Lambda=torch.tensor([0.1 + 1j, -1.0 + 0j, -1.0 + 0j])), "Lambda"),
    (dict(Bu=torch.ones(2, 7, 3, dtype=f64)), "Bu"),
    (dict(log_dt=torch.zeros(4, dtype=f64)), "log_dt"),
    (dict(gaps=-torch.ones(2, 7, dtype=f64)), "gaps"),
    (dict(gaps=torch.ones(2, 6, dtype=f64)), "gaps"),
    (dict(method="euler"), "method"),
    (dict(C=None), "D/u"),
    (dict(D=None), "D/u"),
    (dict(C=torch.ones(2, 4, dtype=c128)), "C"),
])
def test_value_errors(change, match):
    d = _inputs(5)
    kw = dict(Lambda=d["Lambda"], log_dt=d["log_dt"], Bu=d["Bu"], gaps=d["gaps"], C=d["C"],
              D=d["D"], u=d["u"], method="zoh")
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        s5_scan_ref(**kw)
