"""What a report is built from: one settings object, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from salesformer.errors import ConfigError

FORECASTS_FILE = "forecasts.parquet"
SERIES_FILE = "series.parquet"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class ReportSettings:
    """Inputs and options of :func:`salesformer.report.build_report`.

    Only ``backtest`` is required; every other input adds its sections when given and is
    named in a "not available" note when not.

    Attributes:
        backtest: folder written by ``salesformer backtest`` (``forecasts.parquet``,
            ``series.parquet``, ``metrics.json``).
        panel: panel folder (``salesformer prepare``); adds history before each cutoff to the
            forecast charts and the item texts to the explanations.
        model: model folder (``salesformer fit``); adds the LM's training curves, its
            before-vs-after fine-tuning losses and the explanations.
        plan: inventory plan (CSV or Parquet, ``salesformer plan``); adds the inventory section.
        trends: trends output folder or file (``salesformer trends``); adds the trends section.
        title: the report's title.
        explain_items: items whose explanation (highlighted words) is shown, 0 for none.
    """

    backtest: Path
    panel: Path | None = None
    model: Path | None = None
    plan: Path | None = None
    trends: Path | None = None
    title: str = "salesformer forecast report"
    explain_items: int = 3

    def __post_init__(self) -> None:
        for name in ("backtest", "panel", "model", "plan", "trends"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not self.backtest.is_dir():
            raise ConfigError(
                f"backtest folder {str(self.backtest)!r} does not exist; give a folder written "
                "by 'salesformer backtest --out DIR' or 'salesformer demo' (DIR/backtest)"
            )
        if not (self.backtest / FORECASTS_FILE).is_file():
            found = sorted(p.name for p in self.backtest.iterdir())
            inner = self.backtest / "backtest"
            hint = (
                f"did you mean {str(inner)!r}?"
                if (inner / FORECASTS_FILE).is_file()
                else "give a folder written by 'salesformer backtest --out DIR'"
            )
            raise ConfigError(
                f"no {FORECASTS_FILE} in {str(self.backtest)!r} (found: {found}); {hint}"
            )
        for name in ("panel", "model"):
            folder = getattr(self, name)
            if folder is not None and not folder.is_dir():
                raise ConfigError(
                    f"--{name} folder {str(folder)!r} does not exist; give a folder written by "
                    f"'salesformer {'prepare' if name == 'panel' else 'fit'}' or leave it out"
                )
        for name in ("plan", "trends"):
            path = getattr(self, name)
            if path is not None and not path.exists():
                raise ConfigError(
                    f"--{name} {str(path)!r} does not exist; give the output of "
                    f"'salesformer {name}' or leave it out"
                )
        if not isinstance(self.title, str) or not self.title.strip():
            raise ConfigError(f"the report title must be a non-empty string; got {self.title!r}")
        items = self.explain_items
        if isinstance(items, bool) or not isinstance(items, int) or not 0 <= items <= 20:
            raise ConfigError(
                f"explain_items must be a whole number from 0 to 20; got {self.explain_items!r}"
            )
