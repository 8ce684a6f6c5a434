"""Triton S5 scan vs the float64 torch reference: outputs, last state, every gradient."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

pytest.importorskip("triton")

from ssmts.kernels.s5_scan import s5_scan  # noqa: E402
from ssmts.ssm.s5_ref import s5_scan as s5_scan_dispatch  # noqa: E402
from ssmts.ssm.s5_ref import s5_scan_ref  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(seed, batch, length, P, H, gaps, h0, proj):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = {
        "Lambda": torch.complex(-0.05 - 0.5 * torch.rand(P, generator=g), 3 * r(P)),
        "log_dt": torch.log(0.01 + 0.09 * torch.rand(P, generator=g)),
        "Bu": torch.complex(r(batch, length, P), r(batch, length, P)),
        "gaps": 0.1 + 2.0 * torch.rand(batch, length, generator=g) if gaps else None,
        "h0": torch.complex(r(batch, P), r(batch, P)) if h0 else None,
    }
    if proj:
        d.update(C=torch.complex(r(H, P), r(H, P)) / P ** 0.5, D=r(H), u=r(batch, length, H))
    return {k: (v.to(DEV) if v is not None else None) for k, v in d.items()}


def _rel(a, b):
    return ((a.to(b.dtype) - b).abs().max() / b.abs().max()).item()


CASES = [  # method, L, P, gaps, h0, proj
    ("zoh", 1, 8, True, False, False),
    ("zoh", 13, 12, False, True, False),
    ("zoh", 40, 16, True, False, True),
    ("bilinear", 13, 8, True, True, True),
    ("bilinear", 40, 12, True, True, False),
]


def _check_against_reference(d, method):
    """Forward, last state and every gradient of s5_scan vs float64 s5_scan_ref: rel < 1e-5."""
    proj = d.get("C") is not None
    diff = [k for k in ("Lambda", "log_dt", "Bu", "h0", "C", "D") if d.get(k) is not None]
    ours = {k: (v.clone().requires_grad_(k in diff) if v is not None else None) for k, v in d.items()}
    wide = {k: (v.detach().to(torch.complex128 if v.is_complex() else torch.float64)
                .requires_grad_(k in diff) if v is not None else None) for k, v in d.items()}
    out, last = s5_scan(**ours, method=method, return_last_state=True)
    ref, ref_last = s5_scan_ref(**wide, method=method, return_last_state=True)
    assert out.dtype == (torch.float32 if proj else torch.complex64)
    gout = torch.randn(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(7)).to(DEV)
    glast = torch.randn(ref_last.shape, dtype=ref_last.dtype,
                        generator=torch.Generator().manual_seed(8)).to(DEV)
    grads = torch.autograd.grad((out, last), [ours[k] for k in diff],
                                (gout.to(out.dtype), glast.to(last.dtype)))
    ref_grads = torch.autograd.grad((ref, ref_last), [wide[k] for k in diff], (gout, glast))
    errs = {"out": _rel(out, ref), "last": _rel(last, ref_last)}
    errs.update({f"d{k}": _rel(a, b) for k, a, b in zip(diff, grads, ref_grads)})
    print(method, {k: f"{v:.1e}" for k, v in errs.items()})
    for k, v in errs.items():
        assert v < 1e-5, (k, v)


@pytest.mark.parametrize("method,length,P,gaps,h0,proj", CASES)
def test_s5_scan_matches_reference(method, length, P, gaps, h0, proj):
    _check_against_reference(_inputs(length * 100 + P, 2, length, P, 4, gaps, h0, proj), method)


def test_s5_scan_zoh_steps_from_tiny_to_large_and_tiny_lambda():
    """|Lambda dt| from ~1e-6 (the ZOH input gain must not cancel) to ~20; |Lambda| = 1e-6."""
    d = _inputs(11, 2, 24, 16, 4, True, True, False)
    lam = d["Lambda"].clone()
    lam[0] = complex(-1e-6, 0.0)  # near-integrator: F = (Abar - 1) / Lambda ~ dt
    lam[1] = complex(-3.0, 40.0)  # fast oscillation: |z| up to ~20 with the large steps below
    d["Lambda"] = lam
    d["log_dt"] = torch.linspace(-13.0, -0.5, 16, dtype=torch.float32).to(DEV)
    _check_against_reference(d, "zoh")


def test_s5_scan_float64_kernel_and_dispatch():
    d = _inputs(3, 2, 5, 8, 4, True, False, False)
    d64 = {k: (v.to(torch.complex128 if v.is_complex() else torch.float64) if v is not None else None)
           for k, v in d.items()}
    out = s5_scan_dispatch(**d64, backend="triton")
    ref = s5_scan_dispatch(**d64, backend="torch")
    assert out.dtype == torch.complex128
    assert _rel(out, ref) < 1e-10
    with pytest.raises(ValueError, match="backend"):
        s5_scan_dispatch(**d, backend="cuda")


def test_s5_scan_other_launch_configs(monkeypatch):
    """Forward and backward with their own (non-default) tile shapes, ragged in L and P."""
    from ssmts.kernels import s5_scan as ks5

    monkeypatch.setitem(ks5.CONFIG, "CHUNK", 8)
    monkeypatch.setitem(ks5.CONFIG, "BLOCK_P", 4)
    monkeypatch.setitem(ks5.BWD_CONFIG, "CHUNK", 4)
    monkeypatch.setitem(ks5.BWD_CONFIG, "BLOCK_P", 8)
    _check_against_reference(_inputs(5, 2, 19, 10, 4, True, True, False), "zoh")
