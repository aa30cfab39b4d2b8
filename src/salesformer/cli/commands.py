"""``salesformer backtest`` and ``salesformer demo``."""

from __future__ import annotations


def backtest_command() -> None:
    """Rolling-origin backtest of forecasters on a prepared panel."""
    raise NotImplementedError


def demo_command() -> None:
    """Run the main job on the embedded synthetic catalogue."""
    raise NotImplementedError
