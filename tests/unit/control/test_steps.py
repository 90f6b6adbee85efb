"""The reconcile loop's executor driven by a fake provider and a fake Ray (no processes,
no network): the order of side effects a plan turns into — a rolling update starts the
successor before it removes the old worker, one worker at a time; terminate stops it
before anything starts; a dead head stops it for the controller."""

from __future__ import annotations

import hashlib
import time

import pytest
from service_records import record

from headway.cluster import gcs_client, serve
from headway.cluster.local_provider import LocalProvider
from headway.control import node_start, steps
from headway.control.context import Context
from headway.ingress import endpoint as ingress
from headway.model import errors
from headway.model.spec import ServiceSpec
from headway.model.states import State
from headway.plan import reconcile as plan
from headway.state import locks, records
from headway.state.records import NodeRecord, ServiceRecord


class FakeRay:
    """What the head's GCS and dashboard would say: the nodes that run, and one replica of
    the app on each live worker (up to two)."""

    def __init__(self) -> None:
        self.alive: dict[str, NodeRecord] = {}
        self.configs: list[dict] = []

    def node_id(self, n: NodeRecord) -> str:
        return hashlib.sha1(n.marker.encode()).hexdigest()[:12]

    def alive_nodes(self, address, token=None, timeout_s: float = 5):
        return [
            {"node_name": n.name, "node_id": self.node_id(n), "is_head_node": n.role == "head"}
            for n in self.alive.values()
        ]

    def get_applications(self, head, timeout_s: float = 5):
        workers = [self.node_id(n) for n in self.alive.values() if n.role == "worker"][:2]
        replicas = [{"state": "RUNNING", "node_id": i, "pid": 1} for i in workers]
        return {
            "applications": {
                "hello": {
                    "status": "RUNNING",
                    "deployments": {"Hello": {"target_num_replicas": 2, "replicas": replicas}},
                }
            }
        }


class FakeProvider:
    mode = "netns"
    loopback = False
    node_ports = staticmethod(LocalProvider.node_ports)

    def __init__(self, ray: FakeRay) -> None:
        self.ray = ray
        self.log: list[tuple[str, str, str]] = []
        self.n = 0

    def plan_worker(self, taken_ips: set[str]) -> tuple[str, dict[str, int]]:
        self.n += 1
        return f"10.9.0.{100 + self.n}", {}

    def new_node(self, rec, name, role, ip, ports, group=None) -> NodeRecord:
        return NodeRecord(
            name=name,
            role=role,
            group=group,
            ip=ip,
            ports=ports,
            temp_dir=f"/tmp/hwfake/{ip}",
            log="/dev/null",
            marker=f"{rec.cluster_id}/{name}/{ip}",
        )

    def can_sandbox(self, node) -> bool:
        return False

    def distribute(self, local_file, node, gid=None, read_at=None) -> None:
        pass

    def start(self, node, launch) -> int:
        assert launch.env["RAY_AUTH_MODE"] == "token"
        self.log.append(("start", node.name, node.ip))
        self.ray.alive[node.marker] = node
        node.pid, node.started_at = 1, time.time()
        return 1

    def alive(self, node) -> bool:
        return node.marker in self.ray.alive

    def pids(self, node) -> list[int]:
        return []

    def kill(self, node, grace_s: float = 0.0) -> None:
        self.ray.alive.pop(node.marker, None)

    def remove(self, node) -> None:
        self.log.append(("remove", node.name, node.ip))
        self.kill(node)


