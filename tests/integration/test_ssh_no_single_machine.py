"""No single machine: the endpoint on two ingress hosts behind an address keepalived
moves. Real hosts as in test_ssh (network namespaces with their own sshd); a host dies
whole — every process killed and its link down, as a dead machine's — and reboots."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import HEADWAY, Load, haproxy_says, wait_greetings
from ssh_hosts import SSHD, Hosts

from headway.store import store_tls
from headway.system import netns, procs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not Path(SSHD).exists(), reason="Debian's openssh-server is not installed (make system)"),
    pytest.mark.skipif(
        not shutil.which("keepalived") and not Path("/usr/sbin/keepalived").exists(),
        reason="Debian's keepalived is not installed (make system-test)",
    ),
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


def _started_before_sshd(hosts: Hosts, host_ns: str, marker_prefix: str) -> bool:
    """A process with the marker runs on the host, started by its boot before its sshd
    (so not by a controller, which reaches a host only over SSH). The oldest one is the
    program itself: the processes it forks later (keepalived's VRRP child) carry its
    marker too, and may be younger than sshd."""
    pids = _marked(host_ns, marker_prefix)
    return bool(pids) and min(map(_start_time, pids)) <= _start_time(hosts.sshd[host_ns].pid)


def _start_time(pid: int) -> int:
    """When the process started (clock ticks since boot: /proc/PID/stat's 22nd field)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _servers(host_ns: str, marker: str) -> str:
    """What the host's endpoint process says of its servers (its admin socket, found through
    its config), for the log."""
    out = []
    for pid in _marked(host_ns, marker):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cfg = argv[argv.index(b"-f") + 1].decode() if b"-f" in argv else None
        if not cfg:
            continue
        sock = next(ln.split()[2] for ln in Path(cfg).read_text().splitlines() if "stats socket" in ln)
        out += [ln for ln in haproxy_says(sock, "show servers state").splitlines() if " 127.0.0.1 " not in ln][:12]
        out += [ln for ln in Path(cfg).read_text().splitlines() if "grpc" in ln][:6]
    return "\n".join(out)


def _kill_active_ingress(
    cli, hosts: Hosts, name: str, endpoint: str, auth: dict, active: str, standby: str, vip: str, ca: str
) -> dict:
    """Kill the host holding the address under load; the address moves; return the figures."""
    with Load([endpoint] * CLIENTS, headers=auth, verify=ca) as load:
        time.sleep(3)
        before = load.ok
        died_at = time.time()
        hosts.crash(active, unplug=True)
        moved_at = _wait_for("the address on the standby", lambda: hosts.holds(standby, vip), timeout_s=10)
        time.sleep(8)  # steady traffic through the new holder
        rate = before / 3
    late = [t for t in load.failed_at if t > moved_at]
    figures = {
        "died_at": died_at,
        "moved_s": moved_at - died_at,
        "failed": load.failed,
        "late": len(late),
        "rate": rate,
        "report": load.report(),
        "errors": load.errors[:5],
    }
    print(
        f"\nendpoint host {active} killed: the address moved in {figures['moved_s']:.2f} s; "
        f"{load.failed} requests failed (in flight or sent while it moved; {rate:.0f} requests/s), "
        f"{len(late)} after it moved; {load.report()}"
    )
    assert load.failed <= rate, figures  # less than one second of traffic
    assert late == [], figures
    assert httpx.get(endpoint + "/", headers=auth, timeout=10, verify=ca).status_code == 200
    return figures


def _cloud_status(cli) -> dict:
    return json.loads(cli.run("cloud", "status", "--json", check=True).stdout)


_SEEN_SENTINELS: list = []


def _sentinels_running(cli) -> bool:
    sentinels = _cloud_status(cli)["sentinels"]
    if sentinels != _SEEN_SENTINELS:  # each change printed: the last is what a timeout is about
        print(f"sentinels: {sentinels}")
        _SEEN_SENTINELS[:] = sentinels
    return all(s["running"] for s in sentinels)


def _store_roles(cli) -> dict[str, str]:
    """Store host -> its replication role now (master/slave), as ``cloud status`` reads it."""
    return {p["host"]: p.get("replication_role", "down") for p in _cloud_status(cli)["store"]}


class Controller:
    """``headway controller run`` inside a test host, with its own state folder (as on a
    machine of its own), started by the test as a host's init would, stopped by PID."""

    def __init__(self, cli, host_ns: str, home: Path, ip: str, tls):
        self.home, self.host_ns = home, host_ns
        # Same HEADWAY_TMP: the hosts' paths. The API on the host's address, with TLS.
        self.env = cli.env | {
            "HEADWAY_HOME": str(home),
            "HEADWAY_API_BIND": ip,
            "HEADWAY_API_TLS_CERT": tls.cert,
            "HEADWAY_API_TLS_KEY": tls.key,
            "HEADWAY_API_CA": tls.ca,
        }
        self.api = f"https://{ip}:{cli.env['HEADWAY_API_PORT']}"
        self.ca = tls.ca
        self.log = home / f"controller-run-{time.time_ns()}.log"  # one per start: leads() is this one's
        self.proc: subprocess.Popen | None = None
        self.pid: tuple[int, int | None] | None = None  # started detached, as an init script would

    def start(self) -> Controller:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.host_ns, HEADWAY, "controller", "run"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self

    def start_detached(self) -> Controller:
        """``headway controller start`` on the host: it returns once the controller runs, a
        standby included (it waits for the lease), and says which it is."""
        self.log = self.home / "controller.log"
        started = self.run("controller", "start", "--json")
        assert started.returncode == 0, started.stdout + started.stderr
        pid = json.loads(started.stdout)["pid"]
        self.pid = (pid, procs.start_time(pid))
        return self

    def role(self) -> str | None:
        return json.loads(self.run("controller", "status", "--json").stdout)["role"]

    def _runs(self) -> bool:
        if self.pid is not None:
            return procs.same_process(*self.pid)
        return self.proc is not None and self.proc.poll() is None

    def leads(self) -> bool:
        """It took the lease, was not fenced since, and runs."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        fenced = "is another controller's" in text
        return "holds the lease" in text and not fenced and self._runs()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A CLI command on this controller's host (its API listens on that host's loopback)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.host_ns, HEADWAY, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def health(self) -> httpx.Response:
        """Its API's health, as a client elsewhere on the network asks (redirects not followed)."""
        return httpx.get(self.api + "/api/health", verify=self.ca, timeout=10)

    def stop(self) -> None:
        if self.pid is not None and procs.same_process(*self.pid):
            procs.kill_pids([self.pid[0]])
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)


def _answers(c: Controller) -> bool:
    try:
        c.health()
        return True
    except httpx.HTTPError:
        return False


def test_five_hosts_each_role_survives_its_host_death(cli):
    """Five hosts: h0 the head, h1/h2 the workers, h3/h4 the store's primary and replica and
    the two ingress hosts, with the third Sentinel on h0. The controller runs on h2 with a
    standby on h3, each with its own state folder. In turn, under steady load through the
    moving endpoint address (clients do not retry): the store primary's host dies, the
    controller's host (a worker's too) dies, the head host dies, the active ingress host
    dies (the store primary by then too). Each host reboots and rejoins in its role."""
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    controllers: list[Controller] = []
    try:
        with Hosts(root, 5) as hosts:
            ips, ns = hosts.ips, dict(zip(hosts.ips, hosts.names, strict=True))
            vip = str(hosts.subnet.network.network_address + 100)
            cfg = hosts.config(
                sys.prefix,
                ["head", "worker", "worker", "head", "head"],
                ingress={"address": vip, "hosts": [ips[4], ips[3]]},
            )
            cfg["ssh"]["store"] = {"hosts": [ips[3], ips[4], ips[0]], "data_dir": str(root / "store")}
            cfg["ssh"]["controllers"] = [ips[2], ips[3]]  # the leader's host and the standby's
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            setup = cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True).stdout
            for ip in (ips[3], ips[4], ips[0]):  # each store and ingress host: its boot unit, said
                assert f"host {ip}: boot unit {hosts.boot_unit(ns[ip])} written; not enabled" in setup, setup
            assert _store_roles(cli) == {ips[3]: "master", ips[4]: "slave"}
            # Setup waited for each to answer; a status read on this busy machine may find a
            # host late (said as an error, not as a Sentinel down), so wait for all three.
            _wait_for("three Sentinels running", lambda: _sentinels_running(cli), timeout_s=60, every_s=1)
            _wait_for("the address on the first ingress host", lambda: hosts.holds(ns[ips[4]], vip), timeout_s=10)

            name = "t-five"
            # HTTPS on both ingress hosts, behind the moving address the certificate names.
            tls = store_tls.ensure(root / "endpoint-tls", [vip])
            cli.run(
                "deploy",
                "-f",
                str(cli.write_spec(name, example="grpc", endpoint={"tls": {"cert": tls.cert, "key": tls.key}})),
                check=True,
            )
            endpoint = cli.status(name)["endpoint"]
            assert endpoint.startswith(f"https://{vip}:"), endpoint
            marker = cli.record(name)["ingress"]["marker"]
            keepalived = f"cloud-{_cloud_status(cli)['id']}/vip@"
            for ip in (ips[3], ips[4]):  # an HAProxy on each ingress host
                assert _marked(ns[ip], marker), f"no endpoint process on {ip}"
            head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
            assert f"RAY_REDIS_ADDRESS=rediss://{ips[3]}:".encode() in Path(f"/proc/{head['pid']}/environ").read_bytes()
            auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
            assert httpx.get(endpoint + "/", headers=auth, timeout=10, verify=tls.ca).status_code == 200
            assert httpx.get(endpoint + "/", timeout=10, verify=tls.ca).status_code == 401  # the token, on every host
            with pytest.raises(httpx.HTTPError):  # no plain HTTP on the port
                httpx.get(endpoint.replace("https://", "http://") + "/", headers=auth, timeout=5)
            # gRPC over TLS through the moving address, to both workers.
            grpc_target, token = endpoint.removeprefix("https://"), auth["Authorization"][7:]
            both = {f"hello you from {n['name']}" for n in cli.record(name)["nodes"] if n["role"] == "worker"}
            wait_greetings(grpc_target, token, both, ca=tls.ca)

            # The controller moves onto h2 (the deploy's, here, stops and hands the lease over);
            # a standby on h3 gets a copy of the cloud folder only (to reach the store).
            cli.run("controller", "stop", check=True)
            api_tls = store_tls.ensure(root / "api-tls", [ips[2], ips[3]])
            leader_a = Controller(cli, ns[ips[2]], cli.home, ips[2], api_tls).start()
            controllers.append(leader_a)
            _wait_for("the controller on h2 to lead", leader_a.leads, timeout_s=30, every_s=0.2)
            home_b = root / "standby-home"
            home_b.mkdir(mode=0o700)
            shutil.copytree(cli.home / "cloud", home_b / "cloud")
            standby = Controller(cli, ns[ips[3]], home_b, ips[3], api_tls).start()
            controllers.append(standby)

            def standby_on_h3() -> Controller:
                """h3's init starts its controller again: a standby now, found at once."""
                again = Controller(cli, ns[ips[3]], home_b, ips[3], api_tls).start_detached()
                assert again.role() == "standby" and not again.leads()
                return again

            # Both answer: the standby's API sends a caller to the leader's.
            _wait_for("the standby's API", lambda: _answers(standby), timeout_s=30, every_s=0.3)
            sent = standby.health()
            assert sent.status_code == 307 and sent.headers["location"] == leader_a.api + "/api/health", sent.text
            assert httpx.get(sent.headers["location"], verify=api_tls.ca, timeout=10).status_code == 200
            reader = cli  # whose state folder holds the current state
            figures: list[str] = []

            def lose(host: str, role: str, wait_back, after_boot=lambda: None) -> None:
                """Kill ``host`` under load, reboot it 8 s later and wait until it is back in
                its role and the service RUNNING; 0 failed requests throughout."""
                with Load([endpoint] * CLIENTS, headers=auth, verify=tls.ca) as load:
                    time.sleep(2)
                    died_at = time.time()
                    hosts.crash(ns[host], unplug=True)
                    time.sleep(8)
                    hosts.boot(ns[host])
                    if host in (ips[3], ips[4]):  # an ingress host: its boot unit, not the controller, starts them
                        assert _started_before_sshd(hosts, ns[host], keepalived)
                        assert _started_before_sshd(hosts, ns[host], marker)
                    after_boot()
                    back = _wait_for(f"{role} host back in its role", wait_back, timeout_s=180, every_s=0.3)
                    _wait_for("RUNNING", lambda: reader.status(name)["state"] == "RUNNING", timeout_s=180, every_s=0.5)
                    events = [e for e in reader.events(name) if e["at"] > died_at and e["kind"] == "state"]
                    time.sleep(1)
                # The service leaves RUNNING only when its head is replaced (store primary, head).
                running = [e for e in events if e["state"] == "RUNNING" and len(events) > 1]
                recovered = f"head replaced, RUNNING {running[0]['at'] - died_at:.1f} s after, " if running else ""
                line = (
                    f"{role} host {host} killed, rebooted 8 s later: {recovered}back in its role "
                    f"{back - died_at:.1f} s after the death; {load.report()}"
                )
                print(line)
                figures.append(line)
                assert load.failed == 0, (role, load.errors[:5])

            # 1. The store primary's host (the standby controller's too): the replica (h4) is
            # promoted, the head restarts on it; rebooted, h3 comes back as a replica (and its
            # Sentinel, keepalived, endpoint; its standby controller is started again by "init").
            lose(
                ips[3],
                "store primary",
                lambda: (
                    _store_roles(cli) == {ips[3]: "slave", ips[4]: "master"}
                    and _marked(ns[ips[3]], marker)
                    and _marked(ns[ips[3]], "cloud-")
                ),
                after_boot=lambda: controllers.append(standby_on_h3()),
            )
            head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
            assert f"RAY_REDIS_ADDRESS=rediss://{ips[4]}:".encode() in Path(f"/proc/{head['pid']}/environ").read_bytes()
            assert not controllers[-1].leads()

            # 2. The controller's host, a worker's too: the standby takes the lease over after
            # it runs out, restores the state, and replaces the worker. h2 reboots; its
            # controller starts again, as the standby now.
            standby = controllers[-1]
            workers_before = {n["node_id"] for n in cli.record(name)["nodes"] if n["role"] == "worker"}
            reader = cli_b = dataclasses.replace(cli, env=standby.env, home=home_b)
            took_over: list[float] = []

            def replaced_by_standby() -> bool:
                if standby.leads() and not took_over:
                    took_over.append(time.time())
                return bool(took_over) and any(e["kind"] == "worker_replaced" for e in cli_b.events(name))

            def restart_old_leader() -> None:
                """h2's init starts its controller again once the standby leads (started at
                once, either may win the lease: both would be right, but the test reads one)."""
                _wait_for("the standby to take the lease over", standby.leads, timeout_s=60, every_s=0.2)
                controllers.append(Controller(cli, ns[ips[2]], cli.home, ips[2], api_tls).start())

            killed_at = time.time()
            lose(ips[2], "controller (and worker)", replaced_by_standby, after_boot=restart_old_leader)
            figures.append(
                f"the standby controller took over {took_over[0] - killed_at:.1f} s after the "
                f"controller's host died (lease {10.0:.0f} s)"
            )
            assert {n["node_id"] for n in cli_b.record(name)["nodes"] if n["role"] == "worker"} != workers_before
            assert not controllers[-1].leads()  # the rebooted one waits as the standby
            assert standby.health().status_code == 200  # the API is the new leader's now ...
            _wait_for("the rebooted standby's API", lambda: _answers(controllers[-1]), timeout_s=30, every_s=0.3)
            assert controllers[-1].health().headers.get("location") == standby.api + "/api/health"  # both say so

            # 3. The head host (the third Sentinel's too): the head comes back on it when it reboots.
            lose(ips[0], "head", lambda: _sentinels_running(cli_b))

            # 4. The active ingress host, the store primary's by now too: the address moves
            # (requests in flight on it may fail: under one second of traffic, none after).
            moved = _kill_active_ingress(cli_b, hosts, name, endpoint, auth, ns[ips[4]], ns[ips[3]], vip, tls.ca)
            recovering = cli_b.wait_event(name, "state", after=moved["died_at"], state="HEAD_RECOVERING", timeout=60)
            # One controller leads throughout (the failover may lose the lease's key; the leader
            # reclaims it): the one on h3 still, whose state the test reads.
            assert standby.leads(), [c.log.read_text()[-300:] for c in controllers]
            back_running = cli_b.wait_event(name, "state", after=recovering["at"], state="RUNNING", timeout=180)
            assert standby.leads() and sum(c.leads() for c in controllers) == 1
            figures.append(
                f"active ingress host {ips[4]} (and store primary) killed: the address moved in "
                f"{moved['moved_s']:.2f} s, {moved['failed']} requests failed (in flight; "
                f"{moved['rate']:.0f} requests/s), {moved['late']} after the move; head replaced, "
                f"RUNNING {back_running['at'] - moved['died_at']:.1f} s after"
            )
            hosts.boot(ns[ips[4]])
            _wait_for(
                "h4 back as a replica",
                lambda: _store_roles(cli_b) == {ips[3]: "master", ips[4]: "slave"},
                timeout_s=120,
                every_s=0.3,
            )
            assert hosts.holds(ns[ips[3]], vip) and not hosts.holds(ns[ips[4]], vip)  # no preemption
            assert _cloud_status(cli_b)["endpoint_address"]["held_by"] == ips[3]
            assert httpx.get(endpoint + "/", headers=auth, timeout=10, verify=tls.ca).status_code == 200
            # Both workers answer through the remaining ingress host, the one the standby
            # replaced too: its replica reads the package where the first controller put it
            # (found under the standby's own state folder; it once failed to, and the
            # endpoint served from one worker while every HTTP check passed).
            try:
                wait_greetings(grpc_target, token, both, ca=tls.ca, timeout_s=120)
            finally:
                with contextlib.suppress(OSError, ValueError, StopIteration):  # a reading for the log
                    print("the remaining ingress host's servers at the end:", _servers(ns[ips[3]], marker), sep="\n")
            print("\n".join(["", "five hosts:", *figures]))

            done = standby.run("terminate", name)  # on the leader's host: its API is there
            assert done.returncode == 0, done.stdout + done.stderr
            for ip in (ips[3], ips[4]):
                assert _marked(ns[ip], marker) == [], f"endpoint processes left on {ip}"
            for c in controllers:
                c.stop()
            cli_b.run("cloud", "teardown", check=True)
            shutil.rmtree(cli.home / "cloud", ignore_errors=True)  # the old leader's copy: nothing left to stop
            assert not any(_marked(n, "cloud-") for n in hosts.names)  # keepalived gone everywhere
            kept = [str(p) for p in [*(root / "boot").glob("*/*"), *(root / "units").glob("*")]]
            assert kept == [], kept  # and no host has a boot unit or anything it would start
    finally:
        for c in controllers:
            c.stop()
            if os.environ.get("HEADWAY_TEST_KEEP_LOG"):  # debugging: each controller's log outlives the test
                shutil.copy(c.log, f"{os.environ['HEADWAY_TEST_KEEP_LOG']}.{c.log.name}")
        shutil.rmtree(root, ignore_errors=True)


