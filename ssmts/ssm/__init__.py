"""Pure state-space math: no module state, float64-capable everywhere."""

from .selective import selective_scan_ref

__all__ = ["selective_scan_ref"]
