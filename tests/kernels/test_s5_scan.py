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


@pytest.mark.parametrize("method,length,P,gaps,h0,proj", CASES)
def test_s5_scan_matches_reference(method, length, P, gaps, h0, proj):
    d = _inputs(length * 100 + P, 2, length, P, 4, gaps, h0, proj)
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
    print(method, length, P, {k: f"{v:.1e}" for k, v in errs.items()})
    for k, v in errs.items():
        assert v < 1e-5, (k, v)


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
