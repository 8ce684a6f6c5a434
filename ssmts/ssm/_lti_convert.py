"""Input conversion and foreign-format conversions for ``LTISystem`` (private).

Array / ``dt`` / grid validation shared by the ``LTISystem`` methods, and the bodies
of ``from_diagonal``, ``from_scipy``, ``from_control``, ``to_real``, ``to_scipy`` and
``to_control``.  Constructors take the class to build as ``cls`` (so this module never
imports ``lti``); the public docstrings live on the methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg as sla
import scipy.signal as ssig

if TYPE_CHECKING:  # pragma: no cover
    from .lti import LTISystem

_COMPLEX_HINT = (
    "scipy.signal and python-control want real matrices; build a real system with "
    "LTISystem.from_diagonal(..., conj_sym=True) or convert with .to_real()"
)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert a tensor / array / scalar to a float64 or complex128 numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        import torch

        t = x.detach().cpu()
        t = t.to(torch.complex128).resolve_conj() if t.is_complex() else t.to(torch.float64)
        x = t.resolve_neg().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - defensive
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc
    if arr.dtype.kind not in "biufc":
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}; pass a numeric array")
    arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        raise ValueError(
            f"{name}: {len(bad)} non-finite value(s) "
            f"(first at index {tuple(int(i) for i in bad[0])})"
            "; remove NaN/inf before building the system"
        )
    return arr


def _check_dt(dt: Any) -> float | bool:
    """Normalise ``dt`` to 0.0 (continuous), True (discrete, unspecified) or a float > 0."""
    if dt is None:
        return 0.0
    if isinstance(dt, (bool, np.bool_)):
        return True if dt else 0.0
    dt_arr = _to_numpy(dt, "dt")
    if dt_arr.size != 1 or np.iscomplexobj(dt_arr) or dt_arr.item() < 0:
        raise ValueError(
            f"dt: expected 0/None (continuous), a sampling period > 0, or True, got {dt!r}"
        )
    return float(dt_arr.item())


def _check_grid(w: Any, name: str) -> np.ndarray:
    """Real, finite, 1-D (scalars become length 1)."""
    arr = _to_numpy(w, name)
    if np.iscomplexobj(arr) or arr.ndim > 1:
        raise ValueError(
            f"{name}: expected a real 1-D array, got shape {arr.shape}, dtype {arr.dtype}"
        )
    return arr.reshape(-1)  # (K,)


def _check_D(D: Any, p: int, m: int) -> np.ndarray:
    """Return D as a (p, m) array; None -> zeros; scalar only for SISO or 0."""
    if D is None:
        return np.zeros((p, m))
    D = _to_numpy(D, "D")
    if D.ndim == 0 and ((p, m) == (1, 1) or D.item() == 0):
        return np.full((p, m), D.item(), dtype=D.dtype)
    if D.ndim == 1 and D.shape[0] == max(p, m) and min(p, m) == 1:
        return D.reshape(p, m)  # (p,) or (m,) -> (p, m)
    if D.shape != (p, m):
        raise ValueError(
            f"D: expected shape ({p}, {m}) (outputs, inputs) from C and B, got {D.shape}; "
            "a scalar D is only accepted for SISO systems or 0"
        )
    return D


def check_matrices(A: Any, B: Any, C: Any, D: Any) -> tuple[np.ndarray, ...]:
    """Validate the constructor's matrices; return ``A (n, n), B (n, m), C (p, n), D (p, m)``."""
    A, B, C = _to_numpy(A, "A"), _to_numpy(B, "B"), _to_numpy(C, "C")
    if A.ndim == 0:
        A = A.reshape(1, 1)  # (1, 1)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A: expected a non-empty square (n, n) matrix, got shape {A.shape}")
    n = A.shape[0]
    B = B.reshape(n, 1) if B.ndim <= 1 and B.size == n else B  # (n,) -> (n, 1)
    if B.ndim != 2 or B.shape[0] != n or B.shape[1] == 0:
        raise ValueError(f"B: expected shape ({n}, m) or ({n},) to match A, got {B.shape}")
    C = C.reshape(1, n) if C.ndim <= 1 and C.size == n else C  # (n,) -> (1, n)
    if C.ndim != 2 or C.shape[1] != n or C.shape[0] == 0:
        raise ValueError(f"C: expected shape (p, {n}) or ({n},) to match A, got {C.shape}")
    p, m = C.shape[0], B.shape[1]
    D = _check_D(D, p, m)
    return A, B, C, D


