"""Greedy ensemble selection: weights on the simplex, learned from validation loss."""

from __future__ import annotations

import numpy as np
import pytest

from salesformer.errors import ConfigError
from salesformer.models.combination import ensemble_weights

RNG = np.random.default_rng(0)
ACTUAL = RNG.gamma(2.0, 10.0, 2000)


def test_a_candidate_equal_to_the_actuals_takes_every_weight() -> None:
    noisy = ACTUAL + RNG.normal(0, 5, ACTUAL.size)
    assert ensemble_weights(ACTUAL, {"noisy": noisy, "exact": ACTUAL.copy()}) == {"exact": 1.0}


def test_two_independent_unbiased_forecasts_are_blended_near_half_and_half() -> None:
    a = ACTUAL + RNG.normal(0, 5, ACTUAL.size)
    b = ACTUAL + RNG.normal(0, 5, ACTUAL.size)
    weights = ensemble_weights(ACTUAL, {"a": a, "b": b}, metric="mse")
    assert set(weights) == {"a", "b"}
    assert weights["a"] == pytest.approx(0.5, abs=0.15)
    assert sum(weights.values()) == pytest.approx(1.0)
    blend = weights["a"] * a + weights["b"] * b
    assert ((blend - ACTUAL) ** 2).sum() < min(((a - ACTUAL) ** 2).sum(), ((b - ACTUAL) ** 2).sum())


def test_weights_come_in_steps_of_one_over_rounds_and_useless_candidates_get_none() -> None:
    good = ACTUAL + RNG.normal(0, 2, ACTUAL.size)
    useless = np.full(ACTUAL.size, 1e6)
    weights = ensemble_weights(ACTUAL, {"useless": useless, "good": good}, rounds=7)
    assert weights == {"good": 1.0}
    mixed = ensemble_weights(ACTUAL, {"a": ACTUAL * 0.8, "b": ACTUAL * 1.2}, metric="mae", rounds=7)
    assert all(abs(w * 7 - round(w * 7)) < 1e-9 for w in mixed.values())


def test_pinball_weights_use_the_quantiles_and_ignore_rows_that_are_not_finite() -> None:
    levels = (0.1, 0.5, 0.9)
    calibrated = np.column_stack([ACTUAL * 0.7, ACTUAL, ACTUAL * 1.3])
    narrow = np.column_stack([ACTUAL * 3, ACTUAL * 3, ACTUAL * 3])
    narrow[:5] = np.nan  # rows a candidate could not forecast are left out for all
    weights = ensemble_weights(
        ACTUAL, {"narrow": narrow, "calibrated": calibrated}, metric="wql", levels=levels
    )
    assert weights == {"calibrated": 1.0}


def test_scaled_losses_weigh_rows_by_their_scale() -> None:
    # "small" is exact on the small-scale rows, "big" on the large-scale rows; MASE's scale
    # makes the small rows count, plain MAE the large ones.
    actual = np.array([1.0, 1.0, 100.0, 100.0])
    small = np.array([1.0, 1.0, 90.0, 90.0])
    big = np.array([3.0, 3.0, 100.0, 100.0])
    scale = np.array([0.1, 0.1, 100.0, 100.0])
    assert ensemble_weights(actual, {"small": small, "big": big}, metric="mae") == {"big": 1.0}
    mase = ensemble_weights(actual, {"small": small, "big": big}, metric="mase", scale=scale)
    assert mase == {"small": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "smape"}, "cannot be learned on metric 'smape'"),
        ({"rounds": 0}, "at least 1 round"),
        ({"metric": "wql"}, "needs each candidate's quantiles"),
        ({"metric": "mase"}, "needs each row's series scale"),
    ],
)
def test_bad_requests_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ensemble_weights(ACTUAL, {"a": ACTUAL}, **kwargs)  # type: ignore[arg-type]


def test_nothing_finite_to_learn_from_gives_no_weights() -> None:
    assert ensemble_weights(ACTUAL, {"a": np.full(ACTUAL.size, np.nan)}) == {}
    assert ensemble_weights(ACTUAL, {}) == {}
