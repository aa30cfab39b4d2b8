"""The real-time service: live state equals a refit-free predict, the store, the API, security.

Store and API tests run on SQLite and on a real PostgreSQL server (see service_support).
"""

from __future__ import annotations

import json
import subprocess
import sys
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
from salesformer.data.contract import DATE, ITEM_ID, SALES, validate_panel
from salesformer.errors import ConfigError
from salesformer.service.app import create_app
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.history import PeriodGrid
from salesformer.service.live import LiveForecaster
from salesformer.service.store import Event, EventIdConflictError, open_store

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"

KEY = {"X-API-Key": API_KEY}
JSON = {"Content-Type": "application/json"}
LEVELS = (0.1, 0.5, 0.9)


def make_client(model: Any, db: str, **settings: Any) -> TestClient:
    config = ServiceConfig(model_dir="unused", db=db, api_key=API_KEY, **settings)
    return TestClient(create_app(config, model=model))


def event_json(event_id: str, item: str, when: datetime, quantity: float, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "item_id": item,
        "timestamp": when.isoformat(),
        "quantity": quantity,
        **extra,
    }


def last_date(model: Any) -> datetime:
    return pd.Timestamp(model.panel_.last_date).to_pydatetime()


# -- the live state ---------------------------------------------------------------------------


def test_period_grid_puts_events_in_the_panel_week() -> None:
    grid = PeriodGrid("W-MON", datetime(2022, 1, 3).date())
    assert grid.index(datetime(2022, 1, 3, 0, 0)) == 0
    assert grid.index(datetime(2022, 1, 9, 23, 59)) == 0
    assert grid.index(datetime(2022, 1, 10)) == 1
    assert grid.index(datetime(2022, 1, 2)) == -1
    assert grid.date_of(5).isoformat() == "2022-02-07"
    months = PeriodGrid("MS", datetime(2022, 11, 1).date())
    assert months.index(datetime(2023, 2, 27)) == 3
    assert months.date_of(3).isoformat() == "2023-02-01"
    with pytest.raises(ConfigError, match="frequency"):
        PeriodGrid("QS", datetime(2022, 1, 1).date())


def test_without_events_the_live_forecast_is_the_models_predict(
    loaded_model: Any, tmp_path: Path
) -> None:
    service = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), loaded_model)
    expected = loaded_model.predict(4, quantiles=LEVELS)
    for item in service.live.item_ids[:4]:
        got = service.forecast(item, 4, LEVELS)
        rows = expected[expected[ITEM_ID] == item]
        assert list(got.dates) == list(rows[DATE])
        values = np.column_stack([got.point, got.quantiles])
        np.testing.assert_allclose(values, rows.iloc[:, 2:].to_numpy(), rtol=1e-4, atol=1e-4)


def test_events_give_the_forecast_of_a_panel_with_those_sales(
    loaded_model: Any, tmp_path: Path
) -> None:
    """Events in the last week and two weeks later = predict on the panel with them added."""
    service = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), loaded_model)
    item = service.live.item_ids[2]
    last = last_date(loaded_model)
    service.ingest(
        [
            Event("a", item, last + timedelta(days=3), 6.0, 99.0),
            Event("b", item, last + timedelta(days=15), 4.0, 7.5),
            Event("c", item, last + timedelta(days=16), 3.0, 8.5),
        ]
    )
    got = service.forecast(item, 3, LEVELS)

    sales = loaded_model.panel_.sales.copy()
    sales.loc[(sales[ITEM_ID] == item) & (sales[DATE] == last), SALES] += 6.0
    tail = sales[sales[DATE] == last]
    extra = []
    for week in (1, 2):
        rows = tail.copy()
        rows[DATE] = last + timedelta(days=7 * week)
        rows[SALES] = 0.0
        if week == 2:  # the events' week: their sales and their mean price
            rows.loc[rows[ITEM_ID] == item, SALES] = 7.0
            rows.loc[rows[ITEM_ID] == item, "price"] = 8.0
        extra.append(rows)
    panel = validate_panel(
        pd.concat([sales, *extra], ignore_index=True),
        loaded_model.panel_.items,
        freq=loaded_model.panel_.freq,
        known_future=loaded_model.panel_.known_future,
    )
    refit_free = loaded_model.clone()
    vars(refit_free).update(
        {k: v for k, v in vars(loaded_model).items() if k.endswith("_") and k != "panel_"}
    )
    refit_free.panel_ = panel
    expected = refit_free.predict(3, quantiles=LEVELS)
    rows = expected[expected[ITEM_ID] == item]
    assert list(got.dates) == list(rows[DATE])
    np.testing.assert_allclose(
        np.column_stack([got.point, got.quantiles]),
        rows.iloc[:, 2:].to_numpy(),
        rtol=1e-4,
        atol=1e-4,
    )
    before = loaded_model.predict(3, quantiles=LEVELS)
    assert not np.allclose(got.point, before[before[ITEM_ID] == item]["LM"].to_numpy())


