"""Lean launches of ``@triton.jit`` kernels: Triton's per-call binding, skipped once seen.

``fn[grid](*args)`` re-binds and re-specialises every argument, builds a string key and
reads the options on every call: tens of microseconds of host time, more than the whole
kernel at small shapes (B=1 selective scans, one streaming step). :func:`launch` keys a
cache on what Triton specialises on (per tensor: dtype and 16-byte alignment; per
integer: divisibility by 16, equality to 1 and 32-bit range (sizes and counts, never
negative); constexpr values, the warp count and the device), launches through Triton's
own path on a miss, keeps the compiled kernel it returns, and on a hit calls that
kernel's launcher directly, with the tensors' device pointers as ints (the launcher would
otherwise call ``data_ptr()`` and ask the driver about each pointer: ~1 us a tensor).

The fast path is used only on CUDA, outside the interpreter, without Triton launch hooks,
and unless ``SSMTS_FAST_LAUNCH=0``; if the launcher ever rejects the call (a Triton
version with another calling convention) it is switched off for the process with one
warning and every launch takes Triton's path again.
"""

from __future__ import annotations

import os
import warnings

import torch

_ENABLED = [os.environ.get("SSMTS_FAST_LAUNCH", "1") != "0"
            and os.environ.get("TRITON_INTERPRET", "0") != "1"]
_CACHE: dict = {}
_I32 = 1 << 31  # non-negative ints below this are i32 to Triton


def _hook_active(hook) -> bool:
    """A launch hook that would run: a callable, or a non-empty ``HookChain`` (Triton 3.5+)."""
    if hook is None:
        return False
    calls = getattr(hook, "calls", None)
    return bool(calls) if calls is not None else True


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for host code (``triton.cdiv`` is a constexpr function in recent
    Triton: microseconds a call from the host)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1), like ``triton.next_power_of_2``, host-side."""
    return 1 << (n - 1).bit_length()


def _runtime_knobs():
    try:
        from triton import knobs

        return knobs.runtime
    except ImportError:  # older Triton: no knobs
        return None


_RT = [None, False]  # triton.knobs.runtime, looked up


def _hooks_set() -> bool:
    """True if Triton launch hooks are installed (profilers): those need Triton's path."""
    if not _RT[1]:
        _RT[:] = [_runtime_knobs(), True]
    rt = _RT[0]
    if rt is None:  # no knobs: hooks may exist where we cannot see them
        return True
    return _hook_active(getattr(rt, "launch_enter_hook", None)) or \
        _hook_active(getattr(rt, "launch_exit_hook", None))


def _raw_stream(dev: int) -> int:
    get = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # what Triton's driver uses
    return get(dev) if get is not None else torch.cuda.current_stream(dev).cuda_stream


def _key(fn, args: tuple, n_tensors: int, n_ints: int, num_warps: int, device: int):
    """(key, device pointers): keys are equal for two calls exactly when Triton would pick
    the same compiled kernel; the pointers are what the launcher is then given."""
    tensors, ints = args[:n_tensors], args[n_tensors:n_tensors + n_ints]
    ptrs = [t.data_ptr() for t in tensors]
    unaligned = 0
    for i, p in enumerate(ptrs):
        if p & 15:
            unaligned |= 1 << i
    key = (fn, device, num_warps, unaligned, tuple([t.dtype for t in tensors]),
           _int_flags(ints), args[n_tensors + n_ints:])
    return key, ptrs


def _int_flags(ints) -> tuple:
    return tuple([(v & 15 == 0, v == 1, v < _I32) for v in ints])


def cached(fn, num_warps: int, dtypes: tuple, ints: tuple, consts: tuple):
    """The compiled kernel a launch with these arguments would use, all pointers 16-byte
    aligned, if one has been compiled and kept; else None."""
    return _CACHE.get((fn, torch.cuda.current_device(), num_warps, 0, dtypes, _int_flags(ints),
                       consts))


def launch(fn, grid: tuple, args: tuple, n_tensors: int, n_ints: int, num_warps: int) -> None:
    """``fn[grid](*args, num_warps=num_warps)`` through a cached compiled kernel.

    Parameters
    ----------
    fn : triton.runtime.JITFunction
    grid : tuple of int
        One to three program counts.
    args : tuple
        Every parameter of ``fn`` in signature order: ``n_tensors`` tensors first, then
        ``n_ints`` integers, then the constexpr values.
    n_tensors, n_ints : int
    num_warps : int
    """
    if not (_ENABLED[0] and args[0].is_cuda) or _hooks_set():
        fn[grid](*args, num_warps=num_warps)
        return
    dev = torch.cuda.current_device()
    key, ptrs = _key(fn, args, n_tensors, n_ints, num_warps, dev)
    kernel = _CACHE.get(key)
    if kernel is None:  # Triton's own path: specialises, compiles if needed, launches
        _CACHE[key] = fn[grid](*args, num_warps=num_warps)
        return
    g = tuple(grid) + (1, 1)
    try:
        # pointers as ints: the launcher takes them as they are, where for a tensor it
        # would call data_ptr() and query the driver about the pointer (per tensor)
        kernel.run(g[0], g[1], g[2], _raw_stream(dev), kernel.function,
                   kernel.packed_metadata, None, None, None, *ptrs, *args[n_tensors:])
    except (TypeError, AttributeError, ValueError) as err:  # launcher convention changed
        _ENABLED[0] = False
        warnings.warn(f"ssmts.kernels: direct Triton launch unavailable ({err}); using "
                      "Triton's launch path (slower at small shapes)", RuntimeWarning,
                      stacklevel=2)
        fn[grid](*args, num_warps=num_warps)
