"""Time and frequency responses of an ``LTISystem`` (private).

Bodies of ``LTISystem.impulse``, ``.step``, ``.simulate``, ``.transfer_function``,
``.h2_norm`` and the drawing half of ``.bode``; the methods delegate here and carry
the public docstrings.  Continuous systems are integrated exactly with
matrix exponentials of augmented state matrices; discrete ones by recursion.
Functions take the system as their first argument and read its validated,
read-only ``A, B, C, D`` arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg as sla

from ._lti_convert import _check_grid, _to_numpy

if TYPE_CHECKING:  # pragma: no cover
    from .lti import LTISystem


def propagate(F: np.ndarray, X0: np.ndarray, T: np.ndarray) -> np.ndarray:
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


def time_grid(sys: "LTISystem", T: Any, n: int | None) -> np.ndarray:
    """Validated time grid: continuous default 0..7/min|Re p| (scipy's), discrete k*dt."""
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n: expected a positive integer number of samples, got {n!r}")
    n = 100 if n is None else int(n)
    if T is None:
        if sys.is_discrete:
            return np.arange(n) * sys._dt_value
        r = float(np.min(np.abs(sys.poles().real)))
        return np.linspace(0.0, 7.0 / (r if r > 0 else 1.0), n)
    T = _check_grid(T, "T")
    if len(T) == 0 or T[0] < 0 or np.any(np.diff(T) <= 0):
        raise ValueError("T: expected a non-empty, strictly increasing grid starting at >= 0")
    if sys.is_discrete and not np.allclose(T, np.arange(len(T)) * sys._dt_value):
        raise ValueError(f"T: a discrete system needs T = arange(K) * dt (dt={sys.dt}), or n")
    return T


def impulse(sys: "LTISystem", T: Any = None,
            n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Impulse responses, shape (K, p, m); see ``LTISystem.impulse`` (validates ``T``, ``n``)."""
    t = time_grid(sys, T, n)
    if sys.is_continuous:
        X = propagate(sys.A, sys.B, t)  # (K, n, m)
        return t, sys.C @ X
    y = np.empty((len(t), sys.n_outputs, sys.n_inputs), sys.A.dtype)
    y[0], x = sys.D, sys.B
    for k in range(1, len(t)):
        y[k] = sys.C @ x
        x = sys.A @ x
    return t, y


def step(sys: "LTISystem", T: Any = None,
         n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step responses, shape (K, p, m); see ``LTISystem.step`` (validates ``T``, ``n``)."""
    t = time_grid(sys, T, n)
    nx, m = sys.n_states, sys.n_inputs
    if sys.is_continuous:
        F = np.zeros((nx + m, nx + m), sys.A.dtype)
        F[:nx, :nx], F[:nx, nx:] = sys.A, sys.B
        X = propagate(F, np.eye(nx + m, m, -nx), t)[:, :nx]  # (K, n, m)
        return t, sys.C @ X + sys.D
    y = np.empty((len(t), sys.n_outputs, m), sys.A.dtype)
    x = np.zeros((nx, m), sys.A.dtype)
    for k in range(len(t)):
        y[k] = sys.C @ x + sys.D
        x = sys.A @ x + sys.B
    return t, y


def simulate(sys: "LTISystem", u: Any, t: Any = None, x0: Any = None,
             interp: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forced response ``(t, y, x)``; see ``LTISystem.simulate`` (validates its inputs)."""
    u = _to_numpy(u, "u")
    u = u[:, None] if u.ndim == 1 and sys.n_inputs == 1 else u  # (K,) -> (K, 1)
    if u.ndim != 2 or u.shape[1] != sys.n_inputs or u.shape[0] == 0:
        raise ValueError(f"u: expected shape (K, {sys.n_inputs}), got {u.shape}")
    K, nx, m = u.shape[0], sys.n_states, sys.n_inputs
    x0 = np.zeros(nx) if x0 is None else _to_numpy(x0, "x0").reshape(-1)  # (n,)
    if x0.shape != (nx,):
        raise ValueError(f"x0: expected {nx} initial states, got shape {x0.shape}")
    if t is None and sys.is_continuous:
        raise ValueError("t: a continuous system needs the sample times; pass t, shape (K,)")
    t = np.arange(K) * sys._dt_value if t is None else _check_grid(t, "t")
    if len(t) != K or np.any(np.diff(t) <= 0):
        raise ValueError(f"t: expected {K} strictly increasing times matching u, got {len(t)}")
    if sys.is_discrete and not np.allclose(np.diff(t), sys._dt_value):
        raise ValueError(f"t: a discrete system needs samples spaced dt={sys.dt} apart")
    dtype = np.result_type(sys.A, u, x0)
    x = np.empty((K, nx), dtype)
    x[0] = x0
    if sys.is_discrete:
        for k in range(K - 1):
            x[k + 1] = sys.A @ x[k] + sys.B @ u[k]
    else:
        lsim_continuous(sys, u, t, x, interp)
    return t, x @ sys.C.T + u @ sys.D.T, x


def lsim_continuous(sys: "LTISystem", u: np.ndarray, t: np.ndarray, x: np.ndarray,
                    interp: bool) -> None:
    """Fill ``x[1:]`` (x[0] set) by exact integration of a piecewise linear / constant u.

    Uses ``expm(h [[A, B, 0], [0, 0, I], [0, 0, 0]])`` acting on ``[x; u_k; slope]``.
    """
    nx, m = sys.n_states, sys.n_inputs
    F = np.zeros((nx + 2 * m, nx + 2 * m), sys.A.dtype)
    F[:nx, :nx], F[:nx, nx:nx + m], F[nx:nx + m, nx + m:] = sys.A, sys.B, np.eye(m)
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


def transfer_function(sys: "LTISystem", s: Any) -> np.ndarray:
    """Body of ``LTISystem.transfer_function``: ``H(s)``, shape (..., p, m); validates ``s``."""
    s = _to_numpy(s, "s").astype(np.complex128)
    flat = s.reshape(-1)  # (K,)
    n = sys.n_states
    lam = np.diag(sys.A)
    if not np.any(sys.A - np.diag(lam)):  # diagonal fast path
        G = 1.0 / (flat[:, None] - lam[None, :])  # (K, n)
        H = np.einsum("pi,ki,im->kpm", sys.C, G, sys.B)  # (K, p, m)
    else:
        H = np.empty((len(flat), sys.n_outputs, sys.n_inputs), np.complex128)
        chunk = max(1, 2**21 // (n * n))
        for a in range(0, len(flat), chunk):
            sI_A = flat[a:a + chunk, None, None] * np.eye(n) - sys.A  # (k, n, n)
            H[a:a + chunk] = sys.C @ np.linalg.solve(sI_A, sys.B)  # (k, p, m)
    return (H + sys.D).reshape(s.shape + sys.D.shape)  # (..., p, m)


def default_w(sys: "LTISystem", num: int) -> np.ndarray:
    """Log grid two decades around the pole magnitudes (up to Nyquist when discrete)."""
    p = sys.poles()
    if sys.is_discrete:
        p = np.log(p[np.abs(p) > 0]) / sys._dt_value
    mags = np.abs(p[np.abs(p) > 1e-12]) if p.size else np.ones(1)
    mags = mags if mags.size else np.ones(1)
    lo, hi = np.floor(np.log10(mags.min())) - 1, np.ceil(np.log10(mags.max())) + 1
    if sys.is_discrete:
        hi = np.log10(np.pi / sys._dt_value)
        lo = min(lo, hi - 2)
    return np.logspace(lo, hi, num)


def bode_plot(sys: "LTISystem", w: np.ndarray, mag_db: np.ndarray, phase: np.ndarray,
              ax: Any) -> Any:
    """Draw the ``LTISystem.bode`` curves on ``ax`` (new figure if None); return the Figure."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("bode(plot=True) needs matplotlib: pip install ssmts[plot]") from exc
    if ax is None:
        fig, ax = plt.subplots(2, 1, sharex=True)
    fig = ax[0].figure
    for i in range(sys.n_outputs):
        for j in range(sys.n_inputs):
            lbl = f"u{j} -> y{i}"
            ax[0].semilogx(w, mag_db[:, i, j], label=lbl)
            ax[1].semilogx(w, phase[:, i, j], label=lbl)
    ax[0].set_ylabel("magnitude [dB]")
    ax[1].set_ylabel("phase [deg]")
    ax[1].set_xlabel("frequency [rad / time unit]")
    if sys.n_inputs * sys.n_outputs > 1:
        ax[0].legend(fontsize="small")
    return fig


def h2_norm(sys: "LTISystem") -> float:
    """Body of ``LTISystem.h2_norm``: Lyapunov Gramian; ``ValueError`` when infinite."""
    if not sys.is_stable():
        raise ValueError(
            f"h2_norm: the system is unstable (poles {sys.poles()}), so the H2 norm is "
            "infinite; stabilise it first"
        )
    BB = sys.B @ sys.B.conj().T
    if sys.is_discrete:
        P = sla.solve_discrete_lyapunov(sys.A, BB)
        val = np.trace(sys.C @ P @ sys.C.conj().T + sys.D @ sys.D.conj().T)
    else:
        if np.any(sys.D):
            raise ValueError(
                "h2_norm: a continuous system with nonzero D has an infinite H2 norm (its "
                "impulse response contains D delta(t)); use a strictly proper system"
            )
        P = sla.solve_continuous_lyapunov(sys.A, -BB)
        val = np.trace(sys.C @ P @ sys.C.conj().T)
    return float(np.sqrt(max(val.real, 0.0)))
