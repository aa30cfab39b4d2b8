"""Durable storage of sales events: SQLite (one file, WAL) or PostgreSQL.

Both stores keep one table, ``events``, with a unique ``event_id``: adding a batch inserts the
events not seen before and skips exact resends of stored ones, in one transaction, so a batch
is stored whole or not at all and re-sending it is harmless. An ``event_id`` already stored
with other content (or used twice in a batch for different sales) is a conflict: the batch is
rolled back and :class:`EventIdConflictError` names the id. :meth:`Store.add_events` returns
only after the transaction is committed (SQLite: ``synchronous=FULL``; PostgreSQL: a normal
commit), which is what lets the service acknowledge an event only once it is durable.

Timestamps are stored as ISO-8601 text in UTC without an offset, so both stores sort and
return them alike.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from salesformer.errors import ConfigError, DataValidationError, MissingExtraError

_COLUMNS = ("event_id", "item_id", "ts", "quantity", "price", "order_id", "customer_id", "in_stock")
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Event:
    """One sale (or, with a negative quantity, a return) of an item.

    Attributes:
        event_id: the client's unique id of the event; a repeated id is a duplicate.
        item_id: the item sold.
        timestamp: when it was sold, UTC, without a time zone.
        quantity: units sold (negative for returns).
        price: unit price, or None when unknown.
        order_id: the order the sale belongs to, or None.
        customer_id: the customer, or None.
        in_stock: False when the item ran out of stock in the event's period (the period's
            sales are then not demand: :mod:`salesformer.data.stockouts`); None: not said.
        count: sales the row stands for: 1 for an event; a day's number of events for the
            total kept by the retention (:mod:`salesformer.service.customer_data`), which
            replaces that day's events.
        priced: for such a total, how many of its events had a price (``price`` is their
            mean); None for an event.
    """

    event_id: str
    item_id: str
    timestamp: datetime
    quantity: float
    price: float | None = None
    order_id: str | None = None
    customer_id: str | None = None
    in_stock: bool | None = None
    count: int = 1
    priced: int | None = None

    @property
    def price_weight(self) -> int:
        """How many priced sales ``price`` is the mean of (0: no price)."""
        if self.price is None:
            return 0
        return 1 if self.priced is None else self.priced

    def row(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.item_id,
            self.timestamp.isoformat(),
            float(self.quantity),
            self.price,
            self.order_id,
            self.customer_id,
            None if self.in_stock is None else int(self.in_stock),
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Event:
        event_id, item_id, ts, quantity, price, order_id, customer_id, in_stock = row
        return cls(
            str(event_id),
            str(item_id),
            datetime.fromisoformat(str(ts)),
            float(quantity),
            None if price is None else float(price),
            order_id,
            customer_id,
            None if in_stock is None else bool(in_stock),
        )


class EventIdConflictError(DataValidationError):
    """An event reuses a stored ``event_id`` for a different sale (answered with 409)."""

    def __init__(self, position: int, event: Event, stored: Sequence[Any]) -> None:
        differs = [
            name
            for name, sent, kept in zip(_COLUMNS[1:], event.row()[1:], stored[1:], strict=True)
            if sent != kept
        ]
        super().__init__(
            f"events[{position}]: event_id {event.event_id!r} is already stored for another "
            f"sale (it differs in {', '.join(differs)}); resend an event unchanged, or give a "
            "new sale a new event_id"
        )
        self.event_id = event.event_id


def _check_resend(position: int, event: Event, stored: Sequence[Any] | None) -> None:
    """Raise :class:`EventIdConflictError` unless ``stored`` is the same event."""
    if stored is not None and tuple(stored) != event.row():
        raise EventIdConflictError(position, event, stored)


class Store(Protocol):
    """What the service needs from an event store."""

    kind: str

    def add_events(self, events: Sequence[Event]) -> list[Event]:
        """Store the events whose ids are new, atomically; return those, in batch order.

        Raises:
            EventIdConflictError: an id is stored with other content (nothing is stored).
        """
        ...

    def iter_events(self) -> Iterator[Event]:
        """Every stored event, in the order they were stored."""
        ...

    def latest_events(self, item_id: str, limit: int) -> list[Event]:
        """The item's most recently stored events, newest first."""
        ...

    def count_events(self) -> int:
        """How many events are stored."""
        ...

    def compact(self, before: datetime) -> int:
        """Replace the events dated before ``before`` by per-item daily totals; how many.

        One transaction: the totals (quantity, price sum and count, events) of each item and
        UTC day are added to the ``event_totals`` table and the raw rows, with their order and
        customer ids, are deleted.
        """
        ...

    def iter_sales(self) -> Iterator[Event]:
        """What forecasts read: the kept daily totals, then every stored event (in order).

        Read in one statement, so a :meth:`compact` running at the same time is seen whole
        or not at all. A total is an :class:`Event` with ``count`` and ``priced`` set.
        """
        ...

    def add_product(self, item_id: str, record: str) -> str | None:
        """Register a product (JSON record); the record already stored under the id, if any."""
        ...

    def iter_products(self) -> list[str]:
        """The registered products' JSON records, in registration order."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class SQLiteStore:
    """Events in one SQLite file in WAL mode, every commit synced to disk."""

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.is_dir():
            raise ConfigError(
                f"--db {str(self.path)!r}: folder {str(self.path.parent)!r} does not exist; "
                "create it or give another path"
            )
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # deleted rows (retention) are overwritten, not left readable in free pages
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS events ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, "
                "item_id TEXT NOT NULL, ts TEXT NOT NULL, quantity REAL NOT NULL, price REAL, "
                "order_id TEXT, customer_id TEXT, in_stock INTEGER)"
            )
            known = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
            if "in_stock" not in known:  # a store written before availability
                self._db.execute("ALTER TABLE events ADD COLUMN in_stock INTEGER")
            self._db.execute("CREATE INDEX IF NOT EXISTS events_item ON events (item_id, seq)")
            self._db.execute(_TOTALS.format(real="REAL"))
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"--db {str(self.path)!r} cannot be used as an SQLite event store ({exc}); "
                "give a new file name or a store written by 'salesformer serve'"
            ) from exc

    def add_events(self, events: Sequence[Event]) -> list[Event]:
        insert = (
            f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        select = f"SELECT {', '.join(_COLUMNS)} FROM events WHERE event_id = ?"
        stored: list[Event] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for position, event in enumerate(events):
                    if self._db.execute(insert, event.row()).rowcount == 1:
                        stored.append(event)
                    else:
                        found = self._db.execute(select, (event.event_id,)).fetchone()
                        _check_resend(position, event, found)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def iter_events(self) -> Iterator[Event]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY seq")
            batch = rows.fetchall()
        for row in batch:
            yield Event.from_row(row)

    def latest_events(self, item_id: str, limit: int) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE item_id = ? "
                "ORDER BY seq DESC LIMIT ?",
                (item_id, int(limit)),
            ).fetchall()
        return [Event.from_row(r) for r in rows]

    def count_events(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def compact(self, before: datetime) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_COMPACT.format(mark="?"), (before.isoformat(),))
                deleted = self._db.execute(
                    "DELETE FROM events WHERE ts < ?", (before.isoformat(),)
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if deleted:  # move the overwritten pages out of the write-ahead log as well
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def iter_sales(self) -> Iterator[Event]:
        with self._lock:
            batch = self._db.execute(_SALES).fetchall()
        for row in batch:
            yield _sale(row)

    def add_product(self, item_id: str, record: str) -> str | None:
        """Register a new product (a JSON record); return the record already stored, if any."""
        with self._lock:
            self._db.execute(_PRODUCTS_SQLITE)
            found = self._db.execute(
                "SELECT record FROM products WHERE item_id = ?", (item_id,)
            ).fetchone()
            if found is not None:
                return str(found[0])
            self._db.execute(
                "INSERT INTO products (item_id, record) VALUES (?, ?)", (item_id, record)
            )
            return None

    def iter_products(self) -> list[str]:
        """The JSON records of the registered products, in the order they were registered."""
        with self._lock:
            self._db.execute(_PRODUCTS_SQLITE)
            return [str(r[0]) for r in self._db.execute("SELECT record FROM products ORDER BY seq")]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresStore:
    """Events in a PostgreSQL table, reached with psycopg (v3) at a ``postgresql://`` URL."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise MissingExtraError("psycopg", "service") from exc
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=False)
            with self._db.cursor() as cursor:
                cursor.execute(
                    "CREATE TABLE IF NOT EXISTS events ("
                    "seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
                    "item_id TEXT NOT NULL, ts TEXT NOT NULL, quantity DOUBLE PRECISION NOT NULL, "
                    "price DOUBLE PRECISION, order_id TEXT, customer_id TEXT, in_stock INTEGER)"
                )
                cursor.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS in_stock INTEGER")
                cursor.execute("CREATE INDEX IF NOT EXISTS events_item ON events (item_id, seq)")
                cursor.execute(_TOTALS.format(real="DOUBLE PRECISION"))
            self._db.commit()
        except psycopg.Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ConfigError(
                f"--db: cannot use the PostgreSQL database ({first_line}); check the URL "
                "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME) and that the server is running"
            ) from exc

    def add_events(self, events: Sequence[Event]) -> list[Event]:
        insert = (
            f"INSERT INTO events ({', '.join(_COLUMNS)}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
        )
        select = f"SELECT {', '.join(_COLUMNS)} FROM events WHERE event_id = %s"
        stored: list[Event] = []
        with self._lock:
            try:
                with self._db.cursor() as cursor:
                    for position, event in enumerate(events):
                        cursor.execute(insert, event.row())
                        if cursor.rowcount == 1:
                            stored.append(event)
                        else:
                            cursor.execute(select, (event.event_id,))
                            _check_resend(position, event, cursor.fetchone())
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise
        return stored

    def iter_events(self) -> Iterator[Event]:
        with self._lock, self._db.cursor() as cursor:
            cursor.execute(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY seq")
            batch = cursor.fetchall()
            self._db.commit()
        for row in batch:
            yield Event.from_row(row)

    def latest_events(self, item_id: str, limit: int) -> list[Event]:
        with self._lock, self._db.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM events WHERE item_id = %s "
                "ORDER BY seq DESC LIMIT %s",
                (item_id, int(limit)),
            )
            rows = cursor.fetchall()
            self._db.commit()
        return [Event.from_row(r) for r in rows]

    def count_events(self) -> int:
        with self._lock, self._db.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM events")
            row = cursor.fetchone()
            self._db.commit()
        return int(row[0]) if row else 0

    def compact(self, before: datetime) -> int:
        with self._lock:
            try:
                with self._db.cursor() as cursor:
                    cursor.execute(_COMPACT.format(mark="%s"), (before.isoformat(),))
                    cursor.execute("DELETE FROM events WHERE ts < %s", (before.isoformat(),))
                    deleted = cursor.rowcount
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise
        return int(deleted)

    def iter_sales(self) -> Iterator[Event]:
        with self._lock, self._db.cursor() as cursor:
            cursor.execute(_SALES)
            batch = cursor.fetchall()
            self._db.commit()
        for row in batch:
            yield _sale(row)

    def add_product(self, item_id: str, record: str) -> str | None:
        """Register a new product (a JSON record); return the record already stored, if any."""
        with self._lock, self._db.cursor() as cursor:
            try:
                cursor.execute(_PRODUCTS_POSTGRES)
                cursor.execute(
                    "INSERT INTO products (item_id, record) VALUES (%s, %s) "
                    "ON CONFLICT (item_id) DO NOTHING",
                    (item_id, record),
                )
                found = None
                if cursor.rowcount != 1:
                    cursor.execute("SELECT record FROM products WHERE item_id = %s", (item_id,))
                    row = cursor.fetchone()
                    found = str(row[0]) if row else None
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise
        return found

    def iter_products(self) -> list[str]:
        """The JSON records of the registered products, in the order they were registered."""
        with self._lock, self._db.cursor() as cursor:
            cursor.execute(_PRODUCTS_POSTGRES)
            cursor.execute("SELECT record FROM products ORDER BY seq")
            rows = cursor.fetchall()
            self._db.commit()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# Registered new products (``POST /items``, :mod:`salesformer.service.products`): created on
