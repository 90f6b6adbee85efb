"""No single machine: the endpoint on two ingress hosts behind an address keepalived
moves. Real hosts as in test_ssh (network namespaces with their own sshd); a host dies
whole — every process killed and its link down, as a dead machine's — and reboots."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import Load
from ssh_hosts import SSHD, Hosts

from headway import netns

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not Path(SSHD).exists(), reason="Debian's openssh-server is not installed (make system)"),
    pytest.mark.skipif(not shutil.which("keepalived") and not Path("/usr/sbin/keepalived").exists(),
                       reason="Debian's keepalived is not installed (make system-test)"),  # fmt: skip
]

#: Clients through the endpoint, none retrying; each sends a request every 20 ms.
CLIENTS = 4


def _wait_for(what: str, check, timeout_s: float = 60.0, every_s: float = 0.02) -> float:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if check():
            return time.time()
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _marked(host_ns: str, marker_prefix: str) -> list[int]:
    """The host's processes whose headway marker starts with ``marker_prefix``."""
    out = []
    for pid in netns.pids(host_ns):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"HEADWAY_NODE={marker_prefix}".encode() in env:
            out.append(pid)
    return out


def _kill_active_ingress(cli, hosts: Hosts, name: str, endpoint: str, auth: dict, active: str, standby: str,
                         vip: str) -> dict:  # fmt: skip
    """Kill the host holding the address under load; the address moves; return the figures."""
    with Load([endpoint] * CLIENTS, headers=auth) as load:
        time.sleep(3)
        before = load.ok
        died_at = time.time()
        hosts.crash(active, unplug=True)
        moved_at = _wait_for("the address on the standby", lambda: hosts.holds(standby, vip), timeout_s=10)
        time.sleep(8)  # steady traffic through the new holder
        rate = before / 3
    late = [t for t in load.failed_at if t > moved_at]
    figures = {"died_at": died_at, "moved_s": moved_at - died_at, "failed": load.failed, "late": len(late),
               "rate": rate, "report": load.report(), "errors": load.errors[:5]}  # fmt: skip
    print(f"\nendpoint host {active} killed: the address moved in {figures['moved_s']:.2f} s; "
          f"{load.failed} requests failed (in flight or sent while it moved; {rate:.0f} requests/s), "
          f"{len(late)} after it moved; {load.report()}")  # fmt: skip
    assert load.failed <= rate, figures  # less than one second of traffic
    assert late == [], figures
    assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200
    return figures


def _cloud_status(cli) -> dict:
    return json.loads(cli.run("cloud", "status", "--json", check=True).stdout)


def _store_roles(cli) -> dict[str, str]:
    """Store host -> its replication role now (master/slave), as ``cloud status`` reads it."""
    return {p["host"]: p.get("replication_role", "down") for p in _cloud_status(cli)["store"]}


