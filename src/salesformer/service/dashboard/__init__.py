"""The dashboard: one HTML page, a script and a style sheet, served by the app itself.

Charts use plotly.js from the installed ``plotly`` package (its bundled ``plotly.min.js``), so
the page works offline and needs no build step. Static files are looked up in a fixed table:
a request never names a path on disk.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path

from starlette.exceptions import HTTPException

_OWN = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PLOTLY = "plotly.min.js"


def page(protect_reads: bool) -> str:
    """The HTML page; with keyed reads it asks for the API key."""
    html = resources.files(__name__).joinpath("index.html").read_text(encoding="utf-8")
    return html.replace("{{PROTECT_READS}}", "true" if protect_reads else "false")


@cache
def asset(name: str) -> tuple[bytes, str]:
    """Bytes and media type of a static file (404 for any other name)."""
    if name in _OWN:
        return resources.files(__name__).joinpath(name).read_bytes(), _OWN[name]
    if name == PLOTLY:
        path = plotly_js()
        if path is None:
            raise HTTPException(
                404,
                "plotly.js is not installed; install it with: pip install 'salesformer[report]'",
            )
        return path.read_bytes(), "text/javascript; charset=utf-8"
    raise HTTPException(404, "Not Found")


def plotly_js() -> Path | None:
    """The ``plotly.min.js`` bundled with the installed plotly package, or None."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / PLOTLY
    return path if path.is_file() else None