# first use, so stores written before them work unchanged.
_PRODUCTS_SQLITE = (
    "CREATE TABLE IF NOT EXISTS products (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "item_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL)"
)
_PRODUCTS_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS products (seq BIGSERIAL PRIMARY KEY, "
    "item_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL)"
)


# Daily totals of the events the retention deleted (:meth:`Store.compact`): created on first
# use. ``day`` is the UTC date as ISO text; ``price_sum`` and ``priced`` give the mean price.
_TOTALS = (
    "CREATE TABLE IF NOT EXISTS event_totals (item_id TEXT NOT NULL, day TEXT NOT NULL, "
    "quantity {real} NOT NULL, price_sum {real} NOT NULL, priced INTEGER NOT NULL, "
    "events INTEGER NOT NULL, out_of_stock INTEGER NOT NULL, PRIMARY KEY (item_id, day))"
)
_COMPACT = (
    "INSERT INTO event_totals (item_id, day, quantity, price_sum, priced, events, out_of_stock) "
    "SELECT item_id, substr(ts, 1, 10), SUM(quantity), COALESCE(SUM(price), 0), COUNT(price), "
    "COUNT(*), SUM(CASE WHEN in_stock = 0 THEN 1 ELSE 0 END) FROM events WHERE ts < {mark} "
    "GROUP BY item_id, substr(ts, 1, 10) "
    "ON CONFLICT (item_id, day) DO UPDATE SET "
    "quantity = event_totals.quantity + excluded.quantity, "
    "price_sum = event_totals.price_sum + excluded.price_sum, "
    "priced = event_totals.priced + excluded.priced, "
    "events = event_totals.events + excluded.events, "
    "out_of_stock = event_totals.out_of_stock + excluded.out_of_stock"
)
_SALES = (
    "SELECT 0 AS kind, 0 AS seq, CAST(NULL AS TEXT), item_id, day, quantity, price_sum, "
    "priced, events, CAST(NULL AS TEXT), CAST(NULL AS TEXT), "
    "CASE WHEN out_of_stock > 0 THEN 0 ELSE NULL END FROM event_totals "
    "UNION ALL SELECT 1 AS kind, seq, event_id, item_id, ts, quantity, price, CAST(NULL AS "
    "INTEGER), 1, order_id, customer_id, in_stock FROM events ORDER BY kind, seq"
)


def _sale(row: Sequence[Any]) -> Event:
    """An event, or a kept daily total as an :class:`Event` dated at the day's midnight."""
    kind, _, event_id, item_id, ts, quantity, price, priced, count, order, customer, stock = row
    if kind == 1:
        return Event.from_row((event_id, item_id, ts, quantity, price, order, customer, stock))
    return Event(
        f"total:{item_id}:{ts}",
        str(item_id),
        datetime.fromisoformat(str(ts)),
        float(quantity),
        float(price) / int(priced) if int(priced) else None,
        in_stock=None if stock is None else bool(stock),
        count=int(count),
        priced=int(priced),
    )


def open_store(location: str | Path) -> Store:
    """An SQLite store for a file path, a PostgreSQL store for a ``postgresql://`` URL."""
    text = str(location)
    if text.startswith(_POSTGRES_PREFIXES):
        return PostgresStore(text)
    if "://" in text:
        raise ConfigError(f"--db must be a file path (SQLite) or a postgresql:// URL; got {text!r}")
    return SQLiteStore(text)
