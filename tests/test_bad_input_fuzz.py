"""Property tests: corrupted model folders and panels give a one-line error, never a crash.

Hypothesis edits one field of a saved LM's ``config.json`` (replacing a value at any depth
with another JSON value, or deleting it) or of a panel's ``panel.json``; loading then either
succeeds with a model that forecasts, or raises a :class:`SalesformerError`, which the CLI
turns into one line and exit code 2. Anything else (a ``KeyError``, a ``TypeError``, a
4 TB allocation) is a bug.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import SalesformerError

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


def _edit(config: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@pytest.fixture(scope="module")
def lm_folder(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salesformer.models.lm import LMForecaster

    panel = generate_catalogue(n_items=6, n_weeks=30, seed=2).panel()
    model = LMForecaster(
        encoder=tiny_encoder,
        finetune="frozen",
        horizon=3,
        head_epochs=1,
        epoch_samples=100,
        hidden_size=8,
        text_size=8,
        threads=1,
        progress=False,
    ).fit(panel)
    return model.save(tmp_path_factory.mktemp("fuzz") / "model")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_corrupted_model_config_is_refused_or_works(
    lm_folder: Path, tmp_path: Path, data: st.DataObject
) -> None:
    from salesformer.models.persist import load_model

    config = json.loads((lm_folder / "config.json").read_text())
    path = data.draw(st.sampled_from(_paths(config)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(JSON_VALUES, label="value")
    _edit(config, path, value, delete)
    folder = tmp_path / "model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(lm_folder, folder)
    (folder / "config.json").write_text(json.dumps(config))
    try:
        model = load_model(folder)
    except SalesformerError:
        return
    forecast = model.predict(2)
    assert len(forecast) == 2 * len(model.panel_.item_ids)


@pytest.fixture(scope="module")
def panel_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=4, n_weeks=20, seed=3).panel()
    return panel.save(tmp_path_factory.mktemp("fuzz-panel") / "panel")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=st.sampled_from(["freq", "known_future", "past_only", "extra"]), value=JSON_VALUES)
def test_a_corrupted_panel_meta_is_refused_or_works(
    panel_folder: Path, tmp_path: Path, key: str, value: Any
) -> None:
    meta = json.loads((panel_folder / "panel.json").read_text())
    meta[key] = value
    folder = tmp_path / "panel"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(panel_folder, folder)
    (folder / "panel.json").write_text(json.dumps(meta))
    try:
        panel = Panel.load(folder)
    except SalesformerError:
        return
    assert len(panel.item_ids) == 4


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=400))
def test_a_truncated_weight_file_is_refused(lm_folder: Path, tmp_path: Path, cut: int) -> None:
    from salesformer.models.persist import load_model

    folder = tmp_path / "model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(lm_folder, folder)
    head = folder / "head.safetensors"
    data = head.read_bytes()
    head.write_bytes(data[: max(0, len(data) - 1 - cut)])
    with pytest.raises(SalesformerError):
        load_model(folder)


ROWS = st.lists(
    st.tuples(
        st.sampled_from(["A", "B/1", "", " ", "C\u200b", "D\n", "\ufeffE", "F"]),
        st.integers(min_value=0, max_value=20),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-5, max_value=100),
        ),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(rows=ROWS)
def test_an_accepted_panel_is_clean(rows: list[tuple[str, int, float, float]]) -> None:
    """What validate_panel accepts holds finite sales >= 0, finite covariates, visible ids."""
    import numpy as np
    import pandas as pd

    from salesformer.data.contract import validate_panel

    frame = pd.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "date": [pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=r[1]) for r in rows],
            "sales": [r[2] for r in rows],
            "price": [r[3] for r in rows],
        }
    )
    try:
        panel = validate_panel(frame)
    except SalesformerError:
        return
    values = panel.sales[["sales", "price"]].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (panel.sales["sales"] >= 0).all()
    ids = [str(i) for i in panel.item_ids]
    assert all(i.strip() and i.isprintable() for i in ids)
