"""Declared parameter constraints: one table per model, one check, one error format.

A model lists its settings' allowed values as a class-level table::

    constraints = {
        "horizon": Interval(int, 1, 10_000),
        "finetune": OneOf("frozen", "lora", "full"),
        "encoder_lr": Interval(float, 0, 1, closed="neither", none=True),
    }

and :meth:`Forecaster.check_params <salesformer.forecasting.protocol.Forecaster.check_params>`
checks every entry with :func:`check_constraints`; a wrong value raises
``ConfigError("<Model>.<setting> must <requirement>; got <value>")``, e.g.
``LightGBMForecaster.num_leaves must lie in [2, 4096]; got 1``. Rules that relate two
settings stay in the model's ``check_params`` override and use :func:`config_error` for the
same format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from salesformer.errors import ConfigError


@dataclass(frozen=True)
class Constraint:
    """A setting's allowed values.

    Attributes:
        requirement: a function of the value: None when allowed, else what the value must
            do, completing "<setting> must ...", e.g. ``"lie in [1, 16]"``.
    """

    requirement: Callable[[Any], str | None]

    def problem(self, value: Any) -> str | None:
        """None for an allowed value, else the requirement it breaks."""
        return self.requirement(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def Interval(
    kind: type,
    low: float | None,
    high: float | None = None,
    *,
    closed: Literal["both", "left", "right", "neither"] = "both",
    none: bool = False,
) -> Constraint:
    """A number of ``kind`` (``int`` or ``float``) from ``low`` to ``high`` (None: open)."""
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    prefix = "be None or " if none else "be "
    if high is None:
        word = "a whole number" if kind is int else "a number"
        bound = f"{prefix}{word} {'>=' if left == '[' else '>'} {low:g}"
    else:
        lowest = "-inf" if low is None else f"{low:g}"
        bound = f"{'be None or lie' if none else 'lie'} in {left}{lowest}, {high:g}{right}"

    def requirement(value: Any) -> str | None:
        if value is None and none:
            return None
        if not (_is_whole(value) if kind is int else _is_number(value)):
            return f"{prefix}a {kind.__name__}"
        above = low is None or (value >= low if left == "[" else value > low)
        below = high is None or (value <= high if right == "]" else value < high)
        return None if above and below else bound

    return Constraint(requirement)


def OneOf(*options: Any, none: bool = False) -> Constraint:
    """One of ``options`` (compared with ``==``)."""
    words = f"be {'None or ' if none else ''}one of {list(options)}"

    def requirement(value: Any) -> str | None:
        if value is None:
            return None if none else words
        return None if value in options else words

    return Constraint(requirement)


def Boolean(*, none: bool = False) -> Constraint:
    """True or False (or None when allowed)."""
    words = "be None, True or False" if none else "be True or False"
    return Rule(words, lambda value: isinstance(value, bool) or (none and value is None))


def Folder(*, none: bool = True) -> Constraint:
    """A folder path (or None when allowed)."""
    words = "be None or a folder" if none else "be a folder"
    return Rule(
        words, lambda value: isinstance(value, str | os.PathLike) or (none and value is None)
    )


def Rule(requirement: str, test: Callable[[Any], bool]) -> Constraint:
    """Any other test of one setting, with the requirement it states ("be ...", "name ...")."""
    return Constraint(lambda value: None if test(value) else requirement)


def config_error(model: str, setting: str, requirement: str, value: Any) -> ConfigError:
    """The one error format of a setting out of range: ``<model>.<setting> must <...>; got``."""
    return ConfigError(f"{model}.{setting} must {requirement}; got {value!r}")


def check_constraints(
    model: str, values: Mapping[str, Any], constraints: Mapping[str, Constraint]
) -> None:
    """Raise :class:`ConfigError` for the first setting of ``values`` its constraint refuses."""
    for setting, constraint in constraints.items():
        value = values[setting]
        problem = constraint.problem(value)
        if problem is not None:
            raise config_error(model, setting, problem, value)


__all__ = [
    "Boolean",
    "Constraint",
    "Folder",
    "Interval",
    "OneOf",
    "Rule",
    "check_constraints",
    "config_error",
]
