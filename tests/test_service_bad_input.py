"""Bad input at every endpoint, as a careless or hostile client sends it.

Each case asserts the status code, a one-line ``{"detail": ...}`` that names the problem, and
that nothing was stored: the store's event count and the live state are unchanged. JSON has
neither NaN nor infinities, but clients send them anyway (``NaN``, ``Infinity``, ``1e400``,
or as strings), so the cases hold raw bodies as well as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}
AS_JSON = {**KEY, "Content-Type": "application/json"}
ITEM = "SKU00001"  # an item of the served model (a panel from 2022-01-03 to 2023-02-20)
WHEN = "2023-02-21T10:00:00"  # in the panel's last week
GOOD = {"event_id": "good-1", "item_id": ITEM, "timestamp": WHEN, "quantity": 2.0, "price": 3.0}
SCHEMA = "see /openapi.json for the schema"


@pytest.fixture(scope="module")
def api(loaded_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module; one event already stored (to resend and to conflict with)."""
    assert ITEM in {str(i) for i in loaded_model.panel_.item_ids}
    assert str(loaded_model.panel_.last_date.date()) == "2023-02-20"
    db = tmp_path_factory.mktemp("bad-input") / "events.db"
    config = ServiceConfig("unused", db=str(db), api_key=API_KEY, max_body_bytes=2**20)
    with TestClient(create_app(config, model=loaded_model)) as client:
        stored = client.post("/events", json={"events": [GOOD]}, headers=KEY)
        assert stored.json()["stored"] == 1
        yield client


def event(**changes: Any) -> dict[str, Any]:
    """A valid event with some fields changed (``None`` removes a field)."""
    out = {**GOOD, "event_id": "new-1", **changes}
    return {k: v for k, v in out.items() if v is not None}


def events_body(*items: Any) -> str:
    """A raw body: ``json.dumps`` writes NaN and Infinity, which a strict client would not."""
    return json.dumps({"events": list(items)})


def raw(body: str, number: str) -> str:
    """The event body with its quantity replaced by a literal token (``1e400``, ``NaN``...)."""
    return body.replace('"quantity": 2.0', f'"quantity": {number}')


