"""Customer data in the service: pseudonymous customer ids and a retention period.

**Pseudonyms** (``serve --pseudonymise``): every event's ``customer_id`` and ``order_id`` are
replaced, before they are stored, by keyed hashes (HMAC-SHA256, the key in
``SALESFORMER_PSEUDONYM_KEY``, as ``recommend --pseudonymise`` does for customers:
:mod:`salesformer.decisions.pseudonym`; order ids are hashed in their own domain, ``o_...``),
so the store never holds a customer or order id in clear. The same id and key give the same
pseudonym, so a resent event is still recognised as a duplicate, an order's lines stay
together, and customer pseudonyms line up with those of ``recommend``. Without a key the
service does not start.

**Retention** (``serve --retain-days N``): events dated before the start of the UTC day N days
ago are replaced by per-item daily totals (units, price sum and count, number of events; table
``event_totals``), and the raw rows, with their order and customer ids, are deleted (SQLite
overwrites them: ``secure_delete``). The forecasts, the accuracy monitoring and ``salesformer
retrain`` read the totals and the remaining events alike (:meth:`Store.iter_sales`), so what
they compute is unchanged; only the ids and the time of day are gone. It runs at start-up and
then every ``retention_check`` seconds (a new day moves the cut-off); each run that deletes
rows logs one line, and ``/metrics`` counts them (``salesformer_retention_deleted_total``).
Events dated before the cut-off are refused at ingestion: their day is a total already, and a
resent event could no longer be told from a new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta

from salesformer.decisions.pseudonym import pseudonym_key, pseudonymise, pseudonymise_orders
from salesformer.errors import ConfigError, DataValidationError
from salesformer.service.store import Event, Store

_LOG = logging.getLogger("salesformer.service")
#: Longest retention accepted (100 years).
MAX_RETAIN_DAYS = 36_500


@dataclass(frozen=True)
class CustomerDataSettings:
    """What the service does with customer data.

    Attributes:
        pseudonymise: store keyed hashes of customer and order ids instead of the ids.
        retain_days: keep raw events for this many days (None: forever).
        retention_check: seconds between retention runs after the one at start-up.
    """

    pseudonymise: bool = False
    retain_days: int | None = None
    retention_check: float = 3600.0

    def check(self, environ: Mapping[str, str] | None = None) -> CustomerDataSettings:
        """Raise :class:`ConfigError` for a setting out of range or a missing key; return self."""
        if self.retain_days is not None and not 1 <= self.retain_days <= MAX_RETAIN_DAYS:
            raise ConfigError(
                f"--retain-days must be between 1 and {MAX_RETAIN_DAYS}; got {self.retain_days}; "
                "leave it out to keep events forever"
            )
        if not 1.0 <= self.retention_check <= 86_400.0:
            raise ConfigError(
                f"retention_check must be in [1, 86400] seconds; got {self.retention_check}"
            )
        if self.pseudonymise:
            pseudonym_key(environ)
        return self


class CustomerData:
    """Applies :class:`CustomerDataSettings` to the events of one store.

    Args:
        settings: the settings (checked).
        store: the event store.
        environ: where the pseudonym key is read (default: the process environment).
    """

    def __init__(
        self,
        settings: CustomerDataSettings,
        store: Store,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings.check(environ)
        self.store = store
        self._key = pseudonym_key(environ) if settings.pseudonymise else None
        self._lock = threading.Lock()
        self.deleted_total = 0
        self.runs = 0
        self.cutoff: datetime | None = None

    def prepare(self, events: Sequence[Event]) -> list[Event]:
        """The events as they are to be stored: customer and order ids pseudonymised when asked."""
        if self._key is None:
            return list(events)
        customers = pseudonymise([e.customer_id or "" for e in events], self._key)
        orders = pseudonymise_orders([e.order_id or "" for e in events], self._key)
        return [
            replace(
                e,
                customer_id=None if e.customer_id is None else customer,
                order_id=None if e.order_id is None else order,
            )
            for e, customer, order in zip(events, customers, orders, strict=True)
        ]

    def cutoff_at(self, now: datetime | None = None) -> datetime | None:
        """Midnight (UTC) of the day ``retain_days`` before ``now``; None without retention."""
        if self.settings.retain_days is None:
            return None
        today = (now or datetime.now(UTC).replace(tzinfo=None)).date()
        return datetime.combine(today - timedelta(days=self.settings.retain_days), time())

    def check_retained(self, events: Sequence[Event], now: datetime | None = None) -> None:
        """Refuse events dated before the retention's cut-off (their day is a total already).

        Raises:
            DataValidationError: naming the first such event.
        """
        cutoff = self.cutoff_at(now)
        if cutoff is None:
            return
        for position, event in enumerate(events):
            if event.timestamp < cutoff:
                raise DataValidationError(
                    f"events[{position}] (event_id {event.event_id!r}) is dated "
                    f"{event.timestamp.isoformat()}, before the retention cut-off "
                    f"{cutoff.date().isoformat()} (--retain-days {self.settings.retain_days}); "
                    "days before it are kept as totals only; send events on or after it"
                )

    def enforce(self, now: datetime | None = None) -> int:
        """Compact the events older than the retention period; how many rows were deleted."""
        cutoff = self.cutoff_at(now)
        if cutoff is None:
            return 0
        with self._lock:
            deleted = self.store.compact(cutoff)
            self.deleted_total += deleted
            self.runs += 1
            self.cutoff = cutoff
        if deleted:
            _LOG.warning(
                "retention: deleted %d raw events dated before %s (kept as daily totals)",
                deleted,
                cutoff.date().isoformat(),
            )
        return deleted

    def prometheus_lines(self) -> list[str]:
        """The retention's counters in the Prometheus text format (none without retention)."""
        if self.settings.retain_days is None:
            return []
        with self._lock:
            deleted, runs = self.deleted_total, self.runs
        return [
            "# HELP salesformer_retention_deleted_total Raw events deleted by the retention.",
            "# TYPE salesformer_retention_deleted_total counter",
            f"salesformer_retention_deleted_total {deleted}",
            "# HELP salesformer_retention_runs_total Retention runs since start-up.",
            "# TYPE salesformer_retention_runs_total counter",
            f"salesformer_retention_runs_total {runs}",
            "# HELP salesformer_retention_days Days raw events are kept.",
            "# TYPE salesformer_retention_days gauge",
            f"salesformer_retention_days {self.settings.retain_days}",
        ]


class RetentionTimer:
    """A daemon thread that runs the retention every ``seconds`` (errors are logged)."""

    def __init__(self, data: CustomerData, seconds: float) -> None:
        self.data = data
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.data.enforce()
            except Exception as exc:  # keep serving; the next run tries again
                _LOG.error("retention run failed (the raw events are kept): %s", exc)

    def start(self) -> RetentionTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
