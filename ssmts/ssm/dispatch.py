"""The one place that chooses how a scan is computed: Triton kernel or torch.

:func:`choose_backend` decides for every fused op (selective scan here; the S5 scan
in :mod:`.s5_ref` and the streaming steps in :mod:`.step` call it too).

``backend="auto"`` picks ``"triton"`` when Triton imports and the tensors are on a
CUDA device, otherwise ``"torch"``. A CUDA tensor without a usable Triton falls back
to torch with one warning per process. ``backend="triton"`` forces the kernel; on
CPU tensors that only works under the Triton interpreter (``TRITON_INTERPRET=1``).
``backend="torch"`` forces the fastest torch path (:func:`_torch_selective_scan`).

Triton is imported lazily, so ``ssmts.ssm`` imports fine without it.
"""

from __future__ import annotations

import os
import warnings

import torch

from .selective_fast import selective_scan_fast

__all__ = ["selective_scan", "available_backends", "choose_backend", "BACKENDS"]

BACKENDS = ("auto", "triton", "torch")
_warned: set[str] = set()


def _triton_status(module: str = "selective_scan") -> tuple[bool, str]:
    """(importable, reason) for ``ssmts.kernels.<module>``."""
    try:
        import importlib

        import triton  # noqa: F401

        importlib.import_module(f"ssmts.kernels.{module}")
    except Exception as exc:  # ImportError, or a broken Triton install
        return False, f"triton not importable ({type(exc).__name__}: {exc})"
    return True, "ok"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available_backends() -> dict:
    """Describe which selective-scan backends are usable here, and why not.

    Returns
    -------
    dict
        ``{"torch": {"usable": True, "why": ...}, "triton": {"usable": bool, "why": str},
        "cuda": bool, "interpreter": bool}``. ``triton`` is usable when Triton imports
        and either a CUDA device is present or ``TRITON_INTERPRET=1`` is set.
    """
    ok, why = _triton_status()
    cuda = torch.cuda.is_available()
    interp = _interpreting()
    if ok and not (cuda or interp):
        ok, why = False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernel on CPU, slowly)"
    elif ok:
        why = "CUDA device" if cuda else "Triton interpreter (TRITON_INTERPRET=1)"
    return {"torch": {"usable": True, "why": "always available (selective_scan_fast)"},
            "triton": {"usable": ok, "why": why}, "cuda": cuda, "interpreter": interp}


def _torch_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False, gaps=None):
    """The fastest torch path: the blocked in-place recurrence of :mod:`.selective_fast`."""
    return selective_scan_fast(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              return_last_state, gaps)


def _triton_kernel_for(u: torch.Tensor):
    """Which Triton selective scan: v3 (time-parallel within chunks, adjoint from forward
    scans) everywhere since its 3.1 revision: on an H100 it is 1.2-1.4x faster than v2 in
    forward+backward at S6-A and TS-S6, 3-5x at B=1, and within 10% of v2 forward-only
    (benchmarks/NOTES_s6.md). v2 stays importable as ``ssmts.kernels.selective_scan``."""
    from ssmts.kernels.selective_scan_v3 import selective_scan as kernel

    return kernel


def choose_backend(backend: str, u: torch.Tensor, what: str = "selective_scan",
                   module: str = "selective_scan") -> str:
    """Resolve ``backend`` to "triton" or "torch" for op ``what`` on tensors like ``u``.

    Parameters
    ----------
    backend : {"auto", "triton", "torch"}
    u : tensor
        A representative input (its device decides "auto").
    what : str
        The op's name, for messages.
    module : str
        The kernel module in ``ssmts.kernels`` that must import for "triton".

    Raises
    ------
    ValueError
        Unknown ``backend``, or "triton" forced where it cannot run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and not u.is_cuda):
        return "torch"  # auto on CPU tensors: no need to import Triton at all
    ok, why = _triton_status(module)
    if backend == "triton":
        if not ok:
            raise ValueError(f"backend='triton' requested for {what} but {why}; install triton "
                             "or use backend='torch'")
        if not u.is_cuda and not _interpreting():
            raise ValueError(f"backend='triton' needs CUDA tensors for {what} (got device "
                             f"{u.device}); move them to a GPU, set TRITON_INTERPRET=1 to run "
                             "the kernel in the interpreter, or use backend='torch'")
        return "triton"
    if not ok:
        if what not in _warned:
            warnings.warn(f"{what}: CUDA tensors but {why}; falling back to the torch "
                          "path (much slower). Install triton to use the fused kernel.",
                          RuntimeWarning, stacklevel=3)
            _warned.add(what)
        return "torch"
    return "triton"


_choose = choose_backend


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, gaps=None, backend: str = "auto"):
    """Selective scan (Mamba's S6) through the chosen backend.

    Parameters
    ----------
    u, delta : tensor, shape (batch, D, L)
    A : tensor, shape (D, N)
    B, C : tensor, shape (D, N), (batch, N, L) or (batch, G, N, L)
    D, delta_bias : tensor, shape (D,), optional
    z : tensor, shape (batch, D, L), optional
    delta_softplus, return_last_state : bool
    gaps : tensor, shape (batch, L), optional
        Positive time gaps; multiply delta after softplus.
    backend : {"auto", "triton", "torch"}
        "auto": Triton on CUDA tensors when importable, else torch.

    Returns
    -------
    out : tensor, shape (batch, D, L), dtype of ``u``
    last_state : tensor, shape (batch, D, N), only if ``return_last_state``

    Raises
    ------
    ValueError
        Unknown ``backend``, or ``"triton"`` forced where it cannot run.
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, gaps)
    if not isinstance(u, torch.Tensor):
        raise ValueError(f"u: expected a torch.Tensor, got {type(u).__name__}")
    if _choose(backend, u) == "triton":
        return _triton_kernel_for(u)(*args)
    return _torch_selective_scan(*args)
