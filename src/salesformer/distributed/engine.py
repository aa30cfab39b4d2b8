"""Choosing the engine and connecting to Ray: a local cluster or an existing one.

``ray_session`` starts a local Ray when no address is given (one worker per core unless told
otherwise), or connects to an existing cluster (``host:6379``, ``ray://host:10001`` through
Ray Client, or ``auto``; the ``RAY_ADDRESS`` environment variable as Ray reads it). It shuts
down only a Ray it started, and reuses a Ray this process already initialised.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from salesformer.errors import ConfigError

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = "the ray engine needs Ray: pip install 'salesformer[ray]'"


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else a :class:`ConfigError`."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return engine


def import_ray() -> ModuleType:
    """The ``ray`` module; a :class:`ConfigError` with the install hint when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_INSTALL_HINT) from exc
    return ray


def check_workers(workers: int | None) -> int | None:
    """``workers`` if it is None or a whole number >= 1."""
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ConfigError(f"workers must be a whole number >= 1; got {workers!r}")
    return workers


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[ModuleType]:
    """Yield the ``ray`` module connected to a cluster (see the module docstring).

    Args:
        address: an existing cluster (``host:6379``, ``ray://host:10001``, ``auto``); None
            reads ``RAY_ADDRESS``, and without it starts a local Ray.
        workers: CPUs of a local Ray (default: every core); ignored for an existing cluster.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    check_workers(workers)
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    target = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if target is not None:
        _check_reachable(target)
    try:
        if target is None:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
        else:
            ray.init(address=target, **options)
    except Exception as exc:  # Ray raises several kinds; the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot start or reach Ray at {target or 'a new local cluster'!r} ({reason[:200]}); "
            "start a cluster with 'ray start --head' and pass --ray-address host:6379 "
            "(or ray://host:10001), or leave the address out to start a local Ray"
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A one-line :class:`ConfigError` when ``host:port`` does not answer within ``timeout``.

    Ray itself retries an unreachable address for minutes; ``auto`` is left to Ray, which
    fails at once when no cluster runs on this machine.
    """
    if address == "auto":
        return
    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"Ray address {address!r} is not host:port; give host:6379 (the head node), "
            "ray://host:10001 (Ray Client) or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); check that "
            "'ray start --head' runs there and the port is open, or leave the address out "
            "to start a local Ray"
        ) from exc


def cluster_workers(ray: ModuleType, workers: int | None) -> int:
    """Workers to use: ``workers`` if given, else the cluster's CPUs (at least 1)."""
    if workers is not None:
        return workers
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus))


def check_engine_options(
    engine: str,
    address: str | None,
    workers: int | None,
    items_per_part: int | None,
) -> bool:
    """Whether the Ray engine was chosen; a :class:`ConfigError` for options that clash.

    ``--workers`` and ``--items-per-part`` apply to both engines (the local engine's workers
    are processes of a local pool); ``--ray-address`` only to Ray. Choosing Ray checks that
    Ray is installed.
    """
    check_workers(workers)
    if items_per_part is not None and items_per_part < 1:
        raise ConfigError(f"--items-per-part must be a whole number >= 1; got {items_per_part}")
    return ray_chosen(engine, {"--ray-address": address})


def ray_chosen(engine: str, ray_options: dict[str, Any]) -> bool:
    """Whether ``engine`` is ``ray``; with ``local``, any Ray option given is an error.

    ``ray_options`` maps each Ray-only option's flag to its value (None: not given).
    """
    check_engine(engine)
    if engine == "ray":
        import_ray()
        return True
    given = [flag for flag, value in ray_options.items() if value is not None]
    if given:
        raise ConfigError(
            f"{', '.join(given)} only apply to the Ray engine; got --engine local; "
            "add --engine ray or drop them"
        )
    return False
