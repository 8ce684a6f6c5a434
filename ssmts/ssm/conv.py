"""The convolution view of a discrete linear system: ``K_j = C Ab^j Bb``, ``y = K * u``.

An LTI system ``x_k = Ab x_{k-1} + Bb u_k``, ``y_k = C x_k + D u_k`` started from
``x_{-1} = 0`` maps input to output by the causal convolution
``y_t = Σ_{j≤t} K_j u_{t−j} + D u_t`` with the kernel ``K_j = C Ab^j Bb``. This module
computes ``K``:

* ``kernel_from_powers`` — any dense (or diagonal) system by repeated multiplication;
  slow, the oracle the other two are tested against;
* ``kernel_vandermonde`` — diagonal systems (S4D / S5-style), one Vandermonde product;
* ``kernel_dplr`` — diagonal-plus-low-rank ``A = diag(Λ) − P Qᴴ`` (S4), by evaluating the
  truncated generating function at the roots of unity with Cauchy kernels and the
  Woodbury identity, then an inverse FFT (Gu, Goel & Ré 2022, Algorithm 1);

and applies it with FFTs (``fft_conv``, ``fft_conv_bidirectional``).

Conjugate symmetry: a real system with complex diagonal has its eigenvalues in conjugate
pairs. With ``conj_sym=True`` the arguments hold one member of each pair (N states stand
for a real system of size 2N) and the returned kernel is the real kernel of the full
system. With ``conj_sym=False`` the N states are the whole system and the real part of
its (possibly complex) kernel is returned: exact when the system is real (closed under
conjugation), otherwise the imaginary part is dropped.
"""

from __future__ import annotations

import math

import torch

from ._validate import as_tensor, check_finite, check_ndim, check_positive
from .discretize import _float_tensor, _gbt_diag_factors, _real_dtype, _zoh_diag_factors

__all__ = [
    "kernel_from_powers",
    "kernel_vandermonde",
    "kernel_dplr",
    "cauchy",
    "fft_conv",
    "fft_conv_bidirectional",
]


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """complex dtype matching ``dtype`` (float64 -> complex128, float32 -> complex64)."""
    return {torch.float64: torch.complex128, torch.float32: torch.complex64,
            torch.float16: torch.complex64, torch.bfloat16: torch.complex64}.get(dtype, dtype)


def _check_length(L) -> int:
    """Kernel length: a Python/NumPy integer >= 1."""
    if isinstance(L, bool) or not hasattr(L, "__index__"):
        raise ValueError(f"L: expected a positive integer kernel length, got {L!r}")
    L = int(L)
    if L < 1:
        raise ValueError(f"L: kernel length must be >= 1, got {L}")
    return L


def _finite(x, name: str) -> torch.Tensor:
    """Convert to a float/complex tensor and reject NaN/inf."""
    t = _float_tensor(x, name)
    check_finite(t.detach(), name)
    return t


