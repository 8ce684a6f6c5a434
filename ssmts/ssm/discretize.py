"""Discretisation of continuous-time linear systems.

A continuous system ``x'(t) = A x(t) + B u(t)`` sampled with step ``dt`` (Δ) becomes
``x_k = Ab x_{k-1} + Bb u_k``. Three rules are provided:

* zero-order hold (``u`` constant over each step), exact for piecewise-constant input:
  ``Ab = exp(ΔA)``, ``Bb = ∫_0^Δ exp(sA) ds · B``;
* the generalised bilinear transform (GBT) with parameter ``alpha``:
  ``Ab = (I − αΔA)⁻¹(I + (1−α)ΔA)``, ``Bb = (I − αΔA)⁻¹ΔB``;
  α = 0 is forward Euler, α = 1/2 Tustin (bilinear), α = 1 backward Euler;
* forward Euler, ``Ab = I + ΔA``, ``Bb = ΔB``.

``A`` is either a dense matrix of shape (N, N) or, when it is 1-D, the diagonal
``Lambda`` of shape (N,) of a diagonal system. ``dt`` may be a scalar or a tensor of
per-step (irregular sampling) values; the discretised matrices gain its leading axes.
Dense ZOH uses one block matrix exponential ``expm([[A, B], [0, 0]] Δ)`` so that a
singular ``A`` needs no inverse; diagonal ZOH uses a series near ``ΔΛ = 0``.

Every function is differentiable (torch autograd) in ``A``, ``B`` and ``dt`` and works
in float32/float64 and complex64/complex128.
"""

from __future__ import annotations

import torch

from ._validate import as_tensor, check_finite, check_ndim, check_positive

__all__ = [
    "discretize",
    "discretize_zoh",
    "discretize_bilinear",
    "discretize_euler",
]

Pair = tuple[torch.Tensor, torch.Tensor]  # (Ab, Bb)

_METHODS = ("zoh", "bilinear", "euler", "backward_euler", "gbt")
_SERIES_RADIUS = 1e-4  # |z| below which phi1(z) = (e^z - 1)/z uses its Taylor series


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float dtype matching ``dtype`` (complex128 -> float64, complex64 -> float32)."""
    return {torch.complex128: torch.float64, torch.complex64: torch.float32}.get(dtype, dtype)


def _float_tensor(x, name: str) -> torch.Tensor:
    """``as_tensor`` that also turns integer/bool tensors into the default float dtype."""
    t = as_tensor(x, name)
    if not (t.is_floating_point() or t.is_complex()):
        t = t.to(torch.get_default_dtype())
    return t


def _as_dt(dt, like: torch.dtype) -> torch.Tensor:
    """Step sizes as a real tensor; Python scalars and arrays take the real dtype of ``like``."""
    if isinstance(dt, torch.Tensor):
        return dt if (dt.is_floating_point() or dt.is_complex()) else dt.to(_real_dtype(like))
    return as_tensor(dt, "dt", dtype=_real_dtype(like))


def _check_system(A, B, dt) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert and validate ``(A, B, dt)`` for every public discretiser; return tensors."""
    A = _float_tensor(A, "A")
    B = _float_tensor(B, "B")
    check_ndim(A, "A", (1, 2))
    if A.ndim == 2 and A.shape[0] != A.shape[1]:
        raise ValueError(
            "A: expected a square matrix (N, N) or a 1-D diagonal Lambda (N,), "
            f"got shape {tuple(A.shape)}"
        )
    n = A.shape[0]
    if n == 0:
        raise ValueError("A: the state dimension N must be at least 1, got an empty A")
    check_ndim(B, "B", (1, 2))
    if B.shape[0] != n:
        raise ValueError(
            f"B: first axis must equal the state size N={n} of A (shape {tuple(A.shape)}), "
            f"got B of shape {tuple(B.shape)}; pass B as (N,) or (N, H)"
        )
    check_finite(A.detach(), "A")
    check_finite(B.detach(), "B")
    dt = _as_dt(dt, torch.promote_types(A.dtype, B.dtype))
    check_positive(dt.detach(), "dt")
    if A.ndim == 1 and dt.ndim > 0 and dt.shape[-1] not in (1, n):
        raise ValueError(
            f"dt: for a diagonal A (Lambda of shape ({n},)) dt must broadcast against ({n},): "
            f"a scalar, shape ({n},), (..., 1) or (..., {n}); got shape {tuple(dt.shape)}. "
            "For per-step values of shape (batch, L) pass dt[..., None]"
        )
    return A, B, dt


# ----------------------------------------------------------------------------- diagonal
def _expm1_complex(z: torch.Tensor) -> torch.Tensor:
    """exp(z) − 1 for complex ``z`` without cancellation in either part."""
    x, y = z.real, z.imag
    re = torch.expm1(x) * torch.cos(y) - 2.0 * torch.sin(0.5 * y) ** 2
    im = torch.exp(x) * torch.sin(y)
    return torch.complex(re, im)


