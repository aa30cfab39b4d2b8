"""The HTML report: its numbers, its sections, bad input, and how it looks in a real browser."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.backtest import backtest
from salesformer.evaluation.metrics import evaluate
from salesformer.models.persist import save_model
from salesformer.models.registry import make_model
from salesformer.report import ReportSettings, build_report, write_report
from salesformer.report.accuracy import (
    calibration_frame,
    models_section,
    pick_items,
    quantile_bands,
    separate_windows,
)
from salesformer.report.browser import chart_points, chromium_path, rendered_dom, screenshot
from salesformer.report.inputs import load_report_data
from salesformer.report.training import loss_history, mode_models

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = chromium_path()
TINY_LM: dict[str, Any] = {
    "head_epochs": 3,
    "finetune_epochs": 1,
    "epoch_samples": 400,
    "batch_items": 16,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=30, n_weeks=70, seed=3).panel()


@pytest.fixture(scope="module")
def folders(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real backtest of two fast models (2 windows of 4 weeks) and its panel, saved."""
    root = tmp_path_factory.mktemp("report-inputs")
    models = [
        make_model("SeasonalNaive"),
        make_model("LightGBM", n_estimators=30, quantile_n_estimators=15, n_origins=8, n_jobs=1),
    ]
    result = backtest(models, panel, horizon=4, n_windows=2)
    result.save(root / "backtest")
    panel.save(root / "panel")
    return {"backtest": root / "backtest", "panel": root / "panel", "root": root}


