"""Faithfulness of the LM's word attributions, with the real encoder on the synthetic catalogue.

The generator makes some words drive demand (theme, tier and material words: "Christmas",
"Bestselling", "Luxury", "Glass"...) and others not (product nouns, categories, promotion
copy, filler). An LM reading all-MiniLM-L6-v2 (frozen) is trained on the catalogue; then, for
the first items:

* its top-attributed words must be the item's informative words far more often than chance
  (the share of informative words among the words it read);
* deleting the top-3 attributed words must move the forecast more than deleting 3 random words.

Both measure the explanation *and* what the model learned (a model may lean on a product
noun; its explanation should then say so). ``benchmarks/explain_faithfulness.py`` runs the
same checks on three catalogue seeds and two LM settings; this test is its first seed with
the default text path, on fewer items and integration steps.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("captum")

from salesformer.data.synthetic import generate_catalogue
from salesformer.explain.faithfulness import evaluate_faithfulness
from salesformer.models.lm import LMForecaster

#: The settings of ``benchmarks/explain_faithfulness.py`` (its "default" model).
SETTINGS = {
    "finetune": "frozen",
    "head_epochs": 15,
    "epoch_samples": 3000,
    "hidden_size": 64,
    "threads": 1,
    "seed": 0,
    "progress": False,
}


@pytest.mark.slow
def test_word_attributions_point_at_the_words_that_drive_demand() -> None:
    catalogue = generate_catalogue(n_items=160, n_weeks=104, seed=1)
    model = LMForecaster(**SETTINGS).fit(catalogue.panel())
    items = list(catalogue.items["item_id"].iloc[:12])
    rows = evaluate_faithfulness(model, catalogue.truth, items, k=3, n_random=5, n_steps=16)
    summary = rows.drop(columns="item_id").mean()
    shown = summary.round(3).to_dict()
    # far more often than chance (about 0.2 of the words read are informative)
    assert summary["top1"] >= 2.5 * summary["chance"], shown
    assert summary["topk"] >= 2.0 * summary["chance"], shown
    # deleting what the attributions point at matters more than deleting any words
    assert summary["delete_top"] >= 2.0 * summary["delete_random"], shown
    # the attributions account for the change from the reference text
    assert rows["relative_gap"].median() < 0.1, shown
