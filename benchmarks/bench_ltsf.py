"""SSMForecaster under the standard long-horizon protocol: a validation-only recipe sweep.

    python benchmarks/bench_ltsf.py --sets ETTh1 ETTh2 ETTm1 exchange_rate \
        --horizons 96 192 336 720 --backbones s5 mamba --lrs 1e-3 3e-3 \
        --channels independent mixed --dropouts 0.1 0.2 --baseline \
        --epochs 10 --device cuda --workers 12 --budget-s 420 --out benchmarks/ltsf_sweep

    python benchmarks/bench_ltsf.py --report benchmarks/ltsf_sweep.jsonl [more.jsonl ...] \
        --out benchmarks/ltsf_sweep

Each job (set, horizon, backbone, config, seed) fits ``SSMForecaster`` through its public
``fit`` on a DataFrame of the protocol-scaled rows [0, end of validation) with
``scaler="none"`` and ``val_size`` = the validation rows, so the estimator's own split
gives exactly the protocol's training windows (rows [0, n_train)) and validation windows
(rows [n_train - L, end of validation)); early stopping (the estimator's patience 5)
restores the best validation epoch. The fitted network ``net_`` then scores every
validation and test window in batches (its ``forward`` on the context windows, the
computation ``predict`` performs through ``origin_from_tail`` + ``rollout`` for
one-block horizons); each job also checks two test windows against
``predict(context=...)`` and records the largest difference. Metrics are on the
protocol-scaled values (``ssmts.datasets.ltsf``).

Jobs run in a process pool (``spawn``), so one GPU stays busy with many small fits.
Results are appended to ``<out>.jsonl`` as they finish; ``<out>.json`` and
``<out>.md`` hold all rows, the anchors (repeat-last, channel-independent ridge) and,
per backbone, the configuration with the lowest mean validation MSE among those that
finished every (set, horizon) — selected on validation, never on test. With
``--budget-s`` no job starts after that many seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

BOLD = {"ETTh1": 0.423, "ETTh2": 0.367, "ETTm1": 0.376, "exchange_rate": 0.349}
BOLD_SRC = {"ETTh1": "Attraos", "ETTh2": "TimeXer", "ETTm1": "CMamba", "exchange_rate": "Attraos"}
_CACHE: dict = {}


def cfg_name(c: dict) -> str:
    return (f"{c['backbone']} lr={c['lr']:g} ch={c['channel']} do={c['dropout']:g} "
            f"ep={c['epochs']} bs={c['batch_size']}")


def _data(name: str, lookback: int):
    from ssmts.datasets.ltsf import load_ltsf

    if (name, lookback) not in _CACHE:
        _CACHE[(name, lookback)] = load_ltsf(name, lookback)
    return _CACHE[(name, lookback)]


def _frame(d, a: int, b: int):
    import pandas as pd

    idx = pd.date_range("2000-01-01", periods=d.values.shape[0], freq="h")[a:b]
    return pd.DataFrame(d.values[a:b], index=idx, columns=list(d.columns))


def _score(net, d, split: str, H: int, device: str, batch: int = 1024):
    """MSE / MAE of net over every window of split (scaled units), on ``device``."""
    import torch

    n = d.n_windows(split, H)
    se = ae = 0.0
    cnt = 0
    keep = []
    with torch.no_grad():
        for s in range(0, n, batch):
            x, y = d.windows(split, H, s, s + batch)
            xb = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
            b = xb.shape[0]
            out = net(xb, torch.ones_like(xb), torch.ones(b, d.lookback, device=device),
                      torch.ones(b, H, device=device))[..., 0].double().cpu().numpy()
            if s == 0:
                keep.append(out[:1])
            if s + batch >= n:
                keep.append(out[-1:])
            err = out - y
            se += float(np.sum(err ** 2))
            ae += float(np.sum(np.abs(err)))
            cnt += err.size
    return se / cnt, ae / cnt, n, keep


def run_job(job: dict) -> dict:
    """Fit one configuration on one (set, horizon) and score it; never raises."""
    t_start = time.time()
    try:
        import torch

        torch.set_num_threads(job["threads"])
        warnings.filterwarnings("ignore")
        import logging

        logging.getLogger("lightning").setLevel(logging.ERROR)
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        from ssmts.estimators import SSMForecaster

        c, H, L = job["config"], job["horizon"], job["lookback"]
        d = _data(job["set"], L)
        b1, b2, _ = d.borders
        est = SSMForecaster(backbone=c["backbone"], lookback=L, horizon=H, lr=c["lr"],
                            channel=c["channel"], dropout=c["dropout"], window_norm="mean",
                            max_epochs=c["epochs"], batch_size=c["batch_size"],
                            early_stopping=True, val_size=b2 - b1, scaler="none",
                            device=job["device"], random_state=job["seed"])
        t0 = time.perf_counter()
        est.fit(_frame(d, 0, b2))
        fit_s = time.perf_counter() - t0
        dev = "cuda" if job["device"] == "cuda" else "cpu"
        net = est.net_.to(dev).eval()
        val_mse, val_mae, n_val, _ = _score(net, d, "val", H, dev)
        mse, mae, n_test, ends = _score(net, d, "test", H, dev)
        est.net_ = net.cpu().eval()
        # check the batched scores against the public predict on the first / last test window
        a, _ = d.rows("test")
        n = d.n_windows("test", H)
        diffs = []
        for w, ref in zip((0, n - 1), ends):
            p = est.predict(_frame(d, a + w, a + w + L), h=H).to_numpy()
            diffs.append(float(np.max(np.abs(p - ref[0]))))
        vl = [float(v) for v in est.val_loss_]
        return dict(job, ok=True, val_mse=val_mse, val_mae=val_mae, n_val=n_val, mse=mse,
                    mae=mae, n_test=n_test, fit_s=fit_s, epochs_run=len(est.train_loss_),
                    best_epoch=int(np.argmin(vl)) if vl else None, val_loss=vl,
                    train_loss=[float(v) for v in est.train_loss_],
                    predict_max_abs_diff=max(diffs), wall_s=time.time() - t_start)
    except Exception as exc:  # record and go on: one failed fit must not stop the sweep
        import traceback

        return dict(job, ok=False, error=f"{type(exc).__name__}: {exc}",
                    trace=traceback.format_exc()[-2000:], wall_s=time.time() - t_start)


def anchors(sets, horizons, lookback: int) -> dict:
    from ssmts.datasets.ltsf import repeat_last, ridge_ci

    out = {}
    for s in sets:
        d = _data(s, lookback)
        for H in horizons:
            r = ridge_ci(d, H)
            out[f"{s}|{H}"] = {"repeat_last": repeat_last(d, H),
                               "ridge": {k: r[k] for k in ("mse", "mae", "alpha", "val_mse")}}
    return out


def select(rows: list, sets, horizons) -> dict:
    """Per backbone: mean val / test MSE of each config; the chosen one (lowest mean val MSE
    among configs complete over every (set, horizon))."""
    by = {}
    for r in rows:
        if r.get("ok"):
            by.setdefault(cfg_name(r["config"]), []).append(r)
    need = {(s, H) for s in sets for H in horizons}
    table = {}
    for name, rs in by.items():
        got = {(r["set"], r["horizon"]) for r in rs}
        table[name] = dict(backbone=rs[0]["config"]["backbone"], config=rs[0]["config"],
                           n=len(rs), complete=need <= got,
                           val_mse=float(np.mean([r["val_mse"] for r in rs])),
                           test_mse=float(np.mean([r["mse"] for r in rs])),
                           fit_s=float(np.sum([r["fit_s"] for r in rs])))
    chosen = {}
    for name, t in table.items():
        if t["complete"] and (t["backbone"] not in chosen
                              or t["val_mse"] < table[chosen[t["backbone"]]]["val_mse"]):
            chosen[t["backbone"]] = name
    return {"configs": table, "chosen": chosen}


def write_report(out: Path, rows: list, anc: dict, sets, horizons, meta: dict) -> None:
    sel = select(rows, sets, horizons)
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "anchors": anc, "selection": sel, "rows": rows}, indent=1, default=str))
    f3 = lambda v: "–" if v is None else f"{v:.3f}"
    lines = [f"# SSMForecaster, long-horizon protocol (L={meta['lookback']}), validation sweep",
             "", f"Command: `{meta['command']}`", "",
             f"Seeds: {meta['seeds']}; device: {meta['device']}; host: {meta['host']}; "
             f"{len([r for r in rows if r.get('ok')])} jobs done, "
             f"{len([r for r in rows if not r.get('ok')])} failed.", "",
             "MSE / MAE on the protocol-scaled values over every window. Configs are ranked "
             "by mean validation MSE over the (set, horizon) jobs they finished; only "
             "complete configs can be chosen.", "",
             "| config | jobs | complete | mean val MSE | mean test MSE | fit s (sum) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, t in sorted(sel["configs"].items(), key=lambda kv: (kv[1]["backbone"],
                                                                   kv[1]["val_mse"])):
        mark = " **chosen**" if sel["chosen"].get(t["backbone"]) == name else ""
        lines.append(f"| {name}{mark} | {t['n']} | {'yes' if t['complete'] else 'no'} | "
                     f"{t['val_mse']:.4f} | {t['test_mse']:.4f} | {t['fit_s']:.0f} |")
    ok = {(cfg_name(r["config"]), r["set"], r["horizon"]): r for r in rows if r.get("ok")}
    chosen = sel["chosen"]
    if chosen:
        bbs = sorted(chosen)
        lines += ["", "## Test MSE/MAE of the chosen configuration per backbone", "",
                  "| set | H | " + " | ".join(f"{b} ({chosen[b]})" for b in bbs)
                  + " | ridge (CI) | repeat last | bold bar (avg) |",
                  "| --- | --- | " + " | ".join("---" for _ in bbs) + " | --- | --- | --- |"]
        for s in sets:
            acc = {b: [] for b in bbs + ["ridge", "last"]}
            for H in horizons:
                cells = []
                for b in bbs:
                    r = ok.get((chosen[b], s, H))
                    cells.append(f"{f3(r and r['mse'])}/{f3(r and r['mae'])}")
                    if r:
                        acc[b].append((r["mse"], r["mae"]))
                a = anc.get(f"{s}|{H}", {})
                rg, rl = a.get("ridge", {}), a.get("repeat_last", {})
                acc["ridge"].append((rg.get("mse"), rg.get("mae")))
                acc["last"].append((rl.get("mse"), rl.get("mae")))
                lines.append(f"| {s} | {H} | " + " | ".join(cells)
                             + f" | {f3(rg.get('mse'))}/{f3(rg.get('mae'))}"
                             f" | {f3(rl.get('mse'))}/{f3(rl.get('mae'))} | |")
            avg = lambda v: (f"{np.mean([p[0] for p in v]):.3f}/{np.mean([p[1] for p in v]):.3f}"
                             if v and len(v) == len(horizons) and v[0][0] is not None else "–")
            lines.append(f"| {s} | avg | " + " | ".join(f"**{avg(acc[b])}**" for b in bbs)
                         + f" | {avg(acc['ridge'])} | {avg(acc['last'])} | "
                         f"{BOLD.get(s, '–')} ({BOLD_SRC.get(s, '')}) |")
    lines += ["", "## Every job", "",
              "| config | set | H | val MSE | test MSE | test MAE | epochs | best | fit s "
              "| predict diff |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (cfg_name(r["config"]), r["set"], r["horizon"])):
        if r.get("ok"):
            lines.append(f"| {cfg_name(r['config'])} | {r['set']} | {r['horizon']} | "
                         f"{r['val_mse']:.4f} | {r['mse']:.4f} | {r['mae']:.4f} | "
                         f"{r['epochs_run']} | {r['best_epoch']} | {r['fit_s']:.0f} | "
                         f"{r['predict_max_abs_diff']:.1e} |")
        else:
            lines.append(f"| {cfg_name(r['config'])} | {r['set']} | {r['horizon']} | failed: "
                         f"{r.get('error', '')[:80]} | | | | | | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def build_jobs(args) -> list:
    configs = []
    for bb in args.backbones:
        for ch in args.channels:
            for lr in args.lrs:
                for do in args.dropouts:
                    configs.append(dict(backbone=bb, lr=lr, channel=ch, dropout=do,
                                        epochs=args.epochs, batch_size=args.batch_size))
        if args.baseline:
            configs.append(dict(backbone=bb, lr=1e-2, channel="mixed", dropout=0.1,
                                epochs=args.epochs, batch_size=args.batch_size))
    # most informative first (channel, then lr, the baseline, then dropout), so a cut
    # budget leaves complete configs along the main axes
    def rank(c):
        if c["lr"] == 1e-2 and args.baseline and c["channel"] == "mixed":
            return (3, 0, 0, 0)
        return (0 if c["dropout"] == min(args.dropouts) else 4,
                args.lrs.index(c["lr"]) if c["lr"] in args.lrs else 9,
                args.channels.index(c["channel"]), 0)
    configs.sort(key=rank)
    # interleave backbones so a cut budget leaves complete configs of both
    order = []
    per = [[c for c in configs if c["backbone"] == bb] for bb in args.backbones]
    for k in range(max(len(p) for p in per)):
        order += [p[k] for p in per if k < len(p)]
    size = {"ETTm1": 4, "ETTm2": 4}
    jobs = []
    for c in order:
        for seed in args.seeds:
            for s in sorted(args.sets, key=lambda s: -size.get(s, 1)):
                for H in sorted(args.horizons, reverse=True):
                    jobs.append(dict(set=s, horizon=H, config=c, seed=seed,
                                     lookback=args.lookback, device=args.device,
                                     threads=args.threads))
    return jobs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder of the files (default $SSMTS_DATA "
                    "or ../shared/data beside the repository)")
    ap.add_argument("--sets", nargs="+", default=["ETTh1", "ETTh2", "ETTm1", "exchange_rate"])
    ap.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    ap.add_argument("--backbones", nargs="+", default=["s5", "mamba"])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3])
    ap.add_argument("--channels", nargs="+", default=["independent", "mixed"])
    ap.add_argument("--dropouts", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--baseline", action="store_true", help="add lr 1e-2, mixed, dropout 0.1")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lookback", type=int, default=96)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--budget-s", type=float, default=None, help="start no job after this")
    ap.add_argument("--max-jobs", type=int, default=None)
    ap.add_argument("--skip-done", nargs="*", default=[], help="jsonl files whose jobs to skip")
    ap.add_argument("--report", nargs="*", default=None, help="only re-render these jsonl files")
    ap.add_argument("--out", default="benchmarks/ltsf_sweep")
    args = ap.parse_args(argv)
    if args.data:
        os.environ["SSMTS_DATA"] = str(Path(args.data).resolve())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(command="python " + " ".join(sys.argv), seeds=args.seeds, device=args.device,
                host=platform.node(), lookback=args.lookback, workers=args.workers,
                started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if args.report is not None:
        rows, seen = [], set()
        for f in args.report:  # a job repeated in several files counts once (the first)
            for line in open(f):
                r = json.loads(line) if line.strip() else None
                key = r and (cfg_name(r["config"]), r["set"], r["horizon"], r["seed"], r["ok"])
                if r and key not in seen:
                    seen.add(key)
                    rows.append(r)
        meta["command"] = "python " + " ".join(sys.argv)
        meta.update(device=rows[0]["device"] if rows else "?", host="(from " + ", ".join(
            args.report) + ")")
        write_report(out, rows, anchors(args.sets, args.horizons, args.lookback), args.sets,
                     args.horizons, meta)
        print(out.with_suffix(".md").read_text())
        return
    t0 = time.time()
    anc = anchors(args.sets, args.horizons, args.lookback)
    print(f"anchors {time.time() - t0:.1f} s", flush=True)
    done = set()
    for f in args.skip_done:
        for line in open(f):
            r = json.loads(line)
            if r.get("ok"):
                done.add((cfg_name(r["config"]), r["set"], r["horizon"], r["seed"]))
    jobs = [j for j in build_jobs(args)
            if (cfg_name(j["config"]), j["set"], j["horizon"], j["seed"]) not in done]
    if args.max_jobs:
        jobs = jobs[:args.max_jobs]
    print(f"{len(jobs)} jobs, {args.workers} workers, device {args.device}", flush=True)
    rows = []
    jl = open(out.with_suffix(".jsonl"), "a")
    import multiprocessing as mp

    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as ex:
        pending, it = set(), iter(jobs)
        stop = False
        while True:
            while not stop and len(pending) < args.workers:
                if args.budget_s is not None and time.time() - t0 > args.budget_s:
                    stop = True
                    break
                j = next(it, None)
                if j is None:
                    stop = True
                    break
                pending.add(ex.submit(run_job, j))
            if not pending:
                break
            fin, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fu in fin:
                r = fu.result()
                rows.append(r)
                jl.write(json.dumps(r, default=str) + "\n")
                jl.flush()
                msg = (f"val {r['val_mse']:.4f} test {r['mse']:.4f}/{r['mae']:.4f} "
                       f"ep {r['epochs_run']} best {r['best_epoch']} fit {r['fit_s']:.0f}s "
                       f"diff {r['predict_max_abs_diff']:.1e}" if r["ok"]
                       else f"FAILED {r['error'][:300]}")
                print(f"[{time.time() - t0:5.0f}s] {cfg_name(r['config'])} {r['set']} "
                      f"H={r['horizon']}: {msg}", flush=True)
    jl.close()
    meta["wall_s"] = time.time() - t0
    write_report(out, rows, anc, args.sets, args.horizons, meta)
    sel = select(rows, args.sets, args.horizons)
    print(f"\ndone in {meta['wall_s']:.0f} s; chosen: {sel['chosen']}")
    for name, t in sorted(sel["configs"].items(), key=lambda kv: kv[1]["val_mse"]):
        print(f"  {name}: n={t['n']} val {t['val_mse']:.4f} test {t['test_mse']:.4f}")


if __name__ == "__main__":
    main()
