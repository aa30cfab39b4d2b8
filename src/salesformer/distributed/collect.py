"""What the backtest driver keeps of each part's result: scored forecasts, facts, timings.

Results from Ray arrive as read-only views of its object store; :func:`owned` copies what is
kept, so that the store can reuse its memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salesformer.data.contract import CUTOFF, DATE, ITEM_ID
from salesformer.errors import ConfigError
from salesformer.evaluation.backtest import BacktestResult
from salesformer.forecasting.protocol import Forecaster

Key = tuple[int, int]  # (model index, cutoff index)


def owned(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` in the driver's own memory.

    A frame from ``ray.get`` holds its numeric columns as read-only views of Ray's object
    store; kept, they pin the part's result there for the whole job (the store cannot reuse
    it, so every later part lands on fresh store pages, which each worker then maps: its
    resident memory grew with the number of parts). The copy lets the store free it.
    """
    return frame.copy(deep=True)


class Collector:
    """Scored forecasts, facts and timings of the parts, and the optional streamed file."""

    def __init__(self, n_cutoffs: int, path: Path | None) -> None:
        self.frames: list[list[pd.DataFrame]] = [[] for _ in range(n_cutoffs)]
        self.facts: list[list[pd.DataFrame]] = [[] for _ in range(n_cutoffs)]
        self.seconds: dict[Key, list[float]] = {}
        self._path = path
        self._writer: pq.ParquetWriter | None = None

    def add(self, _index: int, result: dict[str, Any]) -> None:
        for c, frame in result["frames"]:
            self.frames[c].append(owned(frame))
        for c, facts in result["facts"]:
            self.facts[c].append(owned(facts))
        for m, c, fit, predict in result["timings"]:
            totals = self.seconds.setdefault((m, c), [0.0, 0.0])
            totals[0] += fit
            totals[1] += predict
        if self._path is not None and result["frames"]:
            table = pa.Table.from_pandas(
                pd.concat([f for _, f in result["frames"]], ignore_index=True),
                preserve_index=False,
            )
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._path, table.schema)
            self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def result(
        self,
        models: list[Forecaster],
        stamps: list[pd.Timestamp],
        horizon: int,
        global_seconds: dict[Key, float],
        min_history: int,
        active_within: int | None,
    ) -> BacktestResult:
        frames = [pd.concat(f, ignore_index=True) for f in self.frames if f]
        if not frames:
            raise ConfigError(
                f"no item qualifies for evaluation at cutoffs {[str(c.date()) for c in stamps]} "
                f"(min_history={min_history}, active_within={active_within}); lower them or "
                "choose later cutoffs"
            )
        forecasts = pd.concat(frames, ignore_index=True)
        forecasts = forecasts.sort_values([CUTOFF, ITEM_ID, DATE]).reset_index(drop=True)
        series = pd.concat([pd.concat(f, ignore_index=True) for f in self.facts if f])
        timings = [
            {
                "model": model.name,
                "cutoff": stamps[c],
                "fit_seconds": global_seconds.get((m, c), 0.0) + self.seconds[(m, c)][0],
                "predict_seconds": self.seconds[(m, c)][1],
            }
            for c in range(len(stamps))
            for m, model in enumerate(models)
            if (m, c) in self.seconds
        ]
        return BacktestResult(
            forecasts=forecasts,
            series=series.reset_index(drop=True),
            timings=pd.DataFrame(timings),
            horizon=horizon,
            cutoffs=list(stamps),
        )
