"""A saved model folder is input too: every field of config.json, every file, the encoder path.

Each case edits or damages a copy of a real saved LM folder and asserts the one-line error
(exit code 2, no traceback) and that the folder is left as it was; then the impossible
what-if scenarios, which the library refuses for the CLI and the service alike.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bad_input_support import H, invoke, refused, snapshot, write_csv
from salesformer.errors import ConfigError, DataValidationError

pytest_plugins = ["bad_input_support"]  # the panel, models and backtest fixtures


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "cache"))


# -- 3 and 4. a model folder is input too: every field of config.json, every file ------------

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit setting ``a.b.c`` of config.json to ``value``."""

    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _drop(path: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return edit


CONFIG_EDITS: dict[str, tuple[Edit, str]] = {
    "negative hidden_size": (_set("params.hidden_size", -4), "hidden_size"),
    "huge hidden_size": (_set("params.hidden_size", 10**12), "hidden_size"),
    "hidden_size as text": (_set("params.hidden_size", "16"), "hidden_size"),
    "hidden_size in range, not the file's": (_set("params.hidden_size", 8192), "head.safetensors"),
    "negative horizon": (_set("params.horizon", -1), "horizon"),
    "float n_blocks": (_set("params.n_blocks", 1.5), "n_blocks"),
    "unknown setting": (_set("params.bogus", 1), "bogus"),
    "missing setting": (_drop("params.horizon"), "horizon"),
    "levels out of range": (_set("params.quantile_levels", [2, 3]), "quantile_levels"),
    "levels as text": (_set("params.quantile_levels", "0.5"), "quantile_levels"),
    "params a list": (_set("params", [1, 2]), "params"),
    "missing state": (_drop("state"), "state"),
    "state a number": (_set("state", 3), "state"),
    "missing context": (_drop("state.context"), "context"),
    "context 4 TB": (_set("state.context", 10**12), "state.context"),
    "context too long for the file": (_set("state.context", 99_999), "head.safetensors"),
    "negative n_future": (_set("state.n_future", -1), "n_future"),
    "n_future not the covariates'": (_set("state.n_future", 9), "n_future"),
    "encoder dim huge": (_set("state.encoder.dim", 10**9), "dim"),
    "encoder dim not the file's": (_set("state.encoder.dim", 64), "item_vectors"),
    "encoder revision a number": (_set("state.encoder.revision", 3), "revision"),
    "item list cut short": (lambda c: c["state"]["item_ids"].pop(), "item"),
    "item list empty": (_set("state.item_ids", []), "item_ids"),
    "item ids duplicated": (
        lambda c: c["state"]["item_ids"].append(c["state"]["item_ids"][0]),
        "item_ids",
    ),
    "item ids numbers": (_set("state.item_ids", [1, 2]), "item_ids"),
    "fine_tuned_encoder text": (_set("state.fine_tuned_encoder", "yes"), "fine_tuned_encoder"),
    "fine-tuned without adapter": (_set("state.fine_tuned_encoder", True), "fine_tuned"),
    "calendar harmonics huge": (_set("state.standardizer.harmonics", 10**6), "harmonics"),
    "calendar harmonics not the file's": (_set("state.standardizer.harmonics", 3), "n_future"),
    "standardizer broken": (_set("state.standardizer", {"names": 3}), "standardizer"),
    "calibration broken": (_set("state.calibration", {"levels": [0.5]}), "calibration"),
    "model a list": (_set("model", ["LM"]), "model"),
    "unknown model": (_set("model", "Prophet"), "Prophet"),
    "newer format": (_set("format", 99), "format"),
    "encoder outside (absolute)": (_set("params.encoder", "/etc"), "outside the model folder"),
    "encoder outside (..)": (_set("params.encoder", "../../.."), "outside the model folder"),
    "encoder folder absent": (_set("params.encoder", "base_encoder/nothing"), "does not hold"),
}


def edited_copy(lm_dir: Path, tmp_path: Path, edit: Edit) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(lm_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
def test_edited_config_is_one_line(
    case: str, lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, fragment = CONFIG_EDITS[case]
    folder = edited_copy(lm_dir, tmp_path, edit)
    before = snapshot(folder)
    out = tmp_path / "f.csv"
    refused(["predict", "--model", str(folder), "--out", str(out)], capsys, fragment)
    assert not out.exists()
    assert snapshot(folder) == before


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:keep])

    return damage


FILE_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "head cut short": (_truncate("head.safetensors", -100), "head.safetensors"),
    "head cut to 4 bytes": (_truncate("head.safetensors", 4), "head.safetensors"),
    "vectors garbage": (
        lambda f: (f / "item_vectors.safetensors").write_bytes(b"garbage" * 5),
        "item_vectors",
    ),
    "head missing": (lambda f: (f / "head.safetensors").unlink(), "head.safetensors"),
    "head swapped for the vectors": (
        lambda f: shutil.copy(f / "item_vectors.safetensors", f / "head.safetensors"),
        "head.safetensors",
    ),
    "config not JSON": (lambda f: (f / "config.json").write_text("{nope"), "config.json"),
    "config with NaN": (
        lambda f: (f / "config.json").write_text(
            (f / "config.json").read_text().replace('"dropout": 0.1', '"dropout": NaN')
        ),
        "NaN",
    ),
    "config missing": (lambda f: (f / "config.json").unlink(), "config.json"),
    "panel missing": (lambda f: shutil.rmtree(f / "panel"), "panel"),
    "panel of other items": (
        lambda f: (f / "panel" / "items.parquet").unlink(),  # panel still loads: same items
        "",
    ),
    "base encoder a link outside": (
        lambda f: (shutil.rmtree(f / "base_encoder"), (f / "base_encoder").symlink_to("/etc")),
        "outside the model folder",
    ),
}


