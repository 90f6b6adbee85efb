"""Which backends a service's endpoint sends to: every worker's Serve proxy, and during a
rollout the new cluster's too, each with its share of the traffic. Read from the records
alone: the views and the rollout read them without touching the endpoint's process."""

from __future__ import annotations

from collections.abc import Collection

from headway.cluster.ray_node import GRPC_PORT
from headway.plan import rollout_policy
from headway.state import records
from headway.state.records import NodeRecord, ServiceRecord


def backends_of(rec: ServiceRecord, nodes: list[NodeRecord]) -> list[str]:
    return [f"{n.ip}:{n.ports.get('proxy') or rec.serve_port}" for n in nodes]


def backends(rec: ServiceRecord) -> list[str]:
    """``ip:port`` of every worker's Serve proxy (never the head's), a rollout's new cluster's too."""
    return targets(rec)[0]


def targets(rec: ServiceRecord, up: Collection[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """The backends and, during a rollout, each one's weight: the old cluster's workers and
    the new cluster's share the traffic as the rollout's step says (``rollout_policy``).
    ``up``: the backends passing their health checks — a down server takes no traffic, so
    the split is computed over those that do (else a dead worker's share moves to the other
    version until it is replaced)."""
    old = backends_of(rec, rec.workers)
    new_cluster = records.load(rec.rollout.cluster) if rec.rollout else None
    if rec.rollout is None or new_cluster is None:
        return old, {}
    new = backends_of(new_cluster, new_cluster.workers)

    def count(addrs: list[str]) -> int:
        return len(addrs) if up is None else sum(1 for a in addrs if a in up)

    w_old, w_new = rollout_policy.split_weights(count(old), count(new), rec.rollout.percent)
    return old + new, {a: w_old for a in old} | {a: w_new for a in new}


def backend_versions(rec: ServiceRecord) -> dict[str, int]:
    """Which version each backend serves: the running one's workers, and during a rollout
    the new cluster's workers its version (for the per-version request counts)."""
    out = dict.fromkeys(backends_of(rec, rec.workers), rec.running_version or 0)
    new_cluster = records.load(rec.rollout.cluster) if rec.rollout else None
    if rec.rollout and new_cluster:
        out |= dict.fromkeys(backends_of(new_cluster, new_cluster.workers), rec.rollout.version)
    return out


def grpc_targets(rec: ServiceRecord) -> dict[str, str]:
    """Each backend's gRPC address (its worker's Serve gRPC proxy, used when the service
    has grpc_options), keyed by the backend's HTTP address, which names its slot."""
    nodes = [(rec, n) for n in rec.workers]
    new_cluster = records.load(rec.rollout.cluster) if rec.rollout else None
    if new_cluster is not None:
        nodes += [(new_cluster, n) for n in new_cluster.workers]
    return {backends_of(r, [n])[0]: f"{n.ip}:{n.ports.get('grpc') or GRPC_PORT}" for r, n in nodes}