def _check_shape_as(x: torch.Tensor, name: str, shape: tuple, what: str) -> None:
    """Raise unless ``x.shape == shape``; ``what`` says where the expected shape comes from."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} {what}, got {tuple(x.shape)}")


def _channel_dt(dt, H: int, N: int, like: torch.dtype, per_state: bool = True) -> torch.Tensor:
    """Steps for H channels: scalar, (H,) or (if ``per_state``) (H, N); returns a tensor
    broadcastable against (H, N)."""
    dt = dt if isinstance(dt, torch.Tensor) else as_tensor(dt, "dt", dtype=_real_dtype(like))
    if not (dt.is_floating_point() or dt.is_complex()):
        dt = dt.to(_real_dtype(like))
    check_positive(dt.detach(), "dt")
    if dt.ndim == 1 and dt.shape[0] == H:
        return dt[:, None]  # (H, 1)
    if dt.ndim == 0 or (per_state and tuple(dt.shape) == (H, N)):
        return dt
    allowed = f"a scalar, shape ({H},)" + (f" or ({H}, {N})" if per_state else "")
    raise ValueError(f"dt: expected {allowed} (one step per channel), got {tuple(dt.shape)}")


# ----------------------------------------------------------------------------- oracle
def kernel_from_powers(Ab, Bb, C, L: int) -> torch.Tensor:
    """Kernel ``K_j = C Ab^j Bb`` for j < L by repeated multiplication (the dense oracle).

    Parameters
    ----------
    Ab : float or complex tensor, shape (N, N), or (N,) for a diagonal system
        Discrete state matrix.
    Bb : float or complex tensor, shape (N,) or (N, H)
        Discrete input matrix.
    C : float or complex tensor, shape (N,) or (M, N)
        Output matrix.
    L : int
        Kernel length, >= 1.

    Returns
    -------
    K : tensor, shape C.shape[:-1] + Bb.shape[1:] + (L,)
        (L,) for vector ``Bb`` and ``C``, (M, H, L) for matrices. Complex if any input
        is complex (no real part is taken).

    Raises
    ------
    ValueError
        On shape mismatches, non-finite entries or a bad ``L``.
    """
    Ab, Bb, C = _finite(Ab, "Ab"), _finite(Bb, "Bb"), _finite(C, "C")
    L = _check_length(L)
    check_ndim(Ab, "Ab", (1, 2))
    n = Ab.shape[0]
    if Ab.ndim == 2 and Ab.shape[1] != n:
        raise ValueError(
            f"Ab: expected a square matrix (N, N) or a diagonal (N,), got {tuple(Ab.shape)}"
        )
    check_ndim(Bb, "Bb", (1, 2))
    check_ndim(C, "C", (1, 2))
    if Bb.shape[0] != n:
        raise ValueError(f"Bb: first axis must equal N={n} from Ab, got shape {tuple(Bb.shape)}")
    if C.shape[-1] != n:
        raise ValueError(f"C: last axis must equal N={n} from Ab, got shape {tuple(C.shape)}")
    dtype = torch.promote_types(torch.promote_types(Ab.dtype, Bb.dtype), C.dtype)
    Ab = Ab.to(dtype)
    x = (Bb if Bb.ndim == 2 else Bb[:, None]).to(dtype)  # (N, H)
    Cm = (C if C.ndim == 2 else C[None]).to(dtype)  # (M, N)
    taps = []
    for _ in range(L):
        taps.append(Cm @ x)  # (M, H)
        x = Ab[:, None] * x if Ab.ndim == 1 else Ab @ x  # (N, H)
    K = torch.stack(taps, dim=-1)  # (M, H, L)
    if Bb.ndim == 1:
        K = K[:, 0]  # (M, L)
    return K[0] if C.ndim == 1 else K


# ----------------------------------------------------------------------------- diagonal
def kernel_vandermonde(
    Lambda, B, C, dt, L: int, method: str = "zoh", conj_sym: bool = True
) -> torch.Tensor:
    """Kernel of H diagonal SSMs by a Vandermonde product, ``K[h, l] = Σ_n C Bb Ab^l [h, n]``.

    Each channel h has its own diagonal ``Lambda[h]`` and step ``dt[h]``; it is
    discretised with ZOH (powers as ``exp(l·ΔΛ)``) or bilinear (powers as
    ``exp(l·log Ab)``), then ``K = (C ⊙ Bb) @ V`` with ``V[h, n, l] = Ab[h, n]^l``.

    Parameters
    ----------
    Lambda : complex tensor, shape (H, N)
        Continuous-time diagonal state matrices (real input is treated as complex).
    B : float or complex tensor, shape (H, N)
        Continuous-time input vectors.
    C : float or complex tensor, shape (H, N) or (M, H, N)
        Output vectors; a leading axis M gives M output channels per input channel.
    dt : float or float tensor, shape (), (H,) or (H, N)
        Step sizes, finite and > 0 (per channel, or per channel and state).
    L : int
        Kernel length, >= 1.
    method : {"zoh", "bilinear"}, default "zoh"
        Discretisation rule.
    conj_sym : bool, default True
        True: the N states are one of each conjugate pair and ``K = 2·Re(...)`` is the
        kernel of the real system of size 2N. False: ``K = Re(...)`` of the N-state
        system (exact only if that system is real; see the module docstring).

    Returns
    -------
    K : float tensor, shape (H, L) or (M, H, L)
        Real kernel, in the real dtype matching the promoted inputs.

    Raises
    ------
    ValueError
        On shape mismatches, non-finite entries, non-positive ``dt``, a bad ``L`` or method.
    """
    Lambda, B, C = _finite(Lambda, "Lambda"), _finite(B, "B"), _finite(C, "C")
    L = _check_length(L)
    if method not in ("zoh", "bilinear"):
        raise ValueError(f"method: expected 'zoh' or 'bilinear', got {method!r}")
    check_ndim(Lambda, "Lambda", 2)
    H, N = Lambda.shape
    _check_shape_as(B, "B", (H, N), "like Lambda")
    if C.shape[-2:] != (H, N) or C.ndim not in (2, 3):
        raise ValueError(
            f"C: expected shape ({H}, {N}) or (M, {H}, {N}) like Lambda, got {tuple(C.shape)}"
        )
    Lam = Lambda.to(_complex_dtype(torch.promote_types(Lambda.dtype, B.dtype)))
    dt = _channel_dt(dt, H, N, Lam.dtype)  # (), (H, 1) or (H, N)
    if method == "zoh":
        Ab, f = _zoh_diag_factors(Lam, dt)  # (H, N), (H, N)
        log_Ab = dt * Lam  # (H, N)
    else:
        Ab, f = _gbt_diag_factors(Lam, dt, 0.5)
        log_Ab = torch.log(Ab)  # (H, N)
    log_Ab = log_Ab.expand(H, N)
    powers = torch.arange(L, dtype=_real_dtype(log_Ab.dtype), device=log_Ab.device)  # (L,)
    V = torch.exp(log_Ab[..., None] * powers)  # (H, N, L)
    W = C * (f * B)  # (H, N) or (M, H, N)
    K = torch.einsum("...hn,hnl->...hl", W.to(V.dtype), V)  # (H, L) or (M, H, L)
    return 2.0 * K.real if conj_sym else K.real


# ----------------------------------------------------------------------------- DPLR
def cauchy(v, z, w) -> torch.Tensor:
    """Naive Cauchy kernel ``k[..., l] = Σ_n v[..., n] / (z[..., l] − w[..., n])``.

    Materialises a (..., L, N) tensor; O(L·N) memory per batch entry.

    Parameters
    ----------
    v : complex or float tensor, shape (..., N)
        Numerators.
    z : complex or float tensor, shape (L,) or (..., L)
        Evaluation points; leading axes broadcast with those of ``v`` and ``w``.
    w : complex or float tensor, shape (..., N)
        Poles; must not coincide with any ``z``.

    Returns
    -------
    k : tensor, shape (..., L)
        Broadcast leading shape of ``v``, ``z`` and ``w``.
    """
    v, z, w = _finite(v, "v"), _finite(z, "z"), _finite(w, "w")
    if v.ndim < 1 or z.ndim < 1 or w.ndim < 1:
        raise ValueError("v, z, w: each needs at least one axis (N for v and w, L for z)")
    if v.shape[-1] != w.shape[-1]:
        raise ValueError(f"w: last axis must equal N={v.shape[-1]} of v, got {tuple(w.shape)}")
    try:
        torch.broadcast_shapes(v.shape[:-1], z.shape[:-1], w.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"z: leading axes of v {tuple(v.shape)}, z {tuple(z.shape)} and w {tuple(w.shape)} "
            "do not broadcast"
        ) from None
    return _cauchy(v, z, w)


def _cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``cauchy`` without validation."""
    return (v[..., None, :] / (z[..., :, None] - w[..., None, :])).sum(-1)  # (..., L)


