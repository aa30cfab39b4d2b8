"""The report of a backtest with stock-outs and levels: masked cells counted, errors per level."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("hierarchicalforecast")

from salesformer.data.synthetic import generate_catalogue
from salesformer.evaluation.backtest import backtest
from salesformer.models.registry import make_model
from salesformer.report import ReportSettings, build_report
from salesformer.report.inputs import load_report_data
from salesformer.report.levels import level_scores, out_of_stock_cells


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two backtests of SeasonalNaive: with stock-outs and levels, and a plain one."""
    root = tmp_path_factory.mktemp("report-levels")
    panel = generate_catalogue(n_items=20, n_weeks=60, seed=3, stockout_rate=0.1).panel()
    models = [make_model("SeasonalNaive"), make_model("Naive")]
    result = backtest(
        models, panel, horizon=4, n_windows=2, levels=["category", "total"], reconcile="ols"
    )
    result.save(root / "levels")
    plain = generate_catalogue(n_items=20, n_weeks=60, seed=3).panel()
    backtest(models, plain, horizon=4, n_windows=2).save(root / "plain")
    return {"levels": root / "levels", "plain": root / "plain"}


def test_report_counts_masked_cells_and_scores_each_level(runs: dict[str, Path]) -> None:
    summary = json.loads((runs["levels"] / "metrics.json").read_text())
    assert summary["out_of_stock_cells"] > 0
    data = load_report_data(ReportSettings(backtest=str(runs["levels"])))
    assert out_of_stock_cells(data) == summary["out_of_stock_cells"]
    scores = level_scores(data)
    assert scores is not None
    expected = pd.DataFrame(summary["by_level"])
    pd.testing.assert_frame_equal(scores, expected)
    html = build_report(ReportSettings(backtest=str(runs["levels"])))
    section = html[html.index('id="levels"') :]
    section = section[: section.index("</section>")]
    cells = f"{summary['out_of_stock_cells']:,} of {len(data.forecasts):,} forecast cells"
    assert cells in html
    for level in ("item", "category", "total"):
        row = expected[
            (expected["level"] == level)
            & (expected["model"] == "SeasonalNaive")
            & (expected["variant"] == "reconciled")
        ].iloc[0]
        shown = re.search(rf"<td>{level}</td><td>SeasonalNaive</td>(.*?)</tr>", section, flags=re.S)
        assert shown is not None, level
        assert f">{row['wape']:.3f}<" in shown.group(1)
    # without levels and availability: neither the section nor the line
    plain = build_report(ReportSettings(backtest=str(runs["plain"])))
    assert 'id="levels"' not in plain and "forecast cells left out" not in plain
    # a summary recomputed without by_level: the section reads levels.parquet
    trimmed = {k: v for k, v in summary.items() if k != "by_level"}
    (runs["levels"] / "metrics.json").write_text(json.dumps(trimmed))
    again = level_scores(load_report_data(ReportSettings(backtest=str(runs["levels"]))))
    assert again is not None
    pd.testing.assert_frame_equal(again, expected)
