"""Reference S5 scan: a complex diagonal linear recurrence with per-step discretisation.

S5 (Smith, Warrington & Linderman, 2023) keeps a complex diagonal state matrix
``Lambda`` (P,) and a learnable per-state step ``exp(log_dt)``. With time gaps
``g_t`` between samples the step is ``Delta_{t,p} = exp(log_dt_p) * g_t`` and

    ZOH:       Abar = exp(Lambda Delta),                 F = (Abar - 1) / Lambda
    bilinear:  Abar = (1 + Lambda Delta/2) / (1 - Lambda Delta/2),  F = Delta / (1 - Lambda Delta/2)
    x_t = Abar_t * x_{t-1} + F_t * Bu_t
    y_t = 2 Re(C x_t) + D u_t                             (optional projection)

``Bu`` is the input already multiplied by the continuous-time ``B~`` (complex,
(batch, L, P)). ``s5_scan_ref`` loops over time (vectorised over batch and P)
and is the oracle for the Triton kernel ``ssmts.kernels.s5_scan``; ``s5_scan``
chooses between the two (``backend="auto"|"triton"|"torch"``).
"""

from __future__ import annotations

import torch

from ._validate import as_tensor, check_finite, check_positive, check_shape, check_stable
from .discretize import _zoh_diag_factors

__all__ = ["s5_scan_ref", "s5_scan", "discretize_s5", "check_s5_args"]

_METHODS = ("zoh", "bilinear")


def _complex_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    """complex128 if any input is 64-bit wide (float64/complex128), else complex64."""
    wide = any(t is not None and t.dtype in (torch.float64, torch.complex128) for t in ts)
    return torch.complex128 if wide else torch.complex64


def _check_complex(x, name: str, shape) -> torch.Tensor:
    x = as_tensor(x, name)
    if not x.is_complex():
        raise ValueError(f"{name}: expected a complex tensor, got dtype {x.dtype}; "
                         "build it with torch.complex(re, im)")
    check_shape(x, name, shape)
    return x


def _check_real(x, name: str, shape) -> torch.Tensor:
    x = as_tensor(x, name)
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"{name}: expected a real floating tensor, got dtype {x.dtype}")
    return check_shape(x, name, shape)


