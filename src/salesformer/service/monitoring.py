"""Accuracy monitoring: keep every served forecast, score it as the sales arrive, alert.

:class:`Monitor` is fed by the service: each forecast it computes (a cache miss) is recorded
once per (item, origin, horizon), in memory and, by a background thread, in the store's
``served_forecasts`` table (:mod:`salesformer.service.served_log`), so a restart keeps them.

**What is scored.** A forecast period is scored once it is closed: when the service clock
(the latest period with data of any known item) has moved past it. Its actual is the sum of
the item's events in that period (0 when none arrived); a period an event marked out of stock
(``in_stock: false``) is not scored, as the backtest leaves stock-outs out. Scores (WAPE,
bias, 80% interval coverage: :mod:`salesformer.service.accuracy`) are given overall, per
category (when the items table has a ``category`` column) and per item, over rolling windows
of the last N closed periods (``windows``, e.g. 4 and 13 weeks), and per forecast date for
the chart.

**The alert.** It fires when the live WAPE over the shortest window, on at least
``alert_min_cells`` cells, exceeds the model's backtest WAPE by more than ``alert_margin``
(relative: 0.2 means 20% higher). The backtest WAPE is read from ``metrics.json`` in the model
folder (what ``salesformer backtest --out`` writes); without one there is no alert, and the
report says "no backtest". A firing alert logs one warning (and one info line when it clears),
turns ``/health`` to ``degraded`` with the reason, and sets ``salesformer_accuracy_alert``.

Scores are recomputed only when something can change them: the clock moved, an event landed
in a closed period that was forecast, or a forecast with closed periods was recorded; a read
rescores at once, the background thread (which logs the alert) at most every
:data:`RESCORE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID
from salesformer.errors import ConfigError
from salesformer.service.accuracy import (
    CATEGORY,
    HIGH,
    LOW,
    PERIOD,
    POINT,
    over_time,
    window_scores,
)
from salesformer.service.history import LiveHistory, PeriodGrid
from salesformer.service.served_log import ServedLog, ServedRow, open_served_log
from salesformer.service.store import Event

if TYPE_CHECKING:
    from salesformer.service.core import ServiceConfig
    from salesformer.service.live import LiveForecaster

LOG = logging.getLogger("salesformer.service.monitoring")
#: The background thread rescores (for the alert's log line) at most this often; reads
#: (``/monitoring``, ``/metrics``, ``/health``) rescore at once when something changed.
RESCORE_SECONDS = 5.0
BACKTEST_FILE = "metrics.json"


@dataclass
class MonitorSettings:
    """Settings of the accuracy monitor, checked in :meth:`check`.

    Attributes:
        enabled: record served forecasts and score them (off: no table, no scores).
        windows: rolling windows, in periods of the model's grid (weeks for weekly models).
        alert_margin: the alert fires when live WAPE > backtest WAPE x (1 + margin).
        alert_min_cells: fewer scored cells in the shortest window never fire the alert.
    """

    enabled: bool = True
    windows: tuple[int, ...] = (4, 13)
    alert_margin: float = 0.2
    alert_min_cells: int = 20

    def check(self) -> MonitorSettings:
        """Raise :class:`ConfigError` for a setting out of range; return self."""
        windows = tuple(self.windows)
        if not windows or len(windows) > 8 or any(not 1 <= int(w) <= 520 for w in windows):
            raise ConfigError(
                f"accuracy windows must be 1 to 8 numbers of periods in [1, 520], like 4,13; "
                f"got {list(windows)}"
            )
        self.windows = tuple(sorted({int(w) for w in windows}))
        if not 0 <= self.alert_margin <= 10:
            raise ConfigError(
                f"alert_margin must be in [0, 10] (0.2: live WAPE 20% above the backtest's); "
                f"got {self.alert_margin}"
            )
        if not 1 <= self.alert_min_cells <= 1_000_000:
            raise ConfigError(
                f"alert_min_cells must be in [1, 1000000]; got {self.alert_min_cells}"
            )
        return self


def parse_windows(text: str) -> tuple[int, ...]:
    """Windows from ``4,13`` (``--accuracy-windows``)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--accuracy-windows must be comma-separated whole numbers of periods like 4,13; "
            f"got {text!r}"
        ) from exc


