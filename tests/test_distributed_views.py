"""Pieces of the Ray engine that need no Ray: model views of a subset of items, and parts.

``model.for_items(part).predict(h)`` must equal ``model.predict(h)`` restricted to the part's
items, exactly, for every registered model: the Ray engine's results rest on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from salesformer.data.contract import ITEM_ID, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.cli import check_engine_options
from salesformer.distributed.parts import iter_parts, scan_panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.models.base import Forecaster
from salesformer.models.registry import STATISTICAL_MODELS, available_models, make_model

HORIZON = 6
FAST_LGBM: dict[str, Any] = {"n_estimators": 20, "quantile_n_estimators": 10, "n_jobs": 1}
TINY_LM: dict[str, Any] = {
    "finetune": "frozen",
    "horizon": HORIZON,
    "head_epochs": 2,
    "epoch_samples": 300,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=30, n_weeks=70, seed=3).panel()


def subset(panel: Panel, ids: np.ndarray) -> Panel:
    """The rows of ``ids`` in the sales and items tables, as a part is built."""
    sales = panel.sales[panel.sales[ITEM_ID].isin(ids)].reset_index(drop=True)
    assert panel.items is not None
    items = panel.items[panel.items[ITEM_ID].isin(ids)].reset_index(drop=True)
    return Panel(sales, items, panel.freq, panel.known_future, panel.past_only)


def assert_views_equal(model: Forecaster, panel: Panel, horizon: int = HORIZON) -> None:
    """Views of parts, from the model and from its shareable copy, equal the whole exactly."""
    full = model.predict(horizon)
    ids = panel.item_ids
    shared = model.shareable(horizon)
    for chosen in (ids[3:14], ids[14:], ids[20:23], ids[5:6]):
        expected = full[full[ITEM_ID].isin(chosen)].reset_index(drop=True)
        part = subset(panel, chosen)
        assert_frame_equal(model.for_items(part).predict(horizon), expected)
        assert_frame_equal(shared.for_items(part).predict(horizon), expected)


@pytest.mark.parametrize("name", STATISTICAL_MODELS)
def test_statistical_views_equal_the_whole(panel: Panel, name: str) -> None:
    assert_views_equal(make_model(name).fit(panel), panel)


def test_native_intervals_view(panel: Panel) -> None:
    assert_views_equal(make_model("AutoETS", intervals="native").fit(panel), panel)


@pytest.mark.parametrize(
    "settings",
    [{}, {"max_horizon": 4}, {"quantile_method": "conformal", "bias_correction": True}],
    ids=["default", "longer-horizon", "conformal"],
)
def test_lightgbm_views_equal_the_whole(panel: Panel, settings: dict[str, Any]) -> None:
    model = make_model("LightGBM", **FAST_LGBM, **settings).fit(panel)
    assert_views_equal(model, panel)


def test_lightgbm_text_view(panel: Panel, tiny_encoder: str) -> None:
    model = make_model("LightGBM-text", encoder=tiny_encoder, text_components=4, **FAST_LGBM).fit(
        panel
    )
    assert_views_equal(model, panel)


def test_lm_view_and_panel_free_load(panel: Panel, tiny_encoder: str, tmp_path: Path) -> None:
    from salesformer.models.lm import LMForecaster

    model = LMForecaster(encoder=tiny_encoder, **TINY_LM).fit(panel)
    assert_views_equal(model, panel)
    model.save(tmp_path / "lm")
    bare = LMForecaster.load(tmp_path / "lm", panel=False)
    assert not hasattr(bare, "panel_")
    part = subset(panel, panel.item_ids[:9])
    expected = model.predict(HORIZON)
    expected = expected[expected[ITEM_ID].isin(panel.item_ids[:9])].reset_index(drop=True)
    assert_frame_equal(bare.for_items(part).predict(HORIZON), expected)
    stranger = Panel(part.sales.assign(item_id="no-such-item"), None, part.freq, part.known_future)
    with pytest.raises(ConfigError, match="no item vector"):
        bare.for_items(stranger)


def test_auto_view(panel: Panel) -> None:
    model = make_model(
        "auto",
        candidates=("LightGBM", "ADIDA", "SeasonalNaive"),
        candidate_settings={"LightGBM": FAST_LGBM},
        horizon=HORIZON,
        min_segment_series=5,
    ).fit(panel)
    assert_views_equal(model, panel)


def test_every_registered_model_has_a_view() -> None:
    missing = [
        name
        for name in available_models()
        if type(make_model(name)).for_items is Forecaster.for_items
    ]
    assert missing == []


def test_shareable_copy_refuses_other_horizons(panel: Panel) -> None:
    lean = make_model("SeasonalNaive").fit(panel).shareable(HORIZON)
    assert not hasattr(lean, "panel_")
    view = lean.for_items(subset(panel, panel.item_ids[:5]))
    with pytest.raises(ConfigError, match="shareable"):
        view.predict(HORIZON + 2)
    boosted = make_model("LightGBM", **FAST_LGBM, max_horizon=4).fit(panel).shareable(4)
    with pytest.raises(ConfigError, match="shareable"):
        boosted.for_items(subset(panel, panel.item_ids[:5])).predict(5)


def test_unfitted_model_has_no_view(panel: Panel) -> None:
    for name in ("Naive", "LightGBM", "LM", "auto"):
        with pytest.raises(NotFittedError, match="not fitted"):
            make_model(name).for_items(panel)


# -- parts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


@pytest.mark.parametrize("size", [1, 7, 30, 100])
def test_parts_hold_every_item_once_in_order(saved: Path, panel: Panel, size: int) -> None:
    parts = list(iter_parts(saved, size))
    whole = Panel.load(saved)
    assert [p.index for p in parts] == list(range(len(parts)))
    assert len(parts) == scan_panel(saved).n_parts(size) == -(-30 // size)
    seen = [p.to_panel() for p in parts]
    assert all(len(p.item_ids) <= size for p in seen)
    ids = np.concatenate([p.item_ids for p in seen])
    assert list(ids) == sorted(whole.item_ids)
    sales = pd.concat([p.sales for p in seen], ignore_index=True)
    assert_frame_equal(sales, whole.sales)
    assert whole.items is not None
    for part in seen:
        assert part.items is not None
        expected = whole.items[whole.items[ITEM_ID].isin(part.item_ids)]
        assert_frame_equal(
            part.items.sort_values(ITEM_ID).reset_index(drop=True),
            expected.sort_values(ITEM_ID).reset_index(drop=True),
        )


def test_small_batches_cut_items_whole(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import salesformer.distributed.parts as parts_module

    monkeypatch.setattr(parts_module, "_BATCH_ROWS", 17)  # items straddle record batches
    sizes = [p.to_panel().sales.groupby(ITEM_ID).size() for p in iter_parts(saved, 4)]
    whole = Panel.load(saved).sales.groupby(ITEM_ID).size()
    assert_series_equal_sorted(pd.concat(sizes), whole)


def assert_series_equal_sorted(got: pd.Series, expected: pd.Series) -> None:
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index())


def test_unsorted_panel_file_is_sorted(saved: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "shuffled"
    shutil.copytree(saved, folder)
    frame = pd.read_parquet(folder / "panel.parquet")
    frame.sample(frac=1.0, random_state=0).to_parquet(folder / "panel.parquet", index=False)
    layout = scan_panel(folder)
    assert not layout.is_sorted
    assert layout.n_items == 30
    sales = pd.concat([p.to_panel().sales for p in iter_parts(folder, 8)], ignore_index=True)
    assert_frame_equal(sales, Panel.load(saved).sales)


def test_layout_dates_and_roles(saved: Path, panel: Panel) -> None:
    layout = scan_panel(saved)
    assert layout.is_sorted
    assert layout.dates.equals(panel.dates)
    assert layout.freq == panel.freq
    assert layout.known_future == panel.known_future
    assert layout.n_rows == len(panel.sales)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_part_size(saved: Path, size: Any) -> None:
    with pytest.raises(ConfigError, match="items_per_part"):
        next(iter_parts(saved, size))


# -- engine options ------------------------------------------------------------------------


def test_ray_address_needs_the_ray_engine() -> None:
    with pytest.raises(ConfigError, match="--ray-address only apply to the Ray engine"):
        check_engine_options("local", "auto", None, None)


@pytest.mark.parametrize(
    ("workers", "size", "named"), [(0, None, "workers must be"), (None, 0, "--items-per-part")]
)
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_engine_options_are_checked_for_both_engines(
    engine: str, workers: int | None, size: int | None, named: str
) -> None:
    """``--workers`` and ``--items-per-part`` apply to the local engine too (its pool)."""
    if engine == "ray":
        pytest.importorskip("ray")
    with pytest.raises(ConfigError, match=named):
        check_engine_options(engine, None, workers, size)
    assert check_engine_options("local", None, 2, 5) is False


def test_unknown_engine_and_missing_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    with pytest.raises(ConfigError, match="unknown engine"):
        check_engine_options("spark", None, None, None)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'salesformer\[ray\]'"):
        check_engine_options("ray", None, None, None)
    assert check_engine_options("local", None, None, None) is False
