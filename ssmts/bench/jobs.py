"""Jobs of ``ssmts bench ltsf``: data checks, the job list, one job, the process pool."""

from __future__ import annotations

import inspect
import time
import warnings

import numpy as np

from ssmts.bench.report import cfg_name

__all__ = ["anchors", "build_jobs", "check_sets", "estimator_defaults", "run_job", "run_pool"]

_CACHE: dict = {}


def estimator_defaults() -> dict:
    """``SSMForecaster()``'s keyword defaults (JSON-able ones), read from the class."""
    from ssmts.estimators import SSMForecaster

    out = {}
    for k, p in inspect.signature(SSMForecaster.__init__).parameters.items():
        if p.default is not inspect.Parameter.empty and (
                p.default is None or isinstance(p.default, (bool, int, float, str))):
            out[k] = p.default
    return out


def _data(name: str, lookback: int):
    from ssmts.datasets.ltsf import load_ltsf

    if (name, lookback) not in _CACHE:
        _CACHE[(name, lookback)] = load_ltsf(name, lookback)
    return _CACHE[(name, lookback)]


def check_sets(sets, lookback: int, horizons) -> dict:
    """Load every set (name or CSV path); ValueError with one line when one is unusable."""
    from ssmts.datasets.ltsf import data_dir

    out = {}
    for s in sets:
        try:
            d = _data(s, lookback)
        except FileNotFoundError:
            raise ValueError(f"{s}: unknown set and no such file (named sets are looked up in "
                             f"{data_dir()}; set SSMTS_DATA or pass a CSV path)") from None
        except Exception as exc:  # noqa: BLE001 - unreadable / not the protocol layout
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise ValueError(f"{s}: cannot read it as a protocol CSV (a date column, then "
                             f"numeric columns): {type(exc).__name__}: {msg}") from None
        for H in horizons:
            short = [sp for sp in ("val", "test") if d.n_windows(sp, H) < 1]
            if short or d.borders[0] - lookback - H + 1 < 1:
                raise ValueError(f"{s}: horizon {H} with lookback {lookback} leaves no "
                                 f"{'/'.join(short) or 'training'} window "
                                 f"(borders {d.borders})")
        out[s] = d
    return out


def anchors(data: dict, horizons) -> dict:
    """Repeat-last and channel-independent ridge test MSE / MAE per ``"set|H"``."""
    from ssmts.datasets.ltsf import repeat_last, ridge_ci

    out = {}
    for s, d in data.items():
        for H in horizons:
            r = ridge_ci(d, H)
            out[f"{s}|{H}"] = {"repeat_last": repeat_last(d, H),
                               "ridge": {k: r[k] for k in ("mse", "mae", "alpha", "val_mse")}}
    return out


def build_jobs(args, sets, horizons) -> list:
    """Every (config, seed, set, horizon) job; the most informative configs first."""
    dflt = estimator_defaults()
    lrs = args.lrs or [dflt["lr"]]
    channels = args.channels or [dflt["channel"]]
    dropouts = args.dropouts or [dflt["dropout"]]
    epochs = args.epochs if args.epochs is not None else dflt["max_epochs"]
    batch = args.batch_size if args.batch_size is not None else dflt["batch_size"]
    per = []
    for bb in args.backbones:
        cs = [dict(backbone=bb, lr=lr, channel=ch, dropout=do, epochs=epochs, batch_size=batch)
              for ch in channels for lr in lrs for do in dropouts]
        if args.baseline:
            cs.append(dict(backbone=bb, lr=1e-2, channel="mixed", dropout=0.1, epochs=epochs,
                           batch_size=batch))

        # channel, then lr, the baseline, then dropout: a cut budget leaves complete
        # configs along the main axes
        def rank(c):
            if args.baseline and c["lr"] == 1e-2 and c["channel"] == "mixed" and (
                    c["lr"] not in lrs or c["channel"] not in channels):
                return (3, 0, 0)
            return (0 if c["dropout"] == min(dropouts) else 4,
                    lrs.index(c["lr"]) if c["lr"] in lrs else 9,
                    channels.index(c["channel"]) if c["channel"] in channels else 9)

        uniq = {cfg_name(c): c for c in sorted(cs, key=rank)}
        per.append(list(uniq.values()))
    if args.peers:
        from ssmts.bench.peers import peer_config

        per += [[peer_config(p, args.peer_max_steps)] for p in args.peers]
    order = []  # interleave backbones (and peers): a cut budget leaves complete configs
    for k in range(max(len(p) for p in per)):
        order += [p[k] for p in per if k < len(p)]
    size = {s: _data(s, args.lookback).values.shape[0] for s in sets}
    jobs = []
    for c in order:
        for seed in args.seeds:
            for s in sorted(sets, key=lambda s: -size[s]):
                for H in sorted(horizons, reverse=True):
                    jobs.append(dict(set=s, horizon=H, config=c, seed=seed,
                                     lookback=args.lookback, device=args.device,
                                     threads=args.threads))
    return jobs


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


