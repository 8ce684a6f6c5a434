"""``selective_scan_fast`` against the loop reference ``selective_scan_ref``.

Forward output, last state and every gradient under one random upstream gradient,
float64 (rel. error < 1e-10) and float32 (< 1e-5), for variable, grouped, fixed and
mixed B/C, each optional input on and off, with the time blocks forced small so
that lengths are not multiples of the block; gradcheck on a tiny float64 case.
"""

import pytest
import torch

import ssmts.ssm.selective_fast as sf
from ssmts.ssm.selective import selective_scan_ref
from ssmts.ssm.selective_fast import selective_scan_fast

BATCH, DIM, LENGTH, NSTATE = 2, 6, 37, 4
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
FLAGS = {  # which optional inputs are given: D, z, delta_bias, softplus, gaps
    "all": dict(D=True, z=True, bias=True, softplus=True, gaps=True),
    "none": dict(D=False, z=False, bias=False, softplus=False, gaps=False),
    "softplus-bias": dict(D=True, z=False, bias=True, softplus=True, gaps=False),
    "gaps-z": dict(D=False, z=True, bias=False, softplus=False, gaps=True),
}
BC = {"variable": ("variable", "variable"), "grouped": ("grouped3", "grouped2"),
      "fixed": ("fixed", "fixed"), "mixed": ("fixed", "grouped3"),
      "mixed2": ("variable", "fixed")}


@pytest.fixture(params=[1, 3, None], ids=["T1", "T3", "Tdefault"])
def block(request, monkeypatch):
    """Force T time steps per block (None: the default, one block for these shapes)."""
    if request.param is not None:
        monkeypatch.setattr(sf, "_BLOCK_ELEMS", BATCH * DIM * NSTATE * request.param)
    return request.param


def _bc(mode, gen, dtype, length=LENGTH):
    if mode == "fixed":
        return torch.randn(DIM, NSTATE, generator=gen, dtype=dtype)
    if mode == "variable":
        return torch.randn(BATCH, NSTATE, length, generator=gen, dtype=dtype)
    groups = int(mode[-1])
    return torch.randn(BATCH, groups, NSTATE, length, generator=gen, dtype=dtype)


def make_inputs(bc_modes, flags, dtype=torch.float64, seed=0, complex_=False, length=LENGTH):
    """Random (never zero) inputs; returns (list of 8 tensors or None, kwargs)."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    u, delta = rnd(BATCH, DIM, length), 0.5 * rnd(BATCH, DIM, length)
    A = -(0.2 + torch.rand(DIM, NSTATE, generator=gen, dtype=dtype))
    B, C = (_bc(m, gen, dtype, length) for m in bc_modes)
    if complex_:
        A = torch.complex(A, rnd(DIM, NSTATE))
        B = torch.complex(B, torch.randn(B.shape, generator=gen, dtype=dtype))
    if not flags["softplus"]:
        delta = delta.abs() + 0.05  # a positive step without softplus
    ins = [u, delta, A, B, C, rnd(DIM) if flags["D"] else None,
           rnd(BATCH, DIM, length) if flags["z"] else None,
           rnd(DIM) if flags["bias"] else None]
    gaps = 0.5 + torch.rand(BATCH, length, generator=gen, dtype=dtype) if flags["gaps"] else None
    return ins, dict(delta_softplus=flags["softplus"], gaps=gaps)


def run(fn, ins, kw, grad_seed=1):
    """Output, last state and the gradients of every given input."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in ins]
    out, last = fn(*leaves, return_last_state=True, **kw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=out.dtype)
    out.backward(g)
    return out.detach(), last, [None if t is None else t.grad for t in leaves]


def rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def compare(ins, kw, tol):
    out, last, grads = run(selective_scan_fast, ins, kw)
    r_out, r_last, r_grads = run(selective_scan_ref, ins, kw)
    errs = {"out": rel(out, r_out), "last": rel(last, r_last)}
    for name, g, rg in zip(NAMES, grads, r_grads):
        if rg is not None:
            assert g is not None and g.shape == rg.shape and g.dtype == rg.dtype, name
            errs[name] = rel(g, rg)
    print({k: f"{v:.1e}" for k, v in errs.items()})
    assert out.dtype == r_out.dtype and last.dtype == r_last.dtype
    assert max(errs.values()) < tol, errs


@pytest.mark.parametrize("bc", BC)
@pytest.mark.parametrize("flags", FLAGS)
def test_matches_reference_float64(bc, flags, block):
    ins, kw = make_inputs(BC[bc], FLAGS[flags])
    compare(ins, kw, 1e-10)


@pytest.mark.parametrize("bc", ["variable", "grouped", "mixed"])
def test_matches_reference_float32(bc, block):
    ins, kw = make_inputs(BC[bc], FLAGS["all"], dtype=torch.float32)
    compare(ins, kw, 1e-5)


