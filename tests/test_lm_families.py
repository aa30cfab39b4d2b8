"""The LM with tiny random models of each family: BERT, RoBERTa, MPNet, GPT-2, Llama, Qwen2.

Each model is built from its config (2 layers, 32 wide, a byte-pair tokenizer trained here on
a few words), saved with ``save_pretrained`` and passed as ``encoder=<folder>``, exactly as a
user would. Decoder tokenizers are saved without a pad token, the case the loader must handle.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("tokenizers")

import tokenizers
import torch
import transformers

from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.encoding import trainable_encoder
from salesformer.text.encoder import load_encoder
from salesformer.text.families import FAMILIES, Family, lora_targets, pool

ENCODERS = ("bert", "roberta", "mpnet")
DECODERS = ("gpt2", "llama", "qwen2")
TINY: dict[str, Any] = {
    "head_epochs": 1,
    "finetune_epochs": 1,
    "epoch_samples": 64,
    "batch_items": 8,
    "origins_per_item": 2,
    "hidden_size": 16,
    "text_size": 4,
    "threads": 1,
    "max_length": 16,
}
WIDTH = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


def _config(family: str, vocab: int, pad: int | None) -> Any:
    common = {"vocab_size": vocab, "intermediate_size": 64, **WIDTH}
    if family == "bert":
        return transformers.BertConfig(max_position_embeddings=64, **common)
    if family == "roberta":
        return transformers.RobertaConfig(max_position_embeddings=80, pad_token_id=pad, **common)
    if family == "mpnet":
        return transformers.MPNetConfig(max_position_embeddings=80, pad_token_id=pad, **common)
    if family == "gpt2":
        return transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2)
    if family == "llama":
        return transformers.LlamaConfig(num_key_value_heads=2, **common)
    return transformers.Qwen2Config(num_key_value_heads=2, **common)


def _tokenizer(words: list[str], decoder: bool) -> Any:
    """A byte-pair tokenizer trained on ``words``; a decoder's has no pad token."""
    special = ["<unk>", "<eos>"] if decoder else ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=special[-3 if not decoder else 0]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=200, special_tokens=special)
    tok.train_from_iterator(words, trainer)
    if decoder:
        return transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>"
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=12, n_weeks=45, seed=5).panel()


@pytest.fixture(scope="module")
def family_folders(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny model folder per family, with random weights and a tokenizer."""
    assert panel.items is not None
    words = [*" ".join(panel.items["text"].astype(str)).split(), "a", "longer", "text"]
    folders = {}
    for family in (*ENCODERS, *DECODERS):
        decoder = family in DECODERS
        tokenizer = _tokenizer(words, decoder)
        assert (tokenizer.pad_token is None) == decoder
        config = _config(family, len(tokenizer), tokenizer.pad_token_id)
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"tiny-{family}")
        transformers.AutoModel.from_config(config).save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        folders[family] = str(folder)
    return folders


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
@pytest.mark.parametrize("family", [*ENCODERS, *DECODERS])
def test_each_family_fits_predicts_saves_and_loads(
    family: str, mode: str, panel: Panel, family_folders: dict[str, str], tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # peft on GPT-2's Conv1D layers
        model = LMForecaster(encoder=family_folders[family], finetune=mode, **TINY).fit(panel)
    assert model.encoder_info_["pooling"] == ("last" if family in DECODERS else "mean")
    if mode != "frozen":
        assert model.fit_report_["finetune_stage"]["epochs"] == 1
        if model.encoder_model_ is None:  # stage 1 won: keep an encoder to save all the same
            from salesformer.text.encoder import shared_encoder

            base = shared_encoder(model.encoder, model.max_length)
            model.encoder_model_ = trainable_encoder(model, base).eval()
            model.item_vectors_ = model.encode_texts(
                list(pd.Series(panel.items.set_index("item_id")["text"]).loc[model.item_ids_])  # type: ignore[union-attr]
            )
    forecast = model.predict(4)
    assert len(forecast) == 4 * len(panel.item_ids)
    assert np.isfinite(forecast["LM"]).all()
    model.save(tmp_path / "model")
    again = LMForecaster.load(tmp_path / "model")
    pd.testing.assert_frame_equal(again.predict(4), forecast)
    new = pd.DataFrame({"item_id": ["n1"], "text": ["a longer text"], "price": [3.0]})
    pd.testing.assert_frame_equal(again.predict_new(new, horizon=4), model.predict_new(new, 4))


@pytest.mark.parametrize("family", DECODERS)
def test_decoder_pooling_ignores_padding(family: str, family_folders: dict[str, str]) -> None:
    encoder = load_encoder(family_folders[family], max_length=32)
    assert encoder.pooling == "last" and encoder.family.decoder
    assert encoder.tokenizer.pad_token == encoder.tokenizer.eos_token
    text = "a longer text"
    alone = encoder.encode([text], use_cache=False)
    padded = encoder.encode([text, text + " " + " ".join(["longer"] * 12)], use_cache=False)
    assert encoder.tokenize([text, text + " longer longer"])["attention_mask"][0, -1] == 0
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-6)
    assert not np.allclose(padded[1], alone[0], atol=1e-3)  # the longer text is another vector


def test_last_token_pooling_takes_the_last_kept_token_on_either_side() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2) + 1.0
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    unit = torch.nn.functional.normalize(hidden, dim=-1)
    assert torch.equal(pool(hidden, right, "last")[0], unit[0, 1])
    assert torch.equal(pool(hidden, left, "last")[0], unit[0, 2])
    assert torch.equal(pool(hidden, right, "last")[1], unit[1, 2])
    assert not torch.equal(pool(hidden, right, "mean")[0], unit[0, 1])


@pytest.mark.parametrize("family", [*ENCODERS, *DECODERS])
def test_lora_targets_are_chosen_per_architecture(
    family: str, family_folders: dict[str, str]
) -> None:
    model = LMForecaster(encoder=family_folders[family], finetune="lora")
    base = load_encoder(family_folders[family])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wrapped = trainable_encoder(model, base)
    adapted = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1]
        for n, _ in wrapped.named_parameters()
        if ".lora_A" in n
    }
    assert adapted == set(FAMILIES[family].lora_targets), adapted
    overridden = LMForecaster(encoder=family_folders[family], lora_target_modules=("nope",))
    with pytest.raises(ConfigError, match="--lora-targets"):
        trainable_encoder(overridden, base)


def test_unknown_architecture_without_lora_targets_is_refused() -> None:
    with pytest.raises(ConfigError, match="--lora-targets"):
        lora_targets(None, Family(True, ()), "my-model")
    assert lora_targets(("a", "b"), Family(True, ()), "my-model") == ["a", "b"]


def test_models_that_cannot_be_used_give_one_line_errors(
    family_folders: dict[str, str], tmp_path: Path
) -> None:
    bare = tmp_path / "no-tokenizer"
    bare.mkdir()
    (bare / "config.json").write_text(Path(family_folders["bert"], "config.json").read_text())
    with pytest.raises(ConfigError, match="no tokenizer") as info:
        load_encoder(bare)
    assert "\n" not in str(info.value)
    t5 = tmp_path / "t5"
    tokenizer = transformers.AutoTokenizer.from_pretrained(family_folders["bert"])
    config = transformers.T5Config(
        vocab_size=len(tokenizer), d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8
    )
    transformers.T5Model(config).save_pretrained(str(t5))
    tokenizer.save_pretrained(str(t5))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        load_encoder(t5)
