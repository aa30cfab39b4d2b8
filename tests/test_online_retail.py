"""Online Retail II preparation (every protocol step on a hand-written fixture, then the real
file) and the source resolver (local paths, and URLs served by a loopback HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.online_retail import (
    discount_depth,
    drop_sheet_overlap,
    last_full_week,
    launch_list_price,
    prepare_online_retail,
)
from salesformer.data.sources import default_cache_dir, resolve_source
from salesformer.errors import DataValidationError

SHEET_1 = "Year 2009-2010"
SHEET_2 = "Year 2010-2011"
HEART = "WHITE HANGING HEART T-LIGHT HOLDER"
CHERRY = "PINK CHERRY LIGHTS"
WARMER = "HAND WARMER UNION JACK"
BIRD = "ASSORTED COLOUR BIRD ORNAMENT"
JAR = "MEDIUM CERAMIC TOP STORAGE JAR"
NaN = float("nan")


def _line(
    invoice: str, code: str, text: object, qty: int, when: str, price: float, customer: float
) -> dict[str, object]:
    return {
        "Invoice": invoice,
        "StockCode": code,
        "Description": text,
        "Quantity": qty,
        "InvoiceDate": pd.Timestamp(when),
        "Price": price,
        "Customer ID": customer,
        "Country": "United Kingdom",
    }


# The sheets overlap on 2010-12-01 .. 2010-12-09, as in the official workbook.
X = _line("536365", "85123A", HEART, 6, "2010-12-01 08:26", 2.55, 17850.0)  # twice in each sheet
Y = _line("536366", "22633", WARMER, 6, "2010-12-01 08:28", 1.85, 17850.0)  # once in 1, twice in 2
Z = _line("536367", "84879", BIRD, 32, "2010-12-01 08:34", 1.69, 13047.0)  # sheet 1 only

SHEET_1_LINES = [
    _line("489434", "85123A", HEART, 6, "2009-12-01 07:45", 2.55, 13085.0),
    _line("489434", "79323P", CHERRY, 12, "2009-12-01 07:45", 6.75, 13085.0),
    _line("489435", "85123A", HEART, 6, "2009-12-02 10:00", 2.55, 13086.0),
    # lower-case code, messy whitespace, unknown customer; no sale in week 2009-12-07
    _line(
        "489436",
        "85123a",
        "  WHITE  HANGING HEART T-LIGHT HOLDER ",
        6,
        "2009-12-15 10:00",
        2.55,
        NaN,
    ),
    _line("C489449", "85123A", HEART, -6, "2009-12-16 09:00", 2.55, 13085.0),  # cancellation
    _line("489437", "22041", "RECORD FRAME", -3, "2009-12-03 09:00", 2.10, 13090.0),  # qty < 0
    _line("489438", "22041", NaN, 10, "2009-12-03 09:05", 0.0, NaN),  # price 0
    _line("489439", "POST", "POSTAGE", 1, "2009-12-03 10:00", 18.0, 12345.0),
    _line("489439", "BANK CHARGES", "Bank Charges", 1, "2009-12-03 10:00", 15.0, 12345.0),
    _line(
        "489440", "gift_0001_20", "Dotcomgiftshop Gift Voucher", 1, "2009-12-04 10:00", 17.0, NaN
    ),
    _line("489440", "TEST001", "This is a test product.", 5, "2009-12-04 10:00", 4.5, NaN),
    _line("489441", "22041", NaN, 4, "2009-12-04 11:00", 2.10, 13090.0),  # no description
    _line("489500", "79323P", CHERRY, 12, "2010-01-05 10:00", 6.75, 13085.0),
    _line("489501", "79323P", CHERRY, 240, "2010-01-06 10:00", 5.95, 14000.0),  # bulk order
    _line("489502", "79323P", "PINK CHERRY LIGHT", 12, "2010-02-01 10:00", 6.75, 13085.0),
    X,
    X,
    Y,
    Z,
    _line("536500", "84879", BIRD, 100, "2010-12-09 20:01", 1.69, 13047.0),
]
SHEET_2_LINES = [
    X,
    X,
    Y,
    Y,
    {**Y, "Quantity": 7},  # not an exact copy: kept
    _line("536600", "22633", WARMER, 12, "2010-12-10 09:00", 1.85, 15000.0),
    _line("536601", "22633", WARMER, 70, "2010-12-14 09:00", 1.85, 15000.0),  # > 10x, < 100 units
    _line("545000", "22633", WARMER, 3, "2011-03-01 09:00", 2.10, 15001.0),
    _line("545000", "22633", WARMER, 3, "2011-03-01 09:00", 2.10, 15001.0),  # genuine duplicate
    _line("550000", "23166", JAR, 12, "2011-01-18 10:00", 1.04, 12346.0),
    _line("560000", "23166", JAR, 24, "2011-06-07 10:00", 1.04, 12347.0),
    _line("581580", "85123A", HEART, 6, "2011-12-05 10:00", 2.55, 12748.0),  # partial week
    _line("581587", "85123A", HEART, 12, "2011-12-09 12:50", 2.55, 12680.0),  # partial week
]
EXPECTED = {
    "input_rows": len(SHEET_1_LINES) + len(SHEET_2_LINES),
    "dropped_sheet_overlap": 3,
    "dropped_cancellations": 1,
    "dropped_non_positive_quantity": 1,
    "dropped_non_positive_price": 1,
    "dropped_non_product_codes": 4,
    "dropped_missing_description": 1,
    "dropped_partial_last_week": 2,
    "items": 5,
    "weeks": 105,
    "first_week": "2009-11-30",
    "last_week": "2011-11-28",
    "items_with_text": 5,
    "items_first_sold_2011": 1,
    "bulk_order_lines": 1,
}


def invoice_lines() -> pd.DataFrame:
    """Both sheets stacked, with the ``sheet`` column, as in the shared parquet."""
    return pd.concat(
        [
            pd.DataFrame(SHEET_1_LINES).assign(sheet=SHEET_1),
            pd.DataFrame(SHEET_2_LINES).assign(sheet=SHEET_2),
        ],
        ignore_index=True,
    )


def write_workbook(path: Path) -> Path:
    """The two-sheet workbook, with numeric cells where the official file has them."""
    lines = invoice_lines()
    for column in ("Invoice", "StockCode"):
        lines[column] = [int(v) if str(v).isdigit() else v for v in lines[column]]
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, sheet in lines.groupby("sheet", sort=True):
            sheet.drop(columns="sheet").to_excel(writer, sheet_name=str(name), index=False)
    return path


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("online_retail")
    lines = invoice_lines()
    lines.to_csv(folder / "lines.csv", index=False)
    lines.to_parquet(folder / "lines.parquet", index=False)
    write_workbook(folder / "online_retail_II.xlsx")
    return folder


@pytest.fixture(scope="module")
def prepared(fixture_dir: Path) -> tuple:
    return prepare_online_retail(fixture_dir / "lines.parquet")


def test_quality_report_counts_every_drop_reason(prepared: tuple) -> None:
    _, report = prepared
    counts = report.to_dict()
    for name, value in EXPECTED.items():
        assert counts[name] == value, name
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    assert counts["rows_kept"] + dropped == counts["input_rows"]
    json.dumps(counts)  # JSON-serialisable


def test_sheet_overlap_keeps_genuine_duplicates(prepared: tuple) -> None:
    panel, _ = prepared
    sales = panel.sales.set_index(["item_id", "date"])["sales"]
    # X: 2 copies in sheet 1 (genuine), 2 in sheet 2 (the overlap) -> 12 units, not 24
    assert sales[("85123A", pd.Timestamp("2010-11-29"))] == 12
    # Y: 1 in sheet 1 + a genuine second copy in sheet 2 + a near copy (7 units): 6 + 6 + 7
    assert sales[("22633", pd.Timestamp("2010-11-29"))] == 19
    # a duplicate line outside the overlapping dates is kept
    assert sales[("22633", pd.Timestamp("2011-02-28"))] == 6


def test_drop_sheet_overlap_is_a_multiset_difference() -> None:
    lines = invoice_lines()
    kept, dropped = drop_sheet_overlap(lines)
    assert dropped == 3
    assert len(kept) == len(lines) - 3
    x_rows = kept[(kept["Invoice"] == "536365")]
    assert list(x_rows["sheet"]) == [SHEET_1, SHEET_1]
    without_sheet, none_dropped = drop_sheet_overlap(lines.drop(columns="sheet"))
    assert none_dropped == 0 and len(without_sheet) == len(lines)


def test_weekly_values_and_zero_filled_gaps(prepared: tuple) -> None:
    panel, _ = prepared
    heart = panel.sales[panel.sales["item_id"] == "85123A"].set_index("date")
    first = heart.loc["2009-11-30"]
    assert (first["sales"], first["orders"], first["customers"]) == (12, 2, 2)
    assert first["price"] == pytest.approx(2.55)
    gap = heart.loc["2009-12-07"]  # no sale: past-only counts are 0, price carried forward
    assert (gap["sales"], gap["orders"], gap["customers"]) == (0, 0, 0)
    assert gap["price"] == pytest.approx(2.55)
    unknown_customer = heart.loc["2009-12-14"]
    assert (unknown_customer["orders"], unknown_customer["customers"]) == (1, 0)
    assert heart.index.max() == pd.Timestamp("2011-11-28")
    # realized paid prices would leak sale weeks if shown for the horizon: all past-only
    assert panel.known_future == ()
    assert set(panel.past_only) == {"price", "discount", "orders", "customers"}
    assert panel.freq == "W-MON"
    assert (panel.sales["date"].dt.weekday == 0).all()


def test_items_follow_their_first_sale(prepared: tuple) -> None:
    panel, _ = prepared
    firsts = panel.sales.groupby("item_id")["date"].min()
    assert firsts["23166"] == pd.Timestamp("2011-01-17")
    assert set(panel.item_ids) == {"85123A", "79323P", "22633", "84879", "23166"}


def test_price_is_average_paid_and_discount_uses_only_the_past(prepared: tuple) -> None:
    panel, _ = prepared
    cherry = panel.sales[panel.sales["item_id"] == "79323P"].set_index("date")
    paid = (12 * 6.75 + 240 * 5.95) / 252
    assert cherry.loc["2010-01-04", "price"] == pytest.approx(paid)
    assert cherry.loc["2009-11-30", "discount"] == 0.0  # no history
    assert cherry.loc["2010-01-04", "discount"] == pytest.approx(1 - paid / 6.75)
    assert cherry.loc["2010-02-01", "discount"] == 0.0  # above typical: clipped to 0
    assert panel.sales["discount"].between(0, 1, inclusive="left").all()


def test_discount_depth_window_is_the_13_previous_sale_weeks() -> None:
    prices = [4.0] * 13 + [2.0] * 8
    dates = pd.date_range("2010-01-04", periods=len(prices) + 5, freq="W-MON")
    weekly = pd.DataFrame(
        {"item_id": "A", "date": np.delete(dates, [2, 5, 9, 14, 17]), "price": prices}
    )
    depth = discount_depth(weekly)
    assert depth.iloc[0] == 0.0
    assert depth.iloc[12] == 0.0  # same price as before
    # sale week 19: previous 13 are weeks 6..18 -> 7 at 4.0, 6 at 2.0 -> median 4
    assert depth.iloc[19] == pytest.approx(0.5)
    # sale week 20: previous 13 are weeks 7..19 -> 6 at 4.0, 7 at 2.0 -> median 2
    assert depth.iloc[20] == 0.0


def test_items_table(prepared: tuple) -> None:
    panel, _ = prepared
    items = panel.items.set_index("item_id")
    assert items.loc["79323P", "title"] == CHERRY  # most frequent of two descriptions
    assert items.loc["79323P", "n_descriptions"] == 2
    assert items.loc["85123A", "n_descriptions"] == 1  # whitespace variants are one
    assert items.loc["85123A", "text"] == f"{HEART}."
    assert items.loc["23166", "first_sale"] == pd.Timestamp("2011-01-17")
    assert items.loc["23166", "last_sale"] == pd.Timestamp("2011-06-06")
    assert items.loc["85123A", "last_sale"] == pd.Timestamp("2010-11-29")


def test_bulk_orders_are_flagged_and_kept(prepared: tuple) -> None:
    panel, report = prepared
    outliers = report.outliers
    assert list(outliers.columns) == [
        "invoice",
        "item_id",
        "date",
        "quantity",
        "median_line_quantity",
        "reason",
    ]
    assert outliers[["invoice", "item_id", "quantity"]].values.tolist() == [
        ["489501", "79323P", 240]
    ]
    total = panel.sales.loc[panel.sales["item_id"] == "79323P", "sales"].sum()
    assert total == 12 + 12 + 240 + 12


@pytest.mark.parametrize("name", ["lines.csv", "online_retail_II.xlsx"])
def test_csv_and_workbook_give_the_same_panel(
    fixture_dir: Path, prepared: tuple, name: str
) -> None:
    panel, report = prepare_online_retail(fixture_dir / name)
    expected_panel, expected_report = prepared
    pd.testing.assert_frame_equal(panel.sales, expected_panel.sales)
    pd.testing.assert_frame_equal(panel.items, expected_panel.items)
    assert report.to_dict() == expected_report.to_dict()


def test_last_full_week() -> None:
    assert last_full_week(pd.Timestamp("2011-12-09 12:50")) == pd.Timestamp("2011-11-28")
    assert last_full_week(pd.Timestamp("2011-12-11 18:00")) == pd.Timestamp("2011-12-05")


def test_as_table_lists_every_count(prepared: tuple) -> None:
    _, report = prepared
    table = report.as_table()
    assert table.row_count == len(report.to_dict())


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    invoice_lines().drop(columns="Price").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"\['Price'\] missing; got columns"):
        prepare_online_retail(path)


def test_non_numeric_quantity_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    lines = invoice_lines().astype({"Quantity": object})
    lines.loc[0, "Quantity"] = "six"
    lines.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"'Quantity': 1 values are not numbers.*six"):
        prepare_online_retail(path)


def test_bad_invoice_date_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    lines = invoice_lines().astype({"InvoiceDate": object})
    lines.loc[3, "InvoiceDate"] = "someday"
    lines.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"'InvoiceDate': 1 rows.*someday"):
        prepare_online_retail(path)


def test_nothing_left_after_cleaning(tmp_path: Path) -> None:
    path = tmp_path / "lines.parquet"
    lines = invoice_lines()
    lines["Invoice"] = "C" + lines["Invoice"].str.lstrip("C")
    lines.to_parquet(path)
    with pytest.raises(DataValidationError, match="no product invoice lines left"):
        prepare_online_retail(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "lines.parquet"
    invoice_lines().head(0).to_parquet(path)
    with pytest.raises(DataValidationError, match="holds no invoice lines"):
        prepare_online_retail(path)


def test_unknown_extension_and_bad_workbook(tmp_path: Path) -> None:
    odd = tmp_path / "lines.json"
    odd.write_text("{}")
    with pytest.raises(DataValidationError, match="cannot tell the format"):
        prepare_online_retail(odd)
    broken = tmp_path / "broken.xlsx"
    broken.write_text("not a workbook")
    with pytest.raises(DataValidationError, match=r"could not read .* as an Excel workbook"):
        prepare_online_retail(broken)


@pytest.mark.slow
def test_real_file_follows_the_protocol(online_retail_path: Path) -> None:
    panel, report = prepare_online_retail(online_retail_path)
    counts = report.to_dict()
    assert counts["input_rows"] == 1_067_370
    assert counts["dropped_sheet_overlap"] == 22_523
    assert counts["dropped_partial_last_week"] > 0
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    assert counts["rows_kept"] + dropped == counts["input_rows"]
    assert (counts["first_week"], counts["last_week"], counts["weeks"]) == (
        "2009-11-30",
        "2011-11-28",
        105,
    )
    assert 4_000 <= counts["items"] <= 5_000
    assert 300 <= counts["items_first_sold_2011"] <= 1_000
    assert counts["items_with_text"] == counts["items"]
    assert 0 < counts["bulk_order_lines"] < 0.02 * counts["rows_kept"]

    sales = panel.sales
    ids = pd.Series(panel.item_ids)
    assert ids.str.match(r"^\d{5}").all()
    assert not ids.isin(["POST", "DOT", "M", "D", "C2", "BANK CHARGES", "AMAZONFEE"]).any()
    assert (sales["sales"] >= 0).all() and (sales["price"] > 0).all()
    assert ((sales["sales"] > 0) | ((sales["orders"] == 0) & (sales["customers"] == 0))).all()
    assert set(panel.items["item_id"]) == set(panel.item_ids)

    # Week 2010-11-29 lies inside the first sheet: its units are counted once, not twice.
    raw = pd.read_parquet(online_retail_path)
    first = raw[raw["sheet"] == raw["sheet"].min()]
    week = first[
        (first["InvoiceDate"] >= "2010-11-29")
        & (first["InvoiceDate"] < "2010-12-06")
        & ~first["Invoice"].str.startswith("C")
        & (first["Quantity"] > 0)
        & (first["Price"] > 0)
        & first["StockCode"].str.upper().str.match(r"^\d{5}")
    ]
    in_panel = sales.loc[sales["date"] == pd.Timestamp("2010-11-29"), "sales"].sum()
    assert in_panel == week["Quantity"].sum()


# --- sources: local paths and URLs -------------------------------------------------------------


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server over a folder: (base URL, folder, requested paths)."""
    folder = tmp_path / "www"
    folder.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_local_path_is_returned_as_is(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n")
    assert resolve_source(path) == path
    assert resolve_source(str(path), sha256=hashlib.sha256(b"x\n1\n").hexdigest()) == path


def test_missing_local_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"'.*nope\.parquet' does not exist"):
        resolve_source(tmp_path / "nope.parquet")
    with pytest.raises(DataValidationError, match="is a folder"):
        resolve_source(tmp_path)


