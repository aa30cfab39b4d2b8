"""Switching the served model to the registry's promoted version, on request or on change.

:func:`reload_promoted` reads the registry's pointer and, when it names another version than
the one served, loads that version fully and then hands it to
:meth:`~salesformer.service.core.SalesService.swap`, which switches the served reference in
one assignment: requests that began on the old model finish on it, later ones get the new
one, none fails. A version that cannot be loaded leaves the old one served (the error says
why). :class:`PointerWatcher` calls it when ``promoted.json`` changes (``--registry-poll``);
``POST /models/reload`` calls it on request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from salesformer.errors import ConfigError
from salesformer.models.versions import ModelRegistry
from salesformer.service.core import SalesService

_LOG = logging.getLogger("salesformer.service")


@dataclass(frozen=True)
class Reload:
    """The outcome of a reload: the version served before and after."""

    previous: int | None
    version: int | None

    @property
    def changed(self) -> bool:
        return self.previous != self.version


class Reloader:
    """Reloads one service from one registry; one reload at a time."""

    def __init__(self, service: SalesService, registry: str | Path | None) -> None:
        self.service = service
        self.registry = None if registry is None else ModelRegistry(registry)
        self._lock = threading.Lock()

    def reload(self) -> Reload:
        """Serve the promoted version if it is not the one served (see the module docstring)."""
        if self.registry is None:
            raise ConfigError(
                "this server serves a model folder, not a registry; start it with "
                "salesformer serve --registry DIR to switch versions"
            )
        from salesformer.models.persist import load_model

        with self._lock:
            previous = self.service.version
            promoted = self.registry.promoted()
            if promoted.number == previous:
                return Reload(previous, previous)
            model = load_model(promoted.model_dir)  # fully loaded before anything switches
            self.service.swap(model, promoted.number, promoted.folded_through, promoted.model_dir)
            _LOG.warning("serving model version %s (was %s)", promoted.number, previous)
            return Reload(previous, promoted.number)


class PointerWatcher:
    """A daemon thread that reloads when the registry's pointer file changes."""

    def __init__(self, reloader: Reloader, seconds: float) -> None:
        if reloader.registry is None:
            raise ConfigError("the pointer watcher needs a registry; give --registry")
        self.reloader = reloader
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-watcher", daemon=True)

    def _stamp(self) -> tuple[int, int] | None:
        assert self.reloader.registry is not None
        try:
            info = self.reloader.registry.pointer.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_ino

    def _run(self) -> None:
        seen = self._stamp()
        while not self._stop.wait(self.seconds):
            stamp = self._stamp()
            if stamp == seen:
                continue
            seen = stamp
            try:
                self.reloader.reload()
            except Exception as exc:  # keep serving the old model and keep watching
                _LOG.error("reload from the registry failed, still serving the old model: %s", exc)

    def start(self) -> PointerWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
