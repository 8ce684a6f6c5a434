"""ForecastNet: sequence mode equals a loop of step; missing rows are skipped; head shapes."""

import numpy as np
import pytest
import torch

from ssmts.models.forecast import SKIP_DT, ForecastNet, effective_gaps, window_stats


def _inputs(b=2, L=10, C=3, Cx=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(b, L, C, generator=g)
    m = (torch.rand(b, L, C, generator=g) > 0.3).float()
    m[0, 4] = 0  # a fully missing row
    m[:, -1] = 0  # trailing missing row
    gaps = torch.rand(b, L, generator=g) + 0.5
    return v, m, gaps, torch.randn(b, L, Cx, generator=g)


@pytest.mark.parametrize("channel", ["mixed", "independent"])
@pytest.mark.parametrize("backbone,norm", [("s5", None), ("s4d", "mean"), ("mamba", "last"),
                                          ("s5", "mean")])
def test_forward_equals_step_loop(channel, backbone, norm):
    torch.manual_seed(0)
    net = ForecastNet(3, horizon=4, n_exog=2, n_outputs=2, channel=channel, backbone=backbone,
                      d_model=8, n_layers=1, d_state=4, window_norm=norm,
                      norm_affine=norm == "mean").eval()
    v, m, gaps, ex = _inputs()
    v = 3.0 * v + 5.0  # away from zero mean / unit std, so the normalisation matters
    fg, fx = torch.rand(2, 4) + 0.5, torch.randn(2, 4, 2)
    with torch.no_grad():
        if norm_affine_params(net):  # random affine so that its inverse is exercised
            net.norm_weight.uniform_(0.5, 2.0), net.norm_bias.normal_()
        out = net(v, m, gaps, fg, ex, fx)
        o = net.initial_state(2, net.window_stats(v, m))
        for t in range(v.shape[1]):
            o = net.step(v[:, t], m[:, t], gaps[:, t], o, ex[:, t])
        tau = torch.cumsum(net.fold_rows(fg), 1) + o["pending"][:, None]
        out2 = net.decode(o["hidden"], tau, fx, net.origin_stats(o))
    err = (out - out2).abs().max().item()
    print("max |forward - step loop|", err)
    assert out.shape == (2, 4, 3, 2) and err < 1e-4


def norm_affine_params(net):
    return net.norm_weight is not None


@pytest.mark.parametrize("norm", [None, "mean", "last"])
def test_missing_values_do_not_leak(norm):
    """Whatever sits under a mask of 0 cannot change the forecast (nor the window stats)."""
    torch.manual_seed(1)
    net = ForecastNet(3, horizon=4, backbone="s5", d_model=8, n_layers=1, d_state=4,
                      window_norm=norm).eval()
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
    with pytest.raises(ValueError, match="window_norm"):
        ForecastNet(2, horizon=3, window_norm="median")


def test_window_stats_against_numpy():
    """Masked mean / std / last observed value, per window and channel, vs a numpy loop."""
    g = torch.Generator().manual_seed(4)
    v = torch.randn(3, 9, 2, generator=g, dtype=torch.float64) * 2 + 1
    m = (torch.rand(3, 9, 2, generator=g) > 0.4).double()
    m[0, -3:, 1] = 0  # last value of this channel missing: "last" must look further back
    m[0, :6, 1] = 1
    m[2, :, 0] = 0  # nothing observed: loc 0, scale 1
    v_nan = torch.where(m > 0, v, torch.full_like(v, float("nan")))
    for how in ("mean", "last"):
        loc, scale = window_stats(v_nan, m, how, min_std=1e-2)
        for b in range(3):
            for c in range(2):
                obs = v[b, m[b, :, c] > 0, c].numpy()
                if obs.size == 0:
                    want = (0.0, 1.0)
                else:
                    want = (obs.mean() if how == "mean" else obs[-1], max(obs.std(), 1e-2))
                np.testing.assert_allclose([loc[b, c].item(), scale[b, c].item()], want,
                                           rtol=1e-12, atol=1e-12)
    const = torch.ones(1, 5, 1, dtype=torch.float64)
    assert window_stats(const, torch.ones_like(const), "mean", 0.05)[1].item() == 0.05  # floor


@pytest.mark.parametrize("norm", ["mean", "last"])
def test_window_norm_equivariance(norm):
    """With window normalisation a shift (and a positive scaling) of the context moves the
    forecast the same way: forecast(a v + c) = a forecast(v) + c. Without, it does not."""
    torch.manual_seed(5)
    kw = dict(horizon=5, backbone="s5", d_model=8, n_layers=1, d_state=4, n_outputs=2)
    net = ForecastNet(2, window_norm=norm, **kw).eval()
    plain = ForecastNet(2, window_norm=None, **kw).eval()
    v, m, gaps, _ = _inputs(C=2)
    fg = torch.ones(2, 5)
    with torch.no_grad():
        base = net(v, m, gaps, fg)
        moved = net(2.5 * v + 40.0, m, gaps, fg)
        err = (moved - (2.5 * base + 40.0)).abs().max().item()
        err_plain = (plain(v + 40.0, m, gaps, fg) - (plain(v, m, gaps, fg) + 40.0)).abs().max()
    print(f"max |f(a v + c) - (a f(v) + c)|: {err:.2e}; without window norm {err_plain:.2e}")
    assert err < 1e-3 and err_plain > 1.0