def _phi1(z: torch.Tensor) -> torch.Tensor:
    """phi1(z) = (exp(z) − 1)/z elementwise, = 1 at z = 0, accurate and differentiable near 0.

    Near zero (|z| < 1e-4) the Taylor series 1 + z/2 + z²/6 + z³/24 is used (truncation
    error below 1e-18); elsewhere expm1(z)/z. The far branch is evaluated on a safe
    substitute where the series applies, so gradients stay finite at z = 0.
    """
    small = z.abs() < _SERIES_RADIUS
    z_far = torch.where(small, torch.ones_like(z), z)
    far = (_expm1_complex(z_far) if z.is_complex() else torch.expm1(z_far)) / z_far
    near = 1.0 + z * (0.5 + z * (1.0 / 6.0 + z / 24.0))
    return torch.where(small, near, far)


def _zoh_diag_factors(Lambda: torch.Tensor, dt: torch.Tensor) -> Pair:
    """Diagonal ZOH: ``Ab = exp(ΔΛ)`` and ``f = (exp(ΔΛ) − 1)/Λ`` (so ``Bb = f · B``).

    Trusts its inputs; ``dt`` broadcasts against ``Lambda`` (both elementwise).
    """
    z = dt * Lambda  # (..., N)
    return torch.exp(z), dt * _phi1(z)


def _gbt_diag_factors(Lambda: torch.Tensor, dt: torch.Tensor, alpha: float) -> Pair:
    """Diagonal GBT: ``Ab = (1 + (1−α)ΔΛ)/(1 − αΔΛ)``, ``f = Δ/(1 − αΔΛ)``. Trusts inputs."""
    z = dt * Lambda  # (..., N)
    denom = 1.0 - alpha * z
    return (1.0 + (1.0 - alpha) * z) / denom, dt / denom


