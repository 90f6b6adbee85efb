"""Head and worker failures on real Ray, Valkey and network namespaces.

Nodes are killed here by PID (every process of the node's namespace or marker, as
the test reads them from the record), never through ``headway chaos``, so the test
does not trust the tool it tests. Durations are printed, not asserted tightly: this
machine is shared and noisy; the bounds below only catch a recovery that hangs.
"""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from conftest import HEADWAY, Load

pytestmark = pytest.mark.integration

HELLO_APP = {"name": "hello", "import_path": "hello:build", "route_prefix": "/"}


def _hello(greeting: str) -> list[dict]:
    return [{**HELLO_APP, "args": {"greeting": greeting}}]


def _worker_ids(rec: dict) -> dict[str, str]:
    return {n["name"]: n["node_id"] for n in rec["nodes"] if n["role"] == "worker"}


def _replica_pids(status: dict, app: str) -> dict[str, list[int]]:
    a = next(x for x in status["applications"] if x["name"] == app)
    return {f"{app}/{dep}": d["pids"] for dep, d in a["replicas"].items()}


def _nodes_table(gcs_address: str, ray_token: str) -> list[dict]:
    """Ray's whole node table, asked of the GCS by a plain gRPC call (not through headway,
    and not through the dashboard: a recovered head's dashboard may still be starting)."""
    import grpc
    from ray.core.generated import gcs_service_pb2 as pb
    from ray.core.generated import gcs_service_pb2_grpc as rpc

    with grpc.insecure_channel(gcs_address) as ch:
        reply = rpc.NodeInfoGcsServiceStub(ch).GetAllNodeInfo(
            pb.GetAllNodeInfoRequest(), timeout=10, metadata=[("authorization", f"Bearer {ray_token}")]
        )
    return [
        {"node_id": n.node_id.hex(), "is_head_node": n.is_head_node, "state": "ALIVE" if n.state == 0 else "DEAD"}
        for n in reply.node_info_list
    ]


def _answers(urls: list[str]) -> set[str]:
    return {httpx.get(u + "/", timeout=10).json()["message"].split(" from ")[0] for u in urls}


