"""Explanations: LM integrated gradients, LightGBM TreeSHAP, statistical components, HTML, CLI.

The LM here reads with a tiny random BERT (fast; the words' meaning does not matter to these
checks); ``test_explain_faithfulness.py`` checks, with the real encoder, that the attributions
point at the words that drive demand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("captum")

from salesformer.cli.main import run
from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError
from salesformer.explain import Explanation, explain
from salesformer.explain.faithfulness import informative_vocabulary, without_words
from salesformer.explain.html import highlight_words
from salesformer.explain.result import empty
from salesformer.explain.trees import OFFSET
from salesformer.models.lm import LMForecaster
from salesformer.models.registry import STATISTICAL_MODELS, make_model

H = 4
TINY: dict[str, Any] = {
    "horizon": H,
    "head_epochs": 3,
    "finetune_epochs": 1,
    "epoch_samples": 400,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=24, n_weeks=70, seed=11).panel()


@pytest.fixture(scope="module")
def lm(panel: Panel, tiny_encoder: str) -> LMForecaster:
    return LMForecaster(encoder=tiny_encoder, finetune="frozen", **TINY).fit(panel)


def _item(panel: Panel, position: int = 3) -> str:
    return str(np.sort(np.asarray(panel.item_ids).astype(str))[position])


def _long_item(panel: Panel) -> str:
    """The item with the longest history (at least a season: no fallback model)."""
    return str(panel.history_length().idxmax())


def _forecast_of(model: Any, item: str, horizon: int = H) -> np.ndarray:
    frame = model.predict(horizon, quantiles=())
    return frame.loc[frame[ITEM_ID] == item, model.name].to_numpy(dtype=float)


# -- the LM --------------------------------------------------------------------------------


def test_lm_attributions_explain_the_forecast_it_makes(lm: LMForecaster, panel: Panel) -> None:
    item = _item(panel)
    explanation = explain(lm, item, word_steps=True)
    np.testing.assert_allclose(
        explanation.forecast["forecast"], _forecast_of(lm, item), rtol=1e-4, atol=1e-4
    )
    assert explanation.completeness["words"]["relative_gap"] < 0.02
    assert explanation.completeness["signals"]["relative_gap"] < 0.05
    # per-step word attributions add up to the totals
    by_word = explanation.word_steps.groupby("position")["attribution"].sum()
    np.testing.assert_allclose(by_word.to_numpy(), explanation.words["attribution"], atol=1e-6)
    # the words are the text's own, at their places
    text = explanation.text
    for row in explanation.words.itertuples(index=False):
        assert text[row.start : row.end] == row.word
    groups = set(explanation.attributions["group"])
    assert {"history", "static", "calendar", "known-future", "text"} <= groups
    lags = explanation.attributions.query("group == 'history' and step == 1")
    assert len(lags) == lm.context_ + 1  # one row per lag, plus the level


def test_lm_signal_attributions_sum_to_the_change_from_the_reference(
    lm: LMForecaster, panel: Panel
) -> None:
    explanation = explain(lm, _item(panel, 5), n_steps=64)
    record = explanation.completeness["signals"]
    total = explanation.attributions["attribution"].sum()
    assert total == pytest.approx(record["attributed"], rel=1e-9)
    reference = explanation.baseline["signals"]
    forecast = explanation.forecast["forecast"].sum()
    assert record["explained"] == pytest.approx(forecast - reference, rel=1e-6)
    assert abs(total - (forecast - reference)) < 0.05 * abs(forecast - reference) + 1e-3


def test_lm_explanation_reads_the_fine_tuned_encoder(lm: LMForecaster, panel: Panel) -> None:
    import torch

    from salesformer.models.lm.forecaster import _encode_tokens
    from salesformer.text.encoder import shared_encoder

    tuned = copy.copy(lm)
    base = shared_encoder(lm.encoder, lm.max_length)
    encoder = copy.deepcopy(base.model)
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tuned.encoder_model_ = encoder.eval()
    texts = [explain_text(lm, i) for i in lm.item_ids_]
    tuned.item_vectors_ = _encode_tokens(encoder, base.tokenize(texts), batch=64)
    item = _item(panel, 2)
    explanation = explain(tuned, item)
    np.testing.assert_allclose(
        explanation.forecast["forecast"], _forecast_of(tuned, item), rtol=1e-4, atol=1e-4
    )
    assert not np.allclose(_forecast_of(tuned, item), _forecast_of(lm, item))


def explain_text(model: LMForecaster, item: str) -> str:
    from salesformer.explain.lm import _item_text

    return _item_text(model, str(item))


def test_lm_explanation_errors(lm: LMForecaster) -> None:
    with pytest.raises(DataValidationError, match="not in the model's panel"):
        explain(lm, "NO-SUCH-ITEM")
    with pytest.raises(ConfigError, match="horizon"):
        explain(lm, str(lm.item_ids_[0]), H + 1)
    with pytest.raises(ConfigError, match="baseline_token"):
        explain(lm, str(lm.item_ids_[0]), baseline_token="unk")


def test_explanation_to_dict_is_json(lm: LMForecaster, panel: Panel) -> None:
    data = json.loads(json.dumps(explain(lm, _item(panel)).to_dict()))
    assert data["model"] == "LM" and data["scale"] == "sales"
    assert len(data["forecast"]) == H and data["words"] and data["attributions"]
    assert set(data["completeness"]) == {"words", "signals"}


# -- LightGBM ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["log1p_offset", "log1p"])
def lightgbm(request: pytest.FixtureRequest, panel: Panel) -> Any:
    settings = {"max_horizon": H, "n_estimators": 10, "n_jobs": 1, "target": request.param}
    return make_model("LightGBM", quantile_method="conformal", **settings).fit(panel)


def test_lightgbm_contributions_sum_to_the_raw_prediction(lightgbm: Any, panel: Panel) -> None:
    item = _item(panel)
    explanation = explain(lightgbm, item)
    record = explanation.completeness["trees"]
    assert abs(record["gap"]) < 1e-6
    per_step = explanation.attributions.groupby("step")["attribution"].sum().to_numpy()
    log_forecast = per_step + explanation.baseline["trees"]
    np.testing.assert_allclose(
        np.expm1(log_forecast), _forecast_of(lightgbm, item), rtol=1e-5, atol=1e-5
    )
    groups = set(explanation.attributions["group"])
    assert {"history", "calendar", "step", "known-future"} <= groups
    assert "other" not in groups
    has_offset = OFFSET in set(explanation.attributions["feature"])
    assert has_offset == (lightgbm.target == "log1p_offset")


def test_lightgbm_unknown_item_is_a_one_line_error(lightgbm: Any) -> None:
    with pytest.raises(DataValidationError, match="not in the model's panel") as info:
        explain(lightgbm, "NOPE")
    first = sorted(str(i) for i in lightgbm.panel_.item_ids)[0]
    assert f"e.g. ['{first}'," in str(info.value)  # plain ids, not np.str_('...')


def test_lightgbm_text_components_form_the_text_group(panel: Panel, tiny_encoder: str) -> None:
    settings = {"max_horizon": H, "n_estimators": 10, "n_jobs": 1, "text_components": 3}
    model = make_model("LightGBM-text", encoder=tiny_encoder, **settings).fit(panel)
    explanation = explain(model, _item(panel))
    text = explanation.attributions.query("group == 'text'")
    assert set(text["feature"]) == {"static_text_pc1", "static_text_pc2", "static_text_pc3"}
    assert abs(explanation.completeness["trees"]["gap"]) < 1e-6


# -- statistical baselines -----------------------------------------------------------------


@pytest.mark.parametrize("name", STATISTICAL_MODELS)
def test_statistical_components_reproduce_the_forecast(panel: Panel, name: str) -> None:
    model = make_model(name).fit(panel)
    item = _long_item(panel)
    explanation = explain(model, item, H)
    components = explanation.components
    assert not components.empty, explanation.notes
    assert not any("do not reproduce" in note for note in explanation.notes)
    forecast = components[components["component"] == "forecast"].sort_values("step")
    raw = model._point(H)
    raw = raw[raw[ITEM_ID] == item].sort_values(DATE)[model.name].to_numpy()
    np.testing.assert_allclose(forecast["value"], raw, rtol=1e-6, atol=1e-6)


def test_seasonal_naive_names_its_source_weeks(panel: Panel) -> None:
    model = make_model("SeasonalNaive").fit(panel)
    item = _long_item(panel)
    explanation = explain(model, item, H)
    sales = panel.sales[panel.sales[ITEM_ID] == item].set_index(DATE)[SALES]
    for row in explanation.components.itertuples(index=False):
        date = explanation.forecast.loc[row.step - 1, "date"]
        source = pd.Timestamp(date) - 52 * panel.offset
        assert str(source.date()) in row.detail
        assert row.value == sales.loc[source]


def test_croston_sba_is_size_over_interval_with_the_bias_factor(panel: Panel) -> None:
    explanation = explain(make_model("CrostonSBA").fit(panel), _item(panel, 1), H)
    parts = explanation.components.set_index("component")["value"]
    forecast = explanation.components.query("component == 'forecast'")["value"].iloc[0]
    assert parts["SBA factor"] == 0.95
    assert forecast == pytest.approx(0.95 * parts["demand size"] / parts["interval"])


def test_short_history_names_the_fallback() -> None:
    catalogue = generate_catalogue(n_items=12, n_weeks=60, seed=4, new_item_share=0.5)
    panel = catalogue.panel()
    lengths = panel.history_length()
    short = str(lengths.idxmin())
    assert lengths.min() < 52
    explanation = explain(make_model("SeasonalNaive").fit(panel), short, H)
    assert any("Naive" in note and "fewer than" in note for note in explanation.notes)
    assert list(explanation.components["component"].unique()) == ["forecast"]


class _Auto:
    """Just enough of a fitted auto model: one statistical candidate with all the weight."""

    name = "auto"
    horizon = H

    def __init__(self, candidate: Any) -> None:
        self.panel_ = candidate.panel_
        self.models_ = {candidate.name: candidate}

    def item_weights(self) -> pd.DataFrame:
        ids = pd.Index(np.asarray(self.panel_.item_ids).astype(str))
        return pd.DataFrame({name: 1.0 for name in self.models_}, index=ids)


def test_auto_takes_lm_options_and_explains_its_main_candidate(panel: Panel) -> None:
    auto = _Auto(make_model("Naive").fit(panel))
    explanation = explain(auto, _item(panel), n_steps=16, word_steps=False)
    assert explanation.model == "Naive" and explanation.horizon == H
    assert explanation.notes[0].startswith("auto forecasts this item as Naive 100%")
    with pytest.raises(DataValidationError, match=r"e\.g\. \['SKU"):
        explain(auto, "NOPE")
    with pytest.raises(DataValidationError, match=r"e\.g\. \['SKU"):
        explain(auto.models_["Naive"], "NOPE")
    with pytest.raises(ConfigError, match="apply to the LM"):
        explain(auto.models_["Naive"], _item(panel), n_steps=16)


# -- HTML ----------------------------------------------------------------------------------


def _made_up(text: str, spans: list[tuple[int, int]], values: list[float]) -> Explanation:
    words = pd.DataFrame(
        {
            "position": range(len(spans)),
            "word": [text[s:e] for s, e in spans],
            "start": [s for s, _ in spans],
            "end": [e for _, e in spans],
            "attribution": values,
        }
    )
    forecast = pd.DataFrame({"step": [1], "date": [pd.Timestamp("2024-01-01")], "forecast": [1.0]})
    return Explanation("LM", "A", "integrated gradients", "sales", forecast, text=text, words=words)


def test_highlighted_words_colour_by_sign_and_escape_the_text() -> None:
    text = "Red <Mug> & tea towel"
    explanation = _made_up(text, [(0, 3), (4, 9), (12, 15)], [2.0, -1.0, 0.0])
    out = highlight_words(explanation, legend=False)
    assert "&lt;Mug&gt;" in out and "<Mug>" not in out and "&amp;" in out
    assert out.count("<span") == 4  # three words and the unread tail " towel"
    assert "rgba(26, 152, 80, 0.850)" in out  # the largest positive word: full green
    assert "rgba(215, 48, 39, 0.425)" in out  # half as large and negative: half red
    assert 'color: #999">' in out and "towel" in out


def test_highlight_needs_words() -> None:
    forecast = pd.DataFrame({"step": [1], "date": [pd.Timestamp("2024-01-01")], "forecast": [1.0]})
    explanation = Explanation("Naive", "A", "fitted components", "sales", forecast)
    with pytest.raises(ConfigError, match="no word attributions"):
        highlight_words(explanation)
    assert empty(("a",)).columns.tolist() == ["a"]


# -- faithfulness helpers ------------------------------------------------------------------


def test_informative_vocabulary_follows_the_latent_attributes() -> None:
    catalogue = generate_catalogue(n_items=80, n_weeks=20, seed=1)
    vocabulary = informative_vocabulary(catalogue.items, catalogue.truth, ["theme", "tier"])
    assert {"christmas", "festive", "luxury", "bestselling", "valentine"} <= vocabulary
    assert not {"mug", "kitchen", "category", "a", "save"} & vocabulary


def test_without_words_removes_spans() -> None:
    assert without_words("Luxury Glass Christmas Mug", [(7, 12), (0, 6)]) == "Christmas Mug"


# -- CLI and training logs -----------------------------------------------------------------


def _invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def fitted_dir(
    panel: Panel, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """An LM fitted by ``salesformer fit --log-dir``: the model folder and the log folder."""
    root = tmp_path_factory.mktemp("explain-cli")
    panel_dir = panel.save(root / "panel")
    out, logs = root / "model", root / "live-logs"
    args = ["fit", "--panel", str(panel_dir), "--model", "lm", "--horizon", str(H)]
    args += ["--encoder", tiny_encoder, "--finetune", "frozen", "--log-dir", str(logs)]
    for key in ("head_epochs", "epoch_samples", "hidden_size", "threads"):
        args += ["--set", f"{key}={TINY[key]}"]
    with pytest.raises(SystemExit) as info:
        run([*args, "--out", str(out)])
    assert info.value.code in (0, None)
    return out, logs


def test_cli_explain_prints_tables_and_writes_json(
    fitted_dir: tuple[Path, Path], panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, _ = fitted_dir
    item = _item(panel)
    target = tmp_path / "why.json"
    args = ["explain", "--model", str(model_dir), "--item", item, "--json", str(target)]
    code, out, err = _invoke([*args, "--horizon", "2", "--steps", "8"], capsys)
    assert code == 0, err
    assert "top words" in out and "completeness (words)" in out and "history" in out
    data = json.loads(target.read_text())
    assert data["item_id"] == item and len(data["forecast"]) == 2 and data["words"]


def test_cli_explain_unknown_item_is_one_line(
    fitted_dir: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "why.json"
    args = ["explain", "--model", str(fitted_dir[0]), "--item", "NOPE", "--json", str(target)]
    code, _, err = _invoke(args, capsys)
    assert code == 2
    assert err.startswith("error: item 'NOPE' is not in the model's panel")
    assert len(err.strip().splitlines()) == 1
    assert not target.exists()


def test_cli_explains_a_baseline(
    panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from salesformer.models.persist import save_model

    folder = save_model(make_model("CrostonSBA").fit(panel), tmp_path / "croston")
    code, out, err = _invoke(["explain", "--model", str(folder), "--item", _item(panel)], capsys)
    assert code == 0, err
    assert "fitted components" in out and "demand size" in out


def test_log_dir_is_refused_for_models_that_do_not_log(
    panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel_dir = panel.save(tmp_path / "panel")
    args = ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(tmp_path / "m")]
    code, _, err = _invoke([*args, "--log-dir", str(tmp_path / "logs")], capsys)
    assert code == 2 and "--log-dir applies to the models lm and auto" in err
    assert not (tmp_path / "m").exists()


def test_training_curves_are_logged_live_and_saved(fitted_dir: tuple[Path, Path]) -> None:
    pytest.importorskip("tensorboard")
    from salesformer.models.lm.training_log import history_frame, read_scalars

    model_dir, live = fitted_dir
    report = json.loads((model_dir / "config.json").read_text())["fit_report"]
    history = report["head"]["history"]
    assert history and {"train", "valid", "valid_wape", "valid_wql"} <= set(history[0])
    expected = history_frame(report)
    for folder in (live, model_dir):
        scalars = read_scalars(folder)
        assert set(scalars["tag"]) == {
            "head/train_loss",
            "head/valid_loss",
            "head/valid_wape",
            "head/valid_wql",
        }
        got = scalars.set_index(["tag", "step"])["value"]
        for row in expected.itertuples(index=False):
            assert got[(f"{row.stage}/{row.metric}", row.epoch)] == pytest.approx(row.value)


def test_validation_metrics_on_the_sales_scale() -> None:
    from salesformer.models.lm.training_log import validation_metrics

    level = np.array([np.log1p(4.0)], dtype=np.float32)
    target = np.log1p(np.array([[8.0, 0.0]])) - level[:, None]  # sales 8 and 0
    median = np.log1p(np.array([[4.0, 2.0]])) - level[:, None]  # forecast 4 and 2
    predicted = np.stack([median - 0.5, median, median + 0.5], axis=-1)
    metrics = validation_metrics(predicted, target, np.ones((1, 2)), level, (0.1, 0.5, 0.9))
    assert metrics["valid_wape"] == pytest.approx((4 + 2) / 8, abs=1e-5)
    masked = validation_metrics(predicted, target, np.array([[1.0, 0.0]]), level, (0.1, 0.5, 0.9))
    assert masked["valid_wape"] == pytest.approx(4 / 8, abs=1e-5)
    unsold = validation_metrics(predicted, target, np.array([[0.0, 1.0]]), level, (0.1, 0.5, 0.9))
    assert np.isnan(unsold["valid_wape"]) and np.isnan(unsold["valid_wql"])  # not 2 / 1e-9


def test_word_spans_skip_the_input_prefix_and_split_cjk_phrases() -> None:
    from salesformer.explain.lm import _word_spans

    text = "圣诞 陶瓷 马克杯 我们最畅销的经典款"
    prefix = "passage: "
    # token offsets in prefix + text; the last word (a space-free phrase) is three tokens
    offsets = [(0, 7), (7, 8), (9, 11), (11, 14), (14, 18), (18, 22), (22, 25), (25, 28)]
    word_ids: list[int | None] = [0, 1, 2, 3, 4, 5, 5, 5]
    keys, spans = _word_spans(word_ids, offsets, text, len(prefix))
    assert keys[:2] == [None, None]  # the prefix is no word of the item's text
    words = [text[start:end] for start, end in spans.values()]
    assert words == ["圣诞", "陶瓷", "马克杯", "我们最", "畅销的", "经典款"]  # no leading spaces
