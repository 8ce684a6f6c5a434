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
with ``.detach().cpu().numpy()``.  No autograd.  Method bodies for conversions and
responses live in the private ``_lti_convert`` and ``_lti_response`` modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.signal as ssig

from . import _lti_convert as _conv
from . import _lti_response as _resp
from ._lti_convert import _check_dt, _check_grid

__all__ = ["LTISystem"]

_METHODS = ("zoh", "bilinear", "euler", "backward_diff", "gbt", "foh", "impulse")


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
        A, B, C, D = _conv.check_matrices(A, B, C, D)
        dtype = np.complex128 if any(np.iscomplexobj(M) for M in (A, B, C, D)) else np.float64
        for name, M in zip(("A", "B", "C", "D"), (A, B, C, D)):
            M = np.array(M, dtype=dtype)  # own copy, never aliases the caller's array
            M.setflags(write=False)
            object.__setattr__(self, name, M)
        object.__setattr__(self, "dt", _check_dt(dt))

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
        return _conv.from_diagonal(cls, Lambda, B, C, D, dt, conj_sym)

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
        return _conv.from_scipy(cls, sys)

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
        return _conv.from_control(cls, sys)

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
        return _conv.to_real(self, LTISystem, tol)

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
        return _conv.to_tf(self)

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
        return _resp.transfer_function(self, s)

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
        return _resp.default_w(self, num)

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
        return w, mag_db, phase, _resp.bode_plot(self, w, mag_db, phase, ax)

    # ------------------------------------------------------- time responses
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
        return _resp.impulse(self, T, n)

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
        return _resp.step(self, T, n)

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
        return _resp.simulate(self, u, t, x0, interp)

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
        return _resp.h2_norm(self)

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
        return _conv.to_scipy(self)

    def to_control(self) -> Any:
        """Return a python-control ``StateSpace`` (imported lazily).

        Raises
        ------
        ImportError
            If python-control is not installed.
        ValueError
            For a complex system.
        """
        return _conv.to_control(self)
