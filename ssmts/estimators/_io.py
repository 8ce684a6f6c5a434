"""Save / load a fitted SSMForecaster: safetensors weights + a JSON config, no pickle.

Folder layout
-------------
``save(path)`` makes ``path`` a folder holding exactly two files:

* ``model.safetensors``: the network's ``state_dict`` (keys ``net.*``) and the
  forecast origin (``origin.*``: recurrent state, last hidden output, pending
  time, window statistics);
* ``config.json``: format (3), ``library`` ("ssmts"), ``version`` (the
  ``ssmts.__version__`` that wrote it), estimator parameters, column names,
  scaler states, the context tail as lists, data metadata, the origin's tree
  structure, ``weights_sha256`` (SHA-256 of ``model.safetensors``) and
  ``config_sha256``: SHA-256 of the canonical JSON of every other entry
  (``json.dumps(cfg_without_it, sort_keys=True, separators=(",", ":"))``).

Atomic replacement
------------------
Everything that can fail (a ``target_transformer``, JSON serialisation, the
checks the loader makes) is checked before the disk is touched. The files are
then written into a temporary sibling ``.<name>.tmp-<pid>-<hex>`` and fsynced;
the swap renames an existing ``path`` aside to ``.<name>.old-<pid>-<hex>``,
renames the temporary folder to ``path`` (rolling the first rename back if the
second fails), fsyncs the parent and removes the aside folder. On any error the
temporary folder is removed and ``path`` is left as it was.

Crash windows (a killed process): while writing, only a stale ``.tmp-`` folder
is left and ``path`` is untouched; between the two renames ``path`` is missing
and the complete old model sits in ``.old-``: :func:`load_forecaster` then
loads the newest aside folder (with a warning) and the next save repairs
``path``; after the second rename ``path`` holds the new model. Each successful
save removes the temporary and aside folders of ``path`` whose process is gone.
``save`` refuses a ``path`` that is a file or a non-empty folder holding
anything but these two files (or another library's ``config.json``).

Loading
-------
Nothing is ever unpickled. Files are read through one directory handle (both
from the same folder even while another process swaps it), ``config.json`` up
to :data:`MAX_CONFIG_BYTES`. ``library``, ``format`` and ``version`` are checked
first (a model written by a newer ssmts is refused), then ``config_sha256``,
then the SHA-256 of the weights (before safetensors parses them), then every
field (:mod:`ssmts.estimators._io_check`: types, shapes, finite scaler
statistics with std > 0, the context's values / time / lengths / lead_gap /
stamps, the parameters through ``SSMForecaster._check_params``, network sizes
against the number of stored weights before any layer is built), then the
weight names and shapes against the network and the origin's structure,
shapes, dtypes and finiteness against a fresh origin. Every failure is a
``ValueError`` naming the file and saying what to do; a file that vanishes
while being read (a concurrent save's swap) makes the load start again (3
tries). Format 2 (written by ssmts 0.1.0, before the config checksum) is
still read, with a warning that its config is not checksummed; other formats
are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.torch import save_file

import ssmts
from ssmts.data import SeriesData
from ssmts.data.container import _plain
from ssmts.estimators import _io_check as _chk
from ssmts.estimators._io_check import FORMAT, ConfigError

__all__ = ["save_forecaster", "load_forecaster", "WEIGHTS", "CONFIG", "FORMAT",
           "MAX_CONFIG_BYTES"]

WEIGHTS, CONFIG = "model.safetensors", "config.json"
MAX_CONFIG_BYTES = 256 * 2 ** 20
_ADVICE = _chk.ADVICE
_ACTIVE: set = set()  # temporary / aside folder names this process is using now


# ------------------------------------------------------------------ encoding
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


def _encode_stamps(idx: pd.Index, kind: str, unit: str = "ns") -> list:
    """Stamps as JSON ints; datetimes count ``unit`` (y's own: no overflow past 2262)."""
    if kind == "datetime":
        return [int(x) for x in idx.as_unit(unit).asi8]
    if kind == "period":
        return [int(x) for x in idx.asi8]
    return [_plain(x) for x in idx]


def _context_to_dict(ctx: SeriesData) -> dict:
    vals = np.where(ctx.mask, ctx.values, np.nan)
    return {"values": [[[None if np.isnan(x) else float(x) for x in row] for row in s]
                       for s in vals],
            "time": ctx.time.tolist(), "lengths": ctx.lengths.tolist(),
            "lead_gap": ctx.lead_gap.tolist(), "meta": ctx.meta.to_dict(),
            "stamp_unit": _stamp_unit(ctx),
            "stamps": [_encode_stamps(st, ctx.index_meta.kind, _stamp_unit(ctx))
                       for st in ctx.stamps]}


def _stamp_unit(ctx: SeriesData) -> str:
    res = ctx.index_meta.resolution
    return res if res in ("s", "ms", "us", "ns") else "ns"


def _params_json(est) -> dict:
    params = est.get_params(deep=False)
    if params.get("target_transformer") is not None or \
            getattr(est, "target_transformer_", None) is not None:
        raise ValueError("target_transformer: a fitted sklearn transformer cannot be saved "
                         "without pickling; save without it (transform y yourself) or pickle "
                         "the estimator from a trusted source. Nothing was written")
    try:
        json.dumps(params.get("trainer_kwargs"))
    except (TypeError, ValueError, RecursionError):
        params["trainer_kwargs"] = None  # callbacks etc. are training-time only
    return {k: _plain(v) if k in ("id_col", "time_col") else v for k, v in params.items()}


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} {obj!r:.60} is not JSON-serialisable")


