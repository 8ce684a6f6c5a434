"""The C++ host path of the v3 selective scan (ssmts.kernels._host, _s6_host.cpp).

Without a GPU: launch plans from fake compiled kernels, and the check that the plans are
looked up under exactly the cache keys the Python path's launches create (a recorder
stands in for the launch, CPU tensors for CUDA ones). With a GPU: the C++ path against
the Python path, forward and every gradient.
"""

from __future__ import annotations

import types

import pytest
import torch
from ssmts.kernels import _host, _launch
from ssmts.kernels import selective_scan_v3 as v3


def _kernel(sig, shared=512, warps=4, **md):
    meta = {"num_ctas": 1, "launch_cooperative_grid": False, "launch_pdl": False,
            "global_scratch_size": 0, "profile_scratch_size": 0, "num_warps": warps,
            "shared": shared}
    meta.update(md)

    class _Compiled:
        src = types.SimpleNamespace(signature=dict(enumerate(sig)))
        metadata = types.SimpleNamespace(**meta)
        function = 987654321
        run = None

    return _Compiled()


def test_plan_keeps_the_ints_triton_kept_with_their_widths():
    k = _kernel(["*bf16", "*fp32", "i32", "constexpr", "i64", "i32", "constexpr"], shared=96,
                warps=2)
    plan = _host.plan(k, (3, 5), (7, 1, 1 << 33, 64), 2)
    assert plan == [987654321, 2, 96, 3, 5, 3, 4, 7, 8, 1 << 33, 4, 64]


@pytest.mark.parametrize("sig, md", [
    (["*fp32", "fp32"], {}),  # a float parameter
    (["constexpr", "i32"], {}),  # a pointer Triton made a constant (None)
    (["*fp32", "i32"], {"global_scratch_size": 64}),
    (["*fp32", "i32"], {"num_ctas": 2}),
    (["*fp32", "i32"], {"launch_pdl": True}),
])
def test_plan_refuses_what_the_cpp_launcher_does_not_do(sig, md):
    assert _host.plan(_kernel(sig, **md), (1, 1), (5,), 1) is None


def _inputs(batch, dim, length, nstate, groups, dtype, with_optional=True):
    g = torch.Generator().manual_seed(5)

    def r(*s, dt=dtype):
        return torch.randn(*s, generator=g).to(dt)

    bc = (batch, nstate, length) if groups == 0 else (batch, groups, nstate, length)
    opt = ({"Dsk": r(dim, dt=torch.float32), "z": r(batch, dim, length),
            "bias": r(dim, dt=torch.float32)} if with_optional
           else {"Dsk": None, "z": None, "bias": None})
    return {"u": r(batch, dim, length), "delta": r(batch, dim, length),
            "A": -torch.rand(dim, nstate, generator=g), "B": r(*bc), "C": r(*bc), **opt}


