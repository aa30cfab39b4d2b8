"""Client-level differential privacy of a federation: the noise for a budget, the epsilon spent.

With client-level DP the server clips each seller's update to L2 norm ``C`` and adds Gaussian
noise of standard deviation ``z * C`` to their sum (Flower's
``DifferentialPrivacyServerSideFixedClipping``, which adds ``z * C / n`` to the average of
``n`` updates). Adding or removing one seller changes the sum by at most ``C``, so each round
is a Gaussian mechanism with noise multiplier ``z`` on the seller's whole data (DP-FedAvg,
McMahan et al., 2018). Every seller takes part in every round, so the sampling rate is 1 and
``R`` rounds compose ``R`` such mechanisms; Opacus's RDP accountant gives the epsilon at
``delta`` (:func:`spent`), or the ``z`` that spends a requested epsilon (:func:`plan`).

The unit protected is one **seller**: all of its items, rows and customers together.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from salesformer.errors import ConfigError
from salesformer.models.lm.private import import_opacus

#: The accountant used (Opacus's Renyi-DP accountant).
ACCOUNTANT = "rdp"
#: Each round samples every seller.
SAMPLE_RATE = 1.0


@dataclass(frozen=True)
class ClientPrivacy:
    """The client-level guarantee of a federation (written to its report and config.json)."""

    epsilon: float
    delta: float
    noise_multiplier: float
    rounds: int
    sample_rate: float = SAMPLE_RATE
    accountant: str = ACCOUNTANT
    unit: str = "seller (client)"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "epsilon": round(self.epsilon, 4)}


def spent(noise_multiplier: float, rounds: int, delta: float) -> ClientPrivacy:
    """The epsilon that ``rounds`` rounds with ``noise_multiplier`` spend at ``delta``."""
    import_opacus()
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(float(noise_multiplier), SAMPLE_RATE, int(rounds))]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
        epsilon = float(accountant.get_epsilon(delta=float(delta)))
    return ClientPrivacy(epsilon, float(delta), float(noise_multiplier), int(rounds))


def plan(epsilon: float, delta: float, rounds: int, clients: int) -> ClientPrivacy:
    """The noise multiplier that spends at most ``epsilon`` over ``rounds``, before training.

    Raises:
        ConfigError: Opacus cannot meet the budget, or it needs noise above the number of
            clients (the noise on the average would then exceed any clipped update).
    """
    import_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    budget = (
        f"client-level epsilon {epsilon:g} (delta {delta:g}) cannot be met in {rounds} rounds "
        f"of {clients} clients"
    )
    hint = "give a larger --dp-epsilon, fewer --rounds or more clients"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
            sigma = get_noise_multiplier(
                target_epsilon=float(epsilon),
                target_delta=float(delta),
                sample_rate=SAMPLE_RATE,
                steps=int(rounds),
                accountant=ACCOUNTANT,
            )
    except ValueError as exc:
        raise ConfigError(f"the {budget} (Opacus: {str(exc).rstrip('.')}); {hint}") from exc
    if not math.isfinite(sigma) or sigma > clients:
        raise ConfigError(
            f"the {budget}: it needs noise multiplier {sigma:.3g}, above the {clients} clients "
            f"whose clipped updates are averaged, so the noise would drown every update; {hint}"
        )
    return spent(float(sigma), rounds, delta)
