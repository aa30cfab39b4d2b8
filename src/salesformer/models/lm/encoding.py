"""Item texts to vectors: the texts read, the trainable encoder, pooled outputs, state copies."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.errors import ConfigError
from salesformer.models.lm.settings import WORD_EMBEDDINGS_FROZEN_BY_DEFAULT
from salesformer.text.encoder import Encoder, import_torch, item_texts
from salesformer.text.families import lora_targets, pool

if TYPE_CHECKING:
    from salesformer.models.lm.settings import LMSettings


def import_peft() -> Any:
    """The ``peft`` package (LoRA), or an error naming the extra to install."""
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from salesformer.errors import MissingExtraError

        raise MissingExtraError("peft", "lm") from exc
    return peft


def texts_for(items: pd.DataFrame, ids: np.ndarray) -> list[str]:
    """Texts of ``ids`` in order; an item without a row or text reads as its id."""
    texts = item_texts(items)
    texts = texts[~texts.index.duplicated(keep="last")]
    found = texts.reindex([str(i) for i in ids])
    return [
        t if isinstance(t, str) and t.strip() else str(i) for i, t in zip(ids, found, strict=True)
    ]


def token_slice(tokens: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """Token tensors of ``rows``, trimmed to the longest text among them."""
    torch = import_torch()
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    mask = tokens["attention_mask"][index]
    width = int(mask.sum(dim=1).max()) if len(rows) else 1
    return {name: value[index][:, :width] for name, value in tokens.items()}


def pooled(
    encoder: Any,
    tokens: dict[str, Any],
    rows: np.ndarray,
    pooling: str = "mean",
    device: str = "cpu",
) -> Any:
    """Pooled encoder output of the token ``rows`` (with gradients when training).

    ``pooling`` is ``"mean"`` or ``"last"`` (:func:`salesformer.text.families.pool`); the
    tokens go to ``device``, where the encoder is.
    """
    part = token_slice(tokens, rows)
    if device != "cpu":
        part = {name: value.to(device) for name, value in part.items()}
    output = encoder(**part)
    return pool(output.last_hidden_state, part["attention_mask"], pooling)


def encode_tokens(
    encoder: Any,
    tokens: dict[str, Any],
    batch: int,
    pooling: str = "mean",
    device: str = "cpu",
) -> np.ndarray:
    """Pooled vectors of every tokenized text with a (possibly fine-tuned) encoder."""
    torch = import_torch()
    n = int(tokens["input_ids"].shape[0])
    lengths = tokens["attention_mask"].sum(dim=1).numpy()
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
    out = np.zeros((n, 0), dtype=np.float32)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            vectors = pooled(encoder, tokens, rows, pooling, device)
            parts.append((rows, vectors.float().cpu().numpy()))
    if parts:
        out = np.zeros((n, parts[0][1].shape[1]), dtype=np.float32)
        for rows, values in parts:
            out[rows] = values
    return out


def copy_state(module: Any, trainable_only: bool = False) -> dict[str, Any]:
    """A detached copy of a module's state (only its trainable tensors if asked)."""
    if trainable_only:
        names = {name for name, p in module.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in module.state_dict().items() if k in names}
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def trainable_encoder(settings: LMSettings, base: Encoder, checkpointing: bool = False) -> Any:
    """A copy of the pretrained encoder, wrapped for the fine-tuning mode.

    With ``checkpointing`` its layers recompute their activations in the backward pass
    (see :func:`checkpointed_layers_train`).
    """
    model = copy.deepcopy(base.model)
    if checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ConfigError(
                f"encoder {settings.encoder!r} ({type(model).__name__}) does not support "
                "gradient checkpointing; set LM.gradient_checkpointing=false"
            )
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
        if enable is None:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        else:
            enable({"use_reentrant": False})
    if settings.finetune == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        freeze = settings.freeze_word_embeddings
        if freeze is None:  # auto: on where the vocabulary dominates the weights
            freeze = base.name in WORD_EMBEDDINGS_FROZEN_BY_DEFAULT
        if freeze:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model
    peft = import_peft()
    targets = lora_targets(settings.lora_target_modules, base.family, settings.encoder)
    config = peft.LoraConfig(
        r=int(settings.lora_rank),
        lora_alpha=float(settings.lora_alpha),
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
    )
    try:
        return peft.get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(
            f"LoRA target modules {targets} do not match modules of encoder "
            f"{settings.encoder!r} ({str(exc).splitlines()[0][:160]}); name its attention "
            "projections with --lora-targets (BERT: query,value; GPT-2: c_attn; Llama, Qwen: "
            "q_proj,v_proj)"
        ) from exc


def stop_checkpointing(encoder: Any) -> None:
    """Turn gradient checkpointing off again (the fitted encoder only predicts)."""
    disable = getattr(encoder, "activation_checkpointing_disable", None)
    (encoder.gradient_checkpointing_disable if disable is None else disable)()


def checkpointed_layers_train(encoder: Any) -> None:
    """Let the encoder's checkpointed layers recompute in the backward pass.

    transformers checkpoints a layer only in training mode, while the fit keeps the encoder
    in eval mode (no dropout). This sets the training flag of the checkpointed layers
    themselves, not of their children, so dropout stays off.
    """
    for module in encoder.modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            module.training = True
