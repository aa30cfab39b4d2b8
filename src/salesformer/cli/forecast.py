"""``salesformer fit`` and ``salesformer predict``: a saved model folder between the two.

:func:`salesformer.models.registry.build_model` turns the command-line options (``--model``,
``--horizon``, ``--finetune``, ``--encoder``, ``--set``) into a forecaster; ``backtest`` and
``demo`` use it too. Command bodies import the library lazily so that ``salesformer --help``
stays light.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from salesformer.cli.privacy import privacy_line, private_overrides
from salesformer.cli.ray_engine import (
    ITEMS_PER_PART_OPTION,
    RAY_ADDRESS_OPTION,
    WORKERS_OPTION,
)
from salesformer.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from salesformer.data.contract import Panel
    from salesformer.forecasting.protocol import Forecaster

LM = "LM"
AUTO = "auto"
#: Models that read ``--finetune`` and ``--encoder`` (``auto`` passes them to its LM candidate).
LM_MODELS = (LM, AUTO)
TABLE_SUFFIXES = (".csv", ".parquet")
DEFAULT_HORIZON = 8


LEVELS_OPTION = typer.Option(
    None,
    "--levels",
    help="Also forecast these levels, reconciled with the items: category,total.",
)
RECONCILE_OPTION = typer.Option(
    "ols",
    "--reconcile",
    help="With --levels: ols, wls_struct, mint_shrink or bottom_up (hierarchicalforecast).",
)


def check_level_options(
    levels: str | None, reconcile: str, engine: str, new_items: bool
) -> tuple[str, ...] | None:
    """The parsed ``--levels`` (None without it), checked against the other options."""
    from salesformer.forecasting.levels import check_reconciler, parse_levels

    check_reconciler(reconcile)
    if levels is None:
        return None
    wanted = parse_levels(levels)
    if engine != "local" or new_items:
        raise ConfigError(
            "--levels runs on the local engine for the model's own items; drop --engine ray "
            "and --new-items, or drop --levels"
        )
    return wanted


DEVICE_OPTION = typer.Option(
    None,
    "--device",
    help="LM training: auto (a GPU when there is one, the default), cpu, cuda, cuda:N or mps; "
    "with --engine ray a GPU per worker (auto, cuda) or cpu.",
)
LORA_TARGETS_OPTION = typer.Option(
    None,
    "--lora-targets",
    help="LM LoRA target modules, comma-separated (default: by architecture, e.g. "
    "query,value for BERT, c_attn for GPT-2, q_proj,v_proj for Llama and Qwen).",
)


def lm_device_overrides(
    names: list[str],
    device: str | None,
    lora_targets: str | None,
    overrides: Any,
    on_this_machine: bool = True,
) -> None:
    """Put ``--device`` and ``--lora-targets`` into the LM's settings; say where it trains.

    The choice is checked now (``--device cuda`` without a GPU fails before any work); with
    ``--device auto`` on a machine without a GPU one note line goes to stderr. Where the LM
    trains elsewhere (``on_this_machine`` False: Ray Train workers) the engine checks the
    device against the cluster's GPUs instead.
    """
    if device is None and lora_targets is None:
        return
    if not set(names) & set(LM_MODELS):
        raise ConfigError(
            f"--device and --lora-targets apply to the models lm and auto only; got models "
            f"{names}; add lm (or auto) or drop those options"
        )
    lm = overrides.setdefault(LM, {})
    if lora_targets is not None:
        modules = tuple(m.strip() for m in lora_targets.split(",") if m.strip())
        if not modules:
            raise ConfigError(
                f"--lora-targets must name modules, comma-separated; got {lora_targets!r}; "
                "e.g. --lora-targets q_proj,v_proj"
            )
        lm["lora_target_modules"] = modules
    if device is not None:
        lm["device"] = device
        if on_this_machine:
            _device_note(device)


def _device_note(device: str) -> None:
    from salesformer.text.device import select_device

    choice = select_device(device)
    if choice.note is not None:
        typer.echo(f"note: {choice.note}", err=True)


PREDICT_DEVICE_OPTION = typer.Option(
    None,
    "--device",
    help="LM inference (encoder + head): cpu (the default), auto (a GPU when there is one), "
    "cuda, cuda:N or mps. Other models run on the CPU.",
)


def check_prediction_device(device: str | None) -> None:
    """Check ``--device`` before any work (``cuda`` without a GPU fails here); note ``auto``."""
    if device is not None:
        _device_note(device)


def use_prediction_device(model: Forecaster, device: str | None) -> None:
    """Forecast with ``model`` on ``device``; a model without a network says it ignores it."""
    if device is None:
        return
    if model.use_device(device) is None:
        typer.echo(
            f"note: --device applies to the LM only; model {model.name} runs on the CPU",
            err=True,
        )


def check_lm_options(names: list[str], finetune: str | None, encoder: str | None) -> None:
    """``--finetune`` / ``--encoder`` need LM or auto among the models."""
    if (finetune is not None or encoder is not None) and not set(names) & set(LM_MODELS):
        raise ConfigError(
            f"--finetune and --encoder apply to the models lm and auto only; got models {names}; "
            "add lm (or auto) or drop those options"
        )
    if finetune is not None:
        from salesformer.models.lm import FINETUNE_MODES

        if finetune not in FINETUNE_MODES:
            raise ConfigError(
                f"--finetune must be one of {', '.join(FINETUNE_MODES)}; got {finetune!r}"
            )


def table_suffix(path: Path, option: str) -> str:
    """The suffix of a table file, ``.csv`` or ``.parquet``; anything else is an error."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(
            f"{option} must end in .csv or .parquet; got {str(path)!r}; "
            f"e.g. {option} {path.with_suffix('.csv').name}"
        )
    return suffix