@pytest.fixture(scope="module")
def lm_dir(panel: Panel, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LM really fitted with LoRA (two training stages), saved."""
    model = make_model("LM", encoder=tiny_encoder, finetune="lora", horizon=4, **TINY_LM)
    return save_model(model.fit(panel), tmp_path_factory.mktemp("lm") / "model")


@pytest.fixture(scope="module")
def decisions(panel: Panel, folders: dict[str, Path]) -> dict[str, Path]:
    """An order plan and a trends folder, made by the decisions modules from the backtest."""
    from salesformer.decisions.inventory import PlanSettings, plan_inventory
    from salesformer.decisions.trends import analyze_trends, group_table

    forecasts = pd.read_parquet(folders["backtest"] / "forecasts.parquet")
    items = sorted(forecasts["item_id"].unique())
    stock = pd.DataFrame({"item_id": items, "on_hand": 5.0, "lead_time": 1, "review_period": 1})
    plan = plan_inventory(forecasts, stock, PlanSettings(n_samples=500), model="LightGBM")
    plan.to_csv(folders["root"] / "plan.csv", index=False)
    report = analyze_trends(panel, group_table(panel))
    (folders["root"] / "trends").mkdir(exist_ok=True)
    report.write_json(folders["root"] / "trends" / "trends.json")
    return {"plan": folders["root"] / "plan.csv", "trends": folders["root"] / "trends"}


@pytest.fixture(scope="module")
def full_report(folders: dict[str, Path], lm_dir: Path, decisions: dict[str, Path]) -> Path:
    settings = ReportSettings(
        folders["backtest"],
        panel=folders["panel"],
        model=lm_dir,
        plan=decisions["plan"],
        trends=decisions["trends"],
        explain_items=2,
    )
    return write_report(settings, folders["root"] / "report.html")


def _section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_model_table_shows_the_backtest_metrics_with_the_best_highlighted(
    full_report: Path, folders: dict[str, Path]
) -> None:
    html = full_report.read_text()
    summary = json.loads((folders["backtest"] / "metrics.json").read_text())
    overall = pd.DataFrame(summary["overall"]).set_index("model")
    best = overall["wape"].idxmin()
    table = _section(html, "models")
    assert f'<td class="best" data-num="1">{overall.loc[best, "wape"]:.3f}</td>' in table
    other = overall["wape"].idxmax()
    assert f'<td data-num="1">{overall.loc[other, "wape"]:.3f}</td>' in table
    assert f"The best model by WAPE is <b>{best}</b>" in table
    assert table.index(f"<td>{best}</td>") < table.index(f"<td>{other}</td>")  # sorted by WAPE


def test_report_is_one_offline_file_with_unique_ids(full_report: Path) -> None:
    html = full_report.read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", html)
    assert html.count("<script") - html.count("Plotly.newPlot(") == 1  # plotly.js, inline, once
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate element ids break plotly's getElementById"
    for anchor in ("overview", "models", "segments", "forecasts", "calibration", "finetune"):
        assert f'href="#{anchor}"' in html and f'<section id="{anchor}">' in html


def test_explanations_highlight_the_words_of_the_charted_items(full_report: Path) -> None:
    explanations = _section(full_report.read_text(), "explanations")
    assert explanations.count('<div class="sf-explained-text"') == 2
    assert "(best item (lowest MASE))" in explanations
    assert re.search(r'<span style="background: rgba\((26, 152, 80|215, 48, 39)', explanations)


def test_inventory_and_trends_sections_show_the_decisions(
    full_report: Path, decisions: dict[str, Path]
) -> None:
    html = full_report.read_text()
    plan = pd.read_csv(decisions["plan"])
    inventory = _section(html, "inventory")
    ordering = plan[plan["order_qty"] > 0]
    assert f"<b>{len(ordering):,} to order now</b>" in inventory
    assert f"{ordering['order_qty'].sum():,.0f} units" in inventory
    trends = _section(html, "trends")
    groups = json.loads((decisions["trends"] / "trends.json").read_text())["groups"]
    assert all(f"<td>{g['name']}</td>" in trends for g in groups)
    assert 'data-chart="trends-sales"' in trends
    without = build_report(ReportSettings(decisions["plan"].parent / "backtest"))
    assert '<section id="inventory">' not in without and '<section id="trends">' not in without


def test_segments_cover_history_intermittency_and_category(full_report: Path) -> None:
    segments = _section(full_report.read_text(), "segments")
    for chart in ("segment-history_segment", "segment-intermittency", "segment-category"):
        assert f'data-chart="{chart}"' in segments


def test_best_worst_and_largest_items_follow_the_metrics(folders: dict[str, Path]) -> None:
    data = load_report_data(ReportSettings(folders["backtest"]))
    picked = pick_items(data, "LightGBM")
    assert [label.split()[0] for label, _ in picked] == ["best", "worst", "largest"]
    assert len({item for _, item in picked}) == 3
    scored = data.scored()
    totals = scored.groupby("item_id")["y"].sum()
    sold = scored[scored["item_id"].isin(totals.index[totals > 0])]
    mase = evaluate(sold, ["LightGBM"], ["mase"], by="item_id").set_index("item_id")["mase"]
    assert picked[0][1] == mase.idxmin() and picked[1][1] == mase.idxmax()
    assert picked[2][1] == totals.idxmax() or totals.idxmax() in {picked[0][1], picked[1][1]}


def test_forecasts_alone_are_scored_and_a_stale_metrics_file_is_one_line(tmp_path: Path) -> None:
    dates = pd.date_range("2024-01-07", periods=3, freq="W-SUN")
    pd.DataFrame(
        {"item_id": "A", "cutoff": pd.Timestamp("2023-12-31"), "date": dates}
        | {"y": [1.0, 0.0, 3.0], "Naive": 2.0}
    ).to_parquet(tmp_path / "forecasts.parquet")
    data = load_report_data(ReportSettings(backtest=tmp_path))  # no series.parquet: no scales
    overall = data.overall().set_index("model")
    assert overall.loc["Naive", "wape"] == pytest.approx(4 / 4) and "mase" not in overall
    assert "<b>Naive</b>" in models_section(data).body
    assert pick_items(data, "Naive")[0] == ("best item (lowest WAPE)", "A")
    (tmp_path / "metrics.json").write_text(json.dumps({"overall": [{"model": "Naive"}]}))
    with pytest.raises(DataValidationError, match="no 'overall' table with each model's 'wape'"):
        load_report_data(ReportSettings(backtest=tmp_path))


def test_table_formats_integer_columns_as_numbers() -> None:
    from salesformer.report.page import table

    html = table(pd.DataFrame({"order": [12345], "packs": [2]}))  # int64 rows: numpy scalars
    assert '<td data-num="1">12,345</td><td data-num="1">2</td>' in html


def test_calibration_is_the_share_of_actuals_at_or_below_each_quantile() -> None:
    frame = pd.DataFrame(
        {"y": [1.0, 2.0, 3.0, 4.0], "M": 2.0, "M-q10": [0.0, 0.0, 0.0, 5.0], "M-q50": 2.0}
    )
    shares = calibration_frame(frame, ["M"]).set_index("level")["share"]
    assert shares.to_dict() == {0.1: 0.25, 0.5: 0.5}
    bands = quantile_bands({0.1: "a", 0.25: "b", 0.5: "c", 0.75: "d", 0.9: "e"})
    assert bands == [("q10-q90", "a", "e"), ("q25-q75", "b", "d")]


def test_charts_skip_cutoffs_whose_windows_overlap() -> None:
    cutoffs = pd.to_datetime(["2024-01-01", "2024-01-15", "2024-02-05"])
    frame = pd.DataFrame(
        {
            "cutoff": np.repeat(cutoffs, 4),
            "date": [c + pd.Timedelta(weeks=k) for c in cutoffs for k in range(1, 5)],
        }
    )
    assert separate_windows(frame) == [cutoffs[0], cutoffs[2]]


def test_without_an_lm_the_finetune_and_training_sections_say_how_to_get_them(
    folders: dict[str, Path],
) -> None:
    html = build_report(ReportSettings(folders["backtest"]))
    finetune = _section(html, "finetune")
    assert "Not available in this backtest" in finetune and "--finetune lora" in finetune
    assert "data-chart" not in finetune
    assert "Training curves not available" in _section(html, "training")
    assert "No panel given" in _section(html, "overview")


def plotted_traces(html: str, chart: str) -> list[dict[str, Any]]:
    """The data traces passed to ``Plotly.newPlot`` for ``chart``."""
    match = re.search(rf'Plotly\.newPlot\(\s*"{chart}",\s*', html)
    assert match, f"no chart {chart}"
    traces, _ = json.JSONDecoder().raw_decode(html, match.end())
    return list(traces)


def _values(column: Any) -> np.ndarray:
    """A trace column: a JSON list, or plotly's base64 typed array."""
    if isinstance(column, dict):
        return np.frombuffer(base64.b64decode(column["bdata"]), dtype=column["dtype"])
    return np.asarray(column, dtype=float)


def test_lm_training_curves_and_stage_losses_come_from_its_fit_report(
    full_report: Path, lm_dir: Path
) -> None:
    report = json.loads((lm_dir / "config.json").read_text())["fit_report"]
    html = full_report.read_text()
    history, starts = loss_history(report)
    assert len(history) == report["head"]["epochs"] + report["finetune_stage"]["epochs"]
    assert starts == [report["head"]["epochs"] + 1]
    training = _section(html, "training")
    assert 'data-chart="training-0"' in training
    traces = plotted_traces(training, "chart-training-0")
    assert np.allclose(_values(traces[1]["y"]), history["valid"].to_numpy())
    assert np.allclose(_values(traces[0]["y"]), history["train"].to_numpy())
    finetune = _section(html, "finetune")
    assert f"Stage 1 best {report['head']['best_valid']:.4f}" in finetune
    assert f"stage 2 (lora) best {report['finetune_stage']['best_valid']:.4f}" in finetune


def test_loss_history_skips_stages_without_epochs() -> None:
    epochs = [{"epoch": 1, "train": 0.5, "valid": 0.6}, {"epoch": 2, "train": 0.4, "valid": 0.5}]
    report = {"head": {"history": None}, "finetune": "lora", "finetune_stage": {"history": epochs}}
    history, starts = loss_history(report)
    assert list(history["epoch"]) == [1, 2] and set(history["stage"]) == {"lora"}
    assert starts == []  # no dashed line before the first curve drawn
    both, starts = loss_history({**report, "head": {"history": epochs}})
    assert list(both["stage"]) == ["head", "head", "lora", "lora"] and starts == [3]


def test_lm_columns_per_finetune_mode_are_compared(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    assert mode_models(["LM-full", "Naive", "LM-frozen", "lm_lora"]) == {
        "frozen": "LM-frozen",
        "lora": "lm_lora",
        "full": "LM-full",
    }
    forecasts = pd.read_parquet(folders["backtest"] / "forecasts.parquet")
    renamed = {
        c: c.replace("SeasonalNaive", "LM-frozen").replace("LightGBM", "LM-lora")
        for c in forecasts.columns
    }
    folder = tmp_path / "modes"
    folder.mkdir()
    forecasts.rename(columns=renamed).to_parquet(folder / "forecasts.parquet")
    shutil.copy(folders["backtest"] / "series.parquet", folder)
    finetune = _section(build_report(ReportSettings(folder)), "finetune")  # metrics recomputed
    assert 'data-chart="finetune-backtest"' in finetune and "Not available" not in finetune


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


def test_cli_writes_the_report_and_rejects_bad_input_without_a_file(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    assert invoke(["report", "--backtest", str(folders["backtest"]), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600
    bad = [
        (["--backtest", str(tmp_path / "missing")], "does not exist"),
        (["--backtest", str(folders["root"])], "did you mean"),
        (["--backtest", str(folders["backtest"]), "--panel", str(tmp_path / "no")], "--panel"),
    ]
    for options, expected in bad:
        target = tmp_path / "bad.html"
        assert invoke(["report", *options, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
        assert not target.exists()
    pdf = tmp_path / "r.pdf"
    assert invoke(["report", "--backtest", str(folders["backtest"]), "--out", str(pdf)]) == 2
    assert not pdf.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temp files left


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("SALESFORMER_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
def test_report_renders_charts_with_data_in_headless_chromium(full_report: Path) -> None:
    html = full_report.read_text()
    expected = re.findall(r'<figure class="chart" data-chart="([^"]+)"', html)
    assert len(expected) >= 8
    points = chart_points(rendered_dom(full_report))
    assert sorted(points) == sorted(f"chart-{name}" for name in expected)
    empty = [name for name, count in points.items() if count < 2]
    assert not empty, f"charts drawn without data: {empty}"

    shot = screenshot(full_report, artifacts_dir() / "report.png", size=(1280, 5000))
    from PIL import Image

    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (5000, 1280)
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200, "the screenshot is nearly blank"
    assert pixels.std() > 20
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 120)  # chart lines, bars and header
    assert blue.mean() > 0.002


def test_chart_points_tells_drawn_charts_from_empty_ones() -> None:
    dom = (
        '<div id="chart-a" class="plotly-graph-div js-plotly-plot"><svg class="main-svg">'
        '<g class="cartesianlayer"><g class="scatterlayer"><g class="trace">'
        '<path class="js-line" d="M0,10L5,4L10,7"></path></g></g></g></svg></div>'
        '<div id="chart-b" class="plotly-graph-div js-plotly-plot"><svg class="main-svg">'
        '<g class="cartesianlayer"><g class="scatterlayer"></g></g>'
        '<path class="xgrid" d="M0,0L0,100"></path></svg></div>'
    )
    assert chart_points(dom) == {"chart-a": 3, "chart-b": 0}


def test_settings_and_decision_inputs_are_checked(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="explain_items must be a whole number from 0 to 20"):
        ReportSettings(folders["backtest"], explain_items=-1)
    with pytest.raises(ConfigError, match="--plan"):
        ReportSettings(folders["backtest"], plan=tmp_path / "missing.csv")
    bad_plan = tmp_path / "plan.csv"
    pd.DataFrame({"item_id": ["a"], "qty": [1]}).to_csv(bad_plan, index=False)
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['position'"):
        build_report(ReportSettings(folders["backtest"], plan=bad_plan))
    with pytest.raises(DataValidationError, match=r"no trends\.json"):
        build_report(ReportSettings(folders["backtest"], trends=tmp_path))