@pytest.mark.parametrize("case", list(FILE_DAMAGE))
def test_damaged_model_folder_is_one_line(
    case: str, lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, fragment = FILE_DAMAGE[case]
    folder = tmp_path / "model"
    shutil.copytree(lm_dir, folder)
    damage(folder)
    out = tmp_path / "f.csv"
    if not fragment:  # a harmless change: the model still predicts
        assert invoke(["predict", "--model", str(folder), "--out", str(out)], capsys)[0] == 0
        return
    refused(["predict", "--model", str(folder), "--out", str(out)], capsys, fragment)
    assert not out.exists()


def test_saving_copies_a_local_encoder_inside(lm_dir: Path, tiny_encoder: str) -> None:
    config = json.loads((lm_dir / "config.json").read_text())
    assert config["params"]["encoder"] == "base_encoder"
    assert (lm_dir / "base_encoder" / "config.json").is_file()
    assert tiny_encoder not in (lm_dir / "config.json").read_text().split('"source"')[0]


def test_the_folder_is_checked_before_the_encoder_loads(
    lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import salesformer.models.lm.persistence as persistence
    from salesformer.models.persist import load_model

    folder = tmp_path / "model"
    shutil.copytree(lm_dir, folder)
    _truncate("head.safetensors", -10)(folder)

    def no_encoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder was loaded before the folder was checked")

    monkeypatch.setattr(persistence, "shared_encoder", no_encoder)
    with pytest.raises(ConfigError, match="not a whole safetensors file"):
        load_model(folder)


def test_baseline_config_settings_are_checked(
    naive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for edit, fragment in [
        (_set("params.bogus", 1), "bogus"),
        (_set("params", "x"), "params"),
    ]:
        folder = tmp_path / "naive"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(naive_dir, folder)
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
        refused(
            ["predict", "--model", str(folder), "--out", str(tmp_path / "f.csv")], capsys, fragment
        )


# -- 5. impossible what-if scenarios -------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"price": -1.0}, "'price' must be finite and >= 0"),
        ({"price": -1e9}, "'price' must be finite and >= 0"),
        ({"discount": -0.2}, "'discount' must be in [0, 1)"),
        ({"discount": 1.5}, "'discount' must be in [0, 1)"),
        ({"price": float("inf")}, "'price' must be finite"),
        ({"promo": float("inf")}, "'promo' must be finite"),
    ],
)
def test_whatif_refuses_impossible_scenarios(
    row: dict[str, float],
    fragment: str,
    naive_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = write_csv(tmp_path / "scenario.csv", pd.DataFrame([{"item_id": "SKU00001", **row}]))
    out = tmp_path / "whatif.csv"
    refused(
        ["whatif", "--model", str(naive_dir), "--scenario", str(scenario), "--out", str(out)],
        capsys,
        fragment,
    )
    assert not out.exists()


def test_whatif_library_refuses_negative_prices(naive_dir: Path) -> None:
    from salesformer.decisions.whatif import Scenario, what_if
    from salesformer.models.persist import load_model

    model = load_model(naive_dir)
    changes = pd.DataFrame({"item_id": ["SKU00002"], "price": [-3.0]})
    with pytest.raises(DataValidationError, match="'price' must be finite and >= 0"):
        what_if(model, Scenario(changes=changes), H)


@pytest.fixture(scope="module")
def auto_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.persist import save_model
    from salesformer.models.registry import make_model

    panel = generate_catalogue(n_items=12, n_weeks=60, seed=4).panel()
    model = make_model("auto", candidates=("Naive", "WindowAverage"), min_segment_series=3)
    return save_model(model.fit(panel), tmp_path_factory.mktemp("auto") / "model")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_set("state.candidates", ["../../etc"]), "registered model names"),
        (_set("state.candidates", ["auto"]), "registered model names"),
        (_set("state.candidates", "Naive"), "registered model names"),
        (_set("state.weights", [1, 2]), "malformed"),
        (_set("state.choice", {"global": "LightGBM"}), "not among its saved candidates"),
        (_drop("state.segments"), "malformed"),
    ],
)
def test_edited_auto_state_is_one_line(
    edit: Edit, fragment: str, auto_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = edited_copy(auto_dir, tmp_path, edit)
    out = tmp_path / "f.csv"
    refused(["predict", "--model", str(folder), "--out", str(out)], capsys, fragment)
    assert not out.exists()
