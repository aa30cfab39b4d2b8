"""Customer recommendations on Online Retail II: the ranker against popularity and buy-again.

Protocol (``docs/recommend.md`` explains it):

* purchases: the cleaned invoice lines of ``salesformer.data.online_retail`` with a Customer ID;
* **test**: recommend at 2011-09-05 for the 13 weeks 2011-09-05 .. 2011-12-04, from the
  purchases before 2011-09-05;
* **validation** (every choice is made here, never on the test period): recommend at
  2011-06-06 for 2011-06-06 .. 2011-09-04, from the purchases before 2011-06-06;
* scored customers: everyone with at least one purchase in the period (a customer never seen
  before gets each method's list for new customers); relevant items: the distinct items they
  bought in it;
* metrics: precision@10, recall@10, MAP@10 (see :mod:`salesformer.decisions.recommend_metrics`)
  and the precision-recall curve for k = 1 .. 50.

Chosen on validation by MAP@10: the popularity window of both baselines (4, 13 or 52 weeks)
and the ranker's objective (binary or lambdarank). ``--ablation`` also scores, on validation
only, the ranker without text similarity.

Results: ``<out>/recommend.json``, ``<out>/recommend.md`` and ``<out>/recommend_pr.png``.

Usage::

    python -m benchmarks.recommend [--data PATH] [--out benchmarks/results] [--ablation]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    machine,
    require_file,
    write_results,
)
from salesformer.decisions.recommend import (
    BuyAgainRecommender,
    PopularityRecommender,
    Recommender,
    RecommendSettings,
)
from salesformer.decisions.recommend_data import CUSTOMER_ID, read_customer_purchases
from salesformer.decisions.recommend_metrics import (
    precision_recall_curve,
    purchases_between,
    ranking_metrics,
)

VALIDATION_CUTOFF = pd.Timestamp("2011-06-06")
TEST_CUTOFF = pd.Timestamp("2011-09-05")
PERIOD_WEEKS = 13
K = 10
MAX_K = 50
POPULAR_WEEKS = (4, 13, 52)
OBJECTIVES = ("binary", "lambdarank")
MAIN = ("precision@10", "recall@10", "map@10")


def evaluate(
    model: Any, purchases: pd.DataFrame, items: pd.DataFrame, cutoff: pd.Timestamp
) -> dict[str, Any]:
    """Fit at ``cutoff``, recommend 50 items to every customer who buys in the period, score."""
    truth = purchases_between(purchases, cutoff, cutoff + pd.Timedelta(weeks=PERIOD_WEEKS))
    customers = sorted(truth[CUSTOMER_ID].unique())
    started = time.perf_counter()
    model.fit(purchases, cutoff, items)
    fitted = time.perf_counter()
    recommendations = model.recommend(customers, k=MAX_K)
    done = time.perf_counter()
    seen = set(purchases.loc[purchases["timestamp"] < cutoff, CUSTOMER_ID])
    returning = truth.loc[truth[CUSTOMER_ID].isin(seen)]
    new = truth.loc[~truth[CUSTOMER_ID].isin(seen)]
    result: dict[str, Any] = {
        "all": ranking_metrics(recommendations, truth, K),
        "returning": ranking_metrics(recommendations, returning, K),
        "new": ranking_metrics(recommendations, new, K) if len(new) else None,
        "pr_curve": precision_recall_curve(recommendations, truth, MAX_K).to_dict("list"),
        "fit_seconds": round(fitted - started, 1),
        "recommend_seconds": round(done - fitted, 1),
    }
    report = getattr(model, "fit_report_", None)
    if report is not None:
        result["training_windows"] = report["windows"]
    return result


def line(name: str, scores: dict[str, Any]) -> str:
    parts = [f"{scores['all'][m]:.4f}" for m in MAIN]
    parts += [f"{scores['returning']['map@10']:.4f}"]
    return f"| {name} | " + " | ".join(parts) + " |"


def plot(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name, curve in curves.items():
        axis.plot(curve["recall"], curve["precision"], marker=".", markersize=3, label=name)
    axis.set_xlabel("recall@k (mean over customers)")
    axis.set_ylabel("precision@k (mean over customers)")
    axis.set_title("Online Retail II, 2011-09-05 .. 2011-12-04, k = 1..50")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--data", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--ablation", action="store_true")
    args = parser.parse_args(argv)
    out = args.out
    started = time.perf_counter()
    data = read_customer_purchases(require_file(args.data, "--data"))
    purchases, items = data.purchases, data.items
    print(
        f"{len(purchases):,} purchase lines of {purchases[CUSTOMER_ID].nunique():,} customers; "
        f"{data.lines_without_customer:,} product lines without a customer left out"
    )

    validation: dict[str, Any] = {}
    for weeks in POPULAR_WEEKS:
        for cls in (PopularityRecommender, BuyAgainRecommender):
            model = cls(weeks)
            validation[f"{cls.name}[{weeks}w]"] = evaluate(
                model, purchases, items, VALIDATION_CUTOFF
            )
    for objective in OBJECTIVES:
        settings = RecommendSettings(objective=objective, encoder=args.encoder)  # type: ignore[arg-type]
        validation[f"Ranker[{objective}]"] = evaluate(
            Recommender(settings), purchases, items, VALIDATION_CUTOFF
        )
        print(f"validation Ranker[{objective}]: {validation[f'Ranker[{objective}]']['all']}")
    if args.ablation:
        settings = RecommendSettings(objective="binary", encoder=None)
        validation["Ranker[binary, no text]"] = evaluate(
            Recommender(settings), purchases, items, VALIDATION_CUTOFF
        )

    def best(prefix: str, options: tuple[Any, ...]) -> Any:
        return max(
            options,
            key=lambda o: validation[f"{prefix}[{o}{'w' if isinstance(o, int) else ''}]"]["all"][
                "map@10"
            ],
        )

    chosen = {
        "popularity_weeks": best("Popularity", POPULAR_WEEKS),
        "buy_again_popular_weeks": best("BuyAgain", POPULAR_WEEKS),
        "objective": best("Ranker", OBJECTIVES),
    }
    print(f"chosen on validation: {chosen}")
    ranker_settings = RecommendSettings(objective=chosen["objective"], encoder=args.encoder)
    models = {
        "Popularity": PopularityRecommender(chosen["popularity_weeks"]),
        "BuyAgain": BuyAgainRecommender(chosen["buy_again_popular_weeks"]),
        "Ranker": Recommender(ranker_settings),
    }
    test = {name: evaluate(model, purchases, items, TEST_CUTOFF) for name, model in models.items()}
    beats = {
        metric: all(
            test["Ranker"]["all"][metric] > test[b]["all"][metric]
            for b in ("Popularity", "BuyAgain")
        )
        for metric in MAIN
    }
    header = (
        "| method | precision@10 | recall@10 | MAP@10 | MAP@10 (returning customers) |\n"
        "|---|---|---|---|---|"
    )
    table = "\n".join([header, *(line(n, s) for n, s in test.items())])
    val_table = "\n".join([header, *(line(n, s) for n, s in validation.items())])
    print("\nTest period 2011-09-05 .. 2011-12-04\n" + table)
    print("\nValidation period 2011-06-06 .. 2011-09-04\n" + val_table)
    print(f"\nranker beats both baselines on the test period: {beats}")

    out.mkdir(parents=True, exist_ok=True)
    plot({n: s["pr_curve"] for n, s in test.items()}, out / "recommend_pr.png")
    result = {
        "protocol": {
            "data": str(args.data),
            "validation": {"cutoff": str(VALIDATION_CUTOFF.date()), "weeks": PERIOD_WEEKS},
            "test": {"cutoff": str(TEST_CUTOFF.date()), "weeks": PERIOD_WEEKS},
            "k": K,
            "pr_curve_k": [1, MAX_K],
            "scored_customers": "at least one purchase in the period",
            "lines_without_customer_left_out": data.lines_without_customer,
        },
        "chosen_on_validation": chosen,
        "ranker_settings": dataclasses.asdict(ranker_settings),
        "test": test,
        "validation": validation,
        "ranker_beats_both_baselines": beats,
        "seconds": round(time.perf_counter() - started, 1),
        "platform": machine()["platform"],
    }
    n = test["Ranker"]["all"]["customers"]
    page = (
        "# Customer recommendations, Online Retail II\n\n"
        f"Recommend at {TEST_CUTOFF.date()} the items each customer buys in the next "
        f"{PERIOD_WEEKS} weeks ({n:,} customers with a purchase then). Settings chosen on the "
        f"validation period from {VALIDATION_CUTOFF.date()}: {chosen}.\n\n"
        f"## Test period\n\n{table}\n\n## Validation period\n\n{val_table}\n\n"
        "Precision-recall curve (k = 1..50): `recommend_pr.png`; points in `recommend.json`.\n"
        f"Produced by `python -m benchmarks.recommend{' --ablation' if args.ablation else ''}`.\n"
    )
    write_results("recommend", result, page, out, argv)
    print(f"wrote {out / 'recommend.json'}, {out / 'recommend.md'}, {out / 'recommend_pr.png'}")


if __name__ == "__main__":
    main()