def test_five_hosts_each_role_survives_its_host_death(cli):
    """Five hosts: h0 the head, h1/h2 the workers, h3/h4 the store's primary and replica and
    the two ingress hosts, with the third Sentinel on h0. In turn, under steady load through
    the moving endpoint address (clients do not retry): the store primary's host dies, a
    worker host dies, the head host dies, the active ingress host dies (the store primary
    by then too). Each host reboots and rejoins in its role."""
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 5) as hosts:
            ips, ns = hosts.ips, dict(zip(hosts.ips, hosts.names, strict=True))
            vip = str(hosts.subnet.network.network_address + 100)
            cfg = hosts.config(sys.prefix, ["head", "worker", "worker", "head", "head"],
                               ingress={"address": vip, "hosts": [ips[4], ips[3]]})  # fmt: skip
            cfg["ssh"]["store"] = {"hosts": [ips[3], ips[4], ips[0]], "data_dir": str(root / "store")}
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True)
            assert _store_roles(cli) == {ips[3]: "master", ips[4]: "slave"}
            assert [s["running"] for s in _cloud_status(cli)["sentinels"]] == [True] * 3
            _wait_for("the address on the first ingress host", lambda: hosts.holds(ns[ips[4]], vip), timeout_s=10)

            name = "t-five"
            cli.run("deploy", "-f", str(cli.write_spec(name)), check=True)
            endpoint = cli.status(name)["endpoint"]
            assert endpoint.startswith(f"http://{vip}:"), endpoint
            marker = cli.record(name)["ingress"]["marker"]
            for ip in (ips[3], ips[4]):  # an HAProxy on each ingress host
                assert _marked(ns[ip], marker), f"no endpoint process on {ip}"
            head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
            assert f"RAY_REDIS_ADDRESS=rediss://{ips[3]}:".encode() in Path(f"/proc/{head['pid']}/environ").read_bytes()
            auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
            assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200
            assert httpx.get(endpoint + "/", timeout=10).status_code == 401  # the token, on every host
            figures: list[str] = []

            def lose(host: str, role: str, wait_back) -> None:
                """Kill ``host`` under load, reboot it 8 s later and wait until it is back in
                its role and the service RUNNING; 0 failed requests throughout."""
                with Load([endpoint] * CLIENTS, headers=auth) as load:
                    time.sleep(2)
                    died_at = time.time()
                    hosts.crash(ns[host], unplug=True)
                    time.sleep(8)
                    hosts.boot(ns[host])
                    back = _wait_for(f"{role} host back in its role", wait_back, timeout_s=180, every_s=0.3)
                    _wait_for("RUNNING", lambda: cli.status(name)["state"] == "RUNNING", timeout_s=180, every_s=0.5)
                    events = [e for e in cli.events(name) if e["at"] > died_at and e["kind"] == "state"]
                    time.sleep(1)
                # The service leaves RUNNING only when its head is replaced (store primary, head).
                running = [e for e in events if e["state"] == "RUNNING" and len(events) > 1]
                recovered = f"head replaced, RUNNING {running[0]['at'] - died_at:.1f} s after, " if running else ""
                line = (f"{role} host {host} killed, rebooted 8 s later: {recovered}back in its role "
                        f"{back - died_at:.1f} s after the death; {load.report()}")  # fmt: skip
                print(line)
                figures.append(line)
                assert load.failed == 0, (role, load.errors[:5])

            # 1. The store primary's host: the replica (h4) is promoted, the head restarts on it;
            # rebooted, h3 comes back as a replica (and its Sentinel, keepalived, endpoint).
            lose(ips[3], "store primary", lambda: _store_roles(cli) == {ips[3]: "slave", ips[4]: "master"}
                 and _marked(ns[ips[3]], marker) and _marked(ns[ips[3]], "cloud-"))  # fmt: skip
            head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
            assert f"RAY_REDIS_ADDRESS=rediss://{ips[4]}:".encode() in Path(f"/proc/{head['pid']}/environ").read_bytes()

            # 2. A worker host: its worker is replaced (on a live host with room).
            workers_before = {n["name"]: n["node_id"] for n in cli.record(name)["nodes"] if n["role"] == "worker"}
            lose(ips[1], "worker", lambda: len([e for e in cli.events(name) if e["kind"] == "worker_replaced"]) >= 1)

            # 3. The head host (the third Sentinel's too): the head comes back on it when it reboots.
            lose(ips[0], "head", lambda: all(s["running"] for s in _cloud_status(cli)["sentinels"]))
            assert {n["node_id"] for n in cli.record(name)["nodes"] if n["role"] == "worker"} - set(
                workers_before.values()) != set()  # the replaced worker is a new node

            # 4. The active ingress host, the store primary's by now too: the address moves
            # (requests in flight on it may fail: under one second of traffic, none after).
            moved = _kill_active_ingress(cli, hosts, name, endpoint, auth, ns[ips[4]], ns[ips[3]], vip)
            recovering = cli.wait_event(name, "state", after=moved["died_at"], state="HEAD_RECOVERING", timeout=60)
            cli.wait_event(name, "state", after=recovering["at"], state="RUNNING", timeout=180)
            hosts.boot(ns[ips[4]])
            _wait_for("h4 back as a replica", lambda: _store_roles(cli) == {ips[3]: "master", ips[4]: "slave"},
                      timeout_s=120, every_s=0.3)  # fmt: skip
            assert hosts.holds(ns[ips[3]], vip) and not hosts.holds(ns[ips[4]], vip)  # no preemption
            assert _cloud_status(cli)["endpoint_address"]["held_by"] == ips[3]
            assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200
            print("\n".join(["", "five hosts:", *figures]))

            cli.run("terminate", name, check=True)
            for ip in (ips[3], ips[4]):
                assert _marked(ns[ip], marker) == [], f"endpoint processes left on {ip}"
            cli.run("cloud", "teardown", check=True)
            assert not any(_marked(n, "cloud-") for n in hosts.names)  # keepalived gone everywhere
    finally:
        shutil.rmtree(root, ignore_errors=True)