def test_a_known_item_forecast_runs_no_encoder(
    loaded_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), loaded_model)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the encoder ran for a known item")

    monkeypatch.setattr(type(loaded_model), "_encode_texts", forbidden)
    import salesformer.models.lm.forecaster as lm_module

    monkeypatch.setattr(lm_module, "shared_encoder", forbidden)
    assert len(service.forecast(service.live.item_ids[0], 2).point) == 2


def test_cached_forecasts_follow_new_events(loaded_model: Any, tmp_path: Path) -> None:
    cached = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "a.db")), loaded_model)
    plain = SalesService.start(
        ServiceConfig("unused", db=str(tmp_path / "b.db"), forecast_cache=0), loaded_model
    )
    item = cached.live.item_ids[1]
    first = cached.forecast(item, 3, LEVELS)
    assert cached.forecast(item, 3, LEVELS) is first
    event = Event("c1", item, last_date(loaded_model) + timedelta(days=1), 25.0)
    for service in (cached, plain):
        service.ingest([event])
    after = cached.forecast(item, 3, LEVELS)
    assert after is not first and after.point[0] != first.point[0]
    np.testing.assert_array_equal(after.point, plain.forecast(item, 3, LEVELS).point)


def test_replayed_events_before_the_models_first_date_are_skipped(
    loaded_model: Any, tmp_path: Path
) -> None:
    """A store written under another model can hold events before this one's first date."""
    db = str(tmp_path / "e.db")
    first = pd.Timestamp(loaded_model.panel_.first_date).to_pydatetime()
    store = open_store(db)
    item = str(loaded_model.panel_.item_ids[0])
    store.add_events([Event("old", item, first - timedelta(days=8), 500.0, 1.0)])
    store.close()
    service = SalesService.start(ServiceConfig("unused", db=db), loaded_model)
    assert service.history.snapshot(item) == (None, service.live.wide.n_history - 1)
    expected = loaded_model.predict(3, quantiles=LEVELS)
    rows = expected[expected[ITEM_ID] == item]
    np.testing.assert_allclose(
        service.forecast(item, 3, LEVELS).point, rows["LM"].to_numpy(), rtol=1e-4, atol=1e-4
    )


def test_whatif_labels_unsorted_levels_by_their_value(loaded_model: Any, tmp_path: Path) -> None:
    from salesformer.decisions.whatif import Scenario

    service = SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), loaded_model)
    item = service.live.item_ids[0]
    scenario = Scenario(price_change=-0.2)
    ordered = service.what_if(scenario, item, 3, (0.1, 0.5, 0.9))
    shuffled = service.what_if(scenario, item, 3, (0.9, 0.1, 0.5))
    pd.testing.assert_frame_equal(shuffled[ordered.columns], ordered)
    assert (ordered["scenario-q10"] <= ordered["scenario-q90"]).all()


# -- the store --------------------------------------------------------------------------------


def test_store_keeps_each_event_once_and_batches_whole(
    store_location: Callable[[], str],
) -> None:
    location = store_location()
    store = open_store(location)
    when = datetime(2023, 1, 2, 10, 30)
    first = [Event("e1", "A", when, 2.0, 3.5, "o1", "c1"), Event("e2", "B", when, 1.0)]
    assert [e.event_id for e in store.add_events(first)] == ["e1", "e2"]
    again = [Event("e2", "B", when, 1.0), Event("e3", "A", when, -1.0), Event("e3", "A", when, -1)]
    assert [e.event_id for e in store.add_events(again)] == ["e3"]
    assert store.count_events() == 3
    for reused in ([Event("e4", "A", when, 1.0), Event("e1", "A", when, 2.0, 3.5, "o1", "c2")],
                   [Event("e4", "A", when, 1.0), Event("e4", "A", when, 2.0)]):  # fmt: skip
        with pytest.raises(EventIdConflictError, match=r"events\[1\]: event_id 'e.' is already"):
            store.add_events(reused)
        assert store.count_events() == 3  # the batch is rolled back whole
    assert [e.event_id for e in store.iter_events()] == ["e1", "e2", "e3"]
    assert store.latest_events("A", 5)[0] == Event("e3", "A", when, -1.0)
    assert store.latest_events("A", 5)[1] == first[0]
    store.close()
    reopened = open_store(location)
    assert reopened.count_events() == 3
    reopened.close()


