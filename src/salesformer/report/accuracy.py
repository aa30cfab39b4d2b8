"""Report sections on forecast accuracy: overview, model table, segments, items, calibration."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from salesformer._version import __version__
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES
from salesformer.evaluation.metrics import SCALE_MAE, evaluate, quantile_columns, scaled_errors
from salesformer.report import figures
from salesformer.report.inputs import SEGMENT_COLUMNS, ReportData
from salesformer.report.levels import stockout_fact
from salesformer.report.page import Section, chart, definition_list, escape, note, table

#: Columns of the model table: metric key in metrics.json -> header.
TABLE_METRICS = {
    "wape": "WAPE",
    "mae": "MAE",
    "rmse": "RMSE",
    "mase": "MASE",
    "rmsse": "RMSSE",
    "wql": "wQL",
    "coverage80": "80% coverage",
    "bias": "bias",
    "rel_mae": "rel. MAE",
}
#: The metric that names the best model and ranks items.
RANK_METRIC = "wape"
MAX_CATEGORIES = 12


def generated_line(data: ReportData) -> str:
    """The header's subtitle: what the report covers and when it was made."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cutoffs = data.summary.get("cutoffs") or sorted(
        str(c.date()) for c in data.forecasts[CUTOFF].unique()
    )
    return (
        f"Rolling-origin backtest of {len(data.models)} models over {len(cutoffs)} cutoff(s); "
        f"generated {when} by salesformer {__version__}"
    )


def horizon(data: ReportData) -> int:
    """The backtest's horizon: from metrics.json, else the most dates after one cutoff."""
    value = data.summary.get("horizon")
    if isinstance(value, int) and value >= 1:
        return value
    return int(data.forecasts.groupby([CUTOFF, ITEM_ID]).size().max())


def overview_section(data: ReportData) -> Section:
    """What was evaluated, on which data, and where the inputs came from."""
    forecasts = data.forecasts
    cutoffs = sorted({str(pd.Timestamp(c).date()) for c in forecasts[CUTOFF].unique()})
    pairs = [
        ("backtest folder", f"<code>{escape(data.settings.backtest)}</code>"),
        ("models", escape(", ".join(data.models))),
        ("cutoffs", escape(", ".join(cutoffs))),
        ("horizon", f"{horizon(data)} periods after each cutoff"),
        (
            "evaluated",
            f"{forecasts[ITEM_ID].nunique():,} items, {len(data.series):,} series "
            f"(item x cutoff), {len(forecasts):,} forecast cells",
        ),
        (
            "forecast weeks",
            f"{forecasts[DATE].min().date()} .. {forecasts[DATE].max().date()}",
        ),
    ]
    stockouts = stockout_fact(data)
    if stockouts is not None:
        pairs.append(stockouts)
    notes = []
    if data.panel is not None:
        panel = data.panel
        pairs.append(
            (
                "panel",
                f"<code>{escape(data.settings.panel)}</code>: {len(panel.item_ids):,} items, "
                f"{len(panel.dates)} periods ({panel.first_date.date()} .. "
                f"{panel.last_date.date()}, {escape(panel.freq)})",
            )
        )
    else:
        notes.append("No panel given: forecast charts show the forecast windows only (--panel).")
    if data.settings.model is not None:
        model = data.model_config.get("model", "?") if data.model_config else "?"
        pairs.append(("model", f"<code>{escape(data.settings.model)}</code> ({escape(model)})"))
    for name, what in (("plan", "inventory plan"), ("trends", "trends")):
        given = getattr(data.settings, name)
        if given is not None:
            pairs.append((what, f"<code>{escape(given)}</code>"))
    if data.settings.plan is None and data.settings.trends is None:
        notes.append(
            "No decisions given: add --plan (salesformer plan inventory) and --trends "
            "(salesformer trends) for the inventory and trends sections."
        )
    body = definition_list(pairs)
    body += (
        "<p>Every model was fitted on the history up to each cutoff and forecast the periods "
        "after it; the errors below compare those forecasts with what was really sold. Lower "
        "is better for every error; the best value of each column is highlighted.</p>"
    )
    return Section("overview", "Overview", body, notes)


