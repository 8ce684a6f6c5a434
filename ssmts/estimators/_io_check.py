"""Validation of a saved model's ``config.json`` (private helper of :mod:`ssmts.estimators._io`).

:func:`parse_config` parses the bytes; :func:`check_header` reads ``library`` /
``format`` / ``version``;
:func:`check_config` checks every other field the loader reads (types, shapes,
finiteness, consistency between fields) and decodes them. Both raise
:class:`ConfigError` (a ``ValueError``) whose ``field`` is the dotted path of
the bad entry; the caller adds the file name and what to do. The same checks run
on the JSON a save is about to write, so a model is never saved that could not
be loaded back.
"""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ssmts.data import DataMeta, IdentityScaler, MeanStdScaler, SeriesData
from ssmts.data.container import INDEX_KINDS, _unplain

__all__ = ["ConfigError", "parse_config", "check_header", "check_config", "check_tree",
           "check_origin", "decode_stamps", "FORMAT", "READS"]

FORMAT = 3  # written; 3 = format 2 + config_sha256 (checksum of the rest of config.json)
READS = (2, 3)  # read; 2 has no config checksum (a warning says so)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_DEPTH = 16  # origin structure / labels
_KEYS = {"format", "library", "version", "params", "columns", "n_exog", "exog_columns",
         "exog_scaler", "scaler", "n_masked", "train_loss", "val_loss", "context",
         "origin_structure", "weights_sha256"}
_OPTIONAL = {"naive_loss"}
_SHAPES = {"series": lambda n, c: (n, 1, c), "channel": lambda n, c: (1, 1, c),
           "global": lambda n, c: (1, 1, 1)}


ADVICE = ("save the model again from the fitted estimator (the file is damaged, was edited, "
           "or was not written by ssmts)")
_NOT_OURS = "this is not a model saved by ssmts: pass the folder written by SSMForecaster.save()"
_DAMAGED = "the file is damaged or was edited: save the model again from the fitted estimator"


class ConfigError(ValueError):
    """A bad entry of config.json; ``field`` is its dotted path (e.g. ``"scaler.mean"``)."""

    def __init__(self, field: str, msg: str):
        super().__init__(f"{field}: {msg}")
        self.field = field


def _fail(field: str, msg: str):
    raise ConfigError(field, msg)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _version(v: str):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(v)
    except (InvalidVersion, TypeError):
        return None