def _dplr_dense(Lambda: torch.Tensor, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Dense ``A = diag(Λ) − P Qᴴ``: Lambda (H, N), P/Q (H, r, N) -> (H, N, N)."""
    return torch.diag_embed(Lambda) - P.transpose(-1, -2) @ Q.conj()  # (H, N, N)


def _dplr_ctilde(A: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, L: int) -> torch.Tensor:
    """``C̃ = C (I − Ab^L)`` with dense bilinear ``Ab`` and ``Ab^L`` by repeated squaring.

    A (H, N, N), C (H, N), dt (H,) -> (H, N). O(N³ log L) per channel: a reference, not fast.
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    half = 0.5 * dt[:, None, None] * A  # (H, N, N)
    Ab = torch.linalg.solve(eye - half, eye + half)  # (H, N, N)
    AbL = torch.linalg.matrix_power(Ab, L)  # (H, N, N)
    return C - (C[:, None, :] @ AbL)[:, 0]  # (H, N)


def _dplr_spectrum(Lambda, P, Q, B, Ct, dt, L: int) -> torch.Tensor:
    """Truncated generating function ``Σ_{j<L} K_j ω^j`` at ω_k = exp(−2πik/L); shape (H, L).

    ``Σ_j C Abʲ Bb ωʲ = C̃ (I − Ab ω)⁻¹ Bb = 2/(1+ω) · C̃ (g(ω) I − A)⁻¹ B`` with
    ``g(ω) = (2/Δ)(1−ω)/(1+ω)``; the resolvent of ``A = Λ − P Qᴴ`` follows from Woodbury,
    ``R − R P (I + Qᴴ R P)⁻¹ Qᴴ R`` with ``R = (g − Λ)⁻¹``, whose four contractions are
    Cauchy kernels. At ω = −1 (even L) the limit is ``(Δ/2) C̃ B`` and is used directly.
    """
    r = P.shape[-2]
    k = torch.arange(L, device=Lambda.device)
    k_real = torch.arange(L, dtype=dt.dtype, device=dt.device)  # (L,)
    omega = torch.exp(k_real * (-2j * math.pi / L))  # (L,) roots of unity
    pole = 2 * k == L  # ω = −1 exactly
    omega = torch.where(pole, torch.zeros_like(omega), omega)  # any finite value; replaced below
    g = (2.0 / dt[:, None]) * (1.0 - omega) / (1.0 + omega)  # (H, L)
    left = torch.cat([Ct[:, None], Q.conj()], dim=1)  # (H, 1+r, N)
    right = torch.cat([B[:, None], P], dim=1)  # (H, 1+r, N)
    v = left[:, :, None, :] * right[:, None, :, :]  # (H, 1+r, 1+r, N)
    k_all = _cauchy(v, g[:, None, None, :], Lambda[:, None, None, :])  # (H, 1+r, 1+r, L)
    k00, k01 = k_all[:, 0, 0], k_all[:, 0, 1:].transpose(1, 2)  # (H, L), (H, L, r)
    k10 = k_all[:, 1:, 0].transpose(1, 2)  # (H, L, r)
    k11 = k_all[:, 1:, 1:].permute(0, 3, 1, 2)  # (H, L, r, r)
    eye = torch.eye(r, dtype=k11.dtype, device=k11.device)
    sol = torch.linalg.solve(eye + k11, k10[..., None])  # (H, L, r, 1)
    resolvent = k00 - (k01[..., None, :] @ sol)[..., 0, 0]  # (H, L)
    spectrum = 2.0 / (1.0 + omega) * resolvent  # (H, L)
    at_pole = (0.5 * dt * (Ct * B).sum(-1))[:, None]  # (H, 1)
    return torch.where(pole, at_pole, spectrum)


def kernel_dplr(Lambda, P, Q, B, C, dt, L: int, conj_sym: bool = True) -> torch.Tensor:
    """Kernel of H bilinear-discretised DPLR SSMs ``A = diag(Λ) − P Qᴴ`` (S4's algorithm).

    Steps: (1) ``C̃ = C(I − Ab^L)`` with ``Ab^L`` from the dense Ab by repeated squaring
    (O(N³ log L); exact, chosen for correctness over speed); (2) the generating function
    at the L roots of unity through Cauchy kernels ``Σ_n v_n/(g(ω) − λ_n)`` and the Woodbury
    identity (the r×r system is solved per frequency); (3) an inverse FFT. With
    ``conj_sym=True`` all arguments are first extended by their conjugates to the full
    2N-state system, whose kernel is real.

    Parameters
    ----------
    Lambda : complex tensor, shape (H, N)
        Diagonal part of the continuous-time A, one row per channel.
    P, Q : complex tensor, shape (H, r, N) or (r, N)
        Low-rank factors, rank r >= 1 (shared over channels when 2-D);
        ``A = diag(Λ) − Σ_i P[i] Q[i]ᴴ``.
    B, C : complex or float tensor, shape (H, N)
        Continuous-time input and output vectors.
    dt : float or float tensor, shape () or (H,)
        Step sizes, finite and > 0.
    L : int
        Kernel length, >= 1.
    conj_sym : bool, default True
        True: the N states are one of each conjugate pair (system of size 2N).
        False: the N states are the whole system; the real part is returned.

    Returns
    -------
    K : float tensor, shape (H, L)
        ``K[h, j] = Re(C Abʲ Bb)`` of channel h.

    Raises
    ------
    ValueError
        On shape mismatches, non-finite entries, non-positive ``dt`` or a bad ``L``.
    """
    Lambda, B, C = _finite(Lambda, "Lambda"), _finite(B, "B"), _finite(C, "C")
    P, Q = _finite(P, "P"), _finite(Q, "Q")
    L = _check_length(L)
    check_ndim(Lambda, "Lambda", 2)
    H, N = Lambda.shape
    for name, t in (("B", B), ("C", C)):
        _check_shape_as(t, name, (H, N), "like Lambda")
    for name, t in (("P", P), ("Q", Q)):
        ok = t.ndim in (2, 3) and t.shape[-1] == N and t.shape[-2] >= 1
        if not ok or (t.ndim == 3 and t.shape[0] != H):
            raise ValueError(
                f"{name}: expected shape (r, {N}) or ({H}, r, {N}) with r >= 1, "
                f"got {tuple(t.shape)}"
            )
    if P.shape[-2] != Q.shape[-2]:
        raise ValueError(f"Q: rank r must equal P's ({P.shape[-2]}), got shape {tuple(Q.shape)}")
    cdtype = _complex_dtype(Lambda.dtype)
    for t in (B, C, P, Q):
        cdtype = torch.promote_types(cdtype, t.dtype)
    dt = _channel_dt(dt, H, N, cdtype, per_state=False).expand(H, 1)[:, 0]  # (H,)
    cdtype = torch.promote_types(cdtype, _complex_dtype(dt.dtype))
    dt = dt.to(_real_dtype(cdtype))
    Lambda, B, C = Lambda.to(cdtype), B.to(cdtype), C.to(cdtype)
    P, Q = P.to(cdtype).expand(H, -1, N), Q.to(cdtype).expand(H, -1, N)  # (H, r, N)
    if conj_sym:  # the full system of size 2N
        Lambda, B, C, P, Q = (torch.cat([t, t.conj()], dim=-1) for t in (Lambda, B, C, P, Q))
    Ct = _dplr_ctilde(_dplr_dense(Lambda, P, Q), C, dt, L)  # (H, N)
    spectrum = _dplr_spectrum(Lambda, P, Q, B, Ct, dt, L)  # (H, L)
    return torch.fft.ifft(spectrum, n=L, dim=-1).real  # (H, L)


# ----------------------------------------------------------------------------- FFT convolution
def _fft_causal(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution over the last axis, zero-padded so nothing wraps around."""
    L = u.shape[-1]
    K = K[..., :L]  # taps beyond L never reach the output
    n = L + K.shape[-1]  # >= L + Lk - 1: linear, not circular, convolution
    if u.is_complex() or K.is_complex():
        y = torch.fft.ifft(torch.fft.fft(u, n=n) * torch.fft.fft(K, n=n), n=n)
    else:
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)
    return y[..., :L]  # (..., H, L)


def _check_conv_args(u, kernels: dict, D):
    """Validate the FFT-convolution arguments; return tensors (D may be None)."""
    u = _finite(u, "u")
    if u.ndim < 1 or u.shape[-1] < 1:
        raise ValueError(f"u: expected shape (..., H, L) with L >= 1, got {tuple(u.shape)}")
    out = []
    for name, K in kernels.items():
        K = _finite(K, name)
        if K.ndim < 1 or K.shape[-1] < 1:
            raise ValueError(f"{name}: expected shape (H, Lk) with Lk >= 1, got {tuple(K.shape)}")
        try:
            torch.broadcast_shapes(u.shape[:-1], K.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"{name}: leading shape {tuple(K.shape[:-1])} does not broadcast against "
                f"u's {tuple(u.shape[:-1])}"
            ) from None
        out.append(K)
    if D is not None:
        D = _finite(D, "D")
        try:
            torch.broadcast_shapes(u.shape[:-1], D.shape)
        except RuntimeError:
            raise ValueError(
                f"D: shape {tuple(D.shape)} does not broadcast against u's {tuple(u.shape[:-1])}"
            ) from None
    return u, out, D


def fft_conv(u, K, D=None) -> torch.Tensor:
    """Causal convolution ``y_t = Σ_{j≤t} K_j u_{t−j} + D u_t`` over the last axis, via FFT.

    Both signals are zero-padded to ``L + Lk`` before the (r)FFT, so the result is the
    exact linear convolution. A kernel shorter than ``L`` acts as if zero-padded; taps
    beyond ``L`` are ignored.

    Parameters
    ----------
    u : float or complex tensor, shape (..., H, L)
        Input sequences.
    K : float or complex tensor, shape (H, Lk)
        Kernel per channel; any leading shape broadcastable with ``u.shape[:-1]``.
    D : float or complex tensor, shape (H,), optional
        Skip (feed-through) term.

    Returns
    -------
    y : tensor, shape (..., H, L)
        Complex only if an input is complex.
    """
    u, (K,), D = _check_conv_args(u, {"K": K}, D)
    y = _fft_causal(u, K)
    return y if D is None else y + D[..., None] * u


def fft_conv_bidirectional(u, K_fwd, K_bwd, D=None) -> torch.Tensor:
    """Non-causal convolution: a causal kernel plus an anti-causal one (S4's bidirectional mode).

    ``y_t = Σ_{j=0}^{t} K_fwd_j u_{t−j} + Σ_{j=0}^{L−1−t} K_bwd_j u_{t+j} + D u_t``:
    ``K_bwd`` is applied causally to the time-reversed input. Note both kernels include
    lag 0 (``K_fwd_0 + K_bwd_0`` multiplies ``u_t``); S4's reference code starts the
    backward kernel at lag 1 — pass ``K_bwd`` with a leading zero tap to match it.

    Parameters
    ----------
    u : float or complex tensor, shape (..., H, L)
        Input sequences.
    K_fwd, K_bwd : float or complex tensor, shape (H, Lk)
        Forward (causal) and backward kernels; shorter than L is zero-padded.
    D : float or complex tensor, shape (H,), optional
        Skip term.

    Returns
    -------
    y : tensor, shape (..., H, L)
    """
    u, (K_fwd, K_bwd), D = _check_conv_args(u, {"K_fwd": K_fwd, "K_bwd": K_bwd}, D)
    y = _fft_causal(u, K_fwd) + _fft_causal(u.flip(-1), K_bwd).flip(-1)  # (..., H, L)
    return y if D is None else y + D[..., None] * u
