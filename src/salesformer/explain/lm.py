"""Explanations of the LM forecaster by integrated gradients, on the sales scale.

Two attributions of the item's point forecast (the median, mapped back to sales:
``expm1(median + level)``), each per step of the horizon and summed over it:

* **words**: integrated gradients over the encoder's input word embeddings, from a reference
  text in which every word piece is replaced by ``[PAD]`` (or ``[MASK]``) while ``[CLS]``,
  ``[SEP]``, positions and the attention mask stay as they are. Word pieces are merged into
  the words of the text (their attributions summed). Everything else (history, covariates,
  statics) is held at the item's values, so the attributions split
  ``f(text) - f(reference text)``.
* **signals**: integrated gradients over the fusion head's other inputs, from a zero reference:
  no history (the scaled window and its mask at 0, the level at 0, i.e. no sales), prices at
  the item's typical price, other known-future covariates at their training mean, calendar
  harmonics and step position at 0, static features at 0, and the text vector of the
  reference text. Attributions are grouped as ``history`` (per lag, plus the level of the
  window), ``known-future`` (per covariate), ``calendar`` (the season harmonics, the step,
  and per holiday or event covariate), ``static`` (per feature) and
  ``text`` (the pooled text vector as a whole).

Integrated gradients is exact up to the quadrature of the path integral; the completeness gap
(sum of attributions minus the change they explain) is reported for both and shrinks with
``n_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.calendars import is_calendar_column
from salesformer.errors import ConfigError, MissingExtraError
from salesformer.explain.result import (
    ATTRIBUTION_COLUMNS,
    Explanation,
    completeness,
    empty,
    unknown_item,
)
from salesformer.forecasting.protocol import resolve_future
from salesformer.models.lm.prediction import (
    encoder_on_prediction_device,
    on_prediction_device,
    origin_samples,
)
from salesformer.models.lm.samples import (
    STATIC_FEATURES,
    Samples,
    Wide,
    is_cold,
    n_calendar,
)
from salesformer.text.encoder import import_torch, item_texts, shared_encoder
from salesformer.text.families import pool

BASELINE_TOKENS = ("pad", "mask")


def import_captum() -> Any:
    """``captum.attr``, or a :class:`MissingExtraError` naming the ``report`` extra."""
    try:
        import captum.attr
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError("captum", "report") from exc
    return captum.attr


@dataclass
class _ItemInputs:
    """Everything the LM reads to forecast one item, as tensors with a batch dimension of 1."""

    hist: Any
    hist_mask: Any
    static: Any
    future: Any
    level: Any
    sample: Samples
    wide: Wide
    row: int
    dates: pd.DatetimeIndex


@dataclass
class _Text:
    """The tokenized item text and the words its pieces belong to."""

    text: str
    tokens: dict[str, Any]
    baseline_ids: Any
    word_of_token: list[int | None]
    words: list[str]
    spans: list[tuple[int, int]]
    unread_words: int


def _item_inputs(
    model: Any, item_id: str, horizon: int, future: pd.DataFrame | None
) -> _ItemInputs:
    torch = import_torch()
    panel = model.panel_
    ids = np.sort(np.asarray(panel.item_ids).astype(str))
    row = int(np.searchsorted(ids, item_id))
    if row >= len(ids) or ids[row] != item_id:
        raise unknown_item(item_id, ids)
    covariates = resolve_future(panel, horizon, future)
    wide = Wide.from_panel(panel, covariates, horizon=model.horizon)
    sample = origin_samples(model, wide).take(np.array([row]))  # predict's inputs

    def tensor(values: np.ndarray) -> Any:
        return on_prediction_device(
            model, torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        )

    return _ItemInputs(
        hist=tensor(sample.hist),
        hist_mask=tensor(sample.hist_mask),
        static=tensor(sample.static),
        future=tensor(sample.future),
        level=tensor(sample.level[:, None]),
        sample=sample,
        wide=wide,
        row=row,
        dates=panel.future_dates(panel.last_date, horizon),
    )


def _item_text(model: Any, item_id: str) -> str:
    """The text the model read for ``item_id`` (its id when the items table has none)."""
    items = model.panel_.items
    if items is None:
        return item_id
    texts = item_texts(items)
    texts = texts[~texts.index.duplicated(keep="last")]
    text = texts.get(item_id)
    return text if isinstance(text, str) and text.strip() else item_id


CJK_WORD_CHARS = 4


def _is_cjk(piece: str) -> bool:
    """Whether ``piece`` holds a CJK ideograph or kana: such text has no spaces between words."""
    return any(
        "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"
        for char in piece
    )


def _word_spans(
    word_ids: list[int | None], offsets: list[tuple[int, int]], text: str, skip: int
) -> tuple[list[object | None], dict[object, list[int]]]:
    """Group tokens into words: the key of each token's word and each word's character span.

    Tokens that end inside the first ``skip`` characters (the encoder's input prefix, such as
    E5's "passage: ") belong to no word. Spans start after any leading space. A CJK "word"
    longer than :data:`CJK_WORD_CHARS` characters is a space-free phrase or sentence, so its
    tokens become words of their own.
    """
    keys: list[object | None] = []
    token_spans: list[tuple[int, int]] = []
    for token, word in enumerate(word_ids):
        start, end = offsets[token]
        if word is None or end <= skip:
            keys.append(None)
            token_spans.append((0, 0))
            continue
        start, end = max(start, skip) - skip, end - skip
        while start < end and text[start].isspace():
            start += 1
        keys.append(word)
        token_spans.append((start, end))
    spans: dict[object, list[int]] = {}
    for key, (start, end) in zip(keys, token_spans, strict=True):
        if key is not None:
            span = spans.setdefault(key, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    phrases = {
        key
        for key, (start, end) in spans.items()
        if end - start > CJK_WORD_CHARS and _is_cjk(text[start:end])
    }
    if phrases:
        keys = [("token", i) if key in phrases else key for i, key in enumerate(keys)]
        spans = {key: span for key, span in spans.items() if key not in phrases}
        for i, key in enumerate(keys):
            if isinstance(key, tuple):
                spans[key] = list(token_spans[i])
    return keys, spans


def _tokenize(model: Any, text: str, baseline_token: str) -> _Text:
    torch = import_torch()
    encoder = shared_encoder(model.encoder, model.max_length, model.pooling)
    tokenizer, prefix = encoder.tokenizer, encoder.text_prefix
    encoded = tokenizer(
        [prefix + text],
        truncation=True,
        max_length=model.max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    offsets = [(int(a), int(b)) for a, b in encoded.pop("offset_mapping")[0].tolist()]
    keys, spans = _word_spans(encoded.word_ids(0), offsets, text, len(prefix))
    order = sorted(spans, key=lambda key: (spans[key][0], spans[key][1]))
    renumber = {key: i for i, key in enumerate(order)}
    replacement = tokenizer.pad_token_id if baseline_token == "pad" else tokenizer.mask_token_id
    if replacement is None:
        raise ConfigError(
            f"the encoder's tokenizer has no [{baseline_token.upper()}] token; "
            f"use baseline_token={'mask' if baseline_token == 'pad' else 'pad'!r}"
        )
    # Special tokens and the input prefix stay in the reference text; only words are replaced.
    kept = encoded.pop("special_tokens_mask")[0].bool() | torch.tensor([k is None for k in keys])
    baseline_ids = torch.where(
        kept, encoded["input_ids"], torch.full_like(encoded["input_ids"], replacement)
    )
    full = tokenizer(
        [prefix + text], truncation=False, add_special_tokens=False, return_offsets_mapping=True
    )
    _, all_spans = _word_spans(
        full.word_ids(0), [tuple(pair) for pair in full["offset_mapping"][0]], text, len(prefix)
    )
    return _Text(
        text=text,
        tokens={name: on_prediction_device(model, value) for name, value in encoded.items()},
        baseline_ids=on_prediction_device(model, baseline_ids),
        word_of_token=[renumber[key] if key is not None else None for key in keys],
        words=[text[spans[key][0] : spans[key][1]] for key in order],
        spans=[(spans[key][0], spans[key][1]) for key in order],
        unread_words=max(len(all_spans) - len(spans), 0),
    )


class _Forward:
    """The LM's forecast of one item on the sales scale, as functions of its inputs."""

    def __init__(self, model: Any, inputs: _ItemInputs, horizon: int) -> None:
        self.torch = import_torch()
        self.model = model
        self.head = model.head_.eval()
        self.encoder = (
            model.encoder_model_
            if model.encoder_model_ is not None
            else shared_encoder(model.encoder, model.max_length, model.pooling).model
        ).eval()
        self.pooling = str(model.encoder_info_.get("pooling", "mean"))
        self.inputs = inputs
        self.horizon = horizon
        self.median = list(model.levels).index(0.5)
        calibration = model.calibration_
        self.damping: Any = None
        if not calibration.keeps_median and not is_cold(inputs.sample)[0]:
            self.growth_edges = on_prediction_device(
                model, self.torch.tensor(calibration.growth_edges, dtype=self.torch.float32)
            )
            self.damping = on_prediction_device(
                model, self.torch.tensor(calibration.damping, dtype=self.torch.float32)
            )

    def sales(self, hist: Any, mask: Any, static: Any, future: Any, level: Any, text: Any) -> Any:
        """Point forecast, (batch, horizon), from the head's inputs (growth damped as predict)."""
        quantiles = self.head(hist, mask, static, future, text)
        growth = quantiles[:, : self.horizon, self.median]
        if self.damping is not None:  # the model's damping of the growth above the level
            bucket = self.torch.bucketize(growth.contiguous(), self.growth_edges)
            growth = growth * self.damping[bucket]
        median = growth + level
        return self.torch.expm1(median.clamp(-20.0, 20.0))

    def pooled(self, embeddings: Any, tokens: dict[str, Any]) -> Any:
        """The pooled text vector from word embeddings (batch, tokens, width)."""
        batch = embeddings.shape[0]
        extra = {
            name: value.expand(batch, -1)
            for name, value in tokens.items()
            if name in ("attention_mask", "token_type_ids")
        }
        output = self.encoder(inputs_embeds=embeddings, **extra)
        return pool(output.last_hidden_state, extra["attention_mask"], self.pooling)

    def from_words(self, embeddings: Any, tokens: dict[str, Any]) -> Any:
        """Point forecast, (batch, horizon), as a function of the word embeddings."""
        batch = embeddings.shape[0]
        x = self.inputs
        return self.sales(
            x.hist.expand(batch, -1),
            x.hist_mask.expand(batch, -1),
            x.static.expand(batch, -1),
            x.future.expand(batch, -1, -1),
            x.level.expand(batch, -1),
            self.pooled(embeddings, tokens),
        )

    def embed(self, ids: Any) -> Any:
        return self.encoder.get_input_embeddings()(ids)


def _integrate(
    function: Any, inputs: tuple[Any, ...], baselines: tuple[Any, ...], horizon: int, steps: int
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Per-step IG attributions of ``function`` (batch, horizon) and f(x), f(baseline).

    Returns the attributions of each input with a leading horizon dimension, the forecast and
    the reference forecast, both of shape (horizon,).
    """
    torch = import_torch()
    captum = import_captum()
    method = captum.IntegratedGradients(function)
    repeat = tuple(t.expand(horizon, *t.shape[1:]).contiguous() for t in inputs)
    repeat_base = tuple(t.expand(horizon, *t.shape[1:]).contiguous() for t in baselines)
    attributions = method.attribute(
        repeat,
        baselines=repeat_base,
        target=list(range(horizon)),
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=max(steps, 1) * horizon,
    )
    with torch.no_grad():
        at_input = function(*inputs)[0].cpu().numpy().astype(float)
        at_base = function(*baselines)[0].cpu().numpy().astype(float)
    return tuple(a.detach().cpu().numpy().astype(float) for a in attributions), at_input, at_base


def _integrate_total(
    function: Any, inputs: tuple[Any, ...], baselines: tuple[Any, ...], steps: int
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """IG attributions of the forecast summed over the horizon (one path, one target)."""
    torch = import_torch()
    captum = import_captum()

    def total(*args: Any) -> Any:
        return function(*args).sum(dim=1)

    method = captum.IntegratedGradients(total)
    attributions = method.attribute(
        inputs,
        baselines=baselines,
        n_steps=steps,
        method="gausslegendre",
        internal_batch_size=max(steps, 1),
    )
    with torch.no_grad():
        at_input = function(*inputs)[0].cpu().numpy().astype(float)
        at_base = function(*baselines)[0].cpu().numpy().astype(float)
    return tuple(a.detach().cpu().numpy().astype(float) for a in attributions), at_input, at_base


def _word_attributions(
    forward: _Forward, text: _Text, horizon: int, steps: int, per_step: bool
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], float, np.ndarray]:
    torch = import_torch()
    tokens = text.tokens
    with torch.no_grad():
        actual = forward.embed(tokens["input_ids"]).detach()
        reference = forward.embed(text.baseline_ids).detach()

    def function(embeddings: Any) -> Any:
        return forward.from_words(embeddings, tokens)

    if per_step:
        (by_step,), at_input, at_base = _integrate(
            function, (actual,), (reference,), horizon, steps
        )
        per_token = by_step.sum(axis=-1)  # (horizon, tokens)
    else:
        (summed,), at_input, at_base = _integrate_total(function, (actual,), (reference,), steps)
        per_token = summed.sum(axis=-1)  # (1, tokens)
    n_words = len(text.words)
    by_word = np.zeros((per_token.shape[0], n_words))
    for token, word in enumerate(text.word_of_token):
        if word is not None:
            by_word[:, word] += per_token[:, token]
    total = by_word.sum(axis=0)
    positions = np.arange(n_words)
    words = pd.DataFrame(
        {
            "position": positions,
            "word": text.words,
            "start": [s for s, _ in text.spans],
            "end": [e for _, e in text.spans],
            "attribution": total,
        }
    )
    if per_step:
        word_steps = pd.DataFrame(
            {
                "position": np.tile(positions, horizon),
                "word": np.tile(np.asarray(text.words, dtype=object), horizon),
                "step": np.repeat(np.arange(1, horizon + 1), n_words),
                "attribution": by_word.ravel(),
            }
        )
    else:
        word_steps = empty(("position", "word", "step", "attribution"))
    # special tokens ([CLS], [SEP]) keep their embedding, so all of the change is in the words
    record = completeness(float(per_token.sum()), float(at_input.sum() - at_base.sum()))
    return words, word_steps, record, float(at_base.sum()), at_input


def _signal_attributions(
    forward: _Forward, text: _Text, horizon: int, steps: int
) -> tuple[pd.DataFrame, dict[str, float], float]:
    torch = import_torch()
    x = forward.inputs
    with torch.no_grad():
        actual_text = forward.pooled(forward.embed(text.tokens["input_ids"]), text.tokens)
        reference_text = forward.pooled(forward.embed(text.baseline_ids), text.tokens)
    inputs = (x.hist, x.hist_mask, x.static, x.future, x.level, actual_text.detach())
    baselines = (
        *(torch.zeros_like(t) for t in inputs[:-1]),
        reference_text.detach(),
    )
    attributions, at_input, at_base = _integrate(forward.sales, inputs, baselines, horizon, steps)
    hist, mask, static, future, level, vector = attributions
    frame = _group_signals(forward.model, x, hist + mask, static, future, level, vector)
    total = sum(float(a.sum()) for a in attributions)
    record = completeness(total, float(at_input.sum() - at_base.sum()))
    return frame, record, float(at_base.sum())


def _group_signals(
    model: Any,
    x: _ItemInputs,
    history: np.ndarray,
    static: np.ndarray,
    future: np.ndarray,
    level: np.ndarray,
    vector: np.ndarray,
) -> pd.DataFrame:
    """Long frame ``group, feature, step, value, attribution`` from per-step IG arrays."""
    horizon, context = history.shape
    sample = x.sample
    window_sales = np.where(
        sample.hist_mask[0] > 0, np.expm1(sample.hist[0] + sample.level[0]), np.nan
    )
    rows: list[tuple[str, str, int, float, float]] = []
    known_values = _known_future_values(model, x, horizon)
    width = n_calendar(model.panel_.freq, model.standardizer_.harmonics)
    for h in range(horizon):
        step = h + 1
        for position in range(context):
            lag = context - position
            rows.append(
                ("history", f"lag {lag}", step, window_sales[position], history[h, position])
            )
        rows.append(
            ("history", "level", step, float(np.expm1(sample.level[0])), float(level[h].sum()))
        )
        calendar = future[h, :, :width].sum()
        rows.append(("calendar", "season (week of year)", step, np.nan, float(calendar)))
        rows.append(("calendar", "step position", step, float(h), float(future[h, :, width].sum())))
        for j, name in enumerate(model.standardizer_.names):
            value = known_values[name][h]
            group = "calendar" if is_calendar_column(name) else "known-future"
            rows.append((group, name, step, value, float(future[h, :, width + 1 + j].sum())))
        for j, name in enumerate(STATIC_FEATURES):
            rows.append(("static", name, step, float(sample.static[0, j]), float(static[h, j])))
        rows.append(("text", "text vector", step, np.nan, float(vector[h].sum())))
    frame = pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))
    frame["step"] = frame["step"].astype(int)
    return frame


def _known_future_values(model: Any, x: _ItemInputs, horizon: int) -> dict[str, np.ndarray]:
    """Each known-future covariate of the item over the horizon, in its own units."""
    wide = x.wide
    columns = wide.n_history + np.arange(horizon)
    return {
        name: wide.known[name][x.row, columns].astype(float) for name in model.standardizer_.names
    }


def _check_settings(model: Any, n_steps: int, baseline_token: str) -> None:
    if not hasattr(model, "head_"):
        from salesformer.errors import NotFittedError

        raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) before explaining")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 2 <= n_steps <= 1000:
        raise ConfigError(f"n_steps must be a whole number in [2, 1000]; got {n_steps!r}")
    if baseline_token not in BASELINE_TOKENS:
        raise ConfigError(
            f"baseline_token must be one of {', '.join(BASELINE_TOKENS)}; got {baseline_token!r}"
        )


def explain_lm(
    model: Any,
    item_id: str,
    horizon: int | None = None,
    *,
    future: pd.DataFrame | None = None,
    n_steps: int = 32,
    word_steps: bool = False,
    baseline_token: str = "pad",
) -> Explanation:
    """Attributions of an LM forecast to the item's words and to its other inputs.

    Args:
        model: a fitted (or loaded) :class:`~salesformer.models.lm.LMForecaster`.
        item_id: an item of the model's panel.
        horizon: steps to explain (default: the model's horizon).
        future: known-future covariates of the horizon, as for ``predict``.
        n_steps: quadrature points of the integrated-gradients path (more: smaller gap).
        word_steps: also attribute each step's forecast to the words (costs ``horizon``
            times the encoder passes of the total).
        baseline_token: the reference text's token: ``"pad"`` or ``"mask"``.

    Returns:
        An :class:`Explanation` with ``words``, ``word_steps``, ``attributions`` (sales units),
        completeness records ``"words"`` and ``"signals"``.
    """
    _check_settings(model, n_steps, baseline_token)
    horizon = model.horizon if horizon is None else horizon
    model.check_horizon(horizon)
    torch = import_torch()
    if model.threads:
        torch.set_num_threads(model.threads)
    item_id = str(item_id)
    inputs = _item_inputs(model, item_id, horizon, future)
    text = _tokenize(model, _item_text(model, item_id), baseline_token)
    forward = _Forward(model, inputs, horizon)
    with encoder_on_prediction_device(model, forward.encoder):
        words, by_step, word_record, word_base, forecast = _word_attributions(
            forward, text, horizon, n_steps, word_steps
        )
        signals, signal_record, signal_base = _signal_attributions(
            forward, text, horizon, max(n_steps, 128)
        )
    notes = [
        f"words: integrated gradients from a text of [{baseline_token.upper()}] tokens "
        f"({n_steps} steps); signals: from no history, typical prices, mean covariates "
        "and that reference text",
    ]
    if text.unread_words:
        notes.append(
            f"the model reads the first {model.max_length} tokens; the last "
            f"{text.unread_words} words of the text are not read and have no effect"
        )
    return Explanation(
        model=model.name,
        item_id=item_id,
        method="integrated gradients",
        scale="sales",
        forecast=pd.DataFrame(
            {"step": np.arange(1, horizon + 1), "date": inputs.dates, "forecast": forecast}
        ),
        text=text.text,
        words=words,
        word_steps=by_step,
        attributions=signals,
        completeness={"words": word_record, "signals": signal_record},
        baseline={"words": word_base, "signals": signal_base},
        notes=notes,
    )


def forecast_with_texts(
    model: Any, item_id: str, texts: list[str], horizon: int | None = None
) -> np.ndarray:
    """The item's point forecast, (len(texts), horizon), had its text been each of ``texts``.

    History, covariates and statics stay the item's own: only the words change. Used to
    check explanations (delete the top-attributed words and see the forecast move).
    """
    _check_settings(model, 32, "pad")
    horizon = model.horizon if horizon is None else horizon
    model.check_horizon(horizon)
    torch = import_torch()
    inputs = _item_inputs(model, str(item_id), horizon, None)
    forward = _Forward(model, inputs, horizon)
    base = shared_encoder(model.encoder, model.max_length, model.pooling)
    out = []
    with torch.no_grad(), encoder_on_prediction_device(model, forward.encoder):
        for text in texts:
            tokens = base.tokenize([text if text.strip() else str(item_id)])
            tokens = {name: on_prediction_device(model, value) for name, value in tokens.items()}
            pooled = forward.pooled(forward.embed(tokens["input_ids"]), tokens)
            x = inputs
            out.append(
                forward.sales(x.hist, x.hist_mask, x.static, x.future, x.level, pooled)[0]
                .cpu()
                .numpy()
            )
    return np.asarray(out, dtype=float).reshape(len(texts), horizon)


__all__ = ["BASELINE_TOKENS", "explain_lm", "forecast_with_texts", "import_captum"]
