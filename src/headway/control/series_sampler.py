"""Every ``series.PERIOD_S`` the controller notes each service's point of history: the
endpoint's counters (``instances.stats``), the nodes alive, the replicas running, the
state. Runs in its own thread: a slow reading (a host over SSH that does not answer) must
not delay the watchdog's round.
"""

from __future__ import annotations

import logging
import time

from headway.cluster import serve
from headway.control.context import Context
from headway.ingress import instances
from headway.plan import series
from headway.state import records, series_store
from headway.state.records import ServiceRecord

log = logging.getLogger("headway.series")


def _clusters(rec: ServiceRecord) -> list[ServiceRecord]:
    """The service's cluster and, during a rollout, the new version's."""
    new = records.load(rec.rollout.cluster) if rec.rollout else None
    return [rec] + ([new] if new else [])


def _nodes_and_replicas(ctx: Context, rec: ServiceRecord) -> tuple[int, int | None]:
    """Nodes alive, and replicas running (None while a head cannot be asked)."""
    nodes, replicas = 0, 0
    for cluster in _clusters(rec):
        prov = ctx.provider(cluster)
        alive = {n.name for n in cluster.nodes if prov.alive(n)}
        nodes += len(alive)
        details = (
            serve.get_applications(serve.head_api(cluster)) if cluster.head and cluster.head.name in alive else None
        )
        if details is None or replicas is None:
            replicas = None
            continue
        replicas += sum(d.get("running", 0) for deps in serve.replicas(details).values() for d in deps.values())
    return nodes, replicas


def sample(ctx: Context, rec: ServiceRecord, now: float) -> dict:
    """Read the service once, store its point, return it."""
    nodes, replicas = _nodes_and_replicas(ctx, rec)
    reading = series.reading(instances.stats(ctx.cloud, rec.ingress))
    last = series_store.last_reading(rec.name)
    # A previous reading older than a few periods (the controller was down) spans an
    # interval the point would misstate: the point then has no request figures.
    before = series.Reading.from_json(last[1]) if last and now - last[0] <= 3 * series.PERIOD_S else None
    point = series.point(now, before, reading, nodes, replicas, str(rec.state))
    series_store.append(rec.name, now, reading.to_json() if reading else None, point, series.RETENTION_S)
    return point


def sample_all() -> None:
    ctx = Context.load()
    for rec in records.all_records():
        if rec.parent is not None:
            continue  # a rollout's new cluster: part of its service's point
        try:
            sample(ctx, rec, time.time())
        except Exception:  # noqa: BLE001 - one service's bad reading must not cost the others theirs
            log.exception("%s: reading its history point failed", rec.name)
