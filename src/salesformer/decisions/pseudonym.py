"""Pseudonymous customer IDs: a keyed hash (HMAC-SHA256) applied when purchases are read.

The same ID and key always give the same pseudonym, so recommendations, repeated runs and
``--customers`` lists still line up; without the key nobody can recompute a pseudonym from a
guessed ID (a plain hash of a customer number could be reversed by trying every number). The
key comes from the environment variable :data:`PSEUDONYM_KEY_ENV`, never from a file or an
option that would land in a shell history; it is not stored anywhere by salesformer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping

from salesformer.errors import ConfigError

#: The environment variable holding the pseudonymisation key.
PSEUDONYM_KEY_ENV = "SALESFORMER_PSEUDONYM_KEY"
#: Shortest key accepted (characters).
MIN_KEY_LENGTH = 16
#: Hex characters of the HMAC kept in a pseudonym (64 bits: collisions need ~4 billion IDs).
PSEUDONYM_HEX = 16


def pseudonym_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The key from :data:`PSEUDONYM_KEY_ENV`.

    Raises:
        ConfigError: the variable is unset, empty or shorter than 16 characters.
    """
    value = (os.environ if environ is None else environ).get(PSEUDONYM_KEY_ENV, "")
    if len(value) < MIN_KEY_LENGTH:
        got = "it is not set" if not value else f"it has {len(value)} characters"
        raise ConfigError(
            f"pseudonymised customer IDs need a secret key in {PSEUDONYM_KEY_ENV} of at least "
            f"{MIN_KEY_LENGTH} characters; {got}; set it, e.g. "
            f'export {PSEUDONYM_KEY_ENV}="$(openssl rand -hex 32)", and keep it secret'
        )
    return value.encode("utf-8")


def pseudonymise(ids: Iterable[str], key: bytes) -> list[str]:
    """``c_`` plus the first 16 hex characters of HMAC-SHA256(key, id), for each ID."""
    return [
        "c_" + hmac.new(key, str(i).encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for i in ids
    ]


def pseudonymise_orders(ids: Iterable[str], key: bytes) -> list[str]:
    """``o_`` plus 16 hex characters of HMAC-SHA256(key, "order:" + id), for each order ID.

    The ``order:`` prefix separates the two kinds of ID: an order and a customer that share
    an ID string get unrelated pseudonyms. The same order ID gives the same pseudonym, so an
    order's lines still belong together.
    """
    return [
        "o_" + hmac.new(key, f"order:{i}".encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for i in ids
    ]
