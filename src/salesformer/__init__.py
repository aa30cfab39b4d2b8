"""salesformer: sales forecasting for online shops.

Importing the package is cheap: heavy dependencies (torch, transformers, lightgbm,
statsforecast) load only when the part that needs them is used.
"""

from salesformer._version import __version__
from salesformer.errors import (
    DataValidationError,
    MissingExtraError,
    NotFittedError,
    SalesformerError,
)

__all__ = [
    "DataValidationError",
    "MissingExtraError",
    "NotFittedError",
    "SalesformerError",
    "__version__",
]
