"""The saved-model folder format shared by every model: settings and versions as JSON.

A saved model is a folder with ``config.json`` (``model``, ``params``, ``versions``,
``format``, and what else the model keeps) and ``panel/``, the training panel.
"""

from __future__ import annotations

import json
import math
import platform
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from salesformer._version import __version__
from salesformer.errors import ConfigError

FORMAT = 1
CONFIG_FILE = "config.json"
PANEL_DIR = "panel"
_VERSIONED = ("numpy", "pandas", "statsforecast", "lightgbm", "torch", "transformers", "peft")


def library_versions() -> dict[str, str]:
    """Versions of salesformer, Python and the libraries loaded in this process."""
    versions = {"salesformer": __version__, "python": platform.python_version()}
    for package in _VERSIONED:
        module = sys.modules.get(package)
        if module is not None:
            versions[package] = str(getattr(module, "__version__", "unknown"))
    return versions


def jsonable(value: Any, model: str, key: str = "") -> Any:
    """``value`` as JSON types; a :class:`ConfigError` names a setting that has none."""
    if isinstance(value, dict):
        return {
            str(k): jsonable(v, model, f"{key}.{k}" if key else str(k)) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(v, model, key) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    raise ConfigError(
        f"cannot save {model}: setting {key!r} is a {type(value).__name__} ({value!r}), which "
        "JSON cannot hold; give numbers, strings, booleans, lists or dicts"
    )


#: Bytes per element of the safetensors dtypes salesformer writes or reads.
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
#: A safetensors header larger than this is not one salesformer wrote.
_MAX_HEADER = 100 * 2**20


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json_config(path: Path, hint: str) -> dict[str, Any]:
    """A JSON object from ``path``, strictly: no ``NaN`` or ``Infinity``, a dict at the top.

    Raises:
        ConfigError: a missing, unreadable or malformed file, with ``hint`` as the fix.
    """
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing; {hint}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{str(path)!r} is not valid JSON ({first[:120]}); {hint}") from exc
    if not isinstance(value, dict):
        raise ConfigError(
            f"{str(path)!r} must hold a JSON object; got a {type(value).__name__}; {hint}"
        )
    return value


def safetensors_shapes(path: Path, hint: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a safetensors file, after checking that the file is whole.

    Only the header is read: each tensor must have a known dtype, a shape of non-negative
    sizes and a byte range that matches it, and the ranges must tile the data to the end of
    the file (a truncated or padded file is refused).

    Raises:
        ConfigError: a missing, truncated or malformed file, with ``hint`` as the fix.
    """
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is missing; {hint}")
    size = path.stat().st_size

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{str(path)!r} is not a whole safetensors file ({why}); {hint}")

    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, too short for a header")
        length = struct.unpack("<Q", head)[0]
        if length > min(_MAX_HEADER, size - 8):
            raise bad(f"header of {length} bytes in a file of {size}")
        try:
            header = json.loads(handle.read(length), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise bad("the header is not JSON") from exc
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    shapes: dict[str, tuple[int, ...]] = {}
    spans: list[tuple[int, int]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise bad(f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor {name!r} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise bad(f"tensor {name!r} has a bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise bad(f"tensor {name!r} has bad data offsets {offsets!r}")
        start, end = offsets
        if end - start != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise bad(f"tensor {name!r}: {end - start} bytes for shape {shape} of {dtype}")
        shapes[str(name)] = tuple(shape)
        spans.append((start, end))
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise bad("the tensors' byte ranges overlap or leave gaps")
        position = end
    if position != size - 8 - length:
        raise bad(f"the tensors need {position} bytes of data, the file holds {size - 8 - length}")
    return shapes
