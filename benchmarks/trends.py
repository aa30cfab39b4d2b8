"""Themes and trends on Online Retail II: readable themes, their peaks, and an honest check.

Protocol:

1. The weekly panel of ``prepare_online_retail`` (2009-11-30 .. 2011-11-28, 105 weeks).
2. Themes with the library defaults (all-MiniLM-L6-v2 embeddings of the item text, k-means,
   ``round(sqrt(n_items / 5))`` themes clipped to 30, text only) and, for comparison of
   readability, the names k-means gives with ``--compare-k`` other numbers of themes. For each
   theme: size, ``top_word_share`` (share of its items whose text holds its first name word),
   sales, growth, peak week (STL) and the week where its share of the shop's sales peaks.
3. Forecast growth at the panel's end: LightGBM (``default_forecast``) over the next 13 weeks.
4. Honest check of forecast growth, at a validation cutoff (2011-05-30) and a check cutoff
   (2011-08-29): LightGBM fitted on the panel up to the cutoff forecasts the next 13 weeks;
   each theme's forecast growth against the same weeks a year earlier is compared with the
   growth that happened (items known at the cutoff), for the smeared forecast (the default),
   LightGBM's median (the smeared forecast divided back by its smearing factor) and a
   persistence reference (the theme's last-13-weeks growth at the cutoff, carried on).

Results: ``benchmarks/results/trends.json`` and ``trends.md``.

Usage::

    python -m benchmarks.trends [--source PATH] [--out benchmarks/results] [--compare-k 20,40]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    machine,
    online_retail_panel,
    panel_cache_dir,
    write_results,
)
from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.decisions.themes import (
    THEME,
    ThemeSettings,
    embed_texts,
    find_themes,
    text_tokens,
    theme_words,
)
from salesformer.decisions.trends import (
    TrendSettings,
    analyze_trends,
    default_forecast,
    default_forecaster,
    group_table,
    growth,
)
from salesformer.decisions.trends_plot import plot_history, plot_seasonality

HORIZON = 13
#: Methods of forecast growth compared: LightGBM smeared to the mean (the default), LightGBM's
#: median, and persistence (the last 13 weeks' growth against a year earlier, carried on).
METHODS = ("smeared", "median", "persistence")
VALIDATION_CUTOFF = "2011-05-30"
CHECK_CUTOFF = "2011-08-29"
LOOKED_FOR = ("christmas", "heart", "bag", "easter", "candle")


def top_word_share(assignment: pd.DataFrame, words: dict[int, list[str]]) -> pd.Series:
    """Per theme, the share of its items whose text holds the theme's first name word."""
    shares = {}
    for theme, members in assignment.groupby(THEME)["text"]:
        first = words.get(int(theme), [])
        if not first:
            shares[int(theme)] = 0.0
            continue
        shares[int(theme)] = float(np.mean([first[0] in text_tokens(t) for t in members]))
    return pd.Series(shares)


def compare_k(panel: Panel, ks: list[int], settings: ThemeSettings) -> dict[str, list[str]]:
    """Theme names k-means gives with other numbers of themes (same embeddings)."""
    from sklearn.cluster import KMeans

    from salesformer.text import item_texts

    ids = np.asarray(panel.item_ids).astype(str)
    assert panel.items is not None
    texts = item_texts(panel.items).reindex(ids).fillna("").tolist()
    vectors = embed_texts(texts, settings, None).astype(np.float64)
    out = {}
    for k in ks:
        labels = KMeans(n_clusters=k, n_init=4, random_state=settings.seed).fit_predict(vectors)
        names = theme_words(texts, labels, settings.name_words)
        sizes = np.bincount(labels)
        out[str(k)] = [" / ".join(names[c]) for c in sorted(names, key=lambda c: -sizes[c])]
    return out


def _growth_stats(table: pd.DataFrame, column: str) -> dict[str, float]:
    """How well ``column`` predicts ``actual_growth`` across themes."""
    valid = table.dropna(subset=[column, "actual_growth"])
    error = valid[column] - valid["actual_growth"]
    agree = np.sign(valid[column]) == np.sign(valid["actual_growth"])
    return {
        "spearman": float(valid[column].corr(valid["actual_growth"], method="spearman")),
        "mean_abs_error_pts": float(error.abs().mean() * 100),
        "median_error_pts": float(error.median() * 100),
        "sign_agreement": float(agree.mean()),
        "themes": len(valid),
    }


