"""Stock-outs in the live service: events that carry availability (issue 18)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import DATE, ITEM_ID
from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.monitoring import MonitorSettings
from salesformer.service.retrain import panel_with_events
from salesformer.service.store import Event, open_store

pytest_plugins = ["service_support"]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def _week(model: Any, week: int) -> datetime:
    last = pd.Timestamp(model.panel_.last_date).to_pydatetime()
    return last + timedelta(days=7 * week, hours=10)


def _client(model: Any, db: str) -> TestClient:
    monitoring = MonitorSettings(windows=(2,), alert_min_cells=5)
    config = ServiceConfig(model_dir="unused", db=db, api_key=API_KEY, monitoring=monitoring)
    return TestClient(create_app(config, model=model))


def _event(event_id: str, item: str, when: datetime, quantity: float, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "item_id": item,
        "timestamp": when.isoformat(),
        "quantity": quantity,
        **extra,
    }


def test_an_out_of_stock_period_is_flagged_and_not_scored(
    loaded_model: Any, tmp_path: Path
) -> None:
    items = [str(i) for i in loaded_model.panel_.item_ids[:2]]
    db = str(tmp_path / "e.db")
    with _client(loaded_model, db) as client:
        for item in items:
            assert client.get(f"/items/{item}/forecast").status_code == 200
        events = [
            _event(f"{item}-{w}", item, _week(loaded_model, w), 2.0)
            for item in items
            for w in (1, 2)
        ]
        # item 0 ran out in week 1: reported by a sale with stock_on_hand 0 and by a bare mark
        events.append(_event("out-a", items[0], _week(loaded_model, 1), 1.0, stock_on_hand=0.0))
        events.append(_event("out-b", items[0], _week(loaded_model, 1), 0.0, in_stock=False))
        events.append(_event("fine", items[1], _week(loaded_model, 1), 1.0, stock_on_hand=4.0))
        events.append(_event("closer", items[1], _week(loaded_model, 3), 1.0))
        assert client.post("/events", json={"events": events}, headers=KEY).status_code == 200
        client.app.state.service.monitor.flush()
        report = client.get("/monitoring").json()
        history = client.get(f"/items/{items[0]}/history", params={"periods": 3}).json()
        other = client.get(f"/items/{items[1]}/history", params={"periods": 3}).json()
        both = _event("both", items[0], _week(loaded_model, 2), 1.0, in_stock=True)
        both["stock_on_hand"] = 3.0
        refused = client.post("/events", json={"events": [both]}, headers=KEY)
        negative = _event("neg", items[0], _week(loaded_model, 2), 1.0, stock_on_hand=-1.0)
        refused_negative = client.post("/events", json={"events": [negative]}, headers=KEY)
    # 2 items x 2 closed weeks, less item 0's week 1
    assert report["windows"][0]["overall"]["cells"] == 3
    week1 = _week(loaded_model, 1).date()
    flags = {p["date"]: p["in_stock"] for p in history["history"]}
    sales = {p["date"]: p["sales"] for p in history["history"]}
    assert flags[pd.Timestamp(week1).strftime("%Y-%m-%d")] is False
    assert sales[pd.Timestamp(week1).strftime("%Y-%m-%d")] == pytest.approx(3.0)
    assert all(p["in_stock"] for p in other["history"])
    assert refused.status_code == 422 and "not both" in refused.json()["detail"]
    assert refused_negative.status_code == 422
    store = open_store(db)
    stored = {e.event_id: e.in_stock for e in store.iter_events()}
    store.close()
    assert (stored["out-a"], stored["out-b"], stored["fine"], stored["closer"]) == (
        False,
        False,
        True,
        None,
    )


def test_stock_outs_reach_the_retrain_panel_and_survive_retention(
    loaded_model: Any, store_location: Callable[[], str]
) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    store = open_store(store_location())
    events = [
        Event(f"e{w}", item, _week(loaded_model, w), 2.0, 5.0, in_stock=(w != 2))
        for w in (1, 2, 3, 4)
    ]
    store.add_events(events)
    raw = list(store.iter_sales())
    store.compact(_week(loaded_model, 10))
    kept = list(store.iter_sales())
    store.close()
    assert sorted((e.timestamp, e.in_stock is False) for e in kept) == [
        (_week(loaded_model, w).replace(hour=0), w == 2) for w in (1, 2, 3, 4)
    ]
    for sales in (raw, kept):
        panel, _ = panel_with_events(loaded_model.panel_, sales)
        frame = panel.sales.set_index([ITEM_ID, DATE])
        assert IN_STOCK in frame.columns
        out = frame.index[~frame[IN_STOCK].astype(bool)]
        assert list(out) == [(item, pd.Timestamp(_week(loaded_model, 2).date()))]


def test_a_store_written_before_availability_gets_the_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the events table as earlier versions created it
        db.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
            "UNIQUE, item_id TEXT NOT NULL, ts TEXT NOT NULL, quantity REAL NOT NULL, "
            "price REAL, order_id TEXT, customer_id TEXT)"
        )
        db.execute(
            "INSERT INTO events (event_id, item_id, ts, quantity) "
            "VALUES ('old', 'A', '2024-03-04T10:00:00', 2.0)"
        )
    store = open_store(path)
    new = Event("new", "A", datetime(2024, 3, 5), 0.0, in_stock=False)
    assert store.add_events([new]) == [new]
    old = Event("old", "A", datetime(2024, 3, 4, 10), 2.0)
    assert store.add_events([old]) == []  # an unchanged resend of the old event
    assert [(e.event_id, e.in_stock) for e in store.iter_events()] == [
        ("old", None),
        ("new", False),
    ]
    store.close()
