"""Short real series benchmark: SSMForecaster against seasonal naive, ETS and UC.

Commands (one process, torch on 1 thread; from the repository root)::

    python benchmarks/bench_short.py                       # defaults, test tail
    python benchmarks/bench_short.py --validate --tag defaults_val
    python benchmarks/bench_short.py --params '{"lr":1e-3,"channel":"independent"}' \\
        --tag lr1e-3_indep                                 # candidate defaults, test tail
    python benchmarks/bench_short.py --params '{"lr":1e-3,"channel":"independent"}' \\
        --validate --tag lr1e-3_indep_val                  # ... on the validation block
    python benchmarks/bench_short.py --horizon test ...    # horizon = forecast length
    python benchmarks/bench_short.py --render benchmarks/short_series.json  # re-print

The recorded runs also passed ``--cache /tmp/bs_cache.json`` (the baselines do not
depend on the SSM settings; ETS on weekly co2 takes 2-4 min) and ran from /tmp with
``PYTHONPATH`` on a ``git archive HEAD ssmts`` snapshot, so that the estimator being
edited by others did not change under the runs (``meta.ssmts_rev`` in the JSON).

Series (all from ``statsmodels.datasets``; the test tail is held out and forecast in
one shot from the end of the training part):

============  =========  ==================================================  ====  ==
name          frequency  preparation                                         test  m
============  =========  ==================================================  ====  ==
co2           weekly     W-SAT weekly means, NaN weeks kept missing (no fill) 104  52
elnino        monthly    wide YEAR x JAN..DEC table -> one series (MS)        24   12
elec_equip    monthly    MS index                                             24   12
macro_*       quarterly  realgdp, realcons, cpi, unemp (QS index)              8    4
sunspots      yearly     SUNACTIVITY (YS index)                               10    1
nile          yearly     volume (YS index)                                    10    1
============  =========  ==================================================  ====  ==

macrodata's four columns are ONE multivariate fit of the SSM (a 4-column frame, so
the default ``channel="mixed"`` sees them jointly); the baselines are univariate per
column. Each column is scored on its own and counts as one series in the means
(9 series in all).

``--validate`` scores on a validation block instead: the last test-length block
of the training part, with the models fitted on what precedes it. Choices between
variants are made on these numbers, never on the test tail.

Models: ``SeasonalNaiveForecaster(season_length=m)``, ``StatsmodelsForecaster(
model="ets")`` and ``StatsmodelsForecaster()`` (unobserved components: local linear
trend + seasonal from the index frequency), and ``SSMForecaster`` with its defaults
except ``random_state`` (seeds 0..4) and what ``--params`` (JSON) overrides;
``--horizon test`` sets ``horizon`` to the forecast length (default: the estimator's
own ``horizon``; longer forecasts roll out recursively). A series shorter than
``lookback + horizon`` (nile with the default lookback 96) makes ``fit`` raise; the
bench then refits with ``lookback = (T_train - horizon) // 2`` and flags the row.

Metrics: MASE (``ssmts.metrics.mase``; scale = in-sample MAE of the lag-m naive
forecast on the part the model was fitted on, m = 52/12/4/1 for weekly / monthly /
quarterly / yearly) and MAE; ``jump`` = |forecast[0] - last observed value| / scale
(the first-step jump away from the last observation) and ``rough`` = mean |step
change| of the forecast / that of the truth (jaggedness; 1 = as rough as the data).

Targets (issue 15, item 5): (a) mean MASE of the SSM <= the best (lowest) mean MASE
of seasonal naive, ETS and UC; (b) on no series is the SSM's mean MASE above
1.1 x seasonal naive's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TEST = {"weekly": 104, "monthly": 24, "quarterly": 8, "yearly": 10}
SEASON = {"weekly": 52, "monthly": 12, "quarterly": 4, "yearly": 1}
MACRO = ("realgdp", "realcons", "cpi", "unemp")
BASELINES = ("snaive", "ets", "uc")


def load_series() -> list[dict]:
    """Datasets as frames with a regular DatetimeIndex (freq set); NaN = missing."""
    import importlib

    from statsmodels import datasets as ds

    ee_mod = importlib.import_module("statsmodels.datasets.elec_equip")  # not re-exported

    out = []
    co2 = ds.co2.load_pandas().data["co2"].resample("W-SAT").mean()  # NaN weeks stay NaN
    out.append(("co2", "weekly", co2.to_frame("co2")))
    el = ds.elnino.load_pandas().data
    vals = el.drop(columns="YEAR").to_numpy(np.float64).ravel()  # row = year, JAN..DEC
    idx = pd.date_range(f"{int(el['YEAR'].iloc[0])}-01-01", periods=vals.size, freq="MS")
    out.append(("elnino", "monthly", pd.DataFrame({"elnino": vals}, index=idx)))
    ee = ee_mod.load().data.iloc[:, 0].astype(np.float64)
    ee.index = pd.DatetimeIndex(ee.index, freq="MS")
    out.append(("elec_equip", "monthly", ee.to_frame("elec_equip")))
    md = ds.macrodata.load_pandas().data
    idx = pd.date_range(f"{int(md['year'].iloc[0])}-01-01", periods=len(md), freq="QS")
    out.append(("macro", "quarterly", pd.DataFrame(md[list(MACRO)].to_numpy(np.float64),
                                                   index=idx, columns=list(MACRO))))
    for name, col, yc in (("sunspots", "SUNACTIVITY", "YEAR"), ("nile", "volume", "year")):
        d = getattr(ds, name).load_pandas().data
        idx = pd.date_range(f"{int(d[yc].iloc[0])}-01-01", periods=len(d), freq="YS")
        out.append((name, "yearly", pd.DataFrame({name: d[col].to_numpy(np.float64)},
                                                 index=idx)))
    return [{"name": n, "freq": f, "y": y, "h": TEST[f], "m": SEASON[f]} for n, f, y in out]


def split(y: pd.DataFrame, h: int, validate: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit part, scored block): the test tail, or the last h rows before it (--validate)."""
    train, test = y.iloc[:-h], y.iloc[-h:]
    if validate:
        train, test = train.iloc[:-h], train.iloc[-h:]
    return train, test


