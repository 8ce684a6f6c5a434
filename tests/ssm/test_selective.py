"""Tests of ``selective_scan_ref`` against a scalar loop written from the Mamba equations.

The oracle below loops over batch, channel, time and state with Python numbers:

    Δ      = softplus(δ + δ_bias) (or δ + δ_bias) times the gap g_{b,l}
    x_n    = exp(Δ A_{d,n}) x_n + Δ B_n u            (B_n, C_n picked per mode)
    y      = Σ_n C_n x_n  (2 Re(.) if complex),  + D_d u,  times silu(z)
"""

from __future__ import annotations

import cmath
import itertools
import math

import pytest
import torch

from ssmts.ssm.selective import selective_scan_ref

BATCH, DIM, LENGTH, NSTATE = 2, 3, 5, 4


def _pick(t, mode, b, d, n, l):
    """The (b, d, n, l) entry of B or C in any of the four layouts."""
    if mode == "fixed":
        return t[d][n]
    if mode == "variable":
        return t[b][n][l]
    groups = len(t[b])
    return t[b][d // (DIM // groups)][n][l]


def naive_selective(u, delta, A, B, C, bc_mode, D=None, z=None, delta_bias=None,
                    delta_softplus=False, gaps=None, is_complex=False):
    """Scalar loop over (b, d, l, n); returns out (b, D, L) and last state (b, D, N) as lists."""
    u, delta, A, B, C = (t.tolist() for t in (u, delta, A, B, C))
    D, z, delta_bias, gaps = (None if t is None else t.tolist() for t in (D, z, delta_bias, gaps))
    out = [[[0.0] * LENGTH for _ in range(DIM)] for _ in range(BATCH)]
    last = [[None] * DIM for _ in range(BATCH)]
    for b in range(BATCH):
        for d in range(DIM):
            x = [0.0] * NSTATE
            for l in range(LENGTH):
                dt = delta[b][d][l] + (delta_bias[d] if delta_bias is not None else 0.0)
                if delta_softplus:
                    dt = math.log1p(math.exp(dt))
                if gaps is not None:
                    dt *= gaps[b][l]
                y = 0.0
                for n in range(NSTATE):
                    bn, cn = _pick(B, bc_mode[0], b, d, n, l), _pick(C, bc_mode[1], b, d, n, l)
                    x[n] = cmath.exp(dt * A[d][n]) * x[n] + dt * bn * u[b][d][l]
                    y += cn * x[n]
                y = 2 * y.real if is_complex else y.real
                if D is not None:
                    y += D[d] * u[b][d][l]
                if z is not None:
                    zz = z[b][d][l]
                    y *= zz / (1 + math.exp(-zz))
                out[b][d][l] = y
            last[b][d] = list(x)
    return torch.tensor(out, dtype=torch.float64), torch.tensor(last, dtype=torch.complex128)


def _bc(mode, gen, cplx, groups=None):
    shape = {"fixed": (DIM, NSTATE), "variable": (BATCH, NSTATE, LENGTH),
             "grouped": (BATCH, groups, NSTATE, LENGTH)}[mode]
    t = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.complex(t, torch.randn(shape, generator=gen, dtype=torch.float64)) if cplx else t


def _inputs(gen, is_complex, modes=("fixed", "fixed"), groups=(1, 1)):
    u = torch.randn(BATCH, DIM, LENGTH, generator=gen, dtype=torch.float64)
    delta = 0.5 * torch.randn(BATCH, DIM, LENGTH, generator=gen, dtype=torch.float64)
    A = -0.2 - torch.rand(DIM, NSTATE, generator=gen, dtype=torch.float64)
    if is_complex:
        A = torch.complex(A, 3 * torch.randn(DIM, NSTATE, generator=gen, dtype=torch.float64))
    B = _bc(modes[0], gen, is_complex, groups[0])
    C = _bc(modes[1], gen, is_complex, groups[1])
    extra = {
        "D": torch.randn(DIM, generator=gen, dtype=torch.float64),
        "z": torch.randn(BATCH, DIM, LENGTH, generator=gen, dtype=torch.float64),
        "delta_bias": 0.3 * torch.randn(DIM, generator=gen, dtype=torch.float64),
        "gaps": 0.2 + 2 * torch.rand(BATCH, LENGTH, generator=gen, dtype=torch.float64),
    }
    return (u, delta, A, B, C), extra


BC_CASES = {"fixed": (("fixed", "fixed"), (None, None)),
            "variable": (("variable", "variable"), (None, None)),
            "group1": (("grouped", "grouped"), (1, 1)),
            "group3": (("grouped", "grouped"), (3, 3)),
            "mixed": (("variable", "grouped"), (None, 3))}
FLAG_SETS = [dict(), dict(D=1, z=1, delta_bias=1, delta_softplus=True, gaps=1),
             dict(D=1, delta_softplus=True), dict(z=1, delta_bias=1, gaps=1),
             dict(delta_bias=1, delta_softplus=True, gaps=1)]


@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("bc", list(BC_CASES))
@pytest.mark.parametrize("flags", range(len(FLAG_SETS)))
def test_matches_scalar_loop(is_complex, bc, flags):
    modes, groups = BC_CASES[bc]
    gen = torch.Generator().manual_seed(100 + flags + 10 * is_complex)
    args, extra = _inputs(gen, is_complex, modes, groups)
    chosen = FLAG_SETS[flags]
    kw = {k: extra[k] for k in ("D", "z", "delta_bias", "gaps") if chosen.get(k)}
    soft = chosen.get("delta_softplus", False)
    out, last = selective_scan_ref(*args, **kw, delta_softplus=soft, return_last_state=True)
    out_only = selective_scan_ref(*args, **kw, delta_softplus=soft)
    want, want_last = naive_selective(*args, modes, **kw, delta_softplus=soft, is_complex=is_complex)
    err = float((out - want).abs().max())
    err_last = float((last.to(torch.complex128) - want_last).abs().max())
    print(f"{bc} complex={is_complex} flags={chosen}: out err {err:.2e}, last-state err {err_last:.2e}")
    assert out.shape == (BATCH, DIM, LENGTH) and last.shape == (BATCH, DIM, NSTATE)
    assert last.is_complex() == is_complex
    assert err < 1e-12 and err_last < 1e-12
    assert torch.equal(out, out_only)


def test_complex_A_with_real_B_C():
    """Complex A with real B/C: the state is complex and y = 2 Re(C x)."""
    gen = torch.Generator().manual_seed(7)
    (u, delta, A, _, _), extra = _inputs(gen, True)
    B, C = _bc("variable", gen, False), _bc("fixed", gen, False)
    out = selective_scan_ref(u, delta, A, B, C, D=extra["D"], delta_softplus=True)
    want, _ = naive_selective(u, delta, A, B, C, ("variable", "fixed"), D=extra["D"],
                              delta_softplus=True, is_complex=True)
    assert float((out - want).abs().max()) < 1e-12


def test_gaps_of_one_equal_no_gaps():
    gen = torch.Generator().manual_seed(8)
    args, _ = _inputs(gen, False, ("variable", "variable"))
    ones = torch.ones(BATCH, LENGTH, dtype=torch.float64)
    torch.testing.assert_close(selective_scan_ref(*args, gaps=ones, delta_softplus=True),
                               selective_scan_ref(*args, delta_softplus=True), rtol=0, atol=0)


@pytest.mark.parametrize("is_complex", [False, True])
def test_gradcheck(is_complex):
    gen = torch.Generator().manual_seed(9)
    (u, delta, A, B, C), extra = _inputs(gen, is_complex, ("variable", "grouped"), (None, 3))
    D, z, bias = extra["D"], extra["z"], extra["delta_bias"]
    inputs = tuple(t.clone().requires_grad_() for t in (u, delta, A, B, C, D, z, bias))
    gaps = extra["gaps"]

    def fn(u_, delta_, A_, B_, C_, D_, z_, bias_):
        return selective_scan_ref(u_, delta_, A_, B_, C_, D=D_, z=z_, delta_bias=bias_,
                                  delta_softplus=True, gaps=gaps)

    assert torch.autograd.gradcheck(fn, inputs)


def test_float32_in_float32_out():
    gen = torch.Generator().manual_seed(10)
    (u, delta, A, B, C), extra = _inputs(gen, False, ("variable", "variable"))
    f32 = [t.float() for t in (u, delta, A, B, C)]
    out, last = selective_scan_ref(*f32, D=extra["D"].float(), return_last_state=True)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    want = selective_scan_ref(u, delta, A, B, C, D=extra["D"])
    assert float((out.double() - want).abs().max()) < 1e-5


def _bad_cases(u):
    """(argument name, bad keyword arguments) pairs; all other arguments stay valid."""
    b, d, l, n = BATCH, DIM, LENGTH, NSTATE

    def f(*shape):
        return torch.ones(shape, dtype=torch.float64)

    u_nan = u.clone()
    u_nan[1, 2, 3] = float("nan")
    return [
        ("u", dict(u=f(b, d))),
        ("u", dict(u=u_nan)),
        ("delta", dict(delta=f(b, d, l + 1))),
        ("A", dict(A=f(d + 1, n))),
        ("A", dict(A=f(d))),
        ("B", dict(B=f(b, n, l + 1))),
        ("B", dict(B=f(b, 2, n, l))),  # 2 groups do not divide D=3
        ("B", dict(B=f(d, n + 1))),
        ("C", dict(C=f(b, n + 1, l))),
        ("C", dict(C=f(b, n))),
        ("D", dict(D=f(d + 1))),
        ("z", dict(z=f(b, d, l - 1))),
        ("delta_bias", dict(delta_bias=f(d, 1))),
        ("gaps", dict(gaps=f(b, l + 1))),
        ("gaps", dict(gaps=torch.cat([f(b, l - 1), torch.zeros(b, 1, dtype=torch.float64)], 1))),
        ("gaps", dict(gaps=-f(b, l))),
    ]


@pytest.mark.parametrize("case", range(16))
def test_bad_inputs_raise_naming_the_argument(case):
    gen = torch.Generator().manual_seed(11)
    args, extra = _inputs(gen, False)
    name, bad = _bad_cases(args[0])[case]
    kw = dict(zip(("u", "delta", "A", "B", "C"), args))
    kw.update(bad)
    with pytest.raises(ValueError, match=f"^{name}:"):
        selective_scan_ref(**kw)


def test_all_flag_combinations_run():
    """Every combination of the optional arguments runs and changes the output as expected."""
    gen = torch.Generator().manual_seed(12)
    args, extra = _inputs(gen, False, ("variable", "variable"))
    outs = {}
    for mask in itertools.product([False, True], repeat=4):
        kw = {k: extra[k] for k, m in zip(("D", "z", "delta_bias", "gaps"), mask) if m}
        outs[mask] = selective_scan_ref(*args, **kw, delta_softplus=True)
    assert len({o.sum().item() for o in outs.values()}) == 16  # each argument has an effect