def to_tf(sys: "LTISystem") -> Any:
    """Body of ``LTISystem.tf``: ``scipy.signal.ss2tf`` per input, leading zeros trimmed."""
    out = [[None] * sys.n_inputs for _ in range(sys.n_outputs)]
    for j in range(sys.n_inputs):
        num, den = ssig.ss2tf(sys.A, sys.B, sys.C, sys.D, input=j)  # (p, n+1), (n+1,)
        for i in range(sys.n_outputs):
            nz = np.trim_zeros(num[i], "f")
            out[i][j] = (nz if nz.size else np.zeros(1, num.dtype), den)
    return out[0][0] if (sys.n_inputs, sys.n_outputs) == (1, 1) else out


def from_diagonal(cls: type, Lambda: Any, B: Any, C: Any, D: Any, dt: Any,
                  conj_sym: bool) -> "LTISystem":
    """Body of ``LTISystem.from_diagonal``: validates ``Lambda``, ``B``, ``C``, ``D``."""
    lam = _to_numpy(Lambda, "Lambda")
    if lam.ndim != 1 or lam.shape[0] == 0:
        raise ValueError(f"Lambda: expected a non-empty 1-D diagonal (P,), got {lam.shape}")
    if not conj_sym:
        return cls(np.diag(lam), B, C, D, dt)
    P = lam.shape[0]
    Bt, Ct = _to_numpy(B, "B"), _to_numpy(C, "C")
    Bt = Bt.reshape(P, 1) if Bt.ndim == 1 and Bt.shape[0] == P else Bt  # (P,) -> (P, 1)
    Ct = Ct.reshape(1, P) if Ct.ndim == 1 and Ct.shape[0] == P else Ct  # (P,) -> (1, P)
    if Bt.ndim != 2 or Bt.shape[0] != P:
        raise ValueError(f"B: expected shape ({P}, m) to match Lambda, got {Bt.shape}")
    if Ct.ndim != 2 or Ct.shape[1] != P:
        raise ValueError(f"C: expected shape (p, {P}) to match Lambda, got {Ct.shape}")
    if D is not None and np.any(np.imag(_to_numpy(D, "D"))):
        raise ValueError("D: with conj_sym=True the output is real, so D must be real")
    lr, li = np.diag(lam.real), np.diag(lam.imag)
    A = np.block([[lr, -li], [li, lr]])  # (2P, 2P)
    Br = np.concatenate([Bt.real, Bt.imag], axis=0)  # (2P, m)
    Cr = np.concatenate([2 * Ct.real, -2 * Ct.imag], axis=1)  # (p, 2P)
    return cls(A, Br, Cr, None if D is None else np.real(_to_numpy(D, "D")), dt)


def from_scipy(cls: type, sys: Any) -> "LTISystem":
    """Body of ``LTISystem.from_scipy``: validates ``sys``."""
    if not isinstance(sys, (ssig.lti, ssig.dlti)):
        raise ValueError(f"sys: expected a scipy.signal lti/dlti, got {type(sys).__name__}")
    ss = sys.to_ss()
    return cls(ss.A, ss.B, ss.C, ss.D, ss.dt if isinstance(sys, ssig.dlti) else 0)


def from_control(cls: type, sys: Any) -> "LTISystem":
    """Body of ``LTISystem.from_control``: validates ``sys``."""
    control = _import_control()
    if not isinstance(sys, control.LTI):
        raise ValueError(f"sys: expected a python-control LTI system, got {type(sys).__name__}")
    ss = control.ss(sys)
    return cls(ss.A, ss.B, ss.C, ss.D, ss.dt)


