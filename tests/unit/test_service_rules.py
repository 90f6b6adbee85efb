"""Rules of service changes that need no Ray: refusal during recovery, scaling."""

import time

import pytest

from headway.cluster import ray_node
from headway.control import changes, head_guard, steps, store_access
from headway.control.context import Context
from headway.model import errors, states
from headway.model.spec import ServiceSpec
from headway.state import db
from headway.state.records import NodeRecord, ServiceRecord
from headway.store import storage

SPEC = {
    "name": "s",
    "applications": [{"import_path": "m:a"}],
    "compute_config": {"worker_nodes": [{"name": "w", "count": 2}]},
    "ray_gcs_external_storage_config": {"address": "redis://h:1"},
}


def record(state: str, gcs_ft: bool = True) -> ServiceRecord:
    rec = ServiceRecord(
        name="s",
        cluster_id="c",
        mode="netns",
        state=state,
        gcs_ft=gcs_ft,
        spec=SPEC,
        head_ip="10.0.0.2",
        gcs_port=6379,
        dashboard_port=8265,
        serve_port=8000,
    )
    return rec


class _AliveProvider:
    """Every node's processes run (what the guard asks before it asks the GCS)."""

    def alive(self, node) -> bool:
        return True


def test_update_refused_while_the_head_recovers(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    lost_at = time.time() - 12
    rec.events.append(states.transition_event("RUNNING", "HEAD_RECOVERING", "head lost", lost_at=lost_at))
    rec.state = "HEAD_RECOVERING"
    with pytest.raises(errors.HeadRecovering) as exc:
        head_guard.refuse_while_recovering(Context(None), rec)
    msg = str(exc.value)
    assert "head node of service s is recovering (12 s)" in msg
    assert "retry, or pass --wait" in msg


def test_no_refusal_without_gcs_ft_or_when_running_without_nodes(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    head_guard.refuse_while_recovering(Context(None), record("HEAD_RECOVERING", gcs_ft=False))
    head_guard.refuse_while_recovering(Context(None), record("RUNNING"))  # no head recorded: nothing to wait for


def test_update_refused_when_a_live_head_does_not_answer(tmp_path, monkeypatch):
    """A frozen head (processes alive, GCS silent) must not take an update: it would hang."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.nodes.append(NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="m"))
    alive = Context(None, providers=lambda crec, rec: _AliveProvider())  # its processes live
    asked = []
    monkeypatch.setattr(head_guard.gcs_client, "healthy", lambda addr, token, t: asked.append(addr) or False)
    with pytest.raises(errors.HeadRecovering, match="does not answer its health check"):
        head_guard.refuse_while_recovering(alive, rec)
    assert asked == [f"10.0.0.2:{rec.gcs_port}"] * 2  # its GCS asked twice before refusing
    monkeypatch.setattr(head_guard.gcs_client, "healthy", lambda addr, token, t: True)
    head_guard.refuse_while_recovering(alive, rec)


def test_scaled_spec_changes_one_group():
    spec = changes.scaled_spec(record("RUNNING"), "w", 3)
    assert [g.count for g in spec.compute_config.worker_nodes] == [3]


def test_scaled_spec_unknown_group_names_the_known_ones():
    with pytest.raises(changes.InputError, match="no worker group 'x'; its groups: w"):
        changes.scaled_spec(record("RUNNING"), "x", 3)


def test_head_gets_tuned_node_death_detection():
    launch = ray_node.head_launch(
        ip="10.0.0.2",
        ports=ray_node.NodePorts(),
        temp_dir="/t",
        storage=None,
        resources={},
        marker="m",
        loopback=False,
    )
    for var in (
        "RAY_health_check_period_ms",
        "RAY_health_check_failure_threshold",
        "RAY_health_check_timeout_ms",
    ):
        assert var in launch.env
    assert "--node-name=head" in launch.argv


def test_only_workers_with_replicas_get_a_proxy_to_wait_for():
    """Serve runs a proxy only on nodes with a replica: a worker without one is not waited for."""
    rec = record("RUNNING")
    for name, nid in (("w-1", "a"), ("w-2", "b"), ("w-3", "c"), ("w-4", None)):
        rec.nodes.append(
            NodeRecord(name=name, role="worker", ip="10.0.0.9", temp_dir="/t", log="/l", marker="m", node_id=nid)
        )
    placed = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["a", "b"]}}}
    assert [w.name for w in steps.workers_with_replicas(rec, placed)] == ["w-1", "w-2", "w-4"]


def test_a_spec_store_password_from_env_survives_the_deploying_shell(tmp_path, monkeypatch):
    """Repairs and the store watch resolve the password long after the CLI that had the
    variable: the value handed over at deploy is stored with the service and used."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.delenv("T_PW", raising=False)
    spec = ServiceSpec.model_validate(
        SPEC | {"ray_gcs_external_storage_config": {"address": "redis://h:1", "redis_password_env": "T_PW"}}
    )
    with pytest.raises(storage.StoreError, match="T_PW"):
        store_access.resolve_spec_storage(spec)
    db.set_secrets("s", {"T_PW": "stored"})
    assert store_access.resolve_spec_storage(spec).password == "stored"
    token = storage.given_env.set({"T_PW": "handed"})  # a deploy in flight wins
    try:
        assert store_access.resolve_spec_storage(spec).password == "handed"
    finally:
        storage.given_env.reset(token)
    monkeypatch.setenv("T_PW", "controller-env")  # the daemon's own env is never read for a caller
    assert store_access.resolve_spec_storage(spec).password == "stored"
    with pytest.raises(storage.StoreError, match="T_PW"):  # a service with nothing stored
        store_access.resolve_spec_storage(spec.model_copy(update={"name": "s2"}))
