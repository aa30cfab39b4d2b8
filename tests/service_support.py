"""Fixtures of the service tests: a tiny fitted LM, a throwaway PostgreSQL server, stores.

Loaded by the ``test_service*.py`` modules as a plugin (``pytest_plugins``). Every store
test runs twice, on SQLite and on a real PostgreSQL server started here (initdb into a
temporary folder, ``pg_ctl start`` on a free port, stopped at the end); the PostgreSQL runs
skip with the reason when the server binaries are missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TINY_LM: dict[str, Any] = {
    "head_epochs": 3,
    "finetune": "frozen",
    "epoch_samples": 400,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "horizon": 6,
    "threads": 1,
    "progress": False,
}
_counter = itertools.count()


def find_free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """:func:`find_free_port`, for tests that start servers."""
    return find_free_port


@pytest.fixture(scope="session")
def served_model(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LM (frozen random BERT) fitted on a small catalogue and saved to a folder."""
    pytest.importorskip("torch")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.lm import LMForecaster

    panel = generate_catalogue(n_items=12, n_weeks=60, seed=5).panel()
    model = LMForecaster(encoder=tiny_encoder, **TINY_LM).fit(panel)
    folder = tmp_path_factory.mktemp("served") / "model"
    model.save(folder)
    return folder


@pytest.fixture(scope="session")
def loaded_model(served_model: Path) -> Any:
    from salesformer.models.persist import load_model

    return load_model(served_model)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server; yields its base URL (without a database name)."""
    pytest.importorskip("psycopg")
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="salesformer-pg-"))
    data = root / "data"
    port = find_free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: use the postgres account
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' account to run the server as")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run(
            [*run_as, str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-o", options,
             "-l", str(root / "log"), "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def new_postgres_db(base: str) -> str:
    """A fresh, empty database on the server; its URL."""
    import psycopg

    name = f"events_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A factory of empty store locations of one kind (an SQLite path or a PostgreSQL URL)."""
    if request.param == "sqlite":
        return lambda: str(tmp_path / f"events-{next(_counter)}.db")
    base = request.getfixturevalue("postgres_server")
    return lambda: new_postgres_db(base)