def _spec(cpu: float = 1, count: int = 2, greeting: str = "hi") -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "name": "s",
            "ray_gcs_external_storage_config": {"enable": False},
            "applications": [{"name": "hello", "import_path": "hello:build", "args": {"greeting": greeting}}],
            "compute_config": {"worker_nodes": [{"name": "w", "resources": {"CPU": cpu}, "count": count}]},
        }
    )


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A RUNNING service of 1 head + 2 workers, started through the real start functions."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.setattr(ingress, "DRAIN_S", 0)
    monkeypatch.setattr(ingress, "apply_update", lambda crec, rec, spec: "backends")
    ray = FakeRay()
    prov = FakeProvider(ray)
    monkeypatch.setattr(gcs_client, "alive_nodes", ray.alive_nodes)
    monkeypatch.setattr(serve, "get_applications", ray.get_applications)
    monkeypatch.setattr(serve, "dashboard_up", lambda head, timeout_s=2: True)
    monkeypatch.setattr(serve, "put_applications", lambda head, config, timeout_s=60: ray.configs.append(config))
    monkeypatch.setattr(serve, "wait_running", lambda head, names, timeout_s, on_progress=None, partial_ok=False: {})
    monkeypatch.setattr(serve, "wait_proxies", lambda urls, timeout_s, grace_s=15: [])
    ctx = Context(None, providers=lambda crec, rec=None: prov)  # the fake provider, handed down
    spec = _spec()
    rec = ServiceRecord(
        name="s",
        cluster_id="c0ffee00",
        mode="netns",
        spec=spec,
        head_ip="10.9.0.2",
        gcs_port=6379,
        dashboard_port=8265,
        serve_port=8000,
        state="RUNNING",
        desired_version=1,
        running_version=1,
    )
    head = prov.new_node(rec, "head", "head", "10.9.0.2", {})
    rec.nodes.append(head)
    node_start.start_head(ctx, rec, spec, head)
    for name, group, _ in plan.desired_workers(spec.compute_config.worker_nodes, spec.env_vars):
        ip, ports = prov.plan_worker(set())
        node = prov.new_node(rec, name, "worker", ip, ports, group=group)
        rec.nodes.append(node)
        node_start.start_worker(rec, spec, prov, node)
    node_start.note_node_ids(rec, ray.alive_nodes(None))
    steps.apply_apps(rec, spec, lambda m: None, False)
    records.save(rec)
    prov.log.clear()
    ray.configs.clear()
    return ctx, rec, prov, ray


def _converge(ctx, rec, spec, version=2):
    lines: list[str] = []
    steps.converge(rec, spec, version, ctx=ctx, progress=lines.append, strict=False, package_uri=None)
    return lines


def test_nothing_to_do_when_converged(cluster):
    ctx, rec, prov, ray = cluster
    _converge(ctx, rec, _spec())
    assert prov.log == [] and ray.configs == []


def test_resources_change_rolls_one_worker_at_a_time_successor_first(cluster):
    ctx, rec, prov, ray = cluster
    old = {w.name: w.ip for w in rec.workers}
    _converge(ctx, rec, _spec(cpu=2))
    order = [(a, n) for a, n, _ in prov.log]
    assert order == [("start", "w-1"), ("remove", "w-1"), ("start", "w-2"), ("remove", "w-2")]
    assert [ip for a, n, ip in prov.log if a == "remove"] == [old["w-1"], old["w-2"]]
    want = plan.node_config(_spec(cpu=2).compute_config.worker_nodes[0].resources, {})
    assert [w.config for w in rec.workers] == [want, want]
    assert rec.retired == [] and ray.configs == []  # apps untouched: Serve's replicas moved by Ray alone
    kinds = [e.kind for e in rec.events]
    assert kinds.count("step_roll_worker") == 2 and kinds.count("worker_rolled") == 2


def test_args_change_is_one_serve_update_and_no_node(cluster):
    ctx, rec, prov, ray = cluster
    _converge(ctx, rec, _spec(greeting="bonjour"))
    assert prov.log == [] and len(ray.configs) == 1
    assert ray.configs[0]["applications"][0]["args"] == {"greeting": "bonjour"}


def test_scale_up_then_down(cluster):
    ctx, rec, prov, ray = cluster
    _converge(ctx, rec, _spec(count=3))
    assert prov.log == [("start", "w-3", "10.9.0.103")]
    prov.log.clear()
    _converge(ctx, rec, _spec(count=1), version=3)
    assert [(a, n) for a, n, _ in prov.log] == [("remove", "w-2"), ("remove", "w-3")]
    assert [w.name for w in rec.workers] == ["w-1"]


