"""A service's short history, one point per sampling period: what clients got (requests,
5xx, p50/p99) and what served them (nodes, replicas, state), computed from two readings of
the endpoint's cumulative counters.

Pure: the sampler reads (``control.series_sampler``), this module turns two readings into
a point. A counter that went down means the endpoint restarted (a reload starts its
counters at 0): the interval then counts what the new process counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from headway.plan import haproxy_counts

#: The history's resolution and how long it is kept (at least the hour the dashboard shows).
PERIOD_S = 10.0
RETENTION_S = 3 * 3600.0
#: The rollout events the charts mark, and what the mark says.
ROLLOUT_MARKS = {
    "rollout_started": "rollout started",
    "rollout_completed": "rollout completed",
    "rollout_rolled_back": "rollout rolled back",
}


@dataclass
class Reading:
    """The endpoint's cumulative counters at one moment (summed over its backends)."""

    requests: int = 0
    errors_5xx: int = 0
    #: cumulative counts per ``haproxy_counts.BUCKETS_MS`` bound, then the total (+Inf)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(haproxy_counts.BUCKETS_MS) + 1))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Reading | None:
        if not data:
            return None
        return cls(int(data.get("requests", 0)), int(data.get("errors_5xx", 0)), list(data.get("buckets") or []))


def reading(ingress: dict[str, Any] | None) -> Reading | None:
    """From ``instances.stats``: None when the endpoint does not answer."""
    if not ingress:
        return None
    fe = ingress.get("frontend") or {}
    r = Reading(int(fe.get("requests", 0)), int(fe.get("hrsp_5xx", 0)))
    for b in ((ingress.get("responses") or {}).get("by_backend") or {}).values():
        counts = [int(b.get("buckets_ms", {}).get(str(le), 0)) for le in haproxy_counts.BUCKETS_MS] + [
            int(b.get("count", 0))
        ]
        r.buckets = [x + y for x, y in zip(r.buckets, counts, strict=True)]
    return r


def _delta(now: int, before: int) -> int:
    return now - before if now >= before else now


def quantile(q: float, cumulative: list[int]) -> float | None:
    """The ``q`` quantile in ms of a cumulative histogram (the last count is the total), by
    linear interpolation inside the bucket, as Prometheus's ``histogram_quantile``; above the
    last bound: that bound. None without observations."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    bounds = haproxy_counts.BUCKETS_MS
    lower, below = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=False):
        if count >= rank:
            inside = count - below
            return round(lower + (bound - lower) * ((rank - below) / inside if inside else 1.0), 2)
        lower, below = float(bound), count
    return float(bounds[-1])


def point(
    t: float, before: Reading | None, now: Reading | None, nodes: int, replicas: int | None, state: str
) -> dict[str, Any]:
    """One point: the interval's requests, 5xx and latency quantiles (None where there is no
    reading at either end), and the service's nodes alive, replicas running and state."""
    p: dict[str, Any] = {"t": round(t, 3), "nodes": nodes, "replicas": replicas, "state": state}
    if now is None or before is None or len(before.buckets) != len(now.buckets):
        return p | {"requests": None, "errors_5xx": None, "p50_ms": None, "p99_ms": None}
    if now.requests < before.requests or now.buckets[-1] < before.buckets[-1]:
        before = Reading(0, 0, [0] * len(now.buckets))  # the endpoint restarted: counted from 0
    hist = [_delta(a, b) for a, b in zip(now.buckets, before.buckets, strict=True)]
    return p | {
        "requests": _delta(now.requests, before.requests),
        "errors_5xx": _delta(now.errors_5xx, before.errors_5xx),
        "p50_ms": quantile(0.5, hist),
        "p99_ms": quantile(0.99, hist),
    }


def _mark(e: dict[str, Any]) -> tuple[str, str] | None:
    kind, details = e.get("kind"), e.get("details") or {}
    if kind == "state" and e.get("state") == "HEAD_RECOVERING":
        return "head_lost", "head lost"
    if kind == "state" and e.get("state") == "RUNNING" and "downtime_s" in details:
        return "head_back", f"head back after {details['downtime_s']} s"
    if kind in ROLLOUT_MARKS:
        return str(kind), ROLLOUT_MARKS[str(kind)]
    return None


def marks(events: list[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """The timeline's head failures, recoveries and rollouts since ``since``, for the charts."""
    out = []
    for e in events:
        m = _mark(e)
        if m and e.get("at", 0) >= since:
            out.append({"t": e["at"], "kind": m[0], "text": m[1]})
    return out
