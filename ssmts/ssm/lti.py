"""The control-theory view of a learned linear system.

``LTISystem`` holds ``x' = A x + B u, y = C x + D u`` (continuous time) or
``x[k+1] = A x[k] + B u[k], y[k] = C x[k] + D u[k]`` (discrete time) as float64 /
complex128 numpy arrays and answers the classical questions: poles, zeros,
stability, DC gain, transfer function, frequency / impulse / step responses,
H2 norm, discretisation, and conversion to scipy.signal and python-control.

``dt`` follows python-control: ``0`` (or ``None``) is continuous time, ``dt > 0``
is discrete time with that sampling period, ``dt=True`` is discrete time with an
unspecified period (treated as 1 wherever a number is needed).

Everything is numpy / scipy; torch tensors are accepted on input and converted
with ``.detach().cpu().numpy()``.  No autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.signal as ssig

__all__ = ["LTISystem"]

_METHODS = ("zoh", "bilinear", "euler", "backward_diff", "gbt", "foh", "impulse")
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


def _propagate(F: np.ndarray, X0: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Return ``expm(F T[k]) @ X0`` for every k, shape (K, N, r); ``T`` is increasing, T[0] >= 0.

    Uses the semigroup property: one ``expm`` per distinct step (one for a uniform grid).
    """
    out = np.empty((len(T),) + X0.shape, dtype=np.result_type(F, X0))  # (K, N, r)
    out[0] = sla.expm(F * T[0]) @ X0
    steps = np.diff(T)
    uniform = len(steps) > 0 and np.allclose(steps, steps[0], rtol=1e-12, atol=0)
    phi = sla.expm(F * steps[0]) if uniform else None
    for k, h in enumerate(steps, start=1):
        out[k] = (phi if uniform else sla.expm(F * h)) @ out[k - 1]
    return out


