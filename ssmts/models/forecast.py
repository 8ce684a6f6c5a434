"""ForecastNet: an SSM backbone with a direct multi-horizon head on continuous time.

Per step the network reads the scaled values with missing entries set to 0,
the observation mask (1 observed, 0 missing) as extra channels, and optional
covariates; a linear encoder lifts that to ``d_model``, an
:class:`~ssmts.layers.block.SSMBackbone` runs over the context with the time
gap before each sample as its step, and the head reads the last hidden state.

Missing rows
------------
A row missing in every input channel is *skipped*: its gap is folded into the
next observed row's gap and the row itself gets the tiny step ``SKIP_DT``, so
the recurrent state passes it unchanged (Ā = exp(εA) ≈ I, B̄ ≈ 0). Time after
the last observed row is carried as ``pending`` and added to the forecast
offsets. Rows missing in only some channels are kept; the mask channels say
which values are absent. (Mamba's short input convolution still sees the
skipped row's zero input.) With ``channel="independent"`` every channel is its
own univariate sequence, so each missing value is a skipped step of its channel.

Head
----
For future offsets τ_k (time from the last observed row, in steps) the head is

    out_k = interp_knots(W h)(τ_k) + MLP([h, φ(τ_k), x_k])

where ``W h`` gives values at the knots τ = 1..horizon (linear interpolation
in between, constant outside: on a regular grid this is the usual linear
multi-horizon head), φ are learnable Fourier features of τ and x_k the future
covariates. Irregular future stamps (``at=``) therefore work directly.
Horizons beyond ``horizon`` are rolled out recursively by the estimator with
:meth:`ForecastNet.step` (every backbone here is causal).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ssmts.layers.block import SSMBackbone

__all__ = ["ForecastNet", "SKIP_DT", "effective_gaps"]

SKIP_DT = 1e-5


def effective_gaps(gaps: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the gaps of unobserved rows into the next observed row.

    Parameters
    ----------
    gaps : float tensor, shape (B, L), positive gap before each row
    observed : bool tensor, shape (B, L), True where any input value is observed

    Returns
    -------
    dt : float tensor, shape (B, L)
        Observed rows: time since the previous observed row (or since the
        window's start); skipped rows: ``SKIP_DT``.
    pending : float tensor, shape (B,)
        Time from the last observed row to the end of the window (0 when the
        last row is observed).
    """
    cum = torch.cumsum(gaps, dim=1)  # (B, L)
    marks = torch.where(observed, cum, torch.zeros_like(cum))
    last_obs = torch.cummax(marks, dim=1).values  # (B, L) cum time of last observed row so far
    prev = torch.cat([torch.zeros_like(cum[:, :1]), last_obs[:, :-1]], dim=1)  # (B, L)
    dt = torch.where(observed, cum - prev, torch.full_like(cum, SKIP_DT))
    return dt, cum[:, -1] - last_obs[:, -1]


