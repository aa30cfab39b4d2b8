"""Why a model forecasts what it forecasts, for one item: ``explain(model, item_id)``.

* the LM: integrated gradients of the forecast (sales units, total and per step) over the
  words of the item's text and over its history, known-future covariates, calendar, static
  features and text vector (:mod:`.lm`);
* LightGBM and LightGBM-text: TreeSHAP contributions of the features (:mod:`.trees`);
* the statistical baselines: their fitted components (:mod:`.statistical`);
* ``auto``: the explanation of the candidate with the largest weight for the item (:mod:`.auto`).

Each model class names its explanation (``explainer``, ``"module:function"``) and the options
it takes; :func:`explain` calls it, so adding a model touches nothing here.

:func:`salesformer.explain.html.highlight_words` renders an LM explanation's words as HTML.
Heavy packages (torch, captum, lightgbm) are imported only when an explanation is computed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from salesformer.errors import ConfigError, NotFittedError
from salesformer.explain.result import Explanation

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
    function, accepted = _explanation_of(model)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"options {unknown} apply to the LM (or auto) only; got a {model.name} model"
            + (f" (its options: {', '.join(accepted)})" if accepted else "")
        )
    explanation: Explanation = function(model, item_id, horizon, future=future, **options)
    return explanation


def _explanation_of(model: Any) -> tuple[Any, tuple[str, ...]]:
    """The model's explanation function and its options, as the model's class names them.

    An object that is no forecaster class of ours (a stand-in) is looked up by its name in the
    model registry.
    """
    cls: Any = type(model)
    if getattr(cls, "explainer", None) is None:
        from salesformer.models.registry import available_models, model_class

        name = str(getattr(model, "name", ""))
        cls = model_class(name) if name in available_models() else None
    if cls is None or cls.explainer is None:
        raise ConfigError(
            f"cannot explain a {type(model).__name__}; explanations cover the LM, LightGBM, "
            "LightGBM-text, the statistical baselines and auto"
        )
    module, _, function = str(cls.explainer).partition(":")
    return getattr(importlib.import_module(module), function), tuple(cls.explanation_options)


__all__ = ["Explanation", "explain"]
