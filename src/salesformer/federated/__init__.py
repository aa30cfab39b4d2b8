"""Federated training of the LM forecaster across sellers, with Flower.

Each seller (a *partition*: its own catalogue, items no other seller has) keeps its panel on
its own machine. A Flower server sends the forecasting head's weights to the sellers' clients,
each client trains them for a few local epochs on its own windows and sends back only the new
weights, and the server averages them weighted by each client's number of training windows
(FedAvg). After the last round each client holds the global head and forecasts its own items
with it; the server never sees a sales row, an item id or a text.

- :mod:`.partitions`: split a panel into sellers by a hash of the item id, read a folder of
  partitions;
- :mod:`.learner`: one seller's side (its panel, its frozen text embeddings, local training);
- :mod:`.client`: the Flower ``NumPyClient`` around a learner;
- :mod:`.server`: FedAvg that meters the bytes of each round, optional client-level DP;
- :mod:`.run`: a server, a client, and the simulation (server and clients on one machine,
  talking gRPC over the loopback, the same code path as separate machines).

Flower sends telemetry by default; salesformer turns it off (``FLWR_TELEMETRY_ENABLED=0``)
before Flower is imported.
"""

from __future__ import annotations

import os

os.environ["FLWR_TELEMETRY_ENABLED"] = "0"  # before any flwr import: no call home
