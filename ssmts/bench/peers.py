"""Peers for ``ssmts bench ltsf --peers``: neuralforecast's PatchTST, NHITS and iTransformer.

Each peer runs on exactly the protocol's data and windows (``ssmts.datasets.ltsf``):

* the protocol-scaled values (one StandardScaler fitted on the training rows), rows
  [0, end of test), one series per channel (``unique_id`` = the column, ``ds`` = the
  integer row, ``freq=1``), lookback ``input_size = 96``, the benchmark's horizon;
* ``NeuralForecast.fit(df[rows < end of validation], val_size = validation rows)``:
  trained on the windows whose targets lie in the training rows, validated (early
  stopping) on the validation rows; this is the fit that
  ``cross_validation(df, val_size=..., test_size=..., n_windows=None, step_size=1)``
  performs (neuralforecast's long-horizon experiments), done apart so that ``fit_s``
  is the training time only;
* ``cross_validation(..., n_windows=None, test_size=test rows, step_size=1,
  use_fitted=True)`` predicts EVERY test window (stride 1) with the fitted model, and
  the same on the rows before the test rows for every validation window;
* MSE / MAE against the protocol's own target windows (the cross-validation targets are
  checked against them, ``target_max_abs_diff``), over every window, step and channel,
  as for SSMForecaster.

Settings (``PEERS``): the models' own defaults in neuralforecast 3.3, as in its
long-horizon tutorial ("Long-Horizon Forecasting with Transformers", which trains
PatchTST with ``max_steps=1000, val_check_steps=100, early_stop_patience_steps=3`` on
the already standardised LongHorizon sets): PatchTST patch_len 16, stride 8, 3 encoder
layers, 16 heads, hidden 128, dropout 0.2, RevIN, lr 1e-4; NHITS 3 stacks of
[512, 512] MLPs, pooling [2, 2, 1], lr 1e-3 with 3 decays; iTransformer (channel-mixing,
``n_series`` = the set's channels) hidden 512, 8 heads, 2 layers, d_ff 2048, dropout 0.1,
use_norm, lr 1e-3. Every peer: ``max_steps=1000`` (``--peer-max-steps``),
validation every 100 steps, early stopping after 3 checks without improvement
(neuralforecast stops; it does not restore the best checkpoint), their default MAE
training loss, batch size 32, ``scaler_type="identity"`` (the data are already
protocol-scaled, as the tutorial's; PatchTST's RevIN and iTransformer's use_norm
normalise each window themselves), ``random_seed`` = the benchmark seed.
The report's "epochs" / "best" columns hold training steps for the peers.

Install: ``pip install "ssmts[bench]"``. Offline (a machine without internet, Python
3.12 x86_64 with torch, lightning, pandas, numpy, scipy already there), from wheels
fetched into ``.whl/`` with ``pip download --no-deps`` (neuralforecast 3.3.0,
pytorch_lightning 2.6.6, utilsforecast 0.2.17, coreforecast 0.0.20 cp312 manylinux,
narwhals 2.29.0, safetensors 0.8.0 abi3; 2.6 MB in all). ray and optuna are not
needed: only the Auto models use them (optuna is imported lazily; for ray, which
``neuralforecast.core`` imports at the top, ``require_neuralforecast`` registers an inert
stand-in when ray is missing, see ``_stub_ray``)::

    pip install --no-index --no-deps --find-links .whl \\
        neuralforecast pytorch-lightning utilsforecast coreforecast narwhals safetensors
"""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["PEERS", "fit_peer", "peer_config", "require_neuralforecast"]

_COMMON = dict(max_steps=1000, val_check_steps=100, early_stop_patience_steps=3,
               scaler_type="identity", batch_size=32)
# name -> (neuralforecast class, channel handling, its settings beyond _COMMON and defaults)
PEERS = {
    "patchtst": ("PatchTST", "independent", dict(patch_len=16, stride=8, learning_rate=1e-4,
                                                 dropout=0.2)),
    "nhits": ("NHITS", "independent", dict(learning_rate=1e-3, dropout_prob_theta=0.0)),
    "itransformer": ("iTransformer", "mixed", dict(learning_rate=1e-3, dropout=0.1)),
}
_INSTALL = ('neuralforecast is not installed: pip install "ssmts[bench]" (offline: pip '
            'install --no-index --no-deps --find-links .whl neuralforecast pytorch-lightning '
            'utilsforecast coreforecast narwhals safetensors)')


class _NoRay:
    """Stands for a ray class that neuralforecast names at import (Auto models only)."""

    def __init__(self, *args, **kwargs):
        pass


class _NoRayCallback:
    def __init__(self, *args, **kwargs):
        raise ImportError("ray is not installed: neuralforecast's Auto models need "
                          "pip install \"ray[tune]\"")


