"""Report section: why the model forecasts what it does, for a few items (highlighted words)."""

from __future__ import annotations

from typing import Any

from salesformer.data.contract import ITEM_ID, SALES
from salesformer.errors import MissingExtraError, SalesformerError
from salesformer.report.accuracy import best_model, pick_items
from salesformer.report.inputs import ReportData
from salesformer.report.page import Section, code, escape, note, table

TITLE = "Explanations"


def chosen_items(data: ReportData, model_items: set[str]) -> list[tuple[str, str]]:
    """``(why, item_id)``: the items of the forecast charts, then the best-selling ones."""
    wanted = data.settings.explain_items
    chosen = [(label, item) for label, item in pick_items(data, best_model(data))]
    chosen = [(label, item) for label, item in chosen if item in model_items][:wanted]
    if len(chosen) < wanted and data.panel is not None:
        totals = data.panel.sales.groupby(ITEM_ID)[SALES].sum().sort_values(ascending=False)
        for item in totals.index.astype(str):
            if len(chosen) >= wanted:
                break
            if item in model_items and item not in {i for _, i in chosen}:
                chosen.append(("a best-selling item", item))
    return chosen


def _one(explanation: Any, why: str, highlight: Any) -> str:
    total = float(explanation.forecast["forecast"].sum())
    parts = [
        f"<h3>{escape(explanation.item_id)} ({escape(why)})</h3>",
        f"<p>{escape(explanation.model)} forecasts {total:,.1f} units over the next "
        f"{explanation.horizon} periods; method: {escape(explanation.method)}.</p>",
    ]
    if not explanation.words.empty:
        parts.append(highlight(explanation))
    groups = explanation.groups()
    if not groups.empty:
        groups = groups.rename(
            columns={"group": "input", "attribution": f"effect ({explanation.scale})"}
        )
        parts.append(table(groups, caption="what moves the forecast, by kind of input"))
    elif not explanation.components.empty:
        components = explanation.components[explanation.components["step"] == 1]
        parts.append(table(components, caption="fitted components of the first step"))
    parts.extend(note(text) for text in explanation.notes[:2])
    return "".join(parts)


def explanations_section(data: ReportData) -> Section | None:
    """Word highlights (LM) or feature effects (other models) for a few items."""
    if data.settings.explain_items == 0:
        return None
    if data.settings.model is None:
        return Section(
            "explanations",
            TITLE,
            note("Not available: explanations need the fitted model. Pass its folder:")
            + code("salesformer report --backtest DIR --panel PANEL --model MODEL --out r.html"),
        )
    try:
        from salesformer.explain import explain
        from salesformer.explain.html import highlight_words
        from salesformer.models.persist import load_model
    except ImportError as exc:  # pragma: no cover - explain ships with the package
        return Section("explanations", TITLE, note(f"Explanations are not available: {exc}"))
    model = load_model(data.settings.model)
    model_items = {str(i) for i in model.panel_.item_ids}
    parts = [
        "<p>Why the model in <code>"
        + escape(data.settings.model)
        + "</code> forecasts what it does for the next periods, item by item. Words in "
        "<span style='background: rgba(26, 152, 80, .5)'>green</span> raise the forecast, "
        "words in <span style='background: rgba(215, 48, 39, .5)'>red</span> lower it; "
        "hover a word for its effect in units.</p>"
    ]
    for why, item in chosen_items(data, model_items):
        try:
            explanation = explain(model, item)
        except (SalesformerError, MissingExtraError) as exc:
            parts.append(note(f"{item}: no explanation ({str(exc).splitlines()[0]})."))
            continue
        parts.append(_one(explanation, why, highlight_words))
    if len(parts) == 1:
        parts.append(note("None of the backtest's items is in the model's panel."))
    return Section("explanations", TITLE, "".join(parts))