def make_model(kind: str, m: int, params: dict, seed: int | None, h: int, horizon: str):
    from ssmts.estimators import (SeasonalNaiveForecaster, SSMForecaster,
                                  StatsmodelsForecaster)

    if kind == "snaive":
        return SeasonalNaiveForecaster(season_length=m)
    if kind == "ets":
        return StatsmodelsForecaster(model="ets")
    if kind == "uc":
        return StatsmodelsForecaster()
    kw = dict(params)
    if horizon == "test":
        kw["horizon"] = h
    return SSMForecaster(random_state=seed, **kw)


def fit_predict(est, train: pd.DataFrame, h: int) -> tuple[np.ndarray, float, list, str]:
    """(forecast (h, C), fit seconds, warning texts, note); clips lookback if y is too short."""
    note = ""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            est.fit(train)
        except ValueError as exc:
            if "fewer than lookback + horizon" not in str(exc):
                raise
            lb = max(4, (len(train) - est.horizon) // 2)
            note = f"default lookback {est.lookback} too long ({exc}); refit with lookback {lb}"
            est.set_params(lookback=lb)
            t0 = time.perf_counter()
            est.fit(train)
        sec = time.perf_counter() - t0
        fc = est.predict(h)
    msgs = sorted({f"{x.category.__name__}: {str(x.message)[:160]}" for x in w})
    note += f" epochs={len(est.train_loss_)}" if hasattr(est, "train_loss_") else ""
    return np.asarray(fc, dtype=np.float64).reshape(h, -1), sec, msgs, note.strip()


def score(fc: np.ndarray, test: pd.DataFrame, train: pd.DataFrame, m: int) -> list[dict]:
    """Per column: MASE, MAE, first-step jump and roughness (see the module docstring)."""
    from ssmts.metrics import _naive_scale, mae, mase

    rows = []
    for c, col in enumerate(test.columns):
        tr, te, f = train[col].to_numpy(), test[col].to_numpy(), fc[:, c]
        scale = _naive_scale(tr, m)
        last = tr[np.isfinite(tr)][-1]
        dt = np.abs(np.diff(te[np.isfinite(te)]))
        rows.append({"mase": mase(te, f, tr, season=m), "mae": mae(te, f),
                     "jump": float(abs(f[0] - last) / scale),
                     "rough": float(np.mean(np.abs(np.diff(f))) / np.mean(dt)),
                     "scale": scale})
    return rows


def run(args) -> dict:
    import torch

    torch.set_num_threads(1)
    params = json.loads(args.params) if args.params else {}
    seeds = list(range(args.seeds))
    results = {}  # series/column name -> row
    cache = json.loads(Path(args.cache).read_text()) if args.cache and Path(
        args.cache).is_file() else {}
    for s in load_series():
        if args.series and s["name"] not in args.series:
            continue
        train, test = split(s["y"], s["h"], args.validate)
        cols = list(s["y"].columns)
        names = cols if len(cols) > 1 else [s["name"]]
        names = [f"macro_{c}" for c in cols] if s["name"] == "macro" else names
        for n, col in zip(names, cols):
            results[n] = {"freq": s["freq"], "m": s["m"], "h": s["h"], "n_fit": len(train),
                          "missing_fit": int(train[col].isna().sum())}
        kinds = [k for k in BASELINES if k not in args.skip] + ["ssm"]
        key = f"{s['name']}/{'val' if args.validate else 'test'}"
        for kind in kinds:
            if kind != "ssm" and f"{key}/{kind}" in cache:  # baselines: same for every variant
                for n in names:
                    results[n][kind] = cache[f"{key}/{kind}"][n]
                continue
            runs = [None] if kind != "ssm" else seeds
            per = {n: [] for n in names}
            for seed in runs:
                if kind != "ssm":  # baselines: univariate, one column at a time
                    fcs, sec, msgs, note = [], 0.0, [], ""
                    for col in cols:
                        est = make_model(kind, s["m"], params, seed, s["h"], args.horizon)
                        f, t, mm, _ = fit_predict(est, train[[col]], s["h"])
                        fcs.append(f), msgs.extend(mm)
                        sec += t
                    fc = np.concatenate(fcs, axis=1)
                else:
                    est = make_model(kind, s["m"], params, seed, s["h"], args.horizon)
                    fc, sec, msgs, note = fit_predict(est, train, s["h"])
                for n, sc in zip(names, score(fc, test, train, s["m"])):
                    per[n].append({**sc, "fit_s": sec / len(cols), "warnings": msgs,
                                   "note": note, "seed": seed,
                                   "forecast": fc[:, names.index(n)].round(6).tolist()})
                print(f"  {s['name']:<10s} {kind:<6s} seed={seed} fit {sec:6.1f}s  " +
                      " ".join(f"{n}={per[n][-1]['mase']:.3f}" for n in names)
                      + (f"  [{note[:40]}...{note[-10:]}]" if note else ""), flush=True)
            for n in names:
                results[n][kind] = summarise(per[n])
            if kind != "ssm" and args.cache:
                cache[f"{key}/{kind}"] = {n: results[n][kind] for n in names}
                Path(args.cache).write_text(json.dumps(cache))
    return {"results": results, "params": params, "seeds": seeds}


def summarise(runs: list[dict]) -> dict:
    out = {k: float(np.mean([r[k] for r in runs])) for k in ("mase", "mae", "jump", "rough",
                                                             "fit_s")}
    out["mase_std"] = float(np.std([r["mase"] for r in runs]))
    out["runs"] = runs
    return out


def targets(results: dict) -> tuple[dict, list[str]]:
    """Mean MASE per model over the series and the PASS / FAIL lines of (a) and (b)."""
    models = [k for k in ("snaive", "ets", "uc", "ssm") if all(k in r for r in results.values())]
    means = {k: float(np.mean([r[k]["mase"] for r in results.values()])) for k in models}
    lines = []
    base = {k: v for k, v in means.items() if k in BASELINES}
    if "ssm" in means and base:
        best = min(base, key=base.get)
        ok = means["ssm"] <= base[best]
        lines.append(f"(a) {'PASS' if ok else 'FAIL'}: SSM mean MASE {means['ssm']:.3f} vs best "
                     f"baseline {best} {base[best]:.3f}")
    if "ssm" in means and "snaive" in means:
        bad = [f"{n} ({r['ssm']['mase']:.3f} > 1.1 x {r['snaive']['mase']:.3f})"
               for n, r in results.items() if r["ssm"]["mase"] > 1.1 * r["snaive"]["mase"]]
        lines.append(f"(b) {'PASS' if not bad else 'FAIL'}: SSM within 1.1 x seasonal naive on "
                     f"every series" + ("" if not bad else "; worse on: " + ", ".join(bad)))
    return means, lines


def table(results: dict, means: dict) -> str:
    """Markdown table: per series MASE of each model, SSM mean +- std, jump, fit seconds."""
    models = [k for k in ("snaive", "ets", "uc") if k in means]
    head = ("| series | freq | h | " + " | ".join(models) + " | SSM (mean ± std) | SSM/snaive "
            "| jump SSM | jump " + " | jump ".join(models) + " | rough SSM | fit s SSM | fit s "
            + " | fit s ".join(models) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n, r in results.items():
        ssm = r["ssm"]
        flag = " *" if any("lookback" in x["note"] for x in ssm["runs"]) else ""
        lines.append(
            f"| {n}{flag} | {r['freq']} | {r['h']} | "
            + " | ".join(f"{r[k]['mase']:.3f}" for k in models)
            + f" | {ssm['mase']:.3f} ± {ssm['mase_std']:.3f} | "
            + (f"{ssm['mase'] / r['snaive']['mase']:.2f}" if "snaive" in r else "-")
            + f" | {ssm['jump']:.2f} | " + " | ".join(f"{r[k]['jump']:.2f}" for k in models)
            + f" | {ssm['rough']:.2f} | {ssm['fit_s']:.1f} | "
            + " | ".join(f"{r[k]['fit_s']:.2f}" for k in models) + " |")
    lines.append("| **mean** | | | " + " | ".join(f"**{means[k]:.3f}**" for k in models)
                 + f" | **{means.get('ssm', float('nan')):.3f}** |" + " |" * (len(models) + 4
                                                                                + len(models)))
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, torch {torch.__version__} on 1 thread (shared 2-core machine), "
            f"python {platform.python_version()}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--params", default="", help="JSON of SSMForecaster parameters to override")
    p.add_argument("--horizon", choices=("default", "test"), default="default",
                   help="'test': horizon = the forecast length; 'default': the estimator's")
    p.add_argument("--validate", action="store_true",
                   help="score on the last test-length block of the training part")
    p.add_argument("--seeds", type=int, default=5, help="SSM seeds 0..N-1")
    p.add_argument("--series", nargs="*", default=None, help="subset of dataset names")
    p.add_argument("--skip", nargs="*", default=[], choices=BASELINES, help="baselines to skip")
    p.add_argument("--cache", default="", help="JSON file caching the baselines' results")
    p.add_argument("--tag", default="", help="write short_series_<tag>.json (no .md)")
    p.add_argument("--render", default="", help="print the report of a saved JSON and exit")
    args = p.parse_args(argv)
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return
    import ssmts

    t0 = time.perf_counter()
    out = run(args)
    means, lines = targets(out["results"])
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=HERE).stdout.strip()
    except OSError:
        rev = "?"
    meta = {"command": "python benchmarks/bench_short.py " + " ".join(
        f"'{a}'" if " " in a or "{" in a else a for a in (argv or sys.argv[1:])),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "git": rev, "mode": "validation" if args.validate else "test",
        "horizon": args.horizon, "ssmts": str(Path(ssmts.__file__).parent),
        "ssmts_rev": (lambda f: f.read_text().strip() if f.is_file() else rev)(
            Path(ssmts.__file__).parents[1] / "REV"), "seeds": out["seeds"], "params": out["params"],
        "total_s": round(time.perf_counter() - t0, 1)}
    doc = {"meta": meta, "mean_mase": means, "targets": lines, "results": out["results"]}
    print("\n" + table(out["results"], means) + "\n")
    print("mean MASE: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    print("\n".join(lines) + f"\ntotal {meta['total_s']:.0f} s")
    name = f"short_series_{args.tag}" if args.tag else "short_series"
    (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1))
    if not args.tag:
        (HERE / f"{name}.md").write_text(render(doc))


