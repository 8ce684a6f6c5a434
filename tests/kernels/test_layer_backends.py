"""Layers give the same outputs and gradients through the Triton kernels (interpreter on CPU)."""

import pytest
import torch

from ssmts.layers.mamba import Mamba
from ssmts.layers.s5 import S5
from ssmts.testing import random_gaps, rel_err


@pytest.mark.parametrize("make", [lambda: S5(4, 8), lambda: S5(4, 8, discretization="bilinear"),
                                  lambda: Mamba(4, d_state=4)], ids=["s5", "s5-bilinear", "mamba"])
def test_layer_triton_backend_matches_torch(make):
    torch.manual_seed(0)
    m = make()
    x = torch.randn(2, 21, 4)
    dt = random_gaps(2, 21, dtype=torch.float32)
    m.backend = "torch"
    y_t = m(x, dt)
    g_t = torch.autograd.grad(y_t.square().sum(), list(m.parameters()))
    m.backend = "triton"
    y_k = m(x, dt)
    g_k = torch.autograd.grad(y_k.square().sum(), list(m.parameters()))
    assert rel_err(y_k, y_t) < 1e-5
    for a, b in zip(g_k, g_t):
        assert rel_err(a, b) < 1e-4
