"""Faithfulness of the LM's word attributions on the synthetic catalogue, over several seeds.

For each catalogue seed and each of two LM settings, a frozen all-MiniLM-L6-v2 LM is trained
on the whole catalogue and the first ``--items`` items are explained
(:func:`salesformer.explain.faithfulness.evaluate_faithfulness`):

* ``top1`` / ``top3``: share of the 1 / 3 top-attributed words that are the item's
  informative words (its theme, tier and material words); ``chance``: their share among the
  words the model read;
* ``delete_top3`` / ``delete_random3``: relative change of the forecast (summed over the
  horizon) when the 3 top-attributed / 3 random words are deleted from the text;
* ``gap``: median relative completeness gap of the word attributions; ``s/item``: seconds to
  explain one item (words and signals, total over the horizon).

Settings: ``default`` is the LM's text path as shipped (``text_size`` 64, 10% of samples
without history); ``reads-text`` narrows the text projection to 16 and hides the history of
half the samples (the settings of ``tests/test_explain_faithfulness.py``). Nothing is tuned
here: the numbers measure explanations of fixed models.

Results: ``benchmarks/results/explain_faithfulness.json`` and ``.md``. Usage::

    python -m benchmarks.explain_faithfulness [--seeds 1 2 3] [--items 20] [--steps 32]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import RESULTS, argument_parser, write_results
from salesformer.data.synthetic import generate_catalogue
from salesformer.explain.faithfulness import evaluate_faithfulness
from salesformer.models.lm import LMForecaster

COMMON: dict[str, Any] = {
    "finetune": "frozen",
    "head_epochs": 15,
    "epoch_samples": 3000,
    "hidden_size": 64,
    "threads": 1,
    "seed": 0,
    "progress": False,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "reads-text": {"text_size": 16, "history_dropout": 0.5},
}


def run(seed: int, setting: str, n_items: int, steps: int) -> dict[str, Any]:
    catalogue = generate_catalogue(n_items=160, n_weeks=104, seed=seed)
    started = time.perf_counter()
    model = LMForecaster(**COMMON, **SETTINGS[setting]).fit(catalogue.panel())
    fit_seconds = time.perf_counter() - started
    items = list(catalogue.items["item_id"].iloc[:n_items])
    rows = evaluate_faithfulness(model, catalogue.truth, items, k=3, n_random=5, n_steps=steps)
    mean = rows.drop(columns="item_id").mean()
    return {
        "seed": seed,
        "setting": setting,
        "items": len(rows),
        "top1": round(float(mean["top1"]), 3),
        "top3": round(float(mean["topk"]), 3),
        "chance": round(float(mean["chance"]), 3),
        "attribution_mass": round(float(mean["mass"]), 3),
        "delete_top3": round(float(mean["delete_top"]), 4),
        "delete_random3": round(float(mean["delete_random"]), 4),
        "gap_median": round(float(rows["relative_gap"].median()), 4),
        "seconds_per_item": round(float(mean["seconds"]), 2),
        "fit_seconds": round(fit_seconds, 1),
    }


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = []
    for setting in args.settings:
        for seed in args.seeds:
            result = run(seed, setting, args.items, args.steps)
            print(json.dumps(result), flush=True)
            results.append(result)
    table = pd.DataFrame(results)
    numeric = [c for c in table.columns if c not in ("seed", "setting")]
    summary = table.groupby("setting", sort=False)[numeric].mean().round(3).reset_index()
    print(table.to_string(index=False))
    print(summary.to_string(index=False))
    payload = {
        "command": "python -m benchmarks.explain_faithfulness "
        f"--seeds {' '.join(map(str, args.seeds))} --items {args.items} --steps {args.steps}",
        "encoder": "all-MiniLM-L6-v2 (frozen)",
        "catalogue": "generate_catalogue(n_items=160, n_weeks=104, seed=<seed>)",
        "settings": {name: {**COMMON, **SETTINGS[name]} for name in args.settings},
        "runs": results,
        "summary": summary.to_dict(orient="records"),
    }
    lines = [
        "# Faithfulness of the LM's word attributions (synthetic catalogue)",
        "",
        f"`{payload['command']}`; frozen all-MiniLM-L6-v2, integrated gradients with "
        f"{args.steps} steps, {args.items} items per run.",
        "",
        markdown(summary),
        "",
        "Per run:",
        "",
        markdown(table),
        "",
    ]
    write_results("explain_faithfulness", payload, "\n".join(lines), args.out, argv)


if __name__ == "__main__":
    main()
