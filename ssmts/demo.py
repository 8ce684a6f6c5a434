"""``ssmts demo``: forecast weekly Mauna Loa CO2 two years ahead, every model tuned the same way.

The data: statsmodels' weekly CO2 record (1958-2001, 2284 weeks on a ``W-SAT``
grid, its 59 missing weeks kept as NaN and masked by every model), cut into
three consecutive parts:

* **train**: everything before the validation weeks,
* **validation**: the 104 weeks before the test weeks,
* **test**: the last 104 weeks.

Every model gets the same protocol: each of its candidate settings is fitted on
*train* and forecasts the validation weeks in one go; the candidate with the
lowest validation MAE is refitted on *train + validation* and forecasts the
test weeks in one go, which are scored once (MAE and MSE, missing weeks left
out). The test weeks take no part in any choice. The models and their
candidates (full run):

* :class:`ssmts.estimators.SSMForecaster` (S5 backbone) on the raw series with
  per-window normalisation: lookback 52 or 104 weeks with lr 1e-2, or lookback
  104 with lr 3e-3 (:func:`_ssm_candidates`). The chosen setting is refitted
  with seeds 0, 1 and 2; its test row is the mean over the seeds, printed with
  their standard deviation.
* seasonal naive (the value 52 weeks earlier): no setting to choose.
* statsmodels UnobservedComponents: ``"local linear trend"`` or ``"smooth trend"``,
  each with 2 or 3 harmonics of a 52.18-week trigonometric seasonal.
* statsmodels ETS (additive error, trend and 52-week season), with or without
  a damped trend.

The run prints every candidate's validation score, the chosen settings, the
test ranking (whichever model wins) and the SSM's spread over seeds; the same
goes to ``metrics.json`` (and the forecasts to ``forecast.png`` when matplotlib
is installed) in ``out``. ``quick=True`` is a smoke test: a tiny SSM, one
candidate per model, one seed, no ETS (the slowest baseline) and the last 8
years before the validation weeks; the protocol is the same but its numbers
are no benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

TEST = 104  # weeks scored once, at the end
VALIDATION = 104  # weeks before them, for choosing settings
SEASON = 52.18  # weeks per year
SSM_SEEDS = (0, 1, 2)
QUICK_TRAIN = 416  # quick mode: the last 8 years before the validation weeks
ETS_QUICK = ("skipped in quick mode, its fits of 52 seasonal states being the slowest of "
             "the baselines; the full run fits it and prints its fit times")



# -- the output folder ----------------------------------------------------------------------------
def out_problem(out: Any) -> str | None:
    """Why the folder ``out`` cannot take the demo's files, or None when it can.

    Creates ``out`` (and its parents) when missing and checks that a file can be
    written there, so a bad path fails before minutes of fitting.

    Parameters
    ----------
    out : str or path-like
        The demo's output folder.

    Returns
    -------
    str or None
        ``"<what is wrong>; <what to do>"``, or None when the folder is usable.
    """
    path = os.fspath(out)
    fix = "give a folder you can write to (it is created when missing)"
    if not path:
        return f"the path is empty; {fix}"
    if os.path.exists(path) and not os.path.isdir(path):
        return f"is an existing file, not a folder; {fix}, or move the file away"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is a file, so no folder can be made under it; {fix}"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder ({exc.strerror or exc}); {fix}"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write in the folder ({exc.strerror or exc}); {fix}"
    return None


# -- data ----------------------------------------------------------------------------------------
def _load_co2() -> pd.DataFrame:
    """statsmodels' weekly CO2 as a one-column DataFrame with a W-SAT DatetimeIndex."""
    from statsmodels.datasets import co2

    return co2.load_pandas().data[["co2"]].asfreq("W-SAT")


def _span(part: pd.DataFrame) -> dict:
    return {"start": str(part.index[0].date()), "end": str(part.index[-1].date()),
            "weeks": len(part), "observed": int(part["co2"].notna().sum())}


