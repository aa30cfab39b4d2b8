"""Nothing silently wrong in the service (issue 21): personal data, impossible scenarios,
conflicting event ids, ids that cannot be read back, blank new-item texts, security headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def make_client(model: Any, db: str, **settings: Any) -> TestClient:
    config = ServiceConfig(model_dir="unused", db=db, api_key=API_KEY, **settings)
    return TestClient(create_app(config, model=model))


def sale(event_id: str, item: str, when: datetime, quantity: float = 1.0, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "item_id": item,
        "timestamp": when.isoformat(),
        "quantity": quantity,
        **extra,
    }


def after_panel(model: Any, days: int = 1) -> datetime:
    return pd.Timestamp(model.panel_.last_date).to_pydatetime() + timedelta(days=days)


@pytest.fixture
def client(loaded_model: Any, tmp_path: Path) -> TestClient:
    return make_client(loaded_model, str(tmp_path / "e.db"))


# -- personal data ----------------------------------------------------------------------------


def test_events_with_customer_ids_need_the_key(loaded_model: Any, client: TestClient) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    event = sale(
        "o981-1", item, after_panel(loaded_model, 7), 2, order_id="o981", customer_id="c17"
    )
    assert client.post("/events", json={"events": [event]}, headers=KEY).status_code == 200

    public = client.get(f"/items/{item}/history", params={"periods": 2})
    assert public.status_code == 200
    assert public.json()["events"] == [] and public.json()["events_withheld"] is True
    assert "c17" not in public.text and "o981" not in public.text
    assert public.json()["history"][-1]["sales"] == 2.0  # sales totals stay public

    keyed = client.get(f"/items/{item}/history", headers=KEY).json()
    assert keyed["events_withheld"] is False
    assert keyed["events"][0]["customer_id"] == "c17"
    assert keyed["events"][0]["order_id"] == "o981"

    wrong = client.get(f"/items/{item}/history", headers={"X-API-Key": "wrong-key-123"})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "wrong API key; send the server's key in X-API-Key"}
    nothing_asked = client.get(f"/items/{item}/history", params={"events": 0}).json()
    assert nothing_asked["events_withheld"] is False


def test_keyed_reads_refuse_history_without_the_key(loaded_model: Any, tmp_path: Path) -> None:
    client = make_client(loaded_model, str(tmp_path / "e.db"), protect_reads=True)
    item = str(loaded_model.panel_.item_ids[0])
    assert client.get(f"/items/{item}/history").status_code == 401
    assert client.get(f"/items/{item}/history", headers=KEY).json()["events_withheld"] is False


# -- impossible scenarios ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"covariates": {"price": -1.0}}, "body.covariates: price must be >= 0; got -1.0"),
        ({"covariates": {"price": -1e9}}, "price must be >= 0; got -1000000000.0"),
        ({"covariates": {"discount": -0.5}}, "discount must lie in [0, 0.999]"),
        ({"covariates": {"discount": 1.5}}, "discount must lie in [0, 0.999]"),
        ({"covariates": {"discount": -1e9, "price": 3}}, "got -1000000000.0"),
        ({"price_change": -1.0}, "body.price_change: Input should be greater than -1; got -1.0"),
        ({"price_change": -1e9}, "body.price_change"),
    ],
)
def test_whatif_refuses_negative_prices_and_discounts(
    loaded_model: Any, client: TestClient, change: dict[str, Any], message: str
) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    answer = client.post("/whatif", json={"item_id": item, **change}, headers=KEY)
    assert answer.status_code == 422
    assert message in answer.json()["detail"]
    assert "\n" not in answer.json()["detail"]


def test_whatif_revenue_is_never_negative(loaded_model: Any, client: TestClient) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    for change in ({"price_change": -0.999}, {"covariates": {"discount": 0.999, "price": 0.0}}):
        answer = client.post("/whatif", json={"item_id": item, **change}, headers=KEY)
        assert answer.status_code == 200, answer.text
        points = answer.json()["points"]
        assert all(p["revenue_scenario"] >= 0 and p["price_scenario"] >= 0 for p in points)


# -- event ids --------------------------------------------------------------------------------


def test_a_reused_event_id_is_a_conflict(
    loaded_model: Any, store_location: Callable[[], str]
) -> None:
    client = make_client(loaded_model, store_location())
    item = str(loaded_model.panel_.item_ids[0])
    when = after_panel(loaded_model)
    first = sale("e1", item, when, 2.0, price=3.5, order_id="o1", customer_id="c1")
    assert client.post("/events", json={"events": [first]}, headers=KEY).status_code == 200
    # a true resend (the same sale, the zone written differently) is an idempotent duplicate
    resend = {**first, "timestamp": when.isoformat() + "+00:00"}
    again = client.post("/events", json={"events": [resend]}, headers=KEY)
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1}
    forecast = client.get(f"/items/{item}/forecast").json()

    for reused, differs in (
        ({**first, "quantity": 5.0}, "quantity"),
        ({**first, "customer_id": "c2"}, "customer_id"),
        ({**first, "item_id": str(loaded_model.panel_.item_ids[1])}, "item_id"),
        ({**first, "timestamp": (when + timedelta(hours=1)).isoformat()}, "ts"),
        ({**first, "price": None}, "price"),
    ):
        fresh = sale("e2", item, when, 1.0)
        answer = client.post("/events", json={"events": [fresh, reused]}, headers=KEY)
        assert answer.status_code == 409, reused
        assert answer.json() == {
            "detail": f"events[1]: event_id 'e1' is already stored for another sale (it "
            f"differs in {differs}); resend an event unchanged, or give a new sale a new event_id"
        }
    twice = [sale("e3", item, when, 1.0), sale("e3", item, when, 4.0)]
    answer = client.post("/events", json={"events": twice}, headers=KEY)
    assert answer.status_code == 409 and "event_id 'e3'" in answer.json()["detail"]
    assert client.get("/health").json()["events"] == 1  # nothing of the refused batches
    assert client.get(f"/items/{item}/forecast").json() == forecast
    assert 'status="409"} 6' in client.get("/metrics").text


# -- ids --------------------------------------------------------------------------------------

SLASHED = "SKU/00000"  # real SKUs may hold a slash


@pytest.fixture(scope="module")
def slashed_model(loaded_model: Any) -> Any:
    """The served model with its first item renamed to an id holding slashes."""
    import dataclasses

    import numpy as np

    panel = loaded_model.panel_
    old = str(panel.item_ids[0])

    def rename(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out["item_id"] = out["item_id"].astype(str).replace({old: SLASHED})
        return out

    model = loaded_model.clone()
    vars(model).update({k: v for k, v in vars(loaded_model).items() if k.endswith("_")})
    model.panel_ = dataclasses.replace(panel, sales=rename(panel.sales), items=rename(panel.items))
    model.item_ids_ = np.array([SLASHED if str(i) == old else str(i) for i in model.item_ids_])
    return model


def test_an_id_with_a_slash_reads_back(slashed_model: Any, tmp_path: Path) -> None:
    client = make_client(slashed_model, str(tmp_path / "e.db"))
    found = client.get("/items", params={"search": "SKU/0"}).json()["items"]
    assert [i["item_id"] for i in found] == [SLASHED]
    encoded = "SKU%2F00000"
    when = after_panel(slashed_model, 7)
    event = sale("s1", SLASHED, when, 3.0, price=2.0)
    assert client.post("/events", json={"events": [event]}, headers=KEY).status_code == 200
    for path in (f"/items/{encoded}/history", f"/items/{SLASHED}/history"):
        history = client.get(path, headers=KEY)
        assert history.status_code == 200, history.text
        assert history.json()["item_id"] == SLASHED
        assert history.json()["events"][0]["event_id"] == "s1"
        last = {"date": when.date().isoformat(), "sales": 3.0, "in_stock": True}
        assert history.json()["history"][-1] == last
    forecast = client.get(f"/items/{encoded}/forecast").json()
    assert forecast["item_id"] == SLASHED and forecast["origin"] == when.date().isoformat()
    plan = client.get(f"/items/{encoded}/plan", params={"on_hand": 1, "lead_time": 1})
    assert plan.status_code == 200 and plan.json()["item_id"] == SLASHED
    whatif = client.post("/whatif", json={"item_id": SLASHED, "price_change": 0.1}, headers=KEY)
    assert whatif.status_code == 200 and whatif.json()["item_id"] == SLASHED
    assert client.get("/items/SKU%2F99999/forecast").status_code == 404
    assert 'route="/items/{item_id}/forecast",status="200"} 1' in client.get("/metrics").text


@pytest.mark.parametrize(
    ("item_id", "message"),
    [
        ("", "String should have at least 1 character"),
        ("   ", "an id must not be blank; got '   '"),
        ("\t", "an id must not be blank; got '\\t'"),
        ("SKU\t1", "U+0009 (a control character) at position 3"),
        ("SKU\u200b1", "U+200B (ZERO WIDTH SPACE) at position 3; remove it"),
        ("\ufeffSKU1", "U+FEFF (ZERO WIDTH NO-BREAK SPACE) at position 0"),
        ("SKU\u202e1", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("SKU\u20601", "U+2060 (WORD JOINER)"),
        ("SKU\u20281", "U+2028 (LINE SEPARATOR)"),
        ("SKU\ue0001", "U+E000 (category Co) at position 3"),
        ("SKU\x851", "U+0085"),
        ("x" * 129, "String should have at most 128 characters"),
    ],
)
def test_blank_and_invisible_ids_are_refused(
    loaded_model: Any, client: TestClient, item_id: str, message: str
) -> None:
    when = after_panel(loaded_model)
    known = str(loaded_model.panel_.item_ids[0])
    for field, event in (
        ("item_id", sale("ok-1", item_id, when)),
        ("event_id", sale(item_id, known, when)),
        ("order_id", sale("ok-2", known, when, order_id=item_id)),
        ("customer_id", sale("ok-3", known, when, customer_id=item_id)),
    ):
        answer = client.post("/events", json={"events": [event]}, headers=KEY)
        assert answer.status_code == 422, (field, item_id)
        detail = answer.json()["detail"]
        assert detail.startswith(f"invalid request: body.events.0.{field}: ") and message in detail
        assert "\n" not in detail
    new = client.post("/forecast/new-item", json={"item_id": item_id, "text": "A mug"}, headers=KEY)
    assert new.status_code == 422 and message in new.json()["detail"]
    whatif = client.post("/whatif", json={"item_id": item_id, "price_change": 0.1}, headers=KEY)
    assert whatif.status_code == 422 and message in whatif.json()["detail"]
    for route in ("forecast", "history", "plan?on_hand=1&lead_time=1"):
        read = client.get(f"/items/{quote(item_id, safe='')}/{route}")
        assert read.status_code == 422, route
        assert read.json()["detail"].startswith("invalid request: path.item_id: ")
        assert message in read.json()["detail"]
    assert client.get("/health").json()["events"] == 0


def test_the_schemas_id_pattern_is_the_rule() -> None:
    """The OpenAPI pattern refuses exactly what check_id refuses (surrogates aside)."""
    import re
    import sys
    import unicodedata

    from salesformer.service.schemas import ID_PATTERN, INVISIBLE_CLASS, check_id

    invisible = re.compile(f"[{INVISIBLE_CLASS}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue
        refused = unicodedata.category(char) in {"Cc", "Cf", "Co", "Zl", "Zp"}
        assert bool(invisible.match(char)) == refused, hex(code)
    pattern = re.compile(ID_PATTERN)
    for text in ("SKU/1", "a b", " x ", "é", "\u00a0x", "SKU\u200b1", "  ", "\u3000"):
        try:
            accepted = check_id(text) == text
        except ValueError:
            accepted = False
        assert bool(pattern.match(text)) == accepted, ascii(text)


# -- security headers -------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(loaded_model: Any, tmp_path: Path) -> None:
    from salesformer.service.guards import API_CSP, DASHBOARD_CSP

    client = make_client(loaded_model, str(tmp_path / "e.db"), max_body_bytes=2048)
    item = str(loaded_model.panel_.item_ids[0])
    answers = {
        "dashboard": client.get("/"),
        "script": client.get("/static/app.js"),
        "plotly": client.get("/static/plotly.min.js"),
        "json": client.get(f"/items/{item}/forecast"),
        "metrics": client.get("/metrics"),
        "schema": client.get("/openapi.json"),
        "404": client.get("/items/NOPE/forecast"),
        "no route": client.get("/nowhere"),
        "422": client.get(f"/items/{item}/forecast", params={"horizon": 0}),
        "401": client.post("/events", json={"events": []}),
        "413": client.post("/events", content=b"x" * 4096, headers=KEY),
    }
    assert answers["413"].status_code == 413 and answers["401"].status_code == 401
    for name, answer in answers.items():
        headers = answer.headers
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["referrer-policy"] == "no-referrer", name
        expected = DASHBOARD_CSP if name == "dashboard" else API_CSP
        assert headers["content-security-policy"] == expected, name
    # the dashboard runs only scripts of its own: no inline script that the policy would block
    page = answers["dashboard"].text
    assert "script-src 'self';" in DASHBOARD_CSP and "unsafe-eval" not in DASHBOARD_CSP
    scripts = page.count("<script")
    assert scripts == page.count('<script src="/static/') == 2
    assert re.search(r"<[^>]*\son\w+\s*=", page) is None  # no inline event handlers


# -- new items --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"item_id": "N1"}, "body.text: Field required"),
        ({"item_id": "N1", "text": ""}, "body.text: String should have at least 1 character"),
        ({"item_id": "N1", "text": "   "}, "body.text: text must describe the product"),
        ({"item_id": "N1", "text": "\n\t "}, "got '\\n\\t '"),
        ({"item_id": "N1", "text": "\u200b\u200b"}, "got '\\u200b\\u200b'"),
        ({"item_id": "N1", "text": None}, "body.text: Input should be a valid string; got None"),
        ({"item_id": "N1", "text": 5}, "body.text: Input should be a valid string; got 5"),
    ],
)
def test_new_items_need_a_text(client: TestClient, body: dict[str, Any], message: str) -> None:
    answer = client.post("/forecast/new-item", json=body, headers=KEY)
    assert answer.status_code == 422
    assert message in answer.json()["detail"]
    assert "\n" not in answer.json()["detail"]


def test_an_internal_error_is_one_line_with_the_headers(loaded_model: Any, tmp_path: Path) -> None:
    from salesformer.service.guards import API_CSP

    config = ServiceConfig(model_dir="unused", db=str(tmp_path / "e.db"), api_key=API_KEY)
    app = create_app(config, model=loaded_model)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "internal error: the request was not completed; the server log has why"
    }
    assert answer.headers["content-security-policy"] == API_CSP
    assert answer.headers["x-frame-options"] == "DENY"
