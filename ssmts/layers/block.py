"""Residual blocks and the stacked backbone every model is built on.

    block(x) = x + dropout(layer(norm(x)))                   (pre-norm)
             [+ dropout(ffn(norm2(.)))                        optional feed-forward]
    backbone(x) = norm_f(block_n(... block_1(x)))

Both keep the layer contract of :mod:`ssmts.layers.base`: ``forward(x, dt)``,
``initial_state(batch)`` and ``step(x_t, state, dt_t)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import SSMLayer

__all__ = ["ResidualBlock", "SSMBackbone", "make_layer", "LAYERS", "BACKBONES", "layer_options",
           "check_layer_options"]


def _layer_classes() -> dict[str, type]:
    from .mamba import Mamba
    from .s4 import S4
    from .s5 import S5

    return {"s4": S4, "s5": S5, "mamba": Mamba}


LAYERS = ("s4", "s5", "mamba")


# names the estimators accept; "s4" is the DPLR S4 (HiPPO-LegS, Cauchy kernel), "s4d" the
# diagonal S4D: the same class with mode fixed
BACKBONES = ("s5", "s4", "s4d", "mamba")
_FIXED = {"s4": {"mode": "dplr"}, "s4d": {"mode": "diag"}}
_SET_BY_BACKBONE = ("self", "d_model", "d_state", "bidirectional")


def _resolve(kind: str) -> tuple[type, dict]:
    classes = _layer_classes()
    if kind not in BACKBONES:
        raise ValueError(f"layer: expected one of {list(BACKBONES)}, got {kind!r}")
    return classes["s4" if kind == "s4d" else kind], dict(_FIXED.get(kind, {}))


def layer_options(kind: str) -> tuple[str, ...]:
    """Keyword options of layer ``kind`` that ``layer_kwargs`` may set."""
    import inspect

    cls, fixed = _resolve(kind)
    names = inspect.signature(cls.__init__).parameters
    return tuple(n for n in names if n not in _SET_BY_BACKBONE and
                 not (kind == "s4d" and n == "mode"))


def check_layer_options(kind: str, d_model: int, d_state: int,
                        layer_kwargs: dict | None) -> None:
    """Raise ``ValueError`` naming the option when ``make_layer`` would refuse these settings.

    Checks that ``layer_kwargs`` is a dict of known options of ``kind`` and that one
    layer builds with them; the messages speak of ``d_state`` / ``layer_kwargs``.
    """
    if layer_kwargs is not None and not isinstance(layer_kwargs, dict):
        raise ValueError(f"layer_kwargs: expected a dict of {kind!r} layer options or None, "
                         f"got {type(layer_kwargs).__name__}")
    kw = dict(layer_kwargs or {})
    allowed = layer_options(kind)
    unknown = sorted(str(k) for k in kw if k not in allowed)
    if unknown:
        raise ValueError(f"layer_kwargs: unknown option(s) {unknown} for backbone {kind!r}; "
                         f"it accepts {list(allowed)}")
    if kind in ("s4", "s4d", "s5"):
        blocks = kw.get("blocks", 1) if kind == "s5" else 1
        per = d_state // blocks if isinstance(blocks, int) and blocks >= 1 else None
        if per is None or d_state % blocks or per % 2:
            what = (f"d_state / layer_kwargs['blocks'] = {d_state}/{blocks}" if blocks != 1
                    else f"d_state = {d_state}")
            step = 2 * blocks if isinstance(blocks, int) and blocks >= 1 else 2
            lo = max(step, d_state // step * step)
            raise ValueError(f"d_state: backbone {kind!r} keeps its states in complex-"
                             f"conjugate pairs, so {what} must be an even int; got {d_state} "
                             f"(try d_state={lo} or {lo + step})")
    try:
        with torch.random.fork_rng(devices=[]):  # a trial build; the caller's RNG untouched
            make_layer(kind, d_model, d_state, **kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"layer_kwargs: {kind!r} layer refused {kw} with d_model={d_model}, "
                         f"d_state={d_state}: {exc}") from None


def make_layer(kind: str, d_model: int, d_state: int, bidirectional: bool = False,
               **kwargs: Any) -> SSMLayer:
    """Build one sequence layer by name: "s4" (DPLR S4), "s4d" (S4 diagonal), "s5" or "mamba".

    ``kwargs`` are the layer's own options (see :func:`layer_options`); "s4" and "s4d"
    fix S4's ``mode`` to "dplr" and "diag" unless ``mode`` is passed for "s4".
    """
    cls, fixed = _resolve(kind)
    if kind == "s4d" and kwargs.get("mode", "diag") != "diag":
        raise ValueError(f"mode: 's4d' is the diagonal S4 (mode='diag'), got "
                         f"{kwargs['mode']!r}; use layer='s4' for the DPLR S4")
    kwargs = {**fixed, **kwargs}
    if kind == "mamba":
        if bidirectional:
            raise ValueError("bidirectional: Mamba is causal only; use layer='s4' or 's5' for "
                             "bidirectional models")
        return cls(d_model, d_state=d_state, **kwargs)
    return cls(d_model, d_state=d_state, bidirectional=bidirectional, **kwargs)


class ResidualBlock(SSMLayer):
    """Pre-norm residual wrapper around a sequence layer, with an optional feed-forward.

    Parameters
    ----------
    layer : SSMLayer
        The sequence layer (its ``d_model`` is the block's).
    dropout : float
        Dropout on each residual branch.
    ffn_mult : int
        Hidden width multiple of the feed-forward branch; 0 = no feed-forward.
    """

    def __init__(self, layer: SSMLayer, dropout: float = 0.0, ffn_mult: int = 0):
        super().__init__()
        self.layer = layer
        self.d_model = layer.d_model
        self.causal = getattr(layer, "causal", True)
        self.norm = nn.LayerNorm(self.d_model)
        self.drop = nn.Dropout(dropout)
        self.ffn = None
        if ffn_mult:
            self.norm2 = nn.LayerNorm(self.d_model)
            self.ffn = nn.Sequential(nn.Linear(self.d_model, ffn_mult * self.d_model), nn.GELU(),
                                     nn.Linear(ffn_mult * self.d_model, self.d_model))

    def _ffn(self, y):
        return y if self.ffn is None else y + self.drop(self.ffn(self.norm2(y)))

    def _forward(self, x, dt):
        return self._ffn(x + self.drop(self.layer._forward(self.norm(x), dt)))

    def _initial_state(self, batch, device, dtype):
        return self.layer._initial_state(batch, device, dtype)

    def _step(self, x_t, state, dt_t):
        y, state = self.layer._step(self.norm(x_t), state, dt_t)
        return self._ffn(x_t + self.drop(y)), state


class SSMBackbone(SSMLayer):
    """A stack of residual SSM blocks with a final LayerNorm.

    Parameters
    ----------
    layer : {"s5", "s4", "s4d", "mamba"}
        Sequence layer of every block ("s4": DPLR S4, "s4d": diagonal S4D).
    d_model : int
        Width of the residual stream.
    n_layers : int
        Number of blocks.
    d_state : int
        State size per layer (S4: per channel; S5: total P; Mamba: N per inner channel).
    dropout : float
        Residual dropout.
    ffn_mult : int
        Feed-forward width multiple in each block (0 = none).
    bidirectional : bool
        Non-causal layers (S4/S5 only); such a backbone has no ``step``.
    layer_kwargs : dict, optional
        Extra keyword arguments for each layer (its own options, e.g. ``{"rank": 2}`` for
        S4 or ``{"blocks": 4}`` for S5; see :func:`layer_options`).

    Notes
    -----
    The state of the backbone is a list with one layer state per block.
    """

    def __init__(self, layer: str = "s5", d_model: int = 64, n_layers: int = 2, d_state: int = 64,
                 dropout: float = 0.0, ffn_mult: int = 0, bidirectional: bool = False,
                 layer_kwargs: dict | None = None):
        super().__init__()
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers: expected a positive int, got {n_layers!r}")
        self.d_model = d_model
        self.causal = not bidirectional
        self.blocks = nn.ModuleList(
            ResidualBlock(make_layer(layer, d_model, d_state, bidirectional, **(layer_kwargs or {})),
                          dropout=dropout, ffn_mult=ffn_mult)
            for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model)

    def _forward(self, x, dt):
        for blk in self.blocks:
            x = blk._forward(x, dt)  # (b, L, d_model)
        return self.norm_f(x)

    def _initial_state(self, batch, device, dtype):
        return [blk._initial_state(batch, device, dtype) for blk in self.blocks]

    def _step(self, x_t, state, dt_t):
        new = []
        for blk, s in zip(self.blocks, state):
            x_t, s = blk._step(x_t, s, dt_t)
            new.append(s)
        return self.norm_f(x_t), new

    def step(self, x_t: torch.Tensor, state, dt_t: torch.Tensor | None = None):
        """Advance one sample through every block; ``state`` from :meth:`initial_state`."""
        if self.causal and (not isinstance(state, (list, tuple)) or len(state) != len(self.blocks)):
            raise ValueError(f"state: expected a list of {len(self.blocks)} block states from "
                             "initial_state(batch)")
        return super().step(x_t, state, dt_t)
