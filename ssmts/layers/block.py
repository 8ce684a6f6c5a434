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

__all__ = ["ResidualBlock", "SSMBackbone", "make_layer", "LAYERS"]


def _layer_classes() -> dict[str, type]:
    from .mamba import Mamba
    from .s4 import S4
    from .s5 import S5

    return {"s4": S4, "s5": S5, "mamba": Mamba}


LAYERS = ("s4", "s5", "mamba")


def make_layer(kind: str, d_model: int, d_state: int, bidirectional: bool = False,
               **kwargs: Any) -> SSMLayer:
    """Build one sequence layer by name: "s4", "s4d" (S4 diagonal), "s5" or "mamba"."""
    classes = _layer_classes()
    if kind == "s4d":
        kind, kwargs = "s4", {"mode": "diag", **kwargs}
    if kind not in classes:
        raise ValueError(f"layer: expected one of 's4', 's4d', 's5', 'mamba', got {kind!r}")
    if kind == "mamba":
        if bidirectional:
            raise ValueError("bidirectional: Mamba is causal only; use layer='s4' or 's5' for "
                             "bidirectional models")
        return classes[kind](d_model, d_state=d_state, **kwargs)
    return classes[kind](d_model, d_state=d_state, bidirectional=bidirectional, **kwargs)


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
        Sequence layer of every block.
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
        Extra keyword arguments for each layer (e.g. ``{"mode": "dplr"}`` for S4).

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