class ForecastNet(nn.Module):
    """Encoder -> SSM backbone -> multi-horizon head conditioned on future time offsets.

    Parameters
    ----------
    n_channels : int
        Target channels C.
    horizon : int
        Steps the direct head is trained for (knots τ = 1..horizon).
    n_exog : int
        Covariate channels C_x (0 = none).
    n_outputs : int
        Outputs per channel and step (1, or the number of quantiles).
    channel : {"mixed", "independent"}
        "mixed": one sequence with all channels; "independent": channels folded
        into the batch, one univariate model shared by all channels.
    backbone, d_model, n_layers, d_state, dropout, ffn_mult, layer_kwargs
        Passed to :class:`~ssmts.layers.block.SSMBackbone`.
    n_freqs : int
        Learnable Fourier frequencies of the time features.
    """

    def __init__(self, n_channels: int, horizon: int, n_exog: int = 0, n_outputs: int = 1,
                 channel: str = "mixed", backbone: str = "s5", d_model: int = 64,
                 n_layers: int = 2, d_state: int = 32, dropout: float = 0.0, ffn_mult: int = 0,
                 layer_kwargs: dict | None = None, n_freqs: int = 8):
        super().__init__()
        if channel not in ("mixed", "independent"):
            raise ValueError(f"channel: expected 'mixed' or 'independent', got {channel!r}")
        self.n_channels, self.horizon, self.n_exog = n_channels, horizon, n_exog
        self.n_outputs, self.channel = n_outputs, channel
        c_in = n_channels if channel == "mixed" else 1
        self.n_out = c_in * n_outputs  # outputs per model-batch row and step
        self.encoder = nn.Linear(2 * c_in + n_exog, d_model)
        self.backbone = SSMBackbone(backbone, d_model=d_model, n_layers=n_layers, d_state=d_state,
                                    dropout=dropout, ffn_mult=ffn_mult, layer_kwargs=layer_kwargs)
        self.knots = nn.Linear(d_model, horizon * self.n_out)
        periods = torch.logspace(math.log10(2.0), math.log10(4.0 * horizon + 2.0), n_freqs)
        self.freqs = nn.Parameter(2 * math.pi / periods)  # (n_freqs,)
        self.h_proj = nn.Linear(d_model, d_model)
        self.t_proj = nn.Linear(2 * n_freqs + 1, d_model, bias=False)
        self.x_proj = nn.Linear(n_exog, d_model, bias=False) if n_exog else None
        self.out = nn.Sequential(nn.GELU(), nn.Linear(d_model, self.n_out))

    # -- folding between the user's batch b and the model's batch B ---------------
    def _fold(self, values, mask, exog):
        """(b, L, C) values / mask and (b, L, C_x) exog -> model inputs (B, L, c_in ...)."""
        if self.channel == "mixed":
            return values, mask, exog
        b, L, C = values.shape
        v = values.permute(0, 2, 1).reshape(b * C, L, 1)  # (b*C, L, 1)
        m = mask.permute(0, 2, 1).reshape(b * C, L, 1)  # (b*C, L, 1)
        ex = None if exog is None else exog.repeat_interleave(C, dim=0)  # (b*C, L, C_x)
        return v, m, ex

    def fold_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Repeat a per-series tensor (b, ...) to the model batch (B, ...)."""
        return x if self.channel == "mixed" else x.repeat_interleave(self.n_channels, dim=0)

    def unfold(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, n_out) head output -> (b, h, C, n_outputs)."""
        B, h, _ = out.shape
        if self.channel == "mixed":
            return out.reshape(B, h, self.n_channels, self.n_outputs)
        b = B // self.n_channels
        out = out.reshape(b, self.n_channels, h, self.n_outputs)  # (b, C, h, q)
        return out.permute(0, 2, 1, 3)

    def _inputs(self, v, m, ex):
        parts = [torch.nan_to_num(v) * m, m] + ([ex] if ex is not None else [])
        return self.encoder(torch.cat(parts, dim=-1))  # (B, L, d_model)

    # -- sequence mode ---------------------------------------------------------
    def encode(self, values, mask, gaps, exog=None):
        """Run the backbone over a context window.

        Parameters
        ----------
        values : float tensor, shape (b, L, C), scaled; NaN or anything where mask is 0
        mask : float tensor, shape (b, L, C), 1 observed / 0 missing
        gaps : float tensor, shape (b, L), gap before each row (> 0)
        exog : float tensor, shape (b, L, C_x), optional

        Returns
        -------
        hidden : tensor, shape (B, d_model), backbone output at the last observed row
        pending : tensor, shape (B,), time since the last observed row
        """
        v, m, ex = self._fold(values, mask, exog)
        observed = m.sum(-1) > 0  # (B, L)
        dt, pending = effective_gaps(self.fold_rows(gaps), observed)
        z = self._inputs(v, m, ex)
        dt = None if bool((dt == 1).all()) else dt  # regular: lets LTI layers convolve
        y = self.backbone(z, dt)  # (B, L, d_model)
        L = observed.shape[1]
        last = (observed * torch.arange(1, L + 1, device=y.device)).argmax(dim=1)  # (B,)
        return y[torch.arange(y.shape[0], device=y.device), last], pending

    def decode(self, hidden, tau, future_exog=None):
        """Head at future offsets.

        Parameters
        ----------
        hidden : tensor, shape (B, d_model)
        tau : float tensor, shape (B, h), time of each future step since the last observed row
        future_exog : float tensor, shape (b, h, C_x), optional

        Returns
        -------
        tensor, shape (b, h, C, n_outputs)
        """
        B, h = tau.shape
        K = self.horizon
        kv = self.knots(hidden).reshape(B, K, self.n_out)  # (B, K, n_out)
        pos = tau.clamp(1.0, float(K)) - 1.0  # (B, h) in knot units
        lo = pos.floor().clamp(max=K - 1).long()
        hi = (lo + 1).clamp(max=K - 1)
        w = (pos - lo.to(pos.dtype)).unsqueeze(-1)  # (B, h, 1)
        take = lambda idx: torch.gather(kv, 1, idx.unsqueeze(-1).expand(B, h, self.n_out))
        lin = take(lo) * (1 - w) + take(hi) * w  # (B, h, n_out)
        ang = tau.unsqueeze(-1) * self.freqs  # (B, h, n_freqs)
        feats = torch.cat([tau.unsqueeze(-1) / K, torch.sin(ang), torch.cos(ang)], dim=-1)
        z = self.h_proj(hidden).unsqueeze(1) + self.t_proj(feats)  # (B, h, d_model)
        if self.x_proj is not None and future_exog is not None:
            z = z + self.x_proj(self.fold_rows(future_exog))
        return self.unfold(lin + self.out(z))

    def forward(self, values, mask, gaps, future_gaps, exog=None, future_exog=None):
        """Context window -> forecast of the next ``future_gaps.shape[1]`` steps.

        Parameters
        ----------
        values, mask : float tensors, shape (b, L, C)
        gaps : float tensor, shape (b, L)
        future_gaps : float tensor, shape (b, h), gaps of the future steps
        exog, future_exog : float tensors, shapes (b, L, C_x), (b, h, C_x), optional

        Returns
        -------
        tensor, shape (b, h, C, n_outputs)
        """
        hidden, pending = self.encode(values, mask, gaps, exog)
        tau = torch.cumsum(self.fold_rows(future_gaps), dim=1) + pending[:, None]  # (B, h)
        return self.decode(hidden, tau, future_exog)

    # -- recurrent mode --------------------------------------------------------
    def initial_state(self, batch: int) -> dict:
        """Zero origin for ``batch`` series: backbone state, last hidden, pending time."""
        B = batch * (1 if self.channel == "mixed" else self.n_channels)
        p = next(self.parameters())
        return {"state": self.backbone.initial_state(B, device=p.device, dtype=p.dtype),
                "hidden": torch.zeros(B, self.backbone.d_model, device=p.device, dtype=p.dtype),
                "pending": torch.zeros(B, device=p.device, dtype=p.dtype)}

    def step(self, values_t, mask_t, gap_t, origin: dict, exog_t=None) -> dict:
        """Advance the origin by one row (O(1) in the history).

        Parameters
        ----------
        values_t, mask_t : float tensors, shape (b, C)
        gap_t : float tensor, shape (b,)
        origin : dict from :meth:`initial_state` or a previous :meth:`step`
        exog_t : float tensor, shape (b, C_x), optional

        Returns
        -------
        dict, the new origin (the input is not modified). A row with no observed
        input leaves state and hidden unchanged and adds its gap to ``pending``.
        """
        v, m, ex = self._fold(values_t[:, None], mask_t[:, None],
                              None if exog_t is None else exog_t[:, None])
        observed = m[:, 0].sum(-1) > 0  # (B,)
        gap = self.fold_rows(gap_t)
        dt = torch.where(observed, gap + origin["pending"], torch.full_like(gap, SKIP_DT))
        y, state = self.backbone.step(self._inputs(v, m, ex)[:, 0], origin["state"], dt)
        hidden = torch.where(observed[:, None], y, origin["hidden"])
        pending = torch.where(observed, torch.zeros_like(gap), origin["pending"] + gap)
        return {"state": state, "hidden": hidden, "pending": pending}
