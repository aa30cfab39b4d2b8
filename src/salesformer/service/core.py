"""The service without HTTP: settings, start-up (model, store, replay) and every operation.

:class:`SalesService` is what :func:`salesformer.service.app.create_app` puts behind the
routes; it can be used directly from Python as well::

    service = SalesService.start(ServiceConfig(model_dir="out/model", db="events.db"))
    service.ingest([Event("e1", "SKU00003", datetime(2023, 7, 11), 4.0, 9.5)])
    service.forecast("SKU00003", horizon=4, quantiles=(0.1, 0.5, 0.9))
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, TEXT
from salesformer.errors import ConfigError, DataValidationError
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, check_quantiles, quantile_column
from salesformer.service.customer_data import CustomerData, CustomerDataSettings
from salesformer.service.history import LiveHistory
from salesformer.service.live import LiveForecast, LiveForecaster
from salesformer.service.monitoring import Monitor, MonitorSettings, start_monitor
from salesformer.service.products import Product, ProductBook, check_registered
from salesformer.service.store import Event, Store, open_store
from salesformer.text.device import DEVICES, valid_device

API_KEY_ENV = "SALESFORMER_API_KEY"
K = TypeVar("K")
V = TypeVar("V")
#: Events dated later than this after the server's clock are refused as mistakes.
FUTURE_SLACK = timedelta(days=1)


@dataclass
class ServiceConfig:
    """Settings of the service, checked in :meth:`check`.

    Attributes:
        model_dir: folder of a fitted LM (``salesformer fit --model lm`` or the demo's model).
        db: SQLite file path or ``postgresql://`` URL of the event store.
        api_key: key that write requests must send (``X-API-Key``); None disables writes.
        protect_reads: also require the key for reads (forecasts, items, metrics, dashboard
            data); the dashboard page then asks for it.
        max_body_bytes: larger request bodies are refused with 413.
        threads: torch threads for the forecasting head.
        device: where the LM's encoder and head run: ``cpu`` (the default), ``auto``,
            ``cuda``, ``cuda:N`` or ``mps`` (not saved with the model).
        forecast_cache: forecasts kept for unchanged items (LRU entries; 0 turns it off).
        registry: a model registry (:mod:`salesformer.models.versions`): serve its promoted
            version instead of ``model_dir``, and switch on :meth:`SalesService.reload`.
        registry_poll: seconds between checks of the registry's pointer (0: no watching;
            reloads then come from ``POST /models/reload``).
        monitoring: accuracy monitoring of the served forecasts
            (:mod:`salesformer.service.monitoring`).
        stock_file: optional CSV or parquet of stock (``item_id, on_hand, lead_time``) for the
            dashboard's overview (:mod:`salesformer.service.overview`).
        customer_data: pseudonymous customer ids and the retention of raw events
            (:mod:`salesformer.service.customer_data`).
    """

    model_dir: str | Path
    db: str | Path = "salesformer-events.db"
    api_key: str | None = None
    protect_reads: bool = False
    max_body_bytes: int = 1_048_576
    threads: int = 1
    device: str = "cpu"
    forecast_cache: int = 4096
    registry: str | Path | None = None
    registry_poll: float = 0.0
    monitoring: MonitorSettings = field(default_factory=MonitorSettings)
    stock_file: str | Path | None = None
    customer_data: CustomerDataSettings = field(default_factory=CustomerDataSettings)

    def check(self) -> ServiceConfig:
        """Raise :class:`ConfigError` for a setting out of range; return self."""
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError(
                f"the API key must have at least 8 characters; got {len(self.api_key)}; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        if self.api_key is not None and not (self.api_key.isascii() and self.api_key.isprintable()):
            raise ConfigError(
                "the API key must be printable ASCII (HTTP headers carry nothing else); got "
                f"a key of {len(self.api_key)} characters with others; generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe())'"
            )
        if self.protect_reads and self.api_key is None:
            raise ConfigError(
                "reads are to be keyed (--protect-reads) but no API key is set; set "
                f"{API_KEY_ENV} or give --api-key-file"
            )
        if not 1024 <= self.max_body_bytes <= 256 * 1024 * 1024:
            raise ConfigError(
                f"max_body_bytes must be in [1024, 268435456]; got {self.max_body_bytes}"
            )
        if not 0 <= self.forecast_cache <= 1_000_000:
            raise ConfigError(
                f"forecast_cache must be in [0, 1000000] entries; got {self.forecast_cache}"
            )
        if not 1 <= self.threads <= 64:
            raise ConfigError(f"threads must be in [1, 64]; got {self.threads}")
        if not valid_device(self.device):
            raise ConfigError(
                f"device must be one of {list(DEVICES)} or cuda:N; got {self.device!r}; "
                "use cpu (the default) or auto"
            )
        if not (self.registry_poll == 0 or 0.1 <= self.registry_poll <= 3600):
            raise ConfigError(
                f"registry_poll must be 0 (off) or in [0.1, 3600] seconds; got {self.registry_poll}"
            )
        if self.registry_poll and self.registry is None:
            raise ConfigError("registry_poll watches a registry; give --registry as well")
        self.monitoring.check()
        self.customer_data.check()
        return self


def read_api_key(path: str | Path | None) -> str | None:
    """The key in ``path`` (first line, stripped), else ``$SALESFORMER_API_KEY``, else None."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"--api-key-file: no such file {str(file)!r}")
        try:
            lines = file.read_text(encoding="utf-8").strip().splitlines()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"--api-key-file {str(file)!r} is not UTF-8 text; write the key on line 1"
            ) from exc
        if not lines or not lines[0].strip():
            raise ConfigError(f"--api-key-file {str(file)!r} is empty; write the key on line 1")
        return lines[0].strip()
    return os.environ.get(API_KEY_ENV) or None


