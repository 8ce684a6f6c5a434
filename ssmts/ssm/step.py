"""One recurrent step for many streams at once (streaming inference), S6 and S5.

``selective_state_update_ref`` follows mamba_ssm's ``selective_state_update``
(shapes and semantics) for a (batch, dim, dstate) state, plus a per-stream time
gap that multiplies the step after softplus::

    dt    = softplus(dt + dt_bias) * gap            (softplus if dt_softplus)
    state = exp(dt A) * state + dt B x
    out   = (state . C) + D x,  times silu(z) if z is given

``s5_step_ref`` is one step of the S5 recurrence of ``ssmts.ssm.s5_ref``.
Both update ``state`` in place and return the new output. ``selective_state_update``
and ``s5_step`` dispatch to the Triton kernels of ``ssmts.kernels.step``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validate import as_tensor, check_finite, check_positive, check_shape
from .s5_ref import _pick_backend, check_s5_args, discretize_s5

__all__ = ["selective_state_update_ref", "selective_state_update", "s5_step_ref", "s5_step",
           "check_state_update_args"]


def check_state_update_args(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, gap=None):
    """Validate the arguments of a selective state update; raise ``ValueError`` naming the bad one.

    Returns ``ngroups`` (0 when B and C are (batch, dstate)).
    """
    for name, t in (("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if state.ndim != 3:
        raise ValueError(f"state: expected shape (batch, dim, dstate), got {tuple(state.shape)}")
    batch, dim, dstate = state.shape
    check_shape(x, "x", (batch, dim), "(batch, dim) like state")
    check_shape(dt, "dt", (batch, dim), "(batch, dim) like state")
    check_shape(A, "A", (dim, dstate), "(dim, dstate) like state")
    ngroups = None
    for name, t in (("B", B), ("C", C)):
        g = 0 if t.ndim == 2 else (t.shape[1] if t.ndim == 3 else -1)
        ok = (t.ndim == 2 and t.shape == (batch, dstate)) or (
            t.ndim == 3 and t.shape[0] == batch and t.shape[2] == dstate and g > 0 and dim % g == 0)
        if not ok or (ngroups is not None and g != ngroups):
            raise ValueError(f"{name}: expected shape ({batch}, {dstate}) or ({batch}, G, {dstate}) "
                             f"with G dividing {dim} (same for B and C), got {tuple(t.shape)}")
        ngroups = g
    for name, t, shape in (("D", D, (dim,)), ("dt_bias", dt_bias, (dim,)), ("z", z, (batch, dim)),
                           ("gap", gap, (batch,))):
        if t is not None:
            check_shape(t, name, shape)
    for name, t in (("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C),
                    ("D", D), ("z", z), ("dt_bias", dt_bias)):
        if t is not None:
            check_finite(t.detach(), name)
    if gap is not None:
        check_positive(gap.detach(), "gap")
    return ngroups


def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                               dt_softplus: bool = False, gap=None):
    """One selective-SSM (S6) step for ``batch`` streams; updates ``state`` in place.

    Parameters
    ----------
    state : real tensor, shape (batch, dim, dstate)
        Current state; overwritten with the new state.
    x : tensor, shape (batch, dim)
        Input of this step.
    dt : tensor, shape (batch, dim)
        Step before ``dt_bias`` / softplus.
    A : real tensor, shape (dim, dstate)
        Continuous-time diagonal state matrix (negative entries).
    B, C : tensor, shape (batch, dstate) or (batch, ngroups, dstate)
        Input / output vectors; group ``g`` serves channels ``g*dim/ngroups ...``.
    D : tensor, shape (dim,), optional
        Skip term.
    z : tensor, shape (batch, dim), optional
        Gate: the output is multiplied by ``silu(z)``.
    dt_bias : tensor, shape (dim,), optional
        Added to ``dt`` before softplus.
    dt_softplus : bool
        Apply softplus to ``dt + dt_bias``.
    gap : real tensor, shape (batch,), optional
        Positive time gap of this step per stream; multiplies dt after softplus.

    Returns
    -------
    out : tensor, shape (batch, dim), dtype of ``x``
        Computed in float32 (float64 when ``state`` is float64).
    """
    ngroups = check_state_update_args(state, x, dt, A, B, C, D, z, dt_bias, gap)
    wdt = torch.float64 if state.dtype == torch.float64 else torch.float32
    dim = state.shape[1]
    dt = dt.to(wdt) if dt_bias is None else dt.to(wdt) + dt_bias.to(wdt)
    if dt_softplus:
        dt = F.softplus(dt)
    if gap is not None:
        dt = dt * gap.to(wdt)[:, None]
    if ngroups:
        B = B.to(wdt).repeat_interleave(dim // ngroups, dim=1)  # (batch, dim, dstate)
        C = C.to(wdt).repeat_interleave(dim // ngroups, dim=1)  # (batch, dim, dstate)
    else:
        B, C = B.to(wdt)[:, None, :], C.to(wdt)[:, None, :]  # (batch, 1, dstate)
    dA = torch.exp(dt[..., None] * A.to(wdt))  # (batch, dim, dstate)
    new = state.to(wdt) * dA + (dt * x.to(wdt))[..., None] * B  # (batch, dim, dstate)
    state.copy_(new)
    out = (new * C).sum(-1)  # (batch, dim)
    if D is not None:
        out = out + x.to(wdt) * D.to(wdt)
    if z is not None:
        out = out * F.silu(z.to(wdt))
    return out.to(x.dtype)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus: bool = False, gap=None, backend: str = "auto"):
    """Selective state update dispatched to Triton or torch.

    Same arguments and return as :func:`selective_state_update_ref`, plus
    ``backend : {"auto", "triton", "torch"}``.
    """
    if _pick_backend(backend, (state, x, dt), "selective_state_update") == "triton":
        from ssmts.kernels.step import selective_state_update as _kernel
        return _kernel(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, gap)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, gap)


def check_s5_step_args(state, Bu_t, Lambda, log_dt, gap=None, C=None, D=None, u_t=None,
                       method="zoh"):
    """Validate the arguments of one S5 step (as a length-1 scan); raise ``ValueError``."""
    state = as_tensor(state, "state")
    if not state.is_complex() or state.ndim != 2:
        raise ValueError(f"state: expected a complex tensor of shape (batch, P), got dtype "
                         f"{state.dtype} and shape {tuple(state.shape)}")
    Bu_t = as_tensor(Bu_t, "Bu_t")
    if Bu_t.ndim != 2:
        raise ValueError(f"Bu_t: expected shape (batch, P), got {tuple(Bu_t.shape)}")
    gaps = None if gap is None else as_tensor(gap, "gap")
    if gaps is not None and gaps.ndim != 1:
        raise ValueError(f"gap: expected shape (batch,), got {tuple(gaps.shape)}")
    u = None if u_t is None else as_tensor(u_t, "u_t")
    if u is not None and u.ndim != 2:
        raise ValueError(f"u_t: expected shape (batch, H), got {tuple(u.shape)}")
    check_s5_args(Lambda, log_dt, Bu_t[:, None], None if gaps is None else gaps[:, None], C, D,
                  None if u is None else u[:, None], method, state)


def s5_step_ref(state, Bu_t, Lambda, log_dt, gap=None, C=None, D=None, u_t=None,
                method: str = "zoh"):
    """One S5 step for ``batch`` streams; updates ``state`` in place.

    Parameters
    ----------
    state : complex tensor, shape (batch, P)
        Current state; overwritten with the new state.
    Bu_t : complex tensor, shape (batch, P)
        ``B~ u_t`` for this step.
    Lambda : complex tensor, shape (P,)
        Diagonal state matrix, ``Re < 0``.
    log_dt : real tensor, shape (P,)
        Log of the per-state base step.
    gap : real tensor, shape (batch,), optional
        Positive time gap per stream (1 if ``None``).
    C : complex tensor, shape (H, P), optional
        Output matrix.
    D : real tensor, shape (H,), optional
    u_t : real tensor, shape (batch, H), optional
        Skip input (with ``D``).
    method : {"zoh", "bilinear"}

    Returns
    -------
    out : complex tensor, shape (batch, P) (the new state) if ``C`` is None, else
        real tensor, shape (batch, H): ``y_t = 2 Re(C x_t) + D u_t``.
    state : complex tensor, shape (batch, P)
        The updated ``state`` (the same tensor object).
    """
    check_s5_step_args(state, Bu_t, Lambda, log_dt, gap, C, D, u_t, method)
    cdt = state.dtype
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    delta = torch.exp(log_dt.to(rdt))[None, :]  # (1, P)
    if gap is not None:
        delta = delta * gap.to(rdt)[:, None]  # (batch, P)
    Abar, Fac = discretize_s5(Lambda.to(cdt), delta, method)  # (batch|1, P)
    state.copy_(Abar * state + Fac * Bu_t.to(cdt))
    if C is None:
        return state, state
    y = 2 * (state @ C.to(cdt).transpose(0, 1)).real  # (batch, H)
    if D is not None:
        y = y + D.to(rdt) * u_t.to(rdt)
    return y, state


def s5_step(state, Bu_t, Lambda, log_dt, gap=None, C=None, D=None, u_t=None,
            method: str = "zoh", backend: str = "auto"):
    """One S5 step dispatched to Triton or torch.

    Same arguments and returns as :func:`s5_step_ref`, plus
    ``backend : {"auto", "triton", "torch"}``.
    """
    if _pick_backend(backend, (state, Bu_t), "s5_step") == "triton":
        from ssmts.kernels.step import s5_step as _kernel
        return _kernel(state, Bu_t, Lambda, log_dt, gap, C, D, u_t, method)
    return s5_step_ref(state, Bu_t, Lambda, log_dt, gap, C, D, u_t, method)
