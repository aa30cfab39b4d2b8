"""Customer data in the service: pseudonymous customer ids and the retention of raw events."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.cli.main import run
from salesformer.decisions.pseudonym import PSEUDONYM_KEY_ENV, pseudonymise, pseudonymise_orders
from salesformer.errors import ConfigError
from salesformer.service.app import create_app
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.customer_data import CustomerDataSettings
from salesformer.service.retrain import panel_with_events
from salesformer.service.store import Event, open_store

pytest_plugins = ["service_support"]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}
SECRET = "a-secret-pseudonym-key-0123"
CLEAR = "CUSTOMER-IN-CLEAR-4711"
ORDERS = ("ORDER-IN-CLEAR-581", "ORDER-IN-CLEAR-582", "ORDER-IN-CLEAR-582")  # two lines of one


def _config(db: str, **customer: Any) -> ServiceConfig:
    return ServiceConfig(
        model_dir="unused", db=db, api_key=API_KEY, customer_data=CustomerDataSettings(**customer)
    )


def _file_bytes(db: Path) -> bytes:
    """The SQLite file and its write-ahead log and shared memory, as stored on disk."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def _last(model: Any) -> datetime:
    return pd.Timestamp(model.panel_.last_date).to_pydatetime()


def test_pseudonymised_ids_never_appear_in_clear_in_the_store(
    loaded_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, SECRET)
    db = tmp_path / "events.db"
    item = str(loaded_model.panel_.item_ids[0])
    when = _last(loaded_model) + timedelta(days=1)
    sale = {"item_id": item, "timestamp": when.isoformat(), "quantity": 2.0}
    batch = {
        "events": [
            {**sale, "event_id": f"e{i}", "customer_id": CLEAR, "order_id": ORDERS[i]}
            for i in range(3)
        ]
    }
    config = _config(str(db), pseudonymise=True)
    with TestClient(create_app(config, model=loaded_model)) as client:
        assert client.post("/events", json=batch, headers=KEY).json()["stored"] == 3
        # the same event resent is recognised: its pseudonym is the same
        assert client.post("/events", json=batch, headers=KEY).json()["duplicates"] == 3
        shown = client.get(f"/items/{item}/history", params={"events": 3}, headers=KEY).json()
    expected = pseudonymise([CLEAR], SECRET.encode())[0]
    assert {e["customer_id"] for e in shown["events"]} == {expected}
    orders = pseudonymise_orders(ORDERS, SECRET.encode())
    assert [e["order_id"] for e in sorted(shown["events"], key=lambda e: e["event_id"])] == orders
    assert orders[1] == orders[2] != orders[0]  # an order's lines still belong together
    assert pseudonymise_orders([CLEAR], SECRET.encode())[0][2:] != expected[2:]  # own domain
    with sqlite3.connect(db) as raw:
        stored = {r[0] for r in raw.execute("SELECT customer_id FROM events")}
        stored_orders = {r[0] for r in raw.execute("SELECT order_id FROM events")}
    assert stored == {expected} and stored_orders == set(orders)
    content = _file_bytes(db)
    assert CLEAR.encode() not in content
    assert b"ORDER-IN-CLEAR" not in content and b"IN-CLEAR" not in content
    assert expected.encode() in content and orders[0].encode() in content


def test_pseudonymising_without_a_key_stops_the_start(
    served_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=PSEUDONYM_KEY_ENV):
        _config(str(tmp_path / "e.db"), pseudonymise=True).check()
    with pytest.raises(SystemExit) as info:
        run(["serve", "--model", str(served_model), "--db", str(tmp_path / "e.db"),
             "--pseudonymise"])  # fmt: skip
    assert info.value.code == 2
    assert not (tmp_path / "e.db").exists()  # refused before anything was opened
    with pytest.raises(SystemExit) as info:
        run(["serve", "--model", str(served_model), "--retain-days", "0"])
    assert info.value.code == 2


def _events(start: datetime, item: str, days: int) -> list[Event]:
    """Two sales a day, with prices exact in binary (sums in any order are equal)."""
    out = []
    for day in range(days):
        when = start + timedelta(days=day, hours=9)
        out.append(Event(f"{item}-{day}-a", item, when, 3.0, 2.5, f"o{day}", CLEAR))
        out.append(Event(f"{item}-{day}-b", item, when + timedelta(hours=1), 1.0, None, None))
        if day % 3 == 0:
            out.append(Event(f"{item}-{day}-c", item, when, -1.0, 4.25, f"o{day}", "other"))
    return out


