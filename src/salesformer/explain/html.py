"""The words of an LM explanation as HTML: each word on a colour that shows its attribution.

Green words raise the forecast, red words lower it; the stronger the colour, the larger the
attribution relative to the item's largest one. Hovering a word shows its attribution. Text
the model did not read (beyond its token limit) is grey. The output is a self-contained
``<div>`` (inline styles only), safe to put in any page: all text is HTML-escaped.
"""

from __future__ import annotations

import html

import numpy as np

from salesformer.errors import ConfigError
from salesformer.explain.result import Explanation

RAISES = (26, 152, 80)  # green
LOWERS = (215, 48, 39)  # red


def word_colour(attribution: float, largest: float, max_alpha: float = 0.85) -> str:
    """The CSS background of a word: green (raises) or red (lowers), alpha by |attribution|."""
    if largest <= 0 or not np.isfinite(attribution):
        return "transparent"
    red, green, blue = RAISES if attribution >= 0 else LOWERS
    alpha = max_alpha * min(abs(attribution) / largest, 1.0)
    return f"rgba({red}, {green}, {blue}, {alpha:.3f})"


def highlight_words(
    explanation: Explanation,
    *,
    step: int | None = None,
    legend: bool = True,
    max_alpha: float = 0.85,
) -> str:
    """The explained item's text as HTML, each word coloured by its attribution.

    Args:
        explanation: an LM explanation (:func:`salesformer.explain.explain` on an LM).
        step: colour by the attribution to this step's forecast (1-based; needs the
            explanation computed with ``word_steps=True``); None: the whole horizon.
        legend: add a line saying what the colours mean.
        max_alpha: opacity of the strongest word, in (0, 1].

    Returns:
        A ``<div class="sf-explained-text">`` element.

    Raises:
        ConfigError: the explanation has no words (not an LM), or no attributions for ``step``.
    """
    if explanation.words.empty:
        raise ConfigError(
            f"the explanation of {explanation.model} has no word attributions; "
            "highlighted words need an LM explanation"
        )
    if not 0 < max_alpha <= 1:
        raise ConfigError(f"max_alpha must be in (0, 1]; got {max_alpha!r}")
    words = explanation.words.sort_values("start")
    values = words["attribution"].to_numpy(dtype=float)
    if step is not None:
        chosen = explanation.word_steps[explanation.word_steps["step"] == step]
        if chosen.empty:
            raise ConfigError(
                f"no word attributions for step {step!r}; give a step in 1..{explanation.horizon} "
                "of an explanation computed with word_steps=True"
            )
        by_position = chosen.set_index("position")["attribution"]
        values = by_position.reindex(words["position"]).to_numpy(dtype=float)
    largest = float(np.nanmax(np.abs(values))) if len(values) else 0.0
    text = explanation.text
    parts = ['<div class="sf-explained-text" style="line-height: 1.9">']
    cursor = 0
    unit = "sales" if explanation.scale == "sales" else explanation.scale
    for (start, end, word), value in zip(
        words[["start", "end", "word"]].itertuples(index=False), values, strict=True
    ):
        parts.append(html.escape(text[cursor:start]))
        parts.append(
            f'<span style="background: {word_colour(value, largest, max_alpha)}; '
            f'border-radius: 3px; padding: 0 2px" title="{value:+.3g} {html.escape(unit)}">'
            f"{html.escape(str(word))}</span>"
        )
        cursor = int(end)
    if cursor < len(text):
        parts.append(f'<span style="color: #999">{html.escape(text[cursor:])}</span>')
    parts.append("</div>")
    if legend:
        what = "the whole horizon" if step is None else f"step {step}"
        parts.append(
            '<div class="sf-explained-legend" style="font-size: 0.8em; color: #555">'
            f"green raises the forecast of {html.escape(what)}, red lowers it; colour strength "
            f"follows |attribution| (largest: {largest:.3g} {html.escape(unit)})</div>"
        )
    return "".join(parts)


__all__ = ["highlight_words", "word_colour"]
