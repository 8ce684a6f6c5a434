"""Reference selective scan (Mamba's S6), with mamba_ssm's shapes and semantics.

``selective_scan_ref`` is the oracle the Triton kernel (``ssmts.kernels``) and the
fast torch paths are tested against. It follows the Mamba paper's equations

    delta_t  = softplus(delta_t + delta_bias)        (if delta_softplus)
    delta_t  = delta_t * gap_t                      (irregular sampling, optional)
    x_t      = exp(delta_t A) * x_{t-1} + delta_t B_t u_t
    y_t      = C_t . x_t + D u_t
    out_t    = y_t * silu(z_t)                       (if z is given)

and loops over time, materialising the (batch, D, L, N) discretised tensors; it is
written for clarity and exactness, not speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._validate import as_tensor, check_finite, check_positive

__all__ = ["selective_scan_ref", "check_selective_scan_args"]


def _compute_dtype(*ts: torch.Tensor | None) -> torch.dtype:
    """float64 if any input is float64/complex128, else float32 (mamba computes in fp32)."""
    wide = any(t is not None and t.dtype in (torch.float64, torch.complex128) for t in ts)
    return torch.float64 if wide else torch.float32


def check_selective_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None, gaps=None,
                              values: bool = True):
    """Validate the arguments of a selective scan; raise ``ValueError`` naming the bad one.

    ``values=False`` checks types and shapes only (the GPU kernels check values through
    their result, see ``_validate.result_finite``).

    Returns ``(batch, dim, length, dstate, groups)`` where ``groups`` is 0 for
    input-independent ``B``/``C`` of shape (D, N).
    """
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if u.ndim != 3:
        raise ValueError(f"u: expected shape (batch, D, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta: expected shape {tuple(u.shape)} like u, got {tuple(delta.shape)}")
    if A.ndim != 2 or A.shape[0] != dim:
        raise ValueError(f"A: expected shape ({dim}, N), got {tuple(A.shape)}")
    dstate = A.shape[1]
    groups = None
    for name, t in (("B", B), ("C", C)):
        if t.ndim == 2:
            ok, g = t.shape == (dim, dstate), 0
        elif t.ndim == 3:
            ok, g = t.shape == (batch, dstate, length), 1
        elif t.ndim == 4:
            g = t.shape[1]
            ok = t.shape[0] == batch and t.shape[2:] == (dstate, length) and g > 0 and dim % g == 0
        else:
            ok, g = False, -1
        if not ok:
            raise ValueError(
                f"{name}: expected shape ({dim}, {dstate}), ({batch}, {dstate}, {length}) or "
                f"({batch}, G, {dstate}, {length}) with G dividing {dim}, got {tuple(t.shape)}"
            )
        groups = g if groups is None else max(groups, g)
    for name, t, shape in (("D", D, (dim,)), ("delta_bias", delta_bias, (dim,)),
                           ("z", z, tuple(u.shape)), ("gaps", gaps, (batch, length))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    if not values:
        return batch, dim, length, dstate, groups
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D),
                    ("z", z), ("delta_bias", delta_bias)):
        if t is not None:
            check_finite(t.detach(), name)
    if gaps is not None:
        check_positive(gaps.detach(), "gaps")
    return batch, dim, length, dstate, groups


def _expand_bc(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(D, N) stays; (b, N, L) -> (b, 1, N, L); (b, G, N, L) -> (b, D, N, L)."""
    if t.ndim == 3:
        return t.unsqueeze(1)  # (b, 1, N, L)
    if t.ndim == 4:
        return t.repeat_interleave(dim // t.shape[1], dim=1)  # (b, D, N, L)
    return t


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False, gaps=None):
    """Selective scan by an explicit loop over time (reference implementation).

    Parameters
    ----------
    u : tensor, shape (batch, D, L)
        Input sequence.
    delta : tensor, shape (batch, D, L)
        Step sizes before ``delta_bias`` / softplus.
    A : real or complex tensor, shape (D, N)
        Continuous-time diagonal state matrix (negative real part for stability).
    B, C : tensor, shape (D, N), (batch, N, L) or (batch, G, N, L)
        Input and output matrices; 3-D/4-D ones vary with time (selective);
        G groups share B/C across ``D // G`` channels each.
    D : tensor, shape (D,), optional
        Skip connection.
    z : tensor, shape (batch, D, L), optional
        Gate: the output is multiplied by ``silu(z)``.
    delta_bias : tensor, shape (D,), optional
        Added to ``delta`` before softplus.
    delta_softplus : bool
        Apply softplus to ``delta + delta_bias``.
    return_last_state : bool
        Also return the state after the last step, shape (batch, D, N).
    gaps : tensor, shape (batch, L), optional
        Positive time gap before each sample (irregular sampling); multiplies the
        step after softplus. ``None`` means regular sampling (gap 1).

    Returns
    -------
    out : tensor, shape (batch, D, L), dtype of ``u``
    last_state : tensor, shape (batch, D, N), only if ``return_last_state``
        Real unless A, B or C is complex; computed in float32 (float64 for float64 inputs).
    """
    u, delta, A, B, C, D, z, delta_bias, gaps = (
        None if t is None else as_tensor(t, name) for t, name in zip(
            (u, delta, A, B, C, D, z, delta_bias, gaps),
            ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "gaps")))
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias, gaps)
    dtype_in = u.dtype
    wdt = _compute_dtype(u, delta, A, B, C)
    u, delta = u.to(wdt), delta.to(wdt)
    if delta_bias is not None:
        delta = delta + delta_bias.to(wdt)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if gaps is not None:
        delta = delta * gaps.to(wdt)[:, None, :]
    batch, dim, length = u.shape
    cdt = torch.complex128 if wdt == torch.float64 else torch.complex64
    is_complex = A.is_complex() or B.is_complex() or C.is_complex()
    sdt = cdt if is_complex else wdt
    A = A.to(sdt)
    B = _expand_bc(B.to(sdt), dim)
    C = _expand_bc(C.to(sdt), dim)
    dA = torch.exp(delta.unsqueeze(-1) * A[:, None, :])  # (b, D, L, N)
    if B.ndim == 2:
        dBu = (delta * u).unsqueeze(-1) * B[:, None, :]  # (b, D, L, N)
    else:
        dBu = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)  # (b, D|1, L, N) -> (b, D, L, N)
    x = torch.zeros(batch, dim, A.shape[1], dtype=sdt, device=u.device)
    ys = []
    for t in range(length):
        x = dA[:, :, t] * x + dBu[:, :, t]  # (b, D, N)
        c_t = C if C.ndim == 2 else C[..., t]  # (D, N) or (b, D|1, N)
        ys.append((x * c_t).sum(-1))  # (b, D)
    y = torch.stack(ys, dim=-1)  # (b, D, L)
    if is_complex:
        y = 2 * y.real
    out = y if D is None else y + u * D.to(wdt)[:, None]
    if z is not None:
        out = out * F.silu(z.to(wdt))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
