"""Federated training with Flower: accuracy against a central fit, real processes, messages.

A tiny random BERT (``tiny_encoder``) and the synthetic catalogue keep each federation to
seconds. The server and the clients talk Flower's gRPC on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("flwr")

from salesformer.cli.main import run
from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.metrics import wape
from salesformer.federated import run as federation
from salesformer.federated.client import SellerClient
from salesformer.federated.learner import LocalLearner
from salesformer.federated.partitions import load_partitions, seller_of, split_by_seller
from salesformer.federated.run import free_port, save_simulation, simulate
from salesformer.federated.server import FederationSettings
from salesformer.models.lm import LMForecaster

HORIZON = 8
SETTINGS: dict[str, Any] = {
    "horizon": HORIZON,
    "finetune": "frozen",
    "head_epochs": 6,
    "epoch_samples": 600,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def catalogue_panel() -> Panel:
    return generate_catalogue(n_items=40, n_weeks=90, seed=5).panel()


@pytest.fixture(scope="module")
def train_panel(catalogue_panel: Panel) -> Panel:
    return catalogue_panel.until(catalogue_panel.last_date - HORIZON * catalogue_panel.offset)


@pytest.fixture(scope="module")
def lm(tiny_encoder: str) -> dict[str, Any]:
    return {**SETTINGS, "encoder": tiny_encoder}


def _scored(catalogue: Panel, train: Panel, forecasts: pd.DataFrame) -> pd.DataFrame:
    actual = catalogue.window(train.last_date, HORIZON)[[ITEM_ID, DATE, "sales"]]
    frame = forecasts.merge(actual.rename(columns={"sales": ACTUAL}), on=[ITEM_ID, DATE])
    assert len(frame) == len(forecasts) == HORIZON * len(train.item_ids)
    return frame


def test_sellers_are_disjoint_stable_and_cover_the_panel(catalogue_panel: Panel) -> None:
    parts = split_by_seller(catalogue_panel, 3)
    ids = [set(map(str, p.item_ids)) for p in parts.values()]
    assert set().union(*ids) == set(map(str, catalogue_panel.item_ids))
    assert sum(len(i) for i in ids) == len(catalogue_panel.item_ids)  # disjoint
    assert seller_of("85123A", 5) == seller_of("85123A", 5)
    for k, part in enumerate(parts.values()):
        assert {seller_of(i, 3) for i in part.item_ids} == {k}
        assert set(part.items[ITEM_ID]) == set(part.item_ids)
    with pytest.raises(ConfigError, match="between 2 and"):
        split_by_seller(catalogue_panel, 1)


def test_two_sellers_land_within_5_percent_wape_of_central(
    catalogue_panel: Panel, train_panel: Panel, lm: dict[str, Any]
) -> None:
    central = LMForecaster(**lm).fit(train_panel)
    central_wape = wape(_scored(catalogue_panel, train_panel, central.predict(HORIZON)), "LM")
    parts = split_by_seller(train_panel, 2)
    models, result = simulate(parts, lm, FederationSettings(clients=2, rounds=6))
    forecasts = pd.concat([m.predict(HORIZON) for m in models.values()], ignore_index=True)
    federated_wape = wape(_scored(catalogue_panel, train_panel, forecasts), "LM")
    assert abs(federated_wape - central_wape) <= 0.05 * central_wape, (
        federated_wape,
        central_wape,
    )
    # every seller ends with the same global head
    heads = [[t.numpy() for t in m.head_.state_dict().values()] for m in models.values()]
    for a, b in zip(*heads, strict=True):
        np.testing.assert_array_equal(a, b)
    report = result.report()
    assert [r["round"] for r in report["rounds"]] == list(range(1, 7))
    n_weights = sum(w.nbytes for w in result.weights)
    # each round: the weights to 2 clients for training and for evaluation, back from 2
    assert all(r["bytes_from_clients"] >= 2 * n_weights for r in report["rounds"])
    assert all(r["bytes_to_clients"] >= 4 * n_weights for r in report["rounds"])


class RecordingClient(SellerClient):
    """A seller's client that keeps a copy of everything it sends to the server."""

    sent: ClassVar[list[tuple[str, Any]]] = []
    names: ClassVar[list[list[str]]] = []

    def get_parameters(self, config: Any) -> Any:
        out = super().get_parameters(config)
        RecordingClient.sent.append(("parameters", out))
        RecordingClient.names.append(self.learner.weight_names())
        return out

    def fit(self, parameters: Any, config: Any) -> Any:
        out = super().fit(parameters, config)
        RecordingClient.sent.append(("fit", out))
        RecordingClient.names.append(self.learner.weight_names())
        return out

    def evaluate(self, parameters: Any, config: Any) -> Any:
        out = super().evaluate(parameters, config)
        RecordingClient.sent.append(("evaluate", out))
        return out


