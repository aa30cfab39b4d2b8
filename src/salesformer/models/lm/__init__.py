"""The language-model forecaster (see :mod:`salesformer.models.lm.forecaster`)."""

from __future__ import annotations

from salesformer.models.lm.forecaster import FINETUNE_MODES, LMForecaster

__all__ = ["FINETUNE_MODES", "LMForecaster"]
