"""Save / load a fitted SSMForecaster: safetensors weights + a JSON config, no pickle.

A model folder holds

* ``model.safetensors``: the network's ``state_dict`` (keys ``net.*``) and the
  forecast origin (``origin.*``: recurrent state, last hidden output, pending time);
* ``config.json``: estimator parameters, the network's constructor arguments,
  data metadata (``DataMeta.to_dict``), scaler states, column names, the context
  tail as lists, the origin's tree structure, ``ssmts.__version__`` and the
  SHA-256 of ``model.safetensors``.

Loading checks the hash before reading any tensor, so a truncated or edited
weights file fails with a ``ValueError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

import ssmts
from ssmts.data import DataMeta, MeanStdScaler, SeriesData, scaler_from_dict
from ssmts.data.container import _plain, _unplain

__all__ = ["save_forecaster", "load_forecaster", "WEIGHTS", "CONFIG"]

WEIGHTS, CONFIG = "model.safetensors", "config.json"
FORMAT = 2  # 2: window normalisation (window_norm, window_affine) in params and origin


def _flatten(tree, prefix: str, out: dict):
    """Tensors of a nested list / tuple / dict into ``out``; returns the JSON structure."""
    if isinstance(tree, dict):
        return {"dict": {k: _flatten(v, f"{prefix}.{k}", out) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_flatten(v, f"{prefix}.{i}", out) for i, v in enumerate(tree)]}
    out[prefix] = tree.detach().cpu().contiguous()
    return prefix


def _unflatten(struct, tensors: dict):
    if isinstance(struct, str):
        return tensors[struct]
    (kind, items), = struct.items()
    if kind == "dict":
        return {k: _unflatten(v, tensors) for k, v in items.items()}
    vals = [_unflatten(v, tensors) for v in items]
    return vals if kind == "list" else tuple(vals)


def _encode_stamps(idx: pd.Index, kind: str) -> list:
    if kind == "datetime":
        return [int(x) for x in idx.as_unit("ns").asi8]
    if kind == "period":
        return [int(x) for x in idx.asi8]
    return [_plain(x) for x in idx]


def _decode_stamps(vals: list, meta) -> pd.Index:
    if meta.kind == "datetime":
        idx = pd.DatetimeIndex(np.asarray(vals, dtype=np.int64).view("M8[ns]"))
        idx = idx.tz_localize("UTC").tz_convert(meta.tz) if meta.tz else idx
        return idx.as_unit(meta.resolution or "ns").rename(meta.name)
    if meta.kind == "period":
        return pd.PeriodIndex.from_ordinals(vals, freq=meta.freq).rename(meta.name)
    return pd.Index(vals, name=meta.name)


def _context_to_dict(ctx: SeriesData) -> dict:
    vals = np.where(ctx.mask, ctx.values, np.nan)
    return {"values": [[[None if np.isnan(x) else float(x) for x in row] for row in s]
                       for s in vals],
            "time": ctx.time.tolist(), "lengths": ctx.lengths.tolist(),
            "lead_gap": ctx.lead_gap.tolist(), "meta": ctx.meta.to_dict(),
            "stamps": [_encode_stamps(st, ctx.index_meta.kind) for st in ctx.stamps]}


def _context_from_dict(d: dict) -> SeriesData:
    meta = DataMeta.from_dict(d["meta"])
    vals = np.array([[[np.nan if x is None else x for x in row] for row in s]
                     for s in d["values"]], dtype=np.float64)
    stamps = tuple(_decode_stamps(st, meta.index) for st in d["stamps"])
    return SeriesData(vals, ~np.isnan(vals), np.asarray(d["time"]), np.asarray(d["lengths"]),
                      stamps, meta.index, meta.source, np.asarray(d["lead_gap"]))


def _params_json(est) -> dict:
    params = est.get_params(deep=False)
    if params.get("target_transformer") is not None:
        raise ValueError("target_transformer: a fitted sklearn transformer cannot be saved "
                         "without pickling; save without it (transform y yourself) or pickle "
                         "the estimator from a trusted source")
    try:
        json.dumps(params["trainer_kwargs"])
    except TypeError:
        params["trainer_kwargs"] = None  # callbacks etc. are training-time only
    return {k: _plain(v) if k in ("id_col", "time_col") else v for k, v in params.items()}


def save_forecaster(est, path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` of a fitted estimator into folder ``path``.

    Returns
    -------
    Path of the folder.
    """
    from safetensors.torch import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "net_")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in est.net_.state_dict().items()}
    structure = _flatten(est.origin_, "origin", tensors)
    save_file(tensors, str(folder / WEIGHTS))
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    config = {
        "format": FORMAT, "library": "ssmts", "version": ssmts.__version__,
        "params": _params_json(est), "columns": [_plain(c) for c in est.columns_],
        "n_exog": est.n_exog_,
        "exog_columns": None if est.exog_columns_ is None else [_plain(c) for c in
                                                                est.exog_columns_],
        "exog_scaler": None if est.exog_scaler_ is None else est.exog_scaler_.to_dict(),
        "scaler": est.scaler_.to_dict(), "n_masked": int(est.n_masked_),
        "train_loss": [float(x) for x in est.train_loss_],
        "val_loss": [float(x) for x in est.val_loss_],
        "context": _context_to_dict(est.context_), "origin_structure": structure,
        "weights_sha256": digest,
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=1))
    return folder


