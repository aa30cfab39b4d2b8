"""``salesformer recommend``: the items each customer is most likely to buy next period.

Reads Online Retail II invoice lines, learns the ranker of
:class:`salesformer.decisions.recommend.Recommender` from the periods before ``--until`` and
writes one row per customer and rank. The command body imports the library lazily so that
``salesformer --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from salesformer.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def _parse_customers(value: str | None) -> list[str] | None:
    if value is None:
        return None
    customers = [part.strip() for part in value.split(",") if part.strip()]
    if not customers:
        raise ConfigError(
            f"--customers takes IDs separated by commas; got {value!r}; e.g. 12347,12348"
        )
    return customers


def _parse_until(value: str) -> pd.Timestamp:
    from salesformer.decisions.recommend import _cutoff

    try:
        return _cutoff(value)
    except ConfigError as exc:
        raise ConfigError(
            f"--until must be a date like 2011-09-05, without a time zone; got {value!r}"
        ) from exc


def recommend_command(
    lines: Path = typer.Option(
        ..., "--lines", help="Invoice lines: Online Retail II .xlsx, .csv or .parquet."
    ),
    out: Path = typer.Option(..., "--out", help="Recommendations file, .csv or .parquet."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Recommend from this date, using only purchases before it (default: the day "
        "after the last purchase).",
    ),
    k: int = typer.Option(10, "--k", help="Items per customer."),
    customers: str | None = typer.Option(
        None,
        "--customers",
        help="Customer IDs, comma-separated (default: every customer seen before --until).",
    ),
    period_weeks: int = typer.Option(
        13, "--period-weeks", help="Weeks of the period recommended for (and learnt from)."
    ),
    encoder: str = typer.Option(
        "all-MiniLM-L6-v2",
        "--encoder",
        help="Text encoder for item similarity (name or folder); 'none' leaves text out.",
    ),
    pseudonymise: bool = typer.Option(
        False,
        "--pseudonymise",
        help="Replace customer IDs by keyed hashes when reading (key: the environment "
        "variable SALESFORMER_PSEUDONYM_KEY); --customers still takes clear IDs.",
    ),
) -> None:
    """Recommend items per customer from invoice lines (lines without a customer are left out)."""
    import pandas as pd

    from salesformer.cli.forecast import check_table_out
    from salesformer.decisions.recommend import (
        Recommender,
        RecommendSettings,
        save_recommendations,
    )
    from salesformer.decisions.recommend_data import TIMESTAMP, read_customer_purchases

    check_table_out(out)
    key = None
    if pseudonymise:
        from salesformer.decisions.pseudonym import pseudonym_key

        key = pseudonym_key()  # before reading anything: no key, no run
    if k < 1:
        raise ConfigError(f"--k must be >= 1; got {k}")
    chosen = _parse_customers(customers)
    settings = RecommendSettings(
        period_weeks=period_weeks,
        encoder=None if encoder.strip().lower() == "none" else encoder,
    )
    cutoff = None if until is None else _parse_until(until)
    data = read_customer_purchases(lines)
    if key is not None:
        from salesformer.decisions.pseudonym import pseudonymise as hashed
        from salesformer.decisions.recommend_data import pseudonymised

        data = pseudonymised(data, key)
        chosen = None if chosen is None else hashed(chosen, key)
    purchases = data.purchases
    if cutoff is None:
        cutoff = pd.Timestamp(purchases[TIMESTAMP].max()).normalize() + pd.Timedelta(days=1)
    first = pd.Timestamp(purchases[TIMESTAMP].min())
    if cutoff <= first:
        raise ConfigError(
            f"--until must be a date after the first purchase {first.date()}; got {until!r}"
        )
    typer.echo(
        f"{len(purchases):,} purchase lines of {purchases['customer_id'].nunique():,} customers "
        f"({data.lines_without_customer:,} product lines without a Customer ID left out); "
        f"recommending from {cutoff.date()} for {period_weeks} weeks"
    )
    model = Recommender(settings).fit(purchases, cutoff, data.items)
    if chosen is not None:
        seen = set(model.state_.customers.index)
        unknown = [c for c in chosen if c not in seen]
        if unknown:
            typer.echo(
                f"{len(unknown)} customer(s) without purchases before {cutoff.date()} get "
                f"trending items: {', '.join(unknown[:5])}"
            )
    recommendations = model.recommend(chosen, k=k)
    save_recommendations(recommendations, out)
    typer.echo(
        f"recommended {k} items to {recommendations['customer_id'].nunique():,} customers; "
        f"wrote {out}"
    )