class SalesService:
    """The model, the event store and the live history, kept consistent.

    Events are stored first (one transaction per batch) and folded into the history after the
    commit, so the history never holds an event the store lost. At start, every stored event is
    replayed into the history.
    """

    def __init__(
        self,
        config: ServiceConfig,
        live: LiveForecaster,
        store: Store,
        version: int | None = None,
        folded_through: date | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        self.config = config
        model_dir = config.model_dir if model_dir is None else model_dir
        self.store = store
        self.customer_data = CustomerData(config.customer_data, store)
        self.customer_data.enforce()
        # held while a batch is stored and folded in, and while a new model replays the store
        self._ingest_lock = threading.Lock()
        self._served = self._serving(live, version, folded_through, model_dir)
        self.products = ProductBook(store)

    def _serving(
        self,
        live: LiveForecaster,
        version: int | None,
        folded_through: date | None,
        model_dir: str | Path | None,
    ) -> ServedModel:
        """The model with its history replayed from the store (call under the ingest lock).

        ``folded_through``: the last date whose stored events the model's panel holds already
        (a version made by ``salesformer retrain``); they are not added twice.
        """
        folded = -1
        if folded_through is not None:
            folded = live.grid.index(datetime.combine(folded_through, datetime.min.time()))
        history = live.new_history(folded)
        history.add(self.store.iter_sales())
        cache: LRUCache[tuple[Any, ...], LiveForecast] = LRUCache(self.config.forecast_cache)
        monitor = start_monitor(self.config, live, history, model_dir, version)
        return ServedModel(live, history, _titles(live), cache, version, monitor)

    # Each operation reads ``self._served`` once and works on that model to the end, so a
    # request that began before a switch (:meth:`swap`) finishes on the old model.
    @property
    def live(self) -> LiveForecaster:
        return self._served.live

    @property
    def history(self) -> LiveHistory:
        return self._served.history

    @property
    def titles(self) -> dict[str, str]:
        return self._served.titles

    @property
    def version(self) -> int | None:
        """The registry version served (None: a model folder outside a registry)."""
        return self._served.version

    @property
    def monitor(self) -> Monitor | None:
        """The accuracy monitor of the served model (None: monitoring off)."""
        return self._served.monitor

    @classmethod
    def start(cls, config: ServiceConfig, model: Any = None) -> SalesService:
        """Load the model (unless given) and open the store named in ``config``."""
        config.check()
        version, folded = None, None
        model_dir: str | Path = config.model_dir
        if model is None:
            from salesformer.models.persist import load_model

            if config.registry is not None:
                from salesformer.models.versions import ModelRegistry

                promoted = ModelRegistry(config.registry).promoted()
                model_dir, version = promoted.model_dir, promoted.number
                folded = promoted.folded_through
            model = load_model(model_dir)
        from salesformer.text.encoder import import_torch

        import_torch().set_num_threads(int(config.threads))
        live = LiveForecaster(model, config.device)
        return cls(config, live, open_store(config.db), version, folded, model_dir)

    def swap(
        self,
        model: Any,
        version: int | None,
        folded_through: date | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        """Serve ``model`` (saved in ``model_dir``) from now on, without dropping a request.

        The new model is prepared first (its arrays and item vectors); the event history is
        then replayed from the store while ingestion waits, and the served reference is
        switched in one assignment. Requests already running finish on the old model. The
        new model gets a monitor of its own (its version, its backtest accuracy); the old
        monitor writes what it holds and stops.
        """
        live = LiveForecaster(model, self.config.device)
        with self._ingest_lock:
            old = self._served
            self._served = self._serving(live, version, folded_through, model_dir)
        if old.monitor is not None:
            old.monitor.close()

    def ingest(self, events: Sequence[Event]) -> tuple[int, int]:
        """Store the batch (whole or not at all) and update the history; (stored, duplicates).

        Raises:
            DataValidationError: an event before the model's first date or in the future.
            EventIdConflictError: an ``event_id`` already stored (or used earlier in the batch)
                for another sale; nothing is stored.
        """
        events = self.customer_data.prepare(events)
        self.history.check(events)
        self.customer_data.check_retained(events)
        check_registered(events, self._served.live, self.products)
        latest = datetime.now(UTC).replace(tzinfo=None) + FUTURE_SLACK
        for position, event in enumerate(events):
            if event.timestamp > latest:
                raise DataValidationError(
                    f"events[{position}] (event_id {event.event_id!r}) is dated "
                    f"{event.timestamp.isoformat()}, in the future; send events that happened"
                )
        with self._ingest_lock:
            stored = self.store.add_events(events)
            self._served.history.add(stored)
            self.products.add(stored)
            monitor = self._served.monitor
            if monitor is not None:
                monitor.observe(stored)
        return len(stored), len(events) - len(stored)

    def forecast(
        self, item_id: str, horizon: int | None = None, quantiles: Sequence[float] | None = None
    ) -> LiveForecast:
        """Forecast a known item from its current history (raises ``UnknownItemError``).

        The forecast starts after the item's own clock (the panel's last period or its latest
        event's, see :mod:`salesformer.service.history`): other items' events never move it.
        Answers are kept in a small LRU cache keyed by the item's state version and its clock,
        so a repeated request for an unchanged item costs a dictionary lookup; any new event of
        the item makes a new key.
        """
        served = self._served
        levels = tuple(DEFAULT_QUANTILES if quantiles is None else quantiles)
        steps = served.live.horizon if horizon is None else int(horizon)
        if not served.live.knows(item_id) and self.products.knows(item_id):
            return self.products.forecast(served.live, item_id, steps, check_quantiles(levels))
        state, clock = served.history.snapshot(item_id)
        key = (item_id, state.version if state else 0, clock, steps, levels)
        found = served.cache.get(key)
        if found is not None:
            return found
        result = served.live.forecast(item_id, state, clock, steps, levels)
        served.cache.put(key, result)
        if served.monitor is not None:
            served.monitor.record(
                item_id, clock, result.dates, result.point, levels, result.quantiles
            )
        return result

    def forecast_new(
        self,
        item_id: str,
        text: str,
        price: float | None = None,
        launch_date: date | None = None,
        horizon: int | None = None,
        quantiles: Sequence[float] | None = None,
    ) -> LiveForecast:
        """Cold-start forecast of a product from its text, price and launch date.

        Without a launch date the product launches in the period after the service clock (the
        latest clock of the known items).

        Raises:
            DataValidationError: ``item_id`` is a known item (its forecast comes from its
                history, not from a cold start).
        """
        served = self._served
        if served.live.knows(item_id):
            raise DataValidationError(
                f"item_id {item_id!r} is an item the model knows; forecast it from its history "
                f"with GET /items/{quote(item_id, safe='')}/forecast, or give the new product an "
                "id of its own"
            )
        launch = launch_date or served.live.grid.date_of(served.history.clock + 1)
        frame = pd.DataFrame(
            {
                ITEM_ID: [item_id],
                TEXT: [text],
                "price": [np.nan if price is None else float(price)],
                "launch_date": [pd.Timestamp(launch)],
            }
        )
        levels = tuple(DEFAULT_QUANTILES if quantiles is None else quantiles)
        steps = served.live.horizon if horizon is None else int(horizon)
        out = served.live.forecast_new(frame, steps, levels)
        name = served.live.model.name
        columns = [c for c in out.columns if c.startswith(f"{name}-q")]
        return LiveForecast(
            pd.DatetimeIndex(out["date"]),
            out[name].to_numpy(dtype=float),
            out[columns].to_numpy(dtype=float),
        )

    def register_product(
        self,
        item_id: str,
        text: str,
        price: float | None = None,
        launch_date: date | None = None,
        horizon: int | None = None,
        quantiles: Sequence[float] | None = None,
    ) -> LiveForecast:
        """Register a new product (``POST /items``) and return its cold-start forecast.

        Its events are accepted from now on and its forecast (:meth:`forecast`) moves from
        the cold start to its own history (:mod:`salesformer.service.products`). Registering
        the same product again is a no-op.

        Raises:
            DataValidationError: ``item_id`` is an item the model knows.
            ProductConflictError: the id is registered with other details.
        """
        served = self._served
        if served.live.knows(item_id):
            raise DataValidationError(
                f"item_id {item_id!r} is an item the model knows; its events are accepted and "
                f"its forecast is GET /items/{quote(item_id, safe='')}/forecast; register a "
                "new product under an id of its own"
            )
        launch = launch_date or served.live.grid.date_of(served.history.clock + 1)
        self.products.register(Product(item_id, text, price, launch))
        levels = check_quantiles(DEFAULT_QUANTILES if quantiles is None else quantiles)
        steps = served.live.horizon if horizon is None else int(horizon)
        if not 1 <= steps <= served.live.horizon:
            raise ConfigError(f"horizon must be between 1 and {served.live.horizon}; got {steps}")
        return self.products.forecast(served.live, item_id, steps, levels)

    def plan(self, policy: Any, settings: Any = None) -> dict[str, Any]:
        """The reorder plan of one item from its live forecast (:mod:`salesformer.decisions`).

        Args:
            policy: an :class:`~salesformer.decisions.inventory.ItemPolicy` (stock, lead time,
                review period, packs, costs).
            settings: :class:`~salesformer.decisions.inventory.PlanSettings` (service target).

        Returns:
            The plan line of :func:`~salesformer.decisions.inventory.plan_inventory`.
        """
        from salesformer.decisions.inventory import PLAN_QUANTILES, plan_inventory

        weeks = int(policy.lead_time) + int(policy.review_period)
        if weeks > self.live.horizon:
            raise ConfigError(
                f"lead_time + review_period is {weeks} periods, longer than the model's "
                f"horizon of {self.live.horizon}; the plan needs a forecast of that length"
            )
        result = self.forecast(policy.item_id, self.live.horizon, PLAN_QUANTILES)
        name = str(self.live.model.name)
        frame = pd.DataFrame({ITEM_ID: policy.item_id, "date": result.dates})
        for position, level in enumerate(PLAN_QUANTILES):
            frame[quantile_column(name, level)] = result.quantiles[:, position]
        line = plan_inventory(frame, [policy], settings, model=name).iloc[0].to_dict()
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in line.items()}

    def what_if(
        self,
        scenario: Any,
        item_id: str,
        horizon: int | None = None,
        quantiles: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """One item's forecast under a price / promotion scenario against its live baseline.

        The baseline plan is the item's known-future covariates carried forward from the
        clock; the scenario (:class:`~salesformer.decisions.whatif.Scenario`) changes it as
        :func:`~salesformer.decisions.whatif.apply_scenario` does, and promotion copy is read by
        the encoder (one pass). Both forecasts start after the live clock, events included.

        Returns:
            The rows of :func:`~salesformer.decisions.whatif.uplift_table`: prices, baseline
            and scenario forecasts with quantiles, uplift in units and revenue.
        """
        from salesformer.data.contract import DATE
        from salesformer.data.text import item_text
        from salesformer.decisions.whatif import apply_scenario, uplift_table

        served = self._served
        live = served.live
        state, clock = served.history.snapshot(item_id)
        plan = live.future_plan(item_id, state, clock)
        future, promotions = apply_scenario(live.model, plan, scenario)
        text = None
        if item_id in promotions:
            text = item_text(self._item_text(item_id), promotion=promotions[item_id])
        # sorted and distinct, as the forecast's quantile columns are: they are labelled below
        levels = check_quantiles(DEFAULT_QUANTILES if quantiles is None else quantiles)
        steps = live.horizon if horizon is None else int(horizon)
        name = str(live.model.name)
        frames = []
        for covariates, words in ((None, None), (future, text)):  # baseline, then scenario
            result = live.forecast(item_id, state, clock, steps, levels, covariates, words)
            frame = pd.DataFrame({ITEM_ID: item_id, DATE: result.dates, name: result.point})
            for position, level in enumerate(levels):
                frame[quantile_column(name, level)] = result.quantiles[:, position]
            frames.append(frame)
        table: pd.DataFrame = uplift_table(
            live.model, plan.head(steps), future.head(steps), frames[0], frames[1], levels
        )
        return table

    def _item_text(self, item_id: str) -> str:
        """The text the model read for a known item."""
        from salesformer.text.encoder import item_texts

        items = self.live.panel.items
        texts = item_texts(items) if items is not None else pd.Series(dtype=str)
        found = texts.get(item_id)
        return str(found) if isinstance(found, str) and found.strip() else item_id

    def item_history(self, item_id: str, periods: int) -> pd.Series:
        """The item's last ``periods`` periods of sales (panel plus events)."""
        served = self._served
        state, clock = served.history.snapshot(item_id)
        return served.live.history(item_id, state, clock).iloc[-periods:]

    def search(self, text: str, limit: int) -> tuple[list[tuple[str, str]], int]:
        """Known items whose id or title contains ``text`` (any case); (first ``limit``, total)."""
        needle = text.strip().lower()
        found = [
            (item, title)
            for item, title in self.titles.items()
            if not needle or needle in item.lower() or needle in title.lower()
        ]
        return found[:limit], len(found)

    def clock_date(self) -> date:
        served = self._served
        return served.live.grid.date_of(served.history.clock)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.store.close()


@dataclass(frozen=True)
class ServedModel:
    """What one served model needs, switched as a whole by :meth:`SalesService.swap`."""

    live: LiveForecaster
    history: LiveHistory
    titles: dict[str, str]
    cache: LRUCache[tuple[Any, ...], LiveForecast]
    version: int | None
    monitor: Monitor | None = None


class LRUCache(Generic[K, V]):
    """A thread-safe least-recently-used map of at most ``size`` entries (0: keeps nothing)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def _titles(live: LiveForecaster) -> dict[str, str]:
    """A short title per known item (the items table's title or the start of its text)."""
    items = live.panel.items
    out = {item: item for item in live.item_ids}
    if items is None:
        return out
    table = items.drop_duplicates(ITEM_ID).set_index(ITEM_ID)
    column = "title" if "title" in table.columns else TEXT if TEXT in table.columns else None
    if column is None:
        return out
    for item in live.item_ids:
        if item in table.index:
            value = table.at[item, column]
            if isinstance(value, str) and value.strip():
                out[item] = value.strip()[:120]
    return out
