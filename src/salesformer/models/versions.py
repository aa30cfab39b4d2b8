"""A model registry: numbered versions in a folder, one of them promoted.

Layout of a registry folder::

    registry/
      promoted.json            {"version": 2, "history": [1, 2]}: the served version
      versions/
        1/
          model/               a saved model (salesformer.models.persist.save_model)
          metadata.json        training span, backtest metrics, library versions, events
        2/ ...

``promoted.json`` is the pointer: it is replaced with one ``os.replace`` (a rename), so a
reader sees the old pointer or the new one, never half of either. ``history`` lists the
versions promoted so far, in order; :meth:`ModelRegistry.rollback` returns to the one before
the current. ``metadata.json`` keeps, besides what the creator wrote, ``events``: each
promotion, rollback and rejection, when, by which command, and (for a retrain) the rule and
its outcome. Versions are never deleted or changed, except for their ``events``.

Everything is JSON; models are saved by :func:`~salesformer.models.persist.save_model`, so no
pickle is ever read.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from salesformer._io import atomic_file, json_text
from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import Forecaster
from salesformer.forecasting.saved import library_versions
from salesformer.models.persist import load_model, read_config, save_model

POINTER_FILE = "promoted.json"
VERSIONS_DIR = "versions"
MODEL_DIR = "model"
METADATA_FILE = "metadata.json"
_LOCK = threading.Lock()


class RegistryError(ConfigError):
    """A registry folder, version or pointer that is missing or not as written."""


@dataclass(frozen=True)
class Version:
    """One version: its number, folder and metadata."""

    number: int
    folder: Path
    metadata: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.folder / MODEL_DIR

    @property
    def folded_through(self) -> date | None:
        """The last date whose stored sales events the model's panel holds (retrained
        versions; None for a model added from a folder)."""
        value = (self.metadata.get("data") or {}).get("events_folded_through")
        return None if value is None else date.fromisoformat(str(value))


def now_text() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def training_span(model: Forecaster) -> dict[str, Any]:
    """The first and last date, items and rows of the panel a fitted model learned from."""
    panel = getattr(model, "panel_", None)
    if panel is None:
        return {}
    return {
        "first_date": str(panel.first_date.date()),
        "last_date": str(panel.last_date.date()),
        "freq": panel.freq,
        "items": len(panel.item_ids),
        "rows": len(panel.sales),
    }


class ModelRegistry:
    """The versions under ``root`` and the pointer to the promoted one.

    Args:
        root: the registry folder; :meth:`add` creates it.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def pointer(self) -> Path:
        return self.root / POINTER_FILE

    def exists(self) -> bool:
        return (self.root / VERSIONS_DIR).is_dir()

    def _require(self) -> None:
        if not self.exists():
            raise RegistryError(
                f"{str(self.root)!r} is not a model registry (no {VERSIONS_DIR}/ folder); "
                "create one with: salesformer models add --registry DIR --model MODEL_DIR"
            )

    def numbers(self) -> list[int]:
        """The version numbers, ascending."""
        self._require()
        found = []
        for entry in (self.root / VERSIONS_DIR).iterdir():
            if entry.name.isdigit() and (entry / METADATA_FILE).is_file():
                found.append(int(entry.name))
        return sorted(found)

    def version(self, number: int) -> Version:
        """One version (raises :class:`RegistryError` when there is no such version)."""
        self._require()
        folder = self.root / VERSIONS_DIR / str(int(number))
        path = folder / METADATA_FILE
        if not path.is_file():
            raise RegistryError(
                f"registry {str(self.root)!r} has no version {number}; it has "
                f"{self.numbers()}; see: salesformer models list --registry {self.root}"
            )
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"{str(path)!r} cannot be read as JSON ({exc}); restore it from a backup"
            ) from exc
        return Version(int(number), folder, metadata)

    def versions(self) -> list[Version]:
        return [self.version(n) for n in self.numbers()]

    def state(self) -> dict[str, Any]:
        """The pointer: ``{"version": n or None, "history": [...]}``."""
        self._require()
        if not self.pointer.is_file():
            return {"version": None, "history": []}
        try:
            state = json.loads(self.pointer.read_text(encoding="utf-8"))
            version, history = state["version"], state["history"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"{str(self.pointer)!r} is not a registry pointer ({exc}); promote a version "
                f"again with: salesformer models promote --registry {self.root} VERSION"
            ) from exc
        return {"version": version, "history": list(history)}

    def promoted(self) -> Version:
        """The promoted version (raises :class:`RegistryError` when none is)."""
        number = self.state()["version"]
        if number is None:
            raise RegistryError(
                f"registry {str(self.root)!r} has no promoted version; promote one with: "
                f"salesformer models promote --registry {self.root} VERSION"
            )
        return self.version(int(number))

    def add(self, model: Forecaster | str | Path, metadata: dict[str, Any]) -> Version:
        """Store a fitted model (or copy a saved model folder) as the next version.

        Args:
            model: a fitted forecaster, or the folder of a saved one.
            metadata: what to record (``created_by``, ``backtest``, ...); the span, the
                library versions, the model name and ``created_at`` are added here.
        """
        (self.root / VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
        if isinstance(model, str | Path):
            source = Path(model)
            config = read_config(source)  # refuses a folder that is not a saved model
            fitted = load_model(source)
        else:
            source, fitted = None, model
            config = {"model": model.name}
        number, folder = self._claim()
        try:
            target = folder / MODEL_DIR
            if source is not None:
                shutil.copytree(source, target, symlinks=False)
            else:
                save_model(fitted, target)
            record = {
                "version": number,
                "model": str(config.get("model", fitted.name)),
                "created_at": now_text(),
                "training": training_span(fitted),
                "libraries": library_versions(),
                **metadata,
                "events": list(metadata.get("events", [])),
            }
            self._write_metadata(folder, record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.version(number)

    def _claim(self) -> tuple[int, Path]:
        """The next free version number and its new folder (created exclusively)."""
        base = self.root / VERSIONS_DIR
        taken = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
        number = max(taken, default=0) + 1
        while True:
            folder = base / str(number)
            try:
                folder.mkdir()
            except FileExistsError:
                number += 1
                continue
            return number, folder

    def _write_metadata(self, folder: Path, record: dict[str, Any]) -> None:
        with atomic_file(folder / METADATA_FILE) as staging:
            staging.write_text(json_text(record), encoding="utf-8")

    def record(self, number: int, event: dict[str, Any]) -> None:
        """Append an event (promotion, rollback, rejection) to a version's metadata."""
        with _LOCK:
            found = self.version(number)
            metadata = dict(found.metadata)
            metadata["events"] = [*metadata.get("events", []), {"at": now_text(), **event}]
            self._write_metadata(found.folder, metadata)

    def _point(self, version: int, history: list[int]) -> None:
        with atomic_file(self.pointer) as staging:
            staging.write_text(json_text({"version": version, "history": history}))
            with open(staging, "rb") as handle:
                os.fsync(handle.fileno())

    def promote(self, number: int, command: str, **details: Any) -> Version:
        """Make ``number`` the served version (the pointer is switched in one rename)."""
        found = self.version(number)
        with _LOCK:
            state = self.state()
            history = [*state["history"], found.number]
            self._point(found.number, history)
        self.record(found.number, {"event": "promoted", "command": command, **details})
        return found

    def rollback(self, command: str) -> Version:
        """Return to the version promoted before the current one."""
        with _LOCK:
            state = self.state()
            history = list(state["history"])
            if len(history) < 2:
                raise RegistryError(
                    f"registry {str(self.root)!r} has no earlier promoted version to roll back "
                    f"to (promotions so far: {history}); promote a version by number instead"
                )
            left = history.pop()
            back = history[-1]
            self._point(back, history)
        self.record(left, {"event": "rolled back", "command": command, "to": back})
        self.record(back, {"event": "restored", "command": command, "from": left})
        return self.version(back)


def summary_rows(registry: ModelRegistry) -> list[dict[str, Any]]:
    """One row per version for ``salesformer models list``."""
    current = registry.state()["version"]
    rows = []
    for found in registry.versions():
        meta = found.metadata
        scores = (meta.get("backtest") or {}).get("challenger") or {}
        training = meta.get("training") or {}
        promoted = [e["at"] for e in meta.get("events", []) if e.get("event") == "promoted"]
        rows.append(
            {
                "version": found.number,
                "promoted": found.number == current,
                "model": meta.get("model"),
                "trained": f"{training.get('first_date', '?')}..{training.get('last_date', '?')}",
                "wape": scores.get("wape"),
                "wql": scores.get("wql"),
                "decision": (meta.get("decision") or {}).get("outcome", ""),
                "created": meta.get("created_at"),
                "last_promoted": promoted[-1] if promoted else "",
            }
        )
    return rows
