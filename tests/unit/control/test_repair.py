"""Rules of the repairs: re-adoption, replica restoration, serving again, and waits that
end when the head dies."""

import time

import pytest
from service_records import record

from headway.control import repair
from headway.model import errors
from headway.state.records import NodeRecord


def worker(name: str, node_id: str | None) -> NodeRecord:
    return NodeRecord(name=name, role="worker", ip="10.0.0.1", temp_dir="/t", log="/l", marker="m", node_id=node_id)


def node(node_id: str, name: str, head: bool = False) -> dict:
    return {"node_id": node_id, "node_name": name, "is_head_node": head, "state": "ALIVE"}


def test_readoption_needs_same_ids_and_one_head():
    live = [worker("w-1", "a"), worker("w-2", "b")]
    assert repair.readoption_complete([node("h", "head", True), node("a", "w-1"), node("b", "w-2")], live)[0]
    done, why = repair.readoption_complete([node("h", "head", True), node("a", "w-1")], live)
    assert not done and "w-2" in why
    # Same name under a new id is a new node, not a re-adopted one.
    assert not repair.readoption_complete([node("h", "head", True), node("a", "w-1"), node("z", "w-2")], live)[0]
    two_heads = [node("h", "head", True), node("old", "head", True), node("a", "w-1"), node("b", "w-2")]
    done, why = repair.readoption_complete(two_heads, live)
    assert not done and "2 ALIVE head" in why
    # A GCS just restarted from the store still lists the dead head ALIVE: not the new one.
    stale = [node("old", "head", True), node("a", "w-1"), node("b", "w-2")]
    done, why = repair.readoption_complete(stale, live, dead_head_id="old")
    assert not done and "has not registered yet" in why
    assert repair.readoption_complete([node("h", "head", True), node("a", "w-1"), node("b", "w-2")], live, "old")[0]
    # The record's id of the dead head may be stale itself: the start time tells, on one machine.
    old = {**node("x", "head", True), "start_time_ms": 1_000}
    new = {**node("y", "head", True), "start_time_ms": 9_000}
    assert not repair.readoption_complete([old, node("a", "w-1"), node("b", "w-2")], live, "z", 5_000)[0]
    assert repair.readoption_complete([new, node("a", "w-1"), node("b", "w-2")], live, "z", 5_000)[0]


def test_replicas_restored_ignores_replicas_on_dead_nodes():
    placed = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["dead", "b"], "pids": [1, 2]}}}
    assert not repair.replicas_restored(placed, {"dead"})
    placed["app"]["D"]["node_ids"] = ["new", "b"]
    assert repair.replicas_restored(placed, {"dead"})
    placed["app"]["D"]["running"] = 1
    assert not repair.replicas_restored(placed, {"dead"})
    assert not repair.replicas_restored({}, set())


def test_serving_ready_needs_the_controller_back_on_a_live_node_and_a_replica_of_every_app():
    replicas = {"hello": {"Hello": [11, 12]}, "other": {"A": [13]}}
    alive = {"new", "w1", "w2"}
    assert repair.serving(replicas, "new", alive, "old", ["hello", "other"])
    assert not repair.serving(replicas, None, alive, "old", ["hello", "other"])  # not ALIVE (RESTARTING)
    # Listed ALIVE on the dead head: the restarted GCS has not processed that node's death yet.
    assert not repair.serving(replicas, "old", alive | {"old"}, "old", ["hello", "other"])
    assert not repair.serving(replicas, "gone", alive, "old", ["hello", "other"])  # on a node not ALIVE
    # An application without a replica.
    assert not repair.serving({"hello": {"Hello": [11]}}, "new", alive, "old", ["hello", "other"])
    assert not repair.serving(None, "new", alive, "old", ["hello"])  # the GCS did not answer


class _Provider:
    def __init__(self, head_alive: bool):
        self.head_alive = head_alive

    def alive(self, node: NodeRecord) -> bool:
        return self.head_alive if node.role == "head" else True


