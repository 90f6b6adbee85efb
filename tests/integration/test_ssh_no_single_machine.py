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
    figures = {"moved_s": moved_at - died_at, "failed": load.failed, "late": len(late), "rate": rate,
               "report": load.report(), "errors": load.errors[:5]}  # fmt: skip
    print(f"\nendpoint host {active} killed: the address moved in {figures['moved_s']:.2f} s; "
          f"{load.failed} requests failed (in flight or sent while it moved; {rate:.0f} requests/s), "
          f"{len(late)} after it moved; {load.report()}")  # fmt: skip
    assert load.failed <= rate, figures  # less than one second of traffic
    assert late == [], figures
    assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200
    return figures


def test_endpoint_on_two_hosts_survives_the_death_of_the_active_one(cli):
    """One service, its endpoint on two ingress hosts. The active one dies under load: the
    address moves, clients carry on through the other host. It reboots: keepalived and the
    endpoint come back there, as the backup (the address stays). Then the other one dies."""
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 4) as hosts:
            vip = str(hosts.subnet.network.network_address + 100)
            ing_a, ing_b = hosts.ips[3], hosts.ips[0]  # a head candidate host, and the head's own host
            cfg = hosts.config(sys.prefix, ["head", "worker", "worker", "head"],
                               ingress={"address": vip, "hosts": [ing_a, ing_b]})  # fmt: skip
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True)
            ns = dict(zip(hosts.ips, hosts.names, strict=True))
            _wait_for("the address on the first ingress host", lambda: hosts.holds(ns[ing_a], vip), timeout_s=10)

            name = "t-vip"
            cli.run("deploy", "-f", str(cli.write_spec(name)), check=True)
            st = cli.status(name)
            endpoint = st["endpoint"]
            assert endpoint.startswith(f"http://{vip}:"), endpoint
            marker = cli.record(name)["ingress"]["marker"]
            for ip in (ing_a, ing_b):  # an HAProxy on each ingress host, none here
                assert _marked(ns[ip], marker), f"no endpoint process on {ip}"
            auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
            assert httpx.get(endpoint + "/", headers=auth, timeout=10).status_code == 200
            assert httpx.get(endpoint + "/", timeout=10).status_code == 401  # the token, on every host

            # 1. The host holding the address dies (a host with no Ray node on it).
            first = _kill_active_ingress(cli, hosts, name, endpoint, auth, ns[ing_a], ns[ing_b], vip)

            # 2. It reboots: keepalived and the endpoint come back on it, as the backup.
            hosts.boot(ns[ing_a])
            rebooted_at = time.time()
            back = _wait_for("the endpoint back on the rebooted host",
                             lambda: _marked(ns[ing_a], marker) and _marked(ns[ing_a], "cloud-"), timeout_s=60,
                             every_s=0.2)  # fmt: skip
            time.sleep(2)
            assert hosts.holds(ns[ing_b], vip) and not hosts.holds(ns[ing_a], vip)  # no preemption
            print(f"endpoint host rebooted: its keepalived and endpoint ran again {back - rebooted_at:.1f} s later")
            status = json.loads(cli.run("cloud", "status", "--json", check=True).stdout)
            assert status["endpoint_address"]["held_by"] == ing_b, status

            # 3. Now the other one dies — the head's host too: the address moves back, and the
            # workers keep serving while the head waits for its host.
            second = _kill_active_ingress(cli, hosts, name, endpoint, auth, ns[ing_b], ns[ing_a], vip)
            hosts.boot(ns[ing_b])
            running = cli.wait_event(name, "state", after=time.time() - 1, state="RUNNING", timeout=180)
            assert cli.status(name)["state"] == "RUNNING", running
            for figures in (first, second):
                assert figures["moved_s"] < 3, figures

            cli.run("terminate", name, check=True)
            for ip in (ing_a, ing_b):
                assert _marked(ns[ip], marker) == [], f"endpoint processes left on {ip}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