@pytest.mark.parametrize("bc", ["variable", "fixed", "mixed2"])
def test_complex_matches_reference(bc):
    ins, kw = make_inputs(BC[bc], FLAGS["all"], complex_=True)
    compare(ins, kw, 1e-10)


def test_long_sequence_several_blocks(monkeypatch):
    """L = 250 in blocks of 70 steps: 3 full blocks and a tail, long carries."""
    monkeypatch.setattr(sf, "_BLOCK_ELEMS", BATCH * DIM * NSTATE * 70)
    assert sf._block_len(250, BATCH * DIM * NSTATE) == 70
    ins, kw = make_inputs(BC["variable"], FLAGS["all"], length=250, seed=4)
    ins[1] = ins[1] - 2.0  # softplus(delta - 2): moderate steps, long memory
    compare(ins, kw, 1e-10)


def test_no_grad_path_equals_grad_path(monkeypatch):
    """Without gradients the blocks reuse one buffer; outputs and state must not change."""
    monkeypatch.setattr(sf, "_BLOCK_ELEMS", BATCH * DIM * NSTATE * 5)
    ins, kw = make_inputs(BC["grouped"], FLAGS["all"], seed=2)
    with torch.no_grad():
        out, last = selective_scan_fast(*ins, return_last_state=True, **kw)
    r_out, r_last, _ = run(selective_scan_fast, ins, kw)
    assert torch.equal(out, r_out) and torch.equal(last, r_last)
    assert last.shape == (BATCH, DIM, NSTATE)


def test_mixed_dtypes_follow_reference():
    """float32 u with float64 A computes in float64 and returns u's dtype, like the reference."""
    ins, kw = make_inputs(BC["variable"], FLAGS["all"], seed=3)
    ins[0] = ins[0].float()
    out, last = selective_scan_fast(*ins, return_last_state=True, **kw)
    r_out, r_last = selective_scan_ref(*ins, return_last_state=True, **kw)
    assert out.dtype == torch.float32 and last.dtype == torch.float64
    assert rel(out, r_out) < 1e-6 and rel(last, r_last) < 1e-12


def test_gradcheck_tiny(monkeypatch):
    monkeypatch.setattr(sf, "_BLOCK_ELEMS", 2 * 3 * 2 * 2)  # 2 steps per block
    gen = torch.Generator().manual_seed(5)
    b, d, n, length = 2, 3, 2, 5
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64,  # noqa: E731
                                 requires_grad=True)
    args = (rnd(b, d, length), rnd(b, d, length), (-0.5 - torch.rand(d, n, generator=gen,
            dtype=torch.float64)).requires_grad_(), rnd(b, n, length), rnd(b, n, length),
            rnd(d), rnd(b, d, length), rnd(d))
    gaps = 0.5 + torch.rand(b, length, generator=gen, dtype=torch.float64)
    fn = lambda *a: selective_scan_fast(*a, delta_softplus=True, gaps=gaps)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)
    fixed = (args[0], args[1], args[2], rnd(d, n), rnd(b, 3, n, length))  # fixed B, grouped C
    assert torch.autograd.gradcheck(lambda *a: selective_scan_fast(*a, delta_softplus=True), fixed)


@pytest.mark.parametrize("bad,name", [("u", "u"), ("B", "B"), ("gaps", "gaps"), ("D", "D")])
def test_bad_input_names_the_argument(bad, name):
    ins, kw = make_inputs(BC["variable"], FLAGS["all"])
    if bad == "u":
        ins[0] = ins[0][0]
    elif bad == "B":
        ins[3] = ins[3][..., :-1]
    elif bad == "gaps":
        kw["gaps"] = -kw["gaps"]
    else:
        ins[5] = ins[5].clone()
        ins[5][0] = float("nan")
    with pytest.raises(ValueError, match=name):
        selective_scan_fast(*ins, **kw)


def test_mamba_layer_through_fast_path(monkeypatch):
    """The Mamba layer gives the same output with the fast scan plugged into the dispatcher."""
    from ssmts.layers.mamba import Mamba
    from ssmts.ssm import dispatch

    torch.manual_seed(0)
    layer = Mamba(8, d_state=4).double()
    x = torch.randn(2, 21, 8, dtype=torch.float64)
    dt = 0.5 + torch.rand(2, 21, dtype=torch.float64)
    monkeypatch.setattr(dispatch, "_torch_selective_scan", selective_scan_ref)
    ref = layer(x, dt)
    monkeypatch.setattr(dispatch, "_torch_selective_scan", selective_scan_fast)
    assert rel(layer(x, dt), ref) < 1e-12
