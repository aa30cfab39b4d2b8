"""Load benchmark of ``salesformer serve`` on loopback: forecast latency and event ingestion.

Starts ``salesformer serve`` (uvicorn, one process, torch threads 1, SQLite store in WAL with
every commit synced) as a user would, then measures from client threads on the same machine:

* known-item forecasts (``GET /items/{id}/forecast``, random known items, default horizon and
  quantiles 0.1,0.5,0.9) at 1, 8 and 32 concurrent clients with keep-alive connections:
  latency p50 / p99 and throughput, once with ``--forecast-cache 0`` (every request runs the
  forecasting head) and once with the default cache (a request for an item whose state has
  not changed is answered from the cache), then again with the cache after events reached
  every item;
* event ingestion (``POST /events``), batches of 100 new events from 1 and 4 clients: events
  stored per second;
* errors: any non-200 answer or transport failure, for each phase;
* accuracy monitoring (issue 19): two servers run side by side, one started with
  ``--no-monitor`` and one with monitoring on (the default: each served forecast recorded once
  per item and origin, scored as events arrive); every phase sends the same requests to one,
  then the other, so forecast p99 and events/s can be compared within the same minutes.
  Events are dated over the 20 days after the clock, so forecast periods close and the
  monitor scores while events arrive. Then, in one process (no HTTP, no client threads), two
  services over the same model with the forecast cache off, monitoring off and on, each
  forecast and each batch of events sent to one then the other (alternating which goes
  first): what monitoring adds to a call, with the machine's load hitting both alike.

Targets (issue 5): p99 under 50 ms at 8 clients, at least 2,000 events/s, zero errors.

The model: ``--model DIR`` (e.g. the demo's ``out/model``), or by default an LM with the real
bundled all-MiniLM-L6-v2 encoder (frozen) and the default head size, fitted here on a seeded
synthetic catalogue of 200 items x 104 weeks; the head's size, not the catalogue, sets the cost
of a known-item forecast. The clients share the machine's cores with the server, so the
numbers are for client and server together.

Results: ``benchmarks/results/service.json`` and ``.md``. Usage::

    python -m benchmarks.service [--model DIR] [--requests 1200] [--batches 60]
        [--monitoring both|on|off]
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import RESULTS, argument_parser, machine, write_results

API_KEY = "benchmark-key-0123456789"
CONCURRENCY = (1, 8, 32)
INGEST_CLIENTS = (1, 4)
BATCH = 100
#: Events are dated over the 20 days after the clock: the clock moves two weeks, closing
#: forecast periods, so that with monitoring on the monitor scores during ingestion.
SPREAD = 60 * 24 * 20


def fit_default_model(folder: Path) -> None:
    """A frozen-MiniLM LM with the default head on a synthetic catalogue (a minute or two)."""
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.lm import LMForecaster

    panel = generate_catalogue(n_items=200, n_weeks=104, seed=1).panel()
    model = LMForecaster(
        finetune="frozen", head_epochs=4, epoch_samples=4000, threads=1, progress=False
    )
    model.fit(panel).save(folder)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    model: Path, db: Path, port: int, cache: int, monitor: bool = True
) -> subprocess.Popen[str]:
    env = {**os.environ, "SALESFORMER_API_KEY": API_KEY}
    command = [
        sys.executable, "-m", "salesformer.cli.main", "serve", "--model", str(model),
        "--db", str(db), "--port", str(port), "--forecast-cache", str(cache),
        "--monitor" if monitor else "--no-monitor",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"the server exited: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            status, _ = request("GET", port, "/health")
            if status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start within 300 s")


def request(
    method: str,
    port: int,
    path: str,
    body: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = connection is None
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if own:
        conn.close()
    return answer.status, data


def run_clients(
    clients: int, port: int, jobs: list[tuple[str, str, bytes | None]]
) -> tuple[list[float], float, int]:
    """Send ``jobs`` from ``clients`` threads; (latencies in s, wall seconds, errors)."""
    shares = [jobs[i::clients] for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def work(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        barrier.wait()
        for method, path, body in shares[index]:
            started = time.perf_counter()
            try:
                status, _ = request(method, port, path, body, conn)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies[index].append(time.perf_counter() - started)
            errors[index] += status != 200
        conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return [x for part in latencies for x in part], wall, sum(errors)


def forecast_jobs(items: list[str], n: int, rng: random.Random) -> list[tuple[str, str, None]]:
    return [
        ("GET", f"/items/{rng.choice(items)}/forecast?quantiles=0.1,0.5,0.9", None)
        for _ in range(n)
    ]


def event_jobs(
    items: list[str], start: pd.Timestamp, batches: int, tag: str, rng: random.Random
) -> list[tuple[str, str, bytes]]:
    jobs = []
    for b in range(batches):
        events = [
            {
                "event_id": f"{tag}-{b}-{j}",
                "item_id": rng.choice(items),
                "timestamp": (start + timedelta(minutes=rng.randrange(0, SPREAD))).isoformat(),
                "quantity": rng.randrange(1, 5),
                "price": round(rng.uniform(2, 20), 2),
                "order_id": f"o{b}-{j // 3}",
            }
            for j in range(BATCH)
        ]
        jobs.append(("POST", "/events", json.dumps({"events": events}).encode()))
    return jobs


def latency_row(clients: int, latencies: list[float], wall: float, errors: int) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "errors": errors,
    }


def measure(
    model: Path,
    work: Path,
    cache: int,
    requests: int,
    batches: int,
    ingest: bool,
    monitors: tuple[bool, ...] = (True,),
) -> list[dict[str, Any]]:
    """Start one server per monitoring setting (``--forecast-cache cache``), run the phases.

    The servers run side by side; each phase sends the same requests (or events) to one
    server, then to the next, so that a change in the machine's load between phases hits both
    settings alike.
    """
    rng = random.Random(cache)
    ports = {monitor: free_port() for monitor in monitors}
    outs: dict[bool, dict[str, Any]] = {}
    servers = []
    try:
        for monitor in monitors:
            started = time.perf_counter()
            db = work / f"events-{cache}-{'on' if monitor else 'off'}.db"
            servers.append(start_server(model, db, ports[monitor], cache, monitor))
            outs[monitor] = {
                "forecast_cache": cache,
                "monitoring": monitor,
                "server_start_seconds": round(time.perf_counter() - started, 1),
                "forecasts": [],
            }
        health = json.loads(request("GET", ports[monitors[0]], "/health")[1])
        found = json.loads(request("GET", ports[monitors[0]], "/items?limit=1000")[1])
        items = [row["item_id"] for row in found["items"]]
        warm_up = forecast_jobs(items, 100, rng)
        for monitor in monitors:
            outs[monitor]["items"] = len(items)
            run_clients(4, ports[monitor], warm_up)

        def each(label: str, key: str, jobs: list[Any], row_of: Any) -> None:
            for monitor in monitors:
                row = row_of(*run_clients(clients, ports[monitor], jobs))
                if key == "forecasts" or key == "ingestion":
                    outs[monitor].setdefault(key, []).append(row)
                else:
                    outs[monitor][key] = row
                print(f"cache {cache}, monitoring {'on' if monitor else 'off'}: {label} {row}")

        for clients in CONCURRENCY:
            each(
                "forecasts",
                "forecasts",
                forecast_jobs(items, requests, rng),
                lambda *r, c=clients: latency_row(c, *r),
            )
        if not ingest:
            return [outs[m] for m in monitors]
        clock = pd.Timestamp(health["clock"])
        for clients in INGEST_CLIENTS:
            jobs = event_jobs(items, clock, batches, f"c{clients}", rng)
            each(
                "ingestion",
                "ingestion",
                jobs,
                lambda *r, c=clients, n=len(jobs): ingest_row(c, n, *r),
            )
        for monitor in monitors:
            out = outs[monitor]
            health = json.loads(request("GET", ports[monitor], "/health")[1])
            out["events_stored"] = int(health["events"])
            out["events_sent"] = sum(row["batches"] for row in out["ingestion"]) * BATCH
        # every item has new events now: each first request per item recomputes
        clients = 8
        each(
            "after events",
            "forecasts_after_events",
            forecast_jobs(items, requests, rng),
            lambda *r: latency_row(8, *r),
        )
        for monitor in monitors:
            if monitor:
                status, body = request("GET", ports[monitor], "/monitoring")
                report = json.loads(body) if status == 200 else {}
                window = report.get("windows", [{}])[0]
                outs[monitor]["monitoring_report"] = {
                    "recorded_cells": report.get("recorded_cells"),
                    "scored_through": report.get("scored_through"),
                    "scored_cells_last_window": window.get("overall", {}).get("cells"),
                }
        return [outs[m] for m in monitors]
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


def ingest_row(
    clients: int, batches: int, latencies: list[float], wall: float, errors: int
) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "batches": batches,
        "batch_size": BATCH,
        "events_per_second": round(batches * BATCH / wall, 0),
        "batch_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "batch_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
    }


AB_LEVELS = (0.1, 0.5, 0.9)


def _ab_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    pick = {"p50_ms": np.percentile(ms, 50), "p99_ms": np.percentile(ms, 99), "mean_ms": ms.mean()}
    return {key: round(float(value), 3) for key, value in pick.items()}


def in_process_ab(model_dir: Path, work: Path, forecasts: int, batches: int) -> dict[str, Any]:
    """Forecast latency and ingestion rate with monitoring off and on, alternating per call."""
    from salesformer.models.persist import load_model
    from salesformer.service.core import SalesService, ServiceConfig
    from salesformer.service.monitoring import MonitorSettings
    from salesformer.service.store import Event

    model = load_model(model_dir)
    services = {
        monitor: SalesService.start(
            ServiceConfig(
                model_dir=model_dir,
                db=str(work / f"ab-{'on' if monitor else 'off'}.db"),
                forecast_cache=0,
                monitoring=MonitorSettings(enabled=monitor),
            ),
            model,
        )
        for monitor in (False, True)
    }
    try:
        items = list(services[True].live.item_ids)
        rng = random.Random(7)
        latency: dict[bool, list[float]] = {False: [], True: []}
        for i in range(forecasts):
            item = rng.choice(items)
            for monitor in (False, True) if i % 2 == 0 else (True, False):
                started = time.perf_counter()
                services[monitor].forecast(item, None, AB_LEVELS)
                latency[monitor].append(time.perf_counter() - started)
        clock = datetime.combine(services[True].clock_date(), datetime.min.time())
        ingest: dict[bool, float] = {False: 0.0, True: 0.0}
        for b in range(batches):
            batch = [
                Event(
                    f"ab-{b}-{j}",
                    rng.choice(items),
                    clock + timedelta(minutes=rng.randrange(0, 60 * 24 * 20)),
                    float(rng.randrange(1, 5)),
                    round(rng.uniform(2, 20), 2),
                )
                for j in range(100)
            ]
            for monitor in (False, True) if b % 2 == 0 else (True, False):
                started = time.perf_counter()
                services[monitor].ingest(batch)
                ingest[monitor] += time.perf_counter() - started
        monitor: Any = services[True].monitor
        monitor.flush()
        report = monitor.report()
        return {
            "what": "in one process, forecast cache off, monitoring off / on alternating per call",
            "forecasts_per_setting": forecasts,
            "forecast_off": _ab_stats(latency[False]),
            "forecast_on": _ab_stats(latency[True]),
            "event_batches_per_setting": batches,
            "events_per_second_off": round(batches * 100 / ingest[False], 0),
            "events_per_second_on": round(batches * 100 / ingest[True], 0),
            "recorded_cells": report["recorded_cells"],
            "scored_cells_last_window": report["windows"][0]["overall"]["cells"],
        }
    finally:
        for service in services.values():
            service.close()


def ab_markdown(result: dict[str, Any]) -> list[str]:
    """Lines of the results page."""
    off, on = result["forecast_off"], result["forecast_on"]
    return [
        "",
        f"In one process ({result['what']}; {result['forecasts_per_setting']} forecasts and "
        f"{result['event_batches_per_setting']} batches of 100 events per setting; "
        f"{result['recorded_cells']} forecast cells recorded, "
        f"{result['scored_cells_last_window']} scored in the last window):",
        "",
        "| monitoring | forecast p50 ms | forecast p99 ms | forecast mean ms | events/s |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| off | {off['p50_ms']} | {off['p99_ms']} | {off['mean_ms']} | "
        f"{result['events_per_second_off']:.0f} |",
        f"| on | {on['p50_ms']} | {on['p99_ms']} | {on['mean_ms']} | "
        f"{result['events_per_second_on']:.0f} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--model", type=Path, default=None, help="a fitted LM folder")
    parser.add_argument("--requests", type=int, default=1200, help="forecasts per level")
    parser.add_argument("--batches", type=int, default=60, help="event batches per level")
    parser.add_argument(
        "--monitoring",
        choices=("both", "on", "off"),
        default="both",
        help="servers with accuracy monitoring off and on (both, the default), or one of them",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="salesformer-bench-"))
    model = args.model
    if model is None:
        model = work / "model"
        started = time.perf_counter()
        fit_default_model(model)
        print(f"fitted the benchmark LM in {time.perf_counter() - started:.0f} s")
    load_before = os.getloadavg()
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.monitoring]
    runs = []
    for cache, ingest in ((0, False), (4096, True)):
        runs += measure(model, work, cache, args.requests, args.batches, ingest, modes)
    ab = in_process_ab(model, work, args.requests, args.batches) if len(modes) == 2 else None
    uncached, cached = runs[len(modes) - 1], runs[-1]  # monitoring on when it ran
    rows = [row for run in runs for row in run["forecasts"]]
    rows += [run["forecasts_after_events"] for run in runs if "forecasts_after_events" in run]
    ingestion = [row for run in runs for row in run.get("ingestion", [])]
    eight = next(row for row in cached["forecasts"] if row["clients"] == 8)
    result = {
        "benchmark": "salesformer serve, loopback, one uvicorn process, SQLite (WAL, FULL sync)",
        "model": str(args.model)
        if args.model
        else "LM frozen all-MiniLM-L6-v2, default head, synthetic 200 items x 104 weeks",
        "items": cached["items"],
        "runs": runs,
        "monitoring_effect": monitoring_effect(runs),
        "monitoring_in_process": ab,
        "targets": {
            "p99_under_50ms_at_8_clients": eight["p99_ms"] < 50,
            "p99_under_50ms_at_8_clients_without_cache": next(
                row for row in uncached["forecasts"] if row["clients"] == 8
            )["p99_ms"]
            < 50,
            "ingestion_at_least_2000_per_s": min(
                r["events_per_second"] for r in cached["ingestion"]
            )
            >= 2000,
            "zero_errors": all(r["errors"] == 0 for r in [*rows, *ingestion])
            and all(r["events_stored"] == r["events_sent"] for r in runs if "ingestion" in r),
        },
        "machine": {
            **machine(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "2-core machine shared with other jobs during the run; clients and "
            "server on the same cores",
        },
    }
    page = markdown(result)
    write_results("service", result, page, args.out, argv)
    print(page)


def monitoring_effect(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Monitoring off against on, per cache setting and phase (only when both ran)."""
    out = []
    for cache in sorted({run["forecast_cache"] for run in runs}):
        pair = {run["monitoring"]: run for run in runs if run["forecast_cache"] == cache}
        if set(pair) != {False, True}:
            continue
        off, on = pair[False], pair[True]
        for row_off, row_on in zip(off["forecasts"], on["forecasts"], strict=True):
            out.append(
                {
                    "forecast_cache": cache,
                    "phase": f"forecasts, {row_on['clients']} clients",
                    "p99_ms_off": row_off["p99_ms"],
                    "p99_ms_on": row_on["p99_ms"],
                }
            )
        if "ingestion" in on:
            for row_off, row_on in zip(off["ingestion"], on["ingestion"], strict=True):
                out.append(
                    {
                        "forecast_cache": cache,
                        "phase": f"ingestion, {row_on['clients']} clients",
                        "events_per_second_off": row_off["events_per_second"],
                        "events_per_second_on": row_on["events_per_second"],
                    }
                )
            out.append(
                {
                    "forecast_cache": cache,
                    "phase": "forecasts after events, 8 clients",
                    "p99_ms_off": off["forecasts_after_events"]["p99_ms"],
                    "p99_ms_on": on["forecasts_after_events"]["p99_ms"],
                }
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    host = result["machine"]
    lines = [
        "# Service load benchmark (`python -m benchmarks.service`)",
        "",
        f"{result['benchmark']}; model: {result['model']} ({result['items']} items).",
        f"Machine: {host['cores']} CPUs, load average before "
        f"{host['load_average_before']} / after {host['load_average_after']} "
        f"({host['note']}).",
        "",
        "Known-item forecasts (`GET /items/{id}/forecast`, random items, quantiles 0.1,0.5,0.9):",
        "",
        "| forecast cache | monitoring | clients | requests | p50 ms | p99 ms | requests/s "
        "| errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        label = "off (every request runs the head)" if run["forecast_cache"] == 0 else "on"
        monitor = "on" if run.get("monitoring", True) else "off"
        for row in run["forecasts"]:
            lines.append(
                f"| {label} | {monitor} | {row['clients']} | {row['requests']} | "
                f"{row['p50_ms']} | {row['p99_ms']} | {row['throughput_rps']} | {row['errors']} |"
            )
        row = run.get("forecasts_after_events")
        if row:
            lines.append(
                f"| on, after events reached every item | {monitor} | {row['clients']} | "
                f"{row['requests']} | {row['p50_ms']} | {row['p99_ms']} | "
                f"{row['throughput_rps']} | {row['errors']} |"
            )
    lines += [
        "",
        "Event ingestion (`POST /events`, batches of 100 new events):",
        "",
        "| monitoring | clients | batches | events/s | batch p50 ms | batch p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        monitor = "on" if run.get("monitoring", True) else "off"
        for row in run.get("ingestion", []):
            lines.append(
                f"| {monitor} | {row['clients']} | {row['batches']} | "
                f"{row['events_per_second']:.0f} | {row['batch_p50_ms']} | "
                f"{row['batch_p99_ms']} | {row['errors']} |"
            )
    effect = result.get("monitoring_effect", [])
    if effect:
        lines += [
            "",
            "Accuracy monitoring off against on (same run: two servers side by side, each "
            "phase sent to one, then the other):",
            "",
            "| forecast cache | phase | off | on |",
            "| ---: | --- | ---: | ---: |",
        ]
        for row in effect:
            if "p99_ms_off" in row:
                values = f"p99 {row['p99_ms_off']} ms | p99 {row['p99_ms_on']} ms"
            else:
                values = (
                    f"{row['events_per_second_off']:.0f} events/s | "
                    f"{row['events_per_second_on']:.0f} events/s"
                )
            lines.append(f"| {row['forecast_cache']} | {row['phase']} | {values} |")
    if result.get("monitoring_in_process"):
        lines += ab_markdown(result["monitoring_in_process"])
    stored = [run for run in result["runs"] if "events_sent" in run]
    lines += [
        "",
        "Events stored: "
        + ", ".join(
            f"{r['events_stored']} of {r['events_sent']} sent "
            f"(monitoring {'on' if r.get('monitoring', True) else 'off'})"
            for r in stored
        )
        + f". Targets: {json.dumps(result['targets'])}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