def render(doc: dict) -> str:
    """Markdown report of a saved run (``--render FILE.json`` prints it)."""
    meta, lines = doc["meta"], doc["targets"]
    return (f"# Short real series: SSMForecaster vs seasonal naive / ETS / UC\n\n"
            f"Command: `{meta['command']}`  \nDate: {meta['date']}  \nMachine: "
            f"{meta['machine']}  \nssmts: {meta['ssmts']} at commit {meta['ssmts_rev']} (a "
            f"`git archive` snapshot on PYTHONPATH when not the working tree)  \n"
            f"Scored on: {meta['mode']} block; SSM seeds {meta['seeds']}, params "
            f"{meta['params'] or 'defaults'}, horizon {meta['horizon']}; total "
            f"{meta['total_s']:.0f} s\n\nMASE per series (* = lookback clipped: the series "
            f"is shorter than lookback + horizon). jump = |forecast[0] - last observed| / "
            f"MASE scale; rough = mean |forecast step| / mean |truth step|.\n\n"
            f"{table(doc['results'], doc['mean_mase'])}\n\n"
            + "\n".join(f"- {ln}" for ln in lines) + "\n\nSee `bench_short.py`'s docstring "
            "for the series, splits and metrics; `NOTES_short.md` for the variants.\n")

if __name__ == "__main__":
    main()
