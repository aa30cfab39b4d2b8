"""The LM's one prediction path: samples at the forecast origin -> head -> calibration -> sales.

:func:`forecast_wide` is the only place where the fitted network's output becomes a forecast.
:meth:`LMForecaster.predict`, :meth:`LMForecaster.predict_with_texts`,
:meth:`LMForecaster.predict_new`, the live service
(:class:`salesformer.service.live.LiveForecaster`) and the explanations all call it, so that a
forecast of an item is the same number, bit for bit, whichever of them computes it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, TEXT, check_item_ids
from salesformer.errors import DataQualityWarning, DataValidationError
from salesformer.forecasting.protocol import tidy_forecast_values
from salesformer.models.lm.samples import Samples, Wide, build_samples, growth_level
from salesformer.text.encoder import import_torch, item_texts

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster

#: Prediction batches are padded to a multiple of this many rows (see :func:`head_quantiles`).
ROW_BLOCK = 64
#: Most rows the head reads at once.
BATCH_ROWS = 4096


def origin_samples(model: LMForecaster, wide: Wide) -> Samples:
    """One sample per item of ``wide``, at its last history period (the forecast origin)."""
    items = np.arange(len(wide.item_ids))
    return build_samples(
        wide,
        items,
        np.full(len(items), wide.n_history - 1),
        context=model.context_,
        horizon=model.horizon,
        freq=model.panel_.freq,
        standardizer=model.standardizer_,
    )


def forecast_wide(
    model: LMForecaster,
    wide: Wide,
    vectors: np.ndarray,
    horizon: int,
    quantiles: tuple[float, ...],
) -> np.ndarray:
    """Forecasts of every item of ``wide`` from its last history period.

    Args:
        model: a fitted LM forecaster.
        wide: the items' arrays, history plus at least the model's horizon of future
            periods (known-future covariates).
        vectors: the items' text vectors, one row per item of ``wide``.
        horizon: steps to forecast, up to the model's horizon.
        quantiles: sorted levels of the quantile columns.

    Returns:
        ``(items * horizon, 1 + len(quantiles))``, item-major: the point forecast (the
        median) then the quantiles, in sales units, non-negative and non-crossing.
    """
    return forecast_samples(model, origin_samples(model, wide), vectors, horizon, quantiles)


def forecast_samples(
    model: LMForecaster,
    samples: Samples,
    vectors: np.ndarray,
    horizon: int,
    quantiles: tuple[float, ...],
) -> np.ndarray:
    """:func:`forecast_wide` from samples already built (cold starts build their own)."""
    logq = head_quantiles(model, samples, vectors)[:, :horizon, :]
    return sales_values(model, logq, samples, quantiles)


def head_quantiles(model: LMForecaster, samples: Samples, vectors: np.ndarray) -> np.ndarray:
    """Quantiles of the scaled target, (n, horizon, levels), in batches, no gradients.

    Each batch is padded with zero rows to a multiple of :data:`ROW_BLOCK` rows: the CPU
    matrix kernels round a row's result differently in very small batches, so without the
    padding an item's forecast would depend (in the last float bits) on how many items were
    forecast with it. Padded, forecasting a part of the items (the Ray engine, the service)
    gives exactly the numbers of forecasting them all.

    The head runs on the model's ``prediction_device_`` (:meth:`LMForecaster.use_device`);
    the inputs go there and the quantiles come back as a CPU array.
    """
    torch = import_torch()
    model.head_.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(samples), BATCH_ROWS):
            part = samples.take(np.arange(start, min(start + BATCH_ROWS, len(samples))))
            batch = tensors(part)
            text = torch.from_numpy(
                np.ascontiguousarray(vectors[start : start + len(part)], dtype=np.float32)
            )
            inputs = [batch["hist"], batch["hist_mask"], batch["static"], batch["future"], text]
            rows = len(part)
            padded = max(ROW_BLOCK, -(-rows // ROW_BLOCK) * ROW_BLOCK)
            inputs = [torch.cat([x, x.new_zeros((padded - rows, *x.shape[1:]))]) for x in inputs]
            inputs = [on_prediction_device(model, x) for x in inputs]
            outputs.append(model.head_(*inputs)[:rows].float().cpu().numpy())
    if not outputs:
        return np.zeros((0, model.horizon, len(model.levels)), dtype=np.float32)
    return np.concatenate(outputs)


def sales_values(
    model: LMForecaster, logq: np.ndarray, samples: Samples, quantiles: tuple[float, ...]
) -> np.ndarray:
    """Sales from scaled log quantiles: calibrated ``expm1(q + level)``, levels interpolated.

    Returns the ``(n * horizon, 1 + len(quantiles))`` array of :func:`forecast_wide`.
    """
    n, horizon, _ = logq.shape
    learned = np.asarray(model.levels)
    shifted = logq + samples.level[:, None, None]
    flat = model.calibration_.apply(
        shifted.reshape(n * horizon, -1), level=np.repeat(growth_level(samples), horizon)
    )
    columns = [flat[:, list(learned).index(0.5)]]
    columns += [interpolate_levels(flat, learned, q) for q in quantiles]
    values = np.expm1(np.clip(np.column_stack(columns), -20, 20))
    return tidy_forecast_values(values, len(quantiles))


def interpolate_levels(values: np.ndarray, levels: np.ndarray, q: float) -> np.ndarray:
    """Linear interpolation between learned quantile columns (clamped at the ends)."""
    if q <= levels[0]:
        return values[:, 0]
    if q >= levels[-1]:
        return values[:, -1]
    upper = int(np.searchsorted(levels, q))
    if math.isclose(levels[upper], q):
        return values[:, upper]
    lower = upper - 1
    share = (q - levels[lower]) / (levels[upper] - levels[lower])
    result: np.ndarray = values[:, lower] * (1 - share) + values[:, upper] * share
    return result


def on_prediction_device(model: Any, value: Any) -> Any:
    """A tensor on the model's ``prediction_device_`` (the same tensor on the CPU)."""
    device = getattr(model, "prediction_device_", "cpu")
    return value if device == "cpu" else value.to(device)


