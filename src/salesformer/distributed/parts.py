"""Cutting a saved panel into parts of whole items, streamed from its Parquet file.

``panel.parquet`` (written by :meth:`Panel.save` and ``salesformer prepare``) is sorted by
``item_id`` and ``date``, so the rows of one item are contiguous: :func:`iter_parts` reads it
in record batches and cuts a part every ``items_per_part`` items, holding one part at a time.
:func:`scan_panel` checks the order first (reading only ``item_id`` and ``date``); a file that
is not sorted is read whole and sorted instead, which the layout reports.

A :class:`Part` carries Arrow tables (cheap to ship to a Ray worker); the worker turns it into
a :class:`Panel` with :meth:`Part.to_panel`, through the same :func:`validate_panel` the local
engine reads the panel with, so the models see identical data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.errors import ConfigError, DataValidationError

PANEL_FILE = "panel.parquet"
ITEMS_FILE = "items.parquet"
META_FILE = "panel.json"
_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class PanelLayout:
    """What one pass over a saved panel's ``item_id`` and ``date`` columns tells.

    Attributes:
        folder: the panel folder.
        freq: the panel's frequency (from ``panel.json``; inferred when absent).
        known_future: known-future covariates (``panel.json``).
        past_only: past-only covariates (``panel.json``).
        n_items: distinct items.
        n_rows: rows of ``panel.parquet``.
        dates: the distinct dates, sorted.
        is_sorted: whether the file is sorted by item and date (else parts come from a sort).
        calendar: the panel's calendar (``panel.json``; see :mod:`salesformer.data.calendars`).
    """

    folder: Path
    freq: str
    known_future: tuple[str, ...]
    past_only: tuple[str, ...]
    n_items: int
    n_rows: int
    dates: pd.DatetimeIndex
    is_sorted: bool
    calendar: dict[str, Any] | None = None

    def n_parts(self, items_per_part: int) -> int:
        """Parts :func:`iter_parts` yields with ``items_per_part``."""
        return -(-self.n_items // items_per_part)

    def dates_panel(self) -> Panel:
        """A stand-in panel with the layout's dates and frequency (for cutoff arithmetic)."""
        frame = pd.DataFrame({ITEM_ID: "", DATE: self.dates, SALES: 0.0})
        return Panel(frame, None, self.freq)


@dataclass(frozen=True)
class Part:
    """Whole items of a panel: their sales rows and items-table rows, as Arrow tables.

    Attributes:
        index: position of the part, from 0, in item order.
        sales: the part's rows of ``panel.parquet``, sorted by item and date.
        items: the part's rows of ``items.parquet`` (None when the panel has none).
        freq: the panel's frequency.
        known_future: known-future covariates.
        past_only: past-only covariates.
        calendar: the panel's calendar, so forecasts fill its columns for the horizon.
    """

    index: int
    sales: pa.Table
    items: pa.Table | None
    freq: str
    known_future: tuple[str, ...]
    past_only: tuple[str, ...]
    calendar: dict[str, Any] | None = None

    @property
    def n_items(self) -> int:
        column = self.sales.column(ITEM_ID).to_numpy(zero_copy_only=False)
        return len(pd.unique(column))

    def to_panel(self) -> Panel:
        """The part as a :class:`Panel`, validated as :meth:`Panel.load` validates the whole."""
        panel = validate_panel(
            self.sales.to_pandas(),
            None if self.items is None else self.items.to_pandas(),
            freq=self.freq,
            known_future=self.known_future,
            past_only=self.past_only,
        )
        return replace(panel, calendar=self.calendar)


def _meta(folder: Path) -> dict[str, object]:
    path = folder / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_folder(folder: Path) -> None:
    if not (folder / PANEL_FILE).is_file():
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "no such folder"
        raise DataValidationError(
            f"no {PANEL_FILE} in {str(folder)!r} (found: {found}); "
            "create one with 'salesformer prepare online-retail' or 'salesformer prepare csv'"
        )


def _batch_facts(ids: pa.Array, stamps: pa.Array) -> tuple[int, bool]:
    """Item starts after the first row, and whether rows are sorted by item, then date."""
    n = len(ids)
    if n < 2:
        return 0, True
    before, after = ids.slice(0, n - 1), ids.slice(1)
    same = pc.equal(before, after)
    descending = pc.any(pc.less(after, before)).as_py()
    dates_back = pc.any(
        pc.and_(same, pc.less_equal(stamps.slice(1), stamps.slice(0, n - 1)))
    ).as_py()
    starts = n - 1 - int(pc.sum(same).as_py() or 0)
    return starts, not (descending or dates_back)


