"""Plotly figures of the report; each function builds one chart from plain frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from salesformer.data.contract import ACTUAL, CUTOFF, DATE

PALETTE = (
    "#2563eb",
    "#ea580c",
    "#16a34a",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
    "#92400e",
    "#1e3a8a",
    "#f472b6",
    "#14b8a6",
    "#a3a3a3",
    "#facc15",
)
ACTUAL_COLOR = "#111827"
HISTORY_COLOR = "#6b7280"
BAND_COLOR = "37, 99, 235"  # rgb of PALETTE[0], for translucent quantile bands


def _layout(figure: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> None:
    """A small, plain look (the default plotly template adds ~10 kB to every chart)."""
    figure.update_layout(
        template=None,
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        paper_bgcolor="white",
        plot_bgcolor="white",
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        colorway=list(PALETTE),
        legend={
            "orientation": "h",
            "yanchor": "top",
            "y": -0.3 if x_title else -0.08,
            "x": 0.0,
            "xanchor": "left",
        },
        hovermode="x unified",
    )
    axis = {"showgrid": True, "gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zeroline": False}
    figure.update_xaxes(title_text=x_title, **axis)
    figure.update_yaxes(title_text=y_title, **axis)


def color(index: int) -> str:
    """The palette colour of the ``index``-th model."""
    return PALETTE[index % len(PALETTE)]


def segment_bars(table: pd.DataFrame, segment: str, metric: str, models: Sequence[str]) -> Any:
    """Grouped bars: ``metric`` per segment value (x) and model (colour).

    Args:
        table: rows ``model, <segment>, cells, <metric>`` (from ``metrics.json``'s by_segment).
        segment: the segment column.
        metric: the metric to show.
        models: models in legend order.
    """
    figure = go.Figure()
    for index, model in enumerate(models):
        rows = table[table["model"] == model]
        figure.add_trace(
            go.Bar(
                x=rows[segment].astype(str).tolist(),
                y=rows[metric].astype(float).round(4).tolist(),
                name=model,
                marker_color=color(index),
            )
        )
    figure.update_layout(barmode="group", hovermode="closest")
    _layout(figure, f"{metric.upper()} by {segment.replace('_', ' ')}", "", metric.upper())
    return figure


def forecast_chart(
    title: str,
    history: pd.DataFrame | None,
    windows: pd.DataFrame,
    model: str,
    bands: Sequence[tuple[str, str, str]],
) -> Any:
    """Actual sales, and the model's forecast with quantile bands at every cutoff.

    Args:
        title: chart title.
        history: ``date, sales`` of the item from the panel (None without a panel).
        windows: the item's rows of the forecast frame (``cutoff, date, y``, model columns).
        model: the model whose forecast is drawn.
        bands: ``(label, low column, high column)`` from the widest band to the narrowest.
    """
    figure = go.Figure()
    if history is not None and not history.empty:
        dates, sales = history[DATE], history["sales"]
    else:
        actual = windows.drop_duplicates(DATE).sort_values(DATE)
        dates, sales = actual[DATE], actual[ACTUAL]
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=sales,
            name="actual sales",
            mode="lines+markers",
            line={"color": ACTUAL_COLOR, "width": 1.5},
            marker={"size": 4},
        )
    )
    for number, (cutoff, part) in enumerate(windows.groupby(CUTOFF, sort=True)):
        _add_window(figure, part.sort_values(DATE), model, bands, first=number == 0)
        figure.add_vline(
            x=pd.Timestamp(cutoff).timestamp() * 1000,
            line={"color": "#9ca3af", "dash": "dash", "width": 1},
        )
    _layout(figure, title, "", "units")
    return figure


def _add_window(
    figure: Any,
    part: pd.DataFrame,
    model: str,
    bands: Sequence[tuple[str, str, str]],
    first: bool,
) -> None:
    """One cutoff's forecast and its quantile bands (legend entries from the first cutoff)."""
    for depth, (label, low, high) in enumerate(bands):
        alpha = 0.15 + 0.15 * depth
        figure.add_trace(
            go.Scatter(
                x=part[DATE],
                y=part[high],
                mode="lines",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=label,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=part[DATE],
                y=part[low],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=f"rgba({BAND_COLOR}, {alpha})",
                name=f"{label} band",
                legendgroup=label,
                showlegend=first,
                hoverinfo="skip",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=part[DATE],
            y=part[model],
            mode="lines+markers",
            line={"color": color(0), "width": 2, "dash": "dot"},
            marker={"size": 5},
            name=f"{model} forecast",
            legendgroup="forecast",
            showlegend=first,
        )
    )


def calibration_chart(observed: pd.DataFrame, models: Sequence[str]) -> Any:
    """Nominal quantile level (x) against the observed share of actuals below it (y).

    Args:
        observed: rows ``model, level, share``.
        models: models in legend order.
    """
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0.0, 1.0],
            y=[0.0, 1.0],
            mode="lines",
            name="perfect calibration",
            line={"color": "#9ca3af", "dash": "dash"},
            hoverinfo="skip",
        )
    )
    for index, model in enumerate(models):
        rows = observed[observed["model"] == model].sort_values("level")
        figure.add_trace(
            go.Scatter(
                x=rows["level"],
                y=rows["share"].round(4),
                mode="lines+markers",
                name=model,
                line={"color": color(index)},
            )
        )
    figure.update_layout(hovermode="closest")
    _layout(figure, "Quantile calibration", "nominal quantile level", "share of actuals below")
    figure.update_xaxes(range=[0, 1])
    figure.update_yaxes(range=[0, 1])
    return figure


