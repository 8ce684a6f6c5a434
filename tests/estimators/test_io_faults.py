"""Faults of save / load (issue 14, defect 7).

Failing saves over an existing model, saves killed with SIGKILL, the states a
killed save can leave, and damaged / edited / hostile model folders: a save
never destroys the previous model, and every bad folder is refused with a
ValueError naming the file and saying what to do (never by unpickling).
"""

import copy
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from ssmts import __version__
from ssmts.estimators import SSMForecaster
from ssmts.estimators import _io
from ssmts.estimators._io import CONFIG, MAX_CONFIG_BYTES, WEIGHTS, _config_sha

KW = dict(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=8, max_epochs=1, val_size=0,
          random_state=0)
ADVICE = ("save the model", "pass the folder", "pass a new", "pass another", "upgrade ssmts")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    idx = pd.date_range("2024-01-01", periods=62, freq="h")
    y = pd.DataFrame(rng.standard_normal((62, 2)).cumsum(0), columns=["a", "b"], index=idx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: "worse than a naive forecast"
        est = SSMForecaster(**KW).fit(y.iloc[:60])
    other = copy.deepcopy(est).update(y.iloc[60:])  # another model: other origin, forecasts
    return est, est.predict(4), other, other.predict(4)


@pytest.fixture
def model(fitted, tmp_path):
    path = tmp_path / "model"
    fitted[0].save(path)
    return path


def _files(path):
    return {n: (path / n).read_bytes() for n in (WEIGHTS, CONFIG)}


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def _loads_as(path, expected):
    pd.testing.assert_frame_equal(SSMForecaster.load(path).predict(4), expected)


def _refused(path, file, pattern):
    """load(path) raises a ValueError naming ``file``, matching ``pattern``, saying what to do."""
    with pytest.raises(ValueError, match=pattern) as info:
        SSMForecaster.load(path)
    msg = str(info.value)
    assert file in msg and any(a in msg for a in ADVICE), msg
    return msg


def _copy(model, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(model, dst)
    return dst


def _edit(folder, fn, forge=False):
    """Apply fn to the parsed config; ``forge`` recomputes the checksum (a buggy writer)."""
    cfg = json.loads((folder / CONFIG).read_text())
    fn(cfg)
    if forge:
        cfg["config_sha256"] = _config_sha(cfg)
    (folder / CONFIG).write_text(json.dumps(cfg, indent=1))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------ failing saves
class _Calls:
    """A stand-in for a function that raises on the calls numbered in ``fail`` (1-based)."""

    def __init__(self, real, fail, exc):
        self.real, self.fail, self.exc, self.n = real, fail, exc, 0

    def __call__(self, *args, **kwargs):
        self.n += 1
        if self.n in self.fail:
            raise self.exc
        return self.real(*args, **kwargs)


def _partial_save_file(tensors, filename):
    with open(filename, "wb") as f:
        f.write(b"\0" * 100)
    raise OSError(28, "No space left on device")


SAVE_FAULTS = {  # name -> (patch (object, attribute, stand-in factory), exception expected)
    "save_file raises (full disk)": (
        (_io, "save_file", lambda real: _Calls(real, {1}, OSError(28, "No space left"))), OSError),
    "save_file writes half then raises": ((_io, "save_file", lambda real: _partial_save_file),
                                          OSError),
    "save_file interrupted (KeyboardInterrupt)": (
        (_io, "save_file", lambda real: _Calls(real, {1}, KeyboardInterrupt())),
        KeyboardInterrupt),
    # json.dumps: call 1 probes trainer_kwargs (dropped if it fails), 2 is checked before the
    # disk is touched (ValueError), 3 (checksum) and 4 (config text) fail inside the temp folder
    **{f"json.dumps raises at call {k}": (
        (_io.json, "dumps", lambda real, k=k: _Calls(real, {k}, TypeError("not serialisable"))),
        ValueError if k == 2 else TypeError) for k in (2, 3, 4)},
    "os.fsync raises (I/O error)": (
        (_io.os, "fsync", lambda real: _Calls(real, {1, 2, 3, 4}, OSError(5, "I/O error"))),
        OSError),
    "os.replace raises at rename aside": (
        (_io.os, "replace", lambda real: _Calls(real, {1}, OSError(16, "busy"))), OSError),
    "os.replace raises at rename in (rolled back)": (
        (_io.os, "replace", lambda real: _Calls(real, {2}, OSError(16, "busy"))), OSError),
}


@pytest.mark.parametrize("fault", list(SAVE_FAULTS))
def test_failing_save_keeps_old_model(fitted, model, monkeypatch, fault):
    (obj, attr, factory), exc = SAVE_FAULTS[fault]
    before = _files(model)
    monkeypatch.setattr(obj, attr, factory(getattr(obj, attr)))
    with pytest.raises(exc):
        fitted[2].save(model)
    monkeypatch.undo()
    assert _files(model) == before and _leftovers(model) == []
    _loads_as(model, fitted[1])
    fitted[2].save(model)  # and a later save works
    _loads_as(model, fitted[3])


@pytest.mark.parametrize("change", ["target_transformer", "std 0", "lr object", "lr np.float32"])
def test_save_refuses_before_touching(fitted, model, change):
    est = copy.deepcopy(fitted[2])
    before = _files(model)
    if change == "target_transformer":
        est.target_transformer = StandardScaler()
    elif change == "std 0":
        est.scaler_.std_ = np.zeros_like(est.scaler_.std_)
    elif change == "lr object":
        est.lr = object()
    else:  # numpy scalars are written as plain numbers
        est.lr = np.float32(0.01)
        est.save(model)
        assert SSMForecaster.load(model).lr == pytest.approx(0.01)
        return
    with pytest.raises(ValueError, match="target_transformer|would not load back") as info:
        est.save(model)
    assert "Nothing was written" in str(info.value)
    assert _files(model) == before and _leftovers(model) == []
    _loads_as(model, fitted[1])


def test_rollback_fails_load_finds_aside(fitted, model, monkeypatch):
    """Both renames after the first fail: path is gone, the old model waits aside."""
    monkeypatch.setattr(_io.os, "replace", _Calls(os.replace, set(range(2, 9)), OSError(5, "EIO")))
    with pytest.raises(OSError):
        fitted[2].save(model)
    monkeypatch.undo()
    assert not model.exists() and len(_leftovers(model)) == 1  # the aside folder only
    with pytest.warns(UserWarning, match="interrupted save"):
        _loads_as(model, fitted[1])
    fitted[2].save(model)
    assert _leftovers(model) == []
    _loads_as(model, fitted[3])


def test_rmtree_of_aside_fails(fitted, model, monkeypatch):
    monkeypatch.setattr(_io.shutil, "rmtree", lambda *a, **k: None)
    fitted[2].save(model)  # the swap is done; the aside folder stays
    monkeypatch.undo()
    assert len(_leftovers(model)) == 1
    _loads_as(model, fitted[3])
    fitted[0].save(model)  # removes it (this process is not saving into it any more)
    assert _leftovers(model) == []


# ------------------------------------------------------------ states a killed save leaves
def test_crash_windows(fitted, model, tmp_path):
    pid = _dead_pid()
    old_like = _copy(model, tmp_path, "old_like")
    # 1. killed while writing: a partial temporary folder next to an intact model
    tmp = model.parent / f".model.tmp-{pid}-0123abcd"
    tmp.mkdir()
    (tmp / WEIGHTS).write_bytes(b"\0" * 10)
    _loads_as(model, fitted[1])
    # 2. killed between the renames: no path; the old model aside, the new one complete in tmp
    shutil.rmtree(tmp)
    fitted[2].save(tmp_path / "new")
    os.replace(tmp_path / "new", tmp)
    os.replace(model, model.parent / f".model.old-{pid}-4567abcd")
    with pytest.warns(UserWarning, match="interrupted save"):
        _loads_as(model, fitted[1])
    # 3. killed while removing the aside after the second rename
    os.replace(tmp, model)
    aside = model.parent / f".model.old-{pid}-4567abcd"
    (aside / WEIGHTS).unlink()
    _loads_as(model, fitted[3])
    # 4. two asides, the newer damaged: the older one loads
    model.rename(model.parent / f".model.old-{pid}-89abcdef")
    shutil.copytree(old_like, model.parent / f".model.old-{pid}-fedcba98")
    os.utime(model.parent / f".model.old-{pid}-fedcba98", (1, 1))  # older
    with pytest.warns(UserWarning, match="interrupted save"):
        _loads_as(model, fitted[3])
    # 5. only a damaged aside: refused, naming it
    for p in model.parent.glob(".model.old-*"):
        if (p / WEIGHTS).exists():
            shutil.rmtree(p)
    _refused(model, WEIGHTS, "none of|not found")
    # a save repairs the folder and removes every leftover of dead processes
    (model.parent / f".model.tmp-{pid}-00000000").mkdir()
    fitted[0].save(model)
    assert _leftovers(model) == []
    _loads_as(model, fitted[1])


SERVER = r"""
import os, sys, time, traceback, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
from ssmts.estimators import SSMForecaster
_replace = os.replace
def slow_replace(src, dst):  # a slow file system: widen the windows between the renames
    _replace(src, dst)
    time.sleep(0.03)
os.replace = slow_replace
path, log = sys.argv[1], sys.argv[2]
SSMForecaster.load(path)
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:  # the process that is killed: load and save over path, again and again
        try:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            while True:
                SSMForecaster.load(path).save(path)
                os.write(fd, b".")
        except BaseException:
            traceback.print_exc()
            os._exit(3)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a saving process (POSIX)")
@pytest.mark.parametrize("rounds", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_killed_saves(fitted, model, tmp_path, rounds):
    """SIGKILL a process that saves over the model in a loop, at random moments, ``rounds`` times.

    A server process (``sys.executable -c``) imports ssmts once and forks each
    saving process, so the rounds do not each pay the import; the test kills the
    forked process 0.05-0.6 s after it starts (loading the model meanwhile, while
    it is being replaced), then loads the model. Each rename there takes 30 ms
    more, so some kills and loads land between the two renames of a swap.
    """
    rng, t0 = random.Random(rounds), time.perf_counter()
    log, err = tmp_path / "saves.log", open(tmp_path / "server.err", "w")
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(model), str(log)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                              text=True)
    recovered, saves, concurrent = 0, [], 0
    try:
        assert server.stdout.readline().strip() == "ready", (tmp_path / "server.err").read_text()
        t_ready = time.perf_counter() - t0
        for _ in range(rounds):
            n0 = log.stat().st_size if log.exists() else 0
            server.stdin.write("go\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            deadline = time.perf_counter() + rng.uniform(0.05, 0.6)
            while time.perf_counter() < deadline:  # loads while it saves: never fail
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # loaded from the aside folder
                    _loads_as(model, fitted[1])
                concurrent += 1
            os.kill(pid, signal.SIGKILL)
            status = int(server.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                (tmp_path / "server.err").read_text()
            saves.append((log.stat().st_size if log.exists() else 0) - n0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _loads_as(model, fitted[1])
            recovered += any("interrupted save" in str(w.message) for w in caught)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        err.close()
    print(f"\nkilled saves: {rounds} rounds, completed saves per round {saves}, loads from an "
          f"aside folder after a kill {recovered}, loads during the saves {concurrent}, "
          f"leftovers {len(_leftovers(model))}; server ready after "
          f"{t_ready:.1f} s, total {time.perf_counter() - t0:.1f} s")
    assert sum(saves) > 0
    fitted[0].save(model)
    assert _leftovers(model) == []


# ------------------------------------------------------------ damaged and edited folders
def _flip(folder, name, pos, bit=0):
    raw = bytearray((folder / name).read_bytes())
    raw[pos] ^= 1 << bit
    (folder / name).write_bytes(bytes(raw))


def _set(path, value):
    def fn(cfg):
        *keys, last = path
        d = cfg
        for k in keys:
            d = d[k]
        d[last] = value
    return fn


def _forge_weights(folder, fn):
    """Apply fn to the stored tensors and forge both checksums (a buggy writer)."""
    import hashlib

    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / WEIGHTS)
    fn(tensors)
    save_file(tensors, folder / WEIGHTS)
    sha = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    _edit(folder, _set(["weights_sha256"], sha), forge=True)


def _nan_mean(cfg):
    cfg["scaler"]["mean"][0][0][0] = float("nan")


def _rename_column(cfg):
    cfg["columns"][0] = "z"


def _drop_origin(cfg):
    cfg["origin_structure"]["dict"]["hidden"] = "origin.nothing"


DAMAGE = {  # name -> (mutator(folder), file named in the message, pattern)
    "truncated weights": (lambda f: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes()[:99]),
                          WEIGHTS, "truncated or modified"),
    "empty weights": (lambda f: (f / WEIGHTS).write_bytes(b""), WEIGHTS, "truncated or modified"),
    "bit flipped in weights header": (lambda f: _flip(f, WEIGHTS, 20), WEIGHTS,
                                      "truncated or modified"),
    "bit flipped in weights data": (lambda f: _flip(f, WEIGHTS, -5, 3), WEIGHTS,
                                    "truncated or modified"),
    "bit flipped in config number": (
        lambda f: _flip(f, CONFIG, (f / CONFIG).read_text().index('"lookback": 8') + 12),
        CONFIG, "modified after saving"),
    "bit flipped in config key": (
        lambda f: _flip(f, CONFIG, (f / CONFIG).read_text().index('"lookback"') + 2),
        CONFIG, "modified after saving"),
    "bit flipped in config_sha256": (
        lambda f: _flip(f, CONFIG, (f / CONFIG).read_text().index('"config_sha256"') + 20, 4),
        CONFIG, "config_sha256|modified after saving"),
    "renamed column": (lambda f: _edit(f, _rename_column), CONFIG,
                       "config.json was modified after saving: its checksum does not match"),
    "lookback changed": (lambda f: _edit(f, _set(["params", "lookback"], 6)), CONFIG,
                         "modified after saving"),
    "scaler mean NaN (checksum forged)": (lambda f: _edit(f, _nan_mean, True), CONFIG,
                                          r"scaler\.mean.*non-finite"),
    "scaler std 0 (forged)": (
        lambda f: _edit(f, _set(["scaler", "std"], [[[0.0, 1.0]]]), True), CONFIG,
        r"scaler\.std.*> 0"),
    "scaler shape (forged)": (lambda f: _edit(f, _set(["scaler", "mean"], [[[0.0]]]), True),
                              CONFIG, r"scaler\.mean.*shape"),
    "renamed column (forged)": (lambda f: _edit(f, _rename_column, True), CONFIG,
                                r"context\.meta\.source\.columns"),
    "lookback below context (forged)": (
        lambda f: _edit(f, _set(["params", "lookback"], 6), True), CONFIG, r"context\.values"),
    "lookback 0 (forged)": (lambda f: _edit(f, _set(["params", "lookback"], 0), True), CONFIG,
                            r"params: lookback"),
    "lookback a string (forged)": (lambda f: _edit(f, _set(["params", "lookback"], "8"), True),
                                   CONFIG, r"params: lookback"),
    "backbone unknown (forged)": (lambda f: _edit(f, _set(["params", "backbone"], "x"), True),
                                  CONFIG, r"params: backbone"),
    "unknown parameter (forged)": (lambda f: _edit(f, _set(["params", "evil"], 1), True), CONFIG,
                                   "unknown parameters"),
    "target_transformer (forged)": (
        lambda f: _edit(f, _set(["params", "target_transformer"], "x"), True), CONFIG,
        "target_transformer"),
    "d_model changed (forged)": (lambda f: _edit(f, _set(["params", "d_model"], 16), True),
                                 CONFIG, "does not describe the weights"),
    "d_model huge (forged)": (lambda f: _edit(f, _set(["params", "d_model"], 10 ** 6), True),
                              CONFIG, "far larger"),
    "lengths too long (forged)": (lambda f: _edit(f, _set(["context", "lengths"], [99]), True),
                                  CONFIG, r"context\.lengths"),
    "time not increasing (forged)": (
        lambda f: _edit(f, _set(["context", "time"], [[1.0] * 8]), True), CONFIG,
        r"context\.time"),
    "context value a string (forged)": (
        lambda f: _edit(f, lambda c: c["context"]["values"][0].__setitem__(0, ["1", 2]), True),
        CONFIG, r"context\.values"),
    "lead_gap negative (forged)": (
        lambda f: _edit(f, _set(["context", "lead_gap"], [-1.0]), True), CONFIG,
        r"context\.lead_gap"),
    "stamps missing (forged)": (lambda f: _edit(f, _set(["context", "stamps"], [[1]]), True),
                                CONFIG, r"context\.stamps"),
    "n_exog without scaler (forged)": (lambda f: _edit(f, _set(["n_exog"], 2), True), CONFIG,
                                       "exog_scaler"),
    "origin refers to a missing tensor (forged)": (lambda f: _edit(f, _drop_origin, True),
                                                   CONFIG, "origin_structure"),
    "origin structure nested list (forged)": (
        lambda f: _edit(f, _set(["origin_structure"], [[[]]]), True), CONFIG,
        "origin_structure"),
    "origin scale 0 (forged weights)": (
        lambda f: _forge_weights(f, lambda t: t["origin.scale"].zero_()), CONFIG,
        r"origin\.scale holds values <= 0"),
    "origin hidden NaN (forged weights)": (
        lambda f: _forge_weights(f, lambda t: t["origin.hidden"].fill_(float("nan"))), CONFIG,
        r"origin\.hidden holds non-finite"),
    "origin hidden reshaped (forged weights)": (
        lambda f: _forge_weights(f, lambda t: t.update(
            {"origin.hidden": t["origin.hidden"].T.contiguous()})), CONFIG,
        "does not fit the network"),
    "extra tensor (forged weights)": (
        lambda f: _forge_weights(f, lambda t: t.update({"evil": t["origin.hidden"].clone()})),
        CONFIG, "unexpected"),
    "weights hash not hex (forged)": (
        lambda f: _edit(f, _set(["weights_sha256"], "x" * 64), True), CONFIG, "weights_sha256"),
    "version 99.0.0": (lambda f: _edit(f, _set(["version"], "99.0.0")), CONFIG,
                       rf"ssmts 99\.0\.0, newer than the installed ssmts {__version__}"),
    "version not a version": (lambda f: _edit(f, _set(["version"], "banana")), CONFIG,
                              rf"'banana' is not a version number .*ssmts is {__version__}"),
    "format 4": (lambda f: _edit(f, _set(["format"], 4)), CONFIG, "format: 4 .*upgrade"),
    "format 1": (lambda f: _edit(f, _set(["format"], 1)), CONFIG, "format: 1 .*load it with"),
    "format 2 with a config checksum": (lambda f: _edit(f, _set(["format"], 2)), CONFIG,
                                        r"unknown entries \['config_sha256'\]"),
    "library not ssmts": (lambda f: _edit(f, _set(["library"], "transformers")), CONFIG,
                          "library: expected 'ssmts'"),
    "top level a list": (lambda f: (f / CONFIG).write_text("[1, 2]"), CONFIG,
                         "expected a JSON object"),
    "duplicate keys": (lambda f: (f / CONFIG).write_text('{"a": 1, "a": 2}'), CONFIG,
                       "not valid JSON.*duplicate"),
    "truncated config": (lambda f: (f / CONFIG).write_text((f / CONFIG).read_text()[:500]),
                         CONFIG, "not valid JSON"),
    "config not UTF-8": (lambda f: (f / CONFIG).write_bytes(b"\xff\xfe{}"), CONFIG,
                         "not valid JSON"),
    "deeply nested JSON": (
        lambda f: (f / CONFIG).write_text('{"format": 3, "params": ' + "[" * 100_000
                                          + "]" * 100_000 + "}"), CONFIG, "nested too deeply"),
    "huge config (sparse file)": (lambda f: os.truncate(f / CONFIG, MAX_CONFIG_BYTES + 1),
                                  CONFIG, "larger than"),
    "config missing": (lambda f: (f / CONFIG).unlink(), CONFIG, "not found"),
    "weights missing": (lambda f: (f / WEIGHTS).unlink(), WEIGHTS, "not found"),
    "config is a folder": (lambda f: ((f / CONFIG).unlink(), (f / CONFIG).mkdir()), CONFIG,
                           "not a regular file"),
    "weights is a FIFO": (lambda f: ((f / WEIGHTS).unlink(), os.mkfifo(f / WEIGHTS)), WEIGHTS,
                          "not a regular file"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_folder_refused(model, tmp_path, case):
    mutate, file, pattern = DAMAGE[case]
    if "FIFO" in case and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    dst = _copy(model, tmp_path)
    mutate(dst)
    _refused(dst, file, pattern)


def test_config_bit_flips(fitted, model, tmp_path):
    """60 random single-bit flips of config.json: refused, or the same JSON (and model)."""
    rng = random.Random(1)
    raw = (model / CONFIG).read_bytes()
    same, refused = 0, 0
    for _ in range(60):
        dst = tmp_path / "flip"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(model, dst)
        _flip(dst, CONFIG, rng.randrange(len(raw)), rng.randrange(8))
        try:
            unchanged = json.loads((dst / CONFIG).read_bytes()) == json.loads(raw)
        except ValueError:
            unchanged = False
        if unchanged:  # e.g. 1e-05 -> 1E-05
            _loads_as(dst, fitted[1])
            same += 1
        else:
            _refused(dst, CONFIG, None)
            refused += 1
    assert refused >= 50, (same, refused)


def test_missing_and_wrong_paths(model, tmp_path):
    _refused(tmp_path / "nowhere", "nowhere", "not found")
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "file", "is a file")


def test_format_2_still_loads(fitted, model, tmp_path):
    dst = _copy(model, tmp_path)
    _edit(dst, lambda c: (c.pop("config_sha256"), c.update(format=2)))
    with pytest.warns(UserWarning, match="format 2 has no checksum"):
        _loads_as(dst, fitted[1])


# ------------------------------------------------------------ pickles are never loaded
class _Plant:
    """Unpickling this creates the file ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", [WEIGHTS, CONFIG, "both", "torch.save as weights",
                                   "aside folder"])
