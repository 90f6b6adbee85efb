"""Integration fixtures: a private headway home, CLI runner, and cleanup that always runs.

Each test gets its own state dir, bridge and subnet so it never touches a user's
cloud on the same machine; whatever the test leaves (even when it fails) is removed
by PID, namespace name and temp dir — never by a process-name pattern.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE

import httpx
import pytest
import redis
import yaml

from headway.cluster.local_provider import free_ports
from headway.system import binaries, netns, procs

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
HEADWAY = str(Path(sys.executable).parent / "headway")

pytestmark = pytest.mark.integration


def _stacks(pid: int) -> str:
    """Every thread's Python stack in a running process (py-spy comes with Ray)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return "(py-spy is not installed)"
    try:
        return subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return "(py-spy did not answer)"


class Hung(subprocess.TimeoutExpired):
    """A command that did not end in time, with where its threads were (the report shows it)."""

    def __init__(self, cmd: list[str], timeout: float, stacks: str):
        super().__init__(cmd, timeout)
        self.stacks = stacks

    def __str__(self) -> str:
        return f"{super().__str__()}; it was at:\n{self.stacks}"


@dataclass
class Cli:
    env: dict[str, str]
    home: Path
    services: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 400, check: bool = False) -> subprocess.CompletedProcess:
        child = subprocess.Popen([HEADWAY, *args], env=self.env, stdout=PIPE, stderr=PIPE, text=True)
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            where = _stacks(child.pid)  # where it hangs, for the failure's report
            child.kill()
            child.communicate()
            raise Hung(child.args, timeout, where) from None
        proc = subprocess.CompletedProcess(child.args, child.returncode, out, err)
        if check and proc.returncode != 0:
            raise AssertionError(f"headway {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run_json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json", check=True).stdout)

    def status(self, name: str) -> dict:
        return json.loads(self.run("status", name, "--json", check=True).stdout)

    def write_spec(self, name: str, example: str = "hello", **overrides) -> Path:
        """examples/<example>/service.yaml under another name, with overrides merged in."""
        folder = ROOT / "examples" / example
        data = yaml.safe_load((folder / "service.yaml").read_text())
        data["name"] = name
        data["working_dir"] = str(folder / "app")
        for key, value in overrides.items():
            data[key] = value
        path = self.home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        self.services.append(name)
        return path

    def record(self, name: str) -> dict:
        rec = read_record(self.home, name)
        assert rec is not None, f"service {name} has no record"
        return rec

    def events(self, name: str) -> list[dict]:
        return json.loads(self.run("events", name, "--json", check=True).stdout)

    def wait_event(self, name: str, kind: str, after: float, timeout: float = 180, state: str | None = None) -> dict:
        """The first event of ``kind`` (and ``state``) recorded after time ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.record(name)["events"]:
                if e["kind"] == kind and e["at"] > after and (state is None or e["state"] == state):
                    return e
            time.sleep(0.5)
        raise AssertionError(f"no {kind} event within {timeout} s; events: {self.events(name)}")

    def proxy_urls(self, name: str) -> dict[str, str]:
        """Each worker's Serve proxy, read from the record (status no longer advertises
        them: only the ingress host may reach them)."""
        rec = self.record(name)
        return {
            n["name"]: f"http://{n['ip']}:{n['ports'].get('proxy') or rec['serve_port']}"
            for n in rec["nodes"]
            if n["role"] == "worker"
        }

    def ray_token(self, name: str) -> str:
        """The cluster's Ray token, from the state database by plain SQL."""
        conn = sqlite3.connect(self.home / "state.db", timeout=30)
        try:
            return conn.execute("SELECT token FROM tokens WHERE scope = ?", (f"ray:{name}",)).fetchone()[0]
        finally:
            conn.close()

    def node_pids(self, name: str, node: str) -> list[int]:
        """Every process of a node's host, found the way the test's own reading of the
        record says (marker and namespace), not through headway's code."""
        n = next(x for x in self.record(name)["nodes"] if x["name"] == node)
        pids = set(procs.pids_with_marker(n["marker"]))
        if n.get("netns"):
            out = subprocess.run(["ip", "netns", "pids", n["netns"]], capture_output=True, text=True)
            pids |= {int(p) for p in out.stdout.split()}
        return sorted(pids)

    def crash(self, name: str, node: str) -> float:
        """SIGKILL every process of a node by PID; return the time of the kill."""
        pids = self.node_pids(name, node)
        assert pids, f"no process found for {name}/{node}"
        at = time.time()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return at

    def controller_pid(self) -> int | None:
        try:
            info = json.loads((self.home / "controller.json").read_text())
        except (OSError, ValueError):
            return None
        return info["pid"] if procs.same_process(info["pid"], info["started"]) else None

    def _rollout_clusters(self, name: str) -> list[dict]:
        """The records of a service's rollout clusters (``<name>_r<version>``) still in the db."""
        try:
            conn = sqlite3.connect(self.home / "state.db", timeout=30)
            try:
                rows = conn.execute("SELECT name FROM services").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return []
        return [r for (n,) in rows if n.startswith(f"{name}_r") and (r := read_record(self.home, n)) is not None]

    def cleanup(self) -> None:
        if os.environ.get("HEADWAY_TEST_KEEP_LOG"):  # debugging: the controller's log outlives the test
            shutil.copy(self.home / "controller.log", os.environ["HEADWAY_TEST_KEEP_LOG"])
        pid = self.controller_pid()
        if pid:
            procs.kill_pids([pid])
        try:
            cloud = json.loads((self.home / "cloud" / "cloud.json").read_text())
            store = [p for p in [*cloud["store"], cloud.get("sentinel")] if p and p.get("pid")]
        except (OSError, ValueError, KeyError):
            store = []
        with contextlib.suppress(subprocess.TimeoutExpired):  # the safety nets below still run
            self.run("cloud", "teardown", "--force", timeout=120)
        # The store's processes, by the PIDs the cloud record held (a teardown that failed).
        procs.kill_pids([p["pid"] for p in store if procs.same_process(p["pid"], p.get("pid_started"))])
        # Safety net for a failed test: anything still recorded or named after our services.
        for name in self.services:
            for rec in filter(None, [read_record(self.home, name), *self._rollout_clusters(name)]):
                procs.kill_pids(procs.pids_with_marker(rec["cluster_id"]))
        procs.kill_pids(procs.pids_with_marker(f"door@{self.home}/doors"))  # shared ports' doors
        if os.geteuid() == 0:
            for ns in netns.list_namespaces():
                if any(ns.startswith((f"hw-{s}.", f"hw-{s}_r")) for s in self.services):
                    procs.kill_pids(netns.pids(ns))
                    netns.delete(ns)
            subprocess.run(["ip", "link", "del", self.env["HEADWAY_BRIDGE"]], capture_output=True)


