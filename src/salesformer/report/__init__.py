"""A self-contained HTML report of a backtest (and, when given, a model and decisions).

``salesformer report --backtest DIR --out report.html`` (and ``salesformer demo``) write it;
in Python: ``write_report(ReportSettings(backtest=DIR), "report.html")``. Charts are plotly
figures; plotly.js is embedded once, inline, so the file works offline.
"""

from __future__ import annotations

from salesformer.report.build import build_report, write_report
from salesformer.report.settings import ReportSettings

__all__ = ["ReportSettings", "build_report", "write_report"]
