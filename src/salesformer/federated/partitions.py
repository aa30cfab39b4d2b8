"""Sellers' partitions: a panel split by a hash of the item id, and folders of partitions.

A marketplace's sellers each hold their own catalogue, so partitions hold disjoint items. On
one shop's data (Online Retail II) ``split_by_seller`` makes such sellers: item ``i`` goes to
seller ``hash(i) mod n``, a split that does not depend on the data's order or size.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from salesformer.data.contract import ITEM_ID, Panel
from salesformer.errors import ConfigError, DataValidationError

#: Name of partition ``k`` of ``n`` (folders sort in order).
PARTITION_NAME = "seller-{:02d}"


def seller_of(item_id: str, sellers: int) -> int:
    """The seller (0 .. sellers - 1) of ``item_id``: a stable hash of the id."""
    digest = hashlib.blake2b(str(item_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % sellers


def split_by_seller(panel: Panel, sellers: int) -> dict[str, Panel]:
    """``panel`` split into ``sellers`` partitions with disjoint items (by hash of the id).

    Raises:
        ConfigError: fewer than 2 sellers, or more sellers than items.
    """
    ids = np.asarray(panel.item_ids, dtype=str)
    if not 2 <= sellers <= len(ids):
        raise ConfigError(
            f"the number of sellers must lie between 2 and the panel's {len(ids)} items; "
            f"got {sellers}; give --sellers N within that range"
        )
    owner = np.array([seller_of(i, sellers) for i in ids])
    parts = {}
    for seller in range(sellers):
        mine = set(ids[owner == seller])
        if not mine:
            raise ConfigError(
                f"seller {seller} of {sellers} gets no item of the panel's {len(ids)}; give "
                "fewer --sellers"
            )
        sales = panel.sales.loc[panel.sales[ITEM_ID].astype(str).isin(mine)]
        items = None
        if panel.items is not None:
            items = panel.items.loc[panel.items[ITEM_ID].astype(str).isin(mine)]
            items = items.reset_index(drop=True)
        parts[PARTITION_NAME.format(seller + 1)] = replace(
            panel, sales=sales.reset_index(drop=True), items=items, report={}
        )
    return parts


def load_partitions(folder: str | Path) -> dict[str, Panel]:
    """The partitions in ``folder``: each sub-folder holding a panel, by folder name.

    Raises:
        DataValidationError: no such folder, fewer than 2 partitions, or partitions that share
            items (sellers' catalogues are disjoint).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataValidationError(
            f"--partitions {str(root)!r} is not a folder; give a folder with one panel folder "
            "per seller (salesformer federated split writes one)"
        )
    names = sorted(p.name for p in root.iterdir() if (p / "panel.parquet").is_file())
    if len(names) < 2:
        raise DataValidationError(
            f"--partitions {str(root)!r} holds {len(names)} panel folders; federated training "
            "needs at least 2 (one per seller; salesformer federated split writes them)"
        )
    parts = {name: Panel.load(root / name) for name in names}
    seen: dict[str, str] = {}
    for name, part in parts.items():
        for item in np.asarray(part.item_ids, dtype=str):
            if item in seen:
                raise DataValidationError(
                    f"item {item!r} is in partitions {seen[item]!r} and {name!r}; sellers' "
                    "catalogues must be disjoint (split by seller with salesformer federated "
                    "split)"
                )
            seen[item] = name
    return parts
