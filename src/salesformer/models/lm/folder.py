"""Checking a saved LM folder before anything is built or loaded from it.

A model folder is input like any other: it may be truncated, edited or hostile. Before the
encoder is loaded or a tensor allocated, :func:`check_lm_folder`

1. reads ``config.json`` strictly and checks it against its schema: every setting known and
   within its declared range (:data:`~salesformer.models.lm.settings.LM_CONSTRAINTS`),
   every piece of fitted state present, of its type and within bounds;
2. resolves the encoder: a packaged encoder name, a folder *inside* the model folder (saving
   copies a local encoder there), or a Hugging Face model id; never a path outside the folder;
3. checks each safetensors file's header (whole, not truncated) and that its shapes are the
   ones the config implies (the head is built on torch's ``meta`` device, which allocates
   nothing, to know them).

Every failure is a :class:`~salesformer.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salesformer.errors import ConfigError
from salesformer.forecasting.saved import CONFIG_FILE, read_json_config, safetensors_shapes
from salesformer.models.lm.samples import LEGACY_HARMONICS, n_calendar
from salesformer.text.encoder import is_packaged_encoder

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster

HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder.safetensors"
ADAPTER_DIR = "adapter"
VECTORS_FILE = "item_vectors.safetensors"
#: The copy of a local base encoder inside a model folder.
BASE_ENCODER_DIR = "base_encoder"

HINT = "refit the model with 'salesformer fit', or restore the folder from a backup"
#: Settings a folder must state: they decide the network's shapes and its forecasts.
REQUIRED_PARAMS = ("encoder", "finetune", "horizon", "quantile_levels", "hidden_size")
REQUIRED_STATE = (
    "context",
    "n_future",
    "standardizer",
    "encoder",
    "fine_tuned_encoder",
    "item_ids",
)
#: Bounds of the fitted state (sizes beyond them are not a model salesformer wrote).
MAX_CONTEXT = 100_000
MAX_FUTURE = 10_000
MAX_TEXT_DIM = 65_536
MAX_ITEMS = 50_000_000
MAX_HARMONICS = 26
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class CheckedFolder:
    """What :func:`check_lm_folder` found: the settings and state to build the model from."""

    params: dict[str, Any]
    state: dict[str, Any]
    config: dict[str, Any]
    encoder: str


def _field(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}; {HINT}")


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field(where, f"must be a whole number from {low} to {high}; got {value!r:.60}")
    return value


def _checked_params(cls: type[LMForecaster], params: Any, where: str) -> dict[str, Any]:
    """The settings as the constructor takes them, checked against the constraints table."""
    if not isinstance(params, dict):
        raise _field(f"{where} params", f"must be an object; got {type(params).__name__}")
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _field(f"{where} params", f"unknown settings {unknown[:5]}")
    missing = [key for key in REQUIRED_PARAMS if key not in params]
    if missing:
        raise _field(f"{where} params", f"missing settings {missing}")
    out = dict(params)
    for key in ("quantile_levels", "lora_target_modules"):
        if key in out and not (key == "lora_target_modules" and out[key] is None):
            value = out[key]
            if not isinstance(value, list) or len(value) > 1000:
                raise _field(f"{where} params.{key}", f"must be a list; got {value!r:.60}")
            out[key] = tuple(value)
    modules = out.get("lora_target_modules") or ()
    if not all(isinstance(m, str) and m for m in modules):
        raise _field(f"{where} params.lora_target_modules", "must name modules (strings)")
    for key in ("encoder", "cache_dir", "log_dir"):
        if key in out and out[key] is not None and not isinstance(out[key], str):
            raise _field(f"{where} params.{key}", f"must be a string; got {out[key]!r:.60}")
    if out.get("progress") not in (None, True, False):
        raise _field(
            f"{where} params.progress", f"must be true, false or null; got {out['progress']!r:.60}"
        )
    try:
        cls(**out).check_params()
    except ConfigError as exc:
        raise _field(f"{where} params", str(exc).splitlines()[0]) from exc
    except (TypeError, ValueError) as exc:
        raise _field(f"{where} params", f"{type(exc).__name__}: {exc}") from exc
    return out


def _checked_state(state: Any, where: str) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise _field(f"{where} state", f"must be an object; got {type(state).__name__}")
    missing = [key for key in REQUIRED_STATE if key not in state]
    if missing:
        raise _field(f"{where} state", f"missing fields {missing}")
    _whole(state["context"], f"{where} state.context", 1, MAX_CONTEXT)
    _whole(state["n_future"], f"{where} state.n_future", 0, MAX_FUTURE)
    if not isinstance(state["fine_tuned_encoder"], bool):
        raise _field(f"{where} state.fine_tuned_encoder", "must be true or false")
    encoder = state["encoder"]
    if not isinstance(encoder, dict):
        raise _field(f"{where} state.encoder", "must be an object")
    for key in ("name", "revision"):
        if not isinstance(encoder.get(key), str):
            raise _field(
                f"{where} state.encoder.{key}", f"must be a string; got {encoder.get(key)!r:.60}"
            )
    _whole(encoder.get("dim"), f"{where} state.encoder.dim", 1, MAX_TEXT_DIM)
    ids = state["item_ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise _field(f"{where} state.item_ids", "must be a list of item id strings")
    if not 1 <= len(ids) <= MAX_ITEMS or len(set(ids)) != len(ids):
        raise _field(
            f"{where} state.item_ids",
            f"must list each item once (1 to {MAX_ITEMS:,}); got {len(ids)} ids, "
            f"{len(set(ids))} distinct",
        )
    if state.get("calibration") is not None and not isinstance(state["calibration"], dict):
        raise _field(f"{where} state.calibration", "must be an object")
    _check_standardizer(state["standardizer"], int(state["n_future"]), where)
    return state


def _names(table: dict[str, Any], key: str, at: str) -> list[str]:
    value = table.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _field(f"{at}.{key}", f"must be a list of covariate names; got {value!r:.60}")
    return value


def _check_standardizer(standardizer: Any, n_future: int, where: str) -> None:
    """Names, price names and finite mean and spread of each known-future covariate."""
    at = f"{where} state.standardizer"
    if not isinstance(standardizer, dict):
        raise _field(at, "must be an object")
    names, prices = _names(standardizer, "names", at), _names(standardizer, "prices", at)
    if not set(prices) <= set(names) or len(set(names)) != len(names):
        raise _field(f"{at}", "prices must be among names, each name once")
    for key in ("mean", "std"):
        table = standardizer.get(key)
        if not isinstance(table, dict):
            raise _field(f"{at}.{key}", "must be an object")
        for name in names:
            value = table.get(name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not isinstance(value, int | float) or not number or (key == "std" and value <= 0):
                raise _field(f"{at}.{key}.{name}", f"must be a number; got {value!r:.40}")
    harmonics = _whole(
        standardizer.get("harmonics", LEGACY_HARMONICS), f"{at}.harmonics", 1, MAX_HARMONICS
    )
    widths = sorted({future_width(freq, harmonics, len(names)) for freq in ("W-MON", "D")})
    if n_future not in widths:
        raise _field(
            f"{where} state.n_future",
            f"is {n_future}, but {len(names)} covariates ({names}) and {harmonics} calendar "
            f"harmonics give {' or '.join(map(str, widths))} future inputs",
        )


def future_width(freq: str, harmonics: int, n_covariates: int) -> int:
    """Future inputs per step: the calendar, the step position and each covariate."""
    return n_calendar(freq, harmonics) + 1 + n_covariates


def resolve_encoder(folder: Path, encoder: str) -> str:
    """The encoder a saved model names, resolved without leaving the model folder.

    Returns:
        A packaged encoder name, an absolute folder inside ``folder``, or a Hugging Face id.

    Raises:
        ConfigError: a path that leads outside ``folder`` (or to nothing).
    """
    if is_packaged_encoder(encoder):
        return encoder
    root = folder.resolve()
    given = Path(encoder)
    local = given.is_absolute() or os.path.lexists(folder / given)
    inside = (root / given).resolve() if not given.is_absolute() else given.resolve()
    if inside.is_relative_to(root) and inside != root:
        if not inside.is_dir():
            raise _field(
                f"{str(folder / CONFIG_FILE)!r} params.encoder",
                f"names the folder {encoder!r}, which the model folder does not hold",
            )
        return str(inside)
    hub_id = not local and _HUB_ID.match(encoder) and ".." not in encoder
    if hub_id and not Path(encoder).exists():  # not a path relative to where salesformer runs
        return encoder
    raise _field(
        f"{str(folder / CONFIG_FILE)!r} params.encoder",
        f"{encoder!r} points outside the model folder; a saved model reads only a packaged "
        "encoder name, a Hugging Face id or a folder inside itself",
    )


def check_lm_folder(cls: type[LMForecaster], folder: Path) -> CheckedFolder:
    """Check a saved LM folder (see the module docstring) and return what to build it from."""
    if not folder.is_dir():
        raise ConfigError(
            f"model folder {str(folder)!r} does not exist; give a folder written by "
            "'salesformer fit' or LMForecaster.save"
        )
    where = repr(str(folder / CONFIG_FILE))
    config = read_json_config(
        folder / CONFIG_FILE, "give a folder written by 'salesformer fit' or LMForecaster.save"
    )
    if config.get("model") != "LM":
        raise ConfigError(
            f"{str(folder)!r} holds a {config.get('model')!r:.40} model, not an LM forecaster"
        )
    params = _checked_params(cls, config.get("params"), where)
    state = _checked_state(config.get("state"), where)
    if config.get("fit_report") is not None and not isinstance(config["fit_report"], dict):
        raise _field(f"{where} fit_report", "must be an object")
    encoder = resolve_encoder(folder, str(params["encoder"]))
    _check_weights(cls, folder, params, state)
    return CheckedFolder(params, state, config, encoder)


def _check_weights(
    cls: type[LMForecaster], folder: Path, params: dict[str, Any], state: dict[str, Any]
) -> None:
    """The safetensors files are whole and have the shapes the config implies."""
    dim = int(state["encoder"]["dim"])
    vectors = safetensors_shapes(folder / VECTORS_FILE, HINT)
    expected = (len(state["item_ids"]), dim)
    if vectors.get("vectors") != expected:
        raise ConfigError(
            f"{str(folder / VECTORS_FILE)!r} holds item vectors of shape "
            f"{vectors.get('vectors')}, but config.json lists {expected[0]} items of "
            f"dimension {dim} (state.item_ids, state.encoder.dim); {HINT}"
        )
    head = safetensors_shapes(folder / HEAD_FILE, HINT)
    wanted = _head_shapes(cls, params, state)
    if head != wanted:
        differ = sorted(k for k in set(head) | set(wanted) if head.get(k) != wanted.get(k))
        name = differ[0]
        raise ConfigError(
            f"{str(folder / HEAD_FILE)!r} does not match config.json: tensor {name!r} has "
            f"shape {head.get(name)} in the file, {wanted.get(name)} from the settings "
            f"({len(differ)} tensors differ); {HINT}"
        )
    if state["fine_tuned_encoder"]:
        pretrained = params.get("pretrain", "none") != "none"
        if params["finetune"] == "lora" or (params["finetune"] == "frozen" and pretrained):
            adapter = folder / ADAPTER_DIR
            if not adapter.is_dir():
                raise ConfigError(f"{str(adapter)!r} (the LoRA adapter) is missing; {HINT}")
            for weights in adapter.glob("*.safetensors"):
                safetensors_shapes(weights, HINT)
        elif params["finetune"] == "full":
            safetensors_shapes(folder / ENCODER_FILE, HINT)
        else:
            raise _field(
                f"{str(folder / CONFIG_FILE)!r} state.fine_tuned_encoder",
                "is true but params.finetune is 'frozen' and params.pretrain is 'none'",
            )


def _head_shapes(
    cls: type[LMForecaster], params: dict[str, Any], state: dict[str, Any]
) -> dict[str, tuple[int, ...]]:
    """The head's parameter shapes for these settings, from a head on the meta device."""
    from salesformer.models.lm.training import new_head
    from salesformer.text.encoder import import_torch

    torch = import_torch()
    model = cls(**params)
    model.context_ = int(state["context"])
    with torch.device("meta"):
        head = new_head(model, int(state["encoder"]["dim"]), int(state["n_future"]))
    return {name: tuple(tensor.shape) for name, tensor in head.state_dict().items()}