def model_version(model_dir: str | Path | None) -> str:
    """What identifies the served model: the first 12 hex digits of its config.json's SHA-256.

    A model not loaded from a folder is ``"unsaved"``. A model registry can replace this
    function; everything else reads the version through it.
    """
    if model_dir is None:
        return "unsaved"
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return "unsaved"
    return hashlib.sha256(config.read_bytes()).hexdigest()[:12]


def backtest_accuracy(model_dir: str | Path | None, model_name: str) -> dict[str, Any] | None:
    """The backtest's overall WAPE, bias and coverage from ``metrics.json`` in the model folder.

    The row of ``model_name`` is taken, else the file's only row; None without a file.

    Raises:
        ConfigError: the file is not a backtest summary (``salesformer backtest``'s).
    """
    if model_dir is None:
        return None
    path = Path(model_dir) / BACKTEST_FILE
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["overall"]
        chosen = [r for r in rows if r.get("model") == model_name] or (
            rows if len(rows) == 1 else []
        )
        if not chosen:
            raise ConfigError(
                f"{path}: no overall row for model {model_name!r}; got models "
                f"{[r.get('model') for r in rows]}; keep the backtest of the served model there"
            )
        row = chosen[0]
        return {
            "model": str(row["model"]),
            "wape": float(row["wape"]),
            "bias": None if row.get("bias") is None else float(row["bias"]),
            "coverage80": None if row.get("coverage80") is None else float(row["coverage80"]),
            "source": str(path),
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{path} is not a backtest summary ({type(exc).__name__}: {exc}); write it with "
            "'salesformer backtest --out DIR' and copy DIR/metrics.json, or remove it"
        ) from exc


@dataclass
class _Cell:
    point: float
    q10: float | None
    q90: float | None


@dataclass(frozen=True)
class _Served:
    """A served forecast waiting for the background thread."""

    item_id: str
    clock: int
    first: int
    point: np.ndarray
    levels: tuple[float, ...]
    quantiles: np.ndarray
    at: str


@dataclass
class _State:
    stamp: tuple[int, int, int] = (-1, -1, -1)
    report: dict[str, Any] = field(default_factory=dict)
    firing: bool = False


