"""End to end: serve version 1 from a registry, ingest 8 held-back weeks of events (the
monitoring scores version 1's served forecasts on them, checked against a direct
computation), retrain (a better challenger is promoted, a crippled one rejected), switch
under load with no failed request, roll back to version 1.

Version 1 is crippled on purpose (the head trained with a learning rate of 1.0, which
diverges) and the first challenger is the tiny LM of the other service tests with the default
learning rate, so that the challenger's advantage is large and the outcome does not hang on
noise (a tiny LM's WAPE moves by several points between equally good fits); the crippled
challenger, made with version 1's setting against version 2, is rejected.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from fastapi.testclient import TestClient  # noqa: E402

from salesformer.cli.main import run  # noqa: E402
from salesformer.data.synthetic import generate_catalogue  # noqa: E402
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, quantile_column  # noqa: E402
from salesformer.models.persist import load_model  # noqa: E402
from salesformer.models.versions import ModelRegistry  # noqa: E402
from salesformer.service.app import create_app  # noqa: E402
from salesformer.service.core import ServiceConfig  # noqa: E402
from salesformer.service.retrain import panel_with_events  # noqa: E402
from salesformer.service.store import Event  # noqa: E402

pytest_plugins = ["service_support"]

API_KEY = "test-key-123456"
KEY = {"X-API-Key": API_KEY}
CRIPPLED = {"head_lr": 1.0}
HELD_BACK = 8
STEPS = 6  # the tiny LM's horizon: version 1's forecasts cover 6 of the held-back weeks


def cli(argv: list[str]) -> None:
    try:
        run(argv)
    except SystemExit as done:
        assert done.code in (0, None)


def start_server(app: Any, port: int) -> tuple[Any, threading.Thread, str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return server, thread, url
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("the server did not start within 60 s")


def forecast(url: str, item: str) -> list[float]:
    answer = httpx.get(f"{url}/items/{item}/forecast", params={"horizon": 6}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [p["forecast"] for p in answer.json()["points"]]


def held_back_events(sales: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{i}",
            "item_id": r.item_id,
            "timestamp": (r.date + pd.Timedelta(days=2, hours=10)).isoformat(),
            "quantity": float(r.sales),
            "price": float(r.price),
        }
        for i, r in enumerate(sales.itertuples())
        if r.sales > 0
    ]


@pytest.mark.slow  # about 15 s: three LM fits of the tiny model, a server and four clients
def test_versions_retrain_switch_under_load_and_rollback(
    tiny_encoder: str, tmp_path: Path, free_port: Any
) -> None:
    from salesformer.models.lm import LMForecaster
    from service_support import TINY_LM  # the plugin's module, loaded by pytest by now

    full = generate_catalogue(n_items=12, n_weeks=60, seed=5, new_item_share=0.0).panel()
    cut = full.dates[-HELD_BACK - 1]
    v1 = LMForecaster(encoder=tiny_encoder, **{**TINY_LM, **CRIPPLED}).fit(full.until(cut))
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote(registry.add(v1, {"created_by": "test"}).number, "test")
    db = str(tmp_path / "events.db")
    config = ServiceConfig(model_dir="", registry=registry.root, db=db, api_key=API_KEY)
    config.forecast_cache = 0  # every answer runs the served model
    server, thread, url = start_server(create_app(config), free_port())
    try:
        # serve version 1; ingest the 8 held-back weeks
        assert httpx.get(f"{url}/models/current").json() == {"model": "LM", "version": 1}
        for name in full.item_ids:  # version 1's forecasts from the origin, served (and kept)
            served = httpx.get(f"{url}/items/{name}/forecast", params={"horizon": STEPS})
            assert served.status_code == 200, served.text
        events = held_back_events(full.sales.loc[full.sales["date"] > cut])
        for start in range(0, len(events), 50):
            answer = httpx.post(f"{url}/events", json={"events": events[start : start + 50]},
                                headers=KEY, timeout=30)  # fmt: skip
            assert answer.status_code == 200, answer.text
        check_monitoring(httpx.get(f"{url}/monitoring").json(), v1, full, cut)
        item = str(full.item_ids[0])
        before = forecast(url, item)

        # retrain: a better challenger is promoted (v2) ...
        good = [f"--set=head_lr={LMForecaster().head_lr}"]
        cli(["retrain", "--registry", str(registry.root), "--events", db, *good])
        assert registry.state() == {"version": 2, "history": [1, 2]}
        meta = registry.version(2).metadata
        assert meta["decision"]["outcome"] == "promoted" and meta["parent"] == 1
        assert meta["rule"] == {"min_wape_gain": 0.01, "max_wql_increase": 0.0}
        assert meta["data"]["events_used"] > 0
        check_scores(meta, v1, [event_of(e) for e in events])
        # ... and a crippled one (v1's setting against v2) is rejected (v3); v2 holds the
        # first 7 weeks, so this one takes the 8th (in progress by default) with --until
        last = str(full.last_date.date())
        cli(["retrain", "--registry", str(registry.root), "--events", db, "--until", last,
             *[f"--set={k}={v}" for k, v in CRIPPLED.items()]])  # fmt: skip
        assert registry.state()["version"] == 2
        rejected = registry.version(3).metadata
        assert rejected["decision"]["outcome"] == "rejected"
        assert rejected["decision"]["reason"].startswith(("WAPE", "wQL"))
        assert [e["event"] for e in rejected["events"]] == ["rejected"]
        assert httpx.get(f"{url}/models/current").json()["version"] == 1  # not reloaded yet

        # under load, the service switches to version 2 with no failed request
        statuses = load_while(url, [str(i) for i in full.item_ids], lambda: reload(url, 1, 2))
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        after = forecast(url, item)
        assert after != before
        assert httpx.get(f"{url}/monitoring").json()["model_version"] == "v2"  # its own scores
        assert np.allclose(after, expected_v2(registry, full, events, item), rtol=0, atol=1e-9)

        # rollback returns version 1, and its forecasts are again those of version 1
        cli(["models", "rollback", "--registry", str(registry.root)])
        reload(url, 2, 1)
        assert forecast(url, item) == before
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def check_monitoring(report: dict[str, Any], v1: Any, full: Any, cut: pd.Timestamp) -> None:
    """The monitor's scores of version 1's served forecasts equal a direct computation.

    The 8th held-back week is in progress (the service clock): 7 weeks are closed, and the
    forecasts served at the origin cover the first 6 of them.
    """
    assert report["enabled"] and report["model_version"] == "v1"
    assert report["scored_through"] == full.dates[-2].date().isoformat()
    predicted = v1.predict(STEPS)  # the live forecast equals predict's (one path)
    actual = full.window(cut, STEPS)[["item_id", "date", "sales"]]
    cells = actual.merge(predicted, on=["item_id", "date"])
    y, f = cells["sales"].to_numpy(), cells["LM"].to_numpy()
    low, high = cells[quantile_column("LM", 0.1)], cells[quantile_column("LM", 0.9)]
    longest = report["windows"][-1]["overall"]
    assert longest["cells"] == len(cells) == len(full.item_ids) * STEPS
    assert longest["wape"] == pytest.approx(np.abs(y - f).sum() / np.abs(y).sum(), abs=2e-6)
    assert longest["bias"] == pytest.approx((f - y).sum() / np.abs(y).sum(), abs=2e-6)
    assert longest["coverage80"] == pytest.approx(np.mean((y >= low) & (y <= high)), abs=2e-6)


def event_of(raw: dict[str, Any]) -> Event:
    when = pd.Timestamp(raw["timestamp"]).to_pydatetime()
    return Event(raw["event_id"], raw["item_id"], when, raw["quantity"], raw["price"])


def check_scores(meta: dict[str, Any], v1: Any, events: list[Event]) -> None:
    """The recorded champion WAPE equals one computed here from version 1's own forecast."""
    panel, _ = panel_with_events(v1.panel_, events)
    weeks = meta["backtest"]["periods"]
    cutoff = pd.Timestamp(meta["backtest"]["cutoff"])
    assert cutoff == panel.dates[-weeks - 1]
    future = panel.future_covariates(cutoff, weeks)
    predicted = v1.for_items(panel.until(cutoff)).predict(weeks, future)
    actual = panel.window(cutoff, weeks)
    both = actual.merge(predicted, on=["item_id", "date"])
    y = both["sales"].to_numpy()
    wape = np.abs(y - both["LM"]).sum() / np.abs(y).sum()
    losses = []
    for level in DEFAULT_QUANTILES:
        error = y - both[quantile_column("LM", level)].to_numpy()
        losses.append(2 * np.maximum(level * error, (level - 1) * error).sum() / np.abs(y).sum())
    low, high = both[quantile_column("LM", 0.1)], both[quantile_column("LM", 0.9)]
    assert meta["backtest"]["champion"]["wape"] == pytest.approx(wape, rel=1e-12)
    assert meta["backtest"]["champion"]["wql"] == pytest.approx(np.mean(losses), rel=1e-12)
    assert meta["backtest"]["champion"]["coverage80"] == np.mean((y >= low) & (y <= high))
    assert meta["backtest"]["challenger"]["wape"] <= 0.99 * wape