def test_head_kill_under_load_then_updates_and_worker_replacement(cli):
    name = "t-fo"
    spec = cli.write_spec(name, applications=_hello("hello"))
    cli.run("deploy", "-f", str(spec), check=True)
    st = cli.status(name)
    assert st["controller_pid"], "deploy must leave a controller watching the service"
    urls = list(cli.proxy_urls(name).values())
    before = cli.record(name)
    ids_before = _worker_ids(before)
    old_head_id = next(n["node_id"] for n in before["nodes"] if n["role"] == "head")
    pids_before = _replica_pids(st, "hello")
    bytes_before = st["storage"]["usage"]["bytes"]
    assert all(len(p) == 2 for p in pids_before.values()), pids_before

    update = cli.write_spec(name, applications=_hello("bonjour"))
    with Load(urls) as load:
        time.sleep(2)
        killed_at = cli.crash(name, "head")
        # Both at once, right away: a head is back in ~5 s now, about what a CLI takes to
        # start on a loaded 2-core machine twice over.
        time.sleep(0.3)
        plain = subprocess.Popen(
            [HEADWAY, "deploy", "-f", str(update)],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiter = subprocess.Popen(
            [HEADWAY, "deploy", "-f", str(update), "--wait"],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = cli.wait_event(name, "state", after=killed_at, state="RUNNING", timeout=120)
        plain_out, plain_err = plain.communicate(timeout=300)
        time.sleep(1)
    kill_to_running = running["at"] - killed_at
    print(f"\nhead SIGKILL -> RUNNING: {kill_to_running:.1f} s; load: {load.report()}")
    print(
        "timeline:",
        [(e["kind"], e["details"].get("since_lost_s")) for e in cli.events(name) if e["at"] > killed_at],
    )

    bytes_after = cli.status(name)["storage"]["usage"]["bytes"]
    print(f"GCS bytes in the store: {bytes_before} with 3 nodes, {bytes_after} after one head failover")
    # Refused while recovering, clearly, with a non-zero exit.
    assert plain.returncode == 3, plain_out + plain_err
    assert f"head node of service {name} is recovering" in plain_err
    assert "--wait" in plain_err
    # Workers served throughout.
    assert load.failed == 0, load.errors[:10]
    assert load.ok > 100
    assert kill_to_running < 60
    # Same workers, same replica processes, one head and it is the new one.
    after = cli.record(name)
    assert _worker_ids(after) == ids_before
    apps_running = cli.wait_event(name, "apps_running", after=killed_at)
    assert apps_running["details"]["replica_pids"] == pids_before
    table = _nodes_table(f"{after['head_ip']}:{after['gcs_port']}", cli.ray_token(name))
    alive_heads = [n for n in table if n["is_head_node"] and n["state"] == "ALIVE"]
    assert len(alive_heads) == 1 and alive_heads[0]["node_id"] != old_head_id
    assert next(n["state"] for n in table if n["node_id"] == old_head_id) == "DEAD"
    kinds = [e["kind"] for e in cli.events(name) if e["at"] > killed_at]
    for step in ("old_head_fenced", "new_head_started", "gcs_up", "workers_reregistered", "apps_running"):
        assert step in kinds, kinds

    # The update made with --wait is applied once the head is back.
    out, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, out
    assert "waiting" in out
    assert _answers(urls) == {"bonjour"}
    # And an update after the recovery works as usual.
    cli.run("deploy", "-f", str(cli.write_spec(name, applications=_hello("hallo"))), check=True)
    assert _answers(urls) == {"hallo"}

    # A worker killed while the head is up is replaced by a new host; replicas come back.
    old_w1 = next(n for n in cli.record(name)["nodes"] if n["name"] == "worker-1")
    t = cli.crash(name, "worker-1")
    placed = cli.wait_event(name, "replicas_placed", after=t, timeout=150)
    print(f"worker SIGKILL -> replicas placed again: {placed['at'] - t:.1f} s")
    new_w1 = next(n for n in cli.record(name)["nodes"] if n["name"] == "worker-1")
    assert new_w1["ip"] != old_w1["ip"] and new_w1["node_id"] != old_w1["node_id"]
    st = cli.status(name)
    assert st["state"] == "RUNNING"
    reps = next(a for a in st["applications"] if a["name"] == "hello")["replicas"]["Hello"]
    assert reps["running"] == reps["target"] == 2
    assert sorted(reps["nodes"]) == ["worker-1", "worker-2"]
    assert all(n["alive"] for n in st["nodes"])
    assert _answers(list(cli.proxy_urls(name).values())) == {"hallo"}


def test_worker_killed_while_head_down_composed_app(cli):
    name = "t-comp"
    spec = cli.write_spec(
        name,
        applications=[
            {"name": "comp", "import_path": "composed:build", "route_prefix": "/", "args": {"greeting": "hi"}}
        ],
    )
    cli.run("deploy", "-f", str(spec), check=True)
    st = cli.status(name)
    survivor = cli.proxy_urls(name)["worker-2"]
    reply = httpx.get(survivor + "/", timeout=10).json()
    assert reply["greeting"] == "hi" and reply["ingress_node"] == "worker-2"

    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    with Load([survivor], timeout_s=10) as load, Load([st["endpoint"]] * 4, headers=auth) as through:
        time.sleep(2)
        killed_at = cli.crash(name, "head")
        time.sleep(1)
        cli.crash(name, "worker-1")
        running = cli.wait_event(name, "state", after=killed_at, state="RUNNING", timeout=180)
        time.sleep(2)
    print(
        f"\nhead then worker killed: {load.report()} on the surviving worker's proxy; "
        f"{through.report()} through the ingress; "
        f"RUNNING with a new worker-1 {running['at'] - killed_at:.1f} s after the head kill"
    )
    assert through.failed == 0, through.errors[:10]
    timeouts = [e for e in load.errors if "Timeout" in e]
    assert not timeouts, "requests hung: " + ", ".join(timeouts[:5])
    assert load.max_latency < 10
    assert load.failed <= max(2, (load.ok + load.failed) // 100), load.errors[:10]
    kinds = [e["kind"] for e in cli.events(name) if e["at"] > killed_at]
    assert "worker_lost" in kinds and "replicas_placed" in kinds, kinds
    st = cli.status(name)
    comp = next(a for a in st["applications"] if a["name"] == "comp")
    for dep in ("Ingress", "Greeter"):
        assert comp["replicas"][dep]["running"] == 2, comp
        assert sorted(comp["replicas"][dep]["nodes"]) == ["worker-1", "worker-2"], comp


def test_controller_dies_head_stays_down_90s_then_controller_repairs(cli):
    name = "t-ctl"
    spec = cli.write_spec(name, applications=_hello("hello"))
    cli.run("deploy", "-f", str(spec), check=True)
    st = cli.status(name)
    ids_before = _worker_ids(cli.record(name))
    ctl = cli.controller_pid()
    assert ctl
    subprocess.run(["kill", "-9", str(ctl)], check=True)
    time.sleep(0.5)
    assert cli.controller_pid() is None

    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    with Load(list(cli.proxy_urls(name).values())) as load, Load([st["endpoint"]] * 2, headers=auth) as through:
        time.sleep(2)
        killed_at = cli.crash(name, "head")
        # Longer than Ray's default 60 s GCS reconnect timeout: workers must not give up.
        time.sleep(90)
        during = cli.status(name)
        outage = (load.ok, load.failed)
        cli.run("controller", "start", check=True)
        running = cli.wait_event(name, "state", after=killed_at, state="RUNNING", timeout=120)
    print(
        f"\n90 s head outage without a controller: {outage[0]} ok / {outage[1]} failed; "
        f"overall {load.report()}; "
        f"RUNNING {running['at'] - killed_at - 90:.1f} s after the controller restart"
    )
    assert during["state"] == "UNHEALTHY" and "head" in during["reason"]
    assert during["controller_pid"] is None
    assert load.failed == 0, load.errors[:10]
    # The ingress is its own process: neither the controller's death nor the head's stops it.
    print(f"through the ingress meanwhile: {through.report()}")
    assert through.failed == 0 and through.ok > 100, through.errors[:10]
    assert all(n["alive"] for n in during["nodes"] if n["role"] == "worker")
    assert _worker_ids(cli.record(name)) == ids_before
    kinds = [e["kind"] for e in cli.events(name) if e["at"] > killed_at]
    assert "workers_reregistered" in kinds
    assert cli.status(name)["state"] == "RUNNING"
