"""The head's GCS, asked directly over gRPC (with the cluster's Ray token).

The GCS answers ~4 s after a new head's ``ray start``; the dashboard, which headway used
to ask, answers 10-20 s later (it starts a dozen Python processes on the new head). What
recovery and the watchdog need — is the GCS up, which nodes are ALIVE under which ids, is
Serve's controller ALIVE — is all in the GCS's own tables, so they read it here and a
head counts as recovered without waiting for the dashboard. (Updates still go through the
dashboard's Serve API and wait for it: ``serve.wait_dashboard``.)
"""

from __future__ import annotations

import threading
from typing import Any

import grpc
from ray.core.generated import autoscaler_pb2, gcs_pb2
from ray.core.generated import autoscaler_pb2_grpc as autoscaler_rpc
from ray.core.generated import gcs_service_pb2 as pb
from ray.core.generated import gcs_service_pb2_grpc as rpc

SERVE_CONTROLLER = ("SERVE_CONTROLLER_ACTOR", "serve")
REPLICA_PREFIX = "SERVE_REPLICA::"  # + app#deployment#replica id
_ALIVE_NODE = gcs_pb2.GcsNodeInfo.GcsNodeState.Value("ALIVE")
_ALIVE_ACTOR = gcs_pb2.ActorTableData.ActorState.Value("ALIVE")

_channels: dict[str, grpc.Channel] = {}
_lock = threading.Lock()


def _channel(address: str) -> grpc.Channel:
    """One channel per GCS address, reused (the watchdog asks twice a second)."""
    with _lock:
        ch = _channels.get(address)
        if ch is None:
            ch = _channels[address] = grpc.insecure_channel(address, options=[("grpc.enable_retries", 0)])
        return ch