def check_header(cfg, installed: str) -> int:
    """Check ``library``, ``format`` and ``version``; return the format (2 or 3)."""
    if not isinstance(cfg, dict):
        _fail("(top level)", f"expected a JSON object, got {type(cfg).__name__}; {_NOT_OURS}")
    if cfg.get("library") != "ssmts":
        _fail("library", f"expected 'ssmts', got {_short(cfg.get('library'))}; {_NOT_OURS}")
    fmt, ver = cfg.get("format"), cfg.get("version")
    if not isinstance(ver, str) or _version(ver) is None:
        _fail("version", f"{_short(ver)} is not a version number (the installed ssmts is "
                         f"{installed}); {_DAMAGED}")
    if _version(installed) is not None and _version(ver) > _version(installed):
        _fail("version", f"written by ssmts {ver}, newer than the installed ssmts {installed}; "
                         "upgrade ssmts to load it")
    if not _is_int(fmt) or fmt not in READS:
        newer = _is_int(fmt) and fmt > FORMAT
        _fail("format", f"{_short(fmt)} is not a format this ssmts ({installed}) reads "
                        f"({', '.join(map(str, READS))})"
              + ("; upgrade ssmts" if newer else f"; load it with ssmts {ver}, which wrote it, "
                 "and save the model again with this one"))
    need = _KEYS | ({"config_sha256"} if fmt == 3 else set())
    if need - set(cfg):
        _fail("(top level)", f"missing entries {sorted(need - set(cfg))}; {_DAMAGED}")
    if set(cfg) - need - _OPTIONAL:
        _fail("(top level)", f"unknown entries {sorted(set(cfg) - need - _OPTIONAL)} for format "
                             f"{fmt}; {_DAMAGED}")
    for key in need & {"weights_sha256", "config_sha256"}:
        if not isinstance(cfg[key], str) or not _HEX64.fullmatch(cfg[key]):
            _fail(key, f"expected 64 lowercase hex digits, got {_short(cfg[key])}; {_DAMAGED}")
    return fmt


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def parse_config(file, raw: bytes):
    """Parsed config.json; a ValueError naming ``file`` for bad UTF-8 / JSON, repeated keys
    or nesting too deep to parse."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: is not valid JSON (not UTF-8 text: {exc}); the file is "
                         f"corrupt or not an ssmts config: {ADVICE}") from None
    except RecursionError:
        raise ValueError(f"{file}: is not a config written by ssmts (JSON nested too deeply "
                         "to read); pass the folder written by save()") from None
    except ValueError as exc:
        raise ValueError(f"{file}: is not valid JSON ({exc}); the file is corrupt: "
                         f"{ADVICE}") from None


def decode_stamps(vals: list, meta, unit: str = "ns") -> pd.Index:
    """Stamps saved as ints (datetime: counts of ``unit`` since the epoch, UTC) -> pd.Index."""
    if meta.kind == "datetime":
        idx = pd.DatetimeIndex(np.asarray(vals, dtype=np.int64).view(f"M8[{unit}]"))
        idx = idx.tz_localize("UTC").tz_convert(meta.tz) if meta.tz else idx
        return idx.as_unit(meta.resolution or "ns").rename(meta.name)
    if meta.kind == "period":
        return pd.PeriodIndex.from_ordinals(vals, freq=meta.freq).rename(meta.name)
    return pd.Index(vals, name=meta.name)


# ---------------------------------------------------------------- leaves
def _label(field: str, v, depth: int = 0):
    if depth > _MAX_DEPTH:
        _fail(field, "label nested too deeply")
    if isinstance(v, list):
        for x in v:
            _label(field, x, depth + 1)
    elif not (v is None or isinstance(v, (bool, int, float, str))):
        _fail(field, f"expected a label (string, number, null or list), got {_short(v)}")


def _labels(field: str, v, n: int | None = None) -> tuple:
    if not isinstance(v, list) or (n is not None and len(v) != n) or (n is None and not v):
        want = f"{n} labels" if n is not None else "a non-empty list of labels"
        _fail(field, f"expected {want}, got {_short(v)}")
    for i, x in enumerate(v):
        _label(f"{field}[{i}]", x)
    out = tuple(_unplain(x) for x in v)
    if len(set(out)) != len(out):
        _fail(field, f"duplicate labels in {_short(v)}")
    return out


def _grid(field: str, v, ndim: int, none_ok: bool = False) -> np.ndarray:
    """Rectangular ``ndim``-deep nested lists of numbers (or null) -> float64 array."""
    level, dims = [v], []
    for d in range(ndim):
        n, nxt = None, []
        for x in level:
            if not isinstance(x, list):
                _fail(field, f"expected {ndim}-deep nested lists of numbers, got "
                             f"{_short(x)} at depth {d}")
            if n is not None and len(x) != n:
                _fail(field, f"ragged lists at depth {d} (lengths {n} and {len(x)})")
            n = len(x)
            nxt.extend(x)
        dims.append(n or 0)
        level = nxt
    for x in level:
        if not (_is_num(x) or (none_ok and x is None)):
            _fail(field, f"expected numbers{' or null' if none_ok else ''}, got {_short(x)}")
    try:
        arr = np.array(level, dtype=np.float64)  # null -> NaN
    except OverflowError:
        _fail(field, "holds a number too large for a float")
    if (~np.isfinite(arr)).sum() != (sum(x is None for x in level) if none_ok else 0):
        _fail(field, "holds non-finite values (NaN or infinity); a saved model has none")
    return arr.reshape(dims)


def _shape(field: str, arr: np.ndarray, want: tuple):
    if arr.shape != tuple(want):
        _fail(field, f"expected shape {tuple(want)}, got {arr.shape}")


def _scaler(field: str, d, n: int, c: int, kind):
    """A scaler dict; ``kind`` is params["scaler"] (None/"none"/by), or "exog"."""
    if not isinstance(d, dict) or d.get("type") not in ("MeanStdScaler", "IdentityScaler"):
        _fail(f"{field}.type", f"expected MeanStdScaler or IdentityScaler, got "
                               f"{_short(d.get('type') if isinstance(d, dict) else d)}")
    identity = kind in (None, "none")
    if d["type"] == "IdentityScaler":
        if not identity or set(d) != {"type"}:
            _fail(field, f"an IdentityScaler does not fit scaler={kind!r}")
        return IdentityScaler()
    if identity or not {"type", "by", "mean", "std"} <= set(d):
        _fail(field, f"expected entries type, by, mean, std (and settings) for scaler={kind!r}, "
                     f"got {sorted(d)}")
    by = d["by"]
    if by not in _SHAPES or (kind != "exog" and by != kind):
        _fail(f"{field}.by", f"expected {kind!r}, got {_short(by)}")
    for key in set(d) - {"type", "by", "mean", "std"}:  # min_std, rtol, ...: numbers >= 0
        if not _is_num(d[key]) or not 0 <= d[key] < math.inf:
            _fail(f"{field}.{key}", f"expected a finite number >= 0, got {_short(d[key])}")
    try:
        sc = MeanStdScaler.from_dict({k: v for k, v in d.items() if k not in ("mean", "std")})
    except (KeyError, TypeError, ValueError) as exc:
        _fail(field, f"cannot be rebuilt ({type(exc).__name__}: {exc})")
    for key in ("mean", "std"):
        arr = _grid(f"{field}.{key}", d[key], 3)
        _shape(f"{field}.{key}", arr, _SHAPES[by](n, c))
        if key == "std" and not np.all(arr > 0):
            _fail(f"{field}.std", "holds values <= 0; a standard deviation must be > 0")
        setattr(sc, f"{key}_", arr)
    return sc


def _losses(field: str, v) -> list:
    if not isinstance(v, list) or not all(_is_num(x) or x is None for x in v):
        _fail(field, f"expected a list of numbers, got {_short(v)}")
    return [math.nan if x is None else float(x) for x in v]


# ---------------------------------------------------------------- params
def _params(p, cls, n_weights: int | None):
    if not isinstance(p, dict):
        _fail("params", f"expected an object, got {_short(p)}")
    dims = [p.get(k) for k in ("n_layers", "d_model", "d_state")]
    if n_weights is not None and all(_is_int(x) and x > 0 for x in dims):  # before any layer
        if dims[0] * dims[1] * (dims[1] + dims[2]) > 16 * n_weights + 2 ** 20:  # is built
            _fail("params", f"n_layers={dims[0]}, d_model={dims[1]}, d_state={dims[2]} describe "
                            f"a network far larger than the {n_weights} stored weights")
    names = set(cls._get_param_names())
    if set(p) - names:
        _fail("params", f"unknown parameters {sorted(set(p) - names)} for {cls.__name__}")
    if p.get("target_transformer") is not None:
        _fail("params.target_transformer", "must be null (a transformer is never saved)")
    for k in ("id_col", "time_col"):
        _label(f"params.{k}", p.get(k))
    kw = {k: _unplain(v) if k in ("id_col", "time_col") else v for k, v in p.items()}
    try:
        est = cls(**kw)
        est._check_params()
    except (TypeError, ValueError) as exc:
        _fail("params", str(exc))
    return est


# ---------------------------------------------------------------- context
def _stamps(field: str, v, lengths, kind: str) -> list:
    if not isinstance(v, list) or len(v) != len(lengths):
        _fail(field, f"expected {len(lengths)} lists of stamps, got {_short(v)}")
    ints = kind in ("datetime", "period")
    for s, (st, n) in enumerate(zip(v, lengths)):
        if not isinstance(st, list) or len(st) != n:
            _fail(f"{field}[{s}]", f"expected {n} stamps (lengths[{s}]), got {_short(st)}")
        if not all((_is_int(x) if ints else _is_num(x)) for x in st):
            _fail(f"{field}[{s}]", f"expected {'ints' if ints else 'numbers'} for a {kind} "
                                   "index")
        if ints and not all(-2 ** 63 < x < 2 ** 63 for x in st):
            _fail(f"{field}[{s}]", "stamp out of the int64 range")
    return v


def _context(d, columns: tuple, lookback: int):
    """The context tail -> SeriesData."""
    keys = {"values", "time", "lengths", "lead_gap", "meta", "stamps"}
    if isinstance(d, dict) and "stamp_unit" in d:  # datetime stamps in y's unit (else ns)
        keys = keys | {"stamp_unit"}
        if d["stamp_unit"] not in ("s", "ms", "us", "ns"):
            _fail("context.stamp_unit", f"expected 's', 'ms', 'us' or 'ns', got "
                                        f"{_short(d['stamp_unit'])}")
    if not isinstance(d, dict) or set(d) != keys:
        _fail("context", f"expected entries {sorted(keys)}, got "
                         f"{sorted(d) if isinstance(d, dict) else _short(d)}")
    try:
        meta = DataMeta.from_dict(d["meta"])
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        _fail("context.meta", f"cannot be read ({type(exc).__name__}: {exc})")
    if meta.index.kind not in INDEX_KINDS:
        _fail("context.meta.index.kind", f"expected one of {INDEX_KINDS}, got "
                                         f"{_short(meta.index.kind)}")
    if tuple(meta.source.columns) != columns:
        _fail("context.meta.source.columns", f"{list(meta.source.columns)} differ from "
                                             f"columns {list(columns)}")
    vals = _grid("context.values", d["values"], 3, none_ok=True)
    n, T, C = vals.shape
    if n < 1 or not 1 <= T <= lookback or C != len(columns):
        _fail("context.values", f"expected shape (n_series >= 1, 1..lookback={lookback}, "
                                f"{len(columns)}), got {vals.shape}")
    if len(meta.source.ids) != n or len(meta.index.origin) != n or len(meta.index.last) != n:
        _fail("context.meta", f"expected {n} series ids / origins / last stamps")
    time = _grid("context.time", d["time"], 2)
    _shape("context.time", time, (n, T))
    lengths = d["lengths"]
    if not isinstance(lengths, list) or len(lengths) != n or not all(
            _is_int(x) and 1 <= x <= T for x in lengths):
        _fail("context.lengths", f"expected {n} ints in [1, {T}], got {_short(lengths)}")
    gap = _grid("context.lead_gap", d["lead_gap"], 1)
    _shape("context.lead_gap", gap, (n,))
    if not np.all(gap > 0):
        _fail("context.lead_gap", "expected gaps > 0")
    for s, L in enumerate(lengths):
        if not np.all(np.diff(time[s, :L]) > 0):
            _fail(f"context.time[{s}]", "expected strictly increasing times")
    _stamps("context.stamps", d["stamps"], lengths, meta.index.kind)
    try:
        unit = d.get("stamp_unit", "ns")
        stamps = tuple(decode_stamps(st, meta.index, unit) for st in d["stamps"])
        ok = all(st[-1] == last for st, last in zip(stamps, meta.index.last))
        ctx = SeriesData(vals, ~np.isnan(vals), time, np.asarray(lengths), stamps, meta.index,
                         meta.source, gap)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        _fail("context", f"cannot be rebuilt ({type(exc).__name__}: {exc})")
    if not ok:
        _fail("context.stamps", "the last stamps differ from context.meta.index.last")
    return ctx


def check_tree(field: str, struct, depth: int = 0, leaves: list | None = None) -> list:
    """The names of the tensors a (nested dict / list / tuple) structure refers to."""
    leaves = [] if leaves is None else leaves
    if depth > _MAX_DEPTH:
        _fail(field, "nested too deeply")
    if isinstance(struct, str):
        if not struct.startswith("origin.") or struct in leaves:
            _fail(field, f"bad or repeated tensor name {_short(struct)}")
        leaves.append(struct)
        return leaves
    if not isinstance(struct, dict) or len(struct) != 1:
        _fail(field, f"expected a tensor name or a one-entry object, got {_short(struct)}")
    (kind, items), = struct.items()
    if kind == "dict" and isinstance(items, dict):
        items = items.values()
    elif kind not in ("list", "tuple") or not isinstance(items, list):
        _fail(field, f"expected {{'dict': {{...}}}}, {{'list': [...]}} or {{'tuple': [...]}}, "
                     f"got {_short(struct)}")
    for v in items:
        check_tree(field, v, depth + 1, leaves)
    return leaves


def check_config(cfg: dict, cls, n_weights: int | None = None) -> SimpleNamespace:
    """Validate and decode a config (header already checked by :func:`check_header`).

    Parameters
    ----------
    cfg : parsed config.json
    cls : the estimator class (SSMForecaster)
    n_weights : number of network weights stored; refuses sizes far beyond them
        before a layer is built (a forged d_model=10**6 must not allocate terabytes)

    Returns
    -------
    Namespace with est (unfitted, parameters set and checked), columns, n_exog,
    exog_columns, exog_scaler, scaler, n_masked, train_loss, val_loss, naive_loss,
    context (SeriesData) and origin_leaves.
    """
    est = _params(cfg["params"], cls, n_weights)
    columns = _labels("columns", cfg["columns"])
    n_exog = cfg["n_exog"]
    if not _is_int(n_exog) or n_exog < 0:
        _fail("n_exog", f"expected an int >= 0, got {_short(n_exog)}")
    ec, es = cfg["exog_columns"], cfg["exog_scaler"]
    if n_exog == 0 and (ec is not None or es is not None):
        _fail("exog_columns", "n_exog is 0 but covariate columns / scaler are given")
    if n_exog and es is None:
        _fail("exog_scaler", f"missing for n_exog = {n_exog}")
    ec = None if ec is None else _labels("exog_columns", ec, n_exog)
    ctx = _context(cfg["context"], columns, est.lookback)
    n = ctx.n_series
    es = None if es is None else _scaler("exog_scaler", es, n, n_exog, "exog")
    if es is not None and es.by not in ("channel", "global"):
        _fail("exog_scaler.by", f"expected 'channel', got {es.by!r}")
    scaler = _scaler("scaler", cfg["scaler"], n, len(columns), est.scaler)
    if not _is_int(cfg["n_masked"]) or cfg["n_masked"] < 0:
        _fail("n_masked", f"expected an int >= 0, got {_short(cfg['n_masked'])}")
    naive = cfg.get("naive_loss")
    if naive is not None and not _is_num(naive):
        _fail("naive_loss", f"expected a number or null, got {_short(naive)}")
    return SimpleNamespace(
        est=est, columns=columns, n_exog=n_exog, exog_columns=ec, exog_scaler=es, scaler=scaler,
        n_masked=cfg["n_masked"], train_loss=_losses("train_loss", cfg["train_loss"]),
        val_loss=_losses("val_loss", cfg["val_loss"]),
        naive_loss=math.nan if "naive_loss" in cfg and naive is None else naive,
        context=ctx, origin_leaves=check_tree("origin_structure", cfg["origin_structure"]))


def _signature(tree):
    """Nested structure, shapes and dtypes of an origin (to compare two origins)."""
    if isinstance(tree, dict):
        return ("dict", tuple((k, _signature(tree[k])) for k in sorted(tree)))
    if isinstance(tree, (list, tuple)):
        return (type(tree).__name__, tuple(_signature(v) for v in tree))
    return ("tensor", tuple(tree.shape), str(tree.dtype))


def _tensors(tree, prefix: str = "origin"):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _tensors(v, f"{prefix}.{i}")
    else:
        yield prefix, tree


def check_origin(origin, net, n_series: int, where: str) -> None:
    """Same structure / shapes / dtypes as a fresh origin of ``net``; finite; scale > 0."""
    import torch

    got, want = _signature(origin), _signature(net.initial_state(n_series))
    if got != want:
        _fail("origin_structure", f"the stored origin {str(got)[:300]} does not fit the "
                                  f"network, which expects {str(want)[:300]}")
    for k, t in _tensors(origin):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            _fail(where, f"tensor {k} holds non-finite values")
    if isinstance(origin, dict) and "scale" in origin and not bool((origin["scale"] > 0).all()):
        _fail(where, "tensor origin.scale holds values <= 0")
