"""Request counts, latencies and ingested events, written in the Prometheus text format."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict

#: Upper bounds (seconds) of the latency histogram's buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(**values: str) -> str:
    inner = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in values.items()
    )
    return "{" + inner + "}"


class Metrics:
    """Counters and a latency histogram per route, safe to update from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)
        self.events_stored = 0
        self.events_duplicate = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        key = (method, route)
        with self._lock:
            self._requests[(method, route, status)] += 1
            counts = self._buckets.setdefault(key, [0] * (len(BUCKETS) + 1))
            counts[bisect_left(BUCKETS, seconds)] += 1
            self._sums[key] += seconds

    def events(self, stored: int, duplicates: int) -> None:
        """Count ingested events."""
        with self._lock:
            self.events_stored += stored
            self.events_duplicate += duplicates

    def render(self) -> str:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        lines = [
            "# HELP salesformer_requests_total HTTP requests by method, route and status.",
            "# TYPE salesformer_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self._requests.items()):
                labels = _labels(method=method, route=route, status=str(status))
                lines.append(f"salesformer_requests_total{labels} {count}")
            lines += [
                "# HELP salesformer_request_seconds Request latency by method and route.",
                "# TYPE salesformer_request_seconds histogram",
            ]
            for (method, route), counts in sorted(self._buckets.items()):
                running = 0
                for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
                    running += count
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    labels = _labels(method=method, route=route, le=le)
                    lines.append(f"salesformer_request_seconds_bucket{labels} {running}")
                labels = _labels(method=method, route=route)
                lines.append(
                    f"salesformer_request_seconds_sum{labels} {self._sums[(method, route)]:.6f}"
                )
                lines.append(f"salesformer_request_seconds_count{labels} {running}")
            lines += [
                "# HELP salesformer_events_ingested_total Events stored (new event ids).",
                "# TYPE salesformer_events_ingested_total counter",
                f"salesformer_events_ingested_total {self.events_stored}",
                "# HELP salesformer_events_duplicate_total Events skipped as already stored.",
                "# TYPE salesformer_events_duplicate_total counter",
                f"salesformer_events_duplicate_total {self.events_duplicate}",
            ]
        return "\n".join(lines) + "\n"
