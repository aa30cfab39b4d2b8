"""The data contract, loaders, cleaning and features."""

from salesformer.data.contract import (
    DATE,
    ITEM_ID,
    SALES,
    TEXT,
    Panel,
    validate_items,
    validate_panel,
)

__all__ = ["DATE", "ITEM_ID", "SALES", "TEXT", "Panel", "validate_items", "validate_panel"]