def best_cells(frame: pd.DataFrame, columns: list[str]) -> dict[str, set[int]]:
    """Row positions of the best value of each metric column.

    Errors: lowest; ``80% coverage``: closest to 0.8; ``bias``: closest to 0.
    """
    marks: dict[str, set[int]] = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        if column == TABLE_METRICS["coverage80"]:
            values = np.abs(values - 0.8)
        elif column == TABLE_METRICS["bias"]:
            values = np.abs(values)
        if np.isnan(values).all():
            continue
        best = np.nanmin(values)
        marks[column] = {int(i) for i in np.flatnonzero(np.isclose(values, best))}
    return marks


def model_table(data: ReportData) -> pd.DataFrame:
    """Overall metrics per model, sorted by WAPE, with fit+predict seconds when known."""
    overall = data.overall()
    shown = [m for m in TABLE_METRICS if m in overall.columns]
    frame = overall[["model", *shown]].rename(columns=TABLE_METRICS)
    timings = pd.DataFrame(data.summary.get("timings", []))
    if not timings.empty and {"fit_seconds", "predict_seconds"} <= set(timings.columns):
        seconds = timings.set_index("model")[["fit_seconds", "predict_seconds"]].sum(axis=1)
        frame["fit+predict s"] = frame["model"].map(seconds).round(1)
    return frame.sort_values(TABLE_METRICS[RANK_METRIC]).reset_index(drop=True)


def best_model(data: ReportData) -> str:
    """The model with the lowest WAPE over the whole backtest."""
    return str(model_table(data)["model"].iloc[0])


def models_section(data: ReportData) -> Section:
    """Model comparison: every metric per model, best highlighted."""
    frame = model_table(data)
    metrics = [c for c in frame.columns if c in TABLE_METRICS.values()]
    body = table(frame, best_cells(frame, metrics))
    body += (
        "<p>WAPE = sum|error| / sum(actual); MASE and RMSSE scale each series' errors by its own "
        "one-step naive error (below 1 beats the naive forecast); wQL is the weighted quantile "
        "(pinball) loss; 80% coverage is the share of actuals inside the q10-q90 band (best: "
        "0.80); bias &gt; 0 means over-forecasting; rel. MAE divides by the seasonal naive's "
        f"MAE. The best model by WAPE is <b>{escape(frame['model'].iloc[0])}</b>.</p>"
    )
    return Section("models", "Model comparison", body)


def _segment_table(records: pd.DataFrame, column: str, counts: pd.Series) -> pd.DataFrame:
    """WAPE with one row per model and one column per segment value (with its series)."""
    wide = records.pivot_table(index="model", columns=column, values=RANK_METRIC, aggfunc="first")
    wide.columns = [f"{value} ({int(counts.get(value, 0))} series)" for value in wide.columns]
    return wide


def segments_section(data: ReportData) -> Section:
    """WAPE per segment: history length, intermittency class, category."""
    by_segment = data.summary.get("by_segment") or {}
    parts, notes = [], []
    order = list(model_table(data)["model"])
    for column in SEGMENT_COLUMNS:
        records = pd.DataFrame(by_segment.get(column, []))
        if records.empty or column not in records.columns:
            notes.append(f"No '{column}' segment in this backtest.")
            continue
        records[column] = records[column].astype(str)
        counts = (
            data.series[column].astype(str).value_counts()
            if column in data.series.columns
            else pd.Series(dtype=int)
        )
        if column == "category" and records[column].nunique() > MAX_CATEGORIES:
            top = counts.head(MAX_CATEGORIES).index
            records = records[records[column].isin(top)]
            notes.append(f"Categories: the {MAX_CATEGORIES} with the most series are shown.")
        title = column.replace("_", " ")
        models = [m for m in order if m in set(records["model"])]
        wide = _segment_table(records, column, counts).reindex(models).reset_index()
        segments = [c for c in wide.columns if c != "model"]
        parts.append(f"<h3>By {escape(title)}</h3>")
        parts.append(table(wide, best_cells(wide, segments), caption="WAPE"))
        parts.append(
            chart(
                figures.segment_bars(records, column, RANK_METRIC, models),
                f"segment-{column}",
                f"each group of bars is one {title} value; a lower bar is a smaller error "
                "for that model on those series.",
            )
        )
    body = "".join(parts) or note("metrics.json has no segment metrics.")
    return Section("segments", "Error by segment", body, notes)


