"""The server's strategy: FedAvg that meters each round, with optional client-level DP.

:class:`MeteredFedAvg` is Flower's ``FedAvg`` (weights averaged by each client's number of
training windows) that records, per round, the bytes of weights sent to the clients and
received from them (the serialised arrays; gRPC framing adds a little), and the aggregated
training and validation losses. With ``dp_noise`` (or ``dp_epsilon``, which sets
the noise for a budget) the strategy is wrapped in Flower's
``DifferentialPrivacyServerSideFixedClipping``: each client's update is clipped to
``dp_clip`` (L2) and Gaussian noise of ``dp_noise * dp_clip`` is added to their sum,
protecting each whole seller (client-level DP); the epsilon spent is accounted by
:mod:`salesformer.federated.privacy`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from salesformer.errors import ConfigError
from salesformer.federated.client import DP_DELTA, DP_EPSILON, DP_NOISE, LOCAL_EPOCHS
from salesformer.federated.flower import import_flwr
from salesformer.federated.privacy import ClientPrivacy, spent
from salesformer.federated.privacy import plan as plan_privacy

import_flwr()

from flwr.common import (  # noqa: E402
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
)
from flwr.server.client_manager import ClientManager  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.server.strategy import (  # noqa: E402
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    Strategy,
)


@dataclass(frozen=True)
class FederationSettings:
    """How the federation runs.

    Attributes:
        clients: sellers that take part in every round (all of them).
        rounds: rounds of FedAvg.
        local_epochs: epochs each client trains per round.
        dp_noise: noise multiplier of client-level DP (None: no noise, or set by
            ``dp_epsilon``).
        dp_clip: L2 bound of each client's update under client-level DP.
        round_timeout: seconds the server waits for the clients of a round.
        connect_timeout: seconds the server waits for every client to connect (and a
            client for the server to listen).
        dp_epsilon: client-level DP budget: the noise multiplier that spends at most this
            epsilon over the rounds (exclusive with ``dp_noise``).
        dp_delta: the delta at which the epsilon is accounted.
    """

    clients: int
    rounds: int = 10
    local_epochs: int = 1
    dp_noise: float | None = None
    dp_clip: float = 1.0
    round_timeout: float = 3600.0
    connect_timeout: float = 600.0
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings out of range."""
        checks = (
            ("clients", self.clients >= 2, "at least 2 sellers", self.clients),
            ("rounds", 1 <= self.rounds <= 10_000, "from 1 to 10000", self.rounds),
            ("local epochs", 1 <= self.local_epochs <= 1000, "from 1 to 1000", self.local_epochs),
            ("dp-clip", self.dp_clip > 0 and math.isfinite(self.dp_clip), "> 0", self.dp_clip),
            ("round timeout", self.round_timeout > 0, "> 0 seconds", self.round_timeout),
            ("connect timeout", self.connect_timeout > 0, "> 0 seconds", self.connect_timeout),
        )
        for name, ok, wanted, got in checks:
            if not ok:
                raise ConfigError(f"federated {name} must be {wanted}; got {got}")
        if self.dp_noise is not None and not (0 < self.dp_noise < 1e6):
            raise ConfigError(
                f"--dp-noise (client-level DP noise multiplier) must be > 0; got {self.dp_noise}; "
                "leave it out for no noise"
            )
        if self.dp_noise is not None and self.dp_epsilon is not None:
            raise ConfigError(
                f"give --dp-noise ({self.dp_noise}) or --dp-epsilon ({self.dp_epsilon}), not "
                "both: --dp-epsilon sets the noise that spends that budget"
            )
        if self.dp_epsilon is not None and not (0 < self.dp_epsilon < 1e6):
            raise ConfigError(
                f"--dp-epsilon (client-level DP budget) must be > 0; got {self.dp_epsilon}"
            )
        if not 0 < self.dp_delta < 1:
            raise ConfigError(
                f"--dp-delta must lie strictly between 0 and 1 (e.g. 1e-5); got {self.dp_delta}"
            )

    @property
    def private(self) -> bool:
        """Whether client-level DP noise is on."""
        return self.dp_noise is not None or self.dp_epsilon is not None

    def privacy(self) -> ClientPrivacy | None:
        """The client-level guarantee, worked out before training (None without DP).

        Raises:
            ConfigError: a ``dp_epsilon`` budget that cannot be met.
        """
        if self.dp_epsilon is not None:
            return plan_privacy(self.dp_epsilon, self.dp_delta, self.rounds, self.clients)
        if self.dp_noise is not None:
            return spent(self.dp_noise, self.rounds, self.dp_delta)
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parameter_bytes(parameters: Parameters) -> int:
    """Bytes of the serialised weight arrays of a Flower message."""
    return sum(len(t) for t in parameters.tensors)


