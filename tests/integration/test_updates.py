"""Changes that converge: a rolling node update under load, a broken version that rolls
itself back, an explicit rollback, and terminate that wins over a head replacement — on
one cluster, real Ray, real HAProxy, network namespaces."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import HEADWAY, Load, read_record

from headway.system import netns, procs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

VERSIONED = Path(__file__).parent / "apps" / "versioned"
APP = {"name": "hello", "import_path": "hello:build", "route_prefix": "/", "args": {"greeting": "hello"}}


def _groups(cpu: float) -> dict:
    return {"head_node": {"resources": {}}, "worker_nodes": [{"name": "worker", "resources": {"CPU": cpu}, "count": 2}]}


def _worker_cpus(cli, name: str) -> dict[str, float]:
    """Ray's own view: the CPUs of every ALIVE worker node, by node name."""
    rec = cli.record(name)
    head = next(n for n in rec["nodes"] if n["role"] == "head")
    r = httpx.get(
        f"http://{head['ip']}:{head['ports']['dashboard']}/api/v0/nodes",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {cli.ray_token(name)}"},
        timeout=10,
    )
    nodes = r.json()["data"]["result"]["result"]
    return {
        n["node_name"]: n["resources_total"].get("CPU")
        for n in nodes
        if n["state"] == "ALIVE" and not n["is_head_node"]
    }


def test_rolling_update_broken_version_rollback_and_terminate_during_recovery(cli):
    name = "t-chg"
    cli.run("deploy", "-f", str(cli.write_spec(name, applications=[APP], compute_config=_groups(1))), check=True)
    st = cli.status(name)
    assert (st["desired_version"], st["running_version"]) == (1, 1)
    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    before = {n["name"]: n for n in cli.record(name)["nodes"] if n["role"] == "worker"}
    assert set(_worker_cpus(cli, name).values()) == {1.0}
    log = cli.run("logs", name, "--node", "worker-1", "-n", "5000", check=True).stdout
    assert " worker-1 | " in log and "Ray runtime started" in log, log[-500:]
    assert not any(f" {other} | " in log for other in ("head", "worker-2"))
    missing = cli.run("logs", name, "--node", "worker-9")
    assert missing.returncode == 2 and "has no node worker-9; its nodes: head, worker-1, worker-2" in missing.stderr

    # 1. Worker resources CPU 1 -> 2 under load: every worker replaced, one at a time.
    with Load([st["endpoint"]] * 4, headers=auth) as load:
        time.sleep(2)
        t0 = time.time()
        upd = subprocess.Popen(
            [HEADWAY, "deploy", "-f", str(cli.write_spec(name, applications=[APP], compute_config=_groups(2)))],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(3)
        busy = cli.run("scale", name, "--group", "worker", "--count", "3")
        out, _ = upd.communicate(timeout=400)
        rolled_in = time.time() - t0
        time.sleep(1)
    print(f"\nrolling node update (CPU 1 -> 2, 2 workers) took {rolled_in:.1f} s; {load.report()}")
    assert upd.returncode == 0, out
    assert busy.returncode == 3 and "is busy (a deploy)" in busy.stderr, busy.stdout + busy.stderr
    assert load.failed == 0 and load.ok > 100, load.errors[:10]
    after = {n["name"]: n for n in cli.record(name)["nodes"] if n["role"] == "worker"}
    assert set(after) == set(before)
    for w in before:
        assert after[w]["ip"] != before[w]["ip"] and after[w]["node_id"] != before[w]["node_id"]
    assert _worker_cpus(cli, name) == {"worker-1": 2.0, "worker-2": 2.0}
    events = [e for e in cli.record(name)["events"] if e["at"] > t0]
    rolled = [e for e in events if e["kind"] == "worker_rolled"]
    assert [e["details"]["node"] for e in rolled] == ["worker-1", "worker-2"]  # one at a time, in order
    print("rolled:", [(e["details"]["node"], e["details"]["elapsed_s"]) for e in rolled])
    assert cli.status(name)["running_version"] == 2

    # 2. A broken version (its builder raises on the nodes: no check before the deploy can
    # see it): rolled back by itself, the deploy says why and exits non-zero, the old version
    # keeps serving.
    broken = {**APP, "import_path": "versioned:build", "args": {"answer": "broken", "fail_ratio": "not-a-number"}}
    with Load([st["endpoint"]] * 2, headers=auth) as load:
        time.sleep(1)
        t1 = time.time()
        spec = cli.write_spec(name, applications=[broken], compute_config=_groups(2), working_dir=str(VERSIONED))
        bad = cli.run("deploy", "-f", str(spec))
        time.sleep(1)
    print(f"broken version: exit {bad.returncode} after {time.time() - t1:.1f} s; {load.report()}")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "version 3 failed" in bad.stderr and "rolled back to version 2, which is RUNNING" in bad.stderr
    assert load.failed == 0, load.errors[:10]
    st = cli.status(name)
    assert st["state"] == "RUNNING" and (st["desired_version"], st["running_version"]) == (2, 2)
    assert httpx.get(st["endpoint"] + "/", headers=auth, timeout=10).json()["message"].startswith("hello from")
    kinds = [e["kind"] for e in cli.record(name)["events"] if e["at"] > t1]
    assert "rollback_started" in kinds
    last_state = [e for e in cli.record(name)["events"] if e["kind"] == "state"][-1]
    assert last_state["state"] == "RUNNING" and "rolled back to version 2" in last_state["message"]
    listed = {v["number"]: v["outcome"] for v in cli.run_json("versions", name)["versions"]}
    assert listed == {1: "ran", 2: "ran", 3: "failed"}
    failed_note = cli.run_json("versions", name)["versions"][2]["note"]
    assert "not-a-number" in failed_note, failed_note  # Serve's own reason, kept with the version

    # 3. On demand: back to version 1 (CPU 1), as a new version 4.
    assert cli.run("rollback", name, "--to", "9").returncode == 2
    cli.run("rollback", name, "--to", "1", check=True)
    assert _worker_cpus(cli, name) == {"worker-1": 1.0, "worker-2": 1.0}
    versions = cli.run_json("versions", name)
    assert versions["running"] == 4 and versions["versions"][-1]["origin"] == "rollback to 1"

    # 4. Terminate while the head is being replaced: it wins, and nothing is left.
    rec = cli.record(name)
    killed = cli.crash(name, "head")
    cli.wait_event(name, "old_head_fenced", after=killed, timeout=60)
    t2 = time.monotonic()
    gone = cli.run("terminate", name, timeout=120)
    took = time.monotonic() - t2
    print(f"terminate during the head replacement returned after {took:.1f} s: {gone.stdout.strip()[-200:]}")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert took < 30
    assert read_record(cli.home, name) is None
    assert procs.pids_with_marker(rec["cluster_id"]) == []
    assert not [n for n in netns.list_namespaces() if n.startswith(f"hw-{name}.")]
    time.sleep(3)  # a controller repair thread that was preempted must not start anything afterwards
    assert procs.pids_with_marker(rec["cluster_id"]) == []