def test_retention_deletes_old_raw_rows_and_keeps_the_totals(
    store_location: Callable[[], str],
) -> None:
    location = store_location()
    store = open_store(location)
    start = datetime(2024, 3, 4)
    events = _events(start, "A", 10)
    store.add_events(events)
    cutoff = start + timedelta(days=6)
    old = [e for e in events if e.timestamp < cutoff]
    assert store.compact(cutoff) == len(old)
    assert store.count_events() == len(events) - len(old)
    assert {e.event_id for e in store.iter_events()} == {
        e.event_id for e in events if e.timestamp >= cutoff
    }
    # a late event of a compacted day is added to that day's total
    late = Event("late", "A", start + timedelta(hours=20), 5.0, 3.0)
    store.add_events([late])
    assert store.compact(cutoff) == 1
    sales = list(store.iter_sales())
    totals = [s for s in sales if s.count > 1 or s.event_id.startswith("total:")]
    assert len(totals) == 6  # one per item and day
    assert all(t.customer_id is None and t.order_id is None for t in totals)
    assert sum(t.quantity for t in totals) == sum(e.quantity for e in [*old, late])
    assert sum(t.count for t in totals) == len(old) + 1
    first = next(t for t in totals if t.timestamp == start)
    assert (first.quantity, first.priced, first.count) == (3.0 - 1.0 + 1.0 + 5.0, 3, 4)
    assert first.price == pytest.approx((2.5 + 4.25 + 3.0) / 3)
    store.close()
    if "://" not in location:
        assert CLEAR.encode() in _file_bytes(Path(location))  # the later days still hold it
        store = open_store(location)
        store.compact(start + timedelta(days=30))
        store.close()
        assert CLEAR.encode() not in _file_bytes(Path(location))


def _state(service: SalesService, items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        result = service.forecast(item, 4, (0.1, 0.5, 0.9))
        out[item] = (result.dates, result.point, result.quantiles, service.history.snapshot(item))
    return out


def test_forecasts_monitoring_and_retraining_read_the_same_after_retention(
    loaded_model: Any, store_location: Callable[[], str]
) -> None:
    location = store_location()
    items = [str(i) for i in loaded_model.panel_.item_ids[:3]]
    start = _last(loaded_model) + timedelta(days=1)
    events = [e for item in items for e in _events(start, item, 17)]
    service = SalesService.start(_config(location), loaded_model)
    service.ingest(events)
    before = _state(service, items)
    panel_before, _ = panel_with_events(loaded_model.panel_, service.store.iter_sales())
    service.close()
    # a restart with a retention of one day: every event (they are years old) becomes a total
    service = SalesService.start(_config(location, retain_days=1), loaded_model)
    assert service.customer_data.deleted_total == len(events)
    assert service.store.count_events() == 0
    after = _state(service, items)
    panel_after, _ = panel_with_events(loaded_model.panel_, service.store.iter_sales())
    assert service.history.events == len(events)
    service.close()
    for item in items:
        dates, point, quantiles, (state, clock) = after[item]
        b_dates, b_point, b_quantiles, (b_state, b_clock) = before[item]
        assert (dates == b_dates).all() and clock == b_clock
        np.testing.assert_array_equal(point, b_point)
        np.testing.assert_array_equal(quantiles, b_quantiles)
        assert state is not None and b_state is not None
        assert state.quantity == b_state.quantity  # the totals the monitoring scores against
        assert state.prices() == b_state.prices()
    pd.testing.assert_frame_equal(panel_after.sales, panel_before.sales)


def test_retention_refuses_old_events_and_counts_in_metrics(
    loaded_model: Any, tmp_path: Path
) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    old = _last(loaded_model) + timedelta(days=1)
    db = str(tmp_path / "e.db")
    service = SalesService.start(_config(db), loaded_model)
    service.ingest(_events(old, item, 3))
    service.close()
    config = _config(db, retain_days=30)
    with TestClient(create_app(config, model=loaded_model)) as client:
        event = {"event_id": "x", "item_id": item, "timestamp": old.isoformat(), "quantity": 1.0}
        answer = client.post("/events", json={"events": [event]}, headers=KEY)
        assert answer.status_code == 422
        assert "retention cut-off" in answer.json()["detail"]
        now = datetime.now()
        fresh = {**event, "timestamp": (now - timedelta(days=2)).isoformat()}
        assert client.post("/events", json={"events": [fresh]}, headers=KEY).status_code == 200
        metrics = client.get("/metrics").text
    assert "salesformer_retention_deleted_total 7" in metrics
    assert "salesformer_retention_days 30" in metrics
    store = open_store(db)
    assert [e.event_id for e in store.iter_events()] == ["x"]  # the recent one stays raw
    store.close()
