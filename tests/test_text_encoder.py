"""The encoder loader, item texts and the on-disk embedding cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from salesformer.errors import ConfigError
from salesformer.text import DEFAULT_ENCODER, EmbeddingCache, item_texts, load_encoder


def test_default_encoder_is_the_bundled_minilm() -> None:
    encoder = load_encoder()
    assert encoder.name == DEFAULT_ENCODER
    assert encoder.dim == 384
    assert Path(encoder.source).is_dir()
    vectors = encoder.encode(["WHITE HANGING HEART T-LIGHT HOLDER", "red retrospot cake stand"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_local_folder_loads_and_names_its_revision(tiny_encoder: str) -> None:
    encoder = load_encoder(tiny_encoder)
    assert encoder.dim == 32
    assert len(encoder.revision) == 16
    assert encoder.key.startswith(Path(tiny_encoder).name)
    tokens = encoder.tokenize(["a lamp", "a much longer product title with several words"])
    assert set(tokens) >= {"input_ids", "attention_mask"}


def test_folder_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json"):
        load_encoder(tmp_path)


def test_unknown_name_offline_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE") as info:
        load_encoder("no-such-org/no-such-encoder")
    assert "local folder" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_max_length_is_rejected() -> None:
    with pytest.raises(ConfigError, match="max_length"):
        load_encoder(max_length=2)


def test_second_run_reencodes_nothing(tiny_encoder: str, tmp_path: Path) -> None:
    texts = ["garden gnome", "christmas star", "garden gnome"]
    first = load_encoder(tiny_encoder).encode(texts, cache_dir=tmp_path)
    assert list((tmp_path).rglob("*.safetensors"))
    fresh = load_encoder(tiny_encoder)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the encoder ran although every text was cached")

    fresh.model.forward = refuse
    again = fresh.encode(texts, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[0], first[2])


def test_cache_is_keyed_by_encoder_revision(tiny_encoder: str, tmp_path: Path) -> None:
    encoder = load_encoder(tiny_encoder)
    encoder.encode(["vase"], cache_dir=tmp_path)
    other = EmbeddingCache(tmp_path, encoder.key + "-other")
    assert other.load() == {}
    assert len(EmbeddingCache(tmp_path, encoder.key).load()) == 1


def test_item_texts_use_text_then_the_template() -> None:
    items = pd.DataFrame(
        {
            "item_id": [1, 2],
            "text": ["Given text", ""],
            "title": ["ignored", "Rose vase"],
            "category": ["x", "Home"],
        }
    )
    texts = item_texts(items)
    assert list(texts.index) == ["1", "2"]
    assert texts["1"] == "Given text"
    assert texts["2"] == "Rose vase. Category: Home."


@pytest.mark.parametrize("content", ['{"text_prefix": null}', "[1, 2]", "{not json", "{}"])
def test_bad_encoder_settings_file_is_a_clear_error(
    tiny_encoder: str, tmp_path: Path, content: str
) -> None:
    import shutil

    folder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, folder)
    (folder / "salesformer_encoder.json").write_text(content)
    with pytest.raises(ConfigError, match="must be a JSON object with a text_prefix string"):
        load_encoder(folder)


def test_shared_encoder_loads_a_model_once_whatever_its_alias() -> None:
    from salesformer.text.encoder import shared_encoder

    first = shared_encoder("all-MiniLM-L6-v2", max_length=24)
    assert shared_encoder(" MiniLM ", max_length=24) is first
    assert shared_encoder("sentence-transformers/all-MiniLM-L6-v2", max_length=24) is first
