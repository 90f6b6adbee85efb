"""Safe on a network: probed from another host (a network namespace on the same bridge,
which is not the ingress host), nothing of a service answers but the endpoint with its
token — not a worker's Serve proxy, not the dashboard's job API, not the GCS without
Ray's token — and a head failover under load through the endpoint still loses nothing.

The probes are plain Python (sockets, urllib, Ray's own gRPC stubs) run inside the
stranger's namespace; they trust nothing of headway."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import Load, probe_from

from headway.system import netns, procs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

GRPC_PROBE = """
import sys, grpc
from ray.core.generated import gcs_service_pb2 as pb, gcs_service_pb2_grpc as rpc
md = [("authorization", "Bearer " + sys.argv[2])] if len(sys.argv) > 2 else []
stub = rpc.NodeInfoGcsServiceStub(grpc.insecure_channel(sys.argv[1]))
try:
    reply = stub.GetAllNodeInfo(pb.GetAllNodeInfoRequest(), timeout=10, metadata=md)
    print("ok", len(reply.node_info_list))
except grpc.RpcError as exc:
    print(exc.code().name)
"""

RAY_INIT = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
    print("connected", len(ray.nodes()))
except Exception as exc:
    print("refused", type(exc).__name__)
"""


def _in(ns: str, *argv: str, timeout: float = 90, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout, env=env)


