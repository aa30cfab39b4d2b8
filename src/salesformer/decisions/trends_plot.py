"""Pictures of a :class:`~salesformer.decisions.trends.TrendReport` (matplotlib, PNG).

- ``trends.png``: one small chart per group (the largest first): its sales history, the
  forecast dashed, and its growth in the title;
- ``seasonality.png``: heat maps of every group's seasonal profile (sales against their
  trend, by week of year or month) and of its share of all sales against that share's trend,
  peaks marked.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from salesformer.decisions.trends import GROUP, KIND, NAME, TrendReport, group_key

MAX_CHARTS = 12
MAX_HEATMAP_ROWS = 40


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _percent(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.0%}"


def _date_ticks(dates: pd.DatetimeIndex) -> tuple[list[int], list[str]]:
    """Positions and labels of the first period of each January and July."""
    ticks = [
        i
        for i, d in enumerate(dates)
        if d.month in (1, 7) and (i == 0 or dates[i - 1].month != d.month)
    ]
    return ticks, [dates[i].strftime("%Y-%m") for i in ticks]


def plot_history(report: TrendReport, path: str | Path, max_charts: int = MAX_CHARTS) -> Path:
    """Small multiples of history and forecast for the first ``max_charts`` groups."""
    plt = _pyplot()
    rows = report.table.head(max_charts)
    columns = 3
    lines = max(1, math.ceil(len(rows) / columns))
    figure, axes = plt.subplots(lines, columns, figsize=(5.2 * columns, 2.8 * lines), squeeze=False)
    dates = report.history.index.append(report.forecast.index)
    ticks, labels = _date_ticks(pd.DatetimeIndex(dates))
    past = np.arange(len(report.history))
    ahead = np.arange(len(report.history), len(dates))
    for ax, row in zip(axes.flat, rows.itertuples(index=False), strict=False):
        key = group_key(getattr(row, KIND), getattr(row, GROUP))
        values = report.history[key].to_numpy()
        ax.plot(past, values, color="#1f77b4", lw=1.2)
        if key in report.forecast and len(past):  # joined to the last actual value
            joined = np.r_[values[-1:], report.forecast[key].to_numpy()]
            ax.plot(np.r_[past[-1:], ahead], joined, color="#d62728", lw=1.6, ls="--")
        name = str(getattr(row, NAME))
        ax.set_title(
            f"{name[:38]}\nlast {_percent(row.growth_yoy)} y/y, "
            f"forecast {_percent(row.forecast_growth_yoy)} y/y, peak {row.peak_label or 'n/a'}",
            fontsize=8.5,
        )
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    figure.suptitle("Sales per group (blue) and forecast (red, dashed)", fontsize=11)
    height = 2.8 * lines  # inches: room for the title above and the date labels below
    figure.subplots_adjust(
        left=0.05, right=0.98, bottom=0.4 / height, top=1 - 0.85 / height, hspace=0.6, wspace=0.18
    )
    out = Path(path)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def plot_seasonality(report: TrendReport, path: str | Path) -> Path:
    """Heat maps of the groups' seasonal profiles: sales, and share of all sales, vs trend."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    rows = report.table.head(MAX_HEATMAP_ROWS)
    keys = [group_key(k, g) for k, g in zip(rows[KIND], rows[GROUP], strict=True)]
    figure, axes = plt.subplots(
        1, 2, figsize=(17, 0.3 * len(keys) + 1.8), sharey=True, squeeze=False
    )
    panels = (
        (report.profiles, "peak", "sales / trend level (dot: peak)"),
        (report.share_profiles, "share_peak", "share of all sales / its trend (dot: peak)"),
    )
    image = None
    for ax, (profiles, peak_column, title) in zip(axes[0], panels, strict=True):
        frame = profiles.reindex(columns=keys)
        values = np.exp(frame.to_numpy(dtype=float).T)
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", norm=LogNorm(vmin=1 / 3, vmax=3))
        positions = frame.index.to_numpy()
        step = max(1, len(positions) // 13)
        ax.set_xticks(
            range(0, len(positions), step), [str(p) for p in positions[::step]], fontsize=7.5
        )
        ax.set_xlabel(str(frame.index.name or "position"))
        ax.set_title(title, fontsize=10)
        for line, peak in enumerate(rows[peak_column]):
            if pd.notna(peak):
                ax.plot(int(peak) - 1, line, marker="o", color="black", ms=3)
    axes[0][0].set_yticks(range(len(keys)), [str(n)[:40] for n in rows[NAME]], fontsize=7.5)
    if image is not None:
        bar = figure.colorbar(image, ax=list(axes[0]), shrink=0.8)
        bar.set_ticks([1 / 3, 0.5, 1, 2, 3], labels=["1/3", "1/2", "1", "2", "3"])
        bar.ax.minorticks_off()
    figure.suptitle("Seasonal profiles (STL of log sales)", fontsize=11)
    out = Path(path)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return out
