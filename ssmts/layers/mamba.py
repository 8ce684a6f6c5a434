"""Mamba: the selective SSM block (Gu & Dao, 2023), with irregular time gaps.

Shapes (d_inner = expand * d_model, N = d_state, R = dt_rank)::

    x (b, L, d_model) -> in_proj -> [x, z] (b, L, d_inner) each
    x -> causal depthwise conv1d (kernel d_conv) -> SiLU
    x -> x_proj -> [dt (R), B (N), C (N)];  delta = dt_proj.weight @ dt
    y = selective_scan(x, delta, A, B, C, D, z, delta_bias, softplus, gaps)
    y -> out_proj -> (b, L, d_model)

Irregular sampling: the step of sample t is softplus(delta_t + bias) * gap_t.
The convolution front sees samples, not times (as in the paper); only the SSM
part is continuous-time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ssm.dispatch import selective_scan
from ..ssm.hippo import s4d_real_init
from ..ssm.lti import LTISystem
from .base import SSMLayer, check_input, check_dt

__all__ = ["Mamba"]


class Mamba(SSMLayer):
    """Selective state-space layer (Mamba block without the residual/norm around it).

    Parameters
    ----------
    d_model : int
        Channels in and out.
    d_state : int
        N, states per inner channel (16 in the paper).
    d_conv : int
        Width of the causal depthwise convolution (4).
    expand : int
        d_inner = expand * d_model (2).
    dt_rank : int or "auto"
        Rank of the Δ projection; "auto" = ceil(d_model / 16).
    dt_min, dt_max : float
        Range of the initial Δ (log-uniform), set through the softplus bias.
    dt_init_floor : float
        Smallest initial Δ.
    bias, conv_bias : bool
        Biases of the in/out projections and of the convolution.
    backend : {"auto", "torch", "triton"}
        Passed to :func:`ssmts.ssm.dispatch.selective_scan`.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, bias: bool = False, conv_bias: bool = True,
                 backend: str = "auto"):
        super().__init__()
        for name, v in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend
        di, N, R = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(di, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, di, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -R ** -0.5, R ** -0.5)
        dt = torch.exp(torch.rand(di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():  # bias = softplus^{-1}(dt)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(-s4d_real_init(N, di).to(torch.get_default_dtype())))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=bias)

    @property
    def A(self) -> torch.Tensor:
        """Continuous-time state matrix diagonal, shape (d_inner, N), always < 0."""
        return -torch.exp(self.A_log)

    def _ssm_inputs(self, x: torch.Tensor):
        """x (b, L, d_model) -> (xc, z, delta, B, C) in scan layout (b, d_inner | N, L)."""
        L = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # (b, 2*di, L)
        xi, z = xz.chunk(2, dim=1)  # (b, di, L) each
        xc = F.silu(self.conv1d(xi)[..., :L])  # (b, di, L)
        x_dbl = self.x_proj(xc.transpose(1, 2))  # (b, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)  # (b, di, L)
        return xc, z, delta, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()

    def _forward(self, x, dt):
        xc, z, delta, B, C = self._ssm_inputs(x)
        y = selective_scan(xc, delta, self.A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias,
                           delta_softplus=True, gaps=dt, backend=self.backend)  # (b, di, L)
        return self.out_proj(y.transpose(1, 2))  # (b, L, d_model)

    def _initial_state(self, batch, device, dtype):
        p = self.A_log
        device = device or p.device
        dtype = dtype or p.dtype
        conv = torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype)
        ssm = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype)
        return conv, ssm

    def _step(self, x_t, state, dt_t):
        conv_state, ssm_state = state
        xz = self.in_proj(x_t)  # (b, 2*di)
        xi, z = xz.chunk(2, dim=-1)  # (b, di)
        conv_state = torch.cat([conv_state[:, :, 1:], xi[:, :, None]], dim=-1)  # (b, di, d_conv)
        xc = (conv_state * self.conv1d.weight[:, 0]).sum(-1)  # (b, di)
        if self.conv1d.bias is not None:
            xc = xc + self.conv1d.bias
        xc = F.silu(xc)
        dtr, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(dtr @ self.dt_proj.weight.T + self.dt_proj.bias)  # (b, di)
        if dt_t is not None:
            delta = delta * dt_t[:, None]
        dA = torch.exp(delta[..., None] * self.A)  # (b, di, N)
        ssm_state = dA * ssm_state + (delta * xc)[..., None] * B[:, None, :]  # (b, di, N)
        y = (ssm_state * C[:, None, :]).sum(-1) + self.D * xc  # (b, di)
        y = y * F.silu(z)
        return self.out_proj(y), (conv_state, ssm_state)

    @torch.no_grad()
    def lti_at(self, x: torch.Tensor, t: int, channel: int = 0, dt: torch.Tensor | None = None,
               discrete: bool = False) -> LTISystem:
        """The linear system the layer applies at time step ``t`` for input ``x``, frozen.

        Mamba is time-varying: at step t, inner channel ``channel`` evolves as
        h' = diag(A_c) h + B_t u, y = C_t h + D_c u with Δ_t from the input.

        Parameters
        ----------
        x : tensor, shape (1, length, d_model)
            The input sequence (one sequence).
        t : int
            Time index in [0, length).
        channel : int
            Inner channel in [0, d_inner).
        dt : tensor, shape (1, length), optional
            Time gaps, as in ``forward``.
        discrete : bool
            Return the discrete system the layer actually applies at step t,
            Ā = exp(Δ_t A), B̄ = Δ_t B_t (Mamba's discretisation), with sampling
            period Δ_t, instead of the continuous system; in the standard form
            x_{k+1} = Ā x_k + B̄ u_k, y_k = C Ā x_k + (D + C B̄) u_k where x_k is the
            layer's state before step t and y_k its (ungated) output at t.

        Returns
        -------
        LTISystem
            SISO, N states.
        """
        check_input(x, self.d_model)
        if x.shape[0] != 1:
            raise ValueError(f"x: lti_at takes one sequence, shape (1, length, d_model); got {tuple(x.shape)}")
        dt = check_dt(dt, x.shape[:2])
        if not (0 <= t < x.shape[1]):
            raise ValueError(f"t: must be in [0, {x.shape[1]}), got {t}")
        if not (0 <= channel < self.d_inner):
            raise ValueError(f"channel: must be in [0, {self.d_inner}), got {channel}")
        _, _, delta, B, C = self._ssm_inputs(x)
        d = F.softplus(delta[0, channel, t] + self.dt_proj.bias[channel])
        if dt is not None:
            d = d * dt[0, t]
        A = self.A[channel].double()  # (N,)
        Bt, Ct = B[0, :, t].double(), C[0, :, t].double()  # (N,)
        Dc = self.D[channel].double().reshape(1, 1)
        if not discrete:
            return LTISystem(torch.diag(A), Bt[:, None], Ct[None, :], Dc)
        d = d.double()
        Ab, Bb = torch.exp(d * A), d * Bt  # (N,), (N,)
        # standard form: y_k = C Ā x_k + (D + C B̄) u_k, x_k = the layer's state before step t
        return LTISystem(torch.diag(Ab), Bb[:, None], (Ct * Ab)[None, :], Dc + (Ct @ Bb).reshape(1, 1),
                         dt=float(d))
