"""``ssmts demo``: a short tour of what the library computes, on an embedded real series.

Until the forecaster lands this shows the numerical core: a HiPPO-initialised
diagonal SSM computed three ways (recurrence, convolution, scan) on the
Mauna Loa weekly CO2 series shipped with statsmodels, the agreement between the
views, and the same system seen as a control-theory object.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch


def _load_co2() -> np.ndarray:
    """Weekly CO2 (statsmodels), gaps interpolated, standardised, float64 (T,)."""
    from statsmodels.datasets import co2

    s = co2.load_pandas().data["co2"]
    n_missing = int(s.isna().sum())
    s = s.interpolate(limit_direction="both")
    print(f"data: statsmodels co2, {len(s)} weekly samples {s.index[0].date()}..{s.index[-1].date()}, "
          f"{n_missing} missing values linearly interpolated for this tour")
    v = s.to_numpy(dtype=np.float64)
    return (v - v.mean()) / v.std()


def run_demo(out: str = "ssmts_demo", quick: bool = False) -> int:
    """Run the tour; returns a process exit code (0 when the three views agree)."""
    from .ssm import (LTISystem, discretize_zoh, fft_conv, kernel_vandermonde,
                      linear_scan, linear_scan_ref, s4d_init)

    torch.manual_seed(0)
    u = torch.as_tensor(_load_co2())  # (T,)
    if quick:
        u = u[:512]
    N, dt = 16, 0.05
    Lam = s4d_init(N, "legs")  # (N/2,) complex, Re < 0
    B = torch.ones(N // 2, dtype=torch.complex128)
    C = torch.randn(N // 2, dtype=torch.complex128)
    L = u.shape[0]

    t0 = time.perf_counter()
    K = kernel_vandermonde(Lam[None], B[None], C[None], torch.tensor([dt], dtype=torch.float64), L)
    y_conv = fft_conv(u[None], K)[0]  # (L,)
    t_conv = time.perf_counter() - t0

    Ab, Bb = discretize_zoh(Lam, B, dt)  # (N/2,), (N/2,)
    a = Ab.expand(1, L, N // 2)
    b = Bb[None, None] * u.to(torch.complex128)[None, :, None]  # (1, L, N/2)
    t0 = time.perf_counter()
    h_scan = linear_scan(a, b)
    t_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    h_rec = linear_scan_ref(a, b)
    t_rec = time.perf_counter() - t0
    y_scan = 2 * (h_scan @ C).real[0]
    y_rec = 2 * (h_rec @ C).real[0]

    def rel(x, y):
        return float((x - y).norm() / y.norm())

    print(f"\nS4D-LegS system, N={N} states, dt={dt}, L={L} samples")
    print(f"{'view':<14}{'time (ms)':>12}{'rel. error vs recurrence':>28}")
    print(f"{'recurrence':<14}{t_rec * 1e3:>12.2f}{0.0:>28.1e}")
    print(f"{'convolution':<14}{t_conv * 1e3:>12.2f}{rel(y_conv, y_rec):>28.1e}")
    print(f"{'scan':<14}{t_scan * 1e3:>12.2f}{rel(y_scan, y_rec):>28.1e}")

    sys_c = LTISystem.from_diagonal(Lam, B[:, None], C[None, :], conj_sym=True)
    print(f"\ncontrol view: {sys_c!r}")
    print(f"  slowest pole {sys_c.poles()[np.argmax(sys_c.poles().real)]:.4f}, "
          f"DC gain {float(np.real(sys_c.dcgain()).ravel()[0]):.4f}, H2 norm {sys_c.h2_norm():.4f}")
    os.makedirs(out, exist_ok=True)
    ok = rel(y_conv, y_rec) < 1e-8 and rel(y_scan, y_rec) < 1e-8
    print("\nthree views agree" if ok else "\nVIEWS DISAGREE")
    return 0 if ok else 1