class MeteredFedAvg(FedAvg):
    """FedAvg over every client each round, recording bytes and losses per round."""

    def __init__(self, settings: FederationSettings, privacy: ClientPrivacy | None = None) -> None:
        n = settings.clients
        fit_config: dict[str, Scalar] = {LOCAL_EPOCHS: settings.local_epochs}
        if privacy is not None:  # the clients record the guarantee in their model's config
            fit_config.update(
                {
                    DP_EPSILON: privacy.epsilon,
                    DP_DELTA: privacy.delta,
                    DP_NOISE: privacy.noise_multiplier,
                }
            )
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=n,
            min_evaluate_clients=n,
            min_available_clients=n,
            on_fit_config_fn=lambda _round: dict(fit_config),
            accept_failures=False,
        )
        self.rounds: dict[int, dict[str, Any]] = {}
        self.latest: Parameters | None = None
        self.privacy = privacy

    def _round(self, server_round: int) -> dict[str, Any]:
        return self.rounds.setdefault(
            server_round,
            {"round": server_round, "bytes_to_clients": 0, "bytes_from_clients": 0},
        )

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        pairs = super().configure_fit(server_round, parameters, client_manager)
        record = self._round(server_round)
        record["bytes_to_clients"] += sum(parameter_bytes(ins.parameters) for _, ins in pairs)
        record["clients"] = len(pairs)
        return pairs

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        record = self._round(server_round)
        record["bytes_from_clients"] += sum(parameter_bytes(r.parameters) for _, r in results)
        total = sum(r.num_examples for _, r in results)
        train = sum(float(r.metrics.get("train_loss", 0.0)) * r.num_examples for _, r in results)
        record["train_loss"] = round(train / max(total, 1), 6)
        return super().aggregate_fit(server_round, results, failures)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        self.latest = parameters  # the global weights after the round (noise included)
        pairs = super().configure_evaluate(server_round, parameters, client_manager)
        record = self._round(server_round)
        record["bytes_to_clients"] += sum(parameter_bytes(ins.parameters) for _, ins in pairs)
        return pairs

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        if loss is not None:
            self._round(server_round)["valid_loss"] = round(float(loss), 6)
        return loss, metrics

    def report(self) -> list[dict[str, Any]]:
        """Per round: clients, bytes both ways, training and validation loss."""
        return [self.rounds[r] for r in sorted(self.rounds)]


def make_strategy(settings: FederationSettings) -> tuple[Strategy, MeteredFedAvg]:
    """The strategy the server runs, and the metered FedAvg inside it."""
    settings.check()
    privacy = settings.privacy()  # an impossible budget fails here, before any round
    metered = MeteredFedAvg(settings, privacy)
    if privacy is None:
        return metered, metered
    wrapped = DifferentialPrivacyServerSideFixedClipping(
        metered,
        noise_multiplier=privacy.noise_multiplier,
        clipping_norm=float(settings.dp_clip),
        num_sampled_clients=settings.clients,
    )
    return wrapped, metered
