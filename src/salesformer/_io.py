"""Writing outputs so that a failure never leaves a half-written file or folder, and so that
writing never deletes what salesformer did not write.

**Folders** (a saved model, a panel, a backtest, ...) are *owned*: salesformer writes an owner
file, ``.salesformer-out.json``, into each folder it writes, naming the kind of output, the
version and every file it wrote. :func:`atomic_dir` then

- writes into a new folder, or an empty one;
- replaces a folder it owns as a whole (built beside it, then renamed into place), so a
  folder never mixes the files of two runs;
- refuses, with :class:`~salesformer.errors.OutputError`, a non-empty folder it does not own,
  or an owned folder that holds files salesformer did not write (they would be lost).

**Files** (a forecast table, a report) are written beside their final place and renamed onto
it; an existing file of that name is replaced, a folder of that name is refused.

Staging folders and files carry the writer's process id (``.<name>.salesformer-staging-<pid>-*``);
those whose process is gone (a crash) are removed at the next write to the same destination.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from salesformer._version import __version__
from salesformer.errors import OutputError

#: The owner file of every folder salesformer writes.
OWNER_FILE = ".salesformer-out.json"
_TAG = ".salesformer-"
_STAGING = "staging"
_OLD = "old"
_TMP = "tmp"
_SHOWN = 3
_STAGING_DIR = re.compile(rf"^\..+{re.escape(_TAG)}{_STAGING}-\d+-[0-9a-f]+$")


def _hint(final: Path) -> str:
    return f"choose a new or empty folder (e.g. --out {final.name}-new)"


def _entries(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, as sorted relative POSIX paths."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root).relative_to(folder)
        found.extend((base / name).as_posix() for name in (*dirs, *files))
    return sorted(found)


def _owner(folder: Path) -> dict[str, object] | None:
    """The owner file's content, or None when the folder has no valid one."""
    path = folder / OWNER_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or owner.get("written_by") != "salesformer":
        return None
    if not isinstance(owner.get("files"), list):
        return None
    return owner


def _foreign_entries(folder: Path, owner: dict[str, object]) -> list[str]:
    """Entries of an owned folder that salesformer did not write there."""
    files = owner["files"]
    listed = files if isinstance(files, list) else []
    written = {str(name) for name in listed} | {OWNER_FILE}
    return [name for name in _entries(folder) if name not in written]


def check_output_dir(target: str | Path, kind: str | None = None) -> Path:
    """Raise :class:`OutputError` when ``target`` cannot be written as an output folder.

    Commands call it before any long work (``fit`` before training), so that a bad ``--out``
    fails in a second, not after an hour. Nothing is created.

    Args:
        target: the output folder.
        kind: what will be written (``"model"``, ``"panel"``, ...); a folder salesformer
            wrote with another kind of output is refused (``fit --out`` on a panel folder
            is a slip, not a wish to lose the panel). None skips that check.

    Returns:
        The target as a path.
    """
    final = Path(target)
    if final.is_symlink():
        raise OutputError(
            f"output folder {str(final)!r} is a symbolic link; salesformer does not write through "
            f"links; {_hint(final)}"
        )
    if final.exists() and not final.is_dir():
        raise OutputError(
            f"output folder {str(final)!r} is a file, not a folder; this command writes a folder; "
            f"{_hint(final)}"
        )
    if final.is_dir():
        _check_replaceable(final, kind)
    _check_writable(final)
    return final


def _check_replaceable(final: Path, kind: str | None) -> None:
    """A folder may be replaced when it is empty or owned and holds only what was written."""
    try:
        entries = _entries(final)
    except OSError as exc:
        raise OutputError(
            f"output folder {str(final)!r} cannot be read ({exc}); {_hint(final)}"
        ) from exc
    if not entries:
        return
    owner = _owner(final)
    if owner is None:
        raise OutputError(
            f"output folder {str(final)!r} was not written by salesformer and it is not empty "
            f"({len(entries)} entries, e.g. {entries[:_SHOWN]}); salesformer writes only into "
            f"new or empty folders or replaces folders it wrote; {_hint(final)}"
        )
    if kind is not None and owner.get("kind") != kind:
        raise OutputError(
            f"output folder {str(final)!r} holds a salesformer {owner.get('kind')!s:.20} output, "
            f"and this command writes a {kind}; replacing it would lose it; {_hint(final)}"
        )
    foreign = _foreign_entries(final, owner)
    if foreign:
        raise OutputError(
            f"output folder {str(final)!r} was written by salesformer but now also holds files "
            f"it did not write ({len(foreign)}, e.g. {foreign[:_SHOWN]}), which replacing it "
            f"would delete; move them out, or {_hint(final)}"
        )