def _split(df: pd.DataFrame, quick: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, test): consecutive, test = the last TEST weeks."""
    test = df.iloc[-TEST:]
    val = df.iloc[-TEST - VALIDATION:-TEST]
    train = df.iloc[:-TEST - VALIDATION]
    if quick:
        train = train.iloc[-QUICK_TRAIN:]
    return train, val, test


# -- models and their candidates ------------------------------------------------------------------
@dataclass
class _Model:
    """A model, its candidate settings and how to build it (``make(settings, seed)``)."""

    name: str
    candidates: list
    make: Callable[[dict, int], Any]
    describe: Callable[[dict], str]
    seeds: tuple = (0,)


def _ssm_candidates(quick: bool) -> list:
    """SSMForecaster candidates: (lookback, lr) = (52, 1e-2), (104, 1e-2), (104, 3e-3).

    The rest is fixed: S5, d_model 32, 2 layers, d_state 16, 16 epochs over
    windows 2 weeks apart in batches of 16, MSE loss, per-window mean
    normalisation, a direct 104-week head. Three candidates plus three seeds of
    the chosen one are sized for the demo's budget of about 6 minutes on an
    otherwise idle 2-core CPU (the run prints its own time).
    """
    base = dict(backbone="s5", horizon=TEST, loss="mse", scaler="series", window_norm="mean",
                device="cpu", val_size=0, early_stopping=False, verbose=False)
    if quick:
        return [{**base, "lookback": 52, "lr": 1e-2, "d_model": 8, "n_layers": 1,
                 "d_state": 8, "max_epochs": 1, "batch_size": 64, "stride": 8}]
    full = {**base, "d_model": 32, "n_layers": 2, "d_state": 16, "max_epochs": 16,
            "batch_size": 16, "stride": 2}
    return [{**full, "lookback": 52, "lr": 1e-2}, {**full, "lookback": 104, "lr": 1e-2},
            {**full, "lookback": 104, "lr": 3e-3}]


def _models(quick: bool) -> tuple[list, dict]:
    """The models to compare and {name: why it is left out}."""
    from ssmts.estimators.baselines import SeasonalNaiveForecaster
    from ssmts.estimators.classical import StatsmodelsForecaster

    models, omitted = [], {}
    try:
        from ssmts.estimators import SSMForecaster
    except ImportError as exc:  # the deep forecaster is missing from this install
        omitted["SSMForecaster (S5)"] = f"not importable ({exc})"
    else:
        models.append(_Model(
            "SSMForecaster (S5)", _ssm_candidates(quick),
            lambda s, seed: SSMForecaster(**s, random_state=seed),
            lambda s: f"lookback {s['lookback']}, lr {s['lr']:g}, {s['max_epochs']} epoch(s)",
            seeds=(0,) if quick else SSM_SEEDS))
    models.append(_Model(
        "seasonal naive (52)", [{"season_length": 52}],
        lambda s, seed: SeasonalNaiveForecaster(**s),
        lambda s: f"{s['season_length']} weeks back (no setting to choose)"))
    uc = [{"trend": t, "harmonics": h} for t in ("local linear trend", "smooth trend")
          for h in (2, 3)]
    if quick:
        uc = [{"trend": "smooth trend", "harmonics": 2}]
    models.append(_Model(
        "UnobservedComponents", uc,
        lambda s, seed: StatsmodelsForecaster("unobserved_components", seasonal_periods=SEASON,
                                              maxiter=50 if quick else 200, **s),
        lambda s: f"{s['trend']}, {s['harmonics']} harmonics"))
    if quick:
        omitted["ETS (52-week season)"] = ETS_QUICK
    else:
        models.append(_Model(
            "ETS (52-week season)", [{"damped_trend": False}, {"damped_trend": True}],
            lambda s, seed: StatsmodelsForecaster("ets", seasonal_periods=52, trend=True, **s),
            lambda s: "additive, damped trend" if s["damped_trend"] else "additive trend"))
    return models, omitted


# -- the protocol ---------------------------------------------------------------------------------
def _errors(pred: pd.DataFrame, truth: pd.DataFrame, what: str) -> tuple[float, float]:
    """(MAE, MSE) over the observed weeks of ``truth``; the forecast must cover exactly them."""
    if not pred.index.equals(truth.index):
        raise RuntimeError(f"{what}: the forecast covers {pred.index[0]} .. {pred.index[-1]}, "
                           f"not the scored weeks {truth.index[0]} .. {truth.index[-1]}")
    y = truth["co2"].to_numpy()
    ok = ~np.isnan(y)
    err = pred["co2"].to_numpy()[ok] - y[ok]
    return float(np.mean(np.abs(err))), float(np.mean(err ** 2))


@contextlib.contextmanager
def _one_thread():
    """torch and the BLAS / OpenMP pools (statsmodels' Kalman filters) on one CPU
    thread each, restored afterwards.

    Measured on the shared 2-core machine this demo was sized on: one torch thread
    trains the SSM as fast as two when the machine is idle and about 3x faster
    than two when another process keeps a core busy (the two threads wait on each
    other); a 52-week ETS fit took 25 s with one BLAS thread beside other work,
    and 200 s and more with two.
    """
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # scikit-learn brings it; without it the pools stay as they are
            pass
        else:
            stack.enter_context(threadpool_limits(limits=1))
        try:
            import torch
        except ImportError:  # no SSM in this install
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, before)
        yield


def _fit(est: Any, data: pd.DataFrame) -> tuple[Any, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # masked-value notes, statsmodels convergence chatter
        est.fit(data)
    return est, time.perf_counter() - t0


def _evaluate(model: _Model, train: pd.DataFrame, val: pd.DataFrame,
             test: pd.DataFrame, log: Callable[[str], None] = print) -> tuple[dict, pd.DataFrame]:
    """Choose ``model``'s candidate on ``val``, refit it on train + val, score ``test`` once.

    Parameters
    ----------
    model : _Model
        The model, its candidates and its seeds.
    train, val, test : DataFrame
        Consecutive parts of one weekly series (``test`` right after ``val``).
    log : callable
        Receives progress lines.

    Returns
    -------
    (dict, DataFrame)
        The report entry (``candidates`` with their validation scores, ``chosen``,
        ``test``) and the first seed's test forecast. Only ``train`` and ``val``
        reach the choice: ``test`` is read after it, for scoring.
    """
    cands = []
    for settings in model.candidates:
        log(f"  {model.name}: {model.describe(settings)} on train ...")
        est, secs = _fit(model.make(settings, model.seeds[0]), train)
        pred = est.predict(len(val))
        mae, mse = _errors(pred, val, f"{model.name} (validation)")
        cands.append({"settings": settings, "label": model.describe(settings),
                      "fitted_on": _span(train), "forecast_from": str(pred.index[0].date()),
                      "validation_mae": mae, "validation_mse": mse,
                      "fit_seconds": round(secs, 2), "seed": model.seeds[0]})
        log(f"    validation MAE {mae:.3f} ppm ({secs:.1f} s)")
    best = int(np.argmin([c["validation_mae"] for c in cands]))  # first one on ties
    chosen = model.candidates[best]
    history = pd.concat([train, val])
    per_seed, first_pred = [], None
    for seed in model.seeds:
        seed_note = f", seed {seed}" if len(model.seeds) > 1 else ""
        log(f"  {model.name}: chosen {model.describe(chosen)}, refitted on train + validation"
            f"{seed_note} ...")
        est, secs = _fit(model.make(chosen, seed), history)
        pred = est.predict(len(test))
        mae, mse = _errors(pred, test, f"{model.name} (test)")
        per_seed.append({"seed": seed, "mae": mae, "mse": mse, "fit_seconds": round(secs, 2)})
        log(f"    refitted in {secs:.1f} s")
        first_pred = pred if first_pred is None else first_pred
    maes = np.array([r["mae"] for r in per_seed])
    entry = {
        "candidates": cands, "chosen_index": best, "chosen": chosen,
        "chosen_label": model.describe(chosen),
        "chosen_validation_mae": cands[best]["validation_mae"],
        "test": {"fitted_on": _span(history), "forecast_from": str(first_pred.index[0].date()),
                 "mae": float(maes.mean()), "mse": float(np.mean([r["mse"] for r in per_seed])),
                 "mae_std": float(maes.std(ddof=1)) if len(maes) > 1 else None,
                 "seeds": [r["seed"] for r in per_seed], "per_seed": per_seed,
                 "fit_seconds": round(float(np.mean([r["fit_seconds"] for r in per_seed])), 2)}}
    return entry, first_pred


# -- report ---------------------------------------------------------------------------------------
def _plot(out: str, history: pd.DataFrame, test: pd.DataFrame, forecasts: dict) -> str:
    """Write forecast.png; returns a line saying where it went or why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: forecast.png skipped (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(history.index, history["co2"], color="0.55", lw=1, label="history")
    ax.plot(test.index, test["co2"], color="k", lw=1.5, label="test weeks (truth)")
    for name, pred in forecasts.items():
        ax.plot(pred.index, pred["co2"], lw=1.5, label=name)  # the first seed's forecast
    ax.set_ylabel("CO2 (ppm)")
    ax.set_title(f"Mauna Loa weekly CO2: {len(test)}-week forecasts from {test.index[0].date()}, "
                 "settings chosen on the 104 weeks before them")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "forecast.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def _print_report(report: dict) -> None:
    models = report["models"]
    print(f"\nselection: validation MAE (ppm) of each candidate, fitted on train "
          f"({report['split']['train']['start']} .. {report['split']['train']['end']}):")
    for name, m in models.items():
        for i, c in enumerate(m["candidates"]):
            mark = "  <- chosen" if i == m["chosen_index"] else ""
            label = name if i == 0 else ""
            print(f"  {label:<22}{c['label']:<44}{c['validation_mae']:>7.3f}{mark}")
    for name, why in report["omitted"].items():
        print(f"  {name}: left out: {why}")
    t = report["split"]["test"]
    print(f"\ntest: the last {t['weeks']} weeks ({t['start']} .. {t['end']}, {t['observed']} "
          f"observed), forecast in one go by each chosen model refitted on train + validation; "
          "errors in ppm:")
    print(f"  {'rank':<6}{'model':<22}{'chosen':<44}{'MAE':>7}{'MSE':>8}  {'fit (s)':>7}")
    for rank, name in enumerate(report["ranking"], 1):
        m = models[name]
        r = m["test"]
        print(f"  {rank:<6}{name:<22}{m['chosen_label']:<44}{r['mae']:>7.3f}{r['mse']:>8.3f}  "
              f"{r['fit_seconds']:>7.1f}")
    print("  fit (s): one refit on train + validation (for a model with several seeds, their "
          "mean)")
    for name, m in models.items():
        r = m["test"]
        if r["mae_std"] is not None:
            seeds = ", ".join(f"{p['mae']:.3f}" for p in r["per_seed"])
            print(f"  {name}: test MAE over seeds {r['seeds']}: {seeds} -> mean {r['mae']:.3f} "
                  f"+- {r['mae_std']:.3f} (std); its row is the mean, its plot seed "
                  f"{r['seeds'][0]}")
        elif len(r["seeds"]) == 1 and name.startswith("SSM"):
            print(f"  {name}: one seed only (quick mode), no spread measured")
    winner = report["ranking"][0]
    print(f"  lowest test MAE: {winner} ({models[winner]['test']['mae']:.3f} ppm)")
    if report["quick"]:
        print("  quick mode: a smoke test of the protocol (tiny SSM, 1 epoch, one candidate per "
              "model, one seed, 8 years of training data); these numbers rank nothing")


def run_demo(out: str = "ssmts_demo", quick: bool = False) -> int:
    """Choose on validation, score on test, report. Returns a process exit code (0).

    Parameters
    ----------
    out : str or path-like
        Folder for ``metrics.json`` and ``forecast.png`` (created when missing).
    quick : bool
        A smoke test: a tiny SSM, one candidate per model and one seed on the
        last 8 years before the validation weeks (well under a minute).

    Raises
    ------
    ValueError
        When ``out`` is a file or a folder that cannot be created or written
        (checked before any fitting).
    """
    t_start = time.perf_counter()
    problem = out_problem(out)
    if problem is not None:
        raise ValueError(f"out: {os.fspath(out)!r}: {problem}")
    out = os.fspath(out)
    df = _load_co2()
    n_missing = int(df["co2"].isna().sum())
    print(f"ssmts demo: Mauna Loa weekly CO2 (statsmodels.datasets.co2), {len(df)} weeks "
          f"{df.index[0].date()} .. {df.index[-1].date()}")
    print(f"  {n_missing} missing weeks kept as NaN on the weekly grid: every model masks "
          "them (nothing is interpolated)")
    train, val, test = _split(df, quick)
    split = {"train": _span(train), "validation": _span(val), "test": _span(test)}
    for part, s in split.items():
        print(f"  {part:<11}{s['start']} .. {s['end']}  ({s['weeks']} weeks)")
    print("  each model: candidates fitted on train, the lowest validation MAE chosen, refitted "
          "on train + validation, scored once on test")
    if quick:
        print("  quick mode: a smoke test (tiny SSM, one candidate per model, one seed)")
    models, omitted = _models(quick)
    rows, forecasts = {}, {}
    with _one_thread():
        for model in models:
            rows[model.name], forecasts[model.name] = _evaluate(
                model, train, val, test, log=lambda line: print(line, flush=True))
    ranking = sorted(rows, key=lambda n: rows[n]["test"]["mae"])
    report = {"dataset": "statsmodels co2 (weekly, W-SAT)", "n_weeks": len(df),
              "n_missing": n_missing, "missing_handling": "NaN on the weekly grid, masked",
              "quick": bool(quick), "split": split,
              "protocol": "candidates fitted on train and scored by validation MAE; the best "
                          "refitted on train + validation; test scored once",
              "selection_metric": "validation MAE", "models": rows, "ranking": ranking,
              "omitted": omitted}
    _print_report(report)
    report["seconds_total"] = round(time.perf_counter() - t_start, 2)
    path = os.path.join(out, "metrics.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"\nwrote {path}")
    print(_plot(out, pd.concat([train, val]).iloc[-4 * 52:], test, forecasts))
    print(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0
