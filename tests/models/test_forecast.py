"""ForecastNet: sequence mode equals a loop of step; missing rows are skipped; head shapes."""

import pytest
import torch

from ssmts.models.forecast import SKIP_DT, ForecastNet, effective_gaps


def _inputs(b=2, L=10, C=3, Cx=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, L, C, generator=g)
    m = (torch.rand(b, L, C, generator=g) > 0.3).float()
    m[0, 4] = 0  # a fully missing row
    m[:, -1] = 0  # trailing missing row
    gaps = torch.rand(b, L, generator=g) + 0.5
    return v, m, gaps, torch.randn(b, L, Cx, generator=g)


@pytest.mark.parametrize("channel", ["mixed", "independent"])
@pytest.mark.parametrize("backbone", ["s5", "s4d", "mamba"])
def test_forward_equals_step_loop(channel, backbone):
    torch.manual_seed(0)
    net = ForecastNet(3, horizon=4, n_exog=2, n_outputs=2, channel=channel, backbone=backbone,
                      d_model=8, n_layers=1, d_state=4).eval()
    v, m, gaps, ex = _inputs()
    fg, fx = torch.rand(2, 4) + 0.5, torch.randn(2, 4, 2)
    with torch.no_grad():
        out = net(v, m, gaps, fg, ex, fx)
        o = net.initial_state(2)
        for t in range(v.shape[1]):
            o = net.step(v[:, t], m[:, t], gaps[:, t], o, ex[:, t])
        tau = torch.cumsum(net.fold_rows(fg), 1) + o["pending"][:, None]
        out2 = net.decode(o["hidden"], tau, fx)
    err = (out - out2).abs().max().item()
    print("max |forward - step loop|", err)
    assert out.shape == (2, 4, 3, 2) and err < 1e-4


def test_missing_values_do_not_leak():
    """Whatever sits under a mask of 0 cannot change the forecast."""
    torch.manual_seed(1)
    net = ForecastNet(3, horizon=4, backbone="s5", d_model=8, n_layers=1, d_state=4).eval()
    v, m, gaps, _ = _inputs()
    fg = torch.ones(2, 4)
    v2 = torch.where(m > 0, v, torch.full_like(v, 1e6))
    v3 = torch.where(m > 0, v, torch.full_like(v, float("nan")))
    with torch.no_grad():
        a, b, c = net(v, m, gaps, fg), net(v2, m, gaps, fg), net(v3, m, gaps, fg)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_skipped_row_equals_dropped_row():
    """A fully missing row (its gap folded forward) ~ the same sequence without that row."""
    torch.manual_seed(2)
    net = ForecastNet(2, horizon=3, backbone="s5", d_model=8, n_layers=1, d_state=4).eval()
    v = torch.randn(1, 8, 2)
    m = torch.ones(1, 8, 2)
    m[0, 3] = 0
    gaps = torch.full((1, 8), 1.0)
    keep = [i for i in range(8) if i != 3]
    g2 = gaps[:, keep].clone()
    g2[0, 3] = 2.0  # the dropped row's gap folded into the next one
    fg = torch.ones(1, 3)
    with torch.no_grad():
        a = net(v, m, gaps, fg)
        b = net(v[:, keep], m[:, keep], g2, fg)
    print("max diff", (a - b).abs().max().item())
    assert torch.allclose(a, b, atol=1e-3)


def test_effective_gaps():
    gaps = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    obs = torch.tensor([[True, False, False, True, False]])
    dt, pending = effective_gaps(gaps, obs)
    assert torch.allclose(dt, torch.tensor([[1.0, SKIP_DT, SKIP_DT, 9.0, SKIP_DT]]))
    assert pending.item() == 5.0


def test_bad_channel():
    with pytest.raises(ValueError, match="channel"):
        ForecastNet(2, horizon=3, channel="both")
