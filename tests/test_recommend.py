"""Customer recommendations: metrics by hand, baselines, the ranker, text similarity, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.decisions.recommend import (
    BuyAgainRecommender,
    PopularityRecommender,
    Recommender,
    RecommendSettings,
)
from salesformer.decisions.recommend_data import (
    CUSTOMER_ID,
    purchases_from_invoice_lines,
    validate_purchases,
)
from salesformer.decisions.recommend_metrics import (
    precision_recall_curve,
    purchases_between,
    ranking_metrics,
)
from salesformer.errors import ConfigError, DataValidationError, NotFittedError

START = pd.Timestamp("2011-01-03")
WEEKS = 30
CUTOFF = START + pd.Timedelta(weeks=26)
TITLES = [
    "RED CHRISTMAS CANDLE",
    "WHITE CHRISTMAS CANDLE",
    "GARDEN SPADE",
    "BLUE TEA CUP",
    "PINK TEA CUP",
    "JUMBO BAG RED",
    "JUMBO BAG PINK",
    "LUNCH BOX VINTAGE",
    "PAPER NAPKINS STARS",
    "WOODEN PICTURE FRAME",
    "CERAMIC MONEY BANK",
    "GLASS STAR DECORATION",
]


def fast_settings(**changes: object) -> RecommendSettings:
    """A ranker that fits on the synthetic lines in about a second, without text."""
    base: dict[str, object] = {
        "period_weeks": 4,
        "train_windows": 3,
        "n_estimators": 60,
        "min_child_samples": 5,
        "num_leaves": 8,
        "popular_candidates": 5,
        "encoder": None,
    }
    return RecommendSettings(**{**base, **changes})  # type: ignore[arg-type]


def synthetic_purchases(seed: int = 0) -> pd.DataFrame:
    """60 customers, 12 items, 30 weeks: each customer rebuys 2 favourites most weeks.

    Besides the favourites, each order holds one item drawn from a popularity skew (items
    0..3 most often), so popularity alone finds few of a customer's next items.
    """
    rng = np.random.default_rng(seed)
    n_items = len(TITLES)
    weights = np.linspace(3.0, 1.0, n_items)
    weights /= weights.sum()
    rows = []
    for c in range(60):
        favourites = rng.choice(n_items, size=2, replace=False)
        for week in range(WEEKS):
            if rng.random() > 0.7:
                continue
            stamp = START + pd.Timedelta(weeks=week, hours=int(rng.integers(8, 18)))
            basket = {int(f) for f in favourites if rng.random() < 0.8}
            basket.add(int(rng.choice(n_items, p=weights)))
            for item in sorted(basket):
                rows.append((f"C{c:03d}", f"{10000 + item}", f"INV{c:03d}{week:02d}", stamp))
    frame = pd.DataFrame(rows, columns=["customer_id", "item_id", "invoice", "timestamp"])
    return frame.assign(quantity=2.0, price=1.5)


def items_table() -> pd.DataFrame:
    ids = [f"{10000 + i}" for i in range(len(TITLES))]
    return pd.DataFrame({"item_id": ids, "title": TITLES, "text": TITLES})


def favourites(purchases: pd.DataFrame, before: pd.Timestamp) -> pd.Series:
    """Each customer's most ordered item before ``before``."""
    past = purchases.loc[purchases["timestamp"] < before]
    counts = past.groupby(["customer_id", "item_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n", "item_id"], ascending=[True, False, True])
    return counts.drop_duplicates("customer_id").set_index("customer_id")["item_id"]


# --- metrics -------------------------------------------------------------------------------


def recs(rows: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c, r + 1, item) for c, items in rows.items() for r, item in enumerate(items)],
        columns=["customer_id", "rank", "item_id"],
    )


def truth(rows: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c, item) for c, items in rows.items() for item in items],
        columns=["customer_id", "item_id"],
    )


