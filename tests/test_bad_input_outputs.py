"""Bad --out paths for every CLI command: salesformer never deletes what it did not write.

Split from ``test_bad_input_cli.py`` (same promises: one line on stderr starting with
``error:``, no traceback, exit code 2, and nothing written or lost).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bad_input_support import (
    foreign_folder,
    invoke,
    refused,
    snapshot,
    write_csv,
)
from salesformer._io import OWNER_FILE, atomic_dir, clean_stale
from salesformer.data.contract import Panel
from salesformer.errors import OutputError

pytest_plugins = ["bad_input_support"]  # the panel, models and backtest fixtures


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "cache"))


# -- 2. --out never deletes what salesformer did not write ---------------------------------


@pytest.mark.parametrize("command", ["fit", "backtest", "prepare", "trends"])
def test_folder_commands_refuse_a_foreign_non_empty_folder(
    command: str,
    panel_dir: Path,
    sales_frame: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = foreign_folder(tmp_path / "out")
    before = snapshot(out)
    source = write_csv(tmp_path / "sales.csv", sales_frame)
    args = {
        "fit": ["fit", "--panel", str(panel_dir), "--model", "Naive"],
        "backtest": ["backtest", "--panel", str(panel_dir), "--models", "Naive"],
        "prepare": ["prepare", "csv", "--sales", str(source)],
        "trends": ["trends", "--panel", str(panel_dir)],
    }[command]
    refused([*args, "--out", str(out)], capsys, "not written by salesformer", "notes.txt")
    assert snapshot(out) == before


def test_fit_checks_out_before_training(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = foreign_folder(tmp_path / "model")
    code, stdout, err = invoke(
        ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(out)], capsys
    )
    assert code == 2 and "fitting" not in stdout, (stdout, err)


def test_an_owned_folder_is_replaced_whole(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    for model in ("WindowAverage", "Naive"):
        code, _, err = invoke(
            ["fit", "--panel", str(panel_dir), "--model", model, "--out", str(out)], capsys
        )
        assert code == 0, err
    assert json.loads((out / "config.json").read_text())["model"] == "Naive"
    owner = json.loads((out / OWNER_FILE).read_text())
    assert owner["written_by"] == "salesformer" and owner["kind"] == "model"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert written == set(owner["files"]) | {OWNER_FILE}
    assert [p.name for p in tmp_path.iterdir() if "salesformer-" in p.name] == []


def test_an_owned_folder_with_a_user_file_is_refused(
    naive_dir: Path, panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    shutil.copytree(naive_dir, out)
    (out / "my-notes.md").write_text("keep me")
    before = snapshot(out)
    refused(
        ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(out)],
        capsys,
        "files it did not write",
        "my-notes.md",
    )
    assert snapshot(out) == before


def test_an_owned_folder_of_another_kind_is_refused(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel = tmp_path / "panel"
    shutil.copytree(panel_dir, panel)
    before = snapshot(panel)
    args = ["fit", "--panel", str(panel), "--model", "Naive", "--out", str(panel)]
    refused(args, capsys, "holds a salesformer panel output", "writes a model")
    assert snapshot(panel) == before


def test_prepare_again_leaves_no_stale_items_file(
    sales_frame: pd.DataFrame,
    items_frame: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sales = write_csv(tmp_path / "sales.csv", sales_frame)
    items = write_csv(tmp_path / "items.csv", items_frame)
    out = tmp_path / "panel"
    args = ["prepare", "csv", "--sales", str(sales), "--out", str(out)]
    assert invoke([*args, "--items", str(items)], capsys)[0] == 0
    assert (out / "items.parquet").is_file()
    assert invoke(args, capsys)[0] == 0
    assert not (out / "items.parquet").exists()
    assert Panel.load(out).items is None


@pytest.mark.parametrize("kind", ["file", "under-file", "symlink"])
def test_unwritable_out_is_one_line(
    kind: str, panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("not a folder")
    target = {"file": blocker, "under-file": blocker / "model", "symlink": tmp_path / "link"}[kind]
    if kind == "symlink":
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real")
    before = snapshot(tmp_path)
    code, stdout, err = invoke(
        ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(target)], capsys
    )
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "fitting" not in stdout
    assert snapshot(tmp_path) == before


def test_a_read_only_location_is_refused_before_training(
    panel_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if self.parent == tmp_path:  # the tests run as root, which chmod does not stop
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = tmp_path / "model"
    code, stdout, err = invoke(
        ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(out)], capsys
    )
    assert code == 2 and "fitting" not in stdout, (stdout, err)
    assert "does not accept new files" in err and "Permission denied" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("command", ["predict", "whatif", "report"])
def test_file_outputs_refuse_a_folder(
    command: str, naive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = foreign_folder(tmp_path / ("out.csv" if command != "report" else "out.html"))
    before = snapshot(folder)
    args = {
        "predict": ["predict", "--model", str(naive_dir)],
        "whatif": ["whatif", "--model", str(naive_dir), "--price-change", "-0.1"],
        "report": ["report", "--backtest", str(tmp_path)],
    }[command]
    refused([*args, "--out", str(folder)], capsys, "is a folder")
    assert snapshot(folder) == before


def test_staging_left_by_a_crash_is_cleaned(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = tmp_path / f".model.salesformer-staging-{dead}-abc123"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    stale_file = tmp_path / f".model.salesformer-tmp-{dead}-abc124"
    stale_file.write_text("partial")
    unrelated = tmp_path / ".model.backup"
    unrelated.mkdir()
    out = tmp_path / "model"
    code, _, err = invoke(
        ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(out)], capsys
    )
    assert code == 0, err
    assert not stale.exists() and not stale_file.exists()
    assert unrelated.is_dir()  # not ours: kept


def test_a_folder_moved_aside_by_a_crash_is_restored(tmp_path: Path) -> None:
    dead = 2**22 + 12346
    old = tmp_path / f".panel.salesformer-old-{dead}-abcdef"
    old.mkdir()
    (old / "panel.parquet").write_text("x")
    clean_stale(tmp_path / "panel")
    assert (tmp_path / "panel" / "panel.parquet").read_text() == "x"


def test_a_failed_write_leaves_the_folder_and_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out, kind="test") as staging:
        (staging / "a.txt").write_text("first")
    before = snapshot(out)
    with pytest.raises(RuntimeError), atomic_dir(out, kind="test") as staging:
        (staging / "b.txt").write_text("second")
        raise RuntimeError("crash")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_library_savers_refuse_foreign_folders(small_panel: Panel, tmp_path: Path) -> None:
    from salesformer.models.persist import save_model
    from salesformer.models.registry import make_model

    out = foreign_folder(tmp_path / "target")
    before = snapshot(out)
    with pytest.raises(OutputError, match="not written by salesformer"):
        small_panel.save(out)
    with pytest.raises(OutputError, match="not written by salesformer"):
        save_model(make_model("Naive").fit(small_panel), out)
    assert snapshot(out) == before