def _read_config(folder: Path) -> dict:
    file = folder / CONFIG
    if not file.is_file():
        raise ValueError(f"{file}: not found; pass the folder written by save()")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file}: is not valid JSON ({exc}); the file is corrupt") from exc
    need = {"format", "params", "columns", "scaler", "context", "origin_structure",
            "weights_sha256"}
    if not isinstance(config, dict) or need - set(config):
        missing = sorted(need - set(config)) if isinstance(config, dict) else sorted(need)
        raise ValueError(f"{file}: missing entries {missing}; not an ssmts model config")
    if config["format"] != FORMAT:
        raise ValueError(f"{file}: format {config['format']!r} is not supported (expected "
                         f"{FORMAT}); load it with the ssmts version that wrote it "
                         f"({config.get('version')})")
    return config


def _read_weights(folder: Path, sha: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load

    file = folder / WEIGHTS
    if not file.is_file():
        raise ValueError(f"{file}: not found; pass the folder written by save()")
    raw = file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha:
        raise ValueError(f"{file}: SHA-256 does not match the one in {CONFIG} ({len(raw)} "
                         "bytes); the file was truncated or modified, save the model again")
    try:
        return load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{file}: cannot be read as safetensors ({exc}); the header is "
                         "corrupt") from exc


def load_forecaster(path):
    """Rebuild a fitted :class:`SSMForecaster` from the folder written by :func:`save_forecaster`.

    Raises ``ValueError`` naming the file for a missing, corrupt, truncated or
    modified config / weights file. Nothing is unpickled.
    """
    from ssmts.estimators.forecaster import SSMForecaster

    folder = Path(path)
    config = _read_config(folder)
    tensors = _read_weights(folder, config["weights_sha256"])
    try:
        est = SSMForecaster(**{k: (_unplain(v) if k in ("id_col", "time_col") else v)
                               for k, v in config["params"].items()})
        est.columns_ = tuple(_unplain(c) for c in config["columns"])
        est.n_features_in_ = len(est.columns_)
        if all(isinstance(c, str) for c in est.columns_):
            est.feature_names_in_ = np.asarray(est.columns_, dtype=object)
        est.n_exog_ = int(config["n_exog"])
        ec = config["exog_columns"]
        est.exog_columns_ = None if ec is None else tuple(_unplain(c) for c in ec)
        es = config["exog_scaler"]
        est.exog_scaler_ = None if es is None else MeanStdScaler.from_dict(es)
        est.scaler_ = scaler_from_dict(config["scaler"])
        est.target_transformer_ = None
        est.n_masked_ = int(config["n_masked"])
        est.train_loss_, est.val_loss_ = config["train_loss"], config["val_loss"]
        est.context_ = _context_from_dict(config["context"])
        est.index_meta_ = est.context_.index_meta
        net = est._build_net()
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        net.load_state_dict(state, strict=True)
        est.net_ = net.eval()
        est.origin_ = _unflatten(config["origin_structure"], tensors)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{folder / CONFIG}: does not describe the weights in {WEIGHTS} "
                         f"({type(exc).__name__}: {exc})") from exc
    return est
