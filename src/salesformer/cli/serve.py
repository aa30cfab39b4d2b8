"""``salesformer serve``: the real-time forecasting service (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from salesformer.errors import MissingExtraError


def serve_command(
    model: Path | None = typer.Option(
        None, "--model", help="Folder of a fitted LM (salesformer fit --model lm, or the demo's)."
    ),
    registry: Path | None = typer.Option(
        None,
        "--registry",
        help="A model registry (salesformer models): serve its promoted version instead of "
        "--model; POST /models/reload switches to a newly promoted one.",
    ),
    registry_poll: float = typer.Option(
        0.0,
        "--registry-poll",
        help="Seconds between checks of the registry's pointer; a change reloads (0: off).",
    ),
    db: str = typer.Option(
        "salesformer-events.db",
        "--db",
        help="Event store: an SQLite file path, or a postgresql://USER:PW@HOST:PORT/DB URL.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="File whose first line is the API key for writes (default: $SALESFORMER_API_KEY).",
    ),
    protect_reads: bool = typer.Option(
        False, "--protect-reads", help="Require the API key for reads too."
    ),
    max_body_bytes: int = typer.Option(
        1_048_576, "--max-body-bytes", help="Larger request bodies get 413."
    ),
    threads: int = typer.Option(1, "--threads", help="Torch threads for the forecasting head."),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="Where the LM forecasts (encoder + head): cpu (the default), auto (a GPU when "
        "there is one), cuda, cuda:N or mps.",
    ),
    forecast_cache: int = typer.Option(
        4096, "--forecast-cache", help="Forecasts kept for unchanged items (0: off)."
    ),
    monitor: bool = typer.Option(
        True, "--monitor/--no-monitor", help="Keep served forecasts and score them live."
    ),
    accuracy_windows: str = typer.Option(
        "4,13", "--accuracy-windows", help="Rolling windows of live accuracy, in periods."
    ),
    alert_margin: float = typer.Option(
        0.2, "--alert-margin", help="Alert when live WAPE > backtest WAPE x (1 + margin)."
    ),
    alert_min_cells: int = typer.Option(
        20, "--alert-min-cells", help="Scored cells the alert's window needs first."
    ),
    stock: Path | None = typer.Option(
        None, "--stock", help="CSV/parquet of item_id, on_hand, lead_time for the overview."
    ),
    pseudonymise: bool = typer.Option(
        False,
        "--pseudonymise",
        help="Store keyed hashes of customer ids, never the ids (key: "
        "$SALESFORMER_PSEUDONYM_KEY, 16+ characters).",
    ),
    retain_days: int | None = typer.Option(
        None,
        "--retain-days",
        help="Delete raw events (order and customer ids) older than N days, keeping their "
        "daily totals for forecasts, monitoring and retraining (default: keep forever).",
    ),
) -> None:
    """Serve live forecasts: POST /events, GET /items/ID/forecast, a dashboard at /."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError("uvicorn", "service") from exc
    try:
        from salesformer.service.app import create_app
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "service") from exc
    from salesformer.errors import ConfigError
    from salesformer.service.core import ServiceConfig, read_api_key
    from salesformer.service.customer_data import CustomerDataSettings
    from salesformer.service.monitoring import MonitorSettings, parse_windows

    if (model is None) == (registry is None):
        raise ConfigError(
            "give exactly one of --model DIR (a fitted LM) or --registry DIR (a model registry); "
            f"got {'both' if model else 'neither'}"
        )
    key = read_api_key(api_key_file)
    if device != "cpu":
        from salesformer.cli.forecast import check_prediction_device

        check_prediction_device(device)
    config = ServiceConfig(
        model_dir=model or "",
        registry=registry,
        registry_poll=registry_poll,
        db=db,
        api_key=key,
        protect_reads=protect_reads,
        max_body_bytes=max_body_bytes,
        threads=threads,
        device=device,
        forecast_cache=forecast_cache,
        monitoring=MonitorSettings(
            enabled=monitor,
            windows=parse_windows(accuracy_windows),
            alert_margin=alert_margin,
            alert_min_cells=alert_min_cells,
        ),
        stock_file=stock,
        customer_data=CustomerDataSettings(pseudonymise=pseudonymise, retain_days=retain_days),
    )
    typer.echo(f"loading {model or registry} ...", err=True)
    app = create_app(config)
    writes = "keyed" if key else "disabled (no API key)"
    typer.echo(f"serving on http://{host}:{port} (writes {writes}); Ctrl+C stops", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
