"""Accuracy on ETTh1 under the standard long-horizon protocol (lookback 96).

    python benchmarks/bench_forecast_ett.py [--data DIR] [--horizons 96 192 336 720]
                                             [--epochs 3] [--backbone s5] ...

The protocol (see ``../shared/data/README.md``): train rows [0, 8640), validation
[8640 - L, 11520), test [11520 - L, 14400); one StandardScaler (population std)
fitted on the training rows of all 7 channels; windows of L = 96 inputs and H
targets, stride 1; MSE / MAE on the scaled values over EVERY test window, step
and channel. The data file is read from ``--data`` or ``$SSMTS_DATA`` (default
``../shared/data`` beside the repository) and is never copied.

The network is SSMForecaster's (``ForecastNet`` with the estimator's default
window normalisation and layer settings), trained through the package's
Lightning module on the training windows, with the validation windows for early
stopping (best epoch restored). Two anchors are computed on the same windows:
repeating the last value (the data README's check of the protocol: 1.294 / 0.713
at H = 96) and a channel-independent ridge map on mean-removed windows.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

L_IN = 96
BORDERS = (8640, 11520, 14400)  # end of train, val, test (ETT hourly)
PUBLISHED = {  # ETTh1, L = 96, MSE/MAE averaged over H = 96/192/336/720
    "S-Mamba": (0.455, 0.450), "iTransformer": (0.454, 0.447), "PatchTST": (0.469, 0.454),
    "RLinear": (0.446, 0.434), "DLinear": (0.456, 0.452), "TimesNet": (0.458, 0.450)}
SOURCE = ("S-Mamba, Wang et al., arXiv 2403.11144 (baseline columns: the iTransformer "
          "paper's L=96 runs), as quoted in ../shared/data/README.md")


def load_scaled(data_dir: Path) -> np.ndarray:
    """ETTh1 values (14400, 7), standardised with training-row statistics (population std)."""
    import pandas as pd

    path = data_dir / "ETTh1.csv.gz"
    if not path.is_file():
        raise SystemExit(f"--data: {path} not found; pass the folder holding ETTh1.csv.gz "
                         "(or set SSMTS_DATA)")
    x = pd.read_csv(path, parse_dates=["date"], index_col="date").to_numpy(np.float64)
    x = x[:BORDERS[2]]
    train = x[:BORDERS[0]]
    return (x - train.mean(0)) / train.std(0)  # ddof=0: population std


def windows(x: np.ndarray, start: int, stop: int, H: int, stride: int = 1):
    """Inputs (n, L, C) and targets (n, H, C) of rows [start, stop), every ``stride`` steps."""
    t = np.arange(start, stop - L_IN - H + 1, stride)
    idx = t[:, None] + np.arange(L_IN + H)[None, :]  # (n, L + H)
    w = x[idx]  # (n, L + H, C)
    return w[:, :L_IN], w[:, L_IN:]


def metrics(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    err = pred - y
    return float(np.mean(err ** 2)), float(np.mean(np.abs(err)))


def ridge_anchor(x, H, alpha=1.0):
    """Channel-independent ridge from 96 mean-removed inputs to H outputs."""
    xi, yi = windows(x, 0, BORDERS[0], H)
    C = x.shape[1]
    X = xi.transpose(0, 2, 1).reshape(-1, L_IN)  # (n*C, L)
    Y = yi.transpose(0, 2, 1).reshape(-1, H)  # (n*C, H)
    mu = X.mean(1, keepdims=True)
    W = np.linalg.solve((X - mu).T @ (X - mu) + alpha * np.eye(L_IN), (X - mu).T @ (Y - mu))
    xt, yt = windows(x, BORDERS[1] - L_IN, BORDERS[2], H)
    Xt = xt.transpose(0, 2, 1).reshape(-1, L_IN)
    mt = Xt.mean(1, keepdims=True)
    pred = ((Xt - mt) @ W + mt).reshape(-1, C, H).transpose(0, 2, 1)  # (n, H, C)
    return metrics(pred, yt)


def _batches(xi, yi):
    n, H, C = xi.shape[0], yi.shape[1], xi.shape[2]
    f = lambda a: torch.as_tensor(a, dtype=torch.float32)
    return {"context": f(xi), "context_mask": torch.ones(n, L_IN, C),
            "context_gaps": torch.ones(n, L_IN), "target": f(yi),
            "target_mask": torch.ones(n, H, C), "future_gaps": torch.ones(n, H)}


def train_ssm(x, H, args):
    """Fit the estimator's network on the train windows; returns (net, seconds, epochs run)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from ssmts.estimators import SSMForecaster
    from ssmts.training import ForecastModule, WindowDataset, build_trainer, quiet_lightning

    est = SSMForecaster(backbone=args.backbone, lookback=L_IN, horizon=H, d_model=args.d_model,
                        n_layers=args.n_layers, d_state=args.d_state, channel=args.channel,
                        lr=args.lr, window_norm=None if args.window_norm == "none"
                        else args.window_norm, dropout=args.dropout)
    est.n_features_in_, est.n_exog_ = x.shape[1], 0
    L.seed_everything(args.seed, verbose=False)
    net = est._build_net()
    tr = WindowDataset(_batches(*windows(x, 0, BORDERS[0], H, args.stride)))
    va = WindowDataset(_batches(*windows(x, BORDERS[0] - L_IN, BORDERS[1], H)))
    g = torch.Generator().manual_seed(args.seed)
    module = ForecastModule(net, "mse", lr=args.lr, lr_schedule="cosine", restore_best=True)
    t0 = time.perf_counter()
    with quiet_lightning(args.verbose):
        trainer = build_trainer(args.epochs, "cpu", args.verbose, early_stopping=True,
                                has_val=True, patience=args.patience)
        trainer.fit(module, DataLoader(tr, batch_size=args.batch_size, shuffle=True,
                                       generator=g),
                    DataLoader(va, batch_size=256))
    return module.net.eval(), time.perf_counter() - t0, module


