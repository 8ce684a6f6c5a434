"""Irregular ETTh1: the same SSMForecaster given the true gaps vs one that ignores them.

Issue 15, item 6. GPU run (from the repository root)::

    SSMTS_DATA=.ltsf_data python benchmarks/bench_irregular.py --horizons 96 192 336 720 \
        --seeds 0 --drop-seeds 0 --device cuda --workers 8 --threads 1 --epochs 10 \
        --params '{"lr":1e-3,"channel":"independent","dropout":0.1}' \
        --out benchmarks/irregular_etth1

    python benchmarks/bench_irregular.py --report benchmarks/irregular_etth1.jsonl \
        --horizons 96 192 336 720 --out benchmarks/irregular_etth1   # re-render only

CPU smoke run (minutes; numbers are not results)::

    python benchmarks/bench_irregular.py --horizons 96 --epochs 1 --device cpu \
        --params '{"d_model":16,"n_layers":1}' --max-train-windows 400 \
        --out /tmp/irregular_smoke

Protocol
--------
ETTh1 is loaded and scaled by the standard protocol (``ssmts.datasets.ltsf.load_ltsf``:
borders 8640 / 11520 / 14400 on the ORIGINAL rows, one scaler fitted on the original
training rows). Then ``round(drop * 14400)`` of the rows [0, 14400) are dropped at random
(``numpy.random.default_rng(drop_seed).choice``, no replacement; the order is kept). Each
split keeps its surviving rows (p1 / p2 / p3 = surviving rows before 8640 / 11520 / 14400).
Windows are counted in OBSERVATIONS: lookback = 96 surviving rows, horizon H = the next H
surviving rows; every stride-1 window of surviving positions as in the regular protocol:
train [0, p1), validation [p1 - 96, p2), test [p2 - 96, p3) (targets inside the split,
context reaching back).

Two models per (drop seed, H, seed), same hyper-parameters and seed, ``scaler="none"``,
fitted through the public ``fit`` on the surviving rows [0, p2) with ``val_size = p2 - p1``
(an int counts rows per series, irregular index or not, so the estimator's split is
exactly the protocol's):

* ``true``: the surviving rows with their true hourly stamps (irregular DatetimeIndex);
  the estimator measures time in its inferred step (``index_meta_.unit``: the median gap,
  or 1 h when the gaps' minimum equals their median: a grid with holes);
* ``ignored``: the same rows with a regular hourly index (row i at start + i h), gaps 1.

Every validation / test window is scored in batches through ``est.net_.forward`` with the
model's own gaps (``true``: the elapsed time between surviving rows in the estimator's
unit, from ``index_meta_.to_steps``, context and future; ``ignored``: all ones). Two test
windows (first, last) are checked against ``predict`` (``true``: ``predict(context,
at=<true future stamps>)``; ``ignored``: ``predict(context, h=H)``) and, for ``true``,
against the lower-level path (the context read with ``like=index_meta_``, the real gap
before its first row, ``origin_from_tail`` + ``rollout``): see NOTES_irregular.md for
why the public path can differ. Metrics are MSE / MAE on the protocol-scaled values.
Results: ``<out>.jsonl`` (appended per job), ``<out>.json``, ``<out>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

MODELS = ("true", "ignored")
_CACHE: dict = {}


def surviving(drop: float, drop_seed: int, lookback: int = 96, name: str = "ETTh1") -> dict:
    """The protocol-scaled rows left after dropping ``drop`` of them (cached per process)."""
    key = (name, drop, drop_seed, lookback)
    if key not in _CACHE:
        import pandas as pd
        from ssmts.datasets.ltsf import load_ltsf

        d = load_ltsf(name, lookback)
        N = d.values.shape[0]  # rows [0, 14400)
        n_drop = round(drop * N)
        keep = np.sort(np.random.default_rng(drop_seed).choice(N, N - n_drop, replace=False))
        b1, b2, b3 = d.borders
        p1, p2, p3 = (int(np.searchsorted(keep, b)) for b in (b1, b2, b3))
        dates = pd.DatetimeIndex(d.dates[keep])
        hours = np.diff(dates) / pd.Timedelta(hours=1)  # float (n - 1,)
        _CACHE[key] = {"values": d.values[keep], "dates": dates, "keep": keep,
                       "p": (p1, p2, p3), "n_rows": N, "n_dropped": n_drop,
                       "columns": list(d.columns),
                       "gap_hours": {"median": float(np.median(hours)),
                                     "max": float(hours.max()), "mean": float(hours.mean())}}
    return _CACHE[key]


def index_for(D: dict, model: str):
    """The model's view of the stamps: true ones, or hourly by position."""
    import pandas as pd

    if model == "true":
        return D["dates"]
    return pd.date_range(D["dates"][0], periods=len(D["dates"]), freq="h")