def test_env_change_replaces_the_head_through_the_fenced_path_first(cluster, monkeypatch):
    ctx, rec, prov, ray = cluster
    done = []
    monkeypatch.setattr(steps.repair, "replace_head", lambda ctx, rec, spec, reason, progress: done.append(reason))
    with pytest.raises(errors.HeadwayError):  # the fake head keeps its old config: the loop does not converge
        _converge(ctx, rec, _spec().model_copy(update={"env_vars": {"APP_MODE": "prod"}}))
    assert done and done[0] == "the head's settings changed (fenced restart)"


def test_terminate_stops_the_change_before_anything_starts(cluster):
    ctx, rec, prov, ray = cluster
    locks.request_terminate("s")
    with pytest.raises(errors.Cancelled, match="terminate of service s preempted this change"):
        _converge(ctx, rec, _spec(cpu=2))
    assert prov.log == []


def test_a_dead_head_stops_the_change_for_the_controller(cluster):
    ctx, rec, prov, ray = cluster
    prov.kill(rec.head)
    with pytest.raises(errors.HeadRecovering, match="died during the change"):
        _converge(ctx, rec, _spec(cpu=2))
    assert prov.log == []


def test_a_first_deploy_is_the_same_loop_with_its_workers_started_at_once(cluster):
    ctx, rec, prov, ray = cluster
    for w in rec.workers:
        prov.remove(w)
    rec.nodes = [rec.head]
    rec.state = State.STARTING
    rec.apps_digest = None
    prov.log.clear()
    _converge(ctx, rec, _spec(count=3), version=1)
    assert [(a, n) for a, n, _ in prov.log] == [("start", "w-1"), ("start", "w-2"), ("start", "w-3")]
    assert len(ray.configs) == 1 and sorted(w.name for w in rec.workers) == ["w-1", "w-2", "w-3"]
    kinds = [e.kind for e in rec.events]
    assert kinds.count("step_add_worker") == 3 and "workers_joined" in kinds
    assert kinds.index("workers_joined") < kinds.index("step_apply_apps")


def test_only_workers_with_replicas_get_a_proxy_to_wait_for():
    """Serve runs a proxy only on nodes with a replica: a worker without one is not waited for."""
    rec = record("RUNNING")
    for name, nid in (("w-1", "a"), ("w-2", "b"), ("w-3", "c"), ("w-4", None)):
        rec.nodes.append(
            NodeRecord(name=name, role="worker", ip="10.0.0.9", temp_dir="/t", log="/l", marker="m", node_id=nid)
        )
    placed = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["a", "b"]}}}
    assert [w.name for w in serve.workers_with_replicas(rec, placed)] == ["w-1", "w-2", "w-4"]


def test_a_first_deploy_starts_many_workers_in_waves_each_joined_before_the_next(cluster, monkeypatch):
    """24 ``ray start`` at once on 2 cores missed Ray's fixed 30 s raylet registration: a
    wave's workers must all have joined before the next wave starts."""
    ctx, rec, prov, ray = cluster
    rec.state = State.STARTING
    monkeypatch.setattr(steps, "START_WAVE", 3)
    waits: list[tuple[int, int]] = []  # (nodes waited for, nodes started by then)
    real = steps.wait_nodes

    def wait_nodes(rec_, prov_, expected, spec=None):
        waits.append((expected, len(ray.alive)))
        return real(rec_, prov_, expected, spec)

    monkeypatch.setattr(steps, "wait_nodes", wait_nodes)
    _converge(ctx, rec, _spec(count=9))
    assert waits == [(6, 6), (9, 9), (10, 10)]  # head + 2 workers, then 7 new in waves of 3, 3, 1
    assert len(rec.workers) == 9 and all(w.node_id for w in rec.workers)