def pick_items(data: ReportData, model: str) -> list[tuple[str, str]]:
    """``(label, item_id)`` of the best, worst and largest items of ``model``.

    Best and worst rank items by their MASE over every cutoff (the mean of their series'
    scaled errors; WAPE when the backtest has no naive scales), among items that sold in the
    forecast windows; largest is the item with the most units sold in them.
    """
    if ("picked", model) in data.cache:
        return list(data.cache[("picked", model)])
    scored = data.scored()
    totals = scored.groupby(ITEM_ID)[ACTUAL].sum()
    sold = scored[scored[ITEM_ID].isin(totals.index[totals > 0])]
    if sold.empty:
        return []
    if SCALE_MAE in sold.columns:
        metric = "mase"
        per_item = scaled_errors(sold, model).groupby(level=ITEM_ID).mean()
    else:
        metric = RANK_METRIC
        per_item = evaluate(sold, [model], [metric], by=ITEM_ID).set_index(ITEM_ID)[metric]
    per_item = per_item.dropna()
    per_item.index = per_item.index.astype(str)
    ranked = per_item.sort_index().sort_values(kind="stable").index.tolist()
    chosen: list[tuple[str, str]] = []
    candidates = [
        (f"best item (lowest {metric.upper()})", ranked),
        (f"worst item (highest {metric.upper()})", ranked[::-1]),
        ("largest item (most units sold)", totals.sort_values(ascending=False).index.astype(str)),
    ]
    for label, ordered in candidates:
        for item in ordered:
            if item not in {c[1] for c in chosen}:
                chosen.append((label, str(item)))
                break
    data.cache[("picked", model)] = chosen
    return chosen


def quantile_bands(quantiles: dict[float, str]) -> list[tuple[str, str, str]]:
    """``(label, low column, high column)``: q10-q90, then q25-q75 (q20-q80 without them)."""
    bands = []
    inner = [pair for pair in ((0.25, 0.75), (0.2, 0.8)) if set(pair) <= set(quantiles)]
    for low, high in [(0.1, 0.9), *inner[:1]]:
        if low in quantiles and high in quantiles:
            label = f"q{round(low * 100)}-q{round(high * 100)}"
            bands.append((label, quantiles[low], quantiles[high]))
    return bands


