"""The value checks behind every public op: cheap result check, full input check to name."""

import pytest
import torch

from ssmts.ssm._validate import check_finite, result_finite
from ssmts.ssm.s5_ref import check_s5_args
from ssmts.ssm.selective import check_selective_scan_args


def _rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(sum(shape)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
def test_result_finite_flags_nan_inf_bad_gaps_and_extra(dtype):
    out = _rand(2, 3, 5, dtype=dtype)
    gaps = 0.5 + torch.rand(2, 5)
    assert result_finite(out, gaps, torch.tensor(True))
    for bad in (float("nan"), float("inf")):
        o = out.clone()
        o[1, 2, 3] = bad
        assert not result_finite(o)
    g = gaps.clone()
    g[0, 4] = 0.0
    assert not result_finite(out, g)
    assert not result_finite(out, gaps, torch.tensor(False))


def test_shape_only_checks_skip_values_and_full_checks_name_the_input():
    u, dt, z = _rand(2, 4, 6), _rand(2, 4, 6), _rand(2, 4, 6)
    A, B, C = -torch.rand(4, 3) - 0.1, _rand(2, 3, 6), _rand(2, 3, 6)
    dt[0, 1, 2] = float("nan")
    assert check_selective_scan_args(u, dt, A, B, C, z=z, values=False)[:3] == (2, 4, 6)
    with pytest.raises(ValueError, match="delta"):
        check_selective_scan_args(u, dt, A, B, C, z=z)
    lam = torch.complex(-torch.rand(5) - 0.1, torch.randn(5))
    lam[2] = complex(0.3, 1.0)  # unstable
    bu = torch.complex(_rand(2, 6, 5), _rand(2, 6, 5))
    check_s5_args(lam, torch.zeros(5), bu, values=False)
    with pytest.raises(ValueError, match="Lambda"):
        check_s5_args(lam, torch.zeros(5), bu)
    with pytest.raises(ValueError, match="x"):
        check_finite(torch.tensor([1.0, float("inf")]), "x")
