"""The model registry (versions, pointer, promote, rollback), the promotion rule and the
panel that retraining builds from the stored events. Fast: baselines and a tiny panel."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.registry import make_model
from salesformer.models.versions import ModelRegistry, RegistryError
from salesformer.service.retrain import PromotionRule, challenger_of, panel_with_events
from salesformer.service.store import Event


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=6, n_weeks=40, seed=3, new_item_share=0.0).panel()


def held_back(panel: Panel, weeks: int) -> tuple[Panel, list[Event]]:
    """The panel without its last ``weeks`` periods, and those periods as sales events."""
    cut = panel.dates[-weeks - 1]
    late = panel.sales.loc[panel.sales["date"] > cut]
    events = [
        Event(f"e{i}", r.item_id, (r.date + pd.Timedelta(days=3)).to_pydatetime(), r.sales, r.price)
        for i, r in enumerate(late.itertuples())
        if r.sales > 0
    ]
    return panel.until(cut), events


def test_add_promote_rollback(panel: Panel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "reg")
    model = make_model("SeasonalNaive").fit(panel)
    first = registry.add(model, {"created_by": "test"})
    second = registry.add(model, {"created_by": "test"})
    assert (first.number, second.number) == (1, 2)
    assert first.metadata["training"]["last_date"] == str(panel.last_date.date())
    assert "salesformer" in first.metadata["libraries"]
    with pytest.raises(RegistryError, match="no promoted version"):
        registry.promoted()
    registry.promote(1, "cmd one")
    registry.promote(2, "cmd two", rule="manual")
    assert registry.promoted().number == 2
    assert json.loads((tmp_path / "reg" / "promoted.json").read_text()) == {
        "version": 2,
        "history": [1, 2],
    }
    assert registry.rollback("cmd back").number == 1
    assert registry.promoted().number == 1
    events = registry.version(2).metadata["events"]
    assert [e["event"] for e in events] == ["promoted", "rolled back"]
    assert events[0]["command"] == "cmd two" and events[0]["rule"] == "manual"
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.rollback("again")
    with pytest.raises(RegistryError, match="has no version 7; it has \\[1, 2\\]"):
        registry.promote(7, "x")


def test_not_a_registry(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="is not a model registry"):
        ModelRegistry(tmp_path).numbers()


def test_promotion_rule() -> None:
    rule = PromotionRule()
    champion = {"wape": 0.50, "wql": 0.40}
    assert rule.decide(champion, {"wape": 0.494, "wql": 0.40}) == ""
    assert "WAPE 0.4960 is not at most 0.4950" in rule.decide(champion, {"wape": 0.496, "wql": 0.3})
    assert "wQL 0.4100 is above 0.4000" in rule.decide(champion, {"wape": 0.3, "wql": 0.41})
    assert PromotionRule(0.0, 0.05).decide(champion, {"wape": 0.5, "wql": 0.41}) == ""
    assert rule.decide(champion, {"wape": float("nan"), "wql": 0.1}) != ""
    with pytest.raises(ConfigError, match="min_wape_gain must lie in"):
        PromotionRule(min_wape_gain=1.5)


def test_panel_with_events_restores_the_held_back_sales(panel: Panel) -> None:
    start, events = held_back(panel, 5)
    extended, counts = panel_with_events(start, events, until=panel.last_date.date())
    assert counts["events_used"] == len(events) and counts["events_unknown_item"] == 0
    got = extended.sales.set_index(["item_id", "date"])
    want = panel.sales.set_index(["item_id", "date"]).loc[got.index]
    assert len(got) == len(panel.sales)
    assert (got["sales"] - want["sales"]).abs().max() == 0.0
    sold = want["sales"] > 0  # weeks with a sale carry the events' price
    assert (got.loc[sold, "price"] - want.loc[sold, "price"]).abs().max() < 1e-9
    # by default the week of the latest event is in progress and left out
    default, _ = panel_with_events(start, events)
    assert default.last_date == panel.dates[-2]
    # events a retrained champion's panel holds already (folded) are not added again
    folded = panel.dates[-3]
    _, counts = panel_with_events(
        start, events, until=panel.last_date.date(), folded_through=folded.date()
    )
    in_panel = sum(e.timestamp < folded + pd.Timedelta(days=7) for e in events)
    assert counts["events_in_panel"] == in_panel
    assert 0 < counts["events_in_panel"] < len(events)
    with pytest.raises(ConfigError, match="no complete period of events"):
        panel_with_events(start, [])


def test_challenger_keeps_settings_and_applies_overrides() -> None:
    champion = make_model("lightgbm", num_leaves=7)
    challenger = challenger_of(champion, {"learning_rate": 0.2})
    assert challenger.get_params()["num_leaves"] == 7
    assert challenger.get_params()["learning_rate"] == 0.2


def cli(argv: list[str]) -> None:
    """Run the command; a successful Typer command ends with SystemExit(0)."""
    try:
        run(argv)
    except SystemExit as done:
        assert done.code in (0, None)


def test_models_cli(panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "m"
    make_model("SeasonalNaive").fit(panel).save(folder)
    registry = str(tmp_path / "reg")
    cli(["models", "add", "--registry", registry, "--model", str(folder), "--promote"])
    cli(["models", "add", "--registry", registry, "--model", str(folder)])
    cli(["models", "promote", "2", "--registry", registry])
    cli(["models", "list", "--registry", registry])
    out = capsys.readouterr().out
    assert "added version 1 (promoted)" in out and "promoted version 2" in out
    listed = [line for line in out.splitlines() if line.startswith("*")]
    assert len(listed) == 1 and listed[0].split()[1] == "2"
    cli(["models", "rollback", "--registry", registry])
    assert "rolled back to version 1" in capsys.readouterr().out
    metadata = ModelRegistry(registry).version(2).metadata
    assert metadata["events"][0]["command"] == (
        f"salesformer models promote 2 --registry {registry}"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "give exactly one of --model DIR"),
        (["serve", "--model", "{tmp}/m", "--registry", "{tmp}/r"], "got both"),
        (["models", "list", "--registry", "{tmp}/none"], "is not a model registry"),
        (["models", "add", "--registry", "{tmp}/r", "--model", "{tmp}/none"], "{tmp}/none"),
        (["retrain", "--registry", "{tmp}/none"], "is not a model registry"),
    ],
)
def test_cli_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "r" / "versions" / "1").exists()  # nothing half-written