def test_a_wait_for_workers_ends_at_once_when_the_head_dies(tmp_path, monkeypatch):
    """Replicas and joins need the head, and the wait holds the lock its recovery needs: a
    dead head ends the wait at once (it once held a head recovery back for two minutes)."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.nodes.append(NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="m"))
    asked = []
    monkeypatch.setattr(repair.serve, "get_applications", lambda head: asked.append(head) or {})
    t0 = time.monotonic()
    with pytest.raises(errors.HeadRecovering, match="died while its replicas were being placed again"):
        repair.wait_replicas(rec, _Provider(head_alive=False), {"dead"})
    with pytest.raises(errors.HeadRecovering, match="died while new workers were joining"):
        repair.wait_joined(rec, _Provider(head_alive=False), [worker("w-1", None)], set())
    assert time.monotonic() - t0 < 5 and asked == []
    monkeypatch.setattr(repair, "REPLICAS_TIMEOUT_S", 0.6)
    with pytest.raises(errors.DeployError, match="replicas not back"):  # a live head: the wait goes on
        repair.wait_replicas(rec, _Provider(head_alive=True), {"dead"})
    assert asked


class _NoKill:
    """The head and worker-2 answer, worker-1's host does not; no kill, no removal (the
    finish of a replacement must not touch its live head)."""

    shares_clock = True

    def alive(self, node: NodeRecord) -> bool:
        return node.name != "worker-1"

    def set_priority(self, node: NodeRecord, nice: int) -> None:
        self.priority = (node.name, nice)


def _failed_replacement(tmp_path, monkeypatch, replace_raises: Exception):
    """A service UNHEALTHY because its head replacement failed on a dead worker, its new head up."""
    from headway.control.context import Context
    from headway.state.transitions import set_state

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.nodes = [
        NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="h", started_at=1.0),
        worker("worker-1", "id-1"),
        worker("worker-2", "id-2"),
    ]
    set_state(rec, "HEAD_RECOVERING", "head lost: head is down", lost_at=100.0)
    set_state(rec, "UNHEALTHY", "head replacement failed: cannot fence node worker-1")
    prov = _NoKill()
    seen: dict = {}
    monkeypatch.setattr(repair, "wait_head", lambda rec, prov, head: seen.setdefault("head", head.name))
    monkeypatch.setattr(repair, "wait_readopted", lambda rec, live, *a: seen.setdefault("live", [w.name for w in live]))
    monkeypatch.setattr(repair, "note_node_ids", lambda rec, nodes: None)

    def replace(ctx, rec, names, progress):
        seen["replaced"] = names
        raise replace_raises

    monkeypatch.setattr(repair, "replace_workers", replace)
    monkeypatch.setattr(repair, "wait_serving", lambda rec, apps, prov, head, dead: {"hello": {"Hello": [7]}})
    return rec, Context(None, providers=lambda c, r=None: prov), prov, seen


def test_a_failed_replacement_is_finished_with_its_live_head_and_a_dead_worker_left_for_later(tmp_path, monkeypatch):
    """Seen in CI: a head replacement that found a worker's host down failed after its new
    head was up, and the service stayed UNHEALTHY for good. Finished with that head, it is
    RUNNING; the worker whose host does not answer is on the timeline, for the watchdog."""
    from headway.model.cloud_config import SshError

    rec, ctx, prov, seen = _failed_replacement(tmp_path, monkeypatch, SshError("host 10.0.0.3: SSH unreachable"))
    repair.finish_recovery(ctx, rec)
    assert rec.state == "RUNNING" and seen == {"head": "head", "live": ["worker-2"], "replaced": ["worker-1"]}
    kinds = [e.kind for e in rec.events]
    steps = ["gcs_up", "workers_reregistered", "worker_replacement_failed", "apps_running"]
    assert kinds[-6:] == ["state", *steps, "state"]
    resumed = rec.events[-6]
    assert resumed.state == "HEAD_RECOVERING" and resumed.details["lost_at"] == 100.0  # the loss it started from
    assert "SSH unreachable" in rec.events[-3].message and prov.priority == ("head", 0)


def test_a_head_lost_again_while_dead_workers_are_replaced_still_ends_the_replacement(tmp_path, monkeypatch):
    rec, ctx, _, _ = _failed_replacement(tmp_path, monkeypatch, errors.HeadRecovering("the head died"))
    with pytest.raises(errors.HeadRecovering):
        repair.finish_recovery(ctx, rec)
    assert rec.state == "HEAD_RECOVERING"
