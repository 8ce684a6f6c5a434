"""Contract tests every sequence layer must pass: forward == loop of step (regular and
irregular dt), causality, gradients to every parameter, bad input, learnable time scale."""

import pytest
import torch

from ssmts.layers.block import SSMBackbone
from ssmts.layers.mamba import Mamba
from ssmts.layers.s4 import S4
from ssmts.layers.s5 import S5
from ssmts.testing import random_gaps, rel_err, run_steps

H = 6

FACTORIES = {
    "s4d": lambda **k: S4(H, 8, mode="diag", **k),
    "s4d-lin": lambda **k: S4(H, 8, mode="diag", init="lin", **k),
    "s4-dplr": lambda **k: S4(H, 8, mode="dplr", **k),
    "s4-dplr-r2": lambda **k: S4(H, 8, mode="dplr", rank=2, **k),
    "s5": lambda **k: S5(H, 8, **k),
    "s5-bilinear-blocks": lambda **k: S5(H, 8, blocks=2, discretization="bilinear", **k),
    "mamba": lambda **k: Mamba(H, d_state=4),
    "backbone-s5": lambda **k: SSMBackbone("s5", H, 2, 8, ffn_mult=2),
    "backbone-s4": lambda **k: SSMBackbone("s4", H, 2, 8),
    "backbone-mamba": lambda **k: SSMBackbone("mamba", H, 2, 4),
}
BIDIRECTIONAL = {
    "s4d": lambda: S4(H, 8, bidirectional=True),
    "s4-dplr": lambda: S4(H, 8, mode="dplr", bidirectional=True),
    "s5": lambda: S5(H, 8, bidirectional=True),
    "backbone-s5": lambda: SSMBackbone("s5", H, 2, 8, bidirectional=True),
}


def _make(name, dtype):
    torch.manual_seed(0)
    m = FACTORIES[name]().to(dtype)
    m.eval()
    return m


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("irregular", [False, True])
def test_forward_equals_step_loop(name, dtype, tol, irregular):
    m = _make(name, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 19, H, generator=g, dtype=torch.float64).to(dtype)
    dt = random_gaps(2, 19, generator=g, dtype=dtype) if irregular else None
    with torch.no_grad():
        y = m(x, dt)
        y_loop = run_steps(m, x, dt)
    err = rel_err(y, y_loop)
    print(name, dtype, irregular, err)
    assert y.shape == (2, 19, H) and y.dtype == dtype
    assert err < tol


@pytest.mark.parametrize("name", ["s4d", "s4-dplr", "s5"])
def test_regular_dt_none_equals_ones(name):
    """The convolution (or scan) with dt=None equals the scan with explicit unit gaps."""
    m = _make(name, torch.float64)
    x = torch.randn(2, 33, H, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(m(x), m(x, torch.ones(2, 33, dtype=torch.float64))) < 1e-10


@pytest.mark.parametrize("name", list(FACTORIES))
def test_causal(name):
    m = _make(name, torch.float64)
    x = torch.randn(1, 24, H, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 12:] = torch.randn(1, 12, H, dtype=torch.float64)
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert torch.allclose(y[:, :12], y2[:, :12], atol=1e-12)
    assert not torch.allclose(y[:, 12:], y2[:, 12:], atol=1e-6)


@pytest.mark.parametrize("name", list(BIDIRECTIONAL))
@pytest.mark.parametrize("irregular", [False, True])
def test_bidirectional_sees_the_future(name, irregular):
    torch.manual_seed(0)
    m = BIDIRECTIONAL[name]().double().eval()
    x = torch.randn(1, 24, H, dtype=torch.float64)
    dt = random_gaps(1, 24) if irregular else None
    x2 = x.clone()
    x2[:, 12:] = torch.randn(1, 12, H, dtype=torch.float64)
    with torch.no_grad():
        y, y2 = m(x, dt), m(x2, dt)
    assert not torch.allclose(y[:, :12], y2[:, :12], atol=1e-6)
    # time reversal symmetry of the two directions: regular conv == unit-gap scan
    if not irregular:
        with torch.no_grad():
            assert rel_err(m(x), m(x, torch.ones(1, 24, dtype=torch.float64))) < 1e-10
    with pytest.raises(ValueError, match="bidirectional"):
        m.step(x[:, 0], None)


@pytest.mark.parametrize("name", ["s4d", "s4-dplr", "s5", "mamba"])
@pytest.mark.parametrize("irregular", [False, True])
def test_gradients_reach_every_parameter(name, irregular):
    m = _make(name, torch.float64)
    m.train()
    x = torch.randn(2, 16, H, dtype=torch.float64)
    dt = random_gaps(2, 16) if irregular else None
    (m(x, dt) ** 2).mean().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name", ["s4d", "s5", "mamba"])
def test_bad_input(name):
    m = _make(name, torch.float32)
    with pytest.raises(ValueError, match="x"):
        m(torch.randn(3, H))
    with pytest.raises(ValueError, match="d_model"):
        m(torch.randn(2, 5, H + 1))
    with pytest.raises(ValueError, match="dt"):
        m(torch.randn(2, 5, H), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="dt"):
        m(torch.randn(2, 5, H), torch.full((2, 5), float("nan")))
    with pytest.raises(ValueError, match="dt"):
        m(torch.randn(2, 5, H), torch.ones(2, 4))
    state = m.initial_state(3)
    with pytest.raises(ValueError, match="state"):
        m.step(torch.randn(2, H), state)
    with pytest.raises(ValueError, match="x_t"):
        m.step(torch.randn(2, 5, H), m.initial_state(2))


@pytest.mark.parametrize("name", ["s4d", "s5", "s4-dplr"])
def test_time_scale_transfers_across_sampling_rates(name):
    """A continuous-time layer fed a smooth signal sampled every 1 or every 2 time units
    (dt = 2) gives nearly the same output at the common times; ignoring the gap does not."""
    torch.manual_seed(0)
    m = FACTORIES[name](dt_min=0.05, dt_max=0.2, activation="identity").double().eval()
    t = torch.arange(0, 400, dtype=torch.float64)
    sig = torch.stack([torch.sin(2 * torch.pi * t / (97 + 13 * k)) for k in range(H)], -1)[None]
    fine, coarse = sig, sig[:, ::2]
    with torch.no_grad():
        y_fine = m(fine)[:, ::2]
        y_coarse = m(coarse, torch.full(coarse.shape[:2], 2.0, dtype=torch.float64))
        y_wrong = m(coarse)
    good, bad = rel_err(y_coarse[:, 20:], y_fine[:, 20:]), rel_err(y_wrong[:, 20:], y_fine[:, 20:])
    print(name, good, bad)
    assert good < 0.05
    assert bad > 5 * good
