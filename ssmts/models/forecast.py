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

Window normalisation
--------------------
With ``window_norm`` (RevIN, Kim et al. 2022) each context window and channel
is shifted by the mean (or the last value) of its *observed* values and divided
by their std (floored), the network runs on that, and the head's outputs are
mapped back: the forecast of ``a·values + c`` is ``a·forecast + c``. In
recurrent mode the statistics travel in the origin (``loc``, ``scale``), taken
from the context the origin is stepped over.

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

__all__ = ["ForecastNet", "SKIP_DT", "WINDOW_NORMS", "effective_gaps", "window_stats"]

SKIP_DT = 1e-5
WINDOW_NORMS = (None, "mean", "last")


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
    # the running sum in float64: in float32 its rounding grows with the window's length
    cum = torch.cumsum(gaps.double(), dim=1)  # (B, L)
    marks = torch.where(observed, cum, torch.zeros_like(cum))
    last_obs = torch.cummax(marks, dim=1).values  # (B, L) cum time of last observed row so far
    prev = torch.cat([torch.zeros_like(cum[:, :1]), last_obs[:, :-1]], dim=1)  # (B, L)
    dt = torch.where(observed, cum - prev, torch.full_like(cum, SKIP_DT))
    return dt.to(gaps.dtype), (cum[:, -1] - last_obs[:, -1]).to(gaps.dtype)


