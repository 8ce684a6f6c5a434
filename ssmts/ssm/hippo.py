"""HiPPO matrices, their normal-plus-low-rank form, and the S4 / S4D / S5 initialisations.

Conventions shared by every function here:

* Continuous time, stable sign: ``x'(t) = A x(t) + B u(t)`` with Re eig(A) <= 0, the matrices
  of the S4 codebase's ``transition()``. LegS is time-varying: ``x' = (1/t)(A x + B u)``.
* NPLR (S4): ``A = V (diag(Lambda) - P^T conj(Q)) V^H = V (Lambda - sum_r p_r q_r^H) V^H``,
  V unitary, with P, Q, B stored in the eigenbasis (``B = V^H B_orig``); ``Q == P`` here.
* Conjugate symmetry: halved forms keep, of each conjugate pair of a real system of even
  size N, the eigenvalue with **Im > 0**, sorted by increasing Im. A pair of zero
  eigenvalues (FouT only) is kept once, first, with eigenvector ``(u1 + i u2)/sqrt(2)``
  for a real orthonormal basis u1, u2 of the null space, hence "Im >= 0" below. The full
  system is ``cat([X, X.conj()], -1)`` for Lambda, P, Q, B and the columns of V
  (see :func:`dplr_to_dense`).
* Everything is computed in float64 (eigendecompositions included) and cast at the end to
  ``dtype`` or its complex counterpart (complex64 / complex128).

References: Gu et al. 2020 (HiPPO); Gu et al. 2022 (S4, and "On the Parameterization and
Initialization of Diagonal State Space Models", S4D); Smith et al. 2023 (S5).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._validate import as_tensor, check_finite, check_ndim

__all__ = ["NPLR", "DPLR", "S5Init", "hippo_matrices", "nplr", "dplr_init", "dplr_to_dense",
           "s4d_init", "s4d_real_init", "s5_init", "s5_project", "legs_basis"]

_MEASURES = {"legs": "legs", "legt": "legt", "lagt": "lagt", "fout": "fout", "fourier": "fout"}
_MIN_RANK = {"legs": 1, "legt": 2, "lagt": 1, "fout": 1}
_S4D_METHODS = ("lin", "inv", "legs")


class NPLR(NamedTuple):
    """Full NPLR form ``A = V (diag(Lambda) - P.T @ Q.conj()) V^H``, ``B_orig = V B``.

    Fields: ``Lambda`` complex (N,), eigenvalues of the normal part sorted by Im;
    ``P``, ``Q`` complex (rank, N), eigenbasis low-rank factors; ``B`` complex (N,), eigenbasis
    input ``V^H B_orig``; ``V`` complex (N, N), unitary.
    """

    Lambda: Tensor
    P: Tensor
    Q: Tensor
    B: Tensor
    V: Tensor


class DPLR(NamedTuple):
    """Conjugate-halved NPLR form; the full one is ``cat([X, X.conj()], -1)`` per field.

    Fields: ``Lambda`` complex (N//2,), Im >= 0; ``P``, ``Q`` complex (rank, N//2);
    ``B`` complex (N//2,); ``V`` complex (N, N//2) with ``[V, conj V]`` unitary.
    """

    Lambda: Tensor
    P: Tensor
    Q: Tensor
    B: Tensor
    V: Tensor


class S5Init(NamedTuple):
    """Diagonalised (block) HiPPO-N: ``A_N = V diag(Lambda) Vinv`` (``2 Re(...)`` if halved).

    Fields: ``Lambda`` complex (P',); ``V`` complex (P, P'); ``Vinv = V^H`` complex (P', P);
    P' = P//2 with conjugate symmetry, else P.
    """

    Lambda: Tensor
    V: Tensor
    Vinv: Tensor


# ----------------------------------------------------------------------------- validation


def _check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as int; raise ``ValueError`` unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}; pass a larger {name}")
    return int(value)


def _check_even(value: int, name: str, why: str) -> int:
    """Return ``value``; raise ``ValueError`` naming ``name`` if it is odd."""
    if value % 2:
        raise ValueError(f"{name}: must be even ({why}), got {value}; use {value + 1}")
    return value


def _check_measure(measure) -> str:
    """Canonical measure name; raise ``ValueError`` naming ``measure`` if unknown."""
    key = _MEASURES.get(measure.lower()) if isinstance(measure, str) else None
    if key is None:
        raise ValueError(f"measure: unknown HiPPO measure {measure!r}; use one of 'legs', "
                         "'legt', 'lagt', 'fout' (alias 'fourier')")
    return key


def _check_dtype(dtype) -> tuple[torch.dtype, torch.dtype]:
    """Return (real dtype, complex dtype) for float32 / float64."""
    if dtype == torch.float64:
        return torch.float64, torch.complex128
    if dtype == torch.float32:
        return torch.float32, torch.complex64
    raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype!r}")


def _check_N(measure: str, N, half: bool = False) -> int:
    """Validate the state size: >= 1, even for FouT or when conjugate pairs are halved."""
    N = _check_int(N, "N", 2 if half or measure == "fout" else 1)
    if half or measure == "fout":
        _check_even(N, "N", "conjugate pairs are kept once" if half else "FouT stores pairs")
    return N


# ----------------------------------------------------------------------------- private math


def _transition(measure: str, N: int) -> tuple[Tensor, Tensor]:
    """HiPPO (A (N, N), B (N,)) in float64; measure and N are already validated."""
    n = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)  # (N,)
    row, col = n[:, None], n[None, :]  # (N, 1), (1, N)
    if measure == "legs":
        A = torch.where(row > col, -r[:, None] * r[None, :], torch.zeros(())) - torch.diag(n + 1)
        B = r.clone()
    elif measure == "legt":
        sign = torch.where(row < col, (-1.0) ** (row - col), torch.ones(()))
        A = -0.5 * r[:, None] * sign * r[None, :]
        B = 0.5 * r
    elif measure == "lagt":
        B = torch.ones(N, dtype=torch.float64)
        A = 0.5 * torch.eye(N, dtype=torch.float64) - torch.tril(B[:, None] * B[None, :])
    else:  # fout: state (c0, placeholder, c1, s1, c2, s2, ...), frequency pi*k on pair k
        d = torch.zeros(N - 1, dtype=torch.float64)
        d[2::2] = torch.arange(1, N // 2, dtype=torch.float64)  # pair (2k, 2k+1) <-> k
        A = math.pi * (torch.diag(d, -1) - torch.diag(d, 1))
        B = _fout_vector(N)
        A = A - B[:, None] * B[None, :]  # the window's far endpoint u(t - 1)
    return A, B


def _fout_vector(N: int) -> Tensor:
    """FouT input vector (1, 0, sqrt2, 0, sqrt2, 0, ...), shape (N,)."""
    B = torch.zeros(N, dtype=torch.float64)
    B[0::2] = math.sqrt(2.0)
    B[0] = 1.0
    return B


def _rank_correction(measure: str, N: int, rank: int) -> Tensor:
    """Real P (rank, N) such that A + P^T P is normal (c I + skew-symmetric)."""
    n = torch.arange(N, dtype=torch.float64)
    if measure == "legs":
        P = torch.sqrt(n + 0.5)[None]  # (1, N)
    elif measure == "legt":
        r = torch.sqrt((2 * n + 1) / 2)
        P = torch.stack([r * (n % 2 == 1), r * (n % 2 == 0)])  # (2, N): odd, even entries
    elif measure == "lagt":
        P = torch.full((1, N), math.sqrt(0.5), dtype=torch.float64)
    else:
        P = _fout_vector(N)[None]  # (1, N)
    pad = torch.zeros(rank - P.shape[0], N, dtype=torch.float64)
    return torch.cat([P, pad])  # (rank, N)


def _normal_split(A: Tensor, P: Tensor) -> tuple[float, Tensor]:
    """Split A + P^T P = re I + S with S real skew-symmetric; return (re, S)."""
    AP = A + P.T @ P  # (N, N)
    re = float(torch.diagonal(AP).mean())
    S = AP - re * torch.eye(A.shape[0], dtype=A.dtype)
    S = 0.5 * (S - S.T)  # exact skew symmetry; the discarded half is zero by construction
    return re, S


def _eig_skew(S: Tensor) -> tuple[Tensor, Tensor]:
    """All eigenpairs of real skew S: S = V diag(i w) V^H, V unitary, w ascending."""
    return torch.linalg.eigh(S.to(torch.complex128) * -1j)  # -iS is Hermitian


def _eig_skew_half(S: Tensor) -> tuple[Tensor, Tensor]:
    """One of each conjugate eigenpair of real skew S (n even): w (n/2,) >= 0, V (n, n/2).

    ``[V, conj V]`` is unitary and ``S = V diag(iw) V^H + conj(same)``.
    """
    n = S.shape[0]
    w, V = _eig_skew(S)
    tol = 1e-9 * max(1.0, float(w.abs().max()))
    null = w.abs() <= tol
    z = int(null.sum())
    Z = V[:, null]  # (n, z) complex basis of the null space of the real S
    real = torch.cat([Z.real, Z.imag], dim=1)  # (n, 2z), spans the real null space
    U = torch.linalg.svd(real, full_matrices=False)[0][:, :z] if z else real[:, :0]  # (n, z)
    pairs = (U[:, 0::2] + 1j * U[:, 1::2]) / math.sqrt(2.0)  # (n, z/2)
    w_half = torch.cat([torch.zeros(z // 2, dtype=w.dtype), w[w > tol]])
    V_half = torch.cat([pairs.to(V.dtype), V[:, w > tol]], dim=1)  # (n, n/2)
    if z % 2 or V_half.shape[1] != n // 2:
        raise RuntimeError(f"eigenvalues of the {n}x{n} skew part do not pair up; report a bug")
    return w_half, V_half


def _nplr_parts(measure: str, N: int, rank: int) -> tuple[Tensor, Tensor, float, Tensor]:
    """(B (N,), P (rank, N), re, S (N, N)) with A + P^T P = re I + S, S skew."""
    A, B = _transition(measure, N)
    P = _rank_correction(measure, N, rank)
    re, S = _normal_split(A, P)
    return B, P, re, S


# ----------------------------------------------------------------------------- public API


def hippo_matrices(
    measure: str, N: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """HiPPO transition matrices (A, B) of ``x'(t) = A x(t) + B u(t)``, stable sign.

    The matrices are those of the S4 codebase's ``transition()``:

    * ``"legs"`` (scaled Legendre, time-varying ``x' = (1/t)(A x + B u)``):
      ``A_nk = -sqrt(2n+1) sqrt(2k+1)`` for n > k, ``-(n+1)`` for n = k, 0 above;
      ``B_n = sqrt(2n+1)``. The state is the projection of ``u`` on ``[0, t]`` onto
      :func:`legs_basis`.
    * ``"legt"`` (translated Legendre, window length 2):
      ``A_nk = -1/2 sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k))``,
      ``B_n = sqrt(2n+1)/2``; ``u(t-s) ~ sum_n x_n sqrt(2n+1) P_n(1-s)`` for s in [0, 2].
    * ``"lagt"`` (translated Laguerre, S4's tilted version): ``A = I/2 - tril(1)``, ``B = 1``.
      The HiPPO paper's LagT is ``-tril(1)``; the ``I/2`` shift weights the history by
      ``exp(s/2)``.
    * ``"fout"`` / ``"fourier"`` (translated Fourier, unit window, N even): states
      ``(c_0, 0, c_1, s_1, c_2, s_2, ...)`` with rotation ``pi k`` on pair k, minus the
      rank-one term ``B B^T`` for the window's far end; ``B = (1, 0, sqrt2, 0, sqrt2, ...)``.
      State 1 is an inert placeholder (zero row and column), so A has one zero eigenvalue.

    Parameters
    ----------
    measure : str
        ``"legs"``, ``"legt"``, ``"lagt"``, ``"fout"`` (or ``"fourier"``).
    N : int
        State size, >= 1 (even and >= 2 for ``"fout"``).
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.

    Returns
    -------
    A : real tensor, shape (N, N)
    B : real tensor, shape (N,)
    """
    measure = _check_measure(measure)
    N = _check_N(measure, N)
    real, _ = _check_dtype(dtype)
    A, B = _transition(measure, N)
    return A.to(real), B.to(real)


def _nplr_form(measure, N, rank, dtype, half: bool) -> tuple[Tensor, ...]:
    """Validate, then (Lambda, P, Q, B, V) of the full (half=False) or halved NPLR form."""
    measure = _check_measure(measure)
    N = _check_N(measure, N, half)
    rank = _check_int(rank, "rank", _MIN_RANK[measure])
    _, cplx = _check_dtype(dtype)
    B, P, re, S = _nplr_parts(measure, N, rank)
    w, V = _eig_skew_half(S) if half else _eig_skew(S)
    Vh = V.conj().T  # (M, N)
    P_e = P.to(V.dtype) @ Vh.T  # (rank, M): row r is V^H p_r
    return tuple(t.to(cplx) for t in (re + 1j * w, P_e, P_e.clone(), Vh @ B.to(V.dtype), V))


def nplr(measure: str, N: int, rank: int = 1, dtype: torch.dtype = torch.float64) -> NPLR:
    """Normal-plus-low-rank form of a HiPPO matrix: ``A = V (diag(Lambda) - P^T conj(Q)) V^H``.

    The normal part ``A + sum_r p_r p_r^T`` is ``re I + S`` with S real skew-symmetric
    (``re = -1/2`` for LegS, 0 for the others); S is diagonalised through the Hermitian
    ``eigh(-1j S)`` in float64, so V is unitary to rounding and ``Lambda = re + i w``.

    Parameters
    ----------
    measure : str
        ``"legs"``, ``"legt"``, ``"lagt"``, ``"fout"`` (``"fourier"``).
    N : int
        State size (even for ``"fout"``).
    rank : int
        Rank of the correction, >= 1 (>= 2 for ``"legt"``); extra rows are zero.
    dtype : torch.dtype
        float32 or float64; outputs are its complex counterpart.

    Returns
    -------
    NPLR
        ``Lambda`` (N,), ``P`` and ``Q`` (rank, N), ``B`` (N,), ``V`` (N, N), all complex,
        ``P``, ``Q``, ``B`` in the eigenbasis (``B = V^H B_orig``).
    """
    return NPLR(*_nplr_form(measure, N, rank, dtype, half=False))


def dplr_init(
    measure: str = "legs", N: int = 64, rank: int = 1, dtype: torch.dtype = torch.float64
) -> DPLR:
    """Conjugate-halved NPLR (DPLR) initialisation of S4: one eigenvalue of each pair.

    Same decomposition as :func:`nplr`, keeping the N//2 eigenvalues with Im >= 0 (sorted
    by increasing Im) and their eigenvectors. With ``X2 = cat([X, X.conj()], -1)`` for
    each field, ``A = V2 (diag(Lambda2) - P2^T conj(Q2)) V2^H`` and ``B = V2 B2``, which
    is what :func:`dplr_to_dense` computes. Parameters are those of :func:`nplr`, except
    that ``N`` (the full real state size) must be even for every measure.

    Returns
    -------
    DPLR
        ``Lambda`` (N//2,), ``P``, ``Q`` (rank, N//2), ``B`` (N//2,), ``V`` (N, N//2), complex.
    """
    return DPLR(*_nplr_form(measure, N, rank, dtype, half=True))


def _check_dplr_args(Lambda, P, Q, B, V) -> list[Tensor | None]:
    """Convert, check finiteness and shapes, cast to one complex dtype (128 if any is 64-bit)."""
    names = ("Lambda", "P", "Q", "B", "V")
    ts = [None if t is None else check_finite(as_tensor(t, n), n)
          for t, n in zip((Lambda, P, Q, B, V), names)]
    Lambda, P, Q, B, V = ts
    check_ndim(Lambda, "Lambda", range(1, 8))
    batch, M = tuple(Lambda.shape[:-1]), Lambda.shape[-1]
    if P.ndim != Lambda.ndim + 1 or tuple(P.shape[:-2]) + (P.shape[-1],) != batch + (M,):
        raise ValueError(f"P: expected shape {batch + ('rank', M)}, got {tuple(P.shape)}")
    if Q.shape != P.shape:
        raise ValueError(f"Q: expected the shape of P {tuple(P.shape)}, got {tuple(Q.shape)}")
    if tuple(B.shape) != batch + (M,):
        raise ValueError(f"B: expected shape {batch + (M,)}, got {tuple(B.shape)}")
    if V is not None and (V.ndim != Lambda.ndim + 1 or tuple(V.shape[:-2]) != batch
                          or V.shape[-1] != M):
        raise ValueError(f"V: expected shape {batch + ('N', M)}, got {tuple(V.shape)}")
    wide = any(t is not None and t.dtype in (torch.float64, torch.complex128) for t in ts)
    cplx = torch.complex128 if wide else torch.complex64
    return [None if t is None else t.to(cplx) for t in ts]


def dplr_to_dense(Lambda, P, Q, B, V=None, conj_sym: bool = True) -> tuple[Tensor, Tensor]:
    """Dense complex (A, B) of a (D)PLR system, in the original basis or the eigenbasis.

    With ``conj_sym`` every field is first completed with its conjugate along the state
    axis (``X2 = cat([X, X.conj()], -1)``, ``V2 = cat([V, V.conj()], -1)``). Then
    ``A_eig = diag(Lambda2) - P2^T conj(Q2)`` and, if ``V`` is given,
    ``A = V2 A_eig V2^H``, ``B = V2 B2`` (V2 is assumed unitary, as from :func:`nplr` /
    :func:`dplr_init`); without ``V`` the eigenbasis pair ``(A_eig, B2)`` is returned.
    Leading batch dimensions ``...`` are allowed and must agree across arguments.

    Parameters
    ----------
    Lambda : complex tensor, shape (..., M)
    P, Q : complex tensor, shape (..., rank, M)
    B : complex tensor, shape (..., M)
    V : complex tensor, shape (..., N, M), optional
    conj_sym : bool
        Whether the inputs hold one of each conjugate pair (then the output size is 2M).

    Returns
    -------
    A : complex tensor, shape (..., N, N)
        N = 2M with ``conj_sym``, else M (or ``V.shape[-2]``). Real up to rounding when the
        halves come from a real system.
    B : complex tensor, shape (..., N)
    """
    Lambda, P, Q, B, V = _check_dplr_args(Lambda, P, Q, B, V)
    if conj_sym:
        Lambda, P, Q, B = (torch.cat([t, t.conj()], dim=-1) for t in (Lambda, P, Q, B))
    A = torch.diag_embed(Lambda) - P.transpose(-1, -2) @ Q.conj()  # (..., N, N)
    if V is None:
        return A, B
    if conj_sym:
        V = torch.cat([V, V.conj()], dim=-1)  # (..., N, 2M)
    Vh = V.conj().transpose(-1, -2)
    return V @ A @ Vh, (V @ B.unsqueeze(-1)).squeeze(-1)


def s4d_init(N: int, method: str = "lin", dtype: torch.dtype = torch.float64) -> Tensor:
    """Diagonal S4D eigenvalues, one of each conjugate pair (Gu et al. 2022, S4D).

    * ``"lin"`` (S4D-Lin): ``lambda_n = -1/2 + i pi n``.
    * ``"inv"`` (S4D-Inv): ``lambda_n = -1/2 + i (N/pi) (N/(2n+1) - 1)``.
    * ``"legs"`` (S4D-LegS): the eigenvalues with Im >= 0 of the normal part of HiPPO-LegS
      (``-1/2 + i w``), sorted by increasing Im; equals ``dplr_init("legs", N).Lambda``.

    For ``"lin"``/``"inv"``, n = 0, ..., N/2 - 1 in that order. The full real system of
    size N has eigenvalues ``cat([Lambda, Lambda.conj()])``.

    Parameters
    ----------
    N : int
        Full state size, even, >= 2.
    method : {"lin", "inv", "legs"}
    dtype : torch.dtype
        float32 or float64; output is its complex counterpart.

    Returns
    -------
    Lambda : complex tensor, shape (N//2,)
        All with real part -1/2.
    """
    N = _check_N("legs", N, half=True)
    if method not in _S4D_METHODS:
        raise ValueError(f"method: unknown S4D init {method!r}; use one of {_S4D_METHODS}")
    _, cplx = _check_dtype(dtype)
    n = torch.arange(N // 2, dtype=torch.float64)
    if method == "lin":
        imag = math.pi * n
    elif method == "inv":
        imag = N / math.pi * (N / (2 * n + 1) - 1)
    else:
        _, _, _, S = _nplr_parts("legs", N, 1)
        imag = _eig_skew_half(S)[0]
    return torch.complex(torch.full_like(imag, -0.5), imag).to(cplx)


def s4d_real_init(N: int, D: int | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Mamba's S4D-Real initialisation ``A = -(1, 2, ..., N)`` (Mamba stores ``log(-A)``).

    Parameters
    ----------
    N : int
        State size, >= 1.
    D : int, optional
        Number of channels; when given the row is repeated to shape (D, N).
    dtype : torch.dtype
        float32 or float64.

    Returns
    -------
    A : real tensor, shape (N,) or (D, N)
    """
    N, (real, _) = _check_int(N, "N", 1), _check_dtype(dtype)
    A = -torch.arange(1, N + 1, dtype=real)  # (N,)
    return A if D is None else A.expand(_check_int(D, "D", 1), N).clone()  # (D, N)


def s5_init(
    P: int, blocks: int = 1, conj_sym: bool = True, dtype: torch.dtype = torch.float64
) -> S5Init:
    """S5 initialisation: diagonalised HiPPO-N, optionally block-diagonal (Smith et al. 2023).

    HiPPO-N of size n is the normal part of LegS, ``A + 1/2 B B^T = -1/2 I + S``.
    The state of size P holds ``blocks`` copies of the size ``n = P/blocks`` HiPPO-N on
    the diagonal; V is block-diagonal accordingly and Lambda is the per-block spectrum
    repeated. Without ``conj_sym``: ``A_N = V diag(Lambda) Vinv`` with V (P, P) unitary.
    With ``conj_sym`` each block keeps its n/2 eigenvalues with Im >= 0 and their
    eigenvectors, and ``A_N = 2 Re(V diag(Lambda) Vinv)``; a real system ``(A_N, B, C)``
    then has impulse response ``C exp(A_N t) B = 2 Re(C~ diag(exp(Lambda t)) B~)`` with
    ``(B~, C~) = s5_project(B, C, init)``.

    Parameters
    ----------
    P : int
        State size, >= 1, divisible by ``blocks``.
    blocks : int
        Number of diagonal blocks, >= 1.
    conj_sym : bool
        Keep one of each conjugate pair (then each block size ``P/blocks`` must be even).
    dtype : torch.dtype
        float32 or float64; outputs are its complex counterpart.

    Returns
    -------
    S5Init
        ``Lambda`` (P',), ``V`` (P, P'), ``Vinv = V^H`` (P', P), with P' = P//2 or P.
    """
    P, blocks = _check_int(P, "P", 1), _check_int(blocks, "blocks", 1)
    if P % blocks:
        raise ValueError(f"P: {P} is not divisible by blocks={blocks}; use a multiple of blocks")
    n = P // blocks
    if conj_sym and n % 2:
        raise ValueError(f"blocks: block size P/blocks = {n} is odd but conj_sym needs it even; "
                         "change P or blocks, or pass conj_sym=False")
    _, cplx = _check_dtype(dtype)
    _, _, re, S = _nplr_parts("legs", n, 1)
    w, Vb = _eig_skew_half(S) if conj_sym else _eig_skew(S)
    Lambda = (re + 1j * w).repeat(blocks)  # (P',)
    V = torch.block_diag(*([Vb] * blocks))  # (P, P')
    return S5Init(Lambda.to(cplx), V.to(cplx), V.conj().T.contiguous().to(cplx))


def s5_project(B, C, init: S5Init) -> tuple[Tensor, Tensor]:
    """Project real (or complex) S5 input/output matrices into the eigenbasis.

    Parameters
    ----------
    B : real or complex tensor, shape (P, H)
        Input matrix in the original (HiPPO-N) basis.
    C : real or complex tensor, shape (H', P)
        Output matrix in the original basis.
    init : S5Init
        From :func:`s5_init`, ``V`` of shape (P, P').

    Returns
    -------
    B_tilde : complex tensor, shape (P', H)
        ``Vinv @ B``.
    C_tilde : complex tensor, shape (H', P')
        ``C @ V``. For a halved init the real outputs are ``2 Re(C_tilde x_tilde)``.
    """
    if not isinstance(init, S5Init):
        raise ValueError(f"init: expected the S5Init of s5_init, got {type(init).__name__}")
    B = check_finite(check_ndim(as_tensor(B, "B"), "B", 2), "B")
    C = check_finite(check_ndim(as_tensor(C, "C"), "C", 2), "C")
    P = init.V.shape[0]
    if B.shape[0] != P:
        raise ValueError(f"B: expected shape ({P}, H) like init's state, got {tuple(B.shape)}")
    if C.shape[1] != P:
        raise ValueError(f"C: expected shape (H', {P}) like init's state, got {tuple(C.shape)}")
    return init.Vinv @ B.to(init.V.dtype), C.to(init.V.dtype) @ init.V


def legs_basis(N: int, s) -> Tensor:
    """Scaled Legendre basis of HiPPO-LegS: ``g_n(s) = sqrt(2n+1) P_n(2s - 1)`` on [0, 1].

    The ``g_n`` are orthonormal for the uniform measure on [0, 1]. A LegS state ``c(t)``
    (``x' = (1/t)(A x + B u)`` with :func:`hippo_matrices` ``("legs")``) holds the
    coefficients ``c_n(t) = (1/t) int_0^t u(tau) g_n(tau/t) dtau``, so the history is
    ``u(tau) ~ sum_n c_n(t) g_n(tau/t) = legs_basis(N, tau/t) @ c(t)`` for tau in [0, t].

    Parameters
    ----------
    N : int
        Number of basis functions, >= 1.
    s : real tensor, shape (L,)
        Points in [0, 1] (tau/t); non-float input is converted as by ``as_tensor``.

    Returns
    -------
    G : real tensor, shape (L, N)
        ``G[l, n] = g_n(s_l)``, in the dtype of ``s``.
    """
    N = _check_int(N, "N", 1)
    s = check_finite(check_ndim(as_tensor(s, "s"), "s", 1), "s")
    if s.is_complex():
        raise ValueError("s: expected real points in [0, 1], got a complex tensor")
    if not s.is_floating_point():
        s = s.to(torch.float64)  # integer tensors
    if bool(((s < 0) | (s > 1)).any()):
        raise ValueError(f"s: points must lie in [0, 1] (tau/t), got range [{float(s.min()):g}, "
                         f"{float(s.max()):g}]; rescale the times")
    x = 2 * s - 1  # (L,)
    cols = [torch.ones_like(x), x]
    for n in range(1, N - 1):  # Bonnet: (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}
        cols.append(((2 * n + 1) * x * cols[n] - n * cols[n - 1]) / (n + 1))
    G = torch.stack(cols[:N], dim=-1)  # (L, N)
    return G * torch.sqrt(2 * torch.arange(N, dtype=s.dtype) + 1)