def test_unknown_db_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        open_store("mysql://localhost/x")


# -- the API ----------------------------------------------------------------------------------


def test_events_move_the_forecast_and_are_idempotent(
    loaded_model: Any, store_location: Callable[[], str]
) -> None:
    client = make_client(loaded_model, store_location())
    item = str(loaded_model.panel_.item_ids[1])
    before = client.get(f"/items/{item}/forecast", params={"horizon": 3}).json()
    when = last_date(loaded_model) + timedelta(days=2)
    batch = {"events": [event_json(f"s{i}", item, when, 30.0, price=5.0) for i in range(3)]}
    answer = client.post("/events", json=batch, headers=KEY)
    assert answer.status_code == 200
    assert answer.json() == {"received": 3, "stored": 3, "duplicates": 0}
    after = client.get(f"/items/{item}/forecast", params={"horizon": 3}).json()
    assert after["points"][0]["forecast"] > before["points"][0]["forecast"]
    assert client.post("/events", json=batch, headers=KEY).json()["duplicates"] == 3
    again = client.get(f"/items/{item}/forecast", params={"horizon": 3}).json()
    assert again == after
    history = client.get(f"/items/{item}/history", params={"periods": 2}, headers=KEY).json()
    assert history["history"][-1]["sales"] == pytest.approx(
        float(loaded_model.panel_.sales.query(f"item_id == '{item}'")[SALES].iloc[-1]) + 90.0
    )
    assert [e["event_id"] for e in history["events"]] == ["s2", "s1", "s0"]
    metrics = client.get("/metrics").text
    assert "salesformer_events_ingested_total 3" in metrics
    assert "salesformer_events_duplicate_total 3" in metrics
    assert 'route="/items/{item_id}/forecast",status="200"} 3' in metrics


def test_forecast_shape_quantiles_and_errors(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[0])
    body = client.get(f"/items/{item}/forecast", params={"quantiles": "0.9,0.05"}).json()
    assert body["quantiles"] == [0.05, 0.9]
    assert len(body["points"]) == 6
    assert all(p["quantiles"][0] <= p["forecast"] <= p["quantiles"][1] for p in body["points"])
    for params, message in (
        ({"horizon": 7}, "query.horizon: Input should be less than or equal to 6"),
        ({"quantiles": "0.5,abc"}, "query.quantiles: String should match pattern"),
        ({"quantiles": "1.5"}, "query.quantiles"),
        ({"horizon": 0}, "query.horizon"),
    ):
        answer = client.get(f"/items/{item}/forecast", params=params)
        assert answer.status_code == 422, params
        assert message in answer.json()["detail"]
    assert client.get("/items/NOPE/forecast").status_code == 404
    found = client.get("/items", params={"search": item.lower()}).json()
    assert found["items"][0]["item_id"] == item


def test_a_bad_event_refuses_the_whole_batch(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[0])
    when = last_date(loaded_model)
    good = event_json("ok", item, when, 1.0)
    for bad, message in (
        (event_json("x", item, when, float("nan")), "quantity"),
        ({**good, "event_id": "y", "price": -1}, "price"),
        ({**good, "event_id": ""}, "event_id"),
        ({**good, "event_id": "z", "unexpected": 1}, "unexpected"),
        (event_json("w", item, datetime(1999, 1, 4), 1.0), "before the model's first date"),
        (event_json("v", item, datetime(2190, 1, 4), 1.0), "in the future"),
    ):
        body = json.dumps({"events": [good, bad]})  # json.dumps writes NaN, httpx would not
        answer = client.post("/events", content=body, headers={**KEY, **JSON})
        assert answer.status_code == 422, bad
        assert message in answer.json()["detail"]
    assert client.get("/health").json()["events"] == 0
    assert client.post("/events", json={"events": []}, headers=KEY).status_code == 422
    assert client.post("/events", content=b"{not json", headers={**KEY, **JSON}).status_code == 422


