"""Render a report in headless Chromium: the DOM after plotly has drawn, and a screenshot.

Used by the tests and the benchmark to check a report as a person sees it: every chart is
drawn, and draws data (SVG paths with points), not an empty frame.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from salesformer.errors import ConfigError

#: Flags that keep Chromium offline and quiet: no sync, no updates, no background requests.
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_DATA_LAYERS = ("scatterlayer", "barlayer")
_VOID = frozenset(("path", "rect", "circle", "line", "text", "br", "img", "meta", "input", "hr"))


def chromium_path() -> str | None:
    """The Chromium binary: ``$SALESFORMER_CHROMIUM``, else ``chromium`` on the PATH."""
    given = os.environ.get("SALESFORMER_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: Path, flags: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = chromium_path()
    if binary is None:
        raise ConfigError(
            "no Chromium found; install it (apt install chromium) or set SALESFORMER_CHROMIUM"
        )
    with tempfile.TemporaryDirectory(prefix="sf-chromium-") as profile:
        command = [binary, *QUIET_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"chromium failed on {page} (exit {done.returncode}): {tail[0]}")
    return done


def rendered_dom(page: str | Path, wait_ms: int = 20000, timeout: float = 180) -> str:
    """The page's DOM after its scripts ran (``--dump-dom`` with a virtual time budget)."""
    path = Path(page).resolve()
    return _run(path, [f"--virtual-time-budget={wait_ms}", "--dump-dom"], timeout).stdout


def screenshot(
    page: str | Path,
    png: str | Path,
    size: tuple[int, int] = (1280, 5000),
    wait_ms: int = 20000,
    timeout: float = 180,
) -> Path:
    """A PNG of the top ``size`` (width, height) pixels of the rendered page."""
    path, out = Path(page).resolve(), Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = [
        f"--virtual-time-budget={wait_ms}",
        f"--screenshot={out}",
        f"--window-size={size[0]},{size[1]}",
    ]
    _run(path, flags, timeout)
    if not out.is_file():
        raise ConfigError(f"chromium wrote no screenshot to {out}")
    return out


class _ChartPaths(HTMLParser):
    """Per plotly chart (its div id), the number of path points drawn in its data layers."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str, str]] = []  # tag, classes, chart id
        self.points: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        classes = values.get("class", "")
        chart = self.stack[-1][2] if self.stack else ""
        if "plotly-graph-div" in classes.split():
            chart = values.get("id", "")
            self.points.setdefault(chart, 0)
        if tag == "path" and chart:
            inside = " ".join(c for _, c, _ in self.stack)
            if any(layer in inside for layer in _DATA_LAYERS):
                self.points[chart] += len(re.findall(r"[MLHV]", values.get("d", "")))
        if tag not in _VOID:
            self.stack.append((tag, classes, chart))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return


def chart_points(dom: str) -> dict[str, int]:
    """``{chart id: points drawn}`` for every plotly chart of a rendered DOM (0: empty)."""
    parser = _ChartPaths()
    parser.feed(dom)
    return parser.points