def split_range(D: dict, split: str, L: int) -> tuple[int, int]:
    p1, p2, p3 = D["p"]
    return {"train": (0, p1), "val": (p1 - L, p2), "test": (p2 - L, p3)}[split]


def score(net, values, gaps, a: int, b: int, L: int, H: int, dev: str, batch: int = 512):
    """MSE / MAE of ``net`` over every stride-1 window of positions [a, b), and the
    outputs of the first and last window."""
    import torch

    n = b - a - L - H + 1
    wv = np.lib.stride_tricks.sliding_window_view(values[a:b], L + H, axis=0)  # (n', C, L+H)
    wg = np.lib.stride_tricks.sliding_window_view(gaps[a:b], L + H)  # (n', L+H)
    se = ae = 0.0
    cnt, ends = 0, {}
    with torch.no_grad():
        for s in range(0, n, batch):
            x = np.ascontiguousarray(wv[s:min(n, s + batch)].transpose(0, 2, 1))  # (b, L+H, C)
            g = torch.as_tensor(np.ascontiguousarray(wg[s:min(n, s + batch)]),
                                dtype=torch.float32, device=dev)
            xb = torch.as_tensor(x[:, :L], dtype=torch.float32, device=dev)
            out = net(xb, torch.ones_like(xb), g[:, :L], g[:, L:])[..., 0].double().cpu().numpy()
            if s == 0:
                ends[0] = out[0]
            if s + batch >= n:
                ends[n - 1] = out[-1]
            err = out - x[:, L:]
            se += float(np.sum(err ** 2))
            ae += float(np.sum(np.abs(err)))
            cnt += err.size
    return se / cnt, ae / cnt, n, ends


def repeat_last(values, a: int, b: int, L: int, H: int) -> dict:
    """The last context value repeated, on the same windows (the same for both models)."""
    w = np.lib.stride_tricks.sliding_window_view(values[a:b], L + H, axis=0)[:b - a - L - H + 1]
    err = w[:, :, L:] - w[:, :, L - 1:L]
    return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err)))}


def check_predict(est, D: dict, idx, gaps, q: int, L: int, H: int, model: str,
                  ref: np.ndarray) -> dict:
    """Public predict (and, for ``true``, the lower-level path) vs the batched output
    ``ref`` (H, C) for the window whose context starts at position q."""
    import pandas as pd

    from ssmts.data import to_series_data
    from ssmts.estimators import _rollout as ro

    ctx = pd.DataFrame(D["values"][q:q + L], index=idx[q:q + L], columns=D["columns"])
    fut = idx[q + L:q + L + H]
    if model == "ignored":
        p = est.predict(ctx, h=H).to_numpy()
        return {"public": float(np.max(np.abs(p - ref)))}
    p = est.predict(ctx, at=fut).to_numpy()
    own = to_series_data(ctx).index_meta  # what predict(context=...) infers from 96 stamps
    meta = est.index_meta_
    t = meta.to_steps(fut, 0)
    low = []
    for lead in (gaps[q], 1.0):  # the real gap before the context (as in training); 1
        data = dataclasses.replace(to_series_data(ctx, like=meta), lead_gap=np.array([lead]))
        origin, tail = est._origin_from(data, None)
        fg = np.diff(np.concatenate([[ro.last_time(tail)[0]], t]))[None]  # (1, H)
        low.append(est._point(ro.rollout(est.net_, origin, fg, None, H, est._point))[0])
    return {"public": float(np.max(np.abs(p - ref))),
            "lower": float(np.max(np.abs(low[0] - ref))),
            "public_vs_lower_lead1": float(np.max(np.abs(p - low[1]))),
            "context_unit_h": own.unit / np.timedelta64(1, "h"),
            "context_regular": bool(own.regular)}


