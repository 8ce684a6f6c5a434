"""Compiled CPU linear scan ``h_t = a_t * h_{t-1} + b_t``, forward and adjoint.

``linear_scan_cpu`` has the signature and results of :func:`ssmts.ssm.linear_scan_ref`
(its oracle) and of the torch-op :func:`ssmts.ssm.linear_scan_chunked`. The loop over
time is C (``_cpu_scan.c``): each lane's recurrence runs once through time with its state
in a small buffer, the lanes split between ``torch.get_num_threads()`` POSIX threads. One
pass reads a and b and writes h; the backward is one reverse pass giving db, da and dh0.
The torch-op scans launch an operation over all lanes per time step (sequential) or
~3 sqrt(L) of them, each pass touching the whole input (chunked).

The C file is compiled on first use with the system C compiler (``$CC``, else Python's
build compiler, else ``cc``/``gcc``/``clang``; ~1 s, no Python or torch headers) into
``$SSMTS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/ssmts`` or ``~/.cache/ssmts``), keyed by
the source, flags and compiler, and loaded through ``ctypes``, which releases the GIL
while the threads run. Without a compiler :func:`available` is False and
:func:`ssmts.ssm.linear_scan` uses the chunked torch scan, with one warning.
``SSMTS_CPU_SCAN=0`` turns the compiled scan off (no warning).

float32, float64, complex64 and complex128 tensors on the CPU; arithmetic in the
tensors' own precision, as in the torch scans.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading

import torch
from torch.autograd.function import once_differentiable

from ssmts.ssm.scan import _name_non_finite, _prepare, _sum_finite

__all__ = ["linear_scan_cpu", "available", "status", "SUPPORTED_DTYPES"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cpu_scan.c")
_FLAGS = ["-O3", "-std=c11", "-shared", "-fPIC", "-pthread", "-fno-tree-loop-distribute-patterns"]
_CODES = {torch.float32: 0, torch.float64: 1, torch.complex64: 2, torch.complex128: 3}
SUPPORTED_DTYPES = tuple(_CODES)
_SERIAL_WORK = 1 << 15  # lanes * steps below this run on one thread (thread start ~20 us)

_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "why": "not built yet"}

_I64x4, _I64x3 = ctypes.c_int64 * 4, ctypes.c_int64 * 3


# ----------------------------------------------------------------------------- build
def _compiler() -> str | None:
    """The C compiler to use: $CC, Python's build compiler, or cc/gcc/clang on PATH."""
    cands = [os.environ.get("CC", ""), (sysconfig.get_config_var("CC") or "").split(" ")[0],
             "cc", "gcc", "clang"]
    for c in cands:
        path = shutil.which(c) if c else None
        if path:
            return path
    return None


