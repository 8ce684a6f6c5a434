"""S5: one MIMO diagonal state-space system over all channels (Smith et al., 2023).

    Λ (P',) complex, Re Λ < 0     B̃ (P', H), C̃ (H, P') complex, D (H,)   P' = P/2
    Δ_{t,p} = exp(log_dt_p) * gap_t                      (per state, per step)
    x_t = Ā_t x_{t-1} + B̄_t (B̃ u_t)                      ZOH or bilinear
    y_t = 2 Re(C̃ x_t) + D u_t  ->  GELU -> GLU projection

Conjugate symmetry keeps one of each eigenvalue pair (P' = P/2); the output's
2 Re() restores the real system of size P. The sequence is computed with the
parallel (chunked) linear scan; ``step`` is the recurrence.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ssm.hippo import s5_init
from ..ssm.lti import LTISystem
from ..ssm.dispatch import choose_backend
from ..ssm.s5_ref import s5_scan
from ..ssm.scan import linear_scan
from .base import SSMLayer, init_log_dt

__all__ = ["S5"]


def _reverse_gaps(dt: torch.Tensor) -> torch.Tensor:
    """Gaps seen by a scan running backwards in time: (b, L) -> (b, L), first gap 1."""
    ones = torch.ones_like(dt[:, :1])
    return torch.cat([ones, dt.flip(1)[:, :-1]], dim=1)  # (b, L)


class S5(SSMLayer):
    """MIMO S5 layer.

    Parameters
    ----------
    d_model : int
        H, channels in and out.
    d_state : int
        P, the state size of the real system (even); P/2 complex states are kept.
    blocks : int
        Number of HiPPO-N blocks on the diagonal of the initial Λ (the paper's J).
    discretization : {"zoh", "bilinear"}
    dt_min, dt_max : float
        Range of the initial per-state Δ (log-uniform).
    bidirectional : bool
        Add a second scan over the reversed sequence with its own C̃ (non-causal).
    activation : {"glu", "gelu", "identity"}
        Output nonlinearity: "glu" = GELU then a gated linear projection.
    dropout : float
    backend : {"auto", "torch", "triton"}
        Scan backend: the fused Triton S5 kernel on CUDA tensors ("auto"), or the
        chunked torch scan.
    """

    def __init__(self, d_model: int, d_state: int = 64, blocks: int = 1,
                 discretization: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 bidirectional: bool = False, activation: str = "glu", dropout: float = 0.0,
                 backend: str = "auto"):
        super().__init__()
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization: expected 'zoh' or 'bilinear', got {discretization!r}")
        if activation not in ("glu", "gelu", "identity"):
            raise ValueError(f"activation: expected 'glu', 'gelu' or 'identity', got {activation!r}")
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model: expected a positive int, got {d_model!r}")
        self.d_model, self.d_state, self.discretization = d_model, d_state, discretization
        self.causal, self.activation, self.backend = not bidirectional, activation, backend
        init = s5_init(d_state, blocks=blocks, conj_sym=True)
        Lam = init.Lambda  # (P',) complex128
        Pp = Lam.shape[0]
        dtype = torch.get_default_dtype()
        self.log_neg_re = nn.Parameter(torch.log(-Lam.real).to(dtype))  # Re Λ = -exp(.)
        self.Lambda_im = nn.Parameter(Lam.imag.to(dtype))
        B = torch.randn(d_state, d_model, dtype=torch.float64) / math.sqrt(d_model)  # lecun normal
        Bt = init.Vinv @ B.to(torch.complex128)  # (P', H)
        self.B = nn.Parameter(torch.view_as_real(Bt).to(dtype))  # (P', H, 2)
        n_c = 2 if bidirectional else 1
        C = torch.randn(n_c, d_model, d_state, dtype=torch.float64) / math.sqrt(d_state)
        Ct = C.to(torch.complex128) @ init.V  # (n_c, H, P')
        self.C = nn.Parameter(torch.view_as_real(Ct).to(dtype))  # (n_c, H, P', 2)
        self.D = nn.Parameter(torch.randn(d_model, dtype=dtype))
        self.log_dt = nn.Parameter(init_log_dt(Pp, dt_min, dt_max))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, 2 * d_model) if activation == "glu" else None

    # ---- parameters as complex tensors -------------------------------------------------
    @property
    def Lambda(self) -> torch.Tensor:
        """Continuous-time eigenvalues, complex (P',), Re < 0 by construction."""
        return torch.complex(-torch.exp(self.log_neg_re), self.Lambda_im)

    def _BC(self):
        return torch.view_as_complex(self.B), torch.view_as_complex(self.C)  # (P', H), (n_c, H, P')

    def _discrete(self, gaps: torch.Tensor | None):
        """Ā and the input factor for steps Δ = exp(log_dt) * gaps; shapes (..., P')."""
        Lam = self.Lambda
        delta = torch.exp(self.log_dt)  # (P',)
        if gaps is not None:
            delta = gaps[..., None] * delta  # (..., P')
        z = Lam * delta
        if self.discretization == "zoh":
            Ab = torch.exp(z)
            return Ab, (Ab - 1) / Lam
        Ab = (1 + z / 2) / (1 - z / 2)
        return Ab, delta / (1 - z / 2)

    def _project_out(self, y_pre: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        y = y_pre + self.D * u
        if self.activation == "identity":
            return y
        y = self.drop(F.gelu(y))
        return F.glu(self.out(y), dim=-1) if self.out is not None else y

    # ---- sequence mode -------------------------------------------------------------------
    def _scan(self, u, gaps, Bt, Ct):
        Bu = u.to(Bt.dtype) @ Bt.T  # (b, L, P')
        if choose_backend(self.backend, Bu, "s5_scan", "s5_scan") == "triton":
            return s5_scan(self.Lambda, self.log_dt, Bu, gaps, C=Ct, method=self.discretization,
                           backend="triton")  # (b, L, H), fused kernel
        Ab, fac = self._discrete(gaps)  # (b, L, P') or (P',)
        a = Ab.expand_as(Bu) if Ab.ndim == 1 else Ab
        x = linear_scan(a, fac * Bu)  # (b, L, P')
        return 2 * (x @ Ct.T).real  # (b, L, H)

    def _forward(self, x, dt):
        Bt, C = self._BC()
        y = self._scan(x, dt, Bt, C[0])
        if not self.causal:
            g = None if dt is None else _reverse_gaps(dt)
            y = y + self._scan(x.flip(1), g, Bt, C[1]).flip(1)
        return self._project_out(y.to(x.dtype), x)

    # ---- recurrent mode ------------------------------------------------------------------
    def _initial_state(self, batch, device, dtype):
        cdt = torch.complex128 if (dtype or self.B.dtype) == torch.float64 else torch.complex64
        return torch.zeros(batch, self.Lambda_im.shape[0], dtype=cdt, device=device or self.B.device)

    def _step(self, x_t, state, dt_t):
        Bt, C = self._BC()
        Ab, fac = self._discrete(dt_t)  # (b, P') or (P',)
        state = Ab * state + fac * (x_t.to(Bt.dtype) @ Bt.T)  # (b, P')
        y = 2 * (state @ C[0].T).real  # (b, H)
        return self._project_out(y.to(x_t.dtype), x_t), state

    # ---- control view --------------------------------------------------------------------
    @torch.no_grad()
    def lti(self, dt: float | None = None, direction: int = 0) -> LTISystem:
        """The layer's linear system (before the output nonlinearity) as an LTISystem.

        Parameters
        ----------
        dt : float, optional
            None: the continuous system. A positive gap: the discrete system the layer
            applies for samples that gap apart (per-state Δ = exp(log_dt) * dt), in the
            standard form x_{k+1} = Ā x_k + B̄ u_k, y_k = C Ā x_k + (D + C B̄) u_k (state =
            the layer's state one step earlier), so its impulse response is the layer's
            convolution kernel.
        direction : int
            0 = forward scan; 1 = the backward scan of a bidirectional layer.

        Returns
        -------
        LTISystem
            Real system with P states (conjugate pairs restored), H inputs and outputs.
        """
        if direction not in (0, 1) or (direction == 1 and self.causal):
            raise ValueError("direction: 0 (forward) or, for bidirectional layers, 1 (backward)")
        Bt, C = self._BC()
        Dm = torch.diag(self.D.double())
        if dt is None:
            return LTISystem.from_diagonal(self.Lambda.cdouble(), Bt.cdouble(), C[direction].cdouble(),
                                           Dm, conj_sym=True)
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: expected a positive finite number, got {dt!r}")
        Ab, fac = self._discrete(torch.tensor(float(dt), dtype=self.log_dt.dtype))
        Ab, Bd, Cd = Ab.cdouble(), fac[:, None].cdouble() * Bt.cdouble(), C[direction].cdouble()
        # standard form: y_k = C Ā x_k + (D + C B̄) u_k, state = the layer's state one step earlier
        return LTISystem.from_diagonal(Ab, Bd, Cd * Ab, Dm + 2 * (Cd @ Bd).real, dt=float(dt),
                                       conj_sym=True)
