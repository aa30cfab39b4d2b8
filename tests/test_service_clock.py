"""The service's clock is per item: one item's events never age another item's forecast.

An event dated near the wall clock (allowed up to a day ahead) used to move one shared clock:
every item's history then ran to today with zero sales, and their forecasts collapsed, also
after a restart (the store replays it). Each item's history now ends at the later of the
panel's last period and its own latest event's period.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.service.app import create_app
from salesformer.service.core import SalesService, ServiceConfig

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def client_for(model: Any, db: Path) -> TestClient:
    config = ServiceConfig(model_dir="unused", db=str(db), api_key=API_KEY)
    return TestClient(create_app(config, model=model))


def stray_events(item: str) -> list[dict[str, Any]]:
    """An event of ``item`` and one of a registered new product the model does not know
    (``POST /items``), both dated now."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat()
    return [
        {"event_id": "stray-known", "item_id": item, "timestamp": now, "quantity": 1.0},
        {"event_id": "stray-unknown", "item_id": "NOT-IN-MODEL", "timestamp": now, "quantity": 5},
    ]


def test_a_stray_event_moves_only_its_own_item(loaded_model: Any, tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    item_a, item_b = (str(i) for i in loaded_model.panel_.item_ids[:2])
    panel_end = pd.Timestamp(loaded_model.panel_.last_date).date().isoformat()
    client = client_for(loaded_model, db)
    product = {"item_id": "NOT-IN-MODEL", "text": "A new blue mug", "price": 5.0}
    assert client.post("/items", json=product, headers=KEY).status_code == 200
    before_b = client.get(f"/items/{item_b}/forecast").json()
    before_plan = client.get(f"/items/{item_b}/plan", params={"on_hand": 0, "lead_time": 1}).json()
    assert before_b["origin"] == panel_end

    answer = client.post("/events", json={"events": stray_events(item_a)}, headers=KEY)
    assert answer.json() == {"received": 2, "stored": 2, "duplicates": 0}

    after_b = client.get(f"/items/{item_b}/forecast").json()
    assert after_b == before_b  # exactly: same origin, same numbers
    after_plan = client.get(f"/items/{item_b}/plan", params={"on_hand": 0, "lead_time": 1}).json()
    assert after_plan == before_plan
    history_b = client.get(f"/items/{item_b}/history", params={"periods": 3}).json()
    assert history_b["history"][-1]["date"] == panel_end
    # item A's own history now runs to this week: its forecast starts after it
    after_a = client.get(f"/items/{item_a}/forecast").json()
    assert after_a["origin"] > panel_end
    assert pd.Timestamp(after_a["origin"]) >= pd.Timestamp.now() - timedelta(days=8)
    # the service clock (health) is the latest clock of the known items
    assert client.get("/health").json()["clock"] == after_a["origin"]

    client.close()
    restarted = client_for(loaded_model, db)  # a new app over the same store replays it
    assert restarted.get("/health").json()["events"] == 2
    assert restarted.get(f"/items/{item_b}/forecast").json() == before_b
    assert restarted.get(f"/items/{item_a}/forecast").json() == after_a


def test_events_of_unknown_items_move_no_clock(loaded_model: Any, tmp_path: Path) -> None:
    service = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), loaded_model)
    from salesformer.service.store import Event

    service.register_product("NOT-IN-MODEL", "A new blue mug", 5.0)  # a new product
    before = service.clock_date()
    now = datetime.now(UTC).replace(tzinfo=None)
    assert service.ingest([Event("u1", "NOT-IN-MODEL", now, 3.0)]) == (1, 0)
    assert service.clock_date() == before
    assert service.history.events == 1
    item = service.live.item_ids[0]
    assert service.history.snapshot(item) == (None, service.live.wide.n_history - 1)
