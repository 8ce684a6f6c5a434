"""Rows, selection on validation and the JSON + markdown report of ``ssmts bench ltsf``.

A row is one finished job: the job (``set``, ``horizon``, ``config``, ``seed``,
``lookback``, ``device``, ``threads``) plus ``ok`` and, when ok, ``val_mse``,
``val_mae``, ``mse``, ``mae`` (test), ``n_val``, ``n_test``, ``fit_s``,
``epochs_run``, ``best_epoch``, ``predict_max_abs_diff``; when not ok, ``error`` and
``trace``. Rows of ``benchmarks/ltsf_sweep*.jsonl`` (written by the older script)
have this layout and render unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["BOLD", "cfg_name", "job_key", "read_rows", "select", "write_report"]

# best published test MSE averaged over the 4 horizons, L=96 (the "bold bar")
BOLD = {"ETTh1": 0.423, "ETTh2": 0.367, "ETTm1": 0.376, "exchange_rate": 0.349}
BOLD_SRC = {"ETTh1": "Attraos", "ETTh2": "TimeXer", "ETTm1": "CMamba", "exchange_rate": "Attraos"}


def cfg_name(c: dict) -> str:
    """Short name of a configuration: ``s5 lr=0.001 ch=independent do=0.1 ep=10 bs=32``."""
    ep = c.get("epochs")
    train = (f"steps={c['max_steps']}" if c.get("max_steps") is not None
             else f"ep={'auto' if ep is None else ep}")  # None: the estimator's step rule
    lr = c.get("lr")
    do = c.get("dropout")
    return (f"{c['backbone']} lr={'–' if lr is None else format(lr, 'g')} "
            f"ch={c.get('channel')} do={'–' if do is None else format(do, 'g')} "
            f"{train} bs={c.get('batch_size')}")


def job_key(r: dict) -> tuple:
    return (cfg_name(r["config"]), r["set"], r["horizon"], r["seed"])


def read_rows(files) -> list:
    """Rows of jsonl files; a job repeated in several files (same outcome) counts once."""
    rows, seen = [], set()
    for f in files:
        with open(f) as fh:
            for line in fh:
                r = json.loads(line) if line.strip() else None
                key = r and job_key(r) + (r["ok"],)
                if r and key not in seen:
                    seen.add(key)
                    rows.append(r)
    return rows


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
        vals = [r["val_mse"] for r in rs if r.get("val_mse") is not None]
        table[name] = dict(backbone=rs[0]["config"]["backbone"], config=rs[0]["config"],
                           n=len(rs), complete=need <= got,
                           val_mse=float(np.mean(vals)) if vals else float("inf"),
                           test_mse=float(np.mean([r["mse"] for r in rs])),
                           fit_s=float(np.sum([r["fit_s"] for r in rs])))
    chosen = {}
    for name, t in table.items():
        if t["complete"] and (t["backbone"] not in chosen
                              or t["val_mse"] < table[chosen[t["backbone"]]]["val_mse"]):
            chosen[t["backbone"]] = name
    return {"configs": table, "chosen": chosen}


def _f(v, fmt: str = ".3f") -> str:
    return "–" if v is None else format(v, fmt)


def _chosen_table(rows, anc, sets, horizons, chosen) -> list:
    ok = {(cfg_name(r["config"]), r["set"], r["horizon"]): r for r in rows if r.get("ok")}
    bbs = sorted(chosen, key=lambda b: (b.startswith("nf-"), b))
    lines = ["", "## Test MSE/MAE of the chosen configuration per backbone", "",
             "| set | H | " + " | ".join(f"{b} ({chosen[b]})" for b in bbs)
             + " | ridge (CI) | repeat last | bold bar (avg) |",
             "| --- | --- | " + " | ".join("---" for _ in bbs) + " | --- | --- | --- |"]

    def avg(v):
        if not v or len(v) != len(horizons) or any(p[0] is None for p in v):
            return "–"
        return f"{np.mean([p[0] for p in v]):.3f}/{np.mean([p[1] for p in v]):.3f}"

    for s in sets:
        acc = {b: [] for b in bbs + ["ridge", "last"]}
        for H in horizons:
            cells = []
            for b in bbs:
                r = ok.get((chosen[b], s, H))
                cells.append(f"{_f(r and r['mse'])}/{_f(r and r['mae'])}")
                if r:
                    acc[b].append((r["mse"], r["mae"]))
            a = anc.get(f"{s}|{H}", {})
            rg, rl = a.get("ridge", {}), a.get("repeat_last", {})
            acc["ridge"].append((rg.get("mse"), rg.get("mae")))
            acc["last"].append((rl.get("mse"), rl.get("mae")))
            lines.append(f"| {s} | {H} | " + " | ".join(cells)
                         + f" | {_f(rg.get('mse'))}/{_f(rg.get('mae'))}"
                         f" | {_f(rl.get('mse'))}/{_f(rl.get('mae'))} | |")
        lines.append(f"| {s} | avg | " + " | ".join(f"**{avg(acc[b])}**" for b in bbs)
                     + f" | {avg(acc['ridge'])} | {avg(acc['last'])} | "
                     + (f"{BOLD[s]} ({BOLD_SRC[s]}) |" if s in BOLD else "– |"))
    return lines


def write_report(out: Path, rows: list, anc: dict, sets, horizons, meta: dict) -> None:
    """``<out>.json`` (meta, anchors, selection, rows) and ``<out>.md``."""
    out = Path(out)
    sel = select(rows, sets, horizons)
    out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "anchors": anc, "selection": sel, "rows": rows}, indent=1, default=str))
    n_ok = len([r for r in rows if r.get("ok")])
    lines = [f"# SSMForecaster, long-horizon protocol (L={meta['lookback']}), validation sweep",
             "", f"Command: `{meta['command']}`", "",
             f"Seeds: {meta['seeds']}; device: {meta['device']}; host: {meta['host']}; "
             f"torch {meta.get('torch', '?')}; {n_ok} jobs done, {len(rows) - n_ok} failed"
             + (f"; wall {meta['wall_s']:.0f} s" if meta.get("wall_s") else "") + ".", "",
             ("MSE / MAE on the protocol-scaled values over every window. Configs are ranked "
              "by mean validation MSE over the (set, horizon) jobs they finished; only "
              "complete configs can be chosen. Backbones named nf-* are neuralforecast peers "
              "(one fixed configuration each, ssmts.bench.peers)."), "",
             "| config | jobs | complete | mean val MSE | mean test MSE | fit s (sum) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, t in sorted(sel["configs"].items(), key=lambda kv: (kv[1]["backbone"],
                                                                   kv[1]["val_mse"])):
        mark = " **chosen**" if sel["chosen"].get(t["backbone"]) == name else ""
        lines.append(f"| {name}{mark} | {t['n']} | {'yes' if t['complete'] else 'no'} | "
                     f"{t['val_mse']:.4f} | {t['test_mse']:.4f} | {t['fit_s']:.0f} |")
    if sel["chosen"]:
        lines += _chosen_table(rows, anc, sets, horizons, sel["chosen"])
    lines += ["", "## Every job", "",
              ("| config | set | H | seed | val MSE | test MSE | test MAE | epochs | best | fit s "
               "| predict diff |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (cfg_name(r["config"]), r["set"], r["horizon"],
                                         r.get("seed", 0))):
        head = f"| {cfg_name(r['config'])} | {r['set']} | {r['horizon']} | {r.get('seed')} | "
        if r.get("ok"):
            lines.append(head + f"{_f(r.get('val_mse'), '.4f')} | {r['mse']:.4f} | "
                         f"{r['mae']:.4f} | {_f(r.get('epochs_run'), 'd')} | "
                         f"{_f(r.get('best_epoch'), 'd')} | {r['fit_s']:.1f} | "
                         f"{_f(r.get('predict_max_abs_diff'), '.1e')} |")
        else:
            err = str(r.get("error", ""))[:80].replace("|", "/").replace("\n", " ")
            lines.append(head + f"failed: {err} | | | | | | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