class LTISystem:
    """A linear time-invariant state-space system (immutable).

    Parameters
    ----------
    A : float or complex array or tensor, shape (n, n)
        State matrix.
    B : float or complex array or tensor, shape (n, m) or (n,)
        Input matrix; a 1-D ``B`` means one input.
    C : float or complex array or tensor, shape (p, n) or (n,)
        Output matrix; a 1-D ``C`` means one output.
    D : float or complex array or tensor, shape (p, m), scalar or None, optional
        Feed-through; ``None`` means zeros, a scalar is accepted for SISO systems (or 0).
    dt : float, True or None, optional
        0 / None: continuous time; > 0: discrete with that period; True: discrete,
        unspecified period (treated as 1).

    Attributes
    ----------
    A, B, C, D : float64 or complex128 ndarray
        Read-only copies; all four share one dtype (complex128 if any input is complex).
    dt : float or True
        Normalised time base.

    Raises
    ------
    ValueError
        Naming ``A``, ``B``, ``C``, ``D`` or ``dt`` when a shape, value or finiteness is wrong.

    Examples
    --------
    >>> sys = LTISystem([[-1.0, 0.0], [1.0, -2.0]], [1.0, 0.0], [0.0, 1.0])
    >>> sys.poles()
    array([-2.+0.j, -1.+0.j])
    """

    __slots__ = ("A", "B", "C", "D", "dt")

    def __init__(self, A: Any, B: Any, C: Any, D: Any = None, dt: Any = 0) -> None:
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
        D = self._check_D(D, p, m)
        dtype = np.complex128 if any(np.iscomplexobj(M) for M in (A, B, C, D)) else np.float64
        for name, M in zip(("A", "B", "C", "D"), (A, B, C, D)):
            M = np.array(M, dtype=dtype)  # own copy, never aliases the caller's array
            M.setflags(write=False)
            object.__setattr__(self, name, M)
        object.__setattr__(self, "dt", _check_dt(dt))

    @staticmethod
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

    def __reduce__(self) -> tuple:
        return (LTISystem, (self.A, self.B, self.C, self.D, self.dt))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"LTISystem is immutable; build a new one instead of setting {name!r}")

    # ------------------------------------------------------------------ basics
    @property
    def n_states(self) -> int:
        """int : Number of states n."""
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        """int : Number of inputs m."""
        return self.B.shape[1]

    @property
    def n_outputs(self) -> int:
        """int : Number of outputs p."""
        return self.C.shape[0]

    @property
    def is_continuous(self) -> bool:
        """bool : True for continuous time (``dt == 0``)."""
        return self.dt is not True and self.dt == 0

    @property
    def is_discrete(self) -> bool:
        """bool : True for discrete time (``dt > 0`` or ``dt is True``)."""
        return not self.is_continuous

    @property
    def is_real(self) -> bool:
        """bool : True when every matrix has zero imaginary part."""
        mats = (self.A, self.B, self.C, self.D)
        return all(not np.iscomplexobj(M) or not np.any(M.imag) for M in mats)

    @property
    def _dt_value(self) -> float:
        """Sampling period as a number (True -> 1.0; 0.0 for continuous)."""
        return 1.0 if self.dt is True else float(self.dt)

    def __repr__(self) -> str:
        tb = "continuous" if self.is_continuous else f"discrete, dt={self.dt}"
        kind = "" if self.is_real else ", complex"
        return (f"LTISystem(n_states={self.n_states}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, {tb}, stable={self.is_stable()}{kind})")

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_diagonal(cls, Lambda: Any, B: Any, C: Any, D: Any = None, dt: Any = 0,
                      conj_sym: bool = False) -> "LTISystem":
        """Build a system from a diagonal (complex) state matrix.

        Parameters
        ----------
        Lambda : complex array or tensor, shape (P,)
            Diagonal of the state matrix (continuous or discrete eigenvalues, per ``dt``).
        B : complex array or tensor, shape (P, m) or (P,)
            Input matrix B̃.
        C : complex array or tensor, shape (p, P) or (P,)
            Output matrix C̃.
        D : float array or tensor, shape (p, m), scalar or None, optional
            Feed-through (real when ``conj_sym=True``).
        dt : float, True or None, optional
            Time base, as in the constructor.
        conj_sym : bool, optional
            S5 / S4D convention: only one member of each conjugate pair is stored and
            ``y = 2 Re(C̃ x) + D u``.  The result is then the equivalent REAL system of
            size 2P with state ``[Re x; Im x]``:
            ``A = [[Re Λ, -Im Λ], [Im Λ, Re Λ]]`` (diagonal blocks),
            ``B = [[Re B̃], [Im B̃]]``, ``C = [2 Re C̃, -2 Im C̃]``.

        Returns
        -------
        LTISystem
            Size P (complex, ``conj_sym=False``) or 2P (real, ``conj_sym=True``).
        """
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

    @classmethod
    def from_scipy(cls, sys: Any) -> "LTISystem":
        """Build from a ``scipy.signal`` ``lti`` / ``dlti`` (StateSpace, TransferFunction or ZPK).

        Parameters
        ----------
        sys : scipy.signal.lti or scipy.signal.dlti
            Continuous (``dt=None``) or discrete system.

        Returns
        -------
        LTISystem
        """
        if not isinstance(sys, (ssig.lti, ssig.dlti)):
            raise ValueError(f"sys: expected a scipy.signal lti/dlti, got {type(sys).__name__}")
        ss = sys.to_ss()
        return cls(ss.A, ss.B, ss.C, ss.D, ss.dt if isinstance(sys, ssig.dlti) else 0)

    @classmethod
    def from_control(cls, sys: Any) -> "LTISystem":
        """Build from a python-control ``StateSpace`` or ``TransferFunction``.

        Parameters
        ----------
        sys : control.StateSpace or control.TransferFunction
            A ``dt=None`` (unspecified time base) system is read as continuous.

        Returns
        -------
        LTISystem
        """
        control = _import_control()
        if not isinstance(sys, control.LTI):
            raise ValueError(f"sys: expected a python-control LTI system, got {type(sys).__name__}")
        ss = control.ss(sys)
        return cls(ss.A, ss.B, ss.C, ss.D, ss.dt)

    def to_real(self, tol: float = 1e-8) -> "LTISystem":
        """Return an equivalent real system of the same size.

        Works when every imaginary part is zero, or when ``A`` is diagonal and its modes
        come in conjugate pairs with conjugate residues ``C_i B_i^T`` (real modes must
        have real residues): each pair becomes one real 2x2 block.

        Parameters
        ----------
        tol : float, optional
            Relative tolerance for matching conjugates.

        Returns
        -------
        LTISystem
            Real system with the same transfer function.

        Raises
        ------
        ValueError
            If no real realisation of the same size can be built this way.
        """
        if self.is_real:
            return LTISystem(*(M.real for M in (self.A, self.B, self.C, self.D)), dt=self.dt)
        lam = np.diag(self.A)
        if np.any(self.A - np.diag(lam)) or np.any(self.D.imag):
            raise ValueError("to_real: only diagonal A with real D is supported; " + _COMPLEX_HINT)
        res = np.einsum("pi,im->ipm", self.C, self.B)  # (n, p, m) residues C_i B_i^T
        pairs, reals = _conjugate_pairs(lam, res, tol)
        # real modes: rotate b_i so its largest entry is real; then b_i and c_i are both real
        big = [self.B[i, np.argmax(np.abs(self.B[i]))] for i in reals]
        rot = np.exp(-1j * np.angle(np.array(big, dtype=np.complex128)))  # (r,)
        b_re = (self.B[reals] * rot[:, None]).real  # (r, m)
        c_re = (self.C[:, reals] / rot[None, :]).real  # (p, r)
        A, B, C = np.diag(lam[reals].real), b_re, c_re
        if pairs:
            half = LTISystem.from_diagonal(
                lam[pairs], self.B[pairs], self.C[:, pairs], conj_sym=True
            )
            A = sla.block_diag(A, half.A)
            B = np.concatenate([B, half.B], axis=0)  # (n, m)
            C = np.concatenate([C, half.C], axis=1)  # (p, n)
        return LTISystem(A, B, C, self.D.real, self.dt)

    # ------------------------------------------------------------- analysis
    def poles(self) -> np.ndarray:
        """Poles (eigenvalues of A).

        Returns
        -------
        complex ndarray, shape (n,)
        """
        return sla.eigvals(self.A).astype(np.complex128)

    def zeros(self) -> np.ndarray:
        """Invariant (transmission) zeros of a square system.

        Finite generalized eigenvalues of the Rosenbrock pencil ``[[A, B], [C, D]]`` vs
        ``[[I, 0], [0, 0]]`` (QZ, ``scipy.linalg.eig``).  For SISO these are the roots of
        the transfer-function numerator.  Zeros of magnitude above ~1/(100 eps) are
        treated as infinite.

        Returns
        -------
        complex ndarray, shape (k,)
            k <= n finite zeros.

        Raises
        ------
        ValueError
            If the system is not square (p != m).
        """
        n, m, p = self.n_states, self.n_inputs, self.n_outputs
        if p != m:
            raise ValueError(
                f"zeros: needs a square system (p == m), got p={p}, m={m}; select a square "
                "subsystem, e.g. LTISystem(A, B[:, [j]], C[[i]], D[[i]][:, [j]])"
            )
        M = np.block([[self.A, self.B], [self.C, self.D]])  # (n+m, n+m)
        N = np.zeros(M.shape)
        N[:n, :n] = np.eye(n)
        alpha, beta = sla.eig(M, N, left=False, right=False, homogeneous_eigvals=True)
        finite = np.abs(beta) > 100 * np.finfo(float).eps * np.abs(alpha)
        return (alpha[finite] / beta[finite]).astype(np.complex128)

    def is_stable(self) -> bool:
        """True when every pole has Re < 0 (continuous) or |z| < 1 (discrete)."""
        poles = self.poles()
        return bool(np.all(np.abs(poles) < 1) if self.is_discrete else np.all(poles.real < 0))

    def dcgain(self) -> np.ndarray:
        """Steady-state gain: ``C (-A)^-1 B + D`` (continuous) or ``C (I - A)^-1 B + D`` (discrete).

        Returns
        -------
        float or complex ndarray, shape (p, m)

        Raises
        ------
        ValueError
            If a pole sits at s = 0 (continuous) / z = 1 (discrete): the DC gain is infinite.
        """
        M = np.eye(self.n_states) - self.A if self.is_discrete else -self.A
        where = "z = 1" if self.is_discrete else "s = 0"
        if np.linalg.cond(M) > 1e12:
            raise ValueError(
                f"dcgain: the system has a pole at {where} (integrator), so the DC gain is "
                "infinite; remove the integrating mode or evaluate freqresp near 0"
            )
        return self.C @ np.linalg.solve(M, self.B) + self.D

    def tf(self) -> Any:
        """Transfer-function polynomial coefficients (``scipy.signal.ss2tf``), highest power first.

        Returns
        -------
        (num, den) : tuple of 1-D ndarrays, for SISO
            Leading zeros of ``num`` are trimmed; ``den`` has length n + 1.
        list of list of (num, den), for MIMO
            Indexed ``[output][input]``.
        """
        out = [[None] * self.n_inputs for _ in range(self.n_outputs)]
        for j in range(self.n_inputs):
            num, den = ssig.ss2tf(self.A, self.B, self.C, self.D, input=j)  # (p, n+1), (n+1,)
            for i in range(self.n_outputs):
                nz = np.trim_zeros(num[i], "f")
                out[i][j] = (nz if nz.size else np.zeros(1, num.dtype), den)
        return out[0][0] if (self.n_inputs, self.n_outputs) == (1, 1) else out

    def transfer_function(self, s: Any) -> np.ndarray:
        """Evaluate ``H(s) = C (sI - A)^-1 B + D`` at complex points.

        Parameters
        ----------
        s : complex array_like, any shape (...)
            Evaluation points (``z`` for a discrete system).

        Returns
        -------
        complex ndarray, shape (..., p, m)
        """
        s = _to_numpy(s, "s").astype(np.complex128)
        flat = s.reshape(-1)  # (K,)
        n = self.n_states
        lam = np.diag(self.A)
        if not np.any(self.A - np.diag(lam)):  # diagonal fast path
            G = 1.0 / (flat[:, None] - lam[None, :])  # (K, n)
            H = np.einsum("pi,ki,im->kpm", self.C, G, self.B)  # (K, p, m)
        else:
            H = np.empty((len(flat), self.n_outputs, self.n_inputs), np.complex128)
            chunk = max(1, 2**21 // (n * n))
            for a in range(0, len(flat), chunk):
                sI_A = flat[a:a + chunk, None, None] * np.eye(n) - self.A  # (k, n, n)
                H[a:a + chunk] = self.C @ np.linalg.solve(sI_A, self.B)  # (k, p, m)
        return (H + self.D).reshape(s.shape + self.D.shape)  # (..., p, m)

    def freqresp(self, w: Any) -> np.ndarray:
        """Frequency response at angular frequencies ``w``.

        Parameters
        ----------
        w : float array_like, shape (K,)
            Angular frequencies in rad per time unit; a discrete system is evaluated at
            ``z = exp(j w dt)`` (so ``w * dt`` is scipy's rad/sample).

        Returns
        -------
        complex ndarray, shape (K, p, m)
        """
        w = _check_grid(w, "w")
        s = np.exp(1j * w * self._dt_value) if self.is_discrete else 1j * w
        return self.transfer_function(s)

    def _default_w(self, num: int = 500) -> np.ndarray:
        """Log grid two decades around the pole magnitudes (up to Nyquist when discrete)."""
        p = self.poles()
        if self.is_discrete:
            p = np.log(p[np.abs(p) > 0]) / self._dt_value
        mags = np.abs(p[np.abs(p) > 1e-12]) if p.size else np.ones(1)
        mags = mags if mags.size else np.ones(1)
        lo, hi = np.floor(np.log10(mags.min())) - 1, np.ceil(np.log10(mags.max())) + 1
        if self.is_discrete:
            hi = np.log10(np.pi / self._dt_value)
            lo = min(lo, hi - 2)
        return np.logspace(lo, hi, num)

    def bode(self, w: Any = None, plot: bool = False, ax: Any = None) -> tuple:
        """Bode magnitude and phase.

        Parameters
        ----------
        w : float array_like, shape (K,), optional
            Angular frequencies; default 500 log-spaced points two decades around the
            poles (up to the Nyquist frequency pi/dt when discrete).
        plot : bool, optional
            Also draw the plot with matplotlib (optional dependency).
        ax : sequence of two matplotlib Axes, optional
            (magnitude, phase) axes to draw on; new figure when None.

        Returns
        -------
        w : float ndarray, shape (K,)
        mag_db : float ndarray, shape (K, p, m)
            ``20 log10 |H|``.
        phase_deg : float ndarray, shape (K, p, m)
            Phase in degrees, unwrapped along frequency.
        fig : matplotlib Figure
            Only when ``plot=True``.
        """
        w = self._default_w() if w is None else _check_grid(w, "w")
        H = self.freqresp(w)  # (K, p, m)
        with np.errstate(divide="ignore"):
            mag_db = 20 * np.log10(np.abs(H))
        phase = np.degrees(np.unwrap(np.angle(H), axis=0))
        if not plot:
            return w, mag_db, phase
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("bode(plot=True) needs matplotlib: pip install ssmts[plot]") from exc
        if ax is None:
            fig, ax = plt.subplots(2, 1, sharex=True)
        fig = ax[0].figure
        for i in range(self.n_outputs):
            for j in range(self.n_inputs):
                lbl = f"u{j} -> y{i}"
                ax[0].semilogx(w, mag_db[:, i, j], label=lbl)
                ax[1].semilogx(w, phase[:, i, j], label=lbl)
        ax[0].set_ylabel("magnitude [dB]")
        ax[1].set_ylabel("phase [deg]")
        ax[1].set_xlabel("frequency [rad / time unit]")
        if self.n_inputs * self.n_outputs > 1:
            ax[0].legend(fontsize="small")
        return w, mag_db, phase, fig

    # ------------------------------------------------------- time responses
    def _time_grid(self, T: Any, n: int | None) -> np.ndarray:
        """Validated time grid: continuous default 0..7/min|Re p| (scipy's), discrete k*dt."""
        if n is not None and (int(n) != n or n < 1):
            raise ValueError(f"n: expected a positive integer number of samples, got {n!r}")
        n = 100 if n is None else int(n)
        if T is None:
            if self.is_discrete:
                return np.arange(n) * self._dt_value
            r = float(np.min(np.abs(self.poles().real)))
            return np.linspace(0.0, 7.0 / (r if r > 0 else 1.0), n)
        T = _check_grid(T, "T")
        if len(T) == 0 or T[0] < 0 or np.any(np.diff(T) <= 0):
            raise ValueError("T: expected a non-empty, strictly increasing grid starting at >= 0")
        if self.is_discrete and not np.allclose(T, np.arange(len(T)) * self._dt_value):
            raise ValueError(f"T: a discrete system needs T = arange(K) * dt (dt={self.dt}), or n")
        return T

    def impulse(self, T: Any = None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Impulse response of every input channel.

        Continuous: ``C exp(A t) B`` (scipy.signal.impulse: the ``D delta(t)`` term is
        omitted).  Discrete (scipy.signal.dimpulse): ``y[0] = D``, ``y[k] = C A^(k-1) B``.

        Parameters
        ----------
        T : float array_like, shape (K,), optional
            Time grid (increasing, from >= 0; discrete: ``arange(K) * dt``).
        n : int, optional
            Number of samples when ``T`` is None (default 100).

        Returns
        -------
        t : float ndarray, shape (K,)
        y : float or complex ndarray, shape (K, p, m)
            ``y[:, :, j]`` is the response to an impulse on input j.
        """
        t = self._time_grid(T, n)
        if self.is_continuous:
            X = _propagate(self.A, self.B, t)  # (K, n, m)
            return t, self.C @ X
        y = np.empty((len(t), self.n_outputs, self.n_inputs), self.A.dtype)
        y[0], x = self.D, self.B
        for k in range(1, len(t)):
            y[k] = self.C @ x
            x = self.A @ x
        return t, y

    def step(self, T: Any = None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Unit-step response of every input channel from zero state (includes D).

        Continuous (scipy.signal.step) via the exponential of ``[[A, B], [0, 0]]``;
        discrete (scipy.signal.dstep) by recursion.

        Parameters
        ----------
        T : float array_like, shape (K,), optional
            Time grid (increasing, from >= 0; discrete: ``arange(K) * dt``).
        n : int, optional
            Number of samples when ``T`` is None (default 100).

        Returns
        -------
        t : float ndarray, shape (K,)
        y : float or complex ndarray, shape (K, p, m)
        """
        t = self._time_grid(T, n)
        nx, m = self.n_states, self.n_inputs
        if self.is_continuous:
            F = np.zeros((nx + m, nx + m), self.A.dtype)
            F[:nx, :nx], F[:nx, nx:] = self.A, self.B
            X = _propagate(F, np.eye(nx + m, m, -nx), t)[:, :nx]  # (K, n, m)
            return t, self.C @ X + self.D
        y = np.empty((len(t), self.n_outputs, m), self.A.dtype)
        x = np.zeros((nx, m), self.A.dtype)
        for k in range(len(t)):
            y[k] = self.C @ x + self.D
            x = self.A @ x + self.B
        return t, y

    def simulate(self, u: Any, t: Any = None, x0: Any = None,
                 interp: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Response to an arbitrary input (scipy.signal.lsim / dlsim semantics).

        Parameters
        ----------
        u : float array_like, shape (K,) or (K, m)
            Input samples (1-D only for one input).
        t : float array_like, shape (K,), optional
            Times of the samples; required for continuous systems (any increasing grid),
            optional for discrete ones (must then be ``t[0] + arange(K) * dt``).
        x0 : array_like, shape (n,), optional
            Initial state at ``t[0]`` (zeros by default).
        interp : bool, optional
            Continuous only: linear interpolation of ``u`` between samples (lsim's
            default) if True, zero-order hold if False.

        Returns
        -------
        t : float ndarray, shape (K,)
        y : ndarray, shape (K, p)
            Never squeezed (unlike scipy for p = 1).
        x : ndarray, shape (K, n)
        """
        u = _to_numpy(u, "u")
        u = u[:, None] if u.ndim == 1 and self.n_inputs == 1 else u  # (K,) -> (K, 1)
        if u.ndim != 2 or u.shape[1] != self.n_inputs or u.shape[0] == 0:
            raise ValueError(f"u: expected shape (K, {self.n_inputs}), got {u.shape}")
        K, nx, m = u.shape[0], self.n_states, self.n_inputs
        x0 = np.zeros(nx) if x0 is None else _to_numpy(x0, "x0").reshape(-1)  # (n,)
        if x0.shape != (nx,):
            raise ValueError(f"x0: expected {nx} initial states, got shape {x0.shape}")
        if t is None and self.is_continuous:
            raise ValueError("t: a continuous system needs the sample times; pass t, shape (K,)")
        t = np.arange(K) * self._dt_value if t is None else _check_grid(t, "t")
        if len(t) != K or np.any(np.diff(t) <= 0):
            raise ValueError(f"t: expected {K} strictly increasing times matching u, got {len(t)}")
        if self.is_discrete and not np.allclose(np.diff(t), self._dt_value):
            raise ValueError(f"t: a discrete system needs samples spaced dt={self.dt} apart")
        dtype = np.result_type(self.A, u, x0)
        x = np.empty((K, nx), dtype)
        x[0] = x0
        if self.is_discrete:
            for k in range(K - 1):
                x[k + 1] = self.A @ x[k] + self.B @ u[k]
        else:
            self._lsim_continuous(u, t, x, interp)
        return t, x @ self.C.T + u @ self.D.T, x

    def _lsim_continuous(self, u: np.ndarray, t: np.ndarray, x: np.ndarray, interp: bool) -> None:
        """Fill ``x[1:]`` (x[0] set) by exact integration of a piecewise linear / constant u.

        Uses ``expm(h [[A, B, 0], [0, 0, I], [0, 0, 0]])`` acting on ``[x; u_k; slope]``.
        """
        nx, m = self.n_states, self.n_inputs
        F = np.zeros((nx + 2 * m, nx + 2 * m), self.A.dtype)
        F[:nx, :nx], F[:nx, nx:nx + m], F[nx:nx + m, nx + m:] = self.A, self.B, np.eye(m)
        steps = np.diff(t)
        if len(steps) and np.allclose(steps, steps[0], rtol=1e-12, atol=0):
            steps = np.full_like(steps, steps[0])  # snap a uniform grid to one expm
        cache: dict[float, np.ndarray] = {}
        for k, h in enumerate(steps):
            E = cache.get(h)
            if E is None:
                E = cache.setdefault(h, sla.expm(F * h)[:nx])  # (n, n+2m)
            slope = (u[k + 1] - u[k]) / h if interp else np.zeros(m)
            x[k + 1] = E @ np.concatenate([x[k], u[k], slope])

    # ------------------------------------------------------ norms, transforms
    def h2_norm(self) -> float:
        """H2 norm from the controllability Gramian (Lyapunov equation).

        Continuous: ``sqrt(tr(C P C^H))`` with ``A P + P A^H + B B^H = 0``; needs a stable
        system with ``D = 0``.  Discrete: ``sqrt(tr(C P C^H + D D^H))`` with
        ``A P A^H - P + B B^H = 0``; needs a stable system.  Equals the root energy of
        the impulse response.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            If the system is unstable, or continuous with nonzero D (infinite norm).
        """
        if not self.is_stable():
            raise ValueError(
                f"h2_norm: the system is unstable (poles {self.poles()}), so the H2 norm is "
                "infinite; stabilise it first"
            )
        BB = self.B @ self.B.conj().T
        if self.is_discrete:
            P = sla.solve_discrete_lyapunov(self.A, BB)
            val = np.trace(self.C @ P @ self.C.conj().T + self.D @ self.D.conj().T)
        else:
            if np.any(self.D):
                raise ValueError(
                    "h2_norm: a continuous system with nonzero D has an infinite H2 norm (its "
                    "impulse response contains D delta(t)); use a strictly proper system"
                )
            P = sla.solve_continuous_lyapunov(self.A, -BB)
            val = np.trace(self.C @ P @ self.C.conj().T)
        return float(np.sqrt(max(val.real, 0.0)))

    def discretize(self, dt: float, method: str = "zoh", alpha: float | None = None) -> "LTISystem":
        """Discretise a continuous system with ``scipy.signal.cont2discrete``.

        Parameters
        ----------
        dt : float
            Sampling period, > 0.
        method : {"zoh", "bilinear", "euler", "backward_diff", "gbt", "foh", "impulse"}
            Discretisation rule (see scipy.signal.cont2discrete).
        alpha : float, optional
            Weight in [0, 1] for ``method="gbt"`` (0 euler, 0.5 bilinear, 1 backward).

        Returns
        -------
        LTISystem
            Discrete system with sampling period ``dt``.
        """
        if self.is_discrete:
            raise ValueError(f"discretize: the system is already discrete (dt={self.dt}); "
                             "discretize the continuous system instead")
        dt = _check_dt(dt)
        if dt is True or dt <= 0:
            raise ValueError(f"dt: expected a sampling period > 0, got {dt!r}")
        if method not in _METHODS:
            raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
        if method == "gbt" and (alpha is None or not 0 <= float(alpha) <= 1):
            raise ValueError(f"alpha: method='gbt' needs alpha in [0, 1], got {alpha!r}")
        Ad, Bd, Cd, Dd, _ = ssig.cont2discrete((self.A, self.B, self.C, self.D), dt, method, alpha)
        return LTISystem(Ad, Bd, Cd, Dd, dt)

    def to_scipy(self) -> Any:
        """Return a ``scipy.signal.StateSpace`` (with ``dt`` when discrete).

        Raises
        ------
        ValueError
            For a complex system.
        """
        if not self.is_real:
            raise ValueError("to_scipy: the system is complex; " + _COMPLEX_HINT)
        mats = tuple(M.real for M in (self.A, self.B, self.C, self.D))
        return ssig.StateSpace(*mats, dt=self.dt) if self.is_discrete else ssig.StateSpace(*mats)

    def to_control(self) -> Any:
        """Return a python-control ``StateSpace`` (imported lazily).

        Raises
        ------
        ImportError
            If python-control is not installed.
        ValueError
            For a complex system.
        """
        control = _import_control()
        if not self.is_real:
            raise ValueError("to_control: the system is complex; " + _COMPLEX_HINT)
        return control.ss(*(M.real for M in (self.A, self.B, self.C, self.D)), self.dt)


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