class Stranger:
    """A host on the service's network that is not the ingress host: its own namespace and
    address on the test's bridge (made and removed by the test, by name)."""

    def __init__(self, bridge: str, subnet: str, name: str):
        self.ns, self.bridge = name, bridge
        net = netns.Subnet.configured() if not subnet else netns.Subnet(__import__("ipaddress").IPv4Network(subnet))
        self.ip = net.host_ips()[-1]
        self.prefix = net.prefixlen
        self.veth = f"hwvs{os.getpid() % 100000}"

    def __enter__(self) -> Stranger:
        for argv in (
            ["netns", "add", self.ns],
            ["link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.ns],
            ["link", "set", self.veth, "master", self.bridge],
            ["link", "set", self.veth, "up"],
            ["-n", self.ns, "link", "set", "lo", "up"],
            ["-n", self.ns, "addr", "add", f"{self.ip}/{self.prefix}", "dev", "eth0"],
            ["-n", self.ns, "link", "set", "eth0", "up"],
        ):
            subprocess.run(["ip", *argv], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        procs.kill_pids(netns.pids(self.ns))
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def _cmdlines(pids: list[int]) -> str:
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(out)


def test_only_the_endpoint_with_its_token_answers_strangers_and_failover_loses_nothing(cli):
    name = "t-sec"
    cli.run("deploy", "-f", str(cli.write_spec(name)), check=True)
    st = cli.status(name)
    rec = cli.record(name)
    head = next(n for n in rec["nodes"] if n["role"] == "head")
    workers = [n for n in rec["nodes"] if n["role"] == "worker"]
    proxies = cli.proxy_urls(name)
    dashboard = f"http://{head['ip']}:{head['ports']['dashboard']}"
    gcs = f"{head['ip']}:{head['ports']['gcs']}"
    ray_token = cli.ray_token(name)
    endpoint_token = cli.run("token", name, check=True).stdout.strip()
    auth = {"Authorization": f"Bearer {endpoint_token}"}
    assert "proxy_url" not in json.dumps(st) and "endpoints" not in st

    with Stranger(cli.env["HEADWAY_BRIDGE"], cli.env["HEADWAY_SUBNET"], f"hw-{name}.stranger") as stranger:
        cli.services.append(name)

        def probes() -> dict[str, str]:
            return {
                **{f"proxy {w}": probe_from(stranger.ns, "http", url + "/") for w, url in proxies.items()},
                "head proxy": probe_from(stranger.ns, "tcp", f"{head['ip']}:8000"),
                "dashboard jobs API": probe_from(
                    stranger.ns, "http", dashboard + "/api/jobs/", '{"entrypoint": "touch /tmp/hw-pwned"}'
                ),
                "ray client": probe_from(stranger.ns, "tcp", f"{head['ip']}:10001"),
                "worker metrics": probe_from(stranger.ns, "tcp", f"{workers[0]['ip']}:52367"),
            }

        seen = probes()
        print(f"\nfrom another host: {seen}")
        assert set(seen.values()) == {"refused"}, seen
        # The GCS must stay open to the nodes; Ray's token is what guards it. The same call
        # with the token works (so the probe could tell), without it it is refused.
        py = str(Path(sys.executable))
        no_token = _in(stranger.ns, py, "-c", GRPC_PROBE, gcs).stdout.strip()
        with_token = _in(stranger.ns, py, "-c", GRPC_PROBE, gcs, ray_token).stdout.strip()
        print(f"GCS from another host: without Ray's token {no_token!r}, with it {with_token!r}")
        assert no_token == "UNAUTHENTICATED", no_token
        assert with_token.startswith("ok ") and int(with_token.split()[1]) == 3
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HEADWAY_"))}
        init = _in(stranger.ns, py, "-c", RAY_INIT, gcs, env=clean).stdout.strip().splitlines()
        print(f"ray.init from another host: {init[-1:]}")
        assert init and init[-1].startswith("refused"), init
        job = _in(
            stranger.ns,
            str(Path(sys.executable).parent / "ray"),
            "job",
            "submit",
            "--address",
            dashboard,
            "--",
            "touch",
            "/tmp/hw-pwned",
            env=clean,
        )
        assert job.returncode != 0 and not Path("/tmp/hw-pwned").exists()

        # From the control host (the ingress host): the dashboard wants Ray's token too, and
        # holds only Serve's and the state API: no job API to run a command through at all.
        ray_auth = {"Authorization": f"Bearer {ray_token}"}
        assert httpx.get(dashboard + "/api/v0/nodes", timeout=10).status_code == 401
        assert httpx.get(dashboard + "/api/v0/nodes", headers=ray_auth, timeout=10).status_code == 200
        assert httpx.get(dashboard + "/api/ray/version", headers=ray_auth, timeout=10).status_code == 200
        assert httpx.get(dashboard + "/api/jobs/", headers=ray_auth, timeout=10).status_code == 404
        # The endpoint: 401 without its token, 200 with it.
        assert httpx.get(st["endpoint"] + "/", timeout=10).status_code == 401
        assert httpx.get(st["endpoint"] + "/", headers=auth, timeout=10).status_code == 200

        # Listening: the dashboard on the head's own address only.
        listening = _in(head["netns"], "ss", "-ltn").stdout
        dash_lines = [ln for ln in listening.splitlines() if f":{head['ports']['dashboard']} " in ln]
        print("head listens on:", sorted({ln.split()[3] for ln in listening.splitlines()[1:]}))
        assert dash_lines and all(f"{head['ip']}:" in ln for ln in dash_lines), dash_lines

        # Secrets: Ray's token in a 0600 file per node, on no command line; the store's admin
        # password on none either (the head's command line holds the service's own ACL user).
        for n in rec["nodes"]:
            f = Path(n["temp_dir"]) / "auth_token"
            assert stat.S_IMODE(f.stat().st_mode) == 0o600 and f.read_text() == ray_token
        lines = _cmdlines(procs.pids_with_marker(rec["cluster_id"]))
        admin = (cli.home / "cloud" / "store.password").read_text().strip()
        assert ray_token not in lines and endpoint_token not in lines and admin not in lines
        assert f"--redis-username={rec['store_user']}" in lines
        env_of_head = Path(f"/proc/{head['pid']}/environ").read_bytes()
        assert b"HEADWAY_HOME" not in env_of_head and b"HEADWAY_API_PORT" not in env_of_head  # allow-listed env

        # A head failover under load through the endpoint: nothing lost, and the new head's
        # host is closed to strangers like the old one.
        with Load([st["endpoint"]] * 3, headers=auth) as load:
            time.sleep(2)
            killed = cli.crash(name, "head")
            cli.wait_event(name, "state", after=killed, state="RUNNING", timeout=150)
            time.sleep(1)
        print(f"head failover through the endpoint: {load.report()}")
        assert load.failed == 0 and load.ok > 100, load.errors[:5]
        after = probes()
        assert set(after.values()) == {"refused"}, after
        new_head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
        assert new_head["netns"] != head["netns"]
