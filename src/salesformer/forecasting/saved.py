"""The saved-model folder format shared by every model: settings and versions as JSON.

A saved model is a folder with ``config.json`` (``model``, ``params``, ``versions``,
``format``, and what else the model keeps) and ``panel/``, the training panel.
"""

from __future__ import annotations

import math
import platform
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