def run_job(job: dict) -> dict:
    """Fit one model on one (drop seed, H, seed), score it; never raises."""
    t_start = time.time()
    try:
        import torch

        torch.set_num_threads(job["threads"])
        warnings.filterwarnings("ignore")
        import logging

        for lg in ("lightning", "lightning.pytorch"):
            logging.getLogger(lg).setLevel(logging.ERROR)
        import pandas as pd

        from ssmts.estimators import SSMForecaster

        L, H, model = job["lookback"], job["horizon"], job["model"]
        D = surviving(job["drop"], job["drop_seed"], L)
        p1, p2, _ = D["p"]
        idx = index_for(D, model)
        params = dict(job["params"], lookback=L, horizon=H, val_size=p2 - p1, scaler="none",
                      device=job["device"], random_state=job["seed"])
        n_tr = p1 - L - H + 1
        if job.get("max_train_windows") and n_tr > job["max_train_windows"]:
            params["stride"] = math.ceil(n_tr / job["max_train_windows"])  # smoke runs only
        est = SSMForecaster(**params)
        frame = pd.DataFrame(D["values"][:p2], index=idx[:p2], columns=D["columns"])
        t0 = time.perf_counter()
        est.fit(frame)
        fit_s = time.perf_counter() - t0
        meta = est.index_meta_
        t = meta.to_steps(idx, 0)  # every surviving row in the estimator's unit
        gaps = np.concatenate([[1.0], np.diff(t)])  # gap before each row (first: 1, unused)
        dev = "cuda" if job["device"] == "cuda" else "cpu"
        net = est.net_.to(dev).eval()
        res = {}
        for split in ("val", "test"):
            a, b = split_range(D, split, L)
            mse, mae, n, ends = score(net, D["values"], gaps, a, b, L, H, dev)
            res[split] = {"mse": mse, "mae": mae, "n_windows": n}
        est.net_ = net.cpu().eval()
        a, b = split_range(D, "test", L)
        checks = [check_predict(est, D, idx, gaps, a + w, L, H, model, ref)
                  for w, ref in sorted(ends.items())]
        fg = np.lib.stride_tricks.sliding_window_view(gaps[a + L:b], H).sum(1)  # future span
        vl = [float(v) for v in est.val_loss_]
        return dict(job, ok=True, val_mse=res["val"]["mse"], val_mae=res["val"]["mae"],
                    n_val=res["val"]["n_windows"], mse=res["test"]["mse"],
                    mae=res["test"]["mae"], n_test=res["test"]["n_windows"],
                    repeat_last=repeat_last(D["values"], a, b, L, H),
                    unit_h=meta.unit / np.timedelta64(1, "h"), regular=bool(meta.regular),
                    freq=meta.freq,
                    future_span_units={"median": float(np.median(fg)), "max": float(fg.max())},
                    stride=params.get("stride", est.stride), fit_s=fit_s,
                    epochs_run=len(est.train_loss_),
                    best_epoch=int(np.argmin(vl)) if vl else None, val_loss=vl,
                    # the estimator's validation windows are the protocol's: equal losses
                    val_loss_diff=abs((min(vl) if est.early_stopping else vl[-1]) - res["val"]["mse"])
                    if vl else None,
                    train_loss=[float(v) for v in est.train_loss_], checks=checks,
                    n_dropped=D["n_dropped"], p=D["p"], gap_hours=D["gap_hours"],
                    wall_s=time.time() - t_start)
    except Exception as exc:  # noqa: BLE001 -- record and go on
        import traceback

        return dict(job, ok=False, error=f"{type(exc).__name__}: {exc}",
                    trace=traceback.format_exc()[-2000:], wall_s=time.time() - t_start)


def summarise(rows: list) -> dict:
    """Per (drop seed, H): mean over seeds of both models on the same test windows."""
    by = {}
    for r in rows:
        if r.get("ok"):
            by.setdefault((r["drop_seed"], r["horizon"]), {}).setdefault(r["model"], []).append(r)
    out = []
    for (ds, H), m in sorted(by.items()):
        if not all(k in m for k in MODELS):
            continue
        seeds = sorted({r["seed"] for r in m["true"]} & {r["seed"] for r in m["ignored"]})
        pick = {k: [r for r in m[k] if r["seed"] in seeds] for k in MODELS}
        mean = lambda k, f, pick=pick: float(np.mean([r[f] for r in pick[k]]))
        t, i = pick["true"][0], pick["ignored"][0]
        out.append(dict(drop_seed=ds, horizon=H, seeds=seeds, n_test=t["n_test"],
                        n_val=t["n_val"], n_dropped=t["n_dropped"], p=t["p"],
                        gap_hours=t["gap_hours"], unit_h=t["unit_h"], regular=t["regular"],
                        future_span_units=t["future_span_units"],
                        **{f"{k}_{f}": mean(k, f) for k in MODELS
                           for f in ("mse", "mae", "val_mse", "fit_s", "epochs_run")},
                        ratio_mse=mean("true", "mse") / mean("ignored", "mse"),
                        ratio_mae=mean("true", "mae") / mean("ignored", "mae"),
                        repeat_last=t["repeat_last"], same_windows=t["n_test"] == i["n_test"]))
    return {"pairs": out}