def _config_sha(cfg: dict) -> str:
    body = {k: v for k, v in cfg.items() if k != "config_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ files
def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _fsync(path: Path) -> None:
    """fsync a file or a folder (folders: POSIX only, skipped where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _alive(name: str, pid: int) -> bool:
    if pid == os.getpid():
        return name in _ACTIVE
    try:
        os.kill(pid, 0) if os.name == "posix" else None  # elsewhere: taken as gone
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return os.name == "posix"


def _leftovers(target: Path, kinds=("tmp", "old")) -> list[Path]:
    """Temporary / aside folders of ``target`` (of any process), newest first."""
    pat = re.compile(re.escape(f".{target.name}.") + f"({'|'.join(kinds)})-[0-9]+-[0-9a-f]{{8}}")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    found = [target.parent / n for n in names if pat.fullmatch(n)]
    return sorted((p for p in found if p.is_dir() and not p.is_symlink()), key=_mtime,
                  reverse=True)


def _mtime(p: Path) -> int:
    try:
        return p.stat().st_mtime_ns
    except OSError:  # removed meanwhile
        return 0


def _clean_stale(target: Path) -> None:
    for p in _leftovers(target):
        if not _alive(p.name, int(p.name.rsplit("-", 2)[1])):
            shutil.rmtree(p, ignore_errors=True)


def _check_target(target: Path) -> None:
    """Refuse to replace a file, a non-empty foreign folder or another library's model."""
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target}: is a file; save() writes a folder ({WEIGHTS}, {CONFIG}): "
                         "pass a new path or remove the file. Nothing was written")
    if not target.is_dir():
        return
    foreign = sorted(set(os.listdir(target)) - {WEIGHTS, CONFIG})
    if foreign:
        raise ValueError(f"{target}: holds {foreign[:5]}{'...' if len(foreign) > 5 else ''}, "
                         f"not only a saved ssmts model ({WEIGHTS}, {CONFIG}); save() replaces "
                         "the whole folder, so pass a new or empty folder or one written by "
                         "save(). Nothing was written")
    try:
        cfg = json.loads(_read(target, CONFIG, None, MAX_CONFIG_BYTES))
    except (ValueError, RecursionError):
        return  # missing or damaged: an ssmts model being re-saved may replace it
    if isinstance(cfg, dict) and cfg.get("library") != "ssmts":
        raise ValueError(f"{target / CONFIG}: is not an ssmts model config (library "
                         f"{cfg.get('library')!r}); save() would replace that folder, pass "
                         "another path. Nothing was written")