@pytest.mark.parametrize("finetune", ["frozen", "lora"])
def test_clients_send_weights_and_counts_never_rows(
    train_panel: Panel,
    lm: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    finetune: str,
) -> None:
    RecordingClient.sent, RecordingClient.names = [], []
    monkeypatch.setattr(federation, "SellerClient", RecordingClient)
    parts = split_by_seller(train_panel, 2)
    settings = {**lm, "head_epochs": 1, "finetune": finetune}
    models, result = simulate(parts, settings, FederationSettings(2, rounds=2))
    first = next(iter(models.values()))
    shapes = [tuple(t.shape) for t in first.head_.state_dict().values()]
    if finetune == "lora":  # the adapter's arrays follow the head's, nothing of the encoder else
        adapter = {k: v for k, v in first.encoder_model_.state_dict().items() if "lora_" in k}
        assert adapter and len(adapter) < len(first.encoder_model_.state_dict())
        shapes += [tuple(v.shape) for v in adapter.values()]
    else:
        assert first.encoder_model_ is None
    for names in RecordingClient.names:
        assert all(
            n.startswith("head.") or (n.startswith("encoder.") and "lora_" in n) for n in names
        )
        assert any("lora_" in n for n in names) == (finetune == "lora"), names
    kinds = [kind for kind, _ in RecordingClient.sent]
    assert kinds.count("fit") == 4 and kinds.count("evaluate") == 4
    raw = b""
    for kind, message in RecordingClient.sent:
        arrays = message if kind == "parameters" else message[0] if kind == "fit" else []
        if kind != "parameters":
            count, metrics = message[1], message[2]
            assert isinstance(count, int) and count > 0
            assert set(metrics) == ({"train_loss"} if kind == "fit" else {"valid_loss"})
            assert all(isinstance(v, float) for v in metrics.values())
        if kind != "evaluate":
            # nothing but the head's (and adapter's) arrays: no more, no other shapes or types
            assert [tuple(a.shape) for a in arrays] == shapes
            assert all(a.dtype == np.float32 for a in arrays)
            raw += b"".join(a.tobytes() for a in arrays)
    for part in parts.values():  # no item id or text, as bytes, in what was sent
        for text in [*map(str, part.item_ids), *part.items["text"].head(5)]:
            assert text.encode("utf-8") not in raw
    # the sales as float32 runs do not appear either (a sent copy of a row would)
    sales = part.sales["sales"].to_numpy(dtype=np.float32)
    assert np.count_nonzero(sales) > 8 and sales[sales > 0][:8].tobytes() not in raw
    out = save_simulation(tmp_path / "run", models, result)
    report = json.loads((out / "federated.json").read_text())
    assert report["partitions"] == sorted(parts) and report["bytes_per_round"] > 0
    loaded = LMForecaster.load(out / "seller-01")
    np.testing.assert_array_equal(loaded.predict(4)["LM"], models["seller-01"].predict(4)["LM"])
    if finetune == "lora":  # every seller holds the global adapter, trained away from zero
        states = [m.encoder_model_.state_dict() for m in models.values()]
        for name in adapter:
            np.testing.assert_array_equal(states[0][name].numpy(), states[1][name].numpy())
        assert any("lora_B" in n and states[0][n].abs().max() > 0 for n in adapter)


class KeptClient(SellerClient):
    """A seller's client that keeps itself in a list (to read what it learned)."""

    made: ClassVar[list[SellerClient]] = []

    def __init__(self, learner: LocalLearner) -> None:
        super().__init__(learner)
        KeptClient.made.append(self)


