"""The Flower client of one seller: a ``NumPyClient`` around a :class:`LocalLearner`.

What it sends, each round, is the head's weight arrays, its number of training windows and
two losses; never a sales row, an item id or a text (``tests/test_federated.py`` checks the
messages).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from salesformer.federated.flower import import_flwr
from salesformer.federated.learner import LocalLearner

import_flwr()

from flwr.client import NumPyClient  # noqa: E402  (after the telemetry switch)
from flwr.common import Config, NDArrays, Scalar  # noqa: E402

#: The round setting the server sends: local epochs per round.
LOCAL_EPOCHS = "local_epochs"
#: Sent with the round's settings under client-level DP: the guarantee of the whole run.
DP_EPSILON, DP_DELTA, DP_NOISE = "dp_epsilon", "dp_delta", "dp_noise_multiplier"


class SellerClient(NumPyClient):
    """Trains the global head on the seller's own panel and sends back the weights only."""

    def __init__(self, learner: LocalLearner) -> None:
        self.learner = learner
        self.rounds = 0
        self.privacy: dict[str, Any] | None = None  # the server's client-level DP, if any

    def get_parameters(self, config: Config) -> NDArrays:
        return self.learner.weights()

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Scalar]]:
        self.learner.set_weights(parameters)
        self.rounds += 1
        if DP_EPSILON in config:
            self.privacy = {
                "epsilon": _number(config[DP_EPSILON]),
                "delta": _number(config.get(DP_DELTA)),
                "noise_multiplier": _number(config.get(DP_NOISE)),
                "unit": "seller (client)",
            }
        epochs = _number(config.get(LOCAL_EPOCHS, 1))
        metrics = self.learner.train(int(epochs) if math.isfinite(epochs) else 1)
        return self.learner.weights(), self.learner.windows, dict(metrics)

    def evaluate(
        self, parameters: NDArrays, config: Config
    ) -> tuple[float, int, dict[str, Scalar]]:
        # the global weights after the round: the learner keeps them (its final model)
        self.learner.set_weights(parameters)
        loss, count = self.learner.validation_loss()
        return loss, count, {"valid_loss": loss}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float | np.number) else math.nan
