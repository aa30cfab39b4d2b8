"""Assemble the report: read the inputs once, build each section, render one HTML file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from salesformer._io import atomic_file, check_output_file
from salesformer.errors import ConfigError
from salesformer.report.accuracy import (
    calibration_section,
    forecasts_section,
    generated_line,
    models_section,
    overview_section,
    segments_section,
)
from salesformer.report.decisions import inventory_section, trends_section
from salesformer.report.explanations import explanations_section
from salesformer.report.inputs import ReportData, load_report_data
from salesformer.report.levels import levels_section
from salesformer.report.page import Section, render_page
from salesformer.report.settings import ReportSettings
from salesformer.report.training import finetune_section, training_section

#: Section builders in page order; each reads what it needs from the data and says when an
#: input it needs is missing. Builders that return None are left out of the page.
SectionBuilder = Callable[[ReportData], Section | None]
SECTIONS: tuple[SectionBuilder, ...] = (
    overview_section,
    models_section,
    segments_section,
    levels_section,
    forecasts_section,
    calibration_section,
    finetune_section,
    training_section,
    explanations_section,
    inventory_section,
    trends_section,
)


def build_sections(data: ReportData) -> list[Section]:
    """Every section of the report, in order."""
    built = (builder(data) for builder in SECTIONS)
    return [section for section in built if section is not None]


def build_report(settings: ReportSettings) -> str:
    """The report of ``settings`` as one self-contained HTML document.

    Args:
        settings: the backtest folder and optional inputs (see :class:`ReportSettings`).

    Returns:
        The HTML text, with plotly.js inline (works offline).
    """
    from plotly.offline import get_plotlyjs

    data = load_report_data(settings)
    sections = build_sections(data)
    return render_page(settings.title, generated_line(data), sections, get_plotlyjs())


def write_report(settings: ReportSettings, out: str | Path) -> Path:
    """Build the report and write it to ``out`` (``.html``), atomically.

    Raises:
        ConfigError: when ``out`` does not end in ``.html``.
    """
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(
            f"the report is an HTML file; --out must end in .html; got {str(path)!r}; "
            f"e.g. --out {path.with_suffix('.html').name}"
        )
    check_output_file(path)  # before the work of building the page
    text = build_report(settings)
    with atomic_file(path) as staging:
        staging.write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o666 & ~umask)  # a page to share, not the temp file's private 0600
    return path