EVENTS_422 = [
    # the body itself
    ("empty body", b"", "body: Field required"),
    ("null", b"null", "body: Input should be a valid dictionary"),
    ("a list", b"[]", "body: Input should be a valid dictionary"),
    ("a string", b'"events"', "body: Input should be a valid dictionary"),
    ("not json", b"{not json", "JSON decode error"),
    ("no events", b"{}", "body.events: Field required"),
    ("events empty", b'{"events": []}', "body.events: List should have at least 1 item"),
    ("events an object", b'{"events": {}}', "body.events: Input should be a valid list"),
    ("event null", b'{"events": [null]}', "body.events.0: Input should be a valid dictionary"),
    ("event a list", b'{"events": [[]]}', "body.events.0: Input should be a valid dictionary"),
    ("extra field", events_body(event(extra=1)), "body.events.0.extra: Extra inputs"),
    ("extra top field", json.dumps({"events": [event()], "x": 1}), "body.x: Extra inputs"),
    # numbers
    ("quantity NaN", events_body(event(quantity=float("nan"))), "finite number"),
    ("quantity Infinity", events_body(event(quantity=float("inf"))), "finite number"),
    ("quantity -Infinity", events_body(event(quantity=float("-inf"))), "finite number"),
    ("quantity 1e400", raw(events_body(event()), "1e400"), "finite number; got inf"),
    ("quantity huge int", raw(events_body(event()), "9" * 400), "valid number"),
    ("quantity 'Infinity'", events_body(event(quantity="Infinity")), "valid number"),
    ("quantity '5'", events_body(event(quantity="5")), "valid number; got '5'"),
    ("quantity true", events_body(event(quantity=True)), "valid number; got True"),
    ("quantity 1e7", events_body(event(quantity=1e7)), "less than or equal to 1000000"),
    ("quantity missing", events_body(event(quantity=None)), "quantity: Field required"),
    ("price negative", events_body(event(price=-0.01)), "price: Input should be greater"),
    ("price NaN", events_body(event(price=float("nan"))), "price: Input should be a finite"),
    ("price 1e10", events_body(event(price=1e10)), "price: Input should be less than"),
    ("price 'NaN'", events_body(event(price="NaN")), "price: Input should be a valid number"),
    # timestamps
    ("timestamp a number", events_body(event(timestamp=1700000000)), "ISO 8601 text"),
    ("timestamp empty", events_body(event(timestamp="")), "timestamp: Input should be a valid"),
    ("timestamp words", events_body(event(timestamp="yesterday")), "got 'yesterday'"),
    ("timestamp 13th month", events_body(event(timestamp="2023-13-01")), "got '2023-13-01'"),
    ("timestamp year 1", events_body(event(timestamp="0001-01-01T00:00:00")), "year must be in"),
    ("timestamp year 9999", events_body(event(timestamp="9999-12-31")), "year must be in"),
    ("timestamp before panel", events_body(event(timestamp="2021-12-31")), "before the model's"),
    ("timestamp next year", events_body(event(timestamp="2199-01-01")), "in the future"),
    ("timestamp null", events_body(event(timestamp=None)), "timestamp: Field required"),
    # ids
    ("event_id a number", events_body(event(event_id=7)), "valid string; got 7"),
    ("event_id null", events_body({**event(), "event_id": None}), "valid string; got None"),
    ("item_id blank", events_body(event(item_id=" ")), "an id must not be blank"),
    ("item_id newline", events_body(event(item_id="A\nB")), "U+000A"),
    ("item_id NUL", events_body(event(item_id="A\x00")), "U+0000"),
    ("item_id zero width", events_body(event(item_id="SKU\u200d1")), "U+200D"),
    ("item_id bidi", events_body(event(item_id="\u2066SKU1")), "U+2066"),
    ("item_id tag chars", events_body(event(item_id="SKU\U000e0041")), "U+E0041"),
    ("item_id too long", events_body(event(item_id="x" * 129)), "at most 128 characters"),
    ("item_id a list", events_body(event(item_id=[ITEM])), "valid string"),
    ("lone surrogate", events_body(event(item_id="\ud800")), "item_id"),
    ("customer_id blank", events_body(event(customer_id="")), "at least 1 character"),
    ("order_id zero width", events_body(event(order_id="o\u200b1")), "U+200B"),
    # a batch with one bad event is refused whole
    ("second bad", events_body(event(), event(event_id="x", quantity="1")), "events.1.quantity"),
    ("5001 events", events_body(*[event(event_id=f"b{i}") for i in range(5001)]), "at most 5000"),
]


@pytest.mark.parametrize(("name", "body", "fragment"), EVENTS_422, ids=[c[0] for c in EVENTS_422])
def test_bad_events_are_refused_whole(
    api: TestClient, name: str, body: str | bytes, fragment: str
) -> None:
    assert_refused(api, "POST", "/events", 422, fragment, content=body, headers=AS_JSON)