def _quiet(threads: int) -> None:
    import logging

    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _fit_ssm(job: dict) -> dict:
    from ssmts.estimators import SSMForecaster

    c, H, L = job["config"], job["horizon"], job["lookback"]
    d = _data(job["set"], L)
    b1, b2, _ = d.borders
    # the protocol sets lookback, horizon, val_size, scaler (and device, seed); the rest
    # is the estimator's default unless the config (a sweep) says otherwise
    est = SSMForecaster(backbone=c["backbone"], lookback=L, horizon=H, lr=c["lr"],
                        channel=c["channel"], dropout=c["dropout"], max_epochs=c["epochs"],
                        batch_size=c["batch_size"], val_size=b2 - b1, scaler="none",
                        device=job["device"], random_state=job["seed"])
    t0 = time.perf_counter()
    est.fit(_frame(d, 0, b2))
    fit_s = time.perf_counter() - t0
    dev = "cuda" if job["device"] == "cuda" else "cpu"
    net = est.net_.to(dev).eval()
    val_mse, val_mae, n_val, _ = _score(net, d, "val", H, dev)
    mse, mae, n_test, ends = _score(net, d, "test", H, dev)
    est.net_ = net.cpu().eval()
    # the batched scores against the public predict on the first / last test window
    a, _ = d.rows("test")
    diffs = []
    for w, ref in zip((0, n_test - 1), ends):
        p = est.predict(_frame(d, a + w, a + w + L), h=H).to_numpy()
        diffs.append(float(np.max(np.abs(p - ref[0]))))
    vl = [float(v) for v in est.val_loss_]
    return dict(val_mse=val_mse, val_mae=val_mae, n_val=n_val, mse=mse, mae=mae,
                n_test=n_test, fit_s=fit_s, epochs_run=len(est.train_loss_),
                max_epochs_used=getattr(est, "max_epochs_", c["epochs"]),
                best_epoch=int(np.argmin(vl)) if vl else None, val_loss=vl,
                train_loss=[float(v) for v in est.train_loss_],
                predict_max_abs_diff=max(diffs))


def run_job(job: dict) -> dict:
    """Fit one configuration on one (set, horizon) and score it; never raises."""
    t_start = time.time()
    try:
        _quiet(job["threads"])
        if job["config"]["backbone"].startswith("nf-"):
            from ssmts.bench.peers import fit_peer

            res = fit_peer(job, _data(job["set"], job["lookback"]))
        else:
            res = _fit_ssm(job)
        import platform

        import torch

        return dict(job, ok=True, **res, wall_s=time.time() - t_start,
                    torch=torch.__version__, host=platform.node())
    except Exception as exc:  # noqa: BLE001 - recorded: one failed fit never stops the pool
        import traceback

        return dict(job, ok=False, error=f"{type(exc).__name__}: {exc}",
                    trace=traceback.format_exc()[-2000:], wall_s=time.time() - t_start)


def _failed(job: dict, exc: BaseException, t0: float) -> dict:
    return dict(job, ok=False, error=f"{type(exc).__name__}: {exc} (the worker process died)",
                wall_s=time.time() - t0)


def run_pool(jobs: list, workers: int, on_row, t0: float | None = None,
             budget_s: float | None = None) -> None:
    """Run the jobs (``workers`` spawned processes; 0: here), ``on_row(row)`` as each ends.

    No job starts after ``budget_s`` seconds from ``t0``. A worker that dies (killed,
    out of memory) fails its job and the pool is started again for the rest.
    """
    t0 = time.time() if t0 is None else t0

    def over() -> bool:
        return budget_s is not None and time.time() - t0 > budget_s

    if workers == 0:
        for j in jobs:
            if over():
                break
            on_row(run_job(j))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    it = iter(jobs)
    stop = False
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    pending: dict = {}
    try:
        while True:
            while not stop and len(pending) < workers:
                j = None if over() else next(it, None)
                if j is None:
                    stop = True
                    break
                pending[ex.submit(run_job, j)] = (j, time.time())
            if not pending:
                break
            fin, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            broken = False
            for fu in fin:
                j, ts = pending.pop(fu)
                try:
                    r = fu.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker, not a failed fit
                    broken |= isinstance(exc, BrokenProcessPool)
                    r = _failed(j, exc, ts)
                on_row(r)
            if broken:  # every pending job of a broken pool is lost: record, restart
                for fu, (j, ts) in pending.items():
                    on_row(_failed(j, BrokenProcessPool("pool broken"), ts))
                pending.clear()
                ex.shutdown(wait=False, cancel_futures=True)
                ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    except KeyboardInterrupt:
        procs = list(getattr(ex, "_processes", {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        raise
    ex.shutdown(wait=True)
