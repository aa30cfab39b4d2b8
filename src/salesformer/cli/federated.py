"""``salesformer federated``: train one LM across sellers whose rows stay with them (Flower).

``split`` makes sellers' partitions of a panel, ``simulate`` runs a server and one client per
partition on this machine, ``server`` and ``client`` run them on separate machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from salesformer.errors import ConfigError

federated_app = typer.Typer(
    help="Federated training of the LM across sellers (Flower; raw rows never leave a client).",
    no_args_is_help=True,
)

_PARTITIONS = typer.Option(
    ..., "--partitions", help="Folder with one panel folder per seller (see 'federated split')."
)
_HORIZON = typer.Option(8, "--horizon", "-h", help="Periods the model learns to forecast.")
_ENCODER = typer.Option(None, "--encoder", help="LM text encoder: a name or a local folder.")
_SET = typer.Option(None, "--set", help="LM setting, KEY=VALUE (repeatable).")
_ROUNDS = typer.Option(10, "--rounds", help="Rounds of federated averaging.")
_LOCAL = typer.Option(1, "--local-epochs", help="Epochs each client trains per round.")
_NOISE = typer.Option(
    None, "--dp-noise", help="Client-level DP: noise multiplier on the clipped updates."
)
_CLIP = typer.Option(1.0, "--dp-clip", help="Client-level DP: L2 bound of each client's update.")
_EPSILON = typer.Option(
    None, "--dp-epsilon", help="Client-level DP budget: sets the noise (instead of --dp-noise)."
)
_DELTA = typer.Option(1e-5, "--dp-delta", help="Client-level DP: the delta of the epsilon.")


def lm_settings(horizon: int, encoder: str | None, settings: list[str] | None) -> dict[str, Any]:
    """The LM's settings from the command line (frozen encoder, or LoRA)."""
    from salesformer.models.lm.settings import asdict_settings
    from salesformer.models.registry import LM, build_model, parse_settings

    if horizon < 1:
        raise ConfigError(f"--horizon must be >= 1; got {horizon}")
    overrides = parse_settings(settings)
    given = {**overrides.pop(None, {}), **overrides.pop(LM, {})}
    if overrides:
        raise ConfigError(
            "federated training trains the LM only; got settings for "
            f"{sorted(map(str, overrides))}; use --set KEY=VALUE or --set LM.KEY=VALUE"
        )
    finetune = given.pop("finetune", "frozen")
    if finetune not in ("frozen", "lora"):
        raise ConfigError(
            "federated training averages the head (and the LoRA adapter); got "
            f"finetune={finetune!r}; use --set finetune=frozen (default) or --set finetune=lora"
        )
    model = build_model(LM, horizon, finetune, encoder, {LM: given})
    model.check_params()
    return asdict_settings(model)  # type: ignore[arg-type]


@federated_app.command("split")
def split_command(
    panel: Path = typer.Option(..., "--panel", help="Panel folder to split."),
    sellers: int = typer.Option(..., "--sellers", help="Number of sellers (partitions)."),
    out: Path = typer.Option(..., "--out", help="Folder for the partitions (new or empty)."),
) -> None:
    """Split a panel into sellers with disjoint items (by a hash of the item id)."""
    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.data.contract import Panel
    from salesformer.federated.partitions import split_by_seller

    check_output_dir(out, "partitions")
    parts = split_by_seller(Panel.load(panel), sellers)
    with atomic_dir(out, kind="partitions") as staging:
        for name, part in parts.items():
            part.save(staging / name)
            typer.echo(f"{name}: {len(part.item_ids)} items")
    typer.echo(f"wrote {out}")


@federated_app.command("simulate")
def simulate_command(
    partitions: Path = _PARTITIONS,
    out: Path = typer.Option(..., "--out", help="Folder: one model folder per partition."),
    horizon: int = _HORIZON,
    encoder: str | None = _ENCODER,
    settings: list[str] | None = _SET,
    rounds: int = _ROUNDS,
    local_epochs: int = _LOCAL,
    dp_noise: float | None = _NOISE,
    dp_clip: float = _CLIP,
    dp_epsilon: float | None = _EPSILON,
    dp_delta: float = _DELTA,
) -> None:
    """Run a server and one client per partition on this machine (gRPC on the loopback)."""
    from salesformer._io import check_output_dir
    from salesformer.federated.partitions import load_partitions

    check_output_dir(out, "federated")
    lm = lm_settings(horizon, encoder, settings)
    parts = load_partitions(partitions)
    federation = _federation(
        len(parts), rounds, local_epochs, (dp_noise, dp_clip, dp_epsilon, dp_delta)
    )
    from salesformer.federated.run import save_simulation, simulate

    models, result = simulate(parts, lm, federation)
    save_simulation(out, models, result)
    _summary(result.report())
    typer.echo(f"wrote {out}")