@pytest.mark.parametrize(
    ("name", "headers", "body", "status", "fragment"),
    [
        ("no key", {"X-API-Key": ""}, events_body(event()), 401, "missing API key"),
        ("not utf-8", {}, b"\xff\xfe\x00", 400, "cannot be parsed as JSON"),
        ("wrong key", {"X-API-Key": "x" * 20}, events_body(event()), 403, "wrong API key"),
        ("key with spaces", {"X-API-Key": f" {API_KEY}x"}, events_body(event()), 403, "wrong"),
        ("text/plain", {"Content-Type": "text/plain"}, events_body(event()), 422, "dictionary"),
        ("nested 100k deep", {}, '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "JSON"),
        ("2 MB", {}, "x" * (2**21), 413, "request body too large: 2097152 bytes"),
        (
            "reused event_id",
            {},
            events_body(event(), {**GOOD, "quantity": 3.0}),
            409,
            "events[1]: event_id 'good-1' is already stored for another sale",
        ),
        (
            "same id twice",
            {},
            events_body(event(), event(quantity=5.0)),
            409,
            "event_id 'new-1' is already stored",
        ),
    ],
)
def test_bad_writes_are_refused(
    api: TestClient,
    name: str,
    headers: dict[str, str],
    body: str | bytes,
    status: int,
    fragment: str,
) -> None:
    sent = {**AS_JSON, **headers}
    assert_refused(api, "POST", "/events", status, fragment, content=body, headers=sent)


READS = [
    # forecasts
    ("GET", f"/items/{ITEM}/forecast?horizon=0", 422, "query.horizon: Input should be greater"),
    ("GET", f"/items/{ITEM}/forecast?horizon=7", 422, "less than or equal to 6; got '7'"),
    ("GET", f"/items/{ITEM}/forecast?horizon=1e3", 422, "valid integer"),
    ("GET", f"/items/{ITEM}/forecast?horizon=" + "9" * 40, 422, "less than or equal to 6"),
    ("GET", f"/items/{ITEM}/forecast?horizon=-1", 422, "greater than or equal to 1"),
    ("GET", f"/items/{ITEM}/forecast?quantiles=0,1", 422, "query.quantiles"),
    ("GET", f"/items/{ITEM}/forecast?quantiles=NaN", 422, "query.quantiles"),
    ("GET", f"/items/{ITEM}/forecast?quantiles=Infinity", 422, "query.quantiles"),
    ("GET", f"/items/{ITEM}/forecast?quantiles=0.5,", 422, "query.quantiles"),
    ("GET", f"/items/{ITEM}/forecast?quantiles=" + ",0.5" * 100, 422, "query.quantiles"),
    ("GET", "/items/NOPE/forecast", 404, "unknown item"),
    ("GET", "/items/..%2F..%2Fetc%2Fpasswd/forecast", 404, "unknown item"),
    ("GET", "/items/%E2%80%AESKU1/forecast", 422, "U+202E"),
    ("GET", "/items/%20/forecast", 422, "an id must not be blank"),
    ("GET", "/items/" + "x" * 129 + "/forecast", 422, "at most 128 characters"),
    # history
    ("GET", f"/items/{ITEM}/history?periods=0", 422, "query.periods"),
    ("GET", f"/items/{ITEM}/history?periods=10001", 422, "query.periods"),
    ("GET", f"/items/{ITEM}/history?events=-1", 422, "query.events"),
    ("GET", f"/items/{ITEM}/history?events=abc", 422, "as an integer; got 'abc'"),
    ("GET", "/items/NOPE/history", 404, "unknown item"),
    # plans
    ("GET", f"/items/{ITEM}/plan", 422, "query.on_hand: Field required"),
    ("GET", f"/items/{ITEM}/plan?on_hand=-1&lead_time=1", 422, "query.on_hand"),
    ("GET", f"/items/{ITEM}/plan?on_hand=nan&lead_time=1", 422, "finite number; got 'nan'"),
    ("GET", f"/items/{ITEM}/plan?on_hand=inf&lead_time=1", 422, "finite number; got 'inf'"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1e999&lead_time=1", 422, "finite number"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&unit_cost=nan", 422, "query.unit_cost"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&moq=Infinity", 422, "query.moq"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&service_level=1", 422, "less than 1"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&service_level=nan", 422, "finite"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&service_type=x", 422, "service_type"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=1&pack_size=0", 422, "pack_size"),
    ("GET", f"/items/{ITEM}/plan?on_hand=1&lead_time=4&review_period=4", 422, "horizon of 6"),
    ("GET", "/items/NOPE/plan?on_hand=1&lead_time=1", 404, "unknown item"),
    # search, static files, routes
    ("GET", "/items?limit=0", 422, "query.limit"),
    ("GET", "/items?limit=1001", 422, "query.limit"),
    ("GET", "/items?search=" + "a" * 201, 422, "query.search"),
    ("GET", "/static/..%2F__init__.py", 404, "not found: GET '/static/../__init__.py'"),
    ("GET", "/static/index.html", 404, "not found: GET '/static/index.html'"),
    ("GET", "/nowhere%00", 404, "not found: GET '/nowhere\\x00'; see /openapi.json"),
    ("PUT", "/events", 405, "method PUT is not allowed on '/events'; use POST"),
    ("DELETE", f"/items/{ITEM}/forecast", 405, "method DELETE is not allowed"),
]


@pytest.mark.parametrize(("method", "url", "status", "fragment"), READS, ids=[c[1] for c in READS])
def test_bad_reads_are_refused(
    api: TestClient, method: str, url: str, status: int, fragment: str
) -> None:
    assert_refused(api, method, url, status, fragment, headers=KEY)


NEW_ITEM = {"item_id": "NEW-1", "text": "Blue ceramic mug", "price": 6.5}
WHATIF = {"item_id": ITEM, "price_change": -0.1}
POSTS = [
    ("/forecast/new-item", {**NEW_ITEM, "text": " "}, 422, "text must describe the product"),
    ("/forecast/new-item", {**NEW_ITEM, "text": "x" * 2001}, 422, "at most 2000 characters"),
    ("/forecast/new-item", {**NEW_ITEM, "price": -1}, 422, "body.price"),
    ("/forecast/new-item", {**NEW_ITEM, "price": "Infinity"}, 422, "body.price"),
    ("/forecast/new-item", {**NEW_ITEM, "launch_date": 20240101}, 422, "ISO 8601 text"),
    ("/forecast/new-item", {**NEW_ITEM, "launch_date": "2024-02-30"}, 422, "got '2024-02-30'"),
    ("/forecast/new-item", {**NEW_ITEM, "launch_date": "9999-01-01"}, 422, "year must be"),
    ("/forecast/new-item", {**NEW_ITEM, "horizon": 7}, 422, "horizon must be between 1 and 6"),
    ("/forecast/new-item", {**NEW_ITEM, "horizon": 10**30}, 422, "body.horizon"),
    ("/forecast/new-item", {**NEW_ITEM, "quantiles": [0, 0.5]}, 422, "body.quantiles.0"),
    ("/forecast/new-item", {**NEW_ITEM, "quantiles": []}, 422, "at least 1 item"),
    ("/forecast/new-item", {**NEW_ITEM, "item_id": "\u200b"}, 422, "U+200B"),
    ("/forecast/new-item", {**NEW_ITEM, "extra": 1}, 422, "Extra inputs"),
    ("/forecast/new-item", {**NEW_ITEM, "item_id": ITEM}, 422, f"item_id {ITEM!r} is an item"),
    ("/whatif", {**WHATIF, "price_change": -1}, 422, "greater than -1"),
    ("/whatif", {**WHATIF, "price_change": 11}, 422, "less than or equal to 10"),
    ("/whatif", {**WHATIF, "price_change": "NaN"}, 422, "body.price_change"),
    ("/whatif", {"item_id": ITEM, "covariates": {"price": -5}}, 422, "price must be >= 0"),
    ("/whatif", {"item_id": ITEM, "covariates": {"discount": -0.2}}, 422, "discount must lie"),
    ("/whatif", {"item_id": ITEM, "covariates": {"discount": 1}}, 422, "discount must lie"),
    ("/whatif", {"item_id": ITEM, "covariates": {"promo": 1e10}}, 422, "less than or equal"),
    ("/whatif", {"item_id": ITEM, "covariates": {"../x": 1}}, 422, "body.covariates.../x"),
    ("/whatif", {"item_id": ITEM, "covariates": {"weather": 1}}, 422, "weather"),
    ("/whatif", {"item_id": ITEM, "covariates": {}}, 422, "changes nothing"),
    ("/whatif", {"item_id": ITEM}, 422, "changes nothing"),
    ("/whatif", {**WHATIF, "promotion": "  \n"}, 422, "promotion must be the promotion's copy"),
    ("/whatif", {**WHATIF, "horizon": 7}, 422, "horizon must be between 1 and 6"),
    ("/whatif", {**WHATIF, "quantiles": [1.0]}, 422, "body.quantiles.0"),
    ("/whatif", {**WHATIF, "item_id": "NOPE"}, 404, "unknown item"),
    ("/whatif", {**WHATIF, "item_id": "A/../../B"}, 404, "unknown item"),
]


@pytest.mark.parametrize(
    ("url", "body", "status", "fragment"), POSTS, ids=[f"{c[0]} {c[1]}"[:80] for c in POSTS]
)
def test_bad_scenarios_and_new_items_are_refused(
    api: TestClient, url: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    assert_refused(api, "POST", url, status, fragment, content=json.dumps(body), headers=AS_JSON)


def test_the_good_event_is_still_the_only_one(api: TestClient) -> None:
    """After all the refusals above: one event stored, a resend of it is a duplicate."""
    resend = api.post("/events", json={"events": [GOOD]}, headers=KEY)
    assert resend.json() == {"received": 1, "stored": 0, "duplicates": 1}
    assert api.get("/health").json()["events"] == 1


def assert_refused(
    api: TestClient, method: str, url: str, status: int, fragment: str, **request: Any
) -> None:
    """Send the request; check status, a one-line detail holding ``fragment``, nothing stored."""
    service = api.app.state.service  # type: ignore[attr-defined]
    stored, seen = service.store.count_events(), service.history.events
    snapshot = service.history.snapshot(ITEM)
    answer = api.request(method, url, **request)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    detail = body["detail"]
    assert detail.strip() and "\n" not in detail and "\r" not in detail
    assert len(detail) < 600 and "Traceback" not in detail
    assert fragment in detail, detail
    if status == 422 and detail.startswith("invalid request:"):
        assert detail.endswith(SCHEMA)
    assert service.store.count_events() == stored
    assert service.history.events == seen
    assert service.history.snapshot(ITEM) == snapshot


def test_any_id_is_stored_exactly_or_refused_in_one_line(
    loaded_model: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Hypothesis: any text as an item id is refused with one line (and nothing stored) or
    stored exactly as sent and addressable in a path, URL-encoded (a new product, registered
    with POST /items first: events of an item nobody registered are refused)."""
    from urllib.parse import quote

    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    from salesformer.service.schemas import check_id

    db = tmp_path_factory.mktemp("any-id") / "events.db"
    api = TestClient(create_app(ServiceConfig("unused", db=str(db), api_key=API_KEY), loaded_model))
    service = api.app.state.service  # type: ignore[attr-defined]
    counter = iter(range(10**6))

    @given(st.text(min_size=0, max_size=140))
    @example(".")  # path segments a client resolves away: refused, not stored unreachable
    @example("..")
    @example("a/b")
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def check(item_id: str) -> None:
        event_id = f"prop-{next(counter)}"
        before = service.store.count_events()
        product = {"item_id": item_id, "text": "A new product", "price": 1.0}
        registered = api.post("/items", json=product, headers=KEY)
        answer = api.post(
            "/events", json={"events": [event(event_id=event_id, item_id=item_id)]}, headers=KEY
        )
        read = api.get(f"/items/{quote(item_id, safe='')}/forecast")
        try:
            valid = 1 <= len(item_id) <= 128 and check_id(item_id) == item_id
        except ValueError:
            valid = False
        if valid and item_id in service.live.row:  # an item of the model: not a new product
            assert registered.status_code == 422, registered.text
            assert answer.status_code == 200, answer.text
        elif valid:
            assert registered.status_code == 200, registered.text
            assert answer.status_code == 200, answer.text
            assert service.store.latest_events(item_id, 1)[0].event_id == event_id
            assert read.status_code == 200, read.text  # addressable: its live forecast
        else:
            assert answer.status_code == 422 and registered.status_code == 422
            assert "\n" not in answer.json()["detail"]
            assert service.store.count_events() == before
            assert read.status_code in (404, 422)  # "" and "." segments do not reach the route

    check()