def _history(data: ReportData, item: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    if data.panel is None:
        return pd.DataFrame()
    sales = data.panel.sales
    rows = sales[(sales[ITEM_ID] == item) & (sales[DATE] >= start) & (sales[DATE] <= end)]
    return rows[[DATE, SALES]]


def forecasts_section(data: ReportData) -> Section:
    """Forecast vs actual with quantile bands for the best, worst and largest items."""
    model = best_model(data)
    quantiles = quantile_columns(data.forecasts, model)
    steps = horizon(data)
    first_cutoff = data.forecasts[CUTOFF].min()
    offset = data.panel.offset if data.panel is not None else pd.DateOffset(weeks=1)
    start = first_cutoff - 3 * steps * offset
    parts = [
        f"<p>Forecasts of the best model, <b>{escape(model)}</b>, at every cutoff (dashed "
        "vertical lines), next to the actual sales"
        + (" and the history before them." if data.panel is not None else ".")
        + "</p>"
    ]
    notes = []
    bands = quantile_bands(quantiles)
    if not bands:
        notes.append(f"{model} has no q10 and q90 columns: no bands to draw.")
    shares = {"q10-q90": "80%", "q25-q75": "50%", "q20-q80": "60%"}
    shaded = " and ".join(
        f"{label} ({'light' if n == 0 else 'dark'}, should hold {shares[label]} of the weeks)"
        for n, (label, _, _) in enumerate(bands)
    )
    if len(separate_windows(data.forecasts)) < data.forecasts[CUTOFF].nunique():
        notes.append(
            "The forecast windows of some cutoffs overlap; each chart shows the earliest "
            "cutoff of the item and the later ones whose windows do not overlap it."
        )
    for number, (label, item) in enumerate(pick_items(data, model)):
        windows = data.forecasts[data.forecasts[ITEM_ID] == item]
        windows = windows[windows[CUTOFF].isin(separate_windows(windows))]
        history = _history(data, item, start, windows[DATE].max())
        text = _item_text(data, item)
        title = f"{label}: {item}" + (f" ({text})" if text else "")
        parts.append(
            chart(
                figures.forecast_chart(title, history, windows, model, bands),
                f"forecast-{number}",
                "black: what sold; dotted blue: the forecast made at the cutoff on its left"
                + (f"; shaded: the {shaded}." if bands else "."),
            )
        )
    return Section("forecasts", "Forecast vs actual", "".join(parts), notes)


def separate_windows(forecasts: pd.DataFrame) -> list[pd.Timestamp]:
    """Cutoffs whose forecast windows do not overlap, keeping the first and going forward."""
    kept: list[pd.Timestamp] = []
    last_date = None
    for cutoff, dates in forecasts.groupby(CUTOFF, sort=True)[DATE]:
        if last_date is None or dates.min() > last_date:
            kept.append(pd.Timestamp(cutoff))
            last_date = dates.max()
    return kept


def _item_text(data: ReportData, item: str, limit: int = 60) -> str:
    items = data.panel.items if data.panel is not None else None
    if items is None or "text" not in items.columns:
        return ""
    match = items.loc[items[ITEM_ID].astype(str) == item, "text"]
    text = str(match.iloc[0]) if len(match) else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def calibration_frame(forecasts: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Rows ``model, level, share``: the share of actuals at or below each quantile forecast."""
    rows = []
    actual = forecasts[ACTUAL].to_numpy(dtype=float)
    for model in models:
        for level, column in quantile_columns(forecasts, model).items():
            below = actual <= forecasts[column].to_numpy(dtype=float)
            rows.append({"model": model, "level": level, "share": float(np.mean(below))})
    return pd.DataFrame(rows, columns=["model", "level", "share"])


def calibration_section(data: ReportData) -> Section:
    """Nominal quantile level against the observed share of actuals below it, per model."""
    order = list(model_table(data)["model"])
    observed = calibration_frame(data.forecasts, order)
    if observed.empty:
        return Section(
            "calibration",
            "Quantile calibration",
            note("No model of this backtest has quantile columns (<model>-q10 ...)."),
        )
    models = [m for m in order if m in set(observed["model"])]
    wide = observed.pivot_table(index="model", columns="level", values="share").reindex(models)
    wide.columns = [f"q{round(level * 100):02d}" for level in wide.columns]
    body = chart(
        figures.calibration_chart(observed, models),
        "calibration",
        "a point at (0.9, 0.95) means 95% of actuals fell at or below the q90 forecast; "
        "points on the diagonal are calibrated, above it the quantiles are too high.",
    )
    body += table(wide.reset_index(), caption="share of actuals at or below each quantile forecast")
    zeros = float((data.forecasts[ACTUAL] == 0).mean())
    if zeros >= 0.2:
        body += note(
            f"{zeros:.0%} of the actual weeks sold nothing: every such week counts as at or "
            "below a quantile forecast of 0, which lifts the shares of the low quantiles."
        )
    return Section("calibration", "Quantile calibration", body)
