"""Batch forecasting and backtests spread over a Ray cluster (the ``[ray]`` extra).

The local engine runs everything in one process; the Ray engine cuts the catalogue into parts
of whole items, streamed from the panel's Parquet file, and forecasts them on Ray workers that
hold the model once each. Results equal the local engine's row for row (see ``docs/ray.md``).

Importing this package does not import Ray: :func:`~salesformer.distributed.engine.import_ray`
does, inside the functions that need it.
"""

from __future__ import annotations