@pytest.mark.parametrize("shape, dtype, optional", [
    ((1, 64, 100, 16, 0), torch.bfloat16, True),
    ((2, 32, 40, 8, 2), torch.float32, False),
    ((3, 16, 33, 5, 0), torch.float16, True),  # N not a multiple of 4: padded buffers
])
def test_plans_are_looked_up_under_the_keys_the_python_launches_use(monkeypatch, shape, dtype,
                                                                    optional):
    t = _inputs(*shape, dtype, optional)
    launched = []

    def record(fn, grid, args, n_tensors, n_ints, num_warps):
        launched.append((fn, grid, n_ints, _launch._key(fn, args, n_tensors, n_ints, num_warps,
                                                        0)[0], args[n_tensors:n_tensors + n_ints]))

    monkeypatch.setattr(v3, "launch", record)
    fwd_cfg, bwd_cfg, save = v3._configs(shape[0], shape[1], shape[1] // max(1, shape[4]),
                                         shape[2], t["u"].element_size(), shape[3])
    b4, c4 = v3._as_bc4(t["B"]), v3._as_bc4(t["C"])
    out, carry = v3._s6_fwd(t["u"], t["delta"], t["A"], b4, c4, t["Dsk"], t["z"], t["bias"],
                            None, True, fwd_cfg, save)
    v3._s6_bwd(torch.randn_like(out), None, t["u"], t["delta"], t["A"], b4, c4, t["Dsk"], t["z"],
               t["bias"], None, carry, True, False, False, bwd_cfg, save)
    assert [entry[0] for entry in launched] == [v3._s6v3_fwd_kernel, v3._s6v3_bwd_kernel]

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_launch, "_CACHE", {})
    assert v3._host_plans(*t.values(), True) is None  # nothing compiled yet
    for fn, grid, n_ints, key, ints in launched:  # what the Python path's launches keep
        n_t = 11 if fn is v3._s6v3_fwd_kernel else 21
        _launch._CACHE[key] = _kernel(["*fp32"] * n_t + ["i32"] * n_ints)
    fwd_plan, bwd_plan, sizes = v3._host_plans(*t.values(), True)
    for plan, (fn, grid, n_ints, key, ints) in zip((fwd_plan, bwd_plan), launched):
        assert plan[3:5] == list(grid)
        assert plan[5] == n_ints and plan[7::2] == list(ints)
    batch, dim, length, nstate, groups = shape
    copies = v3._n_copies(batch, dim, length, max(1, groups), nstate, t["u"].element_size(),
                          dim // bwd_cfg[0], False)  # as _s6_bwd counts them
    assert sizes == [batch, dim, length, nstate, max(1, groups), carry.shape[2] - 1, copies]


class _FakeExt:
    def __init__(self, shift):
        self.shift, self.registered, self.cleared = shift, [], 0

    def selective_scan(self, u, *args):
        return u * 2 + self.shift

    def register_plan(self, *args):
        self.registered.append(args)

    def clear_plans(self):
        self.cleared += 1


@pytest.mark.parametrize("shift, registers", [(0.0, True), (1e-6, False)])
def test_first_cpp_call_of_a_signature_must_equal_the_python_launch(monkeypatch, shift,
                                                                    registers):
    t = _inputs(1, 8, 12, 4, 0, torch.float32)
    ext = _FakeExt(shift)
    monkeypatch.setattr(_host, "READY", [None])
    monkeypatch.setattr(_host, "_EXT", [ext, True])
    monkeypatch.setattr(_host, "_MISSES", {})
    monkeypatch.setattr(_host, "_PLANS", {})
    monkeypatch.setattr(v3, "_launch_hooks_set", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(v3, "_host_plans", lambda *a: ([1], [2], [3]))
    monkeypatch.setattr(v3, "_forward", lambda u, *a: (u * 2, None, None, None, None))
    if registers:
        out = v3._host_apply(*t.values(), True)
        assert torch.equal(out, t["u"] * 2) and len(ext.registered) == 1
        assert _host.READY[0] is ext
        monkeypatch.setattr(v3, "_forward", None)  # a registered signature is not re-checked
        assert torch.equal(v3._host_apply(*t.values(), True), t["u"] * 2)
        assert len(ext.registered) == 1
    else:
        with pytest.warns(RuntimeWarning, match="C[+][+] host path switched off"):
            assert v3._host_apply(*t.values(), True) is None
        assert not ext.registered and _host.READY[0] is None and _host._EXT == [None, True]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors need the interpreter, which "
                    "this module only turns on where there is no GPU")
def test_python_path_for_cpu_tensors():
    # CPU tensors never take the C++ path, also when a CUDA run has registered plans (on a GPU
    # machine earlier tests may have; on a CPU-only one READY stays None)
    t = _inputs(1, 8, 12, 4, 0, torch.float32)
    t["u"].requires_grad_(True)
    out = v3.selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["Dsk"], t["z"],
                            t["bias"], delta_softplus=True)
    assert type(out.grad_fn).__name__ != "CppFunction"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("shape, dtype, optional, copies", [
    ((1, 256, 300, 16, 0), torch.bfloat16, True, None),
    ((2, 64, 130, 16, 2), torch.float32, False, None),
    ((1, 4, 37, 4, 0), torch.float16, True, None),  # D*L*2 not a 16-byte multiple: carve pads
    ((1, 128, 512, 4, 0), torch.bfloat16, True, 4),  # dB/dC rows in copies (v3._n_copies:
    ((1, 64, 256, 4, 2), torch.float32, False, 2),  # forced; fp32 rows, no cast, G=2)
])
def test_cpp_path_equals_python_path_on_the_gpu(monkeypatch, shape, dtype, optional, copies):
    if copies:  # the rule makes copies for long sequences only; both paths read it
        monkeypatch.setattr(v3, "_n_copies", lambda *a: 1 if a[-1] else min(copies, a[-2]))
    t = {k: (None if v is None else v.cuda().requires_grad_(True))
         for k, v in _inputs(*shape, dtype, optional).items()}
    gout = torch.randn(shape[:3], device="cuda").to(dtype)

    def step():
        for v in t.values():
            if v is not None:
                v.grad = None
        out = v3.selective_scan(t["u"], t["delta"], t["A"], t["B"], t["C"], t["Dsk"], t["z"],
                                t["bias"], delta_softplus=True)
        out.backward(gout)
        return out, [None if v is None else v.grad.float() for v in t.values()]

    monkeypatch.setenv("SSMTS_HOST_EXT", "0")
    ref, ref_grads = step()
    monkeypatch.setenv("SSMTS_HOST_EXT", "1")
    for _ in range(3):  # the first calls compile and register; the last runs in C++
        out, grads = step()
    if _host.extension() is None:
        pytest.skip("the C++ host path could not be built here")
    assert type(out.grad_fn).__name__ == "CppFunction"
    assert torch.equal(out, ref)
    (plan,) = [e for e in _host._PLANS.values() if e[2][:4] == list(shape[:4])]
    assert plan[2][6] == (copies or 1)  # the C++ backward's copies of the dB/dC rows
    monkeypatch.setenv("SSMTS_CHECK_GPU_VALUES", "1")  # the C++ lookup declines; Python
    checked, _ = step()  # checks the values, then runs the registered plan
    assert type(checked.grad_fn).__name__ == "CppFunction" and torch.equal(checked, ref)
    monkeypatch.delenv("SSMTS_CHECK_GPU_VALUES")
    for name, g, r in zip(t, grads, ref_grads):
        if r is not None:  # dB, dC: fp32 atomics, so the order of the adds may differ
            tol = 0 if name not in ("B", "C") else 1e-5 if dtype == torch.float32 else 1e-2
            assert float((g - r).abs().max()) <= tol * float(r.abs().max()), name
