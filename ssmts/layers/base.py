"""What every ssmts layer shares: the forward/step contract, input checks, Δ init.

Contract for a layer ``m`` (all layers subclass :class:`SSMLayer`):

- ``m(x, dt=None)``: x (batch, length, d_model) -> y (batch, length, d_model);
  ``dt`` (batch, length) is the positive time gap before each sample
  (``None`` = regular sampling, gap 1).
- ``m.initial_state(batch)`` -> state (a tensor or a tuple of tensors).
- ``m.step(x_t, state, dt_t=None)`` -> (y_t, state); x_t (batch, d_model),
  dt_t (batch,) or None. O(1) in the history length.
- ``forward`` equals a loop of ``step`` for causal layers.

Public methods validate via ``_check_*``; the private ``_forward``/``_step`` trust.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SSMLayer", "init_log_dt", "check_input", "check_dt", "check_state_batch"]


def init_log_dt(n: int | tuple[int, ...], dt_min: float = 1e-3, dt_max: float = 1e-1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """log Δ drawn log-uniformly in [dt_min, dt_max] (S4/S5/Mamba initialisation).

    Returns
    -------
    log_dt : float tensor, shape ``n``
    """
    if not (0 < dt_min <= dt_max):
        raise ValueError(f"dt_min/dt_max: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    shape = (n,) if isinstance(n, int) else tuple(n)
    r = torch.rand(shape, generator=generator, dtype=torch.float64)
    return (r * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).to(torch.get_default_dtype())


def check_input(x: torch.Tensor, d_model: int, name: str = "x", ndim: int = 3) -> None:
    """x must be a float tensor of shape (batch, length, d_model) (ndim=3) or (batch, d_model)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    want = "(batch, length, d_model)" if ndim == 3 else "(batch, d_model)"
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected shape {want} with d_model={d_model}, got {tuple(x.shape)}")
    if x.shape[-1] != d_model:
        raise ValueError(f"{name}: last dimension must be d_model={d_model}, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def check_dt(dt: torch.Tensor | None, shape: tuple[int, ...], name: str = "dt") -> torch.Tensor | None:
    """dt must be None or a finite, strictly positive tensor of the given shape."""
    if dt is None:
        return None
    if not isinstance(dt, torch.Tensor):
        dt = torch.as_tensor(dt, dtype=torch.get_default_dtype())
    if tuple(dt.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (the time gap before each sample), "
                         f"got {tuple(dt.shape)}")
    bad = ~torch.isfinite(dt) | (dt <= 0)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name}: time gaps must be finite and > 0; {int(bad.sum())} entr(ies) are not "
                         f"(first at index {idx}, value {dt[idx].item()}); drop repeated timestamps "
                         "or pass dt=None for regular sampling")
    return dt


def check_state_batch(state, batch: int, name: str = "state") -> None:
    """Every tensor of ``state`` must have leading dimension ``batch``."""
    if isinstance(state, (tuple, list)):
        for s in state:
            check_state_batch(s, batch, name)
        return
    for s in (state,):
        if not isinstance(s, torch.Tensor):
            raise ValueError(f"{name}: expected tensors from initial_state(), got {type(s).__name__}")
        if s.shape[0] != batch:
            raise ValueError(f"{name}: built for batch size {s.shape[0]}, but x_t has batch size {batch}; "
                             f"call initial_state({batch})")


class SSMLayer(nn.Module):
    """Base class: validation around ``_forward`` / ``_step`` implemented by subclasses."""

    d_model: int
    causal: bool = True

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None) -> torch.Tensor:
        """Run the layer over a sequence.

        Parameters
        ----------
        x : float tensor, shape (batch, length, d_model)
        dt : float tensor, shape (batch, length), optional
            Positive time gap before each sample; ``None`` = regular sampling.

        Returns
        -------
        y : tensor, shape (batch, length, d_model)
        """
        check_input(x, self.d_model)
        dt = check_dt(dt, x.shape[:2])
        return self._forward(x, dt)

    def step(self, x_t: torch.Tensor, state, dt_t: torch.Tensor | None = None):
        """Advance one sample: (batch, d_model) -> ((batch, d_model), new state)."""
        if not self.causal:
            raise ValueError("step: a bidirectional layer looks at future samples and has no "
                             "recurrent mode; build it with bidirectional=False to stream")
        check_input(x_t, self.d_model, name="x_t", ndim=2)
        check_state_batch(state, x_t.shape[0])
        dt_t = check_dt(dt_t, x_t.shape[:1], name="dt_t")
        return self._step(x_t, state, dt_t)

    def initial_state(self, batch: int, device=None, dtype=None):
        """The zero state for ``batch`` independent sequences."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}")
        return self._initial_state(batch, device, dtype)

    # subclasses implement these; inputs already validated
    def _forward(self, x, dt):  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, x_t, state, dt_t):  # pragma: no cover - abstract
        raise NotImplementedError

    def _initial_state(self, batch, device, dtype):  # pragma: no cover - abstract
        raise NotImplementedError
