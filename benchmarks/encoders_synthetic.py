"""The synthetic-catalogue part of the encoders benchmark (``python -m benchmarks.encoders``):
a backtest of the LM on the seeded synthetic catalogue, and a cold start on a larger one where
ridge and k-NN read only each encoder's embeddings. Each function is one measurement that
``benchmarks.encoders`` runs in its own process."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.cold_start import NEIGHBOURS, WEEKS
from benchmarks.encoders import (
    CATALOGUE,
    CATALOGUE_WINDOWS,
    HORIZON,
    SYNTHETIC_COLD,
    _lm,
    _one_thread,
)


def task_catalogue(encoder_name: str, lang: str) -> dict[str, Any]:
    """A backtest of the frozen LM (and a text-blind baseline) on the synthetic catalogue."""
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.evaluation.backtest import backtest
    from salesformer.evaluation.metrics import evaluate
    from salesformer.models.registry import make_model

    _one_thread()
    panel = generate_catalogue(**CATALOGUE, lang=lang).panel()
    models = [_lm(encoder_name, HORIZON), make_model("ADIDA")]
    start = time.perf_counter()
    result = backtest(models, panel, HORIZON, n_windows=CATALOGUE_WINDOWS, step=HORIZON)
    seconds = time.perf_counter() - start
    metrics = evaluate(result.scored(), models=["LM", "ADIDA"]).set_index("model")
    return {
        "series": len(result.series),
        "wape": float(metrics.loc["LM", "wape"]),
        "wql": float(metrics.loc["LM", "wql"]),
        "baseline_wape": float(metrics.loc["ADIDA", "wape"]),
        "baseline_wql": float(metrics.loc["ADIDA", "wql"]),
        "seconds": seconds,
    }


def task_synthetic_cold(encoder_name: str, lang: str) -> dict[str, Any]:
    """Cold start on the synthetic catalogue: new products' first 12 weeks from their text.

    Launches in weeks 0..59 train, launches in weeks 70..117 are forecast; the embedding
    models read only the text (and price and launch week), so their error shows how much of
    the text the encoder understands.
    """
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.evaluation.cold_start import launch_table, score
    from salesformer.models.cold_start import (
        KNNEmbedding,
        MeanLaunchCurve,
        RidgeEmbedding,
    )
    from salesformer.text import load_encoder

    _one_thread()
    panel = generate_catalogue(**SYNTHETIC_COLD, lang=lang).panel()
    dates = panel.dates
    train = launch_table(panel, dates[0], dates[59], weeks=WEEKS)
    new = launch_table(panel, dates[70], dates[117], weeks=WEEKS)
    encoder = load_encoder(encoder_name)
    rows = {}
    for model in (
        RidgeEmbedding(encoder=encoder),
        KNNEmbedding(k=NEIGHBOURS, encoder=encoder),
        MeanLaunchCurve(),
    ):
        rows[type(model).__name__] = score(new.targets, model.fit(train).predict(new))["wape"]
    return {"launches": len(new), "training_launches": len(train), "wape": rows}