def _stub_ray() -> None:
    """Register an inert ``ray`` so that ``import neuralforecast`` works without ray.

    ``neuralforecast.core`` imports ``neuralforecast.common._base_auto``, which imports
    ray at the top (``from ray import air, tune``, ``TuneReportCallback``,
    ``BasicVariantGenerator(random_state=1)`` as a default argument) although only the
    Auto models (hyperparameter search) use it. ray's wheel alone is ~70 MB with a dozen
    dependencies; the plain models used here never touch it. Only when ray is not
    installed; an Auto model then fails with an ImportError naming ray.
    """
    import importlib.machinery
    import types

    names = ["ray", "ray.air", "ray.tune", "ray.tune.integration",
             "ray.tune.integration.pytorch_lightning", "ray.tune.search",
             "ray.tune.search.basic_variant"]
    mods = {}
    for n in names:
        m = types.ModuleType(n, "inert stand-in registered by ssmts.bench.peers: ray is not "
                                "installed")
        m.__spec__ = importlib.machinery.ModuleSpec(n, None, is_package=True)
        m.__path__ = []
        mods[n] = m
        if "." in n:
            parent, _, child = n.rpartition(".")
            setattr(mods[parent], child, m)
    mods["ray.tune.integration.pytorch_lightning"].TuneReportCallback = _NoRayCallback
    mods["ray.tune.search.basic_variant"].BasicVariantGenerator = _NoRay
    sys.modules.update(mods)


def require_neuralforecast():
    """The neuralforecast module, or ImportError naming ``pip install "ssmts[bench]"``."""
    import importlib.util

    if "ray" not in sys.modules and importlib.util.find_spec("ray") is None:
        _stub_ray()
    try:
        import neuralforecast
        import neuralforecast.models
    except ImportError as exc:
        raise ImportError(f"{_INSTALL} [{type(exc).__name__}: {exc}]") from exc
    return neuralforecast


def peer_config(name: str, max_steps: int | None = None) -> dict:
    """The row ``config`` of a peer (backbone ``nf-<name>``); see the module docstring."""
    cls, channel, kw = PEERS[name]
    kw = {**_COMMON, **kw}
    if max_steps is not None:
        kw["max_steps"] = int(max_steps)
        kw["val_check_steps"] = min(kw["val_check_steps"], int(max_steps))
    return dict(backbone=f"nf-{name}", model=cls, lr=kw.get("learning_rate"), channel=channel,
                dropout=kw.get("dropout", kw.get("dropout_prob_theta")), epochs=None,
                batch_size=kw["batch_size"], max_steps=kw["max_steps"], settings=kw)


def _long(d, stop: int):
    import pandas as pd

    C = d.n_channels
    return pd.DataFrame({"unique_id": np.repeat(np.array(d.columns, dtype=object), stop),
                         "ds": np.tile(np.arange(stop), C),
                         "y": d.values[:stop].T.reshape(-1)})


def _windows(cv, col: str, d, n: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and targets of a cross-validation frame as (n, H, C) arrays."""
    cv = cv.sort_values(["unique_id", "cutoff", "ds"])
    pred, y = [], []
    for name in d.columns:
        sub = cv[cv["unique_id"] == name]
        if len(sub) != n * H:
            raise RuntimeError(f"channel {name}: {len(sub)} predictions, expected {n} x {H}")
        pred.append(sub[col].to_numpy(np.float64).reshape(n, H))
        y.append(sub["y"].to_numpy(np.float64).reshape(n, H))
    return np.stack(pred, -1), np.stack(y, -1)


def _score(nf, col: str, d, split: str, H: int) -> dict:
    a, b = d.rows(split)
    n = d.n_windows(split, H)
    cv = nf.cross_validation(df=_long(d, b), n_windows=None, test_size=b - a - d.lookback,
                             step_size=1, use_fitted=True)
    pred, y = _windows(cv, col, d, n, H)
    _, target = d.windows(split, H)
    err = pred - target
    return dict(mse=float(np.mean(err ** 2)), mae=float(np.mean(np.abs(err))), n=n,
                target_diff=float(np.max(np.abs(y - target))))


def fit_peer(job: dict, d) -> dict:
    """Fit one peer on one (set, horizon) under the protocol and score it (a row's results)."""
    require_neuralforecast()
    from neuralforecast import NeuralForecast
    from neuralforecast import models as nfm

    c, H, L = job["config"], job["horizon"], job["lookback"]
    cls = getattr(nfm, c["model"])
    kw = dict(c["settings"])
    if cls.MULTIVARIATE:
        kw["n_series"] = d.n_channels
    gpu = job["device"] == "cuda"
    model = cls(h=H, input_size=L, random_seed=job["seed"], accelerator="gpu" if gpu else "cpu",
                devices=1, enable_progress_bar=False, logger=False,
                enable_model_summary=False, **kw)
    nf = NeuralForecast(models=[model], freq=1)
    b1, b2, _ = d.borders
    t0 = time.perf_counter()
    nf.fit(df=_long(d, b2), val_size=b2 - b1)
    fit_s = time.perf_counter() - t0
    col = c["model"]
    val = _score(nf, col, d, "val", H)
    test = _score(nf, col, d, "test", H)
    m = nf.models[0]
    vt = [(int(s), float(v)) for s, v in m.valid_trajectories]
    tt = [(int(s), float(v)) for s, v in m.train_trajectories]
    return dict(val_mse=val["mse"], val_mae=val["mae"], n_val=val["n"], mse=test["mse"],
                mae=test["mae"], n_test=test["n"], fit_s=fit_s,
                epochs_run=max(s for s, _ in tt + vt) if tt or vt else None,
                best_epoch=min(vt, key=lambda p: p[1])[0] if vt else None,
                val_loss=[v for _, v in vt], train_loss=[v for _, v in tt],
                predict_max_abs_diff=None,
                target_max_abs_diff=max(val["target_diff"], test["target_diff"]),
                neuralforecast=__import__("neuralforecast").__version__)
