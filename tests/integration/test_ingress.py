"""The service endpoint (HAProxy) in front of the worker proxies, on real Ray and HAProxy.

One cluster, used in order: token, spread, a worker killed under 50 concurrent
clients (its backend taken out, a new host let in), the head killed, and a seamless
reload that opens the endpoint. Nodes are killed by PID, not through headway.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter

import httpx
import pytest
from conftest import Load, haproxy_says

pytestmark = pytest.mark.integration


def _show_stat(sock: str) -> dict[str, str]:
    """Status of every used server slot, read from HAProxy's admin socket by the test itself."""
    rows = csv.DictReader(io.StringIO(haproxy_says(sock, "show stat").lstrip("# ")))
    return {
        r["addr"]: r["status"]
        for r in rows
        if r["pxname"] == "workers" and r["svname"] not in ("FRONTEND", "BACKEND") and r["addr"]
    }


def test_endpoint_token_spread_worker_and_head_failures(cli):
    name = "t-ing"
    spec = cli.write_spec(name)
    deployed = cli.run("deploy", "-f", str(spec), check=True)
    st = cli.status(name)
    endpoint = st["endpoint"]
    assert endpoint and f"endpoint: {endpoint}" in deployed.stdout
    assert f'curl -H "Authorization: Bearer $(headway token {name})" {endpoint}/' in deployed.stdout
    token = cli.run("token", name, check=True).stdout.strip()
    assert len(token) >= 32
    # The token appears nowhere but `headway token`.
    for out in (deployed.stdout, cli.run("status", name).stdout, cli.run("status", name, "--json").stdout):
        assert token not in out
    assert token not in (cli.home / "controller.log").read_text()
    auth = {"Authorization": f"Bearer {token}"}

    # Token: 401 without it or with a wrong one, 200 with it.
    assert httpx.get(endpoint + "/", timeout=10).status_code == 401
    assert httpx.get(endpoint + "/", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200

    # Spread over every worker, never the head.
    with httpx.Client(headers=auth, timeout=10) as c:
        nodes = Counter(c.get(endpoint + "/").json()["node"] for _ in range(60))
    assert set(nodes) == {"worker-1", "worker-2"}, nodes

    # A worker killed under 50 concurrent clients.
    rec = cli.record(name)
    sock = rec["ingress"]["socket"]
    w1 = next(n for n in rec["nodes"] if n["name"] == "worker-1")
    w1_backend = f"{w1['ip']}:{w1['ports'].get('proxy') or rec['serve_port']}"
    assert _show_stat(sock)[w1_backend] == "UP"
    with Load([endpoint] * 50, headers=auth, pace_s=0.2) as load:
        time.sleep(3)
        killed_at = cli.crash(name, "worker-1")
        while _show_stat(sock).get(w1_backend, "gone").startswith("UP") and time.time() - killed_at < 10:
            time.sleep(0.02)
        marked_down_s = time.time() - killed_at
        placed = cli.wait_event(name, "replicas_placed", after=killed_at, timeout=150)
        new_w1 = next(n for n in cli.record(name)["nodes"] if n["name"] == "worker-1")
        new_backend = f"{new_w1['ip']}:{new_w1['ports'].get('proxy') or rec['serve_port']}"
        deadline = time.time() + 30
        while time.time() < deadline and _show_stat(sock).get(new_backend) != "UP":
            time.sleep(0.1)
        seen_before = len(load.replies)
        time.sleep(3)
        new_host_answers = sum(1 for r in load.replies[seen_before:] if r.get("node_ip") == new_w1["ip"])
    print(
        f"\nworker SIGKILL under 50 clients: backend marked down after {marked_down_s:.2f} s; "
        f"replicas placed again after {placed['at'] - killed_at:.1f} s; {load.report()}; "
        f"the new host answered {new_host_answers} requests in its first 3 s"
    )
    assert marked_down_s < 2.0
    assert load.failed == 0, load.errors[:10]
    assert new_host_answers > 0
    assert _show_stat(sock).get(w1_backend) in (None, "MAINT")

    # The head killed under load.
    with Load([endpoint] * 20, headers=auth) as load:
        time.sleep(2)
        killed_at = cli.crash(name, "head")
        running = cli.wait_event(name, "state", after=killed_at, state="RUNNING", timeout=120)
        time.sleep(1)
    print(f"head SIGKILL through the ingress: {load.report()}; RUNNING after {running['at'] - killed_at:.1f} s")
    assert load.failed == 0, load.errors[:10]

    # Status shows every backend with its counters.
    st = cli.status(name)
    backends = st["ingress"]["backends"]
    assert len(backends) == 2 and all(b["status"] == "UP" for b in backends)
    assert sum(b["requests"] for b in backends) > 0
    assert st["ingress"]["frontend"]["requests"] > 0

    # The token rotated under load: the old one keeps working for its grace period, the new
    # one at once; then the old one is refused. No request failed while either changed.
    t_rotate = time.time()
    with Load([endpoint] * 8, headers=auth) as old_load:
        time.sleep(1)
        rotated = cli.run("token", name, "--rotate", "--grace", "8")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        new_token = rotated.stdout.strip()  # stdout holds the token alone
        assert len(new_token) >= 32 and new_token != token and "\n" not in new_token
        new_auth = {"Authorization": f"Bearer {new_token}"}
        assert httpx.get(endpoint + "/", headers=new_auth, timeout=10).status_code == 200
        assert cli.run("token", name, check=True).stdout.strip() == new_token
        time.sleep(2)
    assert old_load.failed == 0, old_load.errors[:10]
    with Load([endpoint] * 8, headers=new_auth) as new_load:
        expired = cli.wait_event(name, "token_expired", after=t_rotate, timeout=40)
        time.sleep(1)
    print(f"token rotation: old token {old_load.report()}; new token across the expiry {new_load.report()}")
    assert new_load.failed == 0, new_load.errors[:10]
    assert expired["at"] - t_rotate >= 8
    assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 401
    assert httpx.get(endpoint + "/", headers=new_auth, timeout=10).status_code == 200
    said = (cli.home / "controller.log").read_text() + str(cli.events(name))
    assert token not in said and new_token not in said
    auth = new_auth

    # Opening the endpoint is a seamless reload: no request fails while it happens.
    opened = cli.write_spec(name, query_auth_token_enabled=False)
    with Load([endpoint] * 10, headers=auth) as load:
        time.sleep(1)
        out = cli.run("deploy", "-f", str(opened), check=True).stdout
        time.sleep(1)
    assert "reloaded" in out
    print(f"update with an ingress reload: {load.report()}")
    assert load.failed == 0, load.errors[:10]
    assert httpx.get(endpoint + "/", timeout=10).status_code == 200
    assert cli.run("token", name).returncode == 2
