"""ssmts.plotting.plot_forecast on the Agg backend: figure, axes, labels, legend, PNG."""

import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from ssmts.plotting import plot_forecast


def _frames(C=2):
    idx = pd.date_range("2024-01-01", periods=60, freq="D", name="day")
    y = pd.DataFrame(np.random.default_rng(0).standard_normal((60, C)), index=idx,
                     columns=[f"c{k}" for k in range(C)])
    hist, fut = y.iloc[:48], y.iloc[48:]
    fc = fut * 0 + hist.mean()
    return hist, fc, (fc - 1, fc + 1), fut


def test_figure_axes_labels_legend(tmp_path):
    import matplotlib.pyplot as plt

    hist, fc, iv, fut = _frames()
    fig = plot_forecast(hist, fc, intervals=iv, truth=fut, title="demo")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_ylabel() == "c0" and fig.axes[1].get_xlabel() == "day"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["history", "forecast", "interval", "truth"]
    assert fig._suptitle.get_text() == "demo"
    assert isinstance(ax.xaxis.get_major_formatter(), matplotlib.dates.AutoDateFormatter) or \
        "Date" in type(ax.xaxis.get_major_formatter()).__name__
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


def test_series_numpy_and_given_ax():
    import matplotlib.pyplot as plt

    hist, fc, iv, _ = _frames(1)
    fig, ax = plt.subplots()
    out = plot_forecast(hist["c0"], fc["c0"], intervals=(iv[0]["c0"], iv[1]["c0"]), ax=ax)
    assert out is fig and len(fig.axes) == 1
    plt.close(fig)
    fig = plot_forecast(np.arange(10.0), np.full(3, 9.0))  # numpy: positions continue
    line = fig.axes[0].get_lines()[1]
    assert list(line.get_xdata()) == [10, 11, 12]
    plt.close(fig)


def test_many_columns_and_errors():
    import matplotlib.pyplot as plt

    hist, fc, _, _ = _frames(8)
    with pytest.warns(UserWarning, match="first 6"):
        fig = plot_forecast(hist, fc)
    assert len(fig.axes) == 6
    plt.close(fig)
    with pytest.raises(ValueError, match="forecast: columns"):
        plot_forecast(hist, fc[fc.columns[::-1]])
    with pytest.raises(ValueError, match="intervals"):
        plot_forecast(hist, fc, intervals=fc)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="ax: one Axes"):
        plot_forecast(hist.iloc[:, :2], fc.iloc[:, :2], ax=ax)
    plt.close("all")


def test_missing_matplotlib_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    hist, fc, _, _ = _frames(1)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_forecast(hist, fc)
