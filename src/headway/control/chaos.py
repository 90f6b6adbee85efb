"""Breaking a service on purpose (demos, the chaos API): a node's host crashed the way a
real crash would, every process SIGKILLed and the host left dead for the watchdog."""

from __future__ import annotations

import time
from typing import Any

from headway.control.context import Context
from headway.model.errors import DeployError
from headway.state.records import NodeRecord, ServiceRecord


def crash(ctx: Context, rec: ServiceRecord, role: str, node: str | None = None) -> dict[str, Any]:
    """Crash a node of the service on purpose (the first of ``role``, or the one named)."""
    found = [n for n in rec.nodes if n.role == role and (node is None or n.name == node)]
    if not found:
        what = f"{role} {node}" if node else f"{role} right now"
        raise DeployError(f"service {rec.name} has no {what}; its workers: {', '.join(w.name for w in rec.workers)}")
    target = found[0]
    return {"node": target.name, "ip": target.ip, "killed": crash_node(ctx, rec, target), "at": time.time()}


def crash_node(ctx: Context, rec: ServiceRecord, node: NodeRecord) -> int:
    """SIGKILL every process of a node's host, as a crash would (the host stays, dead)."""
    prov = ctx.provider(rec)
    pids = prov.pids(node)
    prov.kill(node)
    return len(pids)
