"""Errors raised for user mistakes.

Every message says what was wrong, what was received and how to fix it. The CLI turns any
``SalesformerError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class SalesformerError(ValueError):
    """Base class of every error caused by the user's input or settings."""


class DataValidationError(SalesformerError):
    """The input data does not follow the data contract."""


class ConfigError(SalesformerError):
    """A setting is out of its allowed range or of the wrong kind."""


class NotFittedError(SalesformerError, AttributeError):
    """A model was asked to predict before ``fit`` was called."""


class DataQualityWarning(UserWarning):
    """The input is usable but weaker than it looks (the CLI prints it as one line)."""


class MissingExtraError(ImportError):
    """An optional part of salesformer was used without its extra installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package '{package}', which is not installed; "
            f"install it with: pip install 'salesformer[{extra}]'"
        )
        self.package = package
        self.extra = extra


class OutputError(SalesformerError):
    """An output path cannot be written without losing or mixing files (see ``_io``)."""