@contextlib.contextmanager
def encoder_on_prediction_device(model: Any, encoder: Any) -> Iterator[None]:
    """The frozen (shared) ``encoder`` on the model's prediction device meanwhile, then back.

    A fine-tuned encoder is the model's own and moved by :meth:`LMForecaster.use_device`.
    """
    device = getattr(model, "prediction_device_", "cpu")
    moved = model.encoder_model_ is None and device != "cpu"
    if moved:
        encoder.to(device)
    try:
        yield
    finally:
        if moved:
            encoder.to("cpu")


def tensors(samples: Samples) -> dict[str, Any]:
    """The network's inputs and targets of ``samples`` as torch tensors (shared memory)."""
    torch = import_torch()
    return {
        name: torch.from_numpy(np.ascontiguousarray(getattr(samples, name)))
        for name in ("hist", "hist_mask", "static", "future", "target", "target_mask", "weight")
    }


def positions(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of ``wanted`` ids in ``known`` (every id must be there)."""
    index = pd.Index(known.astype(str)).get_indexer(wanted.astype(str))
    if (index < 0).any():  # pragma: no cover - the panel and the vectors come from one fit
        raise RuntimeError("item vectors do not cover the panel's items")
    return index


def check_new_items(new_items: pd.DataFrame) -> pd.DataFrame:
    """Validate the new-items frame of :meth:`LMForecaster.predict_new`."""
    if not isinstance(new_items, pd.DataFrame):
        raise DataValidationError(f"new items must be a table; got {type(new_items).__name__}")
    if ITEM_ID not in new_items.columns:
        raise DataValidationError(
            f"new items need an '{ITEM_ID}' column; got {list(new_items.columns)}; "
            "give item_id, text, price and optionally launch_date"
        )
    text_columns = [c for c in (TEXT, "title", "description") if c in new_items.columns]
    if not text_columns:
        raise DataValidationError(
            f"new items need a '{TEXT}' column (or title/description); got "
            f"{list(new_items.columns)}"
        )
    if new_items.empty:
        raise DataValidationError(
            f"new items: the table has no rows (columns {list(new_items.columns)}); give one "
            "row per new product"
        )
    if new_items[ITEM_ID].isna().any():
        raise DataValidationError(
            f"new items: {int(new_items[ITEM_ID].isna().sum())} rows have no item_id; give "
            "every new product an id"
        )
    frame = new_items.copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    check_item_ids(frame[ITEM_ID], "new items: column 'item_id'")
    duplicated = frame[ITEM_ID][frame[ITEM_ID].duplicated()].unique()
    if len(duplicated):
        raise DataValidationError(
            f"new items: item_id must be unique; {len(duplicated)} repeated, e.g. "
            f"{list(duplicated[:3])}"
        )
    frame["price"] = _new_prices(frame)
    frame["launch_date"] = _new_launch_dates(frame)
    _warn_without_text(frame)
    return frame.reset_index(drop=True)


def _warn_without_text(frame: pd.DataFrame) -> None:
    """A :class:`DataQualityWarning` naming the new items with no text (read as their id)."""
    texts = item_texts(frame)
    blank = [str(i) for i, t in texts.items() if not str(t).strip()]
    if blank:
        shown = ", ".join(repr(i) for i in blank[:5]) + (", ..." if len(blank) > 5 else "")
        warnings.warn(
            f"{len(blank)} of {len(frame)} new items have no text ({shown}); they are "
            "forecast from price and launch date with their id as text: give a title or "
            "description",
            DataQualityWarning,
            stacklevel=3,
        )


def _new_prices(frame: pd.DataFrame) -> pd.Series:
    if "price" not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    price = pd.to_numeric(frame["price"], errors="coerce")
    bad = frame.loc[price.isna() & frame["price"].notna(), "price"]
    if len(bad):
        raise DataValidationError(
            f"new items: price must be a number; got {list(bad.head(3))}; "
            "leave it empty when unknown"
        )
    if (price < 0).any() or np.isinf(price).any():
        bad_values = price[(price < 0) | np.isinf(price)]
        raise DataValidationError(
            f"new items: price must be a finite number >= 0; got {list(bad_values.head(3))}; "
            "leave it empty when unknown"
        )
    return price.astype(float)


def _new_launch_dates(frame: pd.DataFrame) -> pd.Series:
    if "launch_date" not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index)
    parsed = pd.to_datetime(frame["launch_date"], errors="coerce")
    bad = frame.loc[parsed.isna() & frame["launch_date"].notna(), "launch_date"]
    if len(bad):
        raise DataValidationError(
            f"new items: launch_date must be a date like 2024-03-04; got {list(bad.head(3))}"
        )
    return parsed
