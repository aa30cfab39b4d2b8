"""``auto``'s fit report in words: :meth:`AutoForecaster.describe` (see :mod:`.auto`)."""

from __future__ import annotations

from typing import Any

#: Key of the global choice in the report's segments (``auto.GLOBAL``).
GLOBAL = "(global)"
SEGMENT = "segment"


def describe_report(report: dict[str, Any], selection: str, metric: str) -> str:
    """A few lines on what ``auto`` chose where, and why, from its fit report."""
    label = metric.upper()
    lines = []
    if not report["validated"]:
        lines.append(f"auto: {report['note']}")
    else:
        refit = report.get("refit")
        final = (
            ""
            if refit is None
            else "; candidates refitted on the whole panel"
            if refit
            else "; candidates fitted once, updated to the whole panel"
        )
        lines.append(
            f"auto: selection {selection!r} by {label} on validation cutoffs "
            f"{', '.join(report['cutoffs'])} (horizon {report['horizon']}){final}"
        )
        for row in report["segments"]:
            lines.append(describe_segment(row, label))
    for skipped in report["skipped"]:
        lines.append(f"skipped {skipped['model']} ({skipped['stage']}): {skipped['error']}")
    return "\n".join(lines)


def describe_segment(row: dict[str, Any], metric: str) -> str:
    """``segment long (>26)/smooth (31 series): LightGBM (WAPE 0.610 vs AutoETS 0.660)``."""
    label = "overall" if row[SEGMENT] == GLOBAL else f"segment {row[SEGMENT]}"
    scores = {n: s for n, s in row["scores"].items() if s is not None}
    ranked = sorted(scores, key=lambda n: scores[n])
    weights = row["weights"]

    def score(name: str) -> str:
        return f"{scores[name]:.3f}" if name in scores else "n/a"

    if len(weights) > 1:
        mix = " + ".join(f"{w:.2f} {n}" for n, w in weights.items())
        body = f"{mix} ({metric} {', '.join(score(n) for n in weights)})"
    else:
        chosen = row["choice"]
        runner = next((n for n in ranked if n != chosen), None)
        versus = f" vs {runner} {score(runner)}" if runner else ""
        body = f"{chosen} ({metric} {score(chosen)}{versus})"
    if row["source"] not in ("segment", "global"):
        better = ranked and ranked[0] not in weights
        best = f"; best here {ranked[0]} {score(ranked[0])}" if better else ""
        body = f"{body} [{row['source']}{best}]"
    return f"{label} ({row['series']} series): {body}"
