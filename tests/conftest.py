"""Shared fixtures: the synthetic catalogue and, where present, the real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesformer.data.contract import Panel
from salesformer.data.synthetic import SyntheticCatalogue, generate_catalogue

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
ONLINE_RETAIL = DATASETS / "online_retail_ii" / "online_retail_ii.parquet"
STALLION = DATASETS / "stallion" / "stallion.parquet"


@pytest.fixture(scope="session")
def catalogue() -> SyntheticCatalogue:
    """A small seeded catalogue: 40 items, 80 weeks."""
    return generate_catalogue(n_items=40, n_weeks=80, seed=7)


@pytest.fixture(scope="session")
def small_panel(catalogue: SyntheticCatalogue) -> Panel:
    return catalogue.panel()


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    if not ONLINE_RETAIL.is_file():
        pytest.skip(f"real dataset absent: {ONLINE_RETAIL} (shared/datasets is not here)")
    return ONLINE_RETAIL