def _swap(tmp: Path, target: Path, aside: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` goes aside first, then away."""
    if os.path.lexists(target):
        os.replace(target, aside)
        try:
            os.replace(tmp, target)
        except BaseException:
            try:
                os.replace(aside, target)  # roll back; if this fails, load() finds the aside
            except OSError:
                pass
            raise
    else:
        os.replace(tmp, target)
    _fsync(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


# ------------------------------------------------------------------ save
def save_forecaster(est, path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` of a fitted estimator into folder ``path``.

    The folder is replaced atomically (see the module docstring): on any error
    an existing model at ``path`` is left as it was.

    Returns
    -------
    Path of the folder (symbolic links resolved).

    Raises
    ------
    ValueError
        ``path`` is a file or a folder holding other files; the estimator has a
        ``target_transformer``; a value cannot be written as JSON or would not load.
    OSError
        Writing failed (e.g. a full disk); nothing at ``path`` changed.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "net_")
    target = Path(path).resolve()
    _check_target(target)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in est.net_.state_dict().items()}
    structure = _flatten(est.origin_, "origin", tensors)
    naive = getattr(est, "naive_loss_", None)
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
    }
    if naive is not None:
        config["naive_loss"] = float(naive)
    try:  # what the loader will read, checked by the loader's own checks
        plain = json.loads(json.dumps(config, default=_json_default))
        n_weights = sum(v.numel() for k, v in tensors.items() if k.startswith("net."))
        _chk.check_config(plain, type(est), n_weights)
        _chk.check_origin(est.origin_, est.net_, est.context_.n_series, "origin")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"save: the model cannot be written as it would not load back "
                         f"({exc}). Nothing was written") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp, aside = _sibling(target, "tmp"), _sibling(target, "old")
    _ACTIVE.update((tmp.name, aside.name))
    try:
        tmp.mkdir()
        try:
            save_file(tensors, str(tmp / WEIGHTS))
            plain["weights_sha256"] = _sha_file(tmp / WEIGHTS)
            plain["config_sha256"] = _config_sha(plain)
            text = json.dumps(plain, indent=1).encode()
            if len(text) > MAX_CONFIG_BYTES:
                raise ValueError(f"save: {CONFIG} would take {len(text)} bytes, over the "
                                 f"{MAX_CONFIG_BYTES} the loader reads; fit fewer series or a "
                                 "shorter lookback. Nothing was written")
            with open(tmp / CONFIG, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            _fsync(tmp / WEIGHTS)
            _fsync(tmp)
            _swap(tmp, target, aside)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        _ACTIVE.difference_update((tmp.name, aside.name))
    _clean_stale(target)
    return target


def _sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ load
class _Gone(ValueError):
    """A file or folder is missing (perhaps only now: a concurrent save swapped it)."""


def _open_dir(folder: Path):
    """A directory descriptor (POSIX) so both files come from the same folder, or None."""
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return None
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise _Gone(f"{folder}: not found; pass the folder written by save()") from None
    except OSError as exc:
        raise ValueError(f"{folder}: cannot be opened as a model folder ({exc}); pass the "
                         "folder written by save()") from None


def _read(folder: Path, name: str, dfd, limit: int | None) -> bytes:
    file = folder / name
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags, dir_fd=dfd) if dfd is not None else os.open(file, flags)
    except FileNotFoundError:
        raise _Gone(f"{file}: not found; {folder} is not a complete saved model: pass "
                    "the folder written by save(), or save the model again") from None
    except OSError as exc:
        raise ValueError(f"{file}: cannot be opened ({exc}); pass the folder written by "
                         "save()") from None
    st = os.fstat(fd)
    regular = stat.S_ISREG(st.st_mode)
    big = f"{file}: larger than the {limit} bytes a model config may take; it was not " \
          "written by ssmts: pass the folder written by save()"
    if not regular or (limit is not None and st.st_size > limit):
        os.close(fd)
        raise ValueError(big if regular else f"{file}: is not a regular file; pass the folder "
                                             "written by save()")
    with os.fdopen(fd, "rb") as f:
        data = f.read() if limit is None else f.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(big)
    return data


def _read_weights(file: Path, raw: bytes, sha: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if hashlib.sha256(raw).hexdigest() != sha:
        raise ValueError(f"{file}: SHA-256 does not match the one in {CONFIG} ({len(raw)} "
                         "bytes); the file was truncated or modified, save the model again")
    try:
        return load(raw)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{file}: cannot be read as safetensors ({exc}); the header is "
                         "corrupt, save the model again") from exc


