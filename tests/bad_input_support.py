"""Helpers and fixtures of the bad-input suites (``test_bad_input_*.py``).

A tiny panel, a Naive model, a tiny LM and a backtest, all made through the CLI; ``refused``
asserts the promised answer to bad input (exit code 2, one ``error:`` line, no traceback) and
``snapshot`` lets a test check that nothing was written or lost.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.synthetic import generate_catalogue

H = 4


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; an uncaught exception (a traceback) fails the test."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 0
    return code, captured.out, captured.err


def refused(args: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Assert exit code 2 and one ``error:`` line holding ``fragments``; return the line."""
    code, out, err = invoke(args, capsys)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(*paths: Path) -> dict[str, str]:
    """Every file under ``paths`` (and the entries beside them) with a hash of its bytes."""
    found: dict[str, str] = {}
    for path in paths:
        roots = [path] if path.exists() else []
        if path.parent.exists():
            roots += [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
        for root in roots:
            files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
            for file in files:
                found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
            if root.is_dir():
                found[str(root)] = "dir"
    return found


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


def foreign_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "sub").mkdir()
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def empty_file(path: Path) -> Path:
    path.write_text("")
    return path


def header_only(path: Path) -> Path:
    path.write_text("item_id,text,price\n")
    return path


def garbage_parquet(path: Path) -> Path:
    path.write_bytes(b"PAR1 this is not parquet")
    return path


# -- fixtures: a tiny panel, a Naive model and a tiny LM, all through the CLI -----------------


@pytest.fixture(scope="module")
def sales_frame() -> pd.DataFrame:
    catalogue = generate_catalogue(n_items=8, n_weeks=40, seed=1)
    return catalogue.sales[["item_id", "date", "sales", "price", "discount", "promo"]].copy()


@pytest.fixture(scope="module")
def items_frame() -> pd.DataFrame:
    catalogue = generate_catalogue(n_items=8, n_weeks=40, seed=1)
    return catalogue.panel().items


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=8, n_weeks=40, seed=1).panel()
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


@pytest.fixture(scope="module")
def naive_dir(panel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("naive") / "model"
    with pytest.raises(SystemExit) as info:
        run(["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(out)])
    assert info.value.code in (0, None)
    return out


LM_SETTINGS = {
    "head_epochs": 2,
    "finetune_epochs": 1,
    "epoch_samples": 200,
    "hidden_size": 16,
    "threads": 1,
}


@pytest.fixture(scope="module")
def lm_dir(panel_dir: Path, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "model"
    args = ["fit", "--panel", str(panel_dir), "--model", "lm", "--horizon", str(H)]
    args += ["--finetune", "frozen", "--encoder", tiny_encoder]
    for key, value in LM_SETTINGS.items():
        args += ["--set", f"{key}={value}"]
    with pytest.raises(SystemExit) as info:
        run([*args, "--out", str(out)])
    assert info.value.code in (0, None)
    return out


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def backtest_dir(panel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "bt"
    with pytest.raises(SystemExit) as info:
        run(
            [
                "backtest",
                "--panel",
                str(panel_dir),
                "--models",
                "Naive",
                "-h",
                "4",
                "--out",
                str(out),
            ]
        )
    assert info.value.code in (0, None)
    return out