def write_report(out: Path, rows: list, horizons, drop_seeds, meta: dict) -> dict:
    s = summarise(rows)
    need = {(ds, H) for ds in drop_seeds for H in horizons}
    got = {(p["drop_seed"], p["horizon"]) for p in s["pairs"]}
    won = all(p["true_mse"] < p["ignored_mse"] for p in s["pairs"])
    s["complete"] = need <= got
    s["pass"] = bool(s["complete"] and won)
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": s, "rows": rows}, indent=1, default=str))
    verdict = ("PASS" if s["pass"] else "FAIL") + (
        "" if s["complete"] else f" (incomplete: {len(got & need)} of {len(need)} pairs)")
    lines = [f"# Irregular ETTh1 (drop {meta['drop']:.0%}): true gaps vs ignored gaps", "",
             f"Command: `{meta['command']}`", "",
             (f"Device: {meta['device']}; host: {meta['host']}; params: "
             f"`{json.dumps(meta['params'])}`; "
             f"{sum(1 for r in rows if r.get('ok'))} jobs done, "
             f"{sum(1 for r in rows if not r.get('ok'))} failed."), "",
             *([(f"**Smoke run** (training windows thinned to <= {meta['max_train_windows']} "
                 "by the estimator's stride): not a result."), ""]
               if meta.get("max_train_windows") else []),
             (f"**{verdict}: true gaps beat ignored gaps at every horizon** (test MSE, mean over "
             "seeds, same test windows)."), "",
             ("Windows in observations (96 surviving rows in, the next H surviving rows out). "
             "MSE / MAE on the protocol-scaled values; ratio = true / ignored."), "",
             ("| drop seed | H | test windows | dropped | gap h (median / max) | unit of true "
              "| span of H in units (median / max) | true MSE / MAE | ignored MSE / MAE "
              "| ratio MSE | ratio MAE | repeat last | val MSE true / ign | fit s true / ign "
              "| epochs true / ign |"),
             "| " + " | ".join(["---"] * 15) + " |"]
    for p in s["pairs"]:
        g, rl, fs = p["gap_hours"], p["repeat_last"], p["future_span_units"]
        lines.append(
            f"| {p['drop_seed']} | {p['horizon']} | {p['n_test']} | {p['n_dropped']} | "
            f"{g['median']:g} / {g['max']:g} | {p['unit_h']:g} h"
            f"{' (grid)' if p['regular'] else ''} | {fs['median']:g} / {fs['max']:g} | "
            f"{p['true_mse']:.4f} / {p['true_mae']:.4f} | "
            f"{p['ignored_mse']:.4f} / {p['ignored_mae']:.4f} | {p['ratio_mse']:.3f} | "
            f"{p['ratio_mae']:.3f} | {rl['mse']:.3f} / {rl['mae']:.3f} | "
            f"{p['true_val_mse']:.4f} / {p['ignored_val_mse']:.4f} | "
            f"{p['true_fit_s']:.0f} / {p['ignored_fit_s']:.0f} | "
            f"{p['true_epochs_run']:.0f} / {p['ignored_epochs_run']:.0f} |")
    lines += ["", "## Every job", "", ("| drop seed | H | model | seed | val MSE | test MSE | "
              "test MAE | best epoch | stride | fit s | predict check (max abs diff) |"),
              "| " + " | ".join(["---"] * 11) + " |"]
    for r in sorted(rows, key=lambda r: (r["drop_seed"], r["horizon"], r["model"], r["seed"])):
        head = f"| {r['drop_seed']} | {r['horizon']} | {r['model']} | {r['seed']} |"
        if not r.get("ok"):
            lines.append(f"{head} failed: {r['error'][:100]} | | | | | | |")
            continue
        c = r["checks"]
        ck = "public " + " / ".join(f"{x['public']:.1e}" for x in c)
        if "lower" in c[0]:
            ck += ("; lower " + " / ".join(f"{x['lower']:.1e}" for x in c)
                   + "; context unit " + " / ".join(f"{x['context_unit_h']:g}h" for x in c)
                   + f" (fitted {r['unit_h']:g}h)")
        lines.append(f"{head} {r['val_mse']:.4f} | {r['mse']:.4f} | {r['mae']:.4f} | "
                     f"{r['best_epoch']} | {r['stride']} | {r['fit_s']:.0f} | {ck} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return s


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder of ETTh1.csv.gz (default $SSMTS_DATA "
                    "or ../shared/data beside the repository)")
    ap.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds")
    ap.add_argument("--drop", type=float, default=0.5, help="fraction of rows dropped")
    ap.add_argument("--drop-seeds", type=int, nargs="+", default=[0],
                    help="seeds of the dropped rows (each gives its own data set)")
    ap.add_argument("--backbone", default="s5")
    ap.add_argument("--epochs", type=int, default=None, help="max_epochs (default: estimator's)")
    ap.add_argument("--params", default="{}", help="JSON of other SSMForecaster params")
    ap.add_argument("--lookback", type=int, default=96)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--max-train-windows", type=int, default=None,
                    help="smoke runs only: raise the estimator's stride to keep at most this "
                    "many training windows (validation / test windows are all kept)")
    ap.add_argument("--out", default="benchmarks/irregular_etth1")
    ap.add_argument("--report", nargs="*", default=None, help="only re-render these jsonl "
                    "files into <out>.json/.md (a job repeated across files counts once)")
    args = ap.parse_args(argv)
    if args.data:
        os.environ["SSMTS_DATA"] = str(Path(args.data).resolve())
    from ssmts.estimators import SSMForecaster

    params = SSMForecaster().get_params()  # the estimator's defaults
    params.update(json.loads(args.params), backbone=args.backbone)
    if args.epochs is not None:
        params["max_epochs"] = args.epochs
    for k in ("lookback", "horizon", "val_size", "scaler", "device", "random_state"):
        params.pop(k, None)  # set per job by the protocol
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python " + " ".join(sys.argv), "device": args.device,
            "host": platform.node(), "drop": args.drop, "drop_seeds": args.drop_seeds,
            "seeds": args.seeds, "params": params, "lookback": args.lookback,
            "workers": args.workers, "max_train_windows": args.max_train_windows,
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if args.report is not None:
        every, rows, seen = [], [], set()
        for f in args.report:
            with open(f) as fh:
                every += [json.loads(x) for x in fh if x.strip()]
        for r in every:
            key = (r["drop_seed"], r["horizon"], r["model"], r["seed"], r["ok"])
            if key not in seen:
                seen.add(key)
                rows.append(r)
        meta.update(host="(from " + ", ".join(args.report) + ")", params=rows[0]["params"],
                    device=rows[0]["device"], max_train_windows=rows[0]["max_train_windows"])
        s = write_report(out, rows, args.horizons, args.drop_seeds, meta)
        print(out.with_suffix(".md").read_text())
        return
    jobs = [{"drop": args.drop, "drop_seed": ds, "horizon": H, "model": m, "seed": s,
             "params": params, "lookback": args.lookback, "device": args.device,
             "threads": args.threads, "max_train_windows": args.max_train_windows}
            for ds in args.drop_seeds for H in sorted(args.horizons, reverse=True)
            for s in args.seeds for m in MODELS]
    for ds in args.drop_seeds:
        D = surviving(args.drop, ds, args.lookback)
        print(f"drop seed {ds}: {D['n_dropped']} of {D['n_rows']} rows dropped; surviving "
              f"train/val/test {D['p'][0]}/{D['p'][1] - D['p'][0]}/{D['p'][2] - D['p'][1]}; "
              f"gap hours {D['gap_hours']}", flush=True)
    print(f"{len(jobs)} jobs, {args.workers} workers, device {args.device}", flush=True)
    t0, rows = time.time(), []
    import multiprocessing as mp

    with open(out.with_suffix(".jsonl"), "a") as jl, ProcessPoolExecutor(
            args.workers, mp_context=mp.get_context("spawn")) as ex:
        pending = {ex.submit(run_job, j) for j in jobs}
        while pending:
            fin, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fu in fin:
                r = fu.result()
                rows.append(r)
                jl.write(json.dumps(r, default=str) + "\n")
                jl.flush()
                msg = (f"val {r['val_mse']:.4f} test {r['mse']:.4f}/{r['mae']:.4f} unit "
                       f"{r['unit_h']:g}h ep {r['epochs_run']} fit {r['fit_s']:.0f}s checks "
                       f"{r['checks']}" if r["ok"] else f"FAILED {r['error'][:300]}")
                print(f"[{time.time() - t0:5.0f}s] drop seed {r['drop_seed']} H={r['horizon']} "
                      f"{r['model']} seed {r['seed']}: {msg}", flush=True)
    meta["wall_s"] = time.time() - t0
    s = write_report(out, rows, args.horizons, args.drop_seeds, meta)
    print(out.with_suffix(".md").read_text())
    print(f"done in {meta['wall_s']:.0f} s: {'PASS' if s['pass'] else 'FAIL'}")


if __name__ == "__main__":
    main()
