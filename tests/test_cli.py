"""The ``ssmts`` command line: version, help, a bad ``--out``, Ctrl-C, real bugs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ssmts
from ssmts import cli, demo

REPO = Path(__file__).resolve().parents[1]


def _no_fit(*args, **kwargs):
    raise AssertionError("run_demo was called: --out must be checked before any fitting")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"ssmts {ssmts.__version__}\n"


def test_version_subprocess():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "ssmts.cli", "--version"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"ssmts {ssmts.__version__}\n"


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"]])
def test_help_is_plain(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out and "arrive" not in out
    if argv == ["--help"]:
        assert "--version" in out and "demo" in out
    else:
        assert "--out" in out and "--quick" in out and "validation" in out


def _one_line_error(capsys, argv, path) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"ssmts demo: --out {path}: ") and "; " in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_out_is_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "run_demo", _no_fit)
    f = tmp_path / "report.txt"
    f.write_text("x")
    line = _one_line_error(capsys, ["demo", "--out", str(f)], f)
    assert "is an existing file, not a folder" in line
    assert f.read_text() == "x"


def test_out_under_a_file(tmp_path, capsys, monkeypatch):
    """A parent that is a file stops everyone, root included."""
    monkeypatch.setattr(demo, "run_demo", _no_fit)
    f = tmp_path / "plain"
    f.write_text("x")
    line = _one_line_error(capsys, ["demo", "--out", str(f / "sub" / "out")], f / "sub" / "out")
    assert f"{f} is a file" in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_out_not_writable(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "run_demo", _no_fit)
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = _one_line_error(capsys, ["demo", "--out", str(ro / "out")], ro / "out")
        assert "cannot create the folder" in line
        line = _one_line_error(capsys, ["demo", "--out", str(ro)], ro)
        assert "cannot write in the folder" in line
    finally:
        ro.chmod(0o700)


def test_run_demo_refuses_a_file(tmp_path):
    f = tmp_path / "report.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        demo.run_demo(out=str(f), quick=True)


def test_ctrl_c_is_one_line_and_130(tmp_path, capsys, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    assert captured.err == "ssmts demo: interrupted (Ctrl-C)\n"
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_ctrl_c_turned_into_system_exit_is_still_130(tmp_path, capsys, monkeypatch):
    """Lightning answers Ctrl-C with sys.exit(1); a real SIGINT still reads as interrupted."""

    def lightning_like(**kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal arrives before this ends
        except KeyboardInterrupt:
            sys.exit(1)
        raise AssertionError("no SIGINT arrived")

    monkeypatch.setattr(demo, "run_demo", lightning_like)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "ssmts demo: interrupted (Ctrl-C)\n"


def test_a_plain_system_exit_is_not_an_interrupt(tmp_path, monkeypatch):
    def exits(**kwargs):
        sys.exit(3)

    monkeypatch.setattr(demo, "run_demo", exits)
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--out", str(tmp_path)])
    assert exc.value.code == 3


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(**kwargs):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(demo, "run_demo", bug)
    with pytest.raises(RuntimeError, match="a real bug"):
        cli.main(["demo", "--out", str(tmp_path)])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_the_real_demo(tmp_path):
    """SIGINT while the demo fits: exit 130, one line on stderr, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "ssmts.cli", "demo", "--quick", "--out",
                             str(tmp_path / "out")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait until fitting has started
            if "on train ..." in line:
                break
        else:
            pytest.fail(f"the demo ended before fitting: {proc.stderr.read()}")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err + out
    assert err.strip().splitlines()[-1] == "ssmts demo: interrupted (Ctrl-C)"
    assert len(err.strip().splitlines()) == 1, err


def test_bench_ltsf_help_is_plain(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "ltsf", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out
    for flag in ("--horizons", "--backbones", "--peers", "--report", "--budget-s", "--lrs"):
        assert flag in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "bench" in capsys.readouterr().out


def test_bench_needs_a_benchmark(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench"])
    assert exc.value.code == 2
    assert "BENCHMARK" in capsys.readouterr().err
