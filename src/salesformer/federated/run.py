"""Running a federation: the server, a seller's client, and both on one machine.

The server (:func:`serve`) and each client (:func:`join`) talk Flower's gRPC protocol; on
separate machines each seller runs ``salesformer federated client`` next to its own data and
the marketplace runs ``salesformer federated server``. :func:`simulate` runs the very same
server and clients on one machine, the clients in threads, over the loopback interface: the
code path of a real deployment, not a stand-in for it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salesformer._io import atomic_dir
from salesformer.data.contract import Panel
from salesformer.errors import ConfigError, SalesformerError
from salesformer.federated.client import SellerClient
from salesformer.federated.flower import import_flwr
from salesformer.federated.learner import LocalLearner
from salesformer.federated.privacy import ClientPrivacy
from salesformer.federated.server import FederationSettings, make_strategy
from salesformer.federated.tls import ServerCertificates
from salesformer.models.lm import LMForecaster

import_flwr()

from flwr.server.client_manager import SimpleClientManager  # noqa: E402

#: What a federated run writes beside the models.
REPORT_FILE = "federated.json"
#: The global head's weights as the server saves them.
GLOBAL_FILE = "global_head.safetensors"


class FederationError(SalesformerError, RuntimeError):
    """A federated run did not complete (a client failed, or no round finished)."""


@dataclass
class FederationResult:
    """What the server ends with: the global weights and the per-round report."""

    weights: list[np.ndarray]
    rounds: list[dict[str, Any]]
    seconds: float
    settings: FederationSettings
    privacy: ClientPrivacy | None = None

    def report(self) -> dict[str, Any]:
        sent = [r["bytes_to_clients"] + r["bytes_from_clients"] for r in self.rounds]
        return {
            "settings": self.settings.to_json(),
            "rounds": self.rounds,
            "bytes_per_round": int(np.mean(sent)) if sent else 0,
            "bytes_total": int(sum(sent)),
            "seconds": round(self.seconds, 2),
            "strategy": "FedAvg" + (" + server-side fixed clipping DP" if self.privacy else ""),
            "client_privacy": None if self.privacy is None else self.privacy.to_json(),
        }


def check_address(address: str) -> str:
    """``host:port`` with a port in 1..65535, else a :class:`ConfigError`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--address must be HOST:PORT (e.g. 0.0.0.0:9092 for a server, "
            f"server.example:9092 for a client); got {address!r}"
        )
    return address


def serve(
    address: str,
    settings: FederationSettings,
    abort: threading.Event | None = None,
    certificates: ServerCertificates | None = None,
) -> FederationResult:
    """Run the server at ``address`` until its rounds are done; the global weights.

    The server waits at most ``settings.connect_timeout`` seconds for its clients (and stops
    waiting when ``abort`` is set), then raises :class:`FederationError`. With
    ``certificates`` it accepts TLS connections only.
    """
    flwr = import_flwr()
    from flwr.common import parameters_to_ndarrays

    strategy, metered = make_strategy(settings)
    started = time.perf_counter()
    flwr.server.start_server(
        server_address=check_address(address),
        config=flwr.server.ServerConfig(
            num_rounds=settings.rounds, round_timeout=settings.round_timeout
        ),
        strategy=strategy,
        client_manager=BoundedClientManager(settings.connect_timeout, abort),
        certificates=None if certificates is None else certificates.flower(),
    )
    if metered.latest is None or len(metered.rounds) < settings.rounds:
        raise FederationError(
            f"the federation finished {len(metered.rounds)} of {settings.rounds} rounds; "
            "check that every client reached the server (see the server's log)"
        )
    weights = parameters_to_ndarrays(metered.latest)
    seconds = time.perf_counter() - started
    return FederationResult(weights, metered.report(), seconds, settings, metered.privacy)


