"""``ssmts bench ltsf`` on a small synthetic CSV: report, bad inputs, --report, old flags."""

from __future__ import annotations

import argparse
import importlib.util
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssmts import cli
from ssmts.bench import jobs, ltsf

REPO = Path(__file__).resolve().parents[2]
FAST = ["--horizons", "24", "--backbones", "s5", "--epochs", "1", "--workers", "0"]


def _csv(path: Path, n: int = 600) -> Path:
    """3 channels, hourly, the date column named 'timestamp' (not 'date')."""
    t = np.arange(n)
    rng = np.random.default_rng(0)
    pd.DataFrame({"timestamp": pd.date_range("2021-01-01", periods=n, freq="h").astype(str),
                  "a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
                  "b": np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n),
                  "c": 0.01 * t + 0.1 * rng.standard_normal(n)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of the verb (the anchors and one 1-epoch S5 job)."""
    tmp = tmp_path_factory.mktemp("bench")
    csv = _csv(tmp / "syn.csv")
    out = tmp / "res" / "r"
    rc = cli.main(["bench", "ltsf", str(csv), *FAST, "--out", str(out)])
    return rc, csv, out


def test_verb_writes_report(run):
    rc, csv, out = run
    assert rc == 0
    for suf in (".jsonl", ".json", ".md"):
        assert out.with_suffix(suf).is_file()
    rep = json.loads(out.with_suffix(".json").read_text())
    anc = rep["anchors"][f"{csv}|24"]
    assert set(anc) == {"repeat_last", "ridge"} and anc["ridge"]["mse"] > 0
    (row,) = rep["rows"]
    assert row["ok"], row.get("trace")
    assert row["set"] == str(csv) and row["horizon"] == 24 and row["seed"] == 0
    # 600 rows, 70/10/20: val rows [420 - 96, 480), test rows [480 - 96, 600)
    assert row["n_val"] == 60 - 24 + 1 and row["n_test"] == 120 - 24 + 1
    assert row["predict_max_abs_diff"] < 1e-4 and row["fit_s"] > 0
    # the estimator's defaults, not the benchmark's: only the protocol's settings differ
    dflt = jobs.estimator_defaults()
    assert row["config"]["lr"] == dflt["lr"] and row["config"]["channel"] == dflt["channel"]
    assert row["config"]["dropout"] == dflt["dropout"] and row["config"]["epochs"] == 1
    meta = rep["meta"]
    assert meta["command"].startswith("ssmts bench ltsf ") and meta["seeds"] == [0]
    assert meta["device"] == "cpu" and meta["torch"] and meta["host"]
    md = out.with_suffix(".md").read_text()
    assert "**chosen**" in md and "ridge (CI)" in md and meta["command"] in md
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 1


def test_report_rerenders(run, tmp_path, capsys):
    out = run[2]
    new = tmp_path / "again"
    assert cli.main(["bench", "ltsf", "--report", str(out.with_suffix(".jsonl")),
                     "--out", str(new)]) == 0
    rep = json.loads(new.with_suffix(".json").read_text())
    old = json.loads(out.with_suffix(".json").read_text())
    assert rep["rows"] == old["rows"] and rep["anchors"] == old["anchors"]
    assert "| 24 |" in capsys.readouterr().out


def _one_line(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("ssmts bench ltsf: "), err
    return err[0]


def test_bad_inputs_exit_2(tmp_path, capsys):
    out = ["--out", str(tmp_path / "x")]
    assert "no_such_set: unknown set" in _one_line(capsys, ["bench", "ltsf", "no_such_set",
                                                            *FAST, *out])
    bad = tmp_path / "bad.csv"
    bad.write_text("when,x\nyesterday,abc\n")
    assert "cannot read it" in _one_line(capsys, ["bench", "ltsf", str(bad), *FAST, *out])
    csv = _csv(tmp_path / "s.csv")
    assert "leaves no" in _one_line(capsys, ["bench", "ltsf", str(csv), *FAST[2:],
                                             "--horizons", "500", *out])
    assert "--backbones s7" in _one_line(capsys, ["bench", "ltsf", str(csv), "--backbones",
                                                  "s7", *out])
    assert "is a folder" in _one_line(capsys, ["bench", "ltsf", str(csv), *FAST,
                                               "--out", str(tmp_path)])
    assert "no such file" in _one_line(capsys, ["bench", "ltsf", "--report",
                                                str(tmp_path / "none.jsonl"), *out])
    assert not list(tmp_path.glob("x.*"))  # nothing written


def test_peers_missing_names_the_extra(tmp_path, capsys):
    if importlib.util.find_spec("neuralforecast") is not None:
        pytest.skip("neuralforecast is installed")
    csv = _csv(tmp_path / "s.csv")
    line = _one_line(capsys, ["bench", "ltsf", str(csv), *FAST, "--peers", "nhits",
                              "--out", str(tmp_path / "x")])
    assert 'pip install "ssmts[bench]"' in line


def test_ctrl_c_exits_130(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ltsf, "run", interrupted)
    assert cli.main(["bench", "ltsf", "x", "--out", str(tmp_path / "x")]) == 130
    assert capsys.readouterr().err == "ssmts bench ltsf: interrupted (Ctrl-C)\n"


def test_old_flags_build_the_sweep(tmp_path):
    """benchmarks/bench_ltsf.py's flags still parse and give the old job grid."""
    csv = str(_csv(tmp_path / "s.csv"))
    args = ltsf.add_arguments(argparse.ArgumentParser()).parse_args(
        ["--sets", csv, "--horizons", "24", "48", "--backbones", "s5", "mamba", "--lrs", "1e-3",
         "3e-3", "--channels", "independent", "mixed", "--dropouts", "0.1", "0.2",
         "--baseline", "--epochs", "10", "--batch-size", "32", "--seeds", "0", "--device",
         "cpu", "--workers", "2", "--threads", "1", "--budget-s", "420", "--max-jobs", "5",
         "--skip-done", "--out", str(tmp_path / "o")])
    js = jobs.build_jobs(args, [csv], [24, 48])
    names = list(dict.fromkeys(ltsf.report.cfg_name(j["config"]) for j in js))
    assert len(names) == 2 * (2 * 2 * 2 + 1) and len(js) == 2 * len(names)
    assert names[:2] == ["s5 lr=0.001 ch=independent do=0.1 ep=10 bs=32",
                         "mamba lr=0.001 ch=independent do=0.1 ep=10 bs=32"]
    assert "s5 lr=0.01 ch=mixed do=0.1 ep=10 bs=32" in names
    assert [j["horizon"] for j in js[:2]] == [48, 24]


def test_script_wrapper_runs(tmp_path, monkeypatch):
    """The old script path with its old flags; --budget-s 0 starts no fit."""
    csv = _csv(tmp_path / "s.csv")
    out = tmp_path / "o"
    script = REPO / "benchmarks" / "bench_ltsf.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--sets", str(csv), "--horizons", "24",
                                      "--backbones", "s5", "--lrs", "1e-3", "--budget-s", "0",
                                      "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(script), run_name="__main__")
    assert exc.value.code == 0
    md = out.with_suffix(".md").read_text()
    assert "0 jobs done" in md and "python benchmarks/bench_ltsf.py --sets" in md


def test_peers_tiny(tmp_path):
    if importlib.util.find_spec("neuralforecast") is None:  # importorskip: ray may be missing
        pytest.skip("neuralforecast is not installed")
    csv = _csv(tmp_path / "s.csv")
    out = tmp_path / "p"
    assert cli.main(["bench", "ltsf", str(csv), "--horizons", "24", "--backbones", "--peers",
                     "nhits", "--peer-max-steps", "2", "--workers", "0", "--out",
                     str(out)]) == 0
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert row["ok"], row.get("trace")
    assert row["config"]["backbone"] == "nf-nhits" and row["target_max_abs_diff"] < 1e-5
    assert row["n_test"] == 97 and row["mse"] > 0