def test_client_level_dp_noises_the_global_weights_and_reports_its_epsilon(
    train_panel: Panel, lm: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = split_by_seller(train_panel, 2)
    quick = {**lm, "head_epochs": 1}
    _, plain = simulate(parts, quick, FederationSettings(2, rounds=1))
    budget = FederationSettings(2, rounds=1, dp_epsilon=4.0, dp_delta=1e-5, dp_clip=0.1)
    KeptClient.made = []
    monkeypatch.setattr(federation, "SellerClient", KeptClient)
    models, noisy = simulate(parts, quick, budget)
    assert "DP" in noisy.report()["strategy"] and plain.report()["client_privacy"] is None
    differences = [np.abs(a - b).max() for a, b in zip(plain.weights, noisy.weights, strict=True)]
    assert max(differences) > 1e-3  # clipped and noised, not the plain average
    privacy = noisy.report()["client_privacy"]
    assert 3.5 < privacy["epsilon"] <= 4.0 and privacy["delta"] == 1e-5
    assert privacy["accountant"] == "rdp" and privacy["unit"].startswith("seller")
    # a remote client learns the guarantee from the server's round settings
    assert len(KeptClient.made) == 2
    for client in KeptClient.made:
        assert client.privacy is not None
        assert round(client.privacy["epsilon"], 4) == privacy["epsilon"]
    save_simulation(tmp_path / "dp", models, noisy)
    config = json.loads((tmp_path / "dp" / "seller-01" / "config.json").read_text())
    assert config["privacy"]["epsilon"] == privacy["epsilon"]


def _classic_rdp_epsilon(noise: float, rounds: int, delta: float) -> float:
    """The textbook RDP-to-DP bound of ``rounds`` Gaussian mechanisms (an upper bound)."""
    orders = np.linspace(1.01, 200, 20000)
    return float(np.min(rounds * orders / (2 * noise**2) + np.log(1 / delta) / (orders - 1)))


def test_client_level_epsilon_accounting_and_impossible_budgets() -> None:
    from salesformer.federated.privacy import plan, spent

    for noise, rounds in ((1.0, 1), (2.0, 10), (5.0, 50)):
        epsilon = spent(noise, rounds, 1e-5).epsilon
        bound = _classic_rdp_epsilon(noise, rounds, 1e-5)
        assert 0.7 * bound <= epsilon <= bound, (noise, rounds, epsilon, bound)
    assert spent(2.0, 20, 1e-5).epsilon > spent(2.0, 10, 1e-5).epsilon
    assert spent(3.0, 10, 1e-5).epsilon < spent(2.0, 10, 1e-5).epsilon
    planned = plan(8.0, 1e-5, 10, 10)
    assert 7.5 < planned.epsilon <= 8.0
    assert spent(planned.noise_multiplier, 10, 1e-5).epsilon == planned.epsilon
    with pytest.raises(ConfigError, match="drown every update"):
        plan(0.5, 1e-5, 10, 2)
    with pytest.raises(ConfigError, match="cannot be met"):
        plan(0.01, 1e-5, 10, 1000)
    with pytest.raises(ConfigError, match="not both"):
        FederationSettings(2, dp_noise=1.0, dp_epsilon=1.0).check()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "salesformer.cli.main", *args]