def test_new_item_forecast_from_text(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    body = {"item_id": "NEW1", "text": "Red ceramic mug", "price": 6.5, "launch_date": "2023-06-05"}
    answer = client.post("/forecast/new-item", json=body, headers=KEY)
    assert answer.status_code == 200
    points = answer.json()["points"]
    assert [p["date"] for p in points[:2]] == ["2023-06-05", "2023-06-12"]
    assert client.post("/forecast/new-item", json=body).status_code == 401
    short = client.post("/forecast/new-item", json={**body, "text": ""}, headers=KEY)
    assert short.status_code == 422


def test_reorder_plan_from_the_live_forecast(loaded_model: Any, tmp_path: Path) -> None:
    from salesformer.decisions.inventory import (
        PLAN_QUANTILES,
        ItemPolicy,
        PlanSettings,
        plan_inventory,
    )

    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[3])
    params = {"on_hand": 2, "lead_time": 2, "review_period": 1, "pack_size": 5}
    plan = client.get(f"/items/{item}/plan", params=params).json()
    policy = ItemPolicy(item_id=item, on_hand=2, lead_time=2, review_period=1, pack_size=5)
    forecasts = loaded_model.predict(loaded_model.horizon, quantiles=PLAN_QUANTILES)
    expected = plan_inventory(forecasts, [policy], PlanSettings()).iloc[0]
    assert plan["order_up_to"] == pytest.approx(expected["order_up_to"], abs=1.0)
    assert plan["order_qty"] % 5 == 0 and plan["reason"]
    assert plan["order_value"] is None
    stocked = client.get(f"/items/{item}/plan", params={**params, "on_hand": 1e6}).json()
    assert stocked["order_qty"] == 0 and stocked["reason"].startswith("no order")
    too_long = client.get(
        f"/items/{item}/plan", params={**params, "lead_time": 5, "review_period": 2}
    )
    assert too_long.status_code == 422
    assert "longer than the model's horizon" in too_long.json()["detail"]


def test_whatif_matches_the_library_and_reads_promotion_copy(
    loaded_model: Any, tmp_path: Path
) -> None:
    from salesformer.decisions.whatif import Scenario, what_if

    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[2])
    body = {"item_id": item, "price_change": -0.2, "quantiles": [0.1, 0.5, 0.9]}
    answer = client.post("/whatif", json=body, headers=KEY)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    expected = what_if(loaded_model, Scenario(price_change=-0.2), loaded_model.horizon)
    expected = expected[expected["item_id"] == item].reset_index(drop=True)
    assert [p["date"] for p in got["points"]] == [
        d.date().isoformat() for d in pd.to_datetime(expected["date"])
    ]
    for column in ("baseline", "scenario", "uplift_units", "price_scenario", "uplift_revenue"):
        values = [p[column] for p in got["points"]]
        assert values == pytest.approx(expected[column].to_list(), rel=1e-4, abs=1e-6), column
    assert got["uplift_units"] == pytest.approx(expected["uplift_units"].sum(), rel=1e-4)
    assert [p["price_scenario"] / p["price_baseline"] for p in got["points"]] == pytest.approx(
        [0.8] * len(got["points"])
    )

    promoted = client.post(
        "/whatif", json={"item_id": item, "promotion": "Half price, today only"}, headers=KEY
    ).json()
    library = what_if(
        loaded_model,
        Scenario(
            changes=pd.DataFrame({"item_id": [item], "promotion": ["Half price, today only"]})
        ),
        loaded_model.horizon,
    )
    library = library[library["item_id"] == item]
    assert [p["scenario"] for p in promoted["points"]] == pytest.approx(
        library["scenario"].to_list(), rel=1e-4
    )
    # the live path reads a text when given one (this tiny model truncates the promotion away)
    live = LiveForecaster(loaded_model)
    clock = live.wide.n_history - 1
    own = live.forecast(item, None, clock, 4, LEVELS)
    other = live.forecast(item, None, clock, 4, LEVELS, text="Garden hose, green, 20 m")
    assert not np.allclose(own.point, other.point)


def test_whatif_refuses_what_it_cannot_read(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[0])
    assert client.post("/whatif", json={"item_id": item, "price_change": -0.1}).status_code == 401
    unknown = client.post("/whatif", json={"item_id": "NOPE", "price_change": -0.1}, headers=KEY)
    assert unknown.status_code == 404
    nothing = client.post("/whatif", json={"item_id": item}, headers=KEY)
    assert nothing.status_code == 422 and "changes nothing" in nothing.json()["detail"]
    column = client.post(
        "/whatif", json={"item_id": item, "covariates": {"weather": 3.0}}, headers=KEY
    )
    assert column.status_code == 422 and "weather" in column.json()["detail"]


