"""A fitted LightGBM forecaster's learned state on disk, so that loading does not refit.

Layout inside the model folder (next to ``config.json`` and ``panel/``):

- ``boosters/point.txt`` and ``boosters/q<level>.txt``: each booster in LightGBM's own text
  model format (``Booster.save_model``; no pickle);
- ``static.parquet``: the static item features the boosters read (for LightGBM-text the PCA
  scores of the item texts, so a loaded model needs no text encoder);
- ``config.json``'s ``state``: the feature names, monotone constraints, smearing factor and
  conformal log errors, and which booster file holds which level.

Models retrained for a horizon beyond ``max_horizon`` are not kept: they are retrained on the
saved panel when asked for, as after a fresh fit. A folder saved before this state existed has
no ``state`` and is refitted from its panel, as before.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.errors import ConfigError

BOOSTERS_DIR = "boosters"
STATIC_FILE = "static.parquet"
POINT = "point"
_FILE_NAME = re.compile(r"^(point|q[0-9]+(\.[0-9]+)?)\.txt$")
_HINT = "refit the model with 'salesformer fit', or restore the folder from a backup"


def booster_file(level: float | None) -> str:
    """``point.txt`` for the point model, ``q0.1.txt`` for level 0.1."""
    return f"{POINT}.txt" if level is None else f"q{float(level):g}.txt"


def save_state(model: Any, folder: Path) -> dict[str, Any]:
    """Write ``model``'s boosters and static features into ``folder``; the JSON state."""
    target = folder / BOOSTERS_DIR
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for level, booster in model.boosters_.items():
        name = booster_file(level)
        booster.save_model(str(target / name))
        files[POINT if level is None else repr(float(level))] = name
    static = model.static_
    if static is not None:
        static.rename_axis(ITEM_ID).reset_index().to_parquet(folder / STATIC_FILE, index=False)
    return {
        "boosters": files,
        "feature_names": list(model.feature_names_),
        "monotone": [int(v) for v in model.monotone_],
        "smearing": float(model.smearing_),
        "log_errors": np.asarray(model.log_errors_, dtype=float).tolist(),
        "static": static is not None,
    }


def _fail(folder: Path, what: str) -> ConfigError:
    return ConfigError(f"{str(folder)!r} holds a LightGBM model whose {what}; {_HINT}")


def restore_state(model: Any, folder: Path, state: dict[str, Any], lightgbm: ModuleType) -> None:
    """Set ``model``'s boosters and learned values from a folder written by :func:`save_state`.

    Every name and shape is checked against the model's settings before a file is read;
    anything out of place is a one-line :class:`ConfigError`.
    """
    files = state.get("boosters")
    names = state.get("feature_names")
    monotone = state.get("monotone")
    smearing = state.get("smearing")
    errors = state.get("log_errors")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _FILE_NAME.match(v) for k, v in files.items()
    ):
        raise _fail(folder, "state.boosters is not a map of levels to booster files")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(folder, "state.feature_names is not a list of names")
    if not isinstance(monotone, list) or len(monotone) != len(names):
        raise _fail(folder, "state.monotone does not match its features")
    if not isinstance(smearing, int | float) or not math.isfinite(smearing) or smearing <= 0:
        raise _fail(folder, f"state.smearing is not a positive number (got {smearing!r:.40})")
    try:
        log_errors = np.asarray(errors, dtype=float).reshape(-1, model.max_horizon)
    except (TypeError, ValueError) as exc:
        steps = model.max_horizon
        raise _fail(folder, f"state.log_errors is not a table of {steps} steps") from exc
    if not np.isfinite(log_errors).all():
        raise _fail(folder, "state.log_errors holds values that are not finite")
    boosters: dict[float | None, Any] = {}
    for key, name in files.items():
        try:
            level = None if key == POINT else float(key)
        except ValueError as exc:
            raise _fail(folder, f"booster level {key!r:.40} is not a number") from exc
        path = folder / BOOSTERS_DIR / name
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except Exception as exc:  # LightGBMError, OSError: a missing or damaged file
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise _fail(folder, f"booster file {name!r} cannot be read ({first})") from exc
        if booster.feature_name() != names:
            raise _fail(folder, f"booster file {name!r} reads other features than state lists")
        boosters[level] = booster
    wanted = set()
    if model.quantile_method == "lightgbm":
        wanted = {float(q) for q in model.quantile_levels}
    if boosters and (None not in boosters or {k for k in boosters if k is not None} != wanted):
        raise _fail(folder, "boosters do not match its quantile_levels and quantile_method")
    static = None
    if state.get("static"):
        try:
            frame = pd.read_parquet(folder / STATIC_FILE)
            static = frame.set_index(ITEM_ID).astype(float)
        except Exception as exc:  # OSError, ArrowInvalid, KeyError: missing or damaged
            raise _fail(folder, f"{STATIC_FILE} cannot be read ({type(exc).__name__})") from exc
        static.index = static.index.astype(str)
    model.boosters_ = boosters
    model.feature_names_ = list(names)
    model.monotone_ = [int(v) for v in monotone]
    model.smearing_ = float(smearing)
    model.log_errors_ = log_errors
    model.static_ = static
