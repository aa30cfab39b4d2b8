"""Flower, imported only where federated training runs.

Flower (``flwr``) is installed by ``make`` beside the ``federated`` extra, without its own
dependency pins (see docs/privacy.md: its upper bounds on typer, rich, fastapi and packaging
conflict with the project's pins; what salesformer uses of Flower runs with the pinned
versions, and ``protobuf`` is held at 6.x for Flower's generated code).
"""

from __future__ import annotations

import warnings
from typing import Any

from salesformer.errors import MissingExtraError

#: The extra that holds Flower's runtime dependencies.
FEDERATED_EXTRA = "federated"
#: The Flower release salesformer is tested with.
FLOWER_VERSION = "1.42.0"


class MissingFlowerError(MissingExtraError):
    """Flower is not installed (it is installed apart from the extra, see the message)."""

    def __init__(self) -> None:
        ImportError.__init__(
            self,
            "federated training needs Flower (flwr), which is not installed; run `make` (it "
            "installs it), or: pip install -c constraints.txt -e '.[federated]' && "
            f"pip install --no-deps flwr=={FLOWER_VERSION}",
        )
        self.package = "flwr"
        self.extra = FEDERATED_EXTRA


def import_flwr() -> Any:
    """``flwr`` with its client and server parts, or a :class:`MissingFlowerError`."""
    import salesformer.federated  # noqa: F401  (sets FLWR_TELEMETRY_ENABLED=0 first)

    try:
        with warnings.catch_warnings():
            # Flower's generated code is one protobuf major older than the runtime: supported
            warnings.filterwarnings("ignore", message="Protobuf gencode version")
            import flwr
            import flwr.client
            import flwr.common
            import flwr.server
    except ImportError as exc:
        raise MissingFlowerError() from exc
    return flwr