# -- security ---------------------------------------------------------------------------------


def test_writes_need_the_right_key(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    item = str(loaded_model.panel_.item_ids[0])
    batch = {"events": [event_json("k1", item, last_date(loaded_model), 1.0)]}
    assert client.post("/events", json=batch).status_code == 401
    wrong = client.post("/events", json=batch, headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 403
    assert client.get("/health").json()["events"] == 0
    keyless = TestClient(
        create_app(ServiceConfig("unused", db=str(tmp_path / "k.db")), model=loaded_model)
    )
    refused = keyless.post("/events", json=batch, headers=KEY)
    assert refused.status_code == 403
    assert "no API key" in refused.json()["detail"]


def test_reads_can_be_keyed(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"), protect_reads=True)
    item = str(loaded_model.panel_.item_ids[0])
    assert client.get(f"/items/{item}/forecast").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get(f"/items/{item}/forecast", headers=KEY).status_code == 200
    assert client.get("/health").status_code == 200


def test_oversized_bodies_get_413(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"), max_body_bytes=4096)
    item = str(loaded_model.panel_.item_ids[0])
    when = last_date(loaded_model)
    batch = {"events": [event_json(f"b{i}", item, when, 1.0) for i in range(100)]}
    answer = client.post("/events", json=batch, headers=KEY)
    assert answer.status_code == 413
    assert "limit is 4096" in answer.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post("/events", content=chunks(), headers=KEY)
    assert streamed.status_code == 413
    assert client.get("/health").json()["events"] == 0
    counted = client.get("/metrics").text
    assert 'salesformer_requests_total{method="POST",route="unmatched",status="413"} 1' in counted


@pytest.mark.parametrize(
    "item_id",
    ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fmodel%2fconfig.json", "a\\..\\b"],
)
def test_item_ids_never_reach_the_filesystem(
    loaded_model: Any, tmp_path: Path, item_id: str
) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    for path in (f"/items/{item_id}/forecast", f"/items/{item_id}/history", f"/static/{item_id}"):
        answer = client.get(path)
        assert answer.status_code in (404, 422), path
        assert "root:" not in answer.text and '"model"' not in answer.text
    product = {"item_id": item_id, "text": "A new product", "price": 2.0}
    assert client.post("/items", json=product, headers=KEY).status_code == 200  # a new product
    stored = client.post(
        "/events",
        json={"events": [event_json("p1", item_id, last_date(loaded_model), 1.0)]},
        headers=KEY,
    )
    assert stored.status_code == 200  # an id is data: stored as text, never a path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.db", "e.db-shm", "e.db-wal"]


def test_dashboard_page_and_its_assets_are_served(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"))
    page = client.get("/")
    assert page.status_code == 200
    assert '<script src="/static/plotly.min.js">' in page.text
    script = client.get("/static/plotly.min.js")
    assert script.status_code == 200 and len(script.content) > 1_000_000
    assert "Plotly.react" in client.get("/static/app.js").text
    assert client.get("/static/index.html").status_code == 404


# -- the command ------------------------------------------------------------------------------


def test_serve_errors_are_one_line(served_model: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run(["serve", "--model", str(tmp_path / "missing")])
    assert info.value.code == 2
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    with pytest.raises(SystemExit) as info:
        run(["serve", "--model", str(served_model), "--api-key-file", str(key_file)])
    assert info.value.code == 2
    key_file.write_bytes(b"\xff\xfe key")
    with pytest.raises(SystemExit) as info:
        run(["serve", "--model", str(served_model), "--api-key-file", str(key_file)])
    assert info.value.code == 2


@pytest.mark.parametrize("key", ["clé-secrète-2024", "tab\there-key", "short"])
def test_api_keys_a_header_cannot_carry_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="API key must"):
        ServiceConfig("unused", api_key=key).check()


def test_models_without_a_live_path_are_refused(loaded_model: Any, tmp_path: Path) -> None:
    from salesformer.models.registry import make_model

    baseline = make_model("SeasonalNaive").fit(loaded_model.panel_)
    with pytest.raises(ConfigError, match="LM forecaster only"):
        SalesService.start(ServiceConfig("unused", db=str(tmp_path / "e.db")), baseline)


def test_importing_the_service_cli_stays_light() -> None:
    probe = (
        "import sys, salesformer.cli.serve, salesformer.cli.main; "
        "print(','.join(m for m in ('torch', 'transformers', 'fastapi') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
