"""S4 (DPLR, Gu et al. 2022) and S4D (diagonal, Gu et al. 2022b): H independent SISO systems.

Per channel h (N real states kept as N' = N/2 complex ones, conjugate symmetry):

    diag : A = diag(Λ_h)                  ZOH,      kernel by Vandermonde
    dplr : A = diag(Λ_h) − P_h P_hᴴ       bilinear, kernel by Cauchy + Woodbury
    Δ_{t,h} = exp(log_dt_h) * gap_t
    y = K * u + D u (regular)  |  scan / recurrence (irregular gaps)  ->  GELU -> GLU

Re Λ < 0 by parameterisation (Λ = −exp(·) + i·), and the rank-r correction
−P Pᴴ is negative semidefinite, so A stays stable.

With conjugate symmetry the DPLR low-rank term couples a state with its conjugate:
on the kept half, A x = Λ x − P · 2Re(Pᴴ x), which the recurrence uses exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ssm.conv import fft_conv, fft_conv_bidirectional, kernel_dplr, kernel_vandermonde
from ..ssm.hippo import dplr_init, s4d_init
from ..ssm.lti import LTISystem
from ..ssm.scan import linear_scan
from .base import SSMLayer, init_log_dt

__all__ = ["S4"]


class S4(SSMLayer):
    """S4 / S4D layer: one SISO state-space system per channel.

    Parameters
    ----------
    d_model : int
        H, channels (each its own system).
    d_state : int
        N, real states per channel (even); N/2 complex ones are stored.
    mode : {"diag", "dplr"}
        "diag" = S4D (ZOH, Vandermonde kernel); "dplr" = S4 (HiPPO-LegS DPLR,
        bilinear, Cauchy kernel).
    init : {"legs", "lin", "inv"}
        S4D initialisation of Λ (ignored by "dplr", which starts from HiPPO-LegS).
    rank : int
        Rank of the low-rank term (dplr only).
    dt_min, dt_max : float
        Range of the initial per-channel Δ (log-uniform).
    bidirectional : bool
        Second, time-reversed kernel (own C), outputs summed: non-causal.
    activation : {"glu", "gelu", "identity"}
    dropout : float
    """

    def __init__(self, d_model: int, d_state: int = 64, mode: str = "diag", init: str = "legs",
                 rank: int = 1, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 bidirectional: bool = False, activation: str = "glu", dropout: float = 0.0):
        super().__init__()
        if mode not in ("diag", "dplr"):
            raise ValueError(f"mode: expected 'diag' (S4D) or 'dplr' (S4), got {mode!r}")
        if activation not in ("glu", "gelu", "identity"):
            raise ValueError(f"activation: expected 'glu', 'gelu' or 'identity', got {activation!r}")
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model: expected a positive int, got {d_model!r}")
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state: expected an even int >= 2, got {d_state!r}")
        self.d_model, self.d_state, self.mode = d_model, d_state, mode
        self.causal, self.activation = not bidirectional, activation
        H, N2, dtype = d_model, d_state // 2, torch.get_default_dtype()
        if mode == "diag":
            Lam = s4d_init(d_state, init)  # (N2,)
            B = torch.ones(N2, dtype=torch.complex128)
        else:
            d = dplr_init("legs", d_state, rank=rank)
            Lam, B = d.Lambda, d.B  # (N2,), (N2,)
            self.P = nn.Parameter(torch.view_as_real(d.P.expand(H, rank, N2).clone()).to(dtype))
        Lam = Lam.expand(H, N2)
        self.log_neg_re = nn.Parameter(torch.log(-Lam.real).to(dtype))  # (H, N2)
        self.Lambda_im = nn.Parameter(Lam.imag.clone().to(dtype))
        self.B = nn.Parameter(torch.view_as_real(B.expand(H, N2).clone()).to(dtype))  # (H, N2, 2)
        n_c = 2 if bidirectional else 1
        C = torch.randn(n_c, H, N2, dtype=torch.complex128) * math.sqrt(0.5)
        self.C = nn.Parameter(torch.view_as_real(C).to(dtype))  # (n_c, H, N2, 2)
        self.D = nn.Parameter(torch.randn(H, dtype=dtype))
        self.log_dt = nn.Parameter(init_log_dt(H, dt_min, dt_max))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(H, 2 * H) if activation == "glu" else None

    # ---- parameters ------------------------------------------------------------------
    @property
    def Lambda(self) -> torch.Tensor:
        """Diagonal part, complex (H, N2), Re < 0."""
        return torch.complex(-torch.exp(self.log_neg_re), self.Lambda_im)

    def _params(self):
        Bc, Cc = torch.view_as_complex(self.B), torch.view_as_complex(self.C)  # (H,N2), (n_c,H,N2)
        Pc = torch.view_as_complex(self.P) if self.mode == "dplr" else None  # (H, r, N2)
        return self.Lambda, Bc, Cc, Pc

    def _post(self, y, u):
        y = y + self.D * u
        if self.activation == "identity":
            return y
        y = self.drop(F.gelu(y))
        return F.glu(self.out(y), dim=-1) if self.out is not None else y

    # ---- convolution view (regular sampling) -----------------------------------------
    def kernel(self, L: int) -> torch.Tensor:
        """Convolution kernels K (n_c, H, L), n_c = 2 for bidirectional layers."""
        Lam, B, C, P = self._params()
        dt = torch.exp(self.log_dt)  # (H,)
        if self.mode == "diag":
            return kernel_vandermonde(Lam, B, C, dt, L, method="zoh", conj_sym=True)  # (n_c, H, L)
        return torch.stack([kernel_dplr(Lam, P, P, B, C[i], dt, L, conj_sym=True)
                            for i in range(C.shape[0])])  # (n_c, H, L)

    def _forward(self, x, dt):
        if dt is not None:
            return self._forward_recurrent(x, dt)
        u = x.transpose(1, 2)  # (b, H, L)
        K = self.kernel(x.shape[1]).to(u.dtype)
        y = fft_conv(u, K[0]) if self.causal else fft_conv_bidirectional(u, K[0], K[1])
        return self._post(y.transpose(1, 2), x)  # (b, L, H)

    # ---- scan / recurrent view (irregular sampling) ----------------------------------
    def _discrete_diag(self, Lam, B, gaps):
        delta = torch.exp(self.log_dt)[..., None]  # (H, 1)
        if gaps is not None:
            delta = gaps[..., None, None] * delta  # (..., H, 1)
        Ab = torch.exp(Lam * delta)  # (..., H, N2)
        return Ab, (Ab - 1) / Lam * B

    def _scan_diag(self, u, gaps, C):
        Lam, B, _, _ = self._params()
        Ab, Bb = self._discrete_diag(Lam, B, gaps)  # (b, L, H, N2)
        h = linear_scan(Ab, Bb * u.to(Bb.dtype)[..., None])  # (b, L, H, N2)
        return 2 * (h * C).sum(-1).real  # (b, L, H)

    def _scan_dplr(self, u, gaps, C):
        state = self._initial_state(u.shape[0], u.device, u.dtype)
        ys = []
        for t in range(u.shape[1]):
            g = None if gaps is None else gaps[:, t]
            state = self._dplr_update(state, u[:, t], g)  # (b, H, N2)
            ys.append(2 * (state * C).sum(-1).real)
        return torch.stack(ys, dim=1)  # (b, L, H)

    def _forward_recurrent(self, x, dt):
        scan = self._scan_diag if self.mode == "diag" else self._scan_dplr
        C = self._params()[2]
        y = scan(x, dt, C[0])
        if not self.causal:
            g = torch.cat([torch.ones_like(dt[:, :1]), dt.flip(1)[:, :-1]], dim=1)  # reversed gaps
            y = y + scan(x.flip(1), g, C[1]).flip(1)
        return self._post(y.to(x.dtype), x)

    def _dplr_update(self, state, u_t, gap):
        """Bilinear step of A = Λ − P Pᴴ on the kept half (Woodbury); state (b, H, N2)."""
        Lam, B, _, P = self._params()
        delta = torch.exp(self.log_dt)  # (H,)
        if gap is not None:
            delta = gap[:, None] * delta  # (b, H)
        d2 = (delta / 2)[..., None]  # (..., H, 1)

        def lowrank(v):  # P · 2Re(Pᴴ v): (b, H, N2) -> (b, H, N2)
            s = 2 * torch.einsum("hrn,bhn->bhr", P.conj(), v).real  # (b, H, r)
            return torch.einsum("hrn,bhr->bhn", P, s.to(P.dtype))

        v = state + d2 * (Lam * state - lowrank(state)) + 2 * d2 * B * u_t.to(B.dtype)[..., None]
        dinv = 1 / (1 - d2 * Lam)  # (..., H, N2)
        w = dinv * v
        # (I_r + Δ/2 · 2Re(Pᴴ Dinv P)) s = Δ/2 · 2Re(Pᴴ w)
        M = 2 * torch.einsum("hrn,...hn,hsn->...hrs", P.conj(), dinv, P).real  # (..., H, r, r)
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        rhs = 2 * torch.einsum("hrn,bhn->bhr", P.conj(), w).real  # (b, H, r)
        dr = d2[..., 0]  # (..., H)
        s = torch.linalg.solve(eye + dr[..., None, None] * M, (dr[..., None] * rhs).unsqueeze(-1))
        return w - dinv * torch.einsum("hrn,bhr->bhn", P, s[..., 0].to(P.dtype))

    def _initial_state(self, batch, device, dtype):
        cdt = torch.complex128 if (dtype or self.B.dtype) == torch.float64 else torch.complex64
        return torch.zeros(batch, self.d_model, self.d_state // 2, dtype=cdt,
                           device=device or self.B.device)

    def _step(self, x_t, state, dt_t):
        Lam, B, C, _ = self._params()
        if self.mode == "diag":
            Ab, Bb = self._discrete_diag(Lam, B, dt_t)  # (b|1, H, N2)
            state = Ab * state + Bb * x_t.to(Bb.dtype)[..., None]
        else:
            state = self._dplr_update(state, x_t, dt_t)
        y = 2 * (state * C[0]).sum(-1).real  # (b, H)
        return self._post(y.to(x_t.dtype), x_t), state

    # ---- control view ----------------------------------------------------------------
    @torch.no_grad()
    def lti(self, channel: int = 0, dt: float | None = None, direction: int = 0) -> LTISystem:
        """Channel ``channel``'s linear system (before the output nonlinearity).

        Parameters
        ----------
        channel : int
            In [0, d_model).
        dt : float, optional
            None: continuous. A positive gap: the discrete system the layer applies
            (Δ = exp(log_dt) * dt; ZOH for "diag", bilinear for "dplr"), written in
            the standard form x_{k+1} = Ā x_k + B̄ u_k, y_k = C Ā x_k + (D + C B̄) u_k
            (its state is the layer's state one step earlier), so that its impulse
            response is exactly the layer's convolution kernel K (plus D at lag 0).
        direction : int
            0 = forward kernel, 1 = backward kernel of a bidirectional layer.

        Returns
        -------
        LTISystem
            Real SISO system with N states.
        """
        if not (isinstance(channel, int) and 0 <= channel < self.d_model):
            raise ValueError(f"channel: expected an int in [0, {self.d_model}), got {channel!r}")
        if direction not in (0, 1) or (direction == 1 and self.causal):
            raise ValueError("direction: 0 (forward) or, for bidirectional layers, 1 (backward)")
        Lam, B, C, P = (t.cdouble() if t is not None else None for t in self._params())
        lam, b, c = Lam[channel], B[channel], C[direction, channel]
        Dm = self.D[channel].double().reshape(1, 1)
        if self.mode == "diag":
            sys_c = LTISystem.from_diagonal(lam, b[:, None], c[None, :], Dm, conj_sym=True)
        else:
            sys_c = _dplr_real_system(lam, P[channel], b, c, Dm)
        if dt is None:
            return sys_c
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: expected a positive finite number, got {dt!r}")
        step = float(torch.exp(self.log_dt[channel])) * dt
        sys_d = sys_c.discretize(step, method="zoh" if self.mode == "diag" else "bilinear")
        Ad, Bd = sys_d.A, sys_d.B  # the layer's Ā, B̄
        return LTISystem(Ad, Bd, sys_c.C @ Ad, sys_c.D + sys_c.C @ Bd, dt=float(dt))


def _dplr_real_system(lam, P, b, c, Dm) -> LTISystem:
    """Real N-state system of one DPLR channel kept as conjugate halves.

    Full complex system on [x; x̄]: A = diag(Λ, Λ̄) − [P; P̄][P; P̄]ᴴ, B = [b; b̄],
    C = [c, c̄]; the change of basis x = Re + i Im makes it real.
    """
    n = lam.shape[0]
    Pf = torch.cat([P, P.conj()], dim=-1)  # (r, N)
    A = torch.diag(torch.cat([lam, lam.conj()])) - Pf.T @ Pf.conj()  # (N, N)
    Bf = torch.cat([b, b.conj()])[:, None]  # (N, 1)
    Cf = torch.cat([c, c.conj()])[None, :]  # (1, N)
    eye = torch.eye(n, dtype=A.dtype)
    T = torch.cat([torch.cat([eye, 1j * eye], 1), torch.cat([eye, -1j * eye], 1)], 0)  # [x; x̄] = T z
    Ti = torch.linalg.inv(T)
    return LTISystem((Ti @ A @ T).real, (Ti @ Bf).real, (Cf @ T).real, Dm)
