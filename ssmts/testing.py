"""Helpers for testing ssmts and models built on it (also used by the project's own tests)."""

from __future__ import annotations

import torch

__all__ = ["run_steps", "rel_err", "random_gaps"]


def run_steps(layer, x: torch.Tensor, dt: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``layer.step`` over a sequence: x (b, L, d) -> y (b, L, d_out), from the zero state."""
    state = layer.initial_state(x.shape[0], dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state, None if dt is None else dt[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ as a float (b is the reference)."""
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(torch.finfo(b.dtype).tiny))


def random_gaps(batch: int, length: int, low: float = 0.3, high: float = 3.0,
                dtype=torch.float64, generator: torch.Generator | None = None) -> torch.Tensor:
    """Irregular positive time gaps, shape (batch, length), log-uniform in [low, high]."""
    r = torch.rand(batch, length, generator=generator, dtype=torch.float64)
    return torch.exp(r * (torch.log(torch.tensor(high)) - torch.log(torch.tensor(low)))
                     + torch.log(torch.tensor(low))).to(dtype)
