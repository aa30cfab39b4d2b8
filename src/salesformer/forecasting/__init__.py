"""What every forecaster shares, below ``models`` and ``evaluation``.

* :mod:`.protocol`: the :class:`~.protocol.Forecaster` protocol and forecast-frame helpers;
* :mod:`.params`: declarative parameter constraints, checked by one helper;
* :mod:`.saved`: the saved-model folder format (``config.json``, JSON-safe settings);
* :mod:`.cold_start`: the small protocol of cold-start forecasters.

Nothing here imports a model, the evaluation, the CLI or the service.
"""
