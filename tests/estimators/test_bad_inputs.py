"""Bad inputs, one table: every row names the input and asserts the exception and its message.

Rows run over :class:`SSMForecaster` ("ssm"), :class:`StatsmodelsForecaster`
("sm") and :class:`SeasonalNaiveForecaster` ("naive"). A row either expects an
exception of a given type whose message contains every listed fragment (the
name of the input and a word of the fix), or documents the accepted behaviour
with a check on the result. Fitted estimators are shared per module; a row that
fails must leave them as they were (checked after every predict/update row).
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest

from ssmts.estimators import SeasonalNaiveForecaster, SSMForecaster, StatsmodelsForecaster

T = 60
IDX = pd.date_range("2024-01-01", periods=T, freq="h", name="ts")
_R = np.random.default_rng(0)
DF = pd.DataFrame({"a": _R.standard_normal(T).cumsum() + 5, "b": _R.standard_normal(T)},
                  index=IDX)
TINY = dict(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=4, max_epochs=1,
            val_size=0, random_state=0, device="cpu")
NEXT = IDX[-1] + pd.Timedelta("1h")


def make(kind: str, **kw):
    if kind == "ssm":
        return SSMForecaster(**{**TINY, **kw})
    if kind == "sm":
        return StatsmodelsForecaster(**{"model": "ets", "maxiter": 20, **kw})
    return SeasonalNaiveForecaster(**{"season_length": 2, **kw})


def col(**cols) -> pd.DataFrame:
    out = DF.copy()
    for k, v in cols.items():
        out[k] = v
    return out


def rows_after(k: int = 2, start=None, tz=None, **vals) -> pd.DataFrame:
    idx = pd.date_range(start if start is not None else NEXT, periods=k, freq="h", name="ts")
    if tz is not None:
        idx = idx.tz_localize(tz)
    data = {"a": np.linspace(5, 6, k), "b": np.linspace(0, 1, k)}
    data.update(vals)
    return pd.DataFrame(data, index=idx)


class Row(NamedTuple):
    id: str
    kinds: tuple  # estimator kinds the row runs on
    stage: str  # "fit": act on a fresh estimator; "fitted": on the module's fitted one
    act: Callable[[Any], Any]
    exc: type | None  # expected exception, or None when accepted
    says: tuple = ()  # fragments the message must contain (case-insensitive)
    check: Callable[[Any], None] | None = None  # for accepted rows: check the result


ALL = ("ssm", "sm", "naive")


def _finite(out) -> None:
    vals = np.asarray(out, dtype=np.float64)
    assert vals.size and np.isfinite(vals).all(), vals


def _order(mag: float) -> Callable:
    def check(out) -> None:
        v = np.abs(np.asarray(out, dtype=np.float64))
        assert np.isfinite(v).all() and v.max() < 100 * mag and v.max() > mag / 100, (mag, v)
    return check


def fit_predict(y, **predict_kw) -> Callable:
    return lambda est: est.fit(y).predict(3, **predict_kw)


DATA_ROWS = [
    Row("empty frame", ALL, "fit", fit_predict(DF.iloc[:0]), ValueError, ("y:", "empty", "pass")),
    Row("no columns", ALL, "fit", fit_predict(DF[[]]), ValueError, ("y:", "empty")),
    Row("one row ssm", ("ssm",), "fit", fit_predict(DF.iloc[:1]), ValueError,
        ("y:", "lookback + horizon", "longer series")),
    Row("one row classical", ("sm",), "fit", fit_predict(DF.iloc[:1]), ValueError,
        ("y:", "pass")),
    Row("one row naive: the last value", ("naive",), "fit", fit_predict(DF.iloc[:1].iloc[:, :1]),
        None, check=_finite),
    Row("shorter than lookback + horizon", ("ssm",), "fit", fit_predict(DF.iloc[:11]),
        ValueError, ("y:", "11 steps", "lower lookback")),
    Row("object column", ALL, "fit", fit_predict(col(a=np.array(["1"] * T, dtype=object))),
        ValueError, ("y:", "'a'", "not numeric", "convert")),
    Row("bool column", ALL, "fit", fit_predict(col(a=np.arange(T) % 2 == 0)), ValueError,
        ("y:", "'a'", "bool", "astype(float)")),
    Row("string column", ALL, "fit", fit_predict(col(a=pd.array(["x"] * T, dtype="string"))),
        ValueError, ("y:", "not numeric", "convert")),
    Row("mixed column", ALL, "fit", fit_predict(col(a=[1.0] * (T - 1) + ["x"])), ValueError,
        ("y:", "'a'", "not numeric")),
    Row("no target_cols hint", ("ssm",), "fit", fit_predict(col(a="x")), ValueError,
        ("drop them",)),
    Row("duplicate stamps", ALL, "fit", fit_predict(DF.set_axis(IDX[:-1].append(IDX[-2:-1]))),
        ValueError, ("y:", "repeats", "drop duplicates")),
    Row("unsorted stamps", ALL, "fit", fit_predict(DF.iloc[::-1]), ValueError,
        ("y:", "comes before", "sort")),
    Row("NaT stamp", ALL, "fit",
        fit_predict(DF.set_axis(IDX[:-1].append(pd.DatetimeIndex([pd.NaT])))), ValueError,
        ("y:", "NaT", "drop those rows")),
    Row("mixed-zone stamps", ALL, "fit",
        fit_predict(DF.set_axis(pd.Index(list(IDX[:30].tz_localize("UTC"))
                                         + list(IDX[30:].tz_localize("Europe/Berlin"))))),
        ValueError, ("y:", "dtype object", "pd.to_datetime")),
    Row("string stamps", ALL, "fit", fit_predict(DF.set_axis(IDX.astype(str))), ValueError,
        ("y:", "pd.to_datetime")),
    Row("inf value", ALL, "fit", fit_predict(col(a=[np.inf] + [1.0] * (T - 1))), ValueError,
        ("y:", "'a'", "inf", "replace it with NaN")),
    Row("-inf value", ALL, "fit", fit_predict(col(b=[1.0] * (T - 1) + [-np.inf])), ValueError,
        ("y:", "'b'", "inf")),
    Row("all-NaN column", ALL, "fit", fit_predict(col(a=np.nan)), ValueError,
        ("y:", "['a']", "all NaN", "drop")),
    Row("constant column", ALL, "fit", fit_predict(col(a=3.0)), None,
        check=lambda p: np.testing.assert_allclose(np.asarray(p)[:, 0], 3.0, rtol=0.05)),
    Row("values around 1e-30", ALL, "fit", fit_predict(DF * 1e-30), None, check=_order(5e-30)),
    Row("values around 1e-9", ALL, "fit", fit_predict(DF * 1e-9), None, check=_order(5e-9)),
    Row("values around 1e30", ALL, "fit", fit_predict(DF * 1e30), None, check=_order(5e30)),
    Row("values around 1e200", ALL, "fit", fit_predict(DF * 1e200), None, check=_order(5e200)),
    Row("float16 columns", ALL, "fit", fit_predict(DF.astype(np.float16)), None, check=_finite),
    Row("int64 columns", ALL, "fit", fit_predict((DF * 10).astype(np.int64)), None,
        check=_finite),
    Row("nullable Int64 with NA", ALL, "fit",
        fit_predict(col(a=pd.array([1, None, 3] * (T // 3), dtype="Int64"))), None,
        check=_finite),
    Row("list of lists is not a frame", ("ssm",), "fit", fit_predict([["a", 1]] * T), ValueError,
        ("y",)),
    Row("unsupported container", ALL, "fit", lambda est: est.fit({"a": [1, 2, 3]}), TypeError,
        ("y:", "unsupported type dict", "pass a pandas")),
]

# ------------------------------------------------------------------ fitted: predict / update
H_ROWS = [Row(f"h={h!r}", ALL, "fitted", (lambda h: lambda est: est.predict(h))(h), ValueError,
              ("h:", "positive int"))
          for h in (0, -1, 2.5, "3", True)]
H_ROWS += [
    Row("h=numpy int accepted", ALL, "fitted", lambda est: est.predict(np.int64(2)), None,
        check=lambda p: np.testing.assert_equal(len(p), 2)),
    Row("h twice", ("ssm",), "fitted", lambda est: est.predict(3, h=3), TypeError,
        ("h given twice",)),
    Row("at= empty", ALL, "fitted", lambda est: est.predict(at=[]), ValueError, ("at:",)),
    Row("at= before the origin", ALL, "fitted", lambda est: est.predict(at=[IDX[5]]), ValueError,
        ("at:", "not after")),
    Row("at= unsorted", ALL, "fitted",
        lambda est: est.predict(at=[NEXT + pd.Timedelta("2h"), NEXT]), ValueError,
        ("at:", "increasing")),
    Row("at= in a zone, y naive", ALL, "fitted",
        lambda est: est.predict(at=pd.DatetimeIndex([NEXT]).tz_localize("UTC")), ValueError,
        ("at:", "tz-naive", "match")),
    Row("at= unreadable", ALL, "fitted", lambda est: est.predict(at=["not a date"]), ValueError,
        ("at:", "cannot read")),
    Row("at= h mismatch", ALL, "fitted", lambda est: est.predict(h=2, at=[NEXT]), ValueError,
        ("at:", "h=2")),
    Row("context with reordered columns", ("ssm",), "fitted",
        lambda est: est.predict(DF[["b", "a"]], h=2), ValueError,
        ("context:", "columns", "same order")),
    Row("context with a missing column", ("ssm", "sm", "naive"), "fitted",
        lambda est: est.predict(DF[["a"]], h=2), ValueError, ("columns",)),
    Row("update: reordered columns", ALL, "fitted", lambda est: est.update(rows_after()[["b", "a"]]),
        ValueError, ("y_new:", "columns")),
    Row("update: a missing column", ALL, "fitted", lambda est: est.update(rows_after()[["a"]]),
        ValueError, ("y_new:", "columns")),
    Row("update: an extra column", ALL, "fitted", lambda est: est.update(rows_after(c=1.0)),
        ValueError, ("y_new:", "columns")),
    Row("update: older rows", ALL, "fitted", lambda est: est.update(rows_after(start=IDX[3])),
        ValueError, ("y_new:", "not after")),
    Row("update: overlapping rows", ALL, "fitted",
        lambda est: est.update(rows_after(start=IDX[-1])), ValueError, ("y_new:", "not after")),
    Row("update: rows in another zone", ALL, "fitted",
        lambda est: est.update(rows_after(tz="Europe/Berlin")), ValueError,
        ("y_new:", "Europe/Berlin", "tz-naive", "tz_localize")),
    Row("update: integer stamps", ("ssm",), "fitted",
        lambda est: est.update(rows_after().reset_index(drop=True)), ValueError,
        ("y_new:", "integer", "datetime")),
    Row("update: inf", ALL, "fitted", lambda est: est.update(rows_after(a=[np.inf, 1.0])),
        ValueError, ("y_new:", "inf")),
    Row("update: non-numeric", ALL, "fitted", lambda est: est.update(rows_after(a=["x", "y"])),
        ValueError, ("y_new:", "not numeric")),
]

# accepted update rows run on a clone fitted just for them (they move the origin)
UPDATE_OK = [
    Row("update: one row with a NaN", ALL, "fresh",
        lambda est: est.update(rows_after(1, a=[np.nan])).predict(2), None, check=_finite),
    Row("update: one row, no frequency", ALL, "fresh",
        lambda est: est.update(rows_after(1).set_axis(pd.DatetimeIndex([NEXT], name="ts")))
        .predict(2), None, check=_finite),
    Row("update: an all-NaN row after a gap", ALL, "fresh",
        lambda est: est.update(rows_after(1, start=NEXT + pd.Timedelta("3h"), a=[np.nan],
                                          b=[np.nan])).predict(2), None, check=_finite),
]

# ------------------------------------------------------------------ parameters
SSM_PARAMS = [
    ("lookback", 0), ("lookback", 1.5), ("horizon", -1), ("horizon", "4"), ("d_model", "8"),
    ("n_layers", 0), ("max_epochs", 0), ("batch_size", 0), ("stride", 0), ("d_state", 7),
    ("dropout", 1.0), ("dropout", "x"), ("loss", "huber"), ("quantiles", [1.5]),
    ("quantiles", []), ("quantiles", [np.nan]), ("channel", "both"), ("lr", -1.0),
    ("lr", "abc"), ("lr", np.nan), ("lr", np.inf), ("lr_schedule", "step"),
    ("early_stopping", "yes"), ("val_size", -0.5), ("val_size", 1.5), ("val_size", "0.2"),
    ("scaler", "robust"), ("window_norm", "max"), ("device", "tpu"), ("trainer_kwargs", [1]),
    ("random_state", "abc"), ("random_state", 1.5), ("verbose", "x"), ("backbone", "lstm"),
    ("layer_kwargs", {"foo": 1}), ("layer_kwargs", [1]), ("window_affine", None),
]
PARAM_ROWS = [Row(f"SSMForecaster({p}={v!r})", ("ssm",), "fit",
                  (lambda p, v: lambda est: est.set_params(**{p: v}).fit(DF))(p, v), ValueError,
                  (f"{p}:" if p not in ("d_state",) else "d_state", "expected" if p not in
                   ("d_state", "layer_kwargs") else ""))
              for p, v in SSM_PARAMS]
PARAM_ROWS += [
    Row("SSMForecaster(d_state=7) names d_state", ("ssm",), "fit",
        lambda est: est.set_params(d_state=7).fit(DF), ValueError,
        ("d_state", "even", "try d_state=6")),
    Row("StatsmodelsForecaster(model='arima')", ("sm",), "fit",
        lambda est: est.set_params(model="arima").fit(DF), ValueError, ("model:", "expected")),
    Row("StatsmodelsForecaster(order=(1, 0))", ("sm",), "fit",
        lambda est: est.set_params(model="sarimax", order=(1, 0)).fit(DF), ValueError,
        ("order:", "3 non-negative ints")),
    Row("SeasonalNaiveForecaster(season_length=0)", ("naive",), "fit",
        lambda est: est.set_params(season_length=0).fit(DF), ValueError, ("season_length",)),
    Row("SeasonalNaiveForecaster(season_length='x')", ("naive",), "fit",
        lambda est: est.set_params(season_length="x").fit(DF), ValueError, ("season_length",)),
]

# ------------------------------------------------------------------ quantiles / intervals
Q_ROWS = [
    Row("quantiles=[nan]", ALL, "fitted", lambda est: est.predict_quantiles(2, quantiles=[np.nan]),
        ValueError, ("quantiles:",)),
    Row("quantiles=[]", ALL, "fitted", lambda est: est.predict_quantiles(2, quantiles=[]),
        ValueError, ("quantiles:",)),
    Row("quantiles=[1.2]", ALL, "fitted", lambda est: est.predict_quantiles(2, quantiles=[1.2]),
        ValueError, ("quantiles:",)),
    Row("coverage='0.9'", ALL, "fitted", lambda est: est.predict_interval(2, coverage="0.9"),
        (ValueError, TypeError), ("coverage",)),
    Row("coverage=1.5", ALL, "fitted", lambda est: est.predict_interval(2, coverage=1.5),
        ValueError, ("coverage",)),
]

TABLE = DATA_ROWS + H_ROWS + UPDATE_OK + PARAM_ROWS + Q_ROWS
CASES = [pytest.param(row, kind, id=f"{row.id} [{kind}]") for row in TABLE for kind in row.kinds]


def _fit(kind: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make(kind, **kw).fit(DF)


@pytest.fixture(scope="module")
def fitted() -> dict:
    return {"ssm": _fit("ssm", loss="quantile"), "sm": _fit("sm"), "naive": _fit("naive")}


def _snapshot(est) -> tuple:
    pred = np.asarray(est.predict(2), dtype=np.float64)
    return est.get_params(), pred


@pytest.mark.parametrize("row, kind", CASES)
def test_bad_input(row: Row, kind: str, fitted):
    if row.stage == "fit":
        est = make(kind, **({"loss": "quantile"} if kind == "ssm" else {}))
    elif row.stage == "fitted":
        est = fitted[kind]
        before = _snapshot(est)
    else:  # fresh fitted copy, for accepted updates
        est = _fit(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if row.exc is None:
            out = row.act(est)
            row.check(out)
            return
        with pytest.raises(row.exc) as info:
            row.act(est)
    msg = str(info.value)
    for frag in row.says:
        assert frag.lower() in msg.lower(), f"{frag!r} not in: {msg}"
    assert "Traceback" not in msg and len(msg) < 600, msg
    if row.stage == "fitted":  # a refused call changes nothing
        params, pred = _snapshot(est)
        assert params == before[0]
        np.testing.assert_array_equal(pred, before[1])


def test_table_size():
    """The issue asks for at least 60 rows; count them so a shrinking table is noticed."""
    assert len(TABLE) >= 60 and len(CASES) >= 150, (len(TABLE), len(CASES))


def test_messages_never_mention_unknown_parameters():
    """Messages of SSMForecaster must not point at options it does not take."""
    est = make("ssm")
    for y in (col(a="x"), col(a=np.arange(T) % 2 == 0)):
        with pytest.raises(ValueError) as info:
            est.fit(y)
        assert not re.search(r"target_cols|conj_sym", str(info.value)), str(info.value)