def to_real(sys: "LTISystem", cls: type, tol: float) -> "LTISystem":
    """Body of ``LTISystem.to_real``: a real system of class ``cls``, or ``ValueError``."""
    if sys.is_real:
        return cls(*(M.real for M in (sys.A, sys.B, sys.C, sys.D)), dt=sys.dt)
    lam = np.diag(sys.A)
    if np.any(sys.A - np.diag(lam)) or np.any(sys.D.imag):
        raise ValueError("to_real: only diagonal A with real D is supported; " + _COMPLEX_HINT)
    res = np.einsum("pi,im->ipm", sys.C, sys.B)  # (n, p, m) residues C_i B_i^T
    pairs, reals = _conjugate_pairs(lam, res, tol)
    # real modes: rotate b_i so its largest entry is real; then b_i and c_i are both real
    big = [sys.B[i, np.argmax(np.abs(sys.B[i]))] for i in reals]
    rot = np.exp(-1j * np.angle(np.array(big, dtype=np.complex128)))  # (r,)
    b_re = (sys.B[reals] * rot[:, None]).real  # (r, m)
    c_re = (sys.C[:, reals] / rot[None, :]).real  # (p, r)
    A, B, C = np.diag(lam[reals].real), b_re, c_re
    if pairs:
        half = from_diagonal(cls, lam[pairs], sys.B[pairs], sys.C[:, pairs], None, 0, True)
        A = sla.block_diag(A, half.A)
        B = np.concatenate([B, half.B], axis=0)  # (n, m)
        C = np.concatenate([C, half.C], axis=1)  # (p, n)
    return cls(A, B, C, sys.D.real, sys.dt)


def to_scipy(sys: "LTISystem") -> Any:
    """Body of ``LTISystem.to_scipy``: ``ValueError`` for a complex system."""
    if not sys.is_real:
        raise ValueError("to_scipy: the system is complex; " + _COMPLEX_HINT)
    mats = tuple(M.real for M in (sys.A, sys.B, sys.C, sys.D))
    return ssig.StateSpace(*mats, dt=sys.dt) if sys.is_discrete else ssig.StateSpace(*mats)


def to_control(sys: "LTISystem") -> Any:
    """Body of ``LTISystem.to_control``: ``ValueError`` for a complex system."""
    control = _import_control()
    if not sys.is_real:
        raise ValueError("to_control: the system is complex; " + _COMPLEX_HINT)
    return control.ss(*(M.real for M in (sys.A, sys.B, sys.C, sys.D)), sys.dt)


def _import_control() -> Any:
    """Import python-control or explain how to install it."""
    try:
        import control
    except ImportError as exc:
        raise ImportError("python-control is needed for this: pip install ssmts[control]") from exc
    return control


def _conjugate_pairs(lam: np.ndarray, res: np.ndarray, tol: float) -> tuple[list[int], list[int]]:
    """Split diagonal modes into conjugate pairs (the Im > 0 member is returned) and real modes.

    ``lam`` (n,) eigenvalues, ``res`` (n, p, m) residues; raises ``ValueError`` when a complex
    mode has no conjugate partner with conjugate residue, or a real mode a complex residue.
    """
    scale = max(1.0, float(np.max(np.abs(lam))))
    rscale = max(1e-300, float(np.max(np.abs(res))))
    res_flat = res.reshape(len(lam), -1)  # (n, p*m)
    used, pairs, reals = np.zeros(len(lam), bool), [], []
    for i in np.argsort(-lam.imag, kind="stable"):
        if used[i]:
            continue
        used[i] = True
        if abs(lam[i].imag) <= tol * scale:
            if np.max(np.abs(res_flat[i].imag)) > tol * rscale:
                raise ValueError(f"to_real: real mode {lam[i]} has a complex residue C_i B_i^T")
            reals.append(int(i))
            continue
        ok = (~used & (np.abs(lam - lam[i].conj()) <= tol * scale)
              & (np.abs(res_flat - res_flat[i].conj()).max(axis=1) <= tol * rscale))
        if not ok.any():
            raise ValueError(f"to_real: mode {lam[i]} has no conjugate partner with a conjugate "
                             "residue, so the transfer function is not real")
        used[int(np.argmax(ok))] = True
        pairs.append(int(i))
    return pairs, reals
