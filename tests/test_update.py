"""``Forecaster.update``: a fitted model forecasting from a later panel without training on it.

The contract suite checks the shape of every model's update; here LightGBM and the LM show that
what they learned is what the fit before the later periods learned (nothing of the later weeks,
made absurd here, reaches it) and that their forecast reads the later history; the statistical
baselines are refitted on the later panel, which is what they learn anyway.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import DataValidationError
from salesformer.models.auto import AutoForecaster
from salesformer.models.registry import make_model

H = 6


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=24, n_weeks=70, seed=5).panel()


@pytest.fixture(scope="module")
def cutoff(panel: Panel) -> pd.Timestamp:
    return panel.dates[-1 - H]


def later_with(panel: Panel, cutoff: pd.Timestamp, factor: float, new_item: bool) -> Panel:
    """``panel`` with every sale after ``cutoff`` multiplied by ``factor``, and optionally an
    item first sold after ``cutoff`` (``NEW``, with a text)."""
    sales = panel.sales.copy()
    sales.loc[sales[DATE] > cutoff, SALES] *= factor
    items = panel.items
    if new_item:
        first = sales[sales[ITEM_ID] == panel.item_ids[0]]
        first = first[first[DATE] > cutoff].assign(**{ITEM_ID: "NEW"})
        sales = pd.concat([sales, first], ignore_index=True)
        assert items is not None
        row = items.iloc[[0]].assign(**{ITEM_ID: "NEW", "text": "A brand-new lamp"})
        items = pd.concat([items, row], ignore_index=True)
    return validate_panel(
        sales, items, freq=panel.freq, known_future=panel.known_future, past_only=panel.past_only
    )


def boosters(model) -> list[str]:
    return [model.boosters_[k].model_to_string() for k in sorted(model.boosters_, key=str)]


@pytest.mark.parametrize("name", ["LightGBM", "LightGBM-text"])
def test_lightgbm_keeps_its_trees_and_reads_the_later_weeks(
    name: str, panel: Panel, cutoff: pd.Timestamp, tiny_encoder: str
) -> None:
    settings = {"n_estimators": 20, "n_jobs": 1}
    if name == "LightGBM-text":
        settings.update(encoder=tiny_encoder, text_components=4)
    early = make_model(name, **settings).fit(panel.until(cutoff))
    later = later_with(panel, cutoff, 1000.0, new_item=True)
    updated = early.update(later)
    assert boosters(updated) == boosters(early)
    np.testing.assert_array_equal(updated.log_errors_, early.log_errors_)
    out = updated.predict(H)
    assert out[DATE].min() == later.last_date + later.offset
    assert "NEW" in set(out[ITEM_ID])
    # the forecast reads the later (x1000) weeks: it is far above the early model's
    first = panel.item_ids[0]
    assert (
        out.loc[out[ITEM_ID] == first, name].mean()
        > 50 * early.predict(H).loc[lambda f: f[ITEM_ID] == first, name].mean()
    )


def test_statistical_model_is_refitted_on_the_later_panel(
    panel: Panel, cutoff: pd.Timestamp
) -> None:
    """Its learned state is each item's own fit and its conformal errors: both are cheap, and
    on the validation cutoffs errors kept from the earlier fit scored a worse wQL."""
    early = make_model("ADIDA").fit(panel.until(cutoff))
    later = later_with(panel, cutoff, 1000.0, new_item=False)
    out = early.update(later).predict(H)
    pd.testing.assert_frame_equal(out, make_model("ADIDA").fit(later).predict(H))
    assert not out.equals(early.predict(H))


def test_lm_keeps_its_weights_and_encodes_new_items(
    panel: Panel, cutoff: pd.Timestamp, tiny_encoder: str
) -> None:
    torch = pytest.importorskip("torch")
    settings = {
        "encoder": tiny_encoder,
        "horizon": H,
        "finetune": "frozen",
        "head_epochs": 1,
        "epoch_samples": 128,
        "hidden_size": 16,
        "text_size": 8,
        "threads": 1,
        "progress": False,
    }
    early = make_model("LM", **settings).fit(panel.until(cutoff))
    weights = {k: v.clone() for k, v in early.head_.state_dict().items()}
    later = later_with(panel, cutoff, 1000.0, new_item=True)
    updated = early.update(later)
    for key, value in updated.head_.state_dict().items():
        assert torch.equal(value, weights[key])
    assert updated.calibration_ is early.calibration_
    known = np.isin(updated.item_ids_, early.item_ids_)
    mapped = pd.Index(early.item_ids_).get_indexer(updated.item_ids_[known])
    np.testing.assert_array_equal(updated.item_vectors_[known], early.item_vectors_[mapped])
    new = updated.item_vectors_[list(updated.item_ids_).index("NEW")]
    np.testing.assert_allclose(new, early.encode_texts(["A brand-new lamp"])[0], rtol=1e-6)
    out = updated.predict(H)
    assert out[DATE].min() == later.last_date + later.offset
    first = panel.item_ids[0]
    late = out.loc[out[ITEM_ID] == first, "LM"].mean()
    assert late > 50 * early.predict(H).loc[lambda f: f[ITEM_ID] == first, "LM"].mean()


def test_auto_without_refit_forecasts_with_the_models_it_validated(panel: Panel) -> None:
    candidates = ("LightGBM", "ADIDA")
    settings = {"LightGBM": {"n_estimators": 20, "n_jobs": 1}}
    auto = AutoForecaster(
        candidates=candidates, candidate_settings=settings, horizon=H, min_segment_series=3
    ).fit(panel)
    assert auto.refit is False
    cutoff = panel.dates[-1 - H]
    early = make_model("LightGBM", **settings["LightGBM"]).fit(panel.until(cutoff))
    assert "LightGBM" in auto.models_
    assert boosters(auto.models_["LightGBM"]) == boosters(early)
    assert set(auto.report_["seconds"]["LightGBM"]) == {"validation", "final"}
    refit = AutoForecaster(
        candidates=candidates,
        candidate_settings=settings,
        horizon=H,
        min_segment_series=3,
        refit=True,
    ).fit(panel)
    assert refit.weights_ == auto.weights_  # the same validation, the same choices
    whole = make_model("LightGBM", **settings["LightGBM"]).fit(panel)
    assert boosters(refit.models_["LightGBM"]) == boosters(whole)
    assert "refitted" in refit.describe().splitlines()[0]
    assert "fitted once" in auto.describe().splitlines()[0]


def test_update_refuses_other_covariates(panel: Panel) -> None:
    fitted = make_model("Naive").fit(panel)
    fewer = validate_panel(panel.sales[[ITEM_ID, DATE, SALES]], panel.items, freq=panel.freq)
    with pytest.raises(DataValidationError, match="covariates"):
        fitted.update(fewer)
