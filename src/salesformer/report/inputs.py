"""Reading a backtest folder and the optional inputs of a report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, Panel
from salesformer.errors import DataValidationError
from salesformer.evaluation.metrics import (
    METRICS,
    SCALE_MAE,
    SCALE_MSE,
    evaluate,
    model_columns,
)
from salesformer.report.settings import (
    FORECASTS_FILE,
    METRICS_FILE,
    SERIES_FILE,
    ReportSettings,
)

#: Segment columns of ``series.parquet`` that the report breaks errors down by.
SEGMENT_COLUMNS = ("history_segment", "intermittency", "category")


@dataclass
class FitReport:
    """The training record of one LM found in a model folder."""

    label: str
    report: dict[str, Any]


@dataclass
class ReportData:
    """Everything a report's sections read, loaded once.

    Attributes:
        settings: the settings the data were read with.
        forecasts: ``forecasts.parquet`` (``item_id, cutoff, date, y``, model columns).
        series: ``series.parquet`` (one row per evaluated item and cutoff).
        summary: ``metrics.json`` (recomputed with :func:`evaluate` when the file is absent).
        models: the backtest's model names, in the order of the forecasts' columns.
        panel: the panel, when given.
        fit_reports: LM training records found in the model folder.
        model_config: the model folder's ``config.json``, when given.
        cache: results shared by sections (e.g. the items picked for the charts).
    """

    settings: ReportSettings
    forecasts: pd.DataFrame
    series: pd.DataFrame
    summary: dict[str, Any]
    models: list[str]
    panel: Panel | None = None
    fit_reports: list[FitReport] = field(default_factory=list)
    model_config: dict[str, Any] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def scored(self) -> pd.DataFrame:
        """Forecasts joined with the per-series facts (scales, segments), for the metrics;
        out-of-stock cells (``in_stock`` False) are left out, as in the backtest's metrics."""
        frame = self.forecasts
        if IN_STOCK in frame.columns:
            frame = frame.loc[frame[IN_STOCK].to_numpy(dtype=bool)]
        return frame.merge(self.series, on=[ITEM_ID, CUTOFF], how="left")

    def overall(self) -> pd.DataFrame:
        """The overall metrics table, one row per model."""
        return pd.DataFrame(self.summary.get("overall", []))


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataValidationError(
            f"cannot read {str(path)!r} ({type(exc).__name__}); give a folder written by "
            "'salesformer backtest --out DIR'"
        ) from exc


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a one-line error when it is not one."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataValidationError(
            f"cannot read {str(path)!r} as JSON ({exc}); rewrite it with the command that made it"
        ) from exc
    if not isinstance(value, dict):
        raise DataValidationError(f"{str(path)!r} holds a {type(value).__name__}, not an object")
    return value


def _recomputed_summary(scored: pd.DataFrame, models: list[str]) -> dict[str, Any]:
    """metrics.json's tables from the forecasts; MASE and RMSSE only with the naive scales."""
    scales = {"mase": SCALE_MAE, "rmsse": SCALE_MSE}
    metrics = [m for m in METRICS if scales.get(m, ACTUAL) in scored.columns]
    segments = {
        column: evaluate(scored, models, metrics, by=column).to_dict(orient="records")
        for column in SEGMENT_COLUMNS
        if column in scored.columns
    }
    return {
        "overall": evaluate(scored, models, metrics).to_dict(orient="records"),
        "by_segment": segments,
    }


def _check_summary(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    """``summary`` when its ``overall`` table names each model's WAPE, else a one-line error."""
    overall = summary.get("overall")
    rows = overall if isinstance(overall, list) and overall else [None]
    if not all(isinstance(row, dict) and {"model", "wape"} <= set(row) for row in rows):
        raise DataValidationError(
            f"{str(path)!r} has no 'overall' table with each model's 'wape'; rewrite it with "
            f"'salesformer backtest', or delete it to have the metrics recomputed"
        )
    return summary


def load_backtest(settings: ReportSettings) -> ReportData:
    """Read the backtest folder of ``settings`` (forecasts, series facts, metrics)."""
    folder = settings.backtest
    forecasts = _read_parquet(folder / FORECASTS_FILE)
    missing = [c for c in (ITEM_ID, CUTOFF, DATE, ACTUAL) if c not in forecasts.columns]
    if missing:
        raise DataValidationError(
            f"{FORECASTS_FILE} in {str(folder)!r} lacks column(s) {missing}; got "
            f"{list(forecasts.columns)}; give a folder written by 'salesformer backtest'"
        )
    if forecasts.empty:
        raise DataValidationError(
            f"{FORECASTS_FILE} in {str(folder)!r} has no rows; rerun the backtest with items "
            "that qualify for evaluation"
        )
    forecasts[ITEM_ID] = forecasts[ITEM_ID].astype(str)
    forecasts[CUTOFF] = pd.to_datetime(forecasts[CUTOFF])
    forecasts[DATE] = pd.to_datetime(forecasts[DATE])
    models = model_columns(forecasts)
    if not models:
        raise DataValidationError(
            f"{FORECASTS_FILE} in {str(folder)!r} has no model columns; got "
            f"{list(forecasts.columns)}; give a folder written by 'salesformer backtest'"
        )
    series_path = folder / SERIES_FILE
    if series_path.is_file():
        series = _read_parquet(series_path)
        series[ITEM_ID] = series[ITEM_ID].astype(str)
        series[CUTOFF] = pd.to_datetime(series[CUTOFF])
    else:
        series = forecasts[[ITEM_ID, CUTOFF]].drop_duplicates().reset_index(drop=True)
    data = ReportData(settings, forecasts, series, {}, models)
    metrics_path = folder / METRICS_FILE
    if metrics_path.is_file():
        data.summary = _check_summary(read_json(metrics_path), metrics_path)
    else:
        data.summary = _recomputed_summary(data.scored(), models)
    return data


def load_report_data(settings: ReportSettings) -> ReportData:
    """Read every input named in ``settings``."""
    data = load_backtest(settings)
    if settings.panel is not None:
        data.panel = Panel.load(settings.panel)
    if settings.model is not None:
        config_path = settings.model / "config.json"
        if not config_path.is_file():
            raise DataValidationError(
                f"no config.json in {str(settings.model)!r}; give a folder written by "
                "'salesformer fit' or leave --model out"
            )
        data.model_config = read_json(config_path)
        data.fit_reports = find_fit_reports(settings.model)
    return data


def find_fit_reports(folder: Path) -> list[FitReport]:
    """LM training records in a model folder: its own, or those of auto's candidates."""
    found = []
    configs = [folder / "config.json", *sorted(folder.glob("candidates/*/config.json"))]
    for path in configs:
        if not path.is_file():
            continue
        config = read_json(path)
        report = config.get("fit_report")
        if isinstance(report, dict) and isinstance(report.get("head"), dict):
            label = str(config.get("model", path.parent.name))
            if path.parent != folder:
                label = f"{path.parent.name} (candidate of auto)"
            found.append(FitReport(label=label, report=report))
    return found