def _cache_dir() -> str:
    root = os.environ.get("SSMTS_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "ssmts")
    return root


def _build() -> ctypes.CDLL:
    """Compile (unless cached) and load the shared library; raise on any failure."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    with open(_SRC, "rb") as f:
        src = f.read()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(src + " ".join(_FLAGS + [cc, version]).encode()).hexdigest()[:16]
    root = _cache_dir()
    os.makedirs(root, exist_ok=True)
    so = os.path.join(root, f"cpu_scan-{key}.so")
    if not os.path.exists(so):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=root)  # compile aside, then rename:
        os.close(fd)  # another process may be building the same file
        try:
            proc = subprocess.run([cc, *_FLAGS, "-o", tmp, _SRC], capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"{os.path.basename(cc)} failed: {proc.stderr.strip()[-800:]}")
            os.replace(tmp, so)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    lib = ctypes.CDLL(so)
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    i64p = ctypes.POINTER(ctypes.c_int64)
    lib.ssmts_scan_fwd.argtypes = [c_int, c_int, i64, i64, i64, i64,
                                   p, i64p, p, i64p, p, i64p, p, i64p]
    lib.ssmts_scan_bwd.argtypes = [c_int, c_int, i64, i64, i64, i64,
                                   p, i64p, p, i64p, p, i64p, p, i64p,
                                   p, i64p, p, i64p, p, i64p]
    lib.ssmts_scan_fwd.restype = lib.ssmts_scan_bwd.restype = c_int
    return lib


def _library() -> ctypes.CDLL | None:
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            if os.environ.get("SSMTS_CPU_SCAN", "1") == "0":
                _state["why"] = "turned off by SSMTS_CPU_SCAN=0"
            else:
                try:
                    _state["lib"], _state["why"] = _build(), "ok"
                except Exception as exc:  # no compiler, compile error, unwritable cache
                    _state["why"] = f"could not build the compiled CPU scan: {exc}"
            _state["tried"] = True
    return _state["lib"]


def available() -> bool:
    """Whether the compiled scan is usable (builds it on the first call, ~1 s)."""
    return _library() is not None


def status() -> str:
    """``"ok"``, or why the compiled scan is not available."""
    _library()
    return _state["why"]


# ----------------------------------------------------------------------------- launch
def _lanes(rest: tuple, strides: list[tuple]) -> tuple[tuple, list[tuple]] | None:
    """Coalesce the non-time dims into (n0, n1, ni) with per-tensor strides, or None if
    more than three dims remain. Size-1 dims are dropped; neighbours merge where every
    tensor steps through them as through one dim."""
    dims = [(n, [s[k] for s in strides]) for k, n in enumerate(rest) if n != 1]
    merged: list = []
    for n, st in dims:
        if merged and all(po == n * so for po, so in zip(merged[-1][1], st)):
            merged[-1] = (merged[-1][0] * n, st)
        else:
            merged.append((n, st))
    if len(merged) > 3:
        return None
    merged = [(1, [0] * len(strides))] * (3 - len(merged)) + merged
    return tuple(n for n, _ in merged), [tuple(m[1][k] for m in merged)
                                         for k in range(len(strides))]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """Memory that holds the values as they read (lazy conj/neg views resolved)."""
    return t.resolve_conj().resolve_neg()


def _launch(fn, length: int, tensors: list, with_time: list) -> bool:
    """Call ``fn`` on ``tensors`` (None allowed; ``with_time[k]``: tensor k has a time dim
    first). Returns False, having done nothing, if the lanes do not fit three dims."""
    present = [(t, wt) for t, wt in zip(tensors, with_time) if t is not None]
    rest = tuple(present[0][0].shape[1:] if present[0][1] else present[0][0].shape)
    lanes = _lanes(rest, [tuple(t.stride()[1:]) if wt else tuple(t.stride())
                          for t, wt in present])
    if lanes is None:
        return False
    (n0, n1, ni), lane_strides = lanes
    args, it = [], iter(lane_strides)
    for t, wt in zip(tensors, with_time):
        if t is None:
            args += [None, None]
        else:
            ls = next(it)
            args += [t.data_ptr(), _I64x4(t.stride(0), *ls) if wt else _I64x3(*ls)]
    threads = 1 if n0 * n1 * ni * length < _SERIAL_WORK else torch.get_num_threads()
    rc = fn(_CODES[present[0][0].dtype], threads, length, n0, n1, ni, *args)
    if rc != 0:
        raise RuntimeError(f"compiled CPU scan failed (code {rc}: out of memory for thread state)")
    return True


def _call(fn, length: int, ins: list, outs: list, with_time: list) -> None:
    """``_launch`` on inputs then outputs; where their lanes do not fit three dims, on
    contiguous copies, the results copied back into ``outs``."""
    if _launch(fn, length, ins + outs, with_time):
        return
    tmp = [None if x is None else torch.empty(x.shape, dtype=x.dtype) for x in outs]
    _launch(fn, length, [None if x is None else x.contiguous() for x in ins] + tmp, with_time)
    for dst, src in zip(outs, tmp):
        if dst is not None:
            dst.copy_(src)


class _CpuScanFn(torch.autograd.Function):
    """Time-first inputs: a (L, *ra) broadcastable to b (L, *rest), h0 (*rest) or None.
    Returns the states and a 0-d bool, False if a non-finite value reached the last state."""

    @staticmethod
    def forward(ctx, a, b, h0):
        lib = _library()
        a, b = _plain(a), _plain(b)
        h0 = None if h0 is None else _plain(h0)
        out = torch.empty_like(b)  # b's memory layout, so moving time back is free
        _call(lib.ssmts_scan_fwd, b.shape[0], [a.expand(b.shape), b, h0], [out],
              [True, True, False, True])
        ok = _sum_finite(out[-1])
        ctx.save_for_backward(a, h0, out)
        flag = torch.tensor(ok)
        ctx.mark_non_differentiable(flag)
        return out, flag

    @staticmethod
    @once_differentiable
    def backward(ctx, dh, _):
        a, h0, h = ctx.saved_tensors
        need_a, need_b, need_h0 = ctx.needs_input_grad[:3]
        db = torch.empty_like(h)  # the adjoint state g, which is db
        da = torch.empty_like(h) if need_a else None
        dh0 = torch.empty_like(h0) if need_h0 and h0 is not None else None
        _call(_library().ssmts_scan_bwd, h.shape[0], [a.expand(h.shape), _plain(dh), h, h0],
              [db, da, dh0], [True, True, True, False, True, True, False])
        if da is not None:
            da = da.sum_to_size(a.shape)  # sum over dims a was broadcast along
        return da, (db if need_b else None), dh0


def linear_scan_cpu(a, b, h0=None, dim: int = 1) -> torch.Tensor:
    """Linear recurrence ``h_t = a_t * h_{t-1} + b_t`` by the compiled CPU loop.

    Parameters
    ----------
    a : real or complex tensor, broadcastable to ``b`` (e.g. shape (batch, L, *state),
        (1, L, *state) or (L, *state))
        Decay / transition coefficients (typically ``|a| < 1``).
    b : real or complex tensor, shape (batch, L, *state) with time on ``dim``
        Inputs of the recurrence.
    h0 : real or complex tensor, shape of ``b`` without the ``dim`` axis, optional
        Initial state ``h_{-1}``; zero if omitted.
    dim : int
        The time axis of ``b`` (default 1).

    Returns
    -------
    h : tensor, shape of ``b``, dtype promoted from ``a``, ``b``, ``h0``
        All states. Differentiable w.r.t. ``a``, ``b`` and ``h0`` (once; no double backward).

    Raises
    ------
    ValueError
        Bad shapes or dim, NaN/inf in the inputs, tensors not on the CPU, or a dtype
        other than float32/64 or complex64/128 after promotion.
    RuntimeError
        If the compiled scan is not available here (see :func:`status`).
    """
    a_in, b_in = a, b
    a, b, h0, dim = _prepare(a, b, h0, dim, check_values=False)
    if b.device.type != "cpu":
        raise ValueError(f"b: on {b.device}; the compiled scan runs on CPU tensors "
                         "(use ssmts.ssm.linear_scan, which picks the method by device)")
    if b.dtype not in _CODES:
        raise ValueError(f"b: dtype {b.dtype} after promotion; the compiled scan takes "
                         "float32, float64, complex64 or complex128 (convert first)")
    if not available():
        raise RuntimeError(f"linear_scan_cpu: {status()}; use ssmts.ssm.linear_scan_chunked")
    h, ok = _CpuScanFn.apply(a, b, h0)
    if not bool(ok):  # a NaN/inf went in, or the states overflowed: name the culprit
        _name_non_finite(a_in, b_in)
    return h.movedim(0, dim)