def test_real_server_and_client_processes_complete_a_round(
    train_panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    folder = tmp_path / "parts"
    for name, part in split_by_seller(train_panel, 2).items():
        part.save(folder / name)
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        _cli(
            "federated",
            "server",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--address",
            address,
            "--out",
            str(tmp_path / "server"),
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lm_options = [
        "--horizon",
        "4",
        "--encoder",
        tiny_encoder,
        "--set",
        "head_epochs=1",
        "--set",
        "epoch_samples=200",
        "--set",
        "hidden_size=16",
        "--set",
        "threads=1",
    ]
    clients = [
        subprocess.Popen(
            _cli(
                "federated",
                "client",
                "--address",
                address,
                "--partition",
                str(folder / name),
                "--out",
                str(tmp_path / f"model-{name}"),
                *lm_options,
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("seller-01", "seller-02")
    ]
    try:
        logs = [p.communicate(timeout=400)[0] for p in (server, *clients)]
    finally:
        for p in (server, *clients):
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in (server, *clients)] == [0, 0, 0], logs
    report = json.loads((tmp_path / "server" / "federated.json").read_text())
    assert len(report["rounds"]) == 1 and report["rounds"][0]["clients"] == 2
    assert "trained 1 rounds" in logs[1]
    model = LMForecaster.load(tmp_path / "model-seller-01")
    assert model.fit_report_["federated"]["rounds"] == 1
    own = set(map(str, Panel.load(folder / "seller-01").item_ids))
    assert set(model.predict(4)[ITEM_ID]) == own


def test_bad_federated_input_is_one_line_and_exit_2(
    train_panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = tmp_path / "single"
    split_by_seller(train_panel, 2)["seller-01"].save(single / "only")
    cases = [
        (["simulate", "--partitions", str(single), "--out", str(tmp_path / "o1")], "at least 2"),
        (
            ["simulate", "--partitions", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
            "not a folder",
        ),
        (["server", "--clients", "1", "--out", str(tmp_path / "o3")], "at least 2 sellers"),
        (
            ["server", "--clients", "2", "--address", "nohost", "--out", str(tmp_path / "o4")],
            "HOST:PORT",
        ),
        (
            ["server", "--clients", "2", "--dp-epsilon", "0.5", "--out", str(tmp_path / "o6")],
            "cannot be met",
        ),
        (
            [
                "server",
                "--clients",
                "2",
                "--ssl-certfile",
                str(single),
                "--out",
                str(tmp_path / "o7"),
            ],
            "--ssl-keyfile",
        ),
        (
            [
                "client",
                "--address",
                "127.0.0.1:9",
                "--partition",
                str(single / "only"),
                "--root-certificates",
                str(tmp_path / "no-ca.pem"),
                "--out",
                str(tmp_path / "o8"),
            ],
            "not a file",
        ),
        (
            [
                "simulate",
                "--partitions",
                str(single),
                "--out",
                str(tmp_path / "o5"),
                "--set",
                "finetune=full",
            ],
            "finetune=lora",
        ),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            run(["federated", *args])
        assert exit_info.value.code == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, (args, err)


def test_overlapping_partitions_are_refused(train_panel: Panel, tmp_path: Path) -> None:
    part = split_by_seller(train_panel, 2)["seller-01"]
    part.save(tmp_path / "a")
    part.save(tmp_path / "b")
    with pytest.raises(DataValidationError, match="disjoint"):
        load_partitions(tmp_path)


def test_a_seller_with_other_covariates_is_refused(train_panel: Panel, lm: dict[str, Any]) -> None:
    learner = LocalLearner(split_by_seller(train_panel, 2)["seller-01"], lm)
    weights = learner.weights()
    with pytest.raises(ConfigError, match="same encoder"):
        learner.set_weights([*weights[:-1], np.zeros((3, 3), dtype=np.float32)])


def _certificates(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate it signs for 127.0.0.1 / localhost (PEM)."""
    import datetime as dt
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509", reason="TLS test needs 'cryptography'")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def subject(common: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject(f"{name} CA"))
        .issuer_name(subject(f"{name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls_round_completes_and_a_client_trusting_another_ca_cannot_join(
    train_panel: Panel, lm: dict[str, Any], tmp_path: Path
) -> None:
    from salesformer.federated.run import FederationError
    from salesformer.federated.tls import ServerCertificates

    ca, cert, key = _certificates(tmp_path / "good", "salesformer test")
    other_ca, _, _ = _certificates(tmp_path / "other", "someone else")
    server = ServerCertificates.from_files(ca, cert, key)
    assert server is not None
    parts = split_by_seller(train_panel, 2)
    quick = {**lm, "head_epochs": 1}
    models, result = simulate(
        parts, quick, FederationSettings(2, rounds=1), (server, ca.read_bytes())
    )
    assert len(result.report()["rounds"]) == 1 and len(models) == 2
    short = FederationSettings(2, rounds=1, connect_timeout=8)
    with pytest.raises(FederationError):  # the server's certificate is not signed by that CA
        simulate(parts, quick, short, (server, other_ca.read_bytes()))
    with pytest.raises(ConfigError, match="ssl-keyfile"):
        ServerCertificates.from_files(ca, cert, None)
    (tmp_path / "der.key").write_bytes(b"\x30\x82 not pem")
    with pytest.raises(ConfigError, match="not PEM"):
        ServerCertificates.from_files(ca, cert, tmp_path / "der.key")