def _existing_ancestor(path: Path) -> Path:
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_writable(final: Path) -> None:
    """The nearest existing folder above ``final`` accepts a new entry (probed, then removed)."""
    parent = _existing_ancestor(final.parent)
    if not parent.is_dir():
        raise OutputError(
            f"{str(final)!r} cannot be created: {str(parent)!r} is a file, not a folder; "
            "give a path under a folder"
        )
    probe = parent / f".{final.name}{_TAG}{_TMP}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise OutputError(
            f"{str(final)!r} cannot be written: {str(parent)!r} does not accept new files "
            f"({type(exc).__name__}: {exc.strerror or exc}); give a writable location"
        ) from exc


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def clean_stale(final: Path) -> list[Path]:
    """Remove staging left beside ``final`` by writers that crashed; restore a lost folder.

    A crash between moving an owned folder aside and moving its replacement in leaves the
    old folder under a staging name: it is moved back when ``final`` is missing.

    Returns:
        The paths removed or restored.
    """
    parent = final.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(final.name)}{re.escape(_TAG)}({_STAGING}|{_OLD}|{_TMP})-(\d+)-[0-9a-f]+$"
    )
    touched: list[Path] = []
    for path in sorted(parent.iterdir()):
        match = pattern.match(path.name)
        if match is None or _alive(int(match.group(2))):
            continue
        if match.group(1) == _OLD and not final.exists() and not path.is_symlink():
            os.rename(path, final)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        touched.append(path)
    return touched


def _staging_name(final: Path, kind: str) -> Path:
    return final.parent / f".{final.name}{_TAG}{kind}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _write_owner(folder: Path, kind: str) -> None:
    owner = {
        "written_by": "salesformer",
        "kind": kind,
        "salesformer_version": __version__,
        "files": _entries(folder),
    }
    (folder / OWNER_FILE).write_text(json.dumps(owner, indent=1) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, final: Path, kind: str) -> None:
    """Rename ``staging`` onto ``final``; an owned ``final`` is moved aside, then removed."""
    if not final.exists():
        os.rename(staging, final)
        return
    _check_replaceable(final, kind)  # again: files may have been added while we worked
    old = _staging_name(final, _OLD)
    os.rename(final, old)
    try:
        os.rename(staging, final)
    except OSError:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path, kind: str = "output") -> Iterator[Path]:
    """Yield a staging folder that becomes ``target`` when the block succeeds.

    ``target`` must be new, empty, or a folder salesformer wrote (see the module docstring);
    otherwise :class:`OutputError` is raised before the block runs. On success the staging
    folder, with its owner file, replaces ``target`` as a whole; on an exception it is removed
    and ``target`` is left as it was.

    Args:
        target: the output folder.
        kind: what is written (``"model"``, ``"panel"``, ``"backtest"``, ...), kept in the
            owner file.
    """
    final = Path(target)
    if _STAGING_DIR.match(final.name) and final.is_dir() and not any(final.iterdir()):
        # an empty staging folder of an enclosing write, which is atomic itself
        yield final
        _write_owner(final, kind)
        return
    clean_stale(final)
    check_output_dir(final, kind)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = _staging_name(final, _STAGING)
        staging.mkdir()
    except OSError as exc:
        raise OutputError(
            f"{str(final)!r} cannot be written ({type(exc).__name__}: "
            f"{exc.strerror or exc}); give a writable location"
        ) from exc
    try:
        yield staging
        _write_owner(staging, kind)
        _move_into_place(staging, final, kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_output_file(target: str | Path) -> Path:
    """Raise :class:`OutputError` when ``target`` cannot be written as an output file."""
    final = Path(target)
    if final.is_dir():
        raise OutputError(
            f"output file {str(final)!r} is a folder; this writes one file; give a file "
            f"path such as {str(final / 'out')!r} with the right suffix"
        )
    _check_writable(final)
    return final


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a staging path that is renamed onto ``target`` when the block succeeds."""
    final = Path(target)
    clean_stale(final)
    check_output_file(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{str(final)!r} cannot be written ({type(exc).__name__}: "
            f"{exc.strerror or exc}); give a writable location"
        ) from exc
    staging = _staging_name(final, _TMP)
    try:
        yield staging
        os.replace(staging, final)
    except BaseException:
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        raise


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, indent: int = 2) -> str:
    """Strict JSON text of ``value``; a non-finite number becomes ``null`` (undefined).

    Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON; salesformer writes
    ``null`` for a number that is undefined (a metric whose denominator is zero, say).
    """
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False) + "\n"