def forecast_check(panel: Panel, groups: pd.DataFrame, cutoff: str) -> dict[str, Any]:
    """Theme growth over the 13 weeks after ``cutoff`` as predicted vs as it happened.

    One LightGBM fit (smearing on) gives the smeared forecast and, divided back by its
    smearing factor, the median one; persistence carries the last 13 weeks' growth on.
    """
    past = panel.until(cutoff)
    known = set(past.item_ids)
    themes = groups.loc[(groups["kind"] == "theme") & groups[ITEM_ID].isin(known)]
    started = time.perf_counter()
    model = default_forecaster(HORIZON).fit(past)
    smeared = model.predict(HORIZON, quantiles=())
    fit_seconds = time.perf_counter() - started
    factor = float(model.smearing_)
    median = smeared.assign(LightGBM=((smeared["LightGBM"] + 1.0) / factor - 1.0).clip(lower=0))
    settings = TrendSettings(horizon=HORIZON)
    reports = {
        "smeared": analyze_trends(past, themes, smeared, settings).table.set_index("group"),
        "median": analyze_trends(past, themes, median, settings).table.set_index("group"),
    }
    end = pd.Timestamp(cutoff) + pd.Timedelta(weeks=HORIZON)
    window = panel.sales.loc[
        panel.sales[ITEM_ID].isin(known)
        & (panel.sales[DATE] > pd.Timestamp(cutoff))
        & (panel.sales[DATE] <= end)
    ]
    actual_totals = window.merge(themes, on=ITEM_ID).groupby("group")[SALES].sum()
    history = analyze_trends(past, themes, None, settings).history
    rows = []
    for group, row in reports["smeared"].iterrows():
        values = history[f"theme:{group}"].to_numpy()
        base = float(values[len(values) - 52 : len(values) - 52 + HORIZON].sum())
        actual = float(actual_totals.get(group, 0.0))
        rows.append(
            {
                "theme": row["name"],
                "smeared_growth": row["forecast_growth_yoy"],
                "median_growth": reports["median"].loc[group, "forecast_growth_yoy"],
                "persistence_growth": row["growth_yoy"],
                "actual_growth": growth(actual, base),
                "smeared_total": row["forecast_sales"],
                "median_total": reports["median"].loc[group, "forecast_sales"],
                "actual_total": actual,
                "base_total": base,
            }
        )
    table = pd.DataFrame(rows)
    actual_sum, base_sum = table["actual_total"].sum(), table["base_total"].sum()
    return {
        "cutoff": cutoff,
        "horizon": HORIZON,
        "fit_seconds": round(fit_seconds, 1),
        "smearing_factor": factor,
        "methods": {m: _growth_stats(table, f"{m}_growth") for m in METHODS},
        "all_themes_growth": {
            "actual": growth(actual_sum, base_sum),
            "smeared": growth(table["smeared_total"].sum(), base_sum),
            "median": growth(table["median_total"].sum(), base_sum),
        },
        "rows": json.loads(table.to_json(orient="records")),
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a short markdown page."""

    def pct(value: Any) -> str:
        return "n/a" if value is None or not np.isfinite(value) else f"{value:+.0%}"

    lines = [
        "# Themes and trends on Online Retail II",
        "",
        f"`python -m benchmarks.trends`; {result['n_items']} items, {result['n_themes']} themes "
        f"(text only, all-MiniLM-L6-v2), panel {result['panel']}. Growth: last 13 weeks (to "
        f"{result['last_week']}) vs the same weeks a year earlier; forecast: LightGBM, next 13 "
        "weeks vs the same weeks a year earlier. Peak: STL seasonal peak of the theme's sales; "
        "share peak: week where the theme's share of all sales peaks.",
        "",
        "| # | theme | items | top word in | sales last 52 wk | growth y/y | forecast y/y "
        "| peak | share peak | top drivers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["themes"]:
        lines.append(
            f"| {row['group']} | {row['name']} | {row['n_items']} | {row['top_word_share']:.0%} "
            f"| {row['sales_last_season']:,.0f} | {pct(row['growth_yoy'])} "
            f"| {pct(row['forecast_growth_yoy'])} | {row['peak_label']} "
            f"| {row['share_peak_label']} | {row['drivers'][:70]} |"
        )
    lines += ["", "## Themes looked for", ""]
    for word, found in result["looked_for"].items():
        lines.append(f"- **{word}**: " + ("; ".join(found) if found else "no theme named so"))
    lines += [
        "",
        f"## Forecast growth: validation (cutoff {VALIDATION_CUTOFF}) and check "
        f"(cutoff {CHECK_CUTOFF})",
        "",
        "Each theme's growth over the 13 weeks after the cutoff against the same weeks a year "
        "earlier (items known at the cutoff), as predicted and as it happened.",
        "",
        "| cutoff | growth predicted by | Spearman vs actual | mean abs error (pts) "
        "| median error (pts) | sign agreement | all themes: predicted / actual |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "smeared": "LightGBM, smeared to the mean (default)",
        "median": "LightGBM median (no smearing)",
        "persistence": "persistence (last 13 weeks' growth)",
    }
    for key in ("forecast_validation", "forecast_check"):
        check = result[key]
        overall = check["all_themes_growth"]
        for method in METHODS:
            s = check["methods"][method]
            together = (
                f"{pct(overall[method])} / {pct(overall['actual'])}" if method in overall else "-"
            )
            lines.append(
                f"| {check['cutoff']} | {labels[method]} | {s['spearman']:.2f} "
                f"| {s['mean_abs_error_pts']:.1f} | {s['median_error_pts']:+.1f} "
                f"| {s['sign_agreement']:.0%} | {together} |"
            )
    lines += [
        "",
        f"Smearing factors: {result['forecast_validation']['smearing_factor']:.2f} (validation), "
        f"{result['forecast_check']['smearing_factor']:.2f} (check).",
    ]
    lines += ["", "## Theme names with other numbers of themes", ""]
    for k, names in result["compare_k"].items():
        lines.append(f"- **k={k}**: " + "; ".join(names))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--compare-k", default="20,40")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    panel, _, _ = online_retail_panel(args.source, panel_cache_dir())
    print(f"panel: {len(panel.item_ids)} items, {len(panel.dates)} weeks", flush=True)
    settings = ThemeSettings()
    clock = time.perf_counter()
    found = find_themes(panel, settings)
    theme_seconds = time.perf_counter() - clock
    groups = group_table(panel, found.assignment)
    clock = time.perf_counter()
    forecast = default_forecast(panel, HORIZON)
    forecast_seconds = time.perf_counter() - clock
    report = analyze_trends(panel, groups, forecast, TrendSettings(horizon=HORIZON))
    shares = top_word_share(found.assignment, found.words)
    themes = report.table.assign(top_word_share=report.table["group"].astype(int).map(shares))
    args.out.mkdir(parents=True, exist_ok=True)
    plot_history(report, args.out / "trends.png")
    plot_seasonality(report, args.out / "trends_seasonality.png")
    looked_for = {
        word: [
            f"{r.name} (peak {r.peak_label}, share peak {r.share_peak_label})"
            for r in themes.itertuples(index=False)
            if any(w.startswith(word) for w in str(r.name).split(" / "))
        ]
        for word in LOOKED_FOR
    }
    ks = [int(k) for k in args.compare_k.split(",") if k.strip()]
    result: dict[str, Any] = {
        "panel": f"{panel.first_date.date()} .. {panel.last_date.date()}",
        "last_week": str(panel.last_date.date()),
        "n_items": len(panel.item_ids),
        "n_themes": len(found.names),
        "settings": {"themes": vars(settings), "horizon": HORIZON},
        "seconds": {"themes": round(theme_seconds, 1), "forecast": round(forecast_seconds, 1)},
        "themes": json.loads(themes.to_json(orient="records")),
        "looked_for": looked_for,
        "forecast_validation": forecast_check(panel, groups, VALIDATION_CUTOFF),
        "forecast_check": forecast_check(panel, groups, CHECK_CUTOFF),
        "compare_k": compare_k(panel, ks, settings),
        "machine": machine(),
    }
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    page = markdown(result)
    write_results("trends", result, page, args.out, argv)
    print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