PROBE = """
import json, socket, sys, urllib.request
kind, target = sys.argv[1], sys.argv[2]
try:
    if kind == "tcp":
        host, port = target.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=3).close()
        print("open")
    else:
        req = urllib.request.Request(target, data=sys.argv[3].encode() if len(sys.argv) > 3 else None,
                                     headers={"Content-Type": "application/json"})
        print(urllib.request.urlopen(req, timeout=5).status)
except ConnectionRefusedError:
    print("refused")
except urllib.error.HTTPError as exc:
    print(exc.code)
except urllib.error.URLError as exc:
    print("refused" if isinstance(exc.reason, ConnectionRefusedError) else f"error {exc.reason}")
except OSError as exc:
    print(f"error {type(exc).__name__}")
"""


def probe_from(namespace: str, kind: str, target: str, body: str | None = None) -> str:
    """Connect from another host (a network namespace) to ``target``: 'open', 'refused',
    an HTTP status, or 'error …'. A plain Python, so the probe trusts nothing of headway."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE, kind, target, *([body] if body else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def greetings(target: str, token: str, calls: int, ca: str | None = None) -> set[str]:
    """The answers to ``calls`` gRPC calls of examples/grpc through an endpoint (``host:port``;
    over TLS with ``ca``), each of which must be answered: they name the worker."""
    import grpc
    from google.protobuf.wrappers_pb2 import StringValue

    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes()) if ca else None
    with grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target) as channel:
        hello = channel.unary_unary(
            "/hello.Greeter/Hello",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )
        meta = (("authorization", f"Bearer {token}"),)
        return {hello(StringValue(value="you"), metadata=meta, timeout=15).value for _ in range(calls)}


def wait_greetings(target: str, token: str, want: set[str], ca: str | None = None, timeout_s: float = 60) -> None:
    """Until gRPC calls are answered by every worker in ``want`` (a Serve gRPC proxy listens
    a moment after its HTTP side; until then the endpoint sends a call elsewhere)."""
    import grpc

    deadline, got = time.monotonic() + timeout_s, set()
    while time.monotonic() < deadline:
        try:
            got = greetings(target, token, 10, ca)
        except grpc.RpcError as exc:
            got = {f"error {exc.code()}"}
        if got == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"gRPC answers {got}, not {want}")


def haproxy_says(sock: str, command: str) -> str:
    """An HAProxy's answer to one command on its admin socket, read by the test itself."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def read_record(home: Path, name: str) -> dict | None:
    """A service's record with its events, read from the state database by plain SQL
    (the test's own reading, not headway's code)."""
    f = home / "state.db"
    if not f.exists():
        return None
    conn = sqlite3.connect(f, timeout=30)
    try:
        row = conn.execute("SELECT record FROM services WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        rec = json.loads(row[0])
        rec["events"] = [
            json.loads(b) for (b,) in conn.execute("SELECT body FROM events WHERE service = ? ORDER BY id", (name,))
        ]
        return rec
    finally:
        conn.close()


def endpoint_oddities(home: Path, name: str, last: int = 30) -> list[str]:
    """The service endpoint's last log lines that are not a plain 200 (status or HAProxy's
    termination flags): what a failed request's report shows next to it."""
    rec = read_record(home, name)
    log = Path((rec or {}).get("ingress", {}).get("log") or "/nonexistent")
    if not log.exists():
        return [f"no endpoint log at {log}"]
    odd = [ln for ln in log.read_text(errors="replace").splitlines() if " 200 " not in ln or " ---- " not in ln]
    return odd[-last:]


class Load:
    """Clients in threads, each sending a steady stream of requests to one URL."""

    def __init__(
        self,
        urls: list[str],
        timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
        pace_s: float = 0.02,
        verify: str | bool = True,  # an HTTPS endpoint's CA file
    ):
        # Each client waits ``pace_s`` between requests: a steady stream, as from clients on
        # other machines, not a tight loop that would take the 2 cores from the nodes.
        self.pace_s = pace_s
        self.urls = urls
        self.headers = headers or {}
        self.timeout_s = timeout_s
        self.verify = verify
        self.ok = 0
        self.failed = 0
        self.max_latency = 0.0
        self.errors: list[str] = []
        self.failed_at: list[float] = []  # when each failed request was sent (time.time())
        self.slow: list[tuple[float, float]] = []  # (sent at, seconds) of each request over 1 s
        self.replies: list[dict] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(u,), daemon=True) for u in urls]

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=self.timeout_s, headers=self.headers, verify=self.verify) as client:
            while not self._stop.is_set():
                t = time.monotonic()
                sent_at = time.time()
                try:
                    r = client.get(url + "/")
                    good = r.status_code == 200
                    if good and len(self.replies) < 100000:
                        self.replies.append(r.json())
                    elif not good:
                        self.errors.append(f"{url}: HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    good = False
                    self.errors.append(f"{url}: {type(exc).__name__}")
                took = time.monotonic() - t
                self.max_latency = max(self.max_latency, took)
                if took > 1.0:
                    self.slow.append((sent_at, took))
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.failed_at.append(sent_at)
                self._stop.wait(self.pace_s)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 5)

    def report(self) -> str:
        return f"{self.ok + self.failed} requests, {self.failed} failed, max latency {self.max_latency:.2f} s"


_counter = iter(range(1, 200))


@pytest.fixture
def cli():
    home = Path(tempfile.mkdtemp(prefix="hwt-"))
    n = next(_counter)
    env = dict(os.environ)
    env.update(
        HEADWAY_HOME=str(home),
        HEADWAY_TMP=str(home / "t"),
        HEADWAY_BRIDGE=f"hwtbr{os.getpid() % 1000}{n}"[:15],
        HEADWAY_SUBNET=f"10.213.{100 + (os.getpid() + n) % 100}.0/24",
        HEADWAY_API_PORT=str(free_ports(1, set())[0]),
    )
    env.pop("HEADWAY_MODE", None)
    c = Cli(env=env, home=home)
    try:
        yield c
    finally:
        try:
            c.cleanup()
        finally:  # an interrupted cleanup (Ctrl-C during a teardown) still leaves no state dir
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def store_server(tmp_path):
    """A plain password-protected Valkey/Redis on loopback, started and stopped by PID."""
    port = _free_port()
    password = "right-pass-7Qz"
    conf = tmp_path / "store.conf"
    conf.write_text(f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\ndir {tmp_path}\n')
    proc = subprocess.Popen([binaries.store_server(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=password)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port, password
    finally:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
