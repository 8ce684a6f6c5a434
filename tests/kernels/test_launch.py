"""The cached launcher (ssmts.kernels._launch) without a GPU: a fake JIT function and fake
CUDA tensors stand in for Triton and the device, so the test sees which path each call
takes and what reaches the compiled kernel's launcher."""

import warnings

import pytest
import torch
from ssmts.kernels import _launch


class _FakeTensor:
    """What the launcher reads from a tensor: is_cuda, data_ptr, dtype."""

    is_cuda = True

    def __init__(self, ptr, dtype=torch.float32):
        self._ptr, self.dtype = ptr, dtype

    def data_ptr(self):
        return self._ptr


class _Compiled:
    function, packed_metadata = "fn-handle", "meta"

    def __init__(self, fail=False):
        self.runs, self.fail = [], fail

    def run(self, *a):
        if self.fail:
            raise TypeError("launcher takes other arguments")
        self.runs.append(a)


class _FakeJit:
    """``fn[grid](*args, num_warps=...)`` records the call and returns a compiled kernel."""

    def __init__(self, fail=False):
        self.slow_calls, self.fail = [], fail

    def __getitem__(self, grid):
        def call(*args, num_warps):
            self.slow_calls.append((grid, args, num_warps))
            return _Compiled(self.fail)
        return call


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(_launch, "_ENABLED", [True])
    monkeypatch.setattr(_launch, "_CACHE", {})
    monkeypatch.setattr(_launch, "_hooks_set", lambda: False)
    monkeypatch.setattr(_launch, "_raw_stream", lambda dev: 1234)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def _args(ptr=4096, n=7, flag=True):
    return (_FakeTensor(ptr), _FakeTensor(8192, torch.bfloat16), n, 64, 16, flag)


def test_second_call_goes_to_the_compiled_kernel(fake_cuda):
    fn = _FakeJit()
    _launch.launch(fn, (3, 2), _args(), 2, 2, 4)
    _launch.launch(fn, (3, 2), _args(), 2, 2, 4)
    assert len(fn.slow_calls) == 1
    (compiled,) = _launch._CACHE.values()
    (run,) = compiled.runs
    assert run[:4] == (3, 2, 1, 1234) and run[4:6] == ("fn-handle", "meta")
    assert run[6:9] == (None, None, None)
    assert run[9:] == (4096, 8192, 7, 64, 16, True)  # pointers as ints, then the rest in order


@pytest.mark.parametrize("change", [
    {"ptr": 4100},  # unaligned pointer
    {"n": 1},  # an int equal to 1 (Triton makes it a constant)
    {"n": 32},  # an int divisible by 16
    {"flag": False},  # another constexpr value
])
def test_a_new_specialisation_takes_tritons_path(fake_cuda, change):
    fn = _FakeJit()
    _launch.launch(fn, (1,), _args(), 2, 2, 4)
    _launch.launch(fn, (1,), _args(**change), 2, 2, 4)
    assert len(fn.slow_calls) == 2


def test_same_specialisation_other_values_share_a_kernel(fake_cuda):
    fn = _FakeJit()
    _launch.launch(fn, (1,), _args(ptr=4096, n=7), 2, 2, 4)
    _launch.launch(fn, (1,), _args(ptr=8192 + 512, n=9), 2, 2, 4)
    assert len(fn.slow_calls) == 1
    _launch.launch(fn, (1,), _args(), 2, 2, 8)  # another warp count
    assert len(fn.slow_calls) == 2


def test_launcher_that_rejects_the_call_switches_the_fast_path_off(fake_cuda):
    fn = _FakeJit(fail=True)
    _launch.launch(fn, (1,), _args(), 2, 2, 4)
    with pytest.warns(RuntimeWarning, match="direct Triton launch unavailable"):
        _launch.launch(fn, (1,), _args(), 2, 2, 4)
    assert len(fn.slow_calls) == 2 and _launch._ENABLED == [False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _launch.launch(fn, (1,), _args(), 2, 2, 4)  # no second warning
    assert len(fn.slow_calls) == 3


def test_hooks_or_cpu_tensors_take_tritons_path(fake_cuda, monkeypatch):
    fn = _FakeJit()
    monkeypatch.setattr(_launch, "_hooks_set", lambda: True)
    for _ in range(2):
        _launch.launch(fn, (1,), _args(), 2, 2, 4)
    monkeypatch.setattr(_launch, "_hooks_set", lambda: False)
    cpu = (torch.zeros(2),) + _args()[1:]
    for _ in range(2):
        _launch.launch(fn, (1,), cpu, 2, 2, 4)
    assert len(fn.slow_calls) == 4 and not _launch._CACHE


def test_hook_detection():
    class Chain:
        def __init__(self, calls):
            self.calls = calls

    assert not _launch._hook_active(None)
    assert not _launch._hook_active(Chain([]))
    assert _launch._hook_active(Chain([print]))
    assert _launch._hook_active(print)
