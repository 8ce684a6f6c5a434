"""The C++ host path of the v3 selective scan (``_s6_host.cpp``): build, plans, dispatch.

At B=1 a training step of the S6 kernels is ~0.25 ms of device work under ~0.5 ms of
Python host work, most of it in the backward, which autograd runs on its device thread
(benchmarks/NOTES_s6.md, "Host path"). The C++ extension is an autograd Function whose
forward and backward allocate, launch the Triton-compiled kernels through
``cuLaunchKernel`` and finish the gradients without entering Python.

Triton still compiles the kernels: the first call of a shape runs the Python path, which
compiles them and keeps them in ``_launch``'s cache; later calls find both there and get
a launch plan (function handle, launch sizes, which integer parameters Triton kept and
their widths). The extension is compiled once per machine on first use
(``torch.utils.cpp_extension``, needs a C++ compiler and the CUDA headers, ~1 minute);
if that fails the Python path is used, with one warning. ``SSMTS_HOST_EXT=0`` turns the
C++ path off.

Used for: CUDA, gradients required, default (non-deterministic) mode, no per-step gaps,
no final state returned, no Triton launch hooks (profilers); everything else takes the
Python path. The first C++ call of each call signature is compared with the Python
launch's output, bit for bit; a difference switches the C++ path off (a Triton version
that lays out its kernels' parameters otherwise). Checked with Triton 3.6.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from . import _launch

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_s6_host.cpp")
_EXT: list = [None, False]  # module, build attempted
_MISSES: dict = {}  # call signature -> calls that found no plan (100: never look again)
_PLANS: dict = {}  # call signature -> its registered (forward plan, backward plan, shape)
READY: list = [None]  # the extension, once it holds a plan (the public function's fast path)


def enabled() -> bool:
    """The C++ path may be used (not switched off by env, not in the interpreter)."""
    return os.environ.get("SSMTS_HOST_EXT", "1") != "0" and _launch._ENABLED[0]


def disable(reason: str) -> None:
    """Switch the C++ path off for this process, with one warning."""
    _EXT[:] = [None, True]
    if READY[0] is not None:
        READY[0].clear_plans()
    READY[0] = None
    _PLANS.clear()
    warnings.warn(f"ssmts.kernels: C++ host path switched off: {reason}; using the Python "
                  "path", RuntimeWarning, stacklevel=3)


def extension():
    """The compiled module, building it on first use; None if it cannot be built."""
    if not _EXT[1]:
        _EXT[1] = True
        try:
            from torch.utils.cpp_extension import load

            t0 = time.perf_counter()
            _EXT[0] = load(name="ssmts_s6_host", sources=[_SRC], extra_ldflags=["-ldl"],
                           with_cuda=True, verbose=False)
            if time.perf_counter() - t0 > 5:  # built now, not loaded from the build cache
                print(f"ssmts: compiled the C++ host path of the CUDA kernels in "
                      f"{time.perf_counter() - t0:.0f} s (once per machine; SSMTS_HOST_EXT=0 "
                      "skips it)", file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 -- no compiler, no CUDA headers, ...: Python path
            warnings.warn(f"ssmts.kernels: the C++ host path could not be built ({err}); "
                          "using the Python path (slower at small shapes)", RuntimeWarning,
                          stacklevel=3)
    return _EXT[0]


def plan(kernel, grid: tuple, ints: tuple, n_tensors: int) -> list[int] | None:
    """Launch plan of a compiled Triton kernel for ``_s6_host.cpp``, or None if the kernel
    needs what the C++ launcher does not do (scratch memory, clusters, cooperative or PDL
    launches, parameters other than pointers and 32/64-bit ints).

    Parameters
    ----------
    kernel : triton CompiledKernel
    grid : (int, int)
    ints : tuple of int
        The integer arguments in signature order (right after the ``n_tensors`` tensors).
    n_tensors : int
    """
    md = kernel.metadata
    if (getattr(md, "num_ctas", 1) != 1 or getattr(md, "launch_cooperative_grid", False)
            or getattr(md, "launch_pdl", False) or getattr(md, "global_scratch_size", 0)
            or getattr(md, "profile_scratch_size", 0)):
        return None
    types = list(kernel.src.signature.values())
    if any(not str(t).startswith("*") for t in types[:n_tensors]):
        return None
    codes = []
    for t, v in zip(types[n_tensors:n_tensors + len(ints)], ints):
        if t == "constexpr":  # Triton made it a constant (e.g. == 1): not a parameter
            continue
        if t not in ("i32", "i64"):
            return None
        codes += [4 if t == "i32" else 8, int(v)]
    kernel.run  # noqa: B018 -- loads the module: function handle and shared-memory limit set
    return [int(kernel.function), int(md.num_warps), int(md.shared), int(grid[0]),
            int(grid[1]), len(codes) // 2] + codes
