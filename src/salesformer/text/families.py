"""What differs between model families: encoder or decoder, pooling, pad token, LoRA targets.

Encoders (BERT, RoBERTa, XLM-R, MPNet, E5, ...) read the whole text in both directions: their
item vector is the attention-masked mean of the last hidden states. Decoders (GPT-2, Llama,
Qwen, Mistral, Phi, ...) read left to right, so their last real token has seen the whole text:
their vector is that token's state (``pooling="last"``), or the mean (``pooling="mean"``).
Decoder tokenizers often have no pad token; the loader reuses the end-of-text token and pads
on the right, so the position of every real token is the same however a batch is padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from salesformer.errors import ConfigError

#: What ``pooling`` accepts: ``auto`` is ``mean`` for encoders and ``last`` for decoders.
POOLINGS: tuple[str, ...] = ("auto", "mean", "last")


@dataclass(frozen=True)
class Family:
    """How salesformer uses one architecture (a transformers ``model_type``)."""

    decoder: bool
    lora_targets: tuple[str, ...]


_ATTENTION_QV = ("query", "value")
_PROJ_QV = ("q_proj", "v_proj")
#: The family of BERT-like encoders (MiniLM, multilingual-e5-small).
BERT_FAMILY = Family(False, _ATTENTION_QV)
#: Architectures by ``config.model_type``. LoRA targets are the attention's query and value
#: projections, named as each family names them (GPT-2 fuses q, k, v into ``c_attn``).
FAMILIES: dict[str, Family] = {
    "bert": Family(False, _ATTENTION_QV),
    "roberta": Family(False, _ATTENTION_QV),
    "xlm-roberta": Family(False, _ATTENTION_QV),
    "camembert": Family(False, _ATTENTION_QV),
    "electra": Family(False, _ATTENTION_QV),
    "mpnet": Family(False, ("q", "v")),
    "distilbert": Family(False, ("q_lin", "v_lin")),
    "deberta-v2": Family(False, ("query_proj", "value_proj")),
    "gpt2": Family(True, ("c_attn",)),
    "gpt_neox": Family(True, ("query_key_value",)),
    "llama": Family(True, _PROJ_QV),
    "mistral": Family(True, _PROJ_QV),
    "qwen2": Family(True, _PROJ_QV),
    "qwen3": Family(True, _PROJ_QV),
    "gemma": Family(True, _PROJ_QV),
    "gemma2": Family(True, _PROJ_QV),
    "phi": Family(True, _PROJ_QV),
    "phi3": Family(True, ("qkv_proj",)),
}


def model_type(config: Any) -> str:
    """The ``model_type`` of a transformers config (``""`` when it has none)."""
    return str(getattr(config, "model_type", "") or "")


def family_of(config: Any, name: str) -> Family:
    """The family of a loaded model's config; unknown architectures are guessed.

    Raises:
        ConfigError: an encoder-decoder model (T5, BART, ...), which needs decoder inputs
            this forecaster does not have.
    """
    kind = model_type(config)
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            f"encoder {name!r} is an encoder-decoder model (model_type {kind!r}), which "
            "salesformer cannot read text with; use an encoder (BERT, RoBERTa, XLM-R, MPNet, "
            "E5) or a decoder (GPT-2, Llama, Qwen, Mistral, Phi)"
        )
    if kind in FAMILIES:
        return FAMILIES[kind]
    architectures = [str(a) for a in getattr(config, "architectures", None) or []]
    decoder = bool(getattr(config, "is_decoder", False)) or any(
        a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures
    )
    return Family(decoder, ())


def resolve_pooling(pooling: str, family: Family) -> str:
    """``mean`` or ``last`` for ``pooling`` (``auto``: mean for encoders, last for decoders)."""
    if pooling not in POOLINGS:
        raise ConfigError(
            f"pooling must be one of {list(POOLINGS)}; got {pooling!r}; use auto (mean "
            "over tokens for encoders, the last token for decoders)"
        )
    if pooling == "auto":
        return "last" if family.decoder else "mean"
    return pooling


def prepare_tokenizer(tokenizer: Any, name: str, vocab_rows: int | None = None) -> None:
    """Give a tokenizer a pad token (decoders often lack one) and pad on the right.

    A pad token the model has no embedding for (id ``>= vocab_rows``, as a tokenizer class
    may add one of its own) is replaced too.

    Raises:
        ConfigError: a tokenizer with neither a pad, an end-of-text nor an unknown token.
    """
    pad_id = getattr(tokenizer, "pad_token_id", None)
    outside = vocab_rows is not None and isinstance(pad_id, int) and pad_id >= vocab_rows
    if getattr(tokenizer, "pad_token", None) is None or outside:
        spare = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "unk_token", None)
        if spare is None:
            raise ConfigError(
                f"the tokenizer of encoder {name!r} has no pad token and no end-of-text or "
                "unknown token to pad with; add a pad token to it (tokenizer.pad_token = ...) "
                "and save it with save_pretrained"
            )
        tokenizer.pad_token = spare
    tokenizer.padding_side = "right"


def lora_targets(settings_targets: tuple[str, ...] | None, family: Family, name: str) -> list[str]:
    """The LoRA target modules: the settings' if given, else the family's.

    Raises:
        ConfigError: no targets given for an architecture salesformer does not know.
    """
    if settings_targets:
        return list(settings_targets)
    if not family.lora_targets:
        raise ConfigError(
            f"no LoRA target modules are known for encoder {name!r}; name the attention's "
            "linear layers with --lora-targets (e.g. q_proj,v_proj) or use --finetune "
            "frozen or full"
        )
    return list(family.lora_targets)


def pool(hidden: Any, attention_mask: Any, pooling: str) -> Any:
    """Pooled, L2-normalised token states: the masked mean, or the last real token's state.

    ``last`` takes, in each row, the position of the last token the mask keeps, so it works
    whichever side the batch was padded on, and padding never changes the vector of a
    decoder, whose tokens see only the tokens before them.
    """
    import torch

    if pooling == "last":
        mask = attention_mask.to(torch.long)
        steps = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
        last = (steps * mask).argmax(dim=1)
        chosen = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return torch.nn.functional.normalize(chosen, p=2.0, dim=-1)
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(summed / counts, p=2.0, dim=-1)