def test_local_sha256_mismatch_keeps_the_users_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n")
    with pytest.raises(DataValidationError, match="sha256 mismatch"):
        resolve_source(path, sha256="0" * 64)
    assert path.is_file()


def test_malformed_sha256(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="64 hexadecimal characters; got 'abc'"):
        resolve_source(tmp_path, sha256="abc")


def test_url_is_downloaded_once_and_checked(
    served: tuple[str, Path, list[str]], tmp_path: Path, fixture_dir: Path
) -> None:
    base, folder, requests = served
    payload = (fixture_dir / "lines.parquet").read_bytes()
    (folder / "lines.parquet").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    first = resolve_source(f"{base}/lines.parquet", cache_dir=cache, sha256=digest.upper())
    again = resolve_source(f"{base}/lines.parquet", cache_dir=cache, sha256=digest)
    assert first == again and first.parent == cache
    assert first.read_bytes() == payload
    assert requests == ["/lines.parquet"]
    _, report = prepare_online_retail(f"{base}/lines.parquet", cache_dir=cache)
    assert report.items == EXPECTED["items"] and len(requests) == 1


def test_url_sha256_mismatch_removes_the_download(
    served: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, folder, _ = served
    (folder / "a.csv").write_text("x\n1\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataValidationError, match=r"sha256 mismatch for http.*was removed"):
        resolve_source(f"{base}/a.csv", cache_dir=cache, sha256="0" * 64)
    assert list(cache.iterdir()) == []


def test_stale_cached_copy_is_fetched_again(
    served: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, folder, requests = served
    (folder / "a.csv").write_text("new\n")
    cache = tmp_path / "cache"
    cached = resolve_source(f"{base}/a.csv", cache_dir=cache)
    cached.write_text("stale\n")
    digest = hashlib.sha256(b"new\n").hexdigest()
    assert resolve_source(f"{base}/a.csv", cache_dir=cache, sha256=digest).read_text() == "new\n"
    assert len(requests) == 2


def test_http_error_leaves_no_file(served: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, _, _ = served
    cache = tmp_path / "cache"
    with pytest.raises(DataValidationError, match="HTTP 404"):
        resolve_source(f"{base}/missing.csv", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_cache_folder_follows_the_environment(
    served: tuple[str, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, folder, _ = served
    (folder / "a.csv").write_text("x\n")
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" / "downloads"
    assert resolve_source(f"{base}/a.csv").parent == tmp_path / "env" / "downloads"
    monkeypatch.delenv("SALESFORMER_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "salesformer" / "downloads"


def test_list_price_is_the_most_common_price_of_the_first_sale_week() -> None:
    week = pd.Timestamp("2011-01-03")
    lines = pd.DataFrame(
        {
            "item_id": ["A", "A", "A", "A", "B", "B"],
            "date": [week, week, week, week + pd.Timedelta(weeks=1), week, week],
            "Price": [2.0, 2.0, 1.5, 1.0, 3.0, 2.5],
        }
    )
    # A: two lines at 2.0 beat one bulk line at 1.5; the next week's 1.0 is not its launch.
    # B: one line each, the tie goes to the higher price.
    prices = launch_list_price(lines)
    assert prices.to_dict() == {"A": 2.0, "B": 3.0}


def test_items_table_has_a_list_price(prepared: tuple) -> None:
    panel, _ = prepared
    items = panel.items.set_index("item_id")
    assert items["list_price"].notna().all()
    assert items.loc["85123A", "list_price"] == 2.55