def join(
    address: str,
    client: SellerClient,
    max_wait: float = 300.0,
    root_certificate: bytes | None = None,
) -> None:
    """Connect ``client`` to the server at ``address`` and serve it until it is done.

    Waits up to ``max_wait`` seconds for the server to listen (clients may start first).
    With ``root_certificate`` (PEM) the connection is TLS, and the server's certificate must
    be signed by it; without, plain gRPC.
    """
    flwr = import_flwr()
    wait_for_server(check_address(address), max_wait)
    flwr.client.start_client(
        server_address=check_address(address),
        client=client.to_client(),
        insecure=root_certificate is None,
        root_certificates=root_certificate,
        max_wait_time=max_wait,
    )


def wait_for_server(address: str, seconds: float) -> None:
    """Return once ``address`` accepts TCP connections; :class:`FederationError` after
    ``seconds``."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise FederationError(
                    f"no federated server listens at {address} after {seconds:g} s "
                    f"({exc}); start 'salesformer federated server' there first"
                ) from exc
            time.sleep(0.2)


class BoundedClientManager(SimpleClientManager):
    """Flower's client manager that waits for clients a bounded time (Flower's: a day)."""

    def __init__(self, timeout: float, abort: threading.Event | None = None) -> None:
        super().__init__()
        self.timeout = timeout
        self.abort = abort

    def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
        deadline = time.monotonic() + min(float(timeout), self.timeout)
        while time.monotonic() < deadline:
            if self.abort is not None and self.abort.is_set():
                return False
            if super().wait_for(num_clients, timeout=1):
                return True
        return False


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def simulate(
    partitions: dict[str, Panel],
    lm: dict[str, Any],
    settings: FederationSettings,
    tls: tuple[ServerCertificates, bytes] | None = None,
) -> tuple[dict[str, LMForecaster], FederationResult]:
    """A federation on this machine: one server, one client thread per partition.

    Returns each partition's fitted LM (the global head with the partition's own items) and
    the server's result. ``tls``: the server's certificates and the clients' root
    certificate, for TLS on the loopback too (as between machines).
    """
    if settings.clients != len(partitions):
        raise ConfigError(
            f"the federation expects {settings.clients} clients but {len(partitions)} "
            "partitions were given; give one client per partition"
        )
    learners = {name: LocalLearner(panel, lm) for name, panel in partitions.items()}
    clients = {name: SellerClient(learner) for name, learner in learners.items()}
    address = f"127.0.0.1:{free_port()}"
    errors: list[BaseException] = []
    abort = threading.Event()

    def run_client(client: SellerClient) -> None:
        try:
            root = None if tls is None else tls[1]
            join(address, client, max_wait=settings.connect_timeout, root_certificate=root)
        except BaseException as exc:  # reported after the server stops
            errors.append(exc)
            abort.set()

    threads = [
        threading.Thread(target=run_client, args=(c,), name=f"client-{n}", daemon=True)
        for n, c in clients.items()
    ]
    for thread in threads:
        thread.start()
    try:
        result = serve(address, settings, abort, None if tls is None else tls[0])
    finally:
        for thread in threads:
            thread.join(timeout=60)
        if errors:
            first = errors[0]
            raise FederationError(f"a client failed: {type(first).__name__}: {first}")
    models = {}
    report = result.report()
    for name, learner in learners.items():
        learner.set_weights(result.weights)
        models[name] = learner.fitted({**report, "role": "simulation", "partition": name})
    return models, result


def save_simulation(
    out: str | Path, models: dict[str, LMForecaster], result: FederationResult
) -> Path:
    """``out/<partition>/``: each partition's model folder; ``out/federated.json``."""
    target = Path(out)
    with atomic_dir(target, kind="federated") as staging:
        for name, model in models.items():
            model.save(staging / name)
        report = {**result.report(), "partitions": sorted(models)}
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return target


def save_server(out: str | Path, result: FederationResult) -> Path:
    """``out/global_head.safetensors`` (the global weights) and ``out/federated.json``."""
    from safetensors.numpy import save_file

    target = Path(out)
    with atomic_dir(target, kind="federated") as staging:
        arrays = {f"w{i:03d}": np.ascontiguousarray(w) for i, w in enumerate(result.weights)}
        save_file(arrays, str(staging / GLOBAL_FILE))
        (staging / REPORT_FILE).write_text(json.dumps(result.report(), indent=2) + "\n")
    return target
