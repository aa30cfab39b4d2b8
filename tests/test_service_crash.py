"""Crash test: kill -9 the server while a client streams events, restart, check, five times.

The server runs in a forked child process (the model is loaded once, by the test process, so
that a restart takes a second rather than a fresh torch import) and is killed with SIGKILL at
a random moment of the stream. After each kill: every acknowledged event is stored exactly
once, every batch is stored whole or not at all, and nothing unsent appears. The client then
re-sends its unacknowledged batch (ids make it idempotent) and goes on. At the end the
restarted server's forecasts equal those of a clean replay of the stored events.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx

from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.store import Event, open_store

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"

ROUNDS = 5
BATCH = 20


def _serve(model: Any, db: str, port: int) -> None:  # pragma: no cover - runs in the child
    import uvicorn

    from salesformer.service.app import create_app

    app = create_app(ServiceConfig("unused", db=db, api_key=API_KEY), model=model)
    uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    ).run()


def start_server(model: Any, db: str, port: int) -> tuple[multiprocessing.process.BaseProcess, str]:
    process = multiprocessing.get_context("fork").Process(
        target=_serve, args=(model, db, port), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("the server did not start within 60 s")


def make_batch(model: Any, rng: random.Random, number: int) -> list[dict[str, Any]]:
    items = [str(i) for i in model.panel_.item_ids]
    last = pd.Timestamp(model.panel_.last_date).to_pydatetime()
    return [
        {
            "event_id": f"b{number}-{j}",
            "item_id": rng.choice(items),
            "timestamp": (last + timedelta(hours=rng.randrange(0, 24 * 20))).isoformat(),
            "quantity": rng.randrange(-1, 6),
            "price": rng.choice([None, 4.0, 5.5]),
        }
        for j in range(BATCH)
    ]


def stored_ids(db: str) -> list[str]:
    store = open_store(db)
    try:
        return [e.event_id for e in store.iter_events()]
    finally:
        store.close()


def test_acknowledged_events_survive_kill_9(
    loaded_model: Any, store_location: Callable[[], str], free_port: Callable[[], int]
) -> None:
    db = store_location()
    rng = random.Random(3)
    sent: dict[int, list[dict[str, Any]]] = {}
    acknowledged: set[str] = set()
    pending: int | None = None
    number = 0
    for _ in range(ROUNDS):
        process, url = start_server(loaded_model, db, free_port())
        assert process.pid is not None
        killer = threading.Timer(rng.uniform(0.3, 0.9), os.kill, (process.pid, signal.SIGKILL))
        killer.start()
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=5) as client:
            while True:
                if pending is None:
                    pending, number = number, number + 1
                    sent[pending] = make_batch(loaded_model, rng, pending)
                try:
                    answer = client.post("/events", json={"events": sent[pending]})
                except httpx.TransportError:
                    break  # killed: this batch is not acknowledged
                assert answer.status_code == 200, answer.text
                acknowledged.update(e["event_id"] for e in sent[pending])
                pending = None
        killer.join()
        process.join(10)
        assert process.exitcode == -signal.SIGKILL

        ids = stored_ids(db)
        assert len(ids) == len(set(ids)), "an event was stored twice"
        assert acknowledged <= set(ids), "an acknowledged event was lost"
        every_sent = {e["event_id"] for batch in sent.values() for e in batch}
        assert set(ids) <= every_sent
        for batch in sent.values():
            present = [e["event_id"] in set(ids) for e in batch]
            assert all(present) or not any(present), "a batch was half stored"
    assert len(acknowledged) >= ROUNDS * BATCH

    process, url = start_server(loaded_model, db, free_port())
    try:
        health = httpx.get(f"{url}/health").json()
        assert health["events"] == len(stored_ids(db))
        store = open_store(db)
        events = list(store.iter_events())
        store.close()
        replay = SalesService.start(
            ServiceConfig("unused", db=store_location()), model=loaded_model
        )
        replay.ingest(events[::-1])  # another order, one batch: the same state
        for item in sorted({e.item_id for e in events}):
            served = httpx.get(f"{url}/items/{item}/forecast", params={"quantiles": "0.1,0.9"})
            expected = replay.forecast(item, None, (0.1, 0.9))
            points = served.json()["points"]
            assert [p["date"] for p in points] == [d.date().isoformat() for d in expected.dates]
            np.testing.assert_allclose(
                [[p["forecast"], *p["quantiles"]] for p in points],
                np.column_stack([expected.point, expected.quantiles]),
                rtol=1e-9,
            )
        replay.close()
    finally:
        process.kill()
        process.join(10)


def test_events_survive_in_order_of_the_store(loaded_model: Any, tmp_path: Any) -> None:
    """A restarted service replays the store: same clock, same totals as before the stop."""
    db = str(tmp_path / "e.db")
    first = SalesService.start(ServiceConfig("unused", db=db), model=loaded_model)
    item = str(loaded_model.panel_.item_ids[0])
    last = pd.Timestamp(loaded_model.panel_.last_date).to_pydatetime()
    first.ingest([Event("a", item, last + timedelta(days=9), 4.0, 5.0)])
    before = first.forecast(item, 3)
    first.close()
    second = SalesService.start(ServiceConfig("unused", db=db), model=loaded_model)
    after = second.forecast(item, 3)
    assert second.history.clock == first.history.clock
    np.testing.assert_array_equal(before.point, after.point)
    second.close()