def _metadata(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def alive_nodes(address: str, token: str | None, timeout_s: float = 2) -> list[dict[str, Any]] | None:
    """Ray's ALIVE nodes (node id in hex, name, head or not), or None when the GCS does
    not answer."""
    stub = rpc.NodeInfoGcsServiceStub(_channel(address))
    try:
        reply = stub.GetAllNodeInfo(
            pb.GetAllNodeInfoRequest(state_filter=_ALIVE_NODE), timeout=timeout_s, metadata=_metadata(token)
        )
    except grpc.RpcError:
        return None
    return [
        {
            "node_id": n.node_id.hex(),
            "node_name": n.node_name,
            "node_ip": n.node_manager_address,
            "is_head_node": n.is_head_node,
            "start_time_ms": n.start_time_ms,
        }
        for n in reply.node_info_list
        if n.state == _ALIVE_NODE
    ]


def healthy(address: str, token: str | None, timeout_s: float = 1) -> bool:
    """The GCS answers a read of its node table."""
    stub = rpc.NodeInfoGcsServiceStub(_channel(address))
    try:
        stub.CheckAlive(pb.CheckAliveRequest(), timeout=timeout_s, metadata=_metadata(token))
    except grpc.RpcError:
        return False
    return True


def actor_node(
    address: str, token: str | None, name_and_namespace: tuple[str, str] = SERVE_CONTROLLER, timeout_s: float = 2
) -> str | None:
    """The node (id in hex) a named actor (default: Serve's controller) is ALIVE on, per
    the GCS's actor table; None when it is not ALIVE or the GCS does not answer.

    A GCS that has just restarted answers from the tables it reloaded from the store: an
    actor of the dead head is still listed ALIVE on it until the GCS has processed that
    node's death. The caller checks the node is a live one, not the dead head."""
    name, namespace = name_and_namespace
    stub = rpc.ActorInfoGcsServiceStub(_channel(address))
    try:
        reply = stub.GetNamedActorInfo(
            pb.GetNamedActorInfoRequest(name=name, ray_namespace=namespace),
            timeout=timeout_s,
            metadata=_metadata(token),
        )
    except grpc.RpcError:
        return None
    if reply.status.code != 0 or reply.actor_table_data.state != _ALIVE_ACTOR:
        return None
    return reply.actor_table_data.node_id.hex()


def _replica_actors(address: str, token: str | None, timeout_s: float) -> list[Any] | None:
    """Serve's ALIVE replica actors in the GCS's actor table; None when it does not answer."""
    stub = rpc.ActorInfoGcsServiceStub(_channel(address))
    request = pb.GetAllActorInfoRequest(filters=pb.GetAllActorInfoRequest.Filters(state=_ALIVE_ACTOR))
    try:
        reply = stub.GetAllActorInfo(request, timeout=timeout_s, metadata=_metadata(token))
    except grpc.RpcError:
        return None
    return [a for a in reply.actor_table_data if a.ray_namespace == "serve" and a.name.startswith(REPLICA_PREFIX)]


def serve_replicas(address: str, token: str | None, timeout_s: float = 3) -> dict[str, dict[str, list[int]]] | None:
    """Serve's ALIVE replica actors by application and deployment (their PIDs), from the
    GCS's actor table; None when the GCS does not answer."""
    actors = _replica_actors(address, token, timeout_s)
    if actors is None:
        return None
    out: dict[str, dict[str, list[int]]] = {}
    for actor in actors:
        app, _, rest = actor.name.removeprefix(REPLICA_PREFIX).partition("#")
        deployment = rest.rsplit("#", 1)[0]
        out.setdefault(app, {}).setdefault(deployment, []).append(actor.pid)
    return {app: {dep: sorted(pids) for dep, pids in deps.items()} for app, deps in out.items()}


def replica_nodes(address: str, token: str | None, timeout_s: float = 3) -> set[str] | None:
    """The nodes (ids in hex) that hold at least one ALIVE Serve replica."""
    actors = _replica_actors(address, token, timeout_s)
    return None if actors is None else {a.node_id.hex() for a in actors}


def resource_state(address: str, token: str | None, timeout_s: float = 3) -> dict[str, Any] | None:
    """What Ray's own autoscaler reads (the GCS's autoscaler state service): every node's
    status and how long it has been idle, and the resource requests waiting for room
    (a replica Serve wants that fits nowhere is one). None when the GCS does not answer.

    ``{"nodes": {node_id: {"status", "idle_s"}}, "pending": [(bundle, count), ...]}``."""
    stub = autoscaler_rpc.AutoscalerStateServiceStub(_channel(address))
    try:
        reply = stub.GetClusterResourceState(
            autoscaler_pb2.GetClusterResourceStateRequest(), timeout=timeout_s, metadata=_metadata(token)
        )
    except grpc.RpcError:
        return None
    state = reply.cluster_resource_state
    nodes = {
        n.node_id.hex(): {"status": autoscaler_pb2.NodeStatus.Name(n.status), "idle_s": n.idle_duration_ms / 1000}
        for n in state.node_states
    }
    pending = [(dict(r.request.resources_bundle), r.count) for r in state.pending_resource_requests]
    for gang in state.pending_gang_resource_requests:
        pending += [(dict(r.resources_bundle), 1) for r in gang.requests]
    return {"nodes": nodes, "pending": pending}


def drain_node(address: str, token: str | None, node_id: str, why: str, timeout_s: float = 5) -> str | None:
    """Ask Ray to drain an idle node before it is removed (as its autoscaler does): Ray
    refuses when the node runs anything. None when accepted, else Ray's reason."""
    stub = autoscaler_rpc.AutoscalerStateServiceStub(_channel(address))
    request = autoscaler_pb2.DrainNodeRequest(
        node_id=bytes.fromhex(node_id),
        reason=autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_IDLE_TERMINATION"),
        reason_message=why,
    )
    try:
        reply = stub.DrainNode(request, timeout=timeout_s, metadata=_metadata(token))
    except grpc.RpcError as exc:
        return f"the GCS did not answer ({exc.code().name})"
    return None if reply.is_accepted else reply.rejection_reason_message or "refused"