def test_planted_pickles_never_loaded(model, tmp_path, where):
    import torch

    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Plant(str(probe)))).close()
    assert probe.exists()  # the payload does what it says when unpickled
    marker = tmp_path / "marker"
    dst = _copy(model, tmp_path)
    payload = pickle.dumps(_Plant(str(marker)))
    if where == "torch.save as weights":
        torch.save(_Plant(str(marker)), dst / WEIGHTS)
    else:
        for name in ((WEIGHTS, CONFIG) if where in ("both", "aside folder") else (where,)):
            (dst / name).write_bytes(payload)
    if where == "aside folder":  # the folder load falls back to when path is missing
        dst.rename(tmp_path / f".copy.old-{_dead_pid()}-0badc0de")
    with pytest.raises(ValueError) as info:
        SSMForecaster.load(dst)
    assert "copy" in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------ what save refuses to replace
def test_save_refuses_foreign_paths(fitted, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        fitted[0].save(f)
    assert f.read_text() == "keep me"
    d = tmp_path / "project"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"holds \['notes.txt'\]"):
        fitted[0].save(d)
    assert (d / "notes.txt").read_text() == "keep me"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / CONFIG).write_text('{"library": "transformers"}')
    with pytest.raises(ValueError, match="not an ssmts model config"):
        fitted[0].save(hf)
    assert json.loads((hf / CONFIG).read_text()) == {"library": "transformers"}
    assert _leftovers(f) == _leftovers(d) == _leftovers(hf) == []


def test_save_replaces_empty_damaged_and_linked(fitted, model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    fitted[0].save(empty)
    _loads_as(empty, fitted[1])
    (model / CONFIG).write_text("garbage")  # a damaged ssmts model is re-saved over
    fitted[0].save(model)
    _loads_as(model, fitted[1])
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)
    fitted[2].save(link)  # writes the linked folder, keeps the link
    assert link.is_symlink()
    _loads_as(link, fitted[3])
    _loads_as(model, fitted[3])