def check_s5_args(Lambda, log_dt, Bu, gaps=None, C=None, D=None, u=None, method="zoh", h0=None,
                  values: bool = True):
    """Validate S5 scan arguments; raise ``ValueError`` naming the bad one.

    ``values=False`` checks types and shapes only (the GPU kernel checks values, stability
    included, through its result: see ``_validate.result_finite``). Returns the converted
    tensors ``(Lambda, log_dt, Bu, gaps, C, D, u, h0)``.
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    Bu = _check_complex(Bu, "Bu", (None, None, None))
    batch, length, P = Bu.shape
    Lambda = _check_complex(Lambda, "Lambda", (P,))
    if values:
        check_stable(Lambda.detach(), "Lambda")
    log_dt = _check_real(log_dt, "log_dt", (P,))
    gaps = None if gaps is None else _check_real(gaps, "gaps", (batch, length))
    h0 = None if h0 is None else _check_complex(h0, "h0", (batch, P))
    if C is None and (D is not None or u is not None):
        raise ValueError("D/u: given without C; pass C (H, P) to project the states, or drop D and u")
    if C is not None:
        C = _check_complex(C, "C", (None, P))
        H = C.shape[0]
        if (D is None) != (u is None):
            raise ValueError("D/u: pass both the skip D (H,) and the input u (batch, L, H), or neither")
        D = None if D is None else _check_real(D, "D", (H,))
        u = None if u is None else _check_real(u, "u", (batch, length, H))
    if not values:
        return Lambda, log_dt, Bu, gaps, C, D, u, h0
    for name, t in (("Lambda", Lambda), ("log_dt", log_dt), ("Bu", Bu), ("C", C), ("D", D),
                    ("u", u), ("h0", h0)):
        if t is not None:
            check_finite(t.detach(), name)
    if gaps is not None:
        check_positive(gaps.detach(), "gaps")
    return Lambda, log_dt, Bu, gaps, C, D, u, h0


def discretize_s5(Lambda: torch.Tensor, delta: torch.Tensor, method: str = "zoh"):
    """Discretise a diagonal complex system for steps ``delta``.

    Parameters
    ----------
    Lambda : complex tensor, shape (P,)
    delta : real tensor, shape (..., P)
        Positive step sizes.
    method : {"zoh", "bilinear"}

    Returns
    -------
    Abar, F : complex tensors, shape (..., P)
        ``x_t = Abar * x_{t-1} + F * Bu_t``.
    """
    if method == "zoh":  # F = (exp(z) - 1)/Lambda = delta phi1(z), no cancellation near z = 0
        return _zoh_diag_factors(Lambda, delta)
    z = Lambda * delta
    den = 1 - z / 2
    return (1 + z / 2) / den, delta / den


def _project(x, C, D, u):
    """y = 2 Re(x C^T) + D u; x (b, L, P) complex, C (H, P) -> (b, L, H) real."""
    y = 2 * (x @ C.transpose(0, 1)).real  # (b, L, H)
    if D is not None:
        y = y + D.to(y.dtype) * u.to(y.dtype)
    return y


def s5_scan_ref(Lambda, log_dt, Bu, gaps=None, C=None, D=None, u=None, method: str = "zoh",
                h0=None, return_last_state: bool = False):
    """S5 scan by an explicit loop over time (reference implementation).

    Parameters
    ----------
    Lambda : complex tensor, shape (P,)
        Diagonal continuous-time state matrix, ``Re(Lambda) < 0``.
    log_dt : real tensor, shape (P,)
        Log of the per-state base step.
    Bu : complex tensor, shape (batch, L, P)
        Inputs projected by ``B~``.
    gaps : real tensor, shape (batch, L), optional
        Positive time gap before each sample; ``None`` means 1 (regular sampling).
    C : complex tensor, shape (H, P), optional
        Output matrix; if given the output is ``y = 2 Re(x C^T) + D u``.
    D : real tensor, shape (H,), optional
        Skip term (needs ``u``).
    u : real tensor, shape (batch, L, H), optional
        Raw input for the skip term.
    method : {"zoh", "bilinear"}
        Discretisation.
    h0 : complex tensor, shape (batch, P), optional
        Initial state (zeros if ``None``).
    return_last_state : bool
        Also return ``x_{L-1}``.

    Returns
    -------
    out : complex tensor, shape (batch, L, P) (the states) if ``C`` is None, else
        real tensor, shape (batch, L, H) (the outputs ``y``).
    last_state : complex tensor, shape (batch, P), only if ``return_last_state``.
        Computed in complex64 (complex128 if any input is 64-bit).
    """
    Lambda, log_dt, Bu, gaps, C, D, u, h0 = check_s5_args(Lambda, log_dt, Bu, gaps, C, D, u,
                                                          method, h0)
    cdt = _complex_dtype(Lambda, log_dt, Bu, gaps, C, h0)
    rdt = torch.float64 if cdt == torch.complex128 else torch.float32
    batch, length, P = Bu.shape
    g = torch.ones(batch, length, dtype=rdt, device=Bu.device) if gaps is None else gaps.to(rdt)
    delta = torch.exp(log_dt.to(rdt)) * g[..., None]  # (b, L, P)
    Abar, F = discretize_s5(Lambda.to(cdt), delta, method)  # (b, L, P) each
    bu = F * Bu.to(cdt)  # (b, L, P)
    x = torch.zeros(batch, P, dtype=cdt, device=Bu.device) if h0 is None else h0.to(cdt)
    xs = []
    for t in range(length):
        x = Abar[:, t] * x + bu[:, t]  # (b, P)
        xs.append(x)
    states = torch.stack(xs, dim=1) if xs else bu  # (b, L, P)
    out = states if C is None else _project(states, C.to(cdt), D, u)
    return (out, x) if return_last_state else out


def _pick_backend(backend: str, tensors, what: str) -> str:
    """"triton" or "torch" for ``what``: :func:`ssmts.ssm.dispatch.choose_backend` decides."""
    from .dispatch import choose_backend

    module = "s5_scan" if what == "s5_scan" else "step"
    return choose_backend(backend, tensors[0], what, module)


def s5_scan(Lambda, log_dt, Bu, gaps=None, C=None, D=None, u=None, method: str = "zoh",
            h0=None, return_last_state: bool = False, backend: str = "auto"):
    """S5 scan, dispatched to the Triton kernel or the torch reference.

    Same arguments and returns as :func:`s5_scan_ref`, plus
    ``backend : {"auto", "triton", "torch"}`` (see :func:`ssmts.ssm.dispatch.choose_backend`).
    """
    if _pick_backend(backend, (Lambda, log_dt, Bu), "s5_scan") == "triton":
        from ssmts.kernels.s5_scan import s5_scan as _kernel
        return _kernel(Lambda, log_dt, Bu, gaps, C, D, u, method, h0, return_last_state)
    return s5_scan_ref(Lambda, log_dt, Bu, gaps, C, D, u, method, h0, return_last_state)
