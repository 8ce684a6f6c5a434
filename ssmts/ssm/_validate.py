"""Input validation shared by the public functions of ``ssmts.ssm``.

Public functions call these once on entry; private helpers trust their inputs.
Every error names the argument, says what is wrong and what to do.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_finite",
    "check_positive",
    "check_shape",
    "check_ndim",
    "check_stable",
]


def as_tensor(x, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert ``x`` (tensor, array, scalar) to a tensor; never copies a tensor needlessly."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - defensive
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc
    if arr.dtype == object:
        raise ValueError(f"{name}: expected numbers, got an object array; pass a numeric array")
    t = torch.as_tensor(arr)
    if dtype is not None:
        t = t.to(dtype)
    elif not (t.is_floating_point() or t.is_complex()):
        t = t.to(torch.get_default_dtype())
    return t


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or inf, naming the first bad index."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            idx = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{name}: {int(bad.sum())} non-finite value(s) (first at index {idx}); "
                "remove or mask NaN/inf before calling"
            )
    return x


def check_positive(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` unless every entry of real ``x`` is finite and > 0."""
    check_finite(x, name)
    if x.is_complex():
        raise ValueError(f"{name}: must be real and positive, got a complex tensor")
    bad = x <= 0
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(
            f"{name}: must be > 0 everywhere; {int(bad.sum())} entr(ies) are <= 0 "
            f"(first at index {idx}, value {x[idx].item():g}); time steps must be positive"
        )
    return x


def check_ndim(x: torch.Tensor, name: str, ndims: Sequence[int] | int) -> torch.Tensor:
    """Raise ``ValueError`` unless ``x.ndim`` is one of ``ndims``."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name}: expected {want} dimension(s), got shape {tuple(x.shape)}")
    return x


def check_shape(x: torch.Tensor, name: str, shape: Sequence[int | None], what: str = "") -> torch.Tensor:
    """Raise ``ValueError`` unless ``x.shape`` matches ``shape`` (``None`` = any size)."""
    ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        extra = f" {what}" if what else ""
        raise ValueError(f"{name}: expected shape {want}{extra}, got {tuple(x.shape)}")
    return x


def check_stable(eigs: torch.Tensor, name: str, discrete: bool = False) -> torch.Tensor:
    """Raise ``ValueError`` unless eigenvalues lie in the stable region.

    Continuous time: Re < 0; discrete time: |z| < 1.
    """
    if discrete:
        bad = eigs.abs() >= 1
        rule = "|eigenvalue| < 1 (discrete time)"
    else:
        bad = (eigs.real if eigs.is_complex() else eigs) >= 0
        rule = "Re(eigenvalue) < 0 (continuous time)"
    if bool(bad.any()):
        worst = eigs[bad].flatten()[0]
        raise ValueError(
            f"{name}: unstable system, {int(bad.sum())} eigenvalue(s) violate {rule}, e.g. {complex(worst)}; "
            "use a stable parameterisation or pass require_stable=False"
        )
    return eigs


def gpu_value_checks() -> bool:
    """Whether the GPU kernels check input values (env ``SSMTS_CHECK_GPU_VALUES=1``).

    Off by default: the check costs a reduction and a host sync per call, which stalls
    the launch queue (more than the whole kernel at B=1 shapes). Types and shapes are
    always checked; on the CPU, values are always checked.
    """
    return os.environ.get("SSMTS_CHECK_GPU_VALUES", "0") == "1"


def result_finite(out: torch.Tensor, gaps: torch.Tensor | None = None,
                  extra: torch.Tensor | None = None) -> bool:
    """One reduction and one host sync: True if ``out`` is all finite, ``gaps`` > 0 and
    the 0-d bool ``extra`` (another device-side condition) holds.

    The GPU kernels validate values through their result instead of reading every input
    (a NaN/inf in any input reaches the output); only when this fails are the inputs
    checked one by one, to name the culprit.
    """
    total = out.sum() if out.is_complex() else out.sum(dtype=torch.float32)
    ok = torch.isfinite(total)
    if gaps is not None:
        ok = ok & (gaps.min() > 0)
    if extra is not None:
        ok = ok & extra
    return bool(ok)
