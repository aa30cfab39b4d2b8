"""Model switch under load: failed requests and forecast latency while ``salesformer serve``
switches between registry versions.

Fits two LMs (the bundled all-MiniLM-L6-v2 encoder, frozen; two seeds) on a seeded synthetic
catalogue, stores them as versions 1 and 2 of a registry, starts ``salesformer serve
--registry`` (uvicorn, one process, ``--forecast-cache 0`` so that every request runs the
served model), and sends known-item forecasts (``GET /items/{id}/forecast``) from client
threads with keep-alive connections while the main thread promotes the other version and
calls ``POST /models/reload``, ``--switches`` times. Measured: errors (any non-200 answer or
transport failure), each reload's seconds (load of the new version, history replay, swap),
and the latency p50 / p99 of the requests that overlapped a reload against the others. The
clients share the machine's cores with the server.

Results: ``benchmarks/results/model_switch.json`` and ``.md``. Usage::

    python -m benchmarks.model_switch [--items 60] [--clients 4] [--switches 6]
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, argument_parser, machine, write_results

API_KEY = "benchmark-key-0123456789"


def fit_versions(root: Path, items: int) -> None:
    """Two LMs on the same catalogue (seeds 0 and 1) as versions 1 (promoted) and 2."""
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.lm import LMForecaster
    from salesformer.models.versions import ModelRegistry

    panel = generate_catalogue(n_items=items, n_weeks=60, seed=0, new_item_share=0.0).panel()
    registry = ModelRegistry(root)
    for seed in (0, 1):
        model = LMForecaster(
            finetune="frozen", head_epochs=2, epoch_samples=1000, threads=1, progress=False,
            seed=seed,
        )  # fmt: skip
        registry.add(model.fit(panel), {"created_by": "benchmarks.model_switch"})
    registry.promote(1, "benchmarks.model_switch")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(registry: Path, db: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "salesformer.cli.main", "serve", "--registry", str(registry),
               "--db", str(db), "--port", str(port), "--forecast-cache", "0"]  # fmt: skip
    env = {**os.environ, "SALESFORMER_API_KEY": API_KEY}
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start within 120 s")


def run_load(port: int, registry: Path, clients: int, switches: int) -> dict[str, Any]:
    from salesformer.models.versions import ModelRegistry

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/items?limit=1000")
    import json

    items = [row["item_id"] for row in json.loads(connection.getresponse().read())["items"]]
    records: list[tuple[float, float, int]] = []  # start, seconds, status (-1: failed)
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        session = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            item = items[int(rng.integers(len(items)))]
            start = time.perf_counter()
            try:
                session.request("GET", f"/items/{item}/forecast")
                response = session.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = -1
                session = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                records.append((start, time.perf_counter() - start, status))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    registry_ = ModelRegistry(registry)
    reloads: list[tuple[float, float]] = []
    time.sleep(2.0)
    for switch in range(switches):
        registry_.promote(2 if switch % 2 == 0 else 1, "benchmarks.model_switch")
        admin = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start = time.perf_counter()
        admin.request("POST", "/models/reload", headers={"X-API-Key": API_KEY})
        answer = admin.getresponse()
        answer.read()
        reloads.append((start, time.perf_counter()))
        if answer.status != 200:
            raise RuntimeError(f"reload answered {answer.status}")
        time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()
    return summarize(records, reloads)


def summarize(records: list[tuple[float, float, int]], reloads: list[tuple[float, float]]) -> dict:
    def overlaps(start: float, seconds: float) -> bool:
        return any(start < end and start + seconds > begin for begin, end in reloads)

    during = [s * 1000 for t, s, _ in records if overlaps(t, s)]
    steady = [s * 1000 for t, s, _ in records if not overlaps(t, s)]

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "requests": len(values),
            "p50_ms": float(np.percentile(values, 50)) if values else float("nan"),
            "p99_ms": float(np.percentile(values, 99)) if values else float("nan"),
            "max_ms": float(np.max(values)) if values else float("nan"),
        }

    return {
        "requests": len(records),
        "errors": sum(1 for _, _, status in records if status != 200),
        "reload_seconds": [round(end - begin, 3) for begin, end in reloads],
        "steady": stats(steady),
        "during_reload": stats(during),
    }


def markdown(result: dict[str, Any]) -> str:
    steady, during = result["steady"], result["during_reload"]
    reloads = result["reload_seconds"]
    return "\n".join(
        [
            "# Model switch under load",
            "",
            f"`{result['provenance']['command']}` (commit {result['provenance']['commit']}, "
            f"{result['machine']['processor'] or result['machine']['machine']}, "
            f"{result['machine']['cores']} cores); {result['settings']['items']} items, "
            f"{result['settings']['clients']} clients, {len(reloads)} switches; load average "
            f"at the end {result['load_average_1_5_15']} (1, 5, 15 min: other jobs included).",
            "",
            "| requests | p50 ms | p99 ms | max ms |",
            "| --- | ---: | ---: | ---: |",
            f"| outside a reload ({steady['requests']}) | {steady['p50_ms']:.1f} | "
            f"{steady['p99_ms']:.1f} | {steady['max_ms']:.1f} |",
            f"| overlapping a reload ({during['requests']}) | {during['p50_ms']:.1f} | "
            f"{during['p99_ms']:.1f} | {during['max_ms']:.1f} |",
            "",
            f"Errors: {result['errors']} of {result['requests']} requests. Reload seconds "
            f"(load, replay, swap): {', '.join(f'{s:.2f}' for s in reloads)}.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", type=int, default=60, help="catalogue items")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--switches", type=int, default=6, help="reloads (alternating v1, v2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        registry = Path(folder) / "registry"
        fit_versions(registry, args.items)
        port = free_port()
        server = start_server(registry, Path(folder) / "events.db", port)
        try:
            result = run_load(port, registry, args.clients, args.switches)
        finally:
            server.terminate()
            server.wait(timeout=30)
    result["settings"] = {"items": args.items, "clients": args.clients, "switches": args.switches}
    result["machine"] = machine()
    result["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]  # others' jobs too
    write_results("model_switch", result, markdown, args.out, argv)
    print(markdown({**result, "provenance": {"command": "", "commit": ""}}))


if __name__ == "__main__":
    main()
