"""The ``fit`` options of a differentially private LM fit (``--dp-epsilon``, ``--dp-delta``)."""

from __future__ import annotations

from typing import Any

from salesformer.errors import ConfigError

#: The LM's registry name (the key of its ``--set`` overrides).
LM = "LM"


def private_overrides(
    name: str,
    engine: str,
    dp_epsilon: float | None,
    dp_delta: float | None,
    overrides: dict[str | None, dict[str, Any]],
) -> None:
    """Check the DP options of ``fit`` and add them to the LM's settings in ``overrides``."""
    if dp_epsilon is None and dp_delta is None:
        return
    if dp_epsilon is None:
        raise ConfigError(
            f"--dp-delta needs --dp-epsilon (the privacy budget); got --dp-delta {dp_delta:g} "
            "alone; add --dp-epsilon E (e.g. 4)"
        )
    if name != LM:
        raise ConfigError(
            f"--dp-epsilon trains the LM forecaster privately and applies to --model lm only; "
            f"got --model {name} (auto chooses models with backtests on the data, which are "
            "not private); use --model lm"
        )
    if engine != "local":
        raise ConfigError(
            f"a private fit runs in one process; got --engine {engine}; use --engine local"
        )
    if not dp_epsilon > 0:
        raise ConfigError(
            f"--dp-epsilon must be > 0 (smaller is more private; 1 to 8 is usual); "
            f"got {dp_epsilon:g}"
        )
    if dp_delta is not None and not 0 < dp_delta < 1:
        raise ConfigError(
            f"--dp-delta must lie in (0, 1), far below 1 / number of items (e.g. 1e-5); "
            f"got {dp_delta:g}"
        )
    settings = overrides.setdefault(LM, {})
    settings["dp_epsilon"] = float(dp_epsilon)
    if dp_delta is not None:
        settings["dp_delta"] = float(dp_delta)


def privacy_line(report: dict[str, Any]) -> str | None:
    """``differential privacy: epsilon 3.99 spent of 4 (delta 1e-05, rdp, 40 items)``."""
    spent = report.get("privacy")
    if not isinstance(spent, dict):
        return None
    return (
        f"differential privacy: epsilon {spent['epsilon']:g} spent of "
        f"{spent['target_epsilon']:g} (delta {spent['delta']:g}, {spent['accountant']} "
        f"accountant, {spent['units']} items as privacy units, noise multiplier "
        f"{spent['noise_multiplier']:g}, {spent['steps']} steps)"
    )