def bars_by_model(values: pd.DataFrame, title: str, y_title: str) -> Any:
    """Grouped bars of ``values`` (rows: models; columns: what is compared)."""
    figure = go.Figure()
    for index, column in enumerate(values.columns):
        figure.add_trace(
            go.Bar(
                x=[str(i) for i in values.index],
                y=values[column].astype(float).round(5).tolist(),
                name=str(column),
                marker_color=color(index),
            )
        )
    figure.update_layout(barmode="group", hovermode="closest")
    _layout(figure, title, "", y_title, height=340)
    return figure


def loss_curves(history: pd.DataFrame, title: str, stage_starts: Sequence[int]) -> Any:
    """Training and validation loss per epoch, with a line where fine-tuning starts.

    Args:
        history: rows ``epoch, stage, train, valid`` with ``epoch`` counted across stages.
        title: chart title.
        stage_starts: epochs at which a later stage starts.
    """
    figure = go.Figure()
    for index, (column, label) in enumerate((("train", "training loss"), ("valid", "validation"))):
        figure.add_trace(
            go.Scatter(
                x=history["epoch"],
                y=history[column],
                mode="lines+markers",
                name=label,
                line={"color": color(index)},
                text=history["stage"],
                hovertemplate="epoch %{x} (%{text}): %{y:.4f}",
            )
        )
    for start in stage_starts:
        figure.add_vline(x=start - 0.5, line={"color": "#9ca3af", "dash": "dash", "width": 1})
    _layout(figure, title, "epoch", "loss (pinball, scaled)")
    if len(history) <= 30:
        figure.update_xaxes(dtick=1)
    return figure


def trend_lines(
    lines: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    history_dates: pd.Series,
    forecast_dates: pd.Series,
) -> Any:
    """Sales per group (solid) and their forecast (dotted, same colour).

    Args:
        lines: ``(label, history totals, forecast totals)`` per group.
        history_dates: dates of the history totals.
        forecast_dates: dates of the forecast totals.
    """
    figure = go.Figure()
    for index, (label, history, forecast) in enumerate(lines):
        figure.add_trace(
            go.Scatter(
                x=history_dates,
                y=list(history),
                mode="lines",
                name=label,
                legendgroup=label,
                line={"color": color(index), "width": 1.5},
            )
        )
        if len(forecast):
            figure.add_trace(
                go.Scatter(
                    x=forecast_dates,
                    y=list(forecast),
                    mode="lines",
                    name=f"{label} (forecast)",
                    legendgroup=label,
                    showlegend=False,
                    line={"color": color(index), "width": 2, "dash": "dot"},
                )
            )
    _layout(figure, "Sales per group", "", "units per period", height=420)
    return figure