def _scale_B(f: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``Bb = f · B``: (..., N) for B (N,), (..., N, H) for B (N, H)."""
    return f * B if B.ndim == 1 else f[..., None] * B  # (..., N) or (..., N, H)


# ----------------------------------------------------------------------------- dense
def _column_B(B: torch.Tensor) -> torch.Tensor:
    """B as a matrix (N, H); a vector becomes one column."""
    return B if B.ndim == 2 else B[:, None]  # (N, H)


def _zoh_dense(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor) -> Pair:
    """Dense ZOH through ``expm(Δ [[A, B], [0, 0]]) = [[Ab, Bb], [0, I]]``. Trusts inputs."""
    n = A.shape[0]
    B2 = _column_B(B)
    dtype = torch.promote_types(torch.promote_types(A.dtype, B2.dtype), dt.dtype)
    top = torch.cat([A.to(dtype), B2.to(dtype)], dim=1)  # (N, N+H)
    M = torch.cat([top, top.new_zeros(B2.shape[1], top.shape[1])], dim=0)  # (N+H, N+H)
    E = torch.linalg.matrix_exp(dt[..., None, None] * M)  # (..., N+H, N+H)
    Ab, Bb = E[..., :n, :n], E[..., :n, n:]  # (..., N, N), (..., N, H)
    if not (A.is_complex() or dt.is_complex()) and Ab.is_complex():
        Ab = Ab.real  # complex only because B is; exp of a real matrix is real
    return Ab, (Bb if B.ndim == 2 else Bb[..., 0])


def _gbt_dense(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, alpha: float) -> Pair:
    """Dense GBT with linear solves against ``I − αΔA`` (no explicit inverse). Trusts inputs."""
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    dA = dt[..., None, None] * A  # (..., N, N)
    lhs = eye - alpha * dA  # (..., N, N)
    Ab = torch.linalg.solve(lhs, eye + (1.0 - alpha) * dA)  # (..., N, N)
    dB = dt[..., None, None] * _column_B(B)  # (..., N, H)
    dtype = torch.promote_types(lhs.dtype, dB.dtype)
    Bb = torch.linalg.solve(lhs.to(dtype), dB.to(dtype))  # (..., N, H)
    return Ab, (Bb if B.ndim == 2 else Bb[..., 0])


def _euler_dense(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor) -> Pair:
    """Dense forward Euler ``Ab = I + ΔA``, ``Bb = ΔB``. Trusts inputs."""
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    Ab = eye + dt[..., None, None] * A  # (..., N, N)
    Bb = dt[..., None, None] * _column_B(B)  # (..., N, H)
    return Ab, (Bb if B.ndim == 2 else Bb[..., 0])


# ----------------------------------------------------------------------------- public
# Shared numpydoc text for A, B, dt and the returns; each public docstring includes it.
_PARAMS = """A : float or complex tensor, shape (N, N) or (N,)
        State matrix; a 1-D tensor is the diagonal ``Lambda`` of a diagonal system.
    B : float or complex tensor, shape (N,) or (N, H)
        Input matrix.
    dt : float, or float tensor of shape () or (...)
        Step size(s), finite and > 0. Dense ``A``: any shape (...), e.g. (batch, L) per-step
        values for irregular sampling. Diagonal ``A``: must broadcast against (N,), i.e.
        (), (N,) per state, (..., 1) per step, or (..., N) per step and state."""

_RETURNS = """Returns
    -------
    Ab : tensor, shape (..., N, N) for dense A, (..., N) for diagonal A
        Discrete state matrix (its diagonal for diagonal A); ``...`` are the axes of ``dt``.
    Bb : tensor, shape (..., N) or (..., N, H)
        Discrete input matrix with the trailing shape of ``B``. Dtypes follow torch type
        promotion of ``A``, ``B`` and ``dt`` (Python-scalar ``dt`` takes A's precision).

    Raises
    ------
    ValueError
        If ``dt`` is not finite and > 0, the shapes of ``A``/``B``/``dt`` do not fit, or
        ``A``/``B`` hold NaN/inf."""


def discretize_zoh(A, B, dt) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: ``Ab = exp(ΔA)``, ``Bb = ∫_0^Δ exp(sA) ds · B``.

    Dense ``A`` uses the block exponential ``expm(Δ [[A, B], [0, 0]])`` (valid for a
    singular ``A``). Diagonal ``A`` uses ``Bb = (exp(ΔΛ) − 1)/Λ · B``, evaluated as
    ``Δ·phi1(ΔΛ)·B`` with a Taylor series for ``|ΔΛ| < 1e-4`` (so Λ = 0 gives ``ΔB``).

    Parameters
    ----------
    {params}

    {returns}
    """
    A, B, dt = _check_system(A, B, dt)
    if A.ndim == 1:
        Ab, f = _zoh_diag_factors(A, dt)
        return Ab, _scale_B(f, B)
    return _zoh_dense(A, B, dt)


def discretize_bilinear(A, B, dt, alpha: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised bilinear transform (GBT).

    ``Ab = (I − αΔA)⁻¹(I + (1−α)ΔA)``, ``Bb = (I − αΔA)⁻¹ΔB``, computed with
    linear solves (dense) or elementwise (diagonal).

    Parameters
    ----------
    {params}
    alpha : float in [0, 1], default 0.5
        0 forward Euler, 0.5 Tustin/bilinear, 1 backward Euler.

    {returns}
    """
    alpha = _check_alpha(alpha)
    A, B, dt = _check_system(A, B, dt)
    if A.ndim == 1:
        Ab, f = _gbt_diag_factors(A, dt, alpha)
        return Ab, _scale_B(f, B)
    return _gbt_dense(A, B, dt, alpha)


def discretize_euler(A, B, dt) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward Euler: ``Ab = I + ΔA``, ``Bb = ΔB`` (diagonal: ``Ab = 1 + ΔΛ``).

    Parameters
    ----------
    {params}

    {returns}
    """
    A, B, dt = _check_system(A, B, dt)
    if A.ndim == 1:
        return 1.0 + dt * A, _scale_B(dt * torch.ones_like(A), B)
    return _euler_dense(A, B, dt)


def discretize(
    A, B, dt, method: str = "zoh", alpha: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise ``x' = A x + B u`` with the named rule.

    Parameters
    ----------
    {params}
    method : {{"zoh", "bilinear", "euler", "backward_euler", "gbt"}}, default "zoh"
        ``"bilinear"`` is the GBT with α = 0.5, ``"euler"`` α = 0, ``"backward_euler"``
        α = 1; ``"gbt"`` takes ``alpha``.
    alpha : float in [0, 1], optional
        Only (and required) with ``method="gbt"``.

    {returns}
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if method != "gbt" and alpha is not None:
        raise ValueError(
            f"alpha: only used with method='gbt', got alpha={alpha!r} with method={method!r}"
        )
    if method == "zoh":
        return discretize_zoh(A, B, dt)
    if method == "euler":
        return discretize_euler(A, B, dt)
    if method == "gbt" and alpha is None:
        raise ValueError(
            "alpha: method='gbt' needs alpha in [0, 1] (0 Euler, 0.5 bilinear, 1 backward Euler)"
        )
    alpha = {"bilinear": 0.5, "backward_euler": 1.0}.get(method, alpha)
    return discretize_bilinear(A, B, dt, alpha=alpha)


def _check_alpha(alpha) -> float:
    """Validate the GBT parameter: a real number in [0, 1]."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha: expected a real number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= a <= 1.0:
        raise ValueError(
            f"alpha: expected a value in [0, 1] (0 Euler, 0.5 bilinear, 1 backward Euler), got {a}"
        )
    return a


for _f in (discretize_zoh, discretize_bilinear, discretize_euler, discretize):
    if _f.__doc__:  # stripped under python -OO
        _f.__doc__ = _f.__doc__.format(params=_PARAMS, returns=_RETURNS)
del _f