def _build(p, tensors: dict, structure, folder: Path):
    """The fitted estimator from checked config entries ``p`` and the weights."""
    cfile, est = folder / CONFIG, p.est
    est.columns_ = p.columns
    est.n_features_in_ = len(p.columns)
    if all(isinstance(c, str) for c in p.columns):
        est.feature_names_in_ = np.asarray(p.columns, dtype=object)
    est.n_exog_, est.exog_columns_, est.exog_scaler_ = p.n_exog, p.exog_columns, p.exog_scaler
    est.scaler_, est.target_transformer_, est.n_masked_ = p.scaler, None, p.n_masked
    est.train_loss_, est.val_loss_ = p.train_loss, p.val_loss
    if p.naive_loss is not None:
        est.naive_loss_ = p.naive_loss
    est.context_ = p.context
    est.index_meta_ = p.context.index_meta
    net_names = {k for k in tensors if k.startswith("net.")}
    extra = set(tensors) - net_names - set(p.origin_leaves)
    missing = set(p.origin_leaves) - set(tensors)
    if extra or missing:
        raise ValueError(f"{cfile}: origin_structure does not match the tensors in {WEIGHTS} "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}); "
                         f"{_ADVICE}")
    try:
        net = est._build_net()
        net.load_state_dict({k[4:]: tensors[k] for k in net_names}, strict=True)
        origin = _unflatten(structure, tensors)
        _chk.check_origin(origin, net, p.context.n_series, "origin_structure")
    except ConfigError as exc:
        raise ValueError(f"{cfile}: {exc}; {_ADVICE}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{cfile}: does not describe the weights in {WEIGHTS} "
                         f"({type(exc).__name__}: {exc}); {_ADVICE}") from exc
    est.net_, est.origin_ = net.eval(), origin
    return est


def _load_folder(folder: Path, cls):
    cfile = folder / CONFIG
    dfd = _open_dir(folder)
    try:
        cfg = _chk.parse_config(cfile, _read(folder, CONFIG, dfd, MAX_CONFIG_BYTES))
        try:
            fmt = _chk.check_header(cfg, ssmts.__version__)
        except ConfigError as exc:
            raise ValueError(f"{cfile}: {exc}") from None
        if fmt == 3 and _config_sha(cfg) != cfg["config_sha256"]:
            raise ValueError(f"{cfile}: config.json was modified after saving: its checksum "
                             "does not match; save the model again")
        if fmt == 2:
            warnings.warn(f"{cfile}: format 2 has no checksum of config.json, so edits to it "
                          "go undetected; save the model again to write format 3", UserWarning,
                          stacklevel=5)
        raw = _read(folder, WEIGHTS, dfd, None)
    finally:
        if dfd is not None:
            os.close(dfd)
    tensors = _read_weights(folder / WEIGHTS, raw, cfg["weights_sha256"])
    n_weights = sum(v.numel() for k, v in tensors.items() if k.startswith("net."))
    try:
        parsed = _chk.check_config(cfg, cls, n_weights)
    except ConfigError as exc:
        raise ValueError(f"{cfile}: {exc}; {_ADVICE}") from None
    return _build(parsed, tensors, cfg["origin_structure"], folder)


def load_forecaster(path):
    """Rebuild a fitted :class:`SSMForecaster` from the folder written by :func:`save_forecaster`.

    Raises ``ValueError`` naming the file for a missing, corrupt, truncated,
    modified or inconsistent config / weights file, and for a model written by
    a newer ssmts. Nothing is unpickled. If ``path`` is missing because a save
    was killed between its two renames, the model is read from the aside
    folder that save left (with a warning).
    """
    for attempt in range(3):  # again if a concurrent save swapped the folder while reading
        try:
            return _load_any(Path(path))
        except _Gone:
            if attempt == 2:
                raise


def _load_any(folder: Path):
    from ssmts.estimators.forecaster import SSMForecaster

    if folder.exists():
        if not folder.is_dir():
            raise ValueError(f"{folder}: is a file, not a model folder; pass the folder "
                             "written by save()")
        candidates = [folder]
    else:
        candidates = _leftovers(folder.resolve(), kinds=("old",))
        if not candidates:
            raise ValueError(f"{folder}: not found; pass the folder written by save()")
    errors = []
    for cand in candidates:
        try:
            est = _load_folder(cand, SSMForecaster)
        except RecursionError:
            errors.append(ValueError(f"{cand / CONFIG}: nested too deeply to check; it was "
                                     "not written by ssmts: pass the folder written by save()"))
            continue
        except ValueError as exc:
            errors.append(exc)
            continue
        if cand != folder:
            warnings.warn(f"{folder}: not found; loaded {cand}, the previous model that an "
                          "interrupted save() (or one running now) left aside; save the model "
                          f"again to restore {folder.name}", UserWarning, stacklevel=4)
        return est
    if candidates == [folder]:
        raise errors[0]
    kind = _Gone if all(isinstance(e, _Gone) for e in errors) else ValueError
    raise kind(f"{folder}: not found, and none of the {len(errors)} folders left aside by "
               f"interrupted saves loads (newest: {errors[0]})") from errors[0]
