"""The item text template: how the items table becomes one text per product.

``item_text`` joins, in this order and skipping empty parts::

    {title}. {description} Category: {category}. Promotion: {promotion}

Loaders that only have one text field (Online Retail II's Description) put it in ``title``.
The template lives here, once, so that every encoder reads the same text.
"""

from __future__ import annotations

import pandas as pd

TEMPLATE_FIELDS = ("title", "description", "category", "promotion")


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return " ".join(str(value).split())


def item_text(
    title: object, description: object = "", category: object = "", promotion: object = ""
) -> str:
    """One product's text from its parts (see the module docstring for the template)."""
    parts: list[str] = []
    head = _clean(title)
    if head:
        parts.append(head if head.endswith((".", "!", "?")) else f"{head}.")
    body = _clean(description)
    if body:
        parts.append(body if body.endswith((".", "!", "?")) else f"{body}.")
    cat = _clean(category)
    if cat:
        parts.append(f"Category: {cat}.")
    promo = _clean(promotion)
    if promo:
        parts.append(f"Promotion: {promo}")
    return " ".join(parts)


def texts_from_columns(items: pd.DataFrame) -> pd.Series:
    """Apply :func:`item_text` to the template columns that ``items`` has."""
    columns = {
        name: items[name] if name in items else pd.Series("", index=items.index)
        for name in TEMPLATE_FIELDS
    }
    return pd.Series(
        [
            item_text(t, d, c, p)
            for t, d, c, p in zip(
                columns["title"],
                columns["description"],
                columns["category"],
                columns["promotion"],
                strict=True,
            )
        ],
        index=items.index,
        dtype=object,
    )