@federated_app.command("server")
def server_command(
    clients: int = typer.Option(..., "--clients", help="Sellers that take part (all, each round)."),
    out: Path = typer.Option(..., "--out", help="Folder for the global weights and the report."),
    address: str = typer.Option("0.0.0.0:9092", "--address", help="HOST:PORT to listen on."),
    rounds: int = _ROUNDS,
    local_epochs: int = _LOCAL,
    dp_noise: float | None = _NOISE,
    dp_clip: float = _CLIP,
    dp_epsilon: float | None = _EPSILON,
    dp_delta: float = _DELTA,
    ssl_ca_certfile: Path | None = typer.Option(
        None, "--ssl-ca-certfile", help="TLS: the CA certificate (PEM) that signed the server's."
    ),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="TLS: the server's certificate (PEM)."
    ),
    ssl_keyfile: Path | None = typer.Option(
        None, "--ssl-keyfile", help="TLS: the server's private key (PEM)."
    ),
) -> None:
    """Run the federation's server until every round is done."""
    from salesformer._io import check_output_dir
    from salesformer.federated.run import check_address
    from salesformer.federated.tls import ServerCertificates

    check_output_dir(out, "federated")
    check_address(address)
    certificates = ServerCertificates.from_files(ssl_ca_certfile, ssl_certfile, ssl_keyfile)
    federation = _federation(
        clients, rounds, local_epochs, (dp_noise, dp_clip, dp_epsilon, dp_delta)
    )
    from salesformer.federated.run import save_server, serve

    result = serve(address, federation, certificates=certificates)
    save_server(out, result)
    _summary(result.report())
    typer.echo(f"wrote {out}")


@federated_app.command("client")
def client_command(
    partition: Path = typer.Option(..., "--partition", help="This seller's panel folder."),
    out: Path = typer.Option(..., "--out", help="Model folder for this seller's items."),
    address: str = typer.Option(..., "--address", help="The server's HOST:PORT."),
    horizon: int = _HORIZON,
    encoder: str | None = _ENCODER,
    settings: list[str] | None = _SET,
    root_certificates: Path | None = typer.Option(
        None,
        "--root-certificates",
        help="TLS: the CA certificate (PEM) that signed the server's; without it, plain gRPC.",
    ),
) -> None:
    """Train with the server from this seller's panel; write this seller's model."""
    from salesformer._io import check_output_dir
    from salesformer.data.contract import Panel
    from salesformer.federated.run import check_address
    from salesformer.federated.tls import read_pem

    check_output_dir(out, "model")
    check_address(address)
    root = None if root_certificates is None else read_pem(root_certificates, "--root-certificates")
    lm = lm_settings(horizon, encoder, settings)
    panel = Panel.load(partition)
    from salesformer.federated.client import SellerClient
    from salesformer.federated.learner import LocalLearner
    from salesformer.federated.run import join
    from salesformer.models.persist import save_model

    client = SellerClient(LocalLearner(panel, lm))
    join(address, client, root_certificate=root)
    if client.rounds == 0:
        raise ConfigError(f"the server at {address} ran no training round with this client")
    facts = {"role": "client", "server": address, "rounds": client.rounds}
    model = client.learner.fitted({**facts, "client_privacy": client.privacy})
    save_model(model, out)
    typer.echo(f"trained {client.rounds} rounds with {address}; wrote {out}")


def _federation(
    clients: int,
    rounds: int,
    local_epochs: int,
    dp: tuple[float | None, float, float | None, float],
) -> Any:
    """The federation's settings; with client-level DP, its budget is checked here."""
    from salesformer.federated.server import FederationSettings

    noise, clip, epsilon, delta = dp
    settings = FederationSettings(
        clients, rounds, local_epochs, noise, clip, dp_epsilon=epsilon, dp_delta=delta
    )
    settings.check()
    settings.privacy()  # an impossible budget is an error before anything starts
    return settings


def _summary(report: dict[str, Any]) -> None:
    for record in report["rounds"]:
        typer.echo(
            f"round {record['round']}: train loss {record.get('train_loss', float('nan')):.4f}, "
            f"valid loss {record.get('valid_loss', float('nan')):.4f}, "
            f"{record['bytes_to_clients'] + record['bytes_from_clients']:,} bytes exchanged"
        )
    typer.echo(f"{report['bytes_per_round']:,} bytes per round on average ({report['strategy']})")
    privacy = report.get("client_privacy")
    if privacy:
        typer.echo(
            f"client-level DP: epsilon {privacy['epsilon']:g} at delta {privacy['delta']:g} "
            f"({privacy['accountant']} accountant, noise multiplier "
            f"{privacy['noise_multiplier']:.4g}, {privacy['rounds']} rounds, unit: one seller)"
        )