def scan_panel(folder: str | Path) -> PanelLayout:
    """Read a saved panel's ``item_id`` and ``date`` columns once (see the module docstring).

    Raises:
        DataValidationError: when the folder holds no ``panel.parquet``.
    """
    path = Path(folder)
    _check_folder(path)
    meta = _meta(path)
    source = pq.ParquetFile(path / PANEL_FILE)
    n_items, n_rows, in_order = 0, 0, True
    last: tuple[Any, Any] | None = None
    dates: set[pd.Timestamp] = set()
    for batch in source.iter_batches(batch_size=_BATCH_ROWS, columns=[ITEM_ID, DATE]):
        ids = pc.cast(batch.column(0), pa.string())
        stamps = pc.cast(batch.column(1), pa.timestamp("ns"))
        if not len(ids):
            continue
        if last is not None:
            ids = pa.concat_arrays([pa.array([last[0]], pa.string()), ids])
            stamps = pa.concat_arrays([pa.array([last[1]], pa.timestamp("ns")), stamps])
        starts, ordered = _batch_facts(ids, stamps)
        in_order = in_order and ordered
        n_items += starts + (1 if last is None else 0)
        n_rows += batch.num_rows
        dates.update(pd.DatetimeIndex(pc.unique(stamps).to_numpy(zero_copy_only=False)))
        last = (ids[-1].as_py(), stamps[-1].value)
    if n_rows == 0:
        raise DataValidationError(f"{str(path / PANEL_FILE)!r} has no rows; prepare it again")
    index = pd.DatetimeIndex(sorted(dates))
    if not in_order:  # items may repeat in separate runs: count them properly
        column = pq.read_table(path / PANEL_FILE, columns=[ITEM_ID]).column(0)
        n_items = len(pc.unique(pc.cast(column, pa.string())))
    freq = meta.get("freq")
    known = meta.get("known_future")
    past = meta.get("past_only")
    if not isinstance(freq, str):
        from salesformer.data.contract import infer_freq

        freq = infer_freq(index)
    return PanelLayout(
        folder=path,
        freq=freq,
        known_future=tuple(known) if isinstance(known, list) else (),
        past_only=tuple(past) if isinstance(past, list) else (),
        n_items=n_items,
        n_rows=n_rows,
        dates=index,
        is_sorted=in_order,
        calendar=calendar if isinstance(calendar := meta.get("calendar"), dict) else None,
    )


def read_items(folder: str | Path) -> pa.Table | None:
    """The panel folder's items table as Arrow, in file order; None when there is none."""
    path = Path(folder) / ITEMS_FILE
    return pq.read_table(path) if path.is_file() else None


class _ItemsLookup:
    """Rows of the items table for a sorted run of item ids, by binary search."""

    def __init__(self, items: pa.Table | None) -> None:
        self.table: pa.Table | None = None
        self.ids = np.asarray([], dtype=str)
        if items is None:
            return
        if ITEM_ID not in items.column_names:
            raise DataValidationError(
                f"{ITEMS_FILE}: no 'item_id' column; got {items.column_names}; prepare it again"
            )
        ids = np.asarray(items.column(ITEM_ID).to_numpy(zero_copy_only=False)).astype(str)
        order = np.argsort(ids, kind="stable")
        self.table = items.take(pa.array(order))
        self.ids = ids[order]

    def rows(self, part_ids: np.ndarray) -> pa.Table | None:
        if self.table is None:
            return None
        lo = int(np.searchsorted(self.ids, part_ids[0], side="left"))
        hi = int(np.searchsorted(self.ids, part_ids[-1], side="right"))
        window = self.ids[lo:hi]
        keep = np.flatnonzero(np.isin(window, part_ids)) + lo
        return self.table.take(pa.array(keep))


def iter_parts(
    folder: str | Path, items_per_part: int, layout: PanelLayout | None = None
) -> Iterator[Part]:
    """Parts of ``items_per_part`` whole items (the last may hold fewer), in item order.

    Args:
        folder: a panel folder written by :meth:`Panel.save` or ``salesformer prepare``.
        items_per_part: items per part, >= 1.
        layout: the folder's :func:`scan_panel` result, if already read.

    Yields:
        :class:`Part` objects; every item is in exactly one of them.
    """
    if isinstance(items_per_part, bool) or not isinstance(items_per_part, int):
        raise ConfigError(f"items_per_part must be a whole number >= 1; got {items_per_part!r}")
    if items_per_part < 1:
        raise ConfigError(f"items_per_part must be a whole number >= 1; got {items_per_part}")
    layout = layout or scan_panel(folder)
    lookup = _ItemsLookup(read_items(layout.folder))
    for index, sales in enumerate(_part_tables(layout, items_per_part)):
        part_ids = pc.unique(pc.cast(sales.column(ITEM_ID), pa.string()))
        yield Part(
            index=index,
            sales=sales,
            items=lookup.rows(np.asarray(part_ids.to_numpy(zero_copy_only=False)).astype(str)),
            freq=layout.freq,
            known_future=layout.known_future,
            past_only=layout.past_only,
            calendar=layout.calendar,
        )


def _part_tables(layout: PanelLayout, items_per_part: int) -> Iterator[pa.Table]:
    """Arrow tables of ``items_per_part`` whole items each, from the sorted file or a sort."""
    path = layout.folder / PANEL_FILE
    if not layout.is_sorted:
        table = pq.read_table(path).sort_by([(ITEM_ID, "ascending"), (DATE, "ascending")])
        batches: Iterator[pa.RecordBatch] = iter(table.to_batches(max_chunksize=_BATCH_ROWS))
    else:
        batches = pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS)
    pending: list[pa.RecordBatch] = []
    count = 0
    last_id: str | None = None
    for batch in batches:
        ids = pc.cast(batch.column(ITEM_ID), pa.string())
        n = len(ids)
        if not n:
            continue
        changes = pc.not_equal(ids.slice(0, n - 1), ids.slice(1))
        found = pc.indices_nonzero(changes).to_numpy(zero_copy_only=False)
        starts = np.asarray(found, dtype=np.int64) + 1
        if ids[0].as_py() != last_id:
            starts = np.concatenate([np.zeros(1, dtype=np.int64), starts])
        position = 0
        for start in starts.tolist():
            if count == items_per_part:
                pending.append(batch.slice(position, start - position))
                yield pa.Table.from_batches(pending)
                pending, count, position = [], 0, start
            count += 1
        pending.append(batch.slice(position))
        last_id = ids[-1].as_py()
    if pending:
        yield pa.Table.from_batches(pending)