_NAMED_BACKENDS = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # answers with its port: which service's worker served
        body = str(self.server.server_address[1]).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(body), body))

    def log_message(self, *a):
        pass

for port in sys.argv[2:]:
    server = ThreadingHTTPServer((sys.argv[1], int(port)), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
"""


def test_two_services_share_one_https_port_by_name_on_both_ingress_hosts(tmp_path, monkeypatch):
    """The door of a shared port on each ingress host, in front of that host's instances of
    both endpoints (no Ray: each service's one worker is a small server on this machine's
    bridge address). Each name is served through the moving address with its own
    certificate, a name nobody claims is not; the active ingress host dies and the other
    host's door serves both; a service leaves and the doors drop it; the last takes them."""
    from headway.cluster.local_provider import free_ports
    from headway.hosts import remote, ssh, vip
    from headway.ingress import door, endpoint
    from headway.model.cloud_config import SshCloud
    from headway.model.spec import ServiceSpec
    from headway.state import records, uploads
    from headway.state.records import NodeRecord, ServiceRecord
    from headway.store.cloud import CloudRecord
    from headway.system import paths

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    root = Path(tempfile.mkdtemp(prefix="hwdoor-"))
    recs: dict[str, ServiceRecord] = {}
    specs: dict[str, ServiceSpec] = {}
    backends_proc, crec, host_ips = None, None, []
    try:
        with Hosts(root, 2) as hosts:
            ips, ns = hosts.ips, dict(zip(hosts.ips, hosts.names, strict=True))
            host_ips = list(ips)
            address = str(hosts.subnet.network.network_address + 100)
            cfg = SshCloud.model_validate(
                hosts.config(sys.prefix, ["head", "head"], ingress={"address": address, "hosts": ips})["ssh"]
            )
            crec = CloudRecord(id="hwdoor", mode="ssh", bind=[], maxmemory="1mb", store=[], created_at=0, ssh=cfg)
            monkeypatch.setattr(ssh, "_key_settings", dict(ssh._key_settings))  # back as it was after the test
            ssh.configure_host_keys(cfg)  # as loading the cloud's record does
            _wait_for("sshd on both hosts", lambda: all(map(ssh.reachable, cfg.ingress_hosts())), 30, 0.2)
            for host in cfg.ingress_hosts():  # as ``cloud setup`` does
                said = remote.install_boot_unit(cfg, host)
                assert said.endswith("not enabled (systemd does not run there)"), said
                if shutil.which("systemd-analyze"):  # the file as written on the host
                    unit = hosts.boot_unit(ns[host.address])
                    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
                    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
            workers = free_ports(2, set())
            (port,) = free_ports(1, set(workers))
            bridge = hosts.subnet.bridge_ip
            backends_proc = subprocess.Popen([sys.executable, "-c", _NAMED_BACKENDS, bridge, *map(str, workers)])
            tls = {n: store_tls.ensure(root / n, [f"{n}.example"]) for n in ("shop", "api")}
            for (name, files), worker in zip(tls.items(), workers, strict=True):
                raw = {
                    "name": name,
                    "applications": [{"import_path": "m:a"}],
                    "query_auth_token_enabled": False,
                    "endpoint": {"port": port, "hostnames": [f"{name}.example"], "tls": {"cert": "c", "key": "k"}},
                }
                pem = {
                    "endpoint.tls.cert": Path(files.cert).read_text(),
                    "endpoint.tls.key": Path(files.key).read_text(),
                }
                spec = uploads.store_files(ServiceSpec.model_validate(raw), pem)
                ids = {"name": name, "cluster_id": f"c{name}", "mode": "ssh", "state": "RUNNING", "gcs_ft": False}
                rec = ServiceRecord(
                    **ids, spec=spec.model_dump(mode="json"), head_ip=bridge, gcs_port=1, dashboard_port=1, serve_port=1
                )
                rec.nodes = [
                    NodeRecord(
                        name="w-1",
                        role="worker",
                        ip=bridge,
                        ports={"proxy": worker},
                        temp_dir="/t",
                        log="/l",
                        marker="m",
                    )
                ]
                assert endpoint.listen_problem(crec, spec) is None
                endpoint.start(crec, rec, spec)
                records.save(rec)
                recs[name], specs[name] = rec, spec

            def ask(name: str) -> tuple[int, str]:
                """curl through the moving address, by name."""
                where = ["--resolve", f"{name}.example:{port}:{address}", "--cacert", tls.get(name, tls["shop"]).ca]
                proc = subprocess.run(
                    [
                        "curl",
                        "-sS",
                        "--max-time",
                        "5",
                        "-w",
                        " %{http_code}",
                        *where,
                        f"https://{name}.example:{port}/",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                return proc.returncode, proc.stdout.strip()

            served = {"shop": (0, f"{workers[0]} 200"), "api": (0, f"{workers[1]} 200")}
            _wait_for("both names served", lambda: all(ask(n) == served[n] for n in served), timeout_s=30, every_s=0.3)
            assert ask("other")[0] != 0  # a name nobody claims: the handshake is refused
            assert all(door.answering(crec, r) for r in recs.values())

            holder = next(ip for ip in ips if hosts.holds(ns[ip], address))
            hosts.crash(ns[holder], unplug=True)  # the other host's door takes the address's traffic
            _wait_for("both names served by the other host", lambda: all(ask(n) == served[n] for n in served), 30, 0.3)
            other = next(ip for ip in ips if ip != holder)
            assert hosts.holds(ns[other], address)

            def reboot(ip: str) -> None:
                hosts.boot(ns[ip])
                assert hosts.booted[ns[ip]]  # its boot unit ran
                host = next(h for h in cfg.ingress_hosts() if h.address == ip)
                _wait_for(f"sshd on {ip}", lambda: ssh.reachable(host), 30, 0.2)

            def instances_on(ip: str) -> list[list[int]]:
                """The processes of each endpoint's instance on the host, and of its door."""
                return [_marked(ns[ip], f"{r.ingress.marker}@{ip}") for r in recs.values()] + [_marked(ns[ip], "door@")]

            # The dead host reboots: its boot unit brings back its instances, its door and its
            # keepalived, with no controller; the other host dies and it serves both.
            reboot(holder)
            assert all(len(pids) == 1 for pids in instances_on(holder)), instances_on(holder)
            hosts.crash(ns[other], unplug=True)
            _wait_for(
                "both names served by the rebooted host (started at its boot)",
                lambda: all(ask(n) == served[n] for n in served),
                30,
                0.3,
            )
            # The controller's repair, the second line, adopts what the boot started (and
            # replaces each instance seamlessly with the config of now): never a second one.
            for name in recs:
                endpoint.start(crec, recs[name], specs[name])
            assert all(len(pids) == 1 for pids in instances_on(holder)), instances_on(holder)
            assert all(ask(n) == served[n] for n in served)
            reboot(other)  # every host up: what leaves must leave nothing on either

            endpoint.stop(crec, recs["api"])  # the door drops it; shop still served
            records.remove("api")
            recs.pop("api")
            assert ask("api")[0] != 0 and ask("shop") == served["shop"]
            endpoint.stop(crec, recs["shop"])  # the last one: its door goes too
            records.remove("shop")
            recs.pop("shop")
            assert [_marked(ns[ip], "door@") for ip in ips] == [[], []]  # no door left
            vip.stop(cfg, crec.id)
            left = [p.name for ip in ips for p in paths.node_temp_root().glob(f"*-{ip}")]
            assert left == [], left  # no folder of an endpoint, door or keepalived on either host
            kept = [str(p) for ip in ips for p in (root / "boot" / ip).glob("*/run.sh")]
            assert kept == [], kept  # and nothing either host would start at its next boot
    finally:
        for rec in recs.values():
            with contextlib.suppress(Exception):
                endpoint.stop(crec, rec)
        if backends_proc is not None:
            backends_proc.kill()
            backends_proc.wait()
        for ip in host_ips:  # what a host that was down at the end kept (the hosts share these files)
            for left in paths.node_temp_root().glob(f"*-{ip}"):
                shutil.rmtree(left, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