def test_metrics_match_a_hand_computed_example() -> None:
    recommended = recs({"A": ["x", "y", "z"], "B": ["p", "q", "r"], "D": ["x", "y", "z"]})
    bought = truth({"A": ["x", "z", "w"], "B": ["q"], "C": ["s"]})
    scores = ranking_metrics(recommended, bought, k=3)
    # A: 2 hits of 3, AP = (1/1 + 2/3) / 3; B: hit at rank 2, AP = 1/2; C: no list, 0.
    # D bought nothing in the period and is not scored.
    assert scores["customers"] == 3
    assert scores["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert scores["recall@3"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores["map@3"] == pytest.approx(((1 + 2 / 3) / 3 + 1 / 2 + 0) / 3)
    curve = precision_recall_curve(recommended, bought, max_k=3)
    assert curve["precision"].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert curve["recall"].tolist() == pytest.approx([1 / 9, (1 / 3 + 1) / 3, (2 / 3 + 1) / 3])


def test_metrics_ignore_row_order_and_count_short_lists_as_misses() -> None:
    recommended = recs({"A": ["x"], "B": ["q", "p"]})
    bought = truth({"A": ["x", "y"], "B": ["q"]})
    forward = ranking_metrics(recommended, bought, k=2)
    backward = ranking_metrics(recommended.iloc[::-1], bought.iloc[::-1], k=2)
    assert forward == backward
    assert forward["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert forward["map@2"] == pytest.approx((1 / 2 + 1) / 2)


def test_metrics_count_an_item_listed_twice_once() -> None:
    recommended = recs({"A": ["x", "x", "y"]})
    scores = ranking_metrics(recommended, truth({"A": ["x"]}), k=3)
    assert scores["precision@3"] == pytest.approx(1 / 3)
    assert scores["recall@3"] == pytest.approx(1.0)
    assert scores["map@3"] == pytest.approx(1.0)


def test_metrics_reject_bad_k_and_columns() -> None:
    with pytest.raises(ConfigError, match="k must be"):
        ranking_metrics(recs({"A": ["x"]}), truth({"A": ["x"]}), k=0)
    with pytest.raises(DataValidationError, match="rank"):
        ranking_metrics(truth({"A": ["x"]}), truth({"A": ["x"]}), k=1)


# --- baselines and the ranker ------------------------------------------------------------


@pytest.fixture(scope="module")
def purchases() -> pd.DataFrame:
    return validate_purchases(synthetic_purchases())


@pytest.fixture(scope="module")
def period_truth(purchases: pd.DataFrame) -> pd.DataFrame:
    return purchases_between(purchases, CUTOFF, CUTOFF + pd.Timedelta(weeks=4))


def test_buy_again_beats_popularity_for_repeat_buyers(
    purchases: pd.DataFrame, period_truth: pd.DataFrame
) -> None:
    customers = sorted(period_truth[CUSTOMER_ID].unique())
    popular = PopularityRecommender(weeks=8).fit(purchases, CUTOFF).recommend(customers, k=3)
    again = BuyAgainRecommender(popular_weeks=8).fit(purchases, CUTOFF).recommend(customers, k=3)
    assert popular.groupby(CUSTOMER_ID)["item_id"].apply(tuple).nunique() == 1
    assert ranking_metrics(again, period_truth, 3)["map@3"] > (
        ranking_metrics(popular, period_truth, 3)["map@3"] + 0.1
    )
    first = again.loc[again["rank"] == 1].set_index(CUSTOMER_ID)["item_id"]
    expected = favourites(purchases, CUTOFF)
    assert (first == expected.reindex(first.index)).mean() > 0.9


def test_baselines_pad_short_histories_and_never_peek_past_the_cutoff() -> None:
    lines = pd.DataFrame(
        {
            "customer_id": ["A", "B", "B", "B", "A"],
            "item_id": ["x", "y", "z", "y", "w"],
            "invoice": ["1", "2", "2", "3", "4"],
            "timestamp": pd.to_datetime(
                ["2011-01-03", "2011-01-04", "2011-01-04", "2011-01-05", "2011-02-01"]
            ),
            "quantity": 1.0,
            "price": 1.0,
        }
    )
    again = BuyAgainRecommender(popular_weeks=4).fit(lines, "2011-01-10").recommend(["A"], k=3)
    assert again["item_id"].tolist() == ["x", "y", "z"]
    assert again["reason"].iloc[0].startswith("bought before (1 order,")
    assert again["reason"].iloc[1].startswith("popular")
    assert "w" not in set(again["item_id"])  # bought after the cutoff


def test_ranker_puts_the_repeatedly_bought_item_first(
    purchases: pd.DataFrame, period_truth: pd.DataFrame
) -> None:
    model = Recommender(fast_settings()).fit(purchases, CUTOFF, items_table())
    customers = sorted(period_truth[CUSTOMER_ID].unique())
    top = model.recommend(customers, k=3)
    first = top.loc[top["rank"] == 1].set_index(CUSTOMER_ID)
    expected = favourites(purchases, CUTOFF).reindex(first.index)
    top_two = top.loc[top["rank"] <= 2].groupby(CUSTOMER_ID)["item_id"].apply(set)
    assert (
        np.mean([e in s for e, s in zip(expected, top_two.reindex(first.index), strict=True)]) > 0.9
    )
    assert first["reason"].str.startswith("bought before").all()
    popular = PopularityRecommender(8).fit(purchases, CUTOFF).recommend(customers, k=3)
    assert (
        ranking_metrics(top, period_truth, 3)["map@3"]
        > ranking_metrics(popular, period_truth, 3)["map@3"]
    )
    assert set(top.columns) == {"customer_id", "rank", "item_id", "title", "score", "reason"}
    assert top.groupby(CUSTOMER_ID)["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    windows = model.fit_report_["windows"]
    expected_cutoffs = [str((CUTOFF - pd.Timedelta(weeks=4 * j)).date()) for j in (3, 2, 1)]
    assert [w["cutoff"] for w in windows] == expected_cutoffs


def test_ranker_ignores_purchases_after_the_cutoff(purchases: pd.DataFrame) -> None:
    later = purchases.loc[purchases["timestamp"] >= CUTOFF].assign(item_id="10011")
    garbled = pd.concat([purchases.loc[purchases["timestamp"] < CUTOFF], later])
    one = Recommender(fast_settings()).fit(purchases, CUTOFF).recommend(["C001", "C002"], k=5)
    two = Recommender(fast_settings()).fit(garbled, CUTOFF).recommend(["C001", "C002"], k=5)
    pd.testing.assert_frame_equal(one, two)


def test_ranker_settings_and_fit_errors(purchases: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="period_weeks"):
        RecommendSettings(period_weeks=0)
    with pytest.raises(ConfigError, match="objective"):
        RecommendSettings(objective="pointwise")  # type: ignore[arg-type]
    with pytest.raises(NotFittedError, match="fit"):
        Recommender().recommend(["A"])
    with pytest.raises(DataValidationError, match="no purchase before"):
        Recommender(fast_settings()).fit(purchases, "2000-01-01")
    with pytest.raises(DataValidationError, match="columns"):
        Recommender(fast_settings()).fit(purchases.drop(columns="invoice"), CUTOFF)


def test_recommenders_give_an_empty_frame_for_no_customers(purchases: pd.DataFrame) -> None:
    models = (
        PopularityRecommender(4),
        BuyAgainRecommender(4),
        Recommender(fast_settings(n_estimators=5)),
    )
    for model in models:
        empty = model.fit(purchases, CUTOFF).recommend([], k=3)
        assert empty.empty and list(empty.columns)[:3] == ["customer_id", "rank", "item_id"]


def test_purchase_ids_and_cutoffs_are_checked() -> None:
    lines = synthetic_purchases().head(20)
    floats = lines.assign(customer_id=12001.0)
    assert set(validate_purchases(floats)["customer_id"]) == {"12001"}
    with pytest.raises(DataValidationError, match="'customer_id': 1 rows have no value"):
        validate_purchases(lines.assign(customer_id=[None, *lines["customer_id"][1:]]))
    zoned = lines.assign(timestamp=lines["timestamp"].dt.tz_localize("Europe/London"))
    assert validate_purchases(zoned)["timestamp"].tolist() == sorted(lines["timestamp"])
    with pytest.raises(ConfigError, match="without a time zone"):
        PopularityRecommender(4).fit(lines, pd.Timestamp("2011-03-01", tz="UTC"))


def test_text_similarity_promotes_a_similar_item() -> None:
    """A customer who bought only the red candle is offered the white one, 'similar to'."""
    pytest.importorskip("torch")
    base = synthetic_purchases()
    red, white, spade = "10000", "10001", "10002"
    # Nobody else buys the red candle, so co-purchases cannot point to the white one.
    base = base.loc[base["item_id"] != red]
    lone = pd.DataFrame(
        {
            "customer_id": ["LONE"],
            "item_id": [red],
            "invoice": ["X1"],
            "timestamp": [CUTOFF - pd.Timedelta(days=3)],
            "quantity": [1.0],
            "price": [2.0],
        }
    )
    lines = pd.concat([base, lone], ignore_index=True)
    settings = fast_settings(encoder="all-MiniLM-L6-v2", popular_candidates=0, neighbours=1)
    model = Recommender(settings).fit(lines, CUTOFF, items_table())
    similarity = model.state_.text_similarity
    assert similarity is not None
    index = {item: i for i, item in enumerate(model.item_ids_)}
    assert similarity[index[white], index[red]] > similarity[index[spade], index[red]] + 0.2
    top = model.recommend(["LONE"], k=5)
    assert top["item_id"].tolist() == [red, white] or top["item_id"].tolist() == [white, red]
    reason = top.set_index("item_id").loc[white, "reason"]
    assert reason == f"similar to {red} RED CHRISTMAS CANDLE"


# --- data and CLI ------------------------------------------------------------------------


def invoice_lines(purchases: pd.DataFrame) -> pd.DataFrame:
    """The synthetic purchases in the Online Retail II layout, plus lines without a customer."""
    titles = dict(zip(items_table()["item_id"], TITLES, strict=True))
    frame = pd.DataFrame(
        {
            "Invoice": purchases["invoice"],
            "StockCode": purchases["item_id"],
            "Description": purchases["item_id"].map(titles),
            "Quantity": purchases["quantity"].astype(int),
            "InvoiceDate": purchases["timestamp"],
            "Price": purchases["price"],
            "Customer ID": purchases["customer_id"].str[1:].astype(float) + 12000,
            "Country": "United Kingdom",
        }
    )
    anonymous = frame.head(5).assign(**{"Customer ID": np.nan, "Invoice": "ANON"})
    return pd.concat([frame, anonymous], ignore_index=True)


def test_invoice_lines_become_purchases_without_anonymous_lines(
    purchases: pd.DataFrame, tmp_path: Path
) -> None:
    from salesformer.data.online_retail import clean_invoice_lines, read_invoice_lines

    raw = invoice_lines(purchases)
    assert len(raw) == len(purchases) + 5
    path = tmp_path / "lines.csv"
    raw.to_csv(path, index=False)
    cleaned, _, _ = clean_invoice_lines(read_invoice_lines(path))
    data = purchases_from_invoice_lines(cleaned)
    assert data.lines_without_customer == 5
    assert data.purchases["customer_id"].str.fullmatch(r"120\d\d").all()
    assert set(data.items["title"]) <= set(TITLES)


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


@pytest.fixture(scope="module")
def lines_csv(purchases: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lines") / "lines.csv"
    invoice_lines(purchases).to_csv(path, index=False)
    return path


def test_cli_writes_one_row_per_customer_and_rank(
    lines_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "recs.csv"
    args = ["recommend", "--lines", str(lines_csv), "--until", str(CUTOFF.date())]
    args += ["--k", "3", "--customers", "12001,12002,99999", "--period-weeks", "4"]
    assert invoke([*args, "--encoder", "none", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 product lines without a Customer ID left out" in printed
    assert "1 customer(s) without purchases" in printed
    frame = pd.read_csv(out, dtype={"customer_id": str, "item_id": str})
    assert list(frame.columns) == ["customer_id", "rank", "item_id", "title", "score", "reason"]
    assert sorted(frame["customer_id"].unique()) == ["12001", "12002", "99999"]
    assert frame.groupby("customer_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    assert frame.loc[frame["customer_id"] == "99999", "reason"].str.startswith("trending").all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--until", "someday"], "--until must be a date"),
        (["--until", "2011-07-04T00:00Z"], "without a time zone"),
        (["--until", "1999-01-01"], "--until must be a date after"),
        (["--k", "0"], "--k must be >= 1"),
        (["--customers", " , "], "--customers takes IDs"),
        (["--period-weeks", "0"], "period_weeks must be"),
    ],
)
def test_cli_bad_options_give_one_line_and_no_file(
    lines_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "recs.csv"
    code = invoke(["recommend", "--lines", str(lines_csv), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "recs.csv"
    missing = invoke(["recommend", "--lines", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert missing == 2 and "no such" in capsys.readouterr().err
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"a": [1]}).to_csv(wrong, index=False)
    assert invoke(["recommend", "--lines", str(wrong), "--out", str(out)]) == 2
    assert "column(s)" in capsys.readouterr().err
    assert invoke(["recommend", "--lines", str(wrong), "--out", str(tmp_path / "r.txt")]) == 2
    assert "--out must end in" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_real_online_retail_purchases(online_retail_path: Path) -> None:
    from salesformer.decisions.recommend_data import read_customer_purchases

    data = read_customer_purchases(online_retail_path)
    assert len(data.purchases) == 776_983
    assert data.lines_without_customer == 220_575
    assert data.purchases["customer_id"].nunique() == 5_835
    assert data.purchases["customer_id"].str.fullmatch(r"\d{5}").all()


# --- pseudonymised customer IDs ----------------------------------------------------------

KEY = "a-test-key-of-32-characters-long"


def test_pseudonymised_run_writes_no_clear_customer_id(
    lines_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salesformer.decisions.pseudonym import PSEUDONYM_KEY_ENV, pseudonymise

    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY)
    out = tmp_path / "recs.csv"
    args = ["recommend", "--lines", str(lines_csv), "--until", str(CUTOFF.date()), "--k", "3"]
    args += ["--period-weeks", "4", "--encoder", "none", "--pseudonymise", "--out", str(out)]
    assert invoke(args) == 0
    printed = capsys.readouterr().out
    written = out.read_text()
    clear = sorted(pd.read_csv(lines_csv)["Customer ID"].dropna().astype(int).astype(str).unique())
    assert len(clear) > 5
    for customer in clear:  # no clear ID anywhere in the file or on the console
        assert customer not in written and customer not in printed
    frame = pd.read_csv(out, dtype={"customer_id": str})
    expected = set(pseudonymise(clear, KEY.encode()))
    assert set(frame["customer_id"]) <= expected and len(set(frame["customer_id"])) > 5
    # the same key gives the same pseudonyms, and --customers takes clear IDs
    again = tmp_path / "again.csv"
    one = ["--customers", clear[0], "--out", str(again)]
    assert invoke([*args[:-2], *one]) == 0
    chosen = pd.read_csv(again, dtype={"customer_id": str})["customer_id"].unique().tolist()
    assert chosen == pseudonymise([clear[0]], KEY.encode())


@pytest.mark.parametrize("key", [None, "", "short"])
def test_pseudonymised_run_without_a_key_is_refused(
    key: str | None,
    lines_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salesformer.decisions.pseudonym import PSEUDONYM_KEY_ENV

    if key is None:
        monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(PSEUDONYM_KEY_ENV, key)
    out = tmp_path / "recs.csv"
    code = invoke(["recommend", "--lines", str(lines_csv), "--pseudonymise", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert PSEUDONYM_KEY_ENV in err and "at least 16 characters" in err
    assert not out.exists()


def test_pseudonyms_depend_on_the_key() -> None:
    from salesformer.decisions.pseudonym import pseudonymise

    first = pseudonymise(["12345", "12346"], b"k" * 16)
    assert first == pseudonymise(["12345", "12346"], b"k" * 16)
    assert first[0] != first[1]
    assert pseudonymise(["12345"], b"j" * 16)[0] != first[0]
    assert all(p.startswith("c_") and len(p) == 18 and "12345" not in p for p in first)
