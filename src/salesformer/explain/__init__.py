"""Why a model forecasts what it forecasts, for one item: ``explain(model, item_id)``.

* the LM: integrated gradients of the forecast (sales units, total and per step) over the
  words of the item's text and over its history, known-future covariates, calendar, static
  features and text vector (:mod:`.lm`);
* LightGBM and LightGBM-text: TreeSHAP contributions of the features (:mod:`.trees`);
* the statistical baselines: their fitted components (:mod:`.statistical`);
* ``auto``: the explanation of the candidate with the largest weight for the item.

:func:`salesformer.explain.html.highlight_words` renders an LM explanation's words as HTML.
Heavy packages (torch, captum, lightgbm) are imported only when an explanation is computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from salesformer.errors import ConfigError, NotFittedError
from salesformer.explain.result import Explanation, unknown_item

if TYPE_CHECKING:
    import pandas as pd

    from salesformer.forecasting.protocol import Forecaster


def explain(
    model: Forecaster,
    item_id: str,
    horizon: int | None = None,
    *,
    future: pd.DataFrame | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s forecast for ``item_id`` with the method that suits the model.

    Args:
        model: a fitted forecaster (or one loaded with
            :func:`salesformer.models.persist.load_model`).
        item_id: an item of the model's panel.
        horizon: steps to explain (default: the model's horizon, else 8).
        future: known-future covariates of the horizon, as for ``predict`` (LM, LightGBM).
        **options: method settings of the LM (``n_steps``, ``word_steps``,
            ``baseline_token``; see :func:`salesformer.explain.lm.explain_lm`); for auto,
            passed on when the explained candidate is the LM.

    Returns:
        An :class:`Explanation`.

    Raises:
        DataValidationError: the item is not in the model's panel.
        NotFittedError: the model is not fitted.
        ConfigError: a bad horizon or option, or a model that cannot be explained.
    """
    if not hasattr(model, "panel_"):
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet; call .fit(panel) before explaining"
        )
    kind = _kind(model)
    if options and kind not in ("LM", "auto"):
        raise ConfigError(
            f"options {sorted(options)} apply to the LM (or auto) only; got a {model.name} model"
        )
    if kind == "LM":
        from salesformer.explain.lm import explain_lm

        return explain_lm(model, item_id, horizon, future=future, **options)
    if kind == "LightGBM":
        from salesformer.explain.trees import explain_lightgbm

        return explain_lightgbm(model, item_id, horizon, future=future)
    if kind == "statistical":
        from salesformer.explain.statistical import explain_statistical

        return explain_statistical(model, item_id, 8 if horizon is None else horizon)
    if kind == "auto":
        return _explain_auto(model, item_id, horizon, future, options)
    raise ConfigError(
        f"cannot explain a {type(model).__name__}; explanations cover the LM, LightGBM, "
        "LightGBM-text, the statistical baselines and auto"
    )


def _kind(model: Any) -> str:
    from salesformer.models.registry import STATISTICAL_MODELS

    name = getattr(model, "name", "")
    if name == "LM" and hasattr(model, "head_"):
        return "LM"
    if hasattr(model, "boosters_"):
        return "LightGBM"
    if name in STATISTICAL_MODELS and hasattr(model, "fitted_"):
        return "statistical"
    if name == "auto" and hasattr(model, "models_"):
        return "auto"
    return "unknown"


def _explain_auto(
    model: Any,
    item_id: str,
    horizon: int | None,
    future: pd.DataFrame | None,
    options: dict[str, Any],
) -> Explanation:
    """The explanation of the candidate that weighs most in the item's forecast."""
    weights = model.item_weights()
    item_id = str(item_id)
    if item_id not in weights.index:
        raise unknown_item(item_id, weights.index)
    row = weights.loc[item_id]
    row = row[row > 0].sort_values(ascending=False)
    chosen = str(row.index[0])
    steps = horizon if horizon is not None else int(getattr(model, "horizon", 8))
    candidate = model.models_[chosen]
    passed = options if _kind(candidate) == "LM" else {}
    inner = explain(candidate, item_id, steps, future=future, **passed)
    shares = ", ".join(f"{name} {weight:.0%}" for name, weight in row.items())
    inner.notes.insert(
        0,
        f"auto forecasts this item as {shares}; explained here: {chosen}"
        + (" (the others' parts are not shown)" if len(row) > 1 else ""),
    )
    return inner


__all__ = ["Explanation", "explain"]
