"""Fused selective scan v3 (Triton, chunked 1-D scans) vs the float64 torch reference.

Runs under the Triton interpreter on CPU (conftest sets TRITON_INTERPRET=1), where the
forward's chunk is 8 steps and the backward's 16 (two forward carries per backward
chunk): L in {1, 17, 40, 64} covers a single step, partial last chunks and whole chunks;
G in {1, 2} covers shared and grouped B/C, two channels a program where G allows.
"""

import pytest
import torch

triton = pytest.importorskip("triton")

from ssmts.kernels.selective_scan_v3 import selective_scan, selective_scan_fn  # noqa: E402
from ssmts.ssm.selective import selective_scan_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "gaps"]


def _inputs(batch, dim, n, length, groups, dtype, seed, with_z=True, with_d=True,
            with_bias=True, with_gaps=True, bc3=False, softplus=True):
    """Random inputs (never zeros); the step (after softplus) roughly in 1e-3 .. 1e-1."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    bc_shape = (batch, n, length) if bc3 else (batch, groups, n, length)
    t = {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length, scale=0.7, shift=-4.0) if softplus
        else torch.rand(batch, dim, length, generator=g, dtype=torch.float64) * 0.1 + 1e-3,
        "A": -(torch.rand(dim, n, generator=g, dtype=torch.float64) * 3 + 0.3),
        "B": r(*bc_shape), "C": r(*bc_shape),
        "D": r(dim) if with_d else None,
        "z": r(batch, dim, length) if with_z else None,
        "delta_bias": (r(dim, scale=0.3) if softplus else torch.rand(dim, generator=g,
                       dtype=torch.float64) * 0.01) if with_bias else None,
        "gaps": (torch.rand(batch, length, generator=g, dtype=torch.float64) * 1.5 + 0.25)
        if with_gaps else None,
    }
    low = {k: None if v is None else v.to(dtype if k not in ("A", "D", "delta_bias", "gaps")
                                          else torch.float32).to(DEV).requires_grad_(True)
           for k, v in t.items()}
    ref = {k: None if v is None else v.detach().double().cpu().requires_grad_(True)
           for k, v in low.items()}
    return low, ref


def _run(fn, t, softplus, **kw):
    return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
              softplus, True, t["gaps"], **kw)


def _rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _check(low, ref, softplus, tol, **kw):
    out, last = _run(selective_scan, low, softplus, **kw)
    rout, rlast = _run(selective_scan_ref, ref, softplus)
    assert out.dtype == low["u"].dtype and last.shape == rlast.shape
    gen = torch.Generator().manual_seed(7)
    gout = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    glast = torch.randn(last.shape, generator=gen, dtype=torch.float64)
    errs = {"out": _rel(out, rout), "last": _rel(last, rlast)}
    keys = [k for k in NAMES if low[k] is not None]
    grads = torch.autograd.grad((out.double() * gout.to(DEV)).sum()
                                + (last.double() * glast.to(DEV)).sum(), [low[k] for k in keys])
    rgrads = torch.autograd.grad((rout * gout).sum() + (rlast * glast).sum(),
                                 [ref[k] for k in keys])
    for k, a, b in zip(keys, grads, rgrads):
        assert a.shape == b.shape, k
        errs["d" + k] = _rel(a, b)
    print({k: f"{v:.2e}" for k, v in errs.items()})
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"relative errors above {tol}: {bad}"


@pytest.mark.parametrize("length,groups,n,flags", [
    (17, 1, 4, dict(bc3=True)),                                       # 3-D B/C, partial chunk
    (40, 2, 6, dict(with_z=False, with_d=False, with_bias=False)),   # G=2, N not a power of 2
    (64, 1, 4, dict(with_gaps=False)),                                # whole chunks, 4-D G=1
    (1, 2, 8, {}),                                                    # a single step
])
def test_fp32_matches_float64_reference(length, groups, n, flags):
    low, ref = _inputs(2, 4, n, length, groups, torch.float32, seed=length, **flags)
    _check(low, ref, True, tol=1e-5)


def test_deterministic_mode_no_softplus():
    """Deterministic reductions (partial sums, fixed config) give the same gradients."""
    low, ref = _inputs(2, 8, 4, 33, 2, torch.float32, seed=3, softplus=False)
    _check(low, ref, False, tol=1e-5, deterministic=True)


def test_deterministic_is_bitwise_repeatable():
    low, _ = _inputs(2, 4, 4, 20, 1, torch.float32, seed=5, with_z=False)
    outs = []
    for _ in range(2):
        out, last = _run(selective_scan, low, True, deterministic=True)
        outs.append(torch.autograd.grad(out.sum() + last.sum(), [low["B"], low["C"]]))
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_within_loose_tolerance(dtype):
    low, ref = _inputs(2, 4, 4, 24, 2, dtype, seed=11)
    _check(low, ref, True, tol=2e-2)


def test_alias_and_fallback_for_fixed_bc():
    """selective_scan_fn is the same function; (D, N) B/C goes to the torch reference."""
    assert selective_scan_fn is selective_scan
    g = torch.Generator().manual_seed(1)
    u, dl = torch.randn(1, 3, 5, generator=g), torch.randn(1, 3, 5, generator=g) - 3
    A, B, C = -torch.rand(3, 2, generator=g) - 0.5, torch.randn(3, 2, generator=g), \
        torch.randn(3, 2, generator=g)
    torch.testing.assert_close(selective_scan(u, dl, A, B, C, delta_softplus=True),
                               selective_scan_ref(u, dl, A, B, C, delta_softplus=True))


def test_bad_shape_names_argument():
    u = torch.randn(1, 3, 5)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(u, torch.randn(1, 3, 4), -torch.rand(3, 2), torch.randn(1, 2, 5),
                       torch.randn(1, 2, 5))