class Monitor:
    """Served forecasts, their scores and the alert (see the module docstring).

    Args:
        settings: the monitor's settings (checked).
        version: :func:`model_version` of the served model.
        backtest: :func:`backtest_accuracy` of the served model, or None.
        history: the service's live history (actuals and the clock).
        categories: each item's category (empty when the items have none).
        log: the served-forecasts table, or None to keep them in memory only.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        version: str,
        backtest: dict[str, Any] | None,
        history: LiveHistory,
        categories: dict[str, str],
        log: ServedLog | None,
    ) -> None:
        self.settings = settings.check()
        self.version = version
        self.backtest = backtest
        self.history = history
        self.grid: PeriodGrid = history.grid
        self.categories = categories
        self._log = log
        self._cells: dict[tuple[str, int, int], _Cell] = {}
        self._seen: set[tuple[str, int, int]] = set()
        self._targets: set[int] = set()
        self._lock = threading.Lock()
        self._score_lock = threading.Lock()
        self._late = 0
        self._closed = -1  # the last closed period when the report was computed
        self._state = _State()
        self._queue: queue.Queue[_Served | str | None] = queue.Queue()
        for row in log.rows(version) if log is not None else []:
            self._keep(row)
        self._writer = threading.Thread(target=self._write, name="monitor-writer", daemon=True)
        self._writer.start()

    def _keep(self, row: ServedRow) -> None:
        key = (row.item_id, self._index(row.origin), self._index(row.date))
        self._cells.setdefault(key, _Cell(row.point, row.q10, row.q90))
        self._targets.add(key[2])

    def _index(self, day: str) -> int:
        return self.grid.index(datetime.fromisoformat(day))

    def record(
        self,
        item_id: str,
        clock: int,
        dates: pd.DatetimeIndex,
        point: np.ndarray,
        levels: Sequence[float],
        quantiles: np.ndarray,
    ) -> None:
        """Keep a served forecast (once per item, origin and horizon).

        On the request's path only the in-memory cells are added; the rows for the store
        (dates as text, quantiles as JSON) are made by the background thread.
        """
        key = (item_id, clock, len(dates))
        if key in self._seen:
            return
        where = {round(float(q), 6): i for i, q in enumerate(levels)}
        low, high = where.get(0.1), where.get(0.9)
        first = self.grid.index(dates[0].to_pydatetime())  # the dates follow the grid
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            for step in range(len(dates)):
                cell = (item_id, clock, first + step)
                if cell not in self._cells:
                    self._cells[cell] = _Cell(
                        float(point[step]),
                        None if low is None else float(quantiles[step, low]),
                        None if high is None else float(quantiles[step, high]),
                    )
                    self._targets.add(first + step)
        if self._log is not None:
            now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
            self._queue.put(_Served(item_id, clock, first, point, tuple(levels), quantiles, now))

    def _rows(self, served: _Served) -> list[ServedRow]:
        """The store's rows of one served forecast."""
        where = {round(float(q), 6): i for i, q in enumerate(served.levels)}
        low, high = where.get(0.1), where.get(0.9)
        origin = self.grid.date_of(served.clock).isoformat()
        rows = []
        for step, values in enumerate(served.quantiles):
            rows.append(
                ServedRow(
                    self.version,
                    served.item_id,
                    origin,
                    self.grid.date_of(served.first + step).isoformat(),
                    float(served.point[step]),
                    None if low is None else float(values[low]),
                    None if high is None else float(values[high]),
                    json.dumps(
                        {f"{q:g}": float(v) for q, v in zip(served.levels, values, strict=True)}
                    ),
                    served.at,
                )
            )
        return rows

    def observe(self, events: Sequence[Event]) -> None:
        """After events are stored: rescore (in the background) when they change the scores."""
        late = sum(
            1
            for e in events
            if (p := self.grid.index(e.timestamp)) <= self._closed and p in self._targets
        )
        if late or self.history.clock - 1 != self._closed:
            with self._lock:
                self._late += late
            self._queue.put("score")

    def flush(self) -> None:
        """Wait until every recorded forecast is written, then bring the scores up to date."""
        self._queue.join()
        self.report()

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(30)

    def _write(self) -> None:
        pending, last = False, -RESCORE_SECONDS  # a rescore asked for; when the last ran
        while True:
            wait = None if not pending else max(0.0, last + RESCORE_SECONDS - time.monotonic())
            try:
                items = [self._queue.get(timeout=wait)]
            except queue.Empty:
                items = []
            while True:  # everything pending goes in one transaction
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                rows = [r for i in items if isinstance(i, _Served) for r in self._rows(i)]
                if rows and self._log is not None:
                    self._log.add(rows)
                pending = pending or any(isinstance(i, str) for i in items)  # "score"
                if pending and time.monotonic() - last >= RESCORE_SECONDS:
                    pending, last = False, time.monotonic()
                    self.report()
            except Exception:  # the thread must live on; the log says what failed
                LOG.exception("accuracy monitor: background work failed")
            finally:
                for _ in items:
                    self._queue.task_done()
            if any(i is None for i in items):
                return

    def report(self) -> dict[str, Any]:
        """Everything the monitor knows, JSON-ready; recomputed only when it can have changed."""
        with self._score_lock:
            closed = self.history.clock - 1
            with self._lock:
                stamp = (closed, self._late, len(self._cells))
                cells = dict(self._cells) if stamp != self._state.stamp else None
            if cells is None:
                return self._state.report
            self._closed = closed
            report = self._compute(cells, closed)
            self._alert(report)
            self._state.stamp = stamp
            self._state.report = report
            return report

    def frame(self, cells: dict[tuple[str, int, int], _Cell], closed: int) -> pd.DataFrame:
        """The scored cells as a forecast frame (see :mod:`salesformer.service.accuracy`)."""
        keys = [key for key in cells if key[2] <= closed]
        sold: dict[str, dict[int, float]] = {}
        out: dict[str, set[int]] = {}
        for item in {key[0] for key in keys}:
            state, _ = self.history.snapshot(item)
            sold[item] = state.quantity if state is not None else {}
            out[item] = state.out_of_stock if state is not None else set()
        keys = [key for key in keys if key[2] not in out[key[0]]]  # stock-outs: not demand
        frame = pd.DataFrame(
            {
                ITEM_ID: [k[0] for k in keys],
                CUTOFF: pd.to_datetime([self.grid.date_of(k[1]) for k in keys]),
                DATE: pd.to_datetime([self.grid.date_of(k[2]) for k in keys]),
                PERIOD: np.asarray([k[2] for k in keys], dtype=int),
                ACTUAL: [sold[k[0]].get(k[2], 0.0) for k in keys],
                POINT: [cells[k].point for k in keys],
                LOW: [np.nan if cells[k].q10 is None else cells[k].q10 for k in keys],
                HIGH: [np.nan if cells[k].q90 is None else cells[k].q90 for k in keys],
            }
        )
        if self.categories:
            frame[CATEGORY] = frame[ITEM_ID].map(self.categories)
        return frame

    def _compute(self, cells: dict[tuple[str, int, int], _Cell], closed: int) -> dict[str, Any]:
        frame = self.frame(cells, closed)
        return {
            "model_version": self.version,
            "recorded_cells": len(cells),
            "scored_through": self.grid.date_of(closed).isoformat() if len(frame) else None,
            "backtest": self.backtest,
            "backtest_note": None
            if self.backtest
            else "no backtest: put the backtest's "
            f"{BACKTEST_FILE} (salesformer backtest --out DIR) in the model folder",
            "windows": [window_scores(frame, w, closed) for w in self.settings.windows],
            "over_time": over_time(frame),
        }

    def _alert(self, report: dict[str, Any]) -> None:
        window = report["windows"][0]
        live = window["overall"]
        margin = self.settings.alert_margin
        reason = None
        if (
            self.backtest is not None
            and live["wape"] is not None
            and live["cells"] >= self.settings.alert_min_cells
            and live["wape"] > self.backtest["wape"] * (1 + margin)
        ):
            reason = (
                f"live WAPE {live['wape']:.3f} over the last {window['periods']} periods "
                f"({live['cells']} cells) exceeds the backtest's {self.backtest['wape']:.3f} "
                f"by more than {margin:.0%}; model version {self.version}"
            )
        report["alert"] = {
            "firing": reason is not None,
            "reason": reason,
            "window": window["periods"],
            "margin": margin,
            "threshold": None
            if self.backtest is None
            else round(self.backtest["wape"] * (1 + margin), 6),
        }
        if reason is not None and not self._state.firing:
            LOG.warning("accuracy alert: %s", reason)
        elif reason is None and self._state.firing:
            LOG.info("accuracy alert cleared: model version %s", self.version)
        self._state.firing = reason is not None

    def alert_reason(self) -> str | None:
        """Why the alert fires, or None."""
        reason = self.report()["alert"]["reason"]
        return None if reason is None else str(reason)


def start_monitor(
    config: ServiceConfig,
    live: LiveForecaster,
    history: LiveHistory,
    model_dir: str | Path | None = None,
    registry_version: int | None = None,
) -> Monitor | None:
    """The monitor of one served model (None when ``config.monitoring.enabled`` is off).

    ``model_dir`` is the served model's folder (default ``config.model_dir``): its
    ``metrics.json`` gives the backtest accuracy. A model served from a registry is known by
    its version number (``v3``), any other by :func:`model_version`. Served forecasts go to
    the ``served_forecasts`` table of the store at ``config.db``.
    """
    folder = config.model_dir if model_dir is None else model_dir
    settings = config.monitoring
    if not settings.enabled:
        return None
    categories: dict[str, str] = {}
    items = live.panel.items
    if items is not None and CATEGORY in items.columns:
        table = items.drop_duplicates(ITEM_ID).dropna(subset=[CATEGORY])
        categories = {str(i): str(c) for i, c in zip(table[ITEM_ID], table[CATEGORY], strict=True)}
    return Monitor(
        settings,
        model_version(folder) if registry_version is None else f"v{registry_version}",
        backtest_accuracy(folder, str(live.model.name)),
        history,
        categories,
        open_served_log(config.db),
    )