def check_table_out(path: Path) -> str:
    """``--out`` for a table: its suffix, checked, and a writable file path (not a folder)."""
    from salesformer._io import check_output_file

    suffix = table_suffix(path, "--out")
    check_output_file(path)
    return suffix


def read_table(path: Path, option: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; CSV item ids stay text (``00123`` is not ``123``)."""
    import pandas as pd

    from salesformer.data.contract import ITEM_ID
    from salesformer.errors import DataValidationError

    suffix = table_suffix(path, option)
    if not path.is_file():
        raise FileNotFoundError(f"{option}: no such file {str(path)!r}")
    kind = "CSV" if suffix == ".csv" else "Parquet"
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype={ITEM_ID: str})
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(
            f"{option}: {str(path)!r} is empty (no header, no rows); give a {kind} file with a "
            "header row and at least one row"
        ) from exc
    except Exception as exc:  # parsers raise many unrelated types; report them all the same way
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataValidationError(
            f"{option}: could not read {str(path)!r} as {kind} ({type(exc).__name__}: "
            f"{first[:120]}); check that the file is valid {kind}"
        ) from exc
    if frame.empty:
        raise DataValidationError(
            f"{option}: {str(path)!r} has no rows (columns {list(frame.columns)[:8]}); "
            "give at least one row"
        )
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV or Parquet by suffix, atomically."""
    from salesformer._io import atomic_file

    suffix = table_suffix(path, "--out")
    with atomic_file(path) as staging:
        if suffix == ".csv":
            frame.to_csv(staging, index=False, date_format="%Y-%m-%d")
        else:
            frame.to_parquet(staging, index=False)


def panel_until(panel: Panel, until: str) -> Panel:
    """``panel.until(until)``, with a one-line error for a bad date."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(until)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--until must be a date like 2023-06-26; got {until!r}") from exc
    if pd.isna(stamp):
        raise ConfigError(f"--until must be a date like 2023-06-26; got {until!r}")
    if stamp < panel.first_date:
        raise ConfigError(
            f"--until {stamp.date()} is before the panel's first date "
            f"{panel.first_date.date()}; give a date between {panel.first_date.date()} and "
            f"{panel.last_date.date()}"
        )
    return panel.until(stamp)


def model_horizon(model: Forecaster) -> int:
    """The horizon a model was fitted for (``horizon`` or ``max_horizon``), else 8."""
    from salesformer.forecasting.protocol import fitted_horizon

    return fitted_horizon(model, DEFAULT_HORIZON)


def new_item_forecaster(model: Forecaster) -> Any:
    """The model, or auto's LM candidate, that forecasts new items; ConfigError if none."""
    if hasattr(model, "predict_new"):
        return model
    candidates = getattr(model, "models_", None)
    if isinstance(candidates, dict) and LM in candidates:
        return candidates[LM]
    if isinstance(candidates, dict):
        raise ConfigError(
            f"this auto model kept the candidates {sorted(candidates)}, none of which forecasts "
            "new items (the LM candidate was not chosen); fit --model lm to forecast new items"
        )
    raise ConfigError(
        f"model {model.name} cannot forecast new items (no history to start from); "
        "fit --model lm (or auto) to forecast new items from text, price and launch date"
    )


def _fit_summary(model: Forecaster, seconds: float) -> list[str]:
    """A few lines on what the fit did."""
    lines = [f"fitted {model.name} on {len(model.panel_.item_ids)} items in {seconds:.1f} s"]
    report = getattr(model, "fit_report_", None)
    if isinstance(report, dict):
        lines.append(lm_report_line(report))
    describe = getattr(model, "describe", None)
    if callable(describe):
        lines.append(str(describe()))
        lm = getattr(model, "models_", {}).get(LM)
        if lm is not None and isinstance(getattr(lm, "fit_report_", None), dict):
            lines.append(lm_report_line(lm.fit_report_))
    return lines


def lm_report_line(report: dict[str, Any]) -> str:
    """``LM: fit 12.3 s; validation loss head 0.412 (9 epochs), lora 0.398 (kept)``."""
    head = report.get("head", {})
    parts = [f"validation loss head {_loss(head.get('best_valid'))} ({head.get('epochs')} epochs)"]
    stage = report.get("finetune_stage")
    if isinstance(stage, dict):
        kept = "kept" if stage.get("improved") else "not better, head kept"
        parts.append(f"{report.get('finetune')} {_loss(stage.get('best_valid'))} ({kept})")
    line = f"LM: fit {report.get('fit_seconds', '?')} s; " + ", ".join(parts)
    launches = launch_line(report.get("launch_regression"))
    if launches is not None:
        line = f"{line}\n{launches}"
    private = privacy_line(report)
    return line if private is None else f"{line}\n{private}"


def launch_line(report: Any) -> str | None:
    """How ``predict --new-items`` will forecast new products, from the fit's launch report
    (``None`` when the fit learned none, as a private fit does)."""
    if not isinstance(report, dict):
        return None
    launches = report.get("launches", 0)
    if "weight" not in report:
        reason = report.get("skipped", "no launch regression")
        return f"new products: the network alone ({launches} launches in the panel; {reason})"
    weight = float(report["weight"])
    if "weight_chosen_on_held_out" in report:
        how = f"chosen on {report.get('held_out')} held-out launches"
    elif "undecided" in report:
        how = str(report["undecided"])
    else:
        how = "fixed by launch_network_weight"
    return (
        f"new products: network {weight:.2f} + launch regression {1 - weight:.2f} "
        f"({launches} launches in the panel; {how})"
    )


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def fit_command(
    panel: Path = typer.Option(
        ..., "--panel", help="Panel folder written by 'salesformer prepare'."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Model folder: new, empty, or a model folder salesformer wrote."
    ),
    model: str = typer.Option(
        AUTO, "--model", help="lm, auto (choose per segment) or any registered model name."
    ),
    horizon: int = typer.Option(
        DEFAULT_HORIZON,
        "--horizon",
        "-h",
        help="Periods the model learns to forecast (LM, auto; LightGBM's max_horizon).",
    ),
    until: str | None = typer.Option(
        None, "--until", help="Fit on the panel up to this date (e.g. to keep a test window)."
    ),
    finetune: str | None = typer.Option(
        None, "--finetune", help="LM fine-tuning: frozen, lora (default) or full."
    ),
    encoder: str | None = typer.Option(
        None, "--encoder", help="LM text encoder: a name or a local folder."
    ),
    device: str | None = DEVICE_OPTION,
    lora_targets: str | None = LORA_TARGETS_OPTION,
    settings: list[str] | None = typer.Option(
        None, "--set", help="Extra setting, KEY=VALUE or MODEL.KEY=VALUE (repeatable)."
    ),
    log_dir: Path | None = typer.Option(
        None, "--log-dir", help="LM: write TensorBoard training curves here while fitting."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (one process) or ray (LM: Ray Train workers)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Existing Ray cluster (host:6379, ray://host:10001, auto)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Ray training workers (default 2); with --engine ray."
    ),
    checkpoint_dir: Path | None = typer.Option(
        None,
        "--checkpoint-dir",
        help="Ray Train runs and checkpoints (default: <out>.checkpoints beside --out).",
    ),
    dp_epsilon: float | None = typer.Option(
        None,
        "--dp-epsilon",
        help="LM: train with differential privacy to this epsilon (an item's history is "
        "the unit; see docs/privacy.md).",
    ),
    dp_delta: float | None = typer.Option(
        None, "--dp-delta", help="LM with --dp-epsilon: the delta (default 1e-5)."
    ),
) -> None:
    """Fit a forecaster on a prepared panel and save it to a model folder."""
    from salesformer._io import check_output_dir
    from salesformer.data.contract import Panel
    from salesformer.models.persist import save_model
    from salesformer.models.registry import build_model, parse_settings, resolve_name

    name = resolve_name(model)
    check_output_dir(out, "model")  # before training: a bad --out fails now, not after the fit
    check_lm_options([name], finetune, encoder)
    if horizon < 1:
        raise ConfigError(f"--horizon must be >= 1; got {horizon}")
    overrides = parse_settings(settings)
    if log_dir is not None:
        if name not in LM_MODELS:
            raise ConfigError(f"--log-dir applies to the models lm and auto only; got {name}")
        overrides.setdefault(LM, {})["log_dir"] = str(log_dir)
    from salesformer.cli.fit_engine import RayFitOptions

    ray_options = RayFitOptions.check(name, engine, ray_address, workers, checkpoint_dir)
    private_overrides(name, engine, dp_epsilon, dp_delta, overrides)
    lm_device_overrides(
        [name], device, lora_targets, overrides, on_this_machine=ray_options.engine != "ray"
    )
    forecaster = build_model(name, horizon, finetune, encoder, overrides)
    given = {**overrides.get(name, {}), **overrides.get(None, {})}
    if hasattr(forecaster, "max_horizon") and "max_horizon" not in given:
        forecaster.max_horizon = horizon  # LightGBM: trained for the steps it will forecast
    forecaster.check_params()
    data = Panel.load(panel)
    if until is not None:
        data = panel_until(data, until)
    typer.echo(
        f"fitting {name} on {len(data.item_ids)} items, {len(data.dates)} periods "
        f"({data.first_date.date()} .. {data.last_date.date()})"
    )
    started = time.perf_counter()
    if ray_options.engine == "ray":
        ray_options.fit(forecaster, data, out)
    elif name in LM_MODELS:  # the LM shows its own progress bar on a terminal
        forecaster.fit(data)
    else:
        from rich.console import Console

        with Console(stderr=True).status(f"fitting {name} ..."):
            forecaster.fit(data)
    seconds = time.perf_counter() - started
    save_model(forecaster, out)
    for line in _fit_summary(forecaster, seconds):
        typer.echo(line)
    typer.echo(f"wrote {out}")


def predict_command(
    model_dir: Path = typer.Option(
        ..., "--model", help="Model folder written by 'salesformer fit'."
    ),
    out: Path = typer.Option(..., "--out", help="Forecast file, .csv or .parquet."),
    new_items: Path | None = typer.Option(
        None,
        "--new-items",
        help="CSV/Parquet of new products (item_id, text, price, optional launch_date).",
    ),
    horizon: int | None = typer.Option(
        None, "--horizon", "-h", help="Periods to forecast (default: the model's horizon)."
    ),
    future: Path | None = typer.Option(
        None,
        "--future",
        help="Plan CSV/Parquet: item_id, date and known-future covariates (price, discount, "
        "promo, ...) for the horizon, optional promotion_copy (LM); the rest stays unchanged.",
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or ray: forecast parts of the catalogue on Ray."
    ),
    ray_address: str | None = RAY_ADDRESS_OPTION,
    workers: int | None = WORKERS_OPTION,
    items_per_part: int | None = ITEMS_PER_PART_OPTION,
    levels: str | None = LEVELS_OPTION,
    reconcile: str = RECONCILE_OPTION,
    device: str | None = PREDICT_DEVICE_OPTION,
) -> None:
    """Forecast every item of the model's panel, or new products from their text."""
    from salesformer.cli.ray_engine import predict_in_parts
    from salesformer.distributed.engine import check_engine_options
    from salesformer.distributed.predict import splits_into_parts
    from salesformer.models.persist import load_model

    check_table_out(out)
    if future is not None and new_items is not None:
        raise ConfigError(
            "--future plans the known items; --new-items forecasts new products from their own "
            "price; give one of them"
        )
    wanted = check_level_options(levels, reconcile, engine, new_items is not None)
    if wanted is not None and future is not None:
        raise ConfigError(
            f"--levels is not combined with --future yet (got --levels {levels}); forecast the "
            "plan without --levels, or the levels without --future"
        )
    on_ray = check_engine_options(engine, ray_address, workers, items_per_part)
    if on_ray:
        if new_items is not None or future is not None:
            raise ConfigError("--new-items and --future run on the local engine; drop --engine ray")
        if device is not None:
            raise ConfigError(
                f"--device runs on the local engine (got --device {device} with --engine ray); "
                "Ray workers forecast on their CPUs: drop --device or --engine ray"
            )
        predict_in_parts(
            model_dir, out, horizon, workers, items_per_part, on_ray=True, address=ray_address
        )
        return
    whole = [new_items, future, wanted, device]
    if all(option is None for option in whole) and splits_into_parts(model_dir):
        predict_in_parts(model_dir, out, horizon, workers, items_per_part)
        return
    if workers is not None or items_per_part is not None:
        raise ConfigError(
            "--workers and --items-per-part split the batch forecast of a model's own items "
            "into parts; --new-items, --future, --levels and --device (or a model that cannot "
            "forecast parts) run in one piece: drop them"
        )
    frame_new = read_table(new_items, "--new-items") if new_items is not None else None
    plan = read_table(future, "--future") if future is not None else None
    check_prediction_device(device)
    model = load_model(model_dir)
    use_prediction_device(model, device)
    if frame_new is not None:
        forecaster = new_item_forecaster(model)
        steps = horizon if horizon is not None else model_horizon(forecaster)
        forecast = forecaster.predict_new(frame_new, horizon=steps)
        what = f"{frame_new.shape[0]} new items"
    elif plan is not None:
        from salesformer.forecasting.plans import predict_with_plan

        steps = horizon if horizon is not None else model_horizon(model)
        forecast, report = predict_with_plan(model, steps, plan, where="--future")
        planned = report.rows - report.rows_without_plan
        what = f"{len(model.panel_.item_ids)} items ({planned} planned item-dates)"
    else:
        steps = horizon if horizon is not None else model_horizon(model)
        if wanted is not None:
            from salesformer.forecasting.levels import level_forecast
            from salesformer.forecasting.protocol import DEFAULT_QUANTILES

            forecast = level_forecast(
                model, wanted, steps, method=reconcile, quantiles=DEFAULT_QUANTILES
            )
        else:
            forecast = model.predict(steps)
        what = f"{len(model.panel_.item_ids)} items"
        if wanted is not None:
            what += f" and levels {', '.join(wanted[1:])} (reconciled: {reconcile})"
    write_table(forecast, out)
    typer.echo(f"forecast {what} x {steps} periods with {model.name}; wrote {out}")