def window_stats(values: torch.Tensor, mask: torch.Tensor, how: str = "mean",
                 min_std: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window, per-channel location and scale from observed values only (RevIN).

    Parameters
    ----------
    values : float tensor, shape (B, L, c); anything (even NaN) where mask is 0
    mask : float tensor, shape (B, L, c), 1 observed / 0 missing
    how : {"mean", "last"}
        Location: the mean of the observed values, or the last observed value.
    min_std : float
        Floor of the scale (the std of the observed values around their mean).

    Returns
    -------
    loc, scale : float tensors, shape (B, c)
        A channel with no observed value in the window gets loc 0, scale 1.
    """
    m = mask.to(values.dtype)
    v = torch.where(m > 0, values, torch.zeros_like(values))  # (B, L, c), NaN-free
    n = m.sum(1)  # (B, c)
    mean = v.sum(1) / n.clamp(min=1.0)  # (B, c)
    var = ((v - mean[:, None]) * m).square().sum(1) / n.clamp(min=1.0)
    scale = var.sqrt().clamp(min=min_std)
    if how == "last":
        L = m.shape[1]
        pos = torch.arange(1, L + 1, device=m.device, dtype=m.dtype)[None, :, None]
        last = (m * pos).argmax(dim=1, keepdim=True)  # (B, 1, c) index of the last observed
        loc = torch.gather(v, 1, last)[:, 0]  # (B, c)
    else:
        loc = mean
    seen = n > 0
    return torch.where(seen, loc, torch.zeros_like(loc)), torch.where(seen, scale,
                                                                     torch.ones_like(scale))


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
    window_norm : {None, "mean", "last"}
        Instance normalisation per window and channel (RevIN, Kim et al. 2022):
        subtract the mean (or the last value) of the observed context values, divide
        by their std (floored at ``norm_min_std``), run the network, and invert that
        on the outputs, which therefore stay in the units of ``values``.
    norm_affine : bool
        Learnable per-channel affine map after the window normalisation (and its inverse).
    norm_min_std : float
        Floor of the window std, in the units of ``values``.
    """

    def __init__(self, n_channels: int, horizon: int, n_exog: int = 0, n_outputs: int = 1,
                 channel: str = "mixed", backbone: str = "s5", d_model: int = 64,
                 n_layers: int = 2, d_state: int = 32, dropout: float = 0.0, ffn_mult: int = 0,
                 layer_kwargs: dict | None = None, n_freqs: int = 8,
                 window_norm: str | None = None, norm_affine: bool = False,
                 norm_min_std: float = 1e-2):
        super().__init__()
        if channel not in ("mixed", "independent"):
            raise ValueError(f"channel: expected 'mixed' or 'independent', got {channel!r}")
        if window_norm not in WINDOW_NORMS:
            raise ValueError(f"window_norm: expected one of {list(WINDOW_NORMS)}, got "
                             f"{window_norm!r}")
        self.n_channels, self.horizon, self.n_exog = n_channels, horizon, n_exog
        self.n_outputs, self.channel = n_outputs, channel
        self.window_norm, self.norm_min_std = window_norm, float(norm_min_std)
        c_in = n_channels if channel == "mixed" else 1
        self.c_in = c_in
        self.norm_weight = self.norm_bias = None
        if window_norm is not None and norm_affine:
            self.norm_weight = nn.Parameter(torch.ones(c_in))
            self.norm_bias = nn.Parameter(torch.zeros(c_in))
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

    def _inputs(self, v, m, ex, stats=None):
        v = torch.nan_to_num(v)
        if stats is not None:
            v = self._normalize(v, *stats)
        parts = [v * m, m] + ([ex] if ex is not None else [])
        return self.encoder(torch.cat(parts, dim=-1))  # (B, L, d_model)

    # -- window normalisation ----------------------------------------------------
    def window_stats(self, values, mask) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(loc, scale), each (B, c_in), of a context window; None without ``window_norm``.

        Parameters
        ----------
        values, mask : float tensors, shape (b, L, C) (see :meth:`encode`)
        """
        if self.window_norm is None:
            return None
        v, m, _ = self._fold(values, mask, None)
        return window_stats(v, m, self.window_norm, self.norm_min_std)

    def _normalize(self, v, loc, scale):
        """(B, L, c_in) values -> window-normalised (and affine) values."""
        z = (v - loc[:, None]) / scale[:, None]
        if self.norm_weight is not None:
            z = z * self.norm_weight + self.norm_bias
        return z

    def _denormalize(self, out, loc, scale):
        """(B, h, c_in * n_outputs) head output -> the units of the input values."""
        B, h, _ = out.shape
        o = out.reshape(B, h, self.c_in, self.n_outputs)  # (B, h, c_in, q)
        if self.norm_weight is not None:
            o = (o - self.norm_bias[:, None]) / (self.norm_weight[:, None] + 1e-6)
        o = o * scale[:, None, :, None] + loc[:, None, :, None]
        return o.reshape(B, h, -1)  # (B, h, n_out)

    # -- sequence mode ---------------------------------------------------------
    def encode(self, values, mask, gaps, exog=None, stats=None):
        """Run the backbone over a context window.

        Parameters
        ----------
        values : float tensor, shape (b, L, C), scaled; NaN or anything where mask is 0
        mask : float tensor, shape (b, L, C), 1 observed / 0 missing
        gaps : float tensor, shape (b, L), gap before each row (> 0)
        exog : float tensor, shape (b, L, C_x), optional
        stats : (loc, scale) from :meth:`window_stats`, optional (computed when
            ``window_norm`` is set and none are given)

        Returns
        -------
        hidden : tensor, shape (B, d_model), backbone output at the last observed row
        pending : tensor, shape (B,), time since the last observed row
        """
        v, m, ex = self._fold(values, mask, exog)
        if stats is None and self.window_norm is not None:
            stats = window_stats(v, m, self.window_norm, self.norm_min_std)
        observed = m.sum(-1) > 0  # (B, L)
        dt, pending = effective_gaps(self.fold_rows(gaps), observed)
        z = self._inputs(v, m, ex, stats)
        dt = None if bool((dt == 1).all()) else dt  # regular: lets LTI layers convolve
        y = self.backbone(z, dt)  # (B, L, d_model)
        L = observed.shape[1]
        last = (observed * torch.arange(1, L + 1, device=y.device)).argmax(dim=1)  # (B,)
        return y[torch.arange(y.shape[0], device=y.device), last], pending

    def decode(self, hidden, tau, future_exog=None, stats=None):
        """Head at future offsets.

        Parameters
        ----------
        hidden : tensor, shape (B, d_model)
        tau : float tensor, shape (B, h), time of each future step since the last observed row
        future_exog : float tensor, shape (b, h, C_x), optional
        stats : (loc, scale), each (B, c_in), optional: the window statistics the
            hidden state was computed with; the output is mapped back with them

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
        out = lin + self.out(z)  # (B, h, n_out)
        if stats is not None:
            out = self._denormalize(out, *stats)
        return self.unfold(out)

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
        stats = self.window_stats(values, mask)
        hidden, pending = self.encode(values, mask, gaps, exog, stats)
        tau = torch.cumsum(self.fold_rows(future_gaps), dim=1) + pending[:, None]  # (B, h)
        return self.decode(hidden, tau, future_exog, stats)

    # -- recurrent mode --------------------------------------------------------
    def initial_state(self, batch: int, stats=None) -> dict:
        """Zero origin for ``batch`` series: backbone state, last hidden, pending time.

        With ``window_norm`` the origin also carries the window statistics ``loc`` and
        ``scale`` (each (B, c_in); ``stats`` from :meth:`window_stats` of the context
        the origin will be stepped over, default 0 and 1): :meth:`step` normalises its
        inputs with them and ``decode(..., stats=origin_stats(origin))`` inverts them.
        """
        B = batch * (1 if self.channel == "mixed" else self.n_channels)
        p = next(self.parameters())
        origin = {"state": self.backbone.initial_state(B, device=p.device, dtype=p.dtype),
                  "hidden": torch.zeros(B, self.backbone.d_model, device=p.device, dtype=p.dtype),
                  "pending": torch.zeros(B, device=p.device, dtype=p.dtype)}
        if self.window_norm is not None:
            if stats is None:
                stats = (torch.zeros(B, self.c_in, device=p.device, dtype=p.dtype),
                         torch.ones(B, self.c_in, device=p.device, dtype=p.dtype))
            origin["loc"], origin["scale"] = stats
        return origin

    @staticmethod
    def origin_stats(origin: dict):
        """The (loc, scale) an origin carries, or None (no window normalisation)."""
        return (origin["loc"], origin["scale"]) if "loc" in origin else None

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
        Values are normalised with the origin's window statistics (if any), which
        the new origin keeps.
        """
        v, m, ex = self._fold(values_t[:, None], mask_t[:, None],
                              None if exog_t is None else exog_t[:, None])
        observed = m[:, 0].sum(-1) > 0  # (B,)
        gap = self.fold_rows(gap_t)
        dt = torch.where(observed, gap + origin["pending"], torch.full_like(gap, SKIP_DT))
        stats = self.origin_stats(origin)
        y, state = self.backbone.step(self._inputs(v, m, ex, stats)[:, 0], origin["state"], dt)
        hidden = torch.where(observed[:, None], y, origin["hidden"])
        pending = torch.where(observed, torch.zeros_like(gap), origin["pending"] + gap)
        new = {"state": state, "hidden": hidden, "pending": pending}
        if stats is not None:
            new["loc"], new["scale"] = stats
        return new