@torch.no_grad()
def evaluate(net, x, H, batch=256):
    xi, yi = windows(x, BORDERS[1] - L_IN, BORDERS[2], H)
    preds = []
    for a in range(0, len(xi), batch):  # every test window, the last partial batch included
        b = _batches(xi[a:a + batch], yi[a:a + batch])
        out = net(b["context"], b["context_mask"], b["context_gaps"], b["future_gaps"])
        preds.append(out[..., 0].numpy())
    pred = np.concatenate(preds)
    if pred.shape != yi.shape:
        raise RuntimeError(f"predictions {pred.shape} do not cover the targets {yi.shape}")
    return metrics(pred.astype(np.float64), yi), len(xi)


def main(argv=None) -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SSMTS_DATA", str(repo.parent / "shared"
                                                                        / "data")))
    ap.add_argument("--horizons", type=int, nargs="+", default=[96])
    ap.add_argument("--backbone", default="s5")
    ap.add_argument("--channel", default="mixed", choices=["mixed", "independent"])
    ap.add_argument("--window-norm", default="mean", choices=["mean", "last", "none"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--d-state", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=None, help="default: SSMForecaster's")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--stride", type=int, default=1, help="between training windows")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.lr is None:
        from ssmts.estimators import SSMForecaster

        args.lr = SSMForecaster().lr
    torch.set_num_threads(args.threads)
    x = load_scaled(Path(args.data))
    print(f"ETTh1 {x.shape}, L={L_IN}, borders {BORDERS}; {args.backbone}, channel "
          f"{args.channel}, window_norm {args.window_norm}, d_model {args.d_model}, "
          f"{args.n_layers} layers, d_state {args.d_state}, lr {args.lr}, <= {args.epochs} "
          f"epochs, {args.threads} threads")
    rows = []
    for H in args.horizons:
        last = metrics(*_last_value(x, H))
        ridge = ridge_anchor(x, H)
        net, secs, module = train_ssm(x, H, args)
        (mse, mae), n_win = evaluate(net, x, H)
        ep = len(module.train_losses)
        print(f"H={H}: {n_win} test windows; fit {secs:.0f} s ({ep} epochs, best "
              f"{module.best_epoch}), train {['%.3f' % v for v in module.train_losses]}, "
              f"val {['%.3f' % v for v in module.val_losses]}", flush=True)
        rows.append((H, (mse, mae), last, ridge, secs))
    print(f"\nETTh1, L=96, MSE/MAE on scaled values over every test window")
    print(f"{'H':>5} {'SSMForecaster':>15} {'repeat last':>13} {'ridge (CI)':>12} {'fit s':>7}")
    f = lambda p: f"{p[0]:.3f}/{p[1]:.3f}"
    for H, ours, last, ridge, secs in rows:
        print(f"{H:>5} {f(ours):>15} {f(last):>13} {f(ridge):>12} {secs:>7.0f}")
    if sorted(r[0] for r in rows) == [96, 192, 336, 720]:  # comparable with the published
        avg = [np.mean([r[k] for r in rows], axis=0) for k in (1, 2, 3)]
        print(f"{'avg':>5} {f(avg[0]):>15} {f(avg[1]):>13} {f(avg[2]):>12} "
              f"{sum(r[4] for r in rows):>7.0f}")
    print("\npublished, L=96, average over H = 96/192/336/720 (" + SOURCE + "):")
    print("  " + ", ".join(f"{k} {v[0]:.3f}/{v[1]:.3f}" for k, v in PUBLISHED.items()))
    print("  (README anchors: repeat last 1.294/0.713 at H=96, 1.335/0.755 at H=720; "
          "ridge ~0.383/0.392 at H=96)")


def _last_value(x, H):
    xi, yi = windows(x, BORDERS[1] - L_IN, BORDERS[2], H)
    return np.repeat(xi[:, -1:], H, axis=1), yi


if __name__ == "__main__":
    main()
