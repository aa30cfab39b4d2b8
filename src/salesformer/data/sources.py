"""Where raw data comes from: a local path or a URL downloaded once into a cache.

:func:`resolve_source` turns what the user typed (a path or an ``http(s)://`` URL) into a local
file; :func:`read_table` reads a CSV or Parquet file by its extension. Both raise
:class:`~salesformer.errors.DataValidationError` with the path and a way to fix the problem.

Downloads go to ``~/.cache/salesformer/downloads``. The ``SALESFORMER_CACHE`` environment
variable moves the whole salesformer cache (downloads then go to
``$SALESFORMER_CACHE/downloads``); ``cache_dir`` chooses the download folder itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from salesformer._io import atomic_file
from salesformer._version import __version__
from salesformer.errors import DataValidationError

if TYPE_CHECKING:
    from rich.table import Table

CACHE_ENV = "SALESFORMER_CACHE"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def cache_root() -> Path:
    """Where every salesformer cache lives: ``$SALESFORMER_CACHE``, else ``~/.cache/salesformer``.

    Downloads, frozen embeddings and converted encoders each have a subfolder.
    """
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "salesformer"


def default_cache_dir() -> Path:
    """The folder that downloads are cached in: ``<cache root>/downloads`` (:func:`cache_root`)."""
    return cache_root() / "downloads"


def is_url(path_or_url: str | Path) -> bool:
    """Whether ``path_or_url`` is an ``http://`` or ``https://`` URL."""
    return urllib.parse.urlsplit(str(path_or_url)).scheme.lower() in ("http", "https")


def file_sha256(path: Path) -> str:
    """The hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256.match(value):
        raise DataValidationError(
            f"sha256 must be 64 hexadecimal characters; got {sha256!r}; "
            "copy the checksum published with the file, or leave it out"
        )
    return value


def _cache_path(url: str, folder: Path) -> Path:
    """A cache file named after the URL's last path part, prefixed by a hash of the whole URL."""
    name = Path(urllib.parse.urlsplit(url).path).name or "download"
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return folder / f"{key}-{name}"


def _download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target``, atomically: a failed download leaves no file behind."""
    request = urllib.request.Request(url, headers={"User-Agent": f"salesformer/{__version__}"})
    try:
        with (
            atomic_file(target) as staging,
            urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
            staging.open("wb") as handle,
        ):
            shutil.copyfileobj(response, handle, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise DataValidationError(
            f"could not download {url}: the server answered HTTP {exc.code} {exc.reason}; "
            "check the URL, or download the file yourself and pass its local path"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataValidationError(
            f"could not download {url}: {reason}; check the URL and your connection, "
            "or download the file yourself and pass its local path"
        ) from exc


def _check_sha256(path: Path, expected: str, *, origin: str, remove: bool) -> None:
    actual = file_sha256(path)
    if actual == expected:
        return
    if remove:
        path.unlink(missing_ok=True)
    removed = " (the downloaded file was removed)" if remove else ""
    raise DataValidationError(
        f"sha256 mismatch for {origin}: expected {expected}, got {actual}{removed}; "
        "the file is corrupt or not the one you meant: fetch it again, or fix --sha256"
    )


def resolve_source(
    path_or_url: str | Path, *, cache_dir: str | Path | None = None, sha256: str | None = None
) -> Path:
    """A local file for a path or an ``http(s)`` URL.

    A local path is returned as it is (``~`` expanded). A URL is downloaded once into the cache
    folder and the cached copy is reused afterwards. When ``sha256`` is given the file's digest
    is checked: a downloaded file that does not match is removed (a stale cached copy is fetched
    again once before giving up); a local file that does not match is left alone.

    Args:
        path_or_url: a file path, or an ``http://`` / ``https://`` URL.
        cache_dir: download folder; :func:`default_cache_dir` when None.
        sha256: expected hex sha256 digest of the file, or None to skip the check.

    Returns:
        The path of the local file.

    Raises:
        DataValidationError: the file is missing, the download failed or the digest differs.
    """
    expected = _normalise_sha256(sha256)
    if not is_url(path_or_url):
        return _resolve_local(Path(path_or_url).expanduser(), expected)
    url = str(path_or_url)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = _cache_path(url, folder)
    if target.is_file():
        if expected is None or file_sha256(target) == expected:
            return target
        target.unlink()
    _download(url, target)
    if expected is not None:
        _check_sha256(target, expected, origin=url, remove=True)
    return target


def _resolve_local(path: Path, expected: str | None) -> Path:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataValidationError(
            f"data source {str(path)!r} {what}; give the path of a data file or an http(s) URL"
        )
    if expected is not None:
        _check_sha256(path, expected, origin=str(path), remove=False)
    return path


def read_table(path: Path, *, string_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file, chosen by the file's extension.

    Args:
        path: the file to read.
        string_columns: CSV columns to keep as text (ids such as ``"00123"`` or ``"85123A"``);
            names absent from the file are ignored.

    Raises:
        DataValidationError: an unsupported extension, or a file that cannot be parsed.
    """
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        kind = "Parquet"
    elif name.endswith(_CSV_SUFFIXES):
        kind = "CSV"
    else:
        raise DataValidationError(
            f"cannot tell the format of {str(path)!r} from its extension; "
            "use a .csv (or .csv.gz) or .parquet file"
        )
    try:
        if kind == "Parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=dict.fromkeys(string_columns, str))
    except Exception as exc:  # parsers raise many unrelated types; report them all the same way
        raise DataValidationError(
            f"could not read {str(path)!r} as {kind}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; check that the file is valid {kind}"
        ) from exc


def quality_table(title: str, counts: Mapping[str, Any]) -> Table:
    """A loader's data-quality counts as a two-column rich table, for printing."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("check")
    table.add_column("value", justify="right")
    for name, value in counts.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        table.add_row(name.replace("_", " "), shown)
    return table
