"""Three views of each layer agree, and the control-theory view is the layer's own system."""

import numpy as np
import pytest
import torch

from ssmts.layers.mamba import Mamba
from ssmts.layers.s4 import S4
from ssmts.layers.s5 import S5
from ssmts.ssm.conv import fft_conv
from ssmts.testing import rel_err, run_steps

H, L = 4, 40


def _conv_mimo(u, h):
    """y_t = Σ_j h_j u_{t−j}: u (L, m), h (L, p, m) -> (L, p)."""
    return torch.stack([sum(h[j] @ u[t - j] for j in range(t + 1)) for t in range(u.shape[0])])


@pytest.mark.parametrize("mode", ["diag", "dplr"])
def test_s4_kernel_scan_recurrence_and_lti_agree(mode):
    torch.manual_seed(0)
    m = S4(H, 8, mode=mode, activation="identity").double().eval()
    x = torch.randn(1, L, H, dtype=torch.float64)
    with torch.no_grad():
        K = m.kernel(L)[0]  # (H, L)
        y_conv = fft_conv(x[0].T, K, m.D).T  # (L, H)
        y_scan = m(x, torch.ones(1, L, dtype=torch.float64))[0]
        y_rec = run_steps(m, x)[0]
    assert rel_err(y_conv, y_rec) < 1e-10 and rel_err(y_scan, y_rec) < 1e-10
    for ch in range(H):
        sys_d = m.lti(channel=ch, dt=1.0)
        _, imp = sys_d.impulse(n=L)  # (L, 1, 1)
        k = K[ch].numpy().copy()
        k[0] += m.D[ch].item()
        np.testing.assert_allclose(imp[:, 0, 0], k, rtol=1e-9, atol=1e-12)
        sys_c = m.lti(channel=ch)
        assert sys_c.is_continuous and sys_c.is_stable() and sys_c.n_states == 8
        assert np.all(sys_c.poles().real < 0)


def test_s5_scan_recurrence_and_lti_convolution_agree():
    torch.manual_seed(0)
    m = S5(H, 8, activation="identity").double().eval()
    x = torch.randn(1, L, H, dtype=torch.float64)
    with torch.no_grad():
        y_scan = m(x)[0]
        y_rec = run_steps(m, x)[0]
    sys_d = m.lti(dt=1.0)
    _, imp = sys_d.impulse(n=L)  # (L, H, H): the MIMO convolution kernel (+D at lag 0)
    y_conv = _conv_mimo(x[0], torch.as_tensor(imp))
    assert rel_err(y_scan, y_rec) < 1e-10
    assert rel_err(y_conv, y_rec) < 1e-10
    sys_c = m.lti()
    assert sys_c.n_states == 8 and sys_c.n_inputs == H and sys_c.is_stable()
    # discrete poles are exp(Λ Δ_p) and their conjugates
    z = np.exp((m.Lambda * torch.exp(m.log_dt)).detach().numpy())
    want = np.sort_complex(np.concatenate([z, z.conj()]))
    np.testing.assert_allclose(np.sort_complex(sys_d.poles()), want, atol=1e-10)


def test_s5_bidirectional_lti_directions():
    m = S5(H, 8, bidirectional=True).double()
    a, b = m.lti(direction=0), m.lti(direction=1)
    np.testing.assert_allclose(a.A, b.A)
    assert not np.allclose(a.C, b.C)
    with pytest.raises(ValueError, match="direction"):
        S5(H, 8).lti(direction=1)


def test_mamba_frozen_system_reproduces_the_step():
    """At step t the frozen discrete system maps the layer's state and the conv output to
    the layer's ungated inner output for that channel."""
    torch.manual_seed(0)
    m = Mamba(H, d_state=4).double().eval()
    x = torch.randn(1, 12, H, dtype=torch.float64)
    dt = torch.rand(1, 12, dtype=torch.float64) + 0.5
    t, c = 7, 3
    with torch.no_grad():
        state = m.initial_state(1, dtype=torch.float64)
        for k in range(t):
            _, state = m.step(x[:, k], state, dt[:, k])
        xc, _, _, _, _ = m._ssm_inputs(x)
        sys_d = m.lti_at(x, t, channel=c, dt=dt, discrete=True)
        y_sys = sys_d.C @ state[1][0, c].numpy() + sys_d.D[0] * xc[0, c, t].item()
        # the layer's own inner output at t (before the SiLU gate): recompute by one step
        conv_s, ssm_s = state
        new_state = m.step(x[:, t], state, dt[:, t])[1][1]
        C_t = m._ssm_inputs(x)[4][0, :, t]
        y_layer = (new_state[0, c] * C_t).sum() + m.D[c] * xc[0, c, t]
    np.testing.assert_allclose(y_sys[0], y_layer.item(), rtol=1e-12)
    np.testing.assert_allclose(np.sort(sys_d.poles().real), np.sort(np.exp(
        (m.A[c] * float(sys_d.dt)).detach().numpy())), rtol=1e-12)
    sys_c = m.lti_at(x, t, channel=c, dt=dt)
    assert sys_c.is_continuous and sys_c.is_stable()
    with pytest.raises(ValueError, match="t:"):
        m.lti_at(x, 12)