def expected_v2(
    registry: ModelRegistry, full: Any, events: list[dict[str, Any]], item: str
) -> list[float]:
    """Version 2's forecast from its panel plus the events it did not fold in (the last week)."""
    v2 = load_model(registry.version(2).model_dir)
    panel, _ = panel_with_events(
        v2.panel_,  # type: ignore[attr-defined]
        [event_of(e) for e in events],
        until=full.last_date.date(),
        folded_through=registry.version(2).folded_through,
    )
    frame = v2.for_items(panel).predict(6)  # covariates carried forward, as live
    return list(frame.loc[frame["item_id"] == item, "LM"])


def reload(url: str, previous: int, version: int) -> None:
    answer = httpx.post(f"{url}/models/reload", headers=KEY, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"previous": previous, "version": version, "changed": True}


def load_while(url: str, items: list[str], action: Any, clients: int = 4) -> list[int]:
    """Statuses of forecast requests sent by ``clients`` threads before, during and after."""
    statuses: list[int] = []
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=30) as session:
            while not stop.is_set():
                item = items[int(rng.integers(len(items)))]
                try:
                    statuses.append(session.get(f"/items/{item}/forecast").status_code)
                except httpx.HTTPError:
                    statuses.append(-1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(statuses) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    wait_for(20)  # requests before the switch ...
    started = len(statuses)
    action()
    wait_for(len(statuses) + 20)  # ... and after it
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert started >= 20 and len(statuses) >= started + 20
    return statuses


def test_reload_needs_the_key_and_a_registry(loaded_model: Any, tmp_path: Path) -> None:
    config = ServiceConfig(model_dir="unused", db=str(tmp_path / "e.db"), api_key=API_KEY)
    client = TestClient(create_app(config, model=loaded_model))
    assert client.post("/models/reload").status_code == 401
    answer = client.post("/models/reload", headers=KEY)
    assert answer.status_code == 422
    assert "start it with salesformer serve --registry DIR" in answer.json()["detail"]
    assert client.get("/models/current").json() == {"model": "LM", "version": None}


def test_pointer_watcher_switches_on_promotion(served_model: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote(registry.add(served_model, {}).number, "test")
    registry.add(served_model, {})
    config = ServiceConfig(
        model_dir="", registry=registry.root, db=str(tmp_path / "e.db"), registry_poll=0.1
    )
    with TestClient(create_app(config)) as client:
        assert client.get("/models/current").json()["version"] == 1
        registry.promote(2, "test")
        deadline = time.monotonic() + 20
        while client.get("/models/current").json()["version"] != 2:
            assert time.monotonic() < deadline, "the watcher did not switch within 20 s"
            time.sleep(0.05)
