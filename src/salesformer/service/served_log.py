"""The forecasts the service served, kept in its store for accuracy monitoring.

One table, ``served_forecasts``, beside the ``events`` table of
:mod:`salesformer.service.store` (same SQLite file or PostgreSQL database, its own
connection): one row per (model version, item, origin, forecast date) with the point forecast
(median), the 10% and 90% quantiles when they were served, and every served quantile as JSON.
The first forecast served for a key is kept; later ones for the same key are skipped, so a
forecast answered many times is scored once.

Rows are written by the monitor's background thread, a batch per transaction. The table is
not the durable record the events are: the SQLite connection commits with
``synchronous=NORMAL`` (WAL), so a power cut can lose the last few served forecasts, never
an event.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from salesformer.errors import ConfigError, MissingExtraError

_COLUMNS = (
    "model_version",
    "item_id",
    "origin",
    "date",
    "point",
    "q10",
    "q90",
    "quantiles",
    "served_at",
)
_TABLE = (
    "CREATE TABLE IF NOT EXISTS served_forecasts ("
    "model_version TEXT NOT NULL, item_id TEXT NOT NULL, origin TEXT NOT NULL, "
    "date TEXT NOT NULL, point {real} NOT NULL, q10 {real}, q90 {real}, "
    "quantiles TEXT NOT NULL, served_at TEXT NOT NULL, "
    "PRIMARY KEY (model_version, item_id, origin, date))"
)


@dataclass(frozen=True)
class ServedRow:
    """One period of one served forecast.

    Attributes:
        model_version: :func:`~salesformer.service.monitoring.model_version` of the model.
        item_id: the item.
        origin: ISO date of the forecast's origin (the item's last period with data).
        date: ISO date of the forecast period.
        point: the point forecast (median).
        q10: the 10% quantile, or None when it was not served.
        q90: the 90% quantile, or None when it was not served.
        quantiles: every served quantile as JSON (``{"0.1": 3.0, ...}``).
        served_at: ISO time (UTC) the forecast was first served.
    """

    model_version: str
    item_id: str
    origin: str
    date: str
    point: float
    q10: float | None
    q90: float | None
    quantiles: str
    served_at: str

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _COLUMNS)


class ServedLog(Protocol):
    """Where served forecasts are kept."""

    def add(self, rows: Sequence[ServedRow]) -> None:
        """Insert the rows whose keys are new, in one transaction."""
        ...

    def rows(self, model_version: str) -> list[ServedRow]:
        """Every stored row of one model version."""
        ...

    def close(self) -> None: ...


class SQLiteServedLog:
    """The table in the event store's SQLite file (WAL), on a connection of its own."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_TABLE.format(real="REAL"))
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"--db {str(path)!r} cannot hold the served forecasts ({exc}); give a new "
                "file name or a store written by 'salesformer serve'"
            ) from exc

    def add(self, rows: Sequence[ServedRow]) -> None:
        insert = (
            f"INSERT INTO served_forecasts ({', '.join(_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(_COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(insert, [r.row() for r in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def rows(self, model_version: str) -> list[ServedRow]:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM served_forecasts WHERE model_version = ?",
                (model_version,),
            ).fetchall()
        return [ServedRow(*row) for row in found]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresServedLog:
    """The table in the event store's PostgreSQL database, on a connection of its own."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise MissingExtraError("psycopg", "service") from exc
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=False)
            with self._db.cursor() as cursor:
                cursor.execute(_TABLE.format(real="DOUBLE PRECISION"))
            self._db.commit()
        except psycopg.Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ConfigError(
                f"--db: cannot keep served forecasts in the PostgreSQL database ({first_line}); "
                "check the URL and the user's right to create tables, or use --no-monitor"
            ) from exc

    def add(self, rows: Sequence[ServedRow]) -> None:
        insert = (
            f"INSERT INTO served_forecasts ({', '.join(_COLUMNS)}) VALUES "
            f"({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT DO NOTHING"
        )
        with self._lock:
            try:
                with self._db.cursor() as cursor:
                    cursor.executemany(insert, [r.row() for r in rows])
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def rows(self, model_version: str) -> list[ServedRow]:
        with self._lock, self._db.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM served_forecasts WHERE model_version = %s",
                (model_version,),
            )
            found = cursor.fetchall()
            self._db.commit()
        return [ServedRow(*row) for row in found]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_served_log(location: str | Path) -> ServedLog:
    """The served-forecasts table in the store at ``location`` (see :func:`open_store`)."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresServedLog(text)
    return SQLiteServedLog(text)
