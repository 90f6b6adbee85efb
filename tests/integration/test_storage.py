"""The GCS store's checks, TLS, isolation, usage, alerts and cleanup, on real servers.

Each pre-flight check meets a real server configured to fail it. Servers are started
by the tests on loopback and stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
import redis
from conftest import Load, _free_port, read_record

from headway.cluster.local_provider import free_ports
from headway.system import binaries

pytestmark = pytest.mark.integration

ADMIN_PW = "adm1n-pw-Zx"


class Servers:
    """Redis/Valkey servers for one test, each stopped by its PID at the end."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def start(self, *lines: str, password: str | None = ADMIN_PW, port: int | None = None) -> int:
        # Below 32000: a cluster node also listens on port + 10000 (its bus), which must exist.
        port = port or free_ports(1, set())[0]
        d = self.root / str(port)
        d.mkdir()
        conf = [f"port {port}", "bind 127.0.0.1", 'save ""', "appendonly no", f"dir {d}", *lines]
        if password:
            conf += [f"requirepass {password}", f"masterauth {password}"]
        (d / "s.conf").write_text("\n".join(conf) + "\n")
        self.procs.append(
            subprocess.Popen(
                [binaries.store_server(), str(d / "s.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return port

    def admin(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=ADMIN_PW)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def check(cli, port: int, *extra: str, password: str | None = ADMIN_PW) -> subprocess.CompletedProcess:
    env_args = []
    if password:
        cli.env["T_STORE_PW"] = password
        env_args = ["--password-env", "T_STORE_PW"]
    return cli.run("storage", "check", f"127.0.0.1:{port}", *env_args, *extra)


def test_each_fitness_check_fails_on_a_server_made_to_fail_it(cli, servers):
    # A lone server: reachable, no replica (a warning, an error when required), no maxmemory.
    lone = servers.start("maxmemory-policy noeviction")
    ok = check(cli, lone)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no connected replica" in ok.stdout and "warning" in ok.stdout
    assert "maxmemory is not set" in ok.stdout
    assert "Redis 7" in ok.stdout or "Valkey" in ok.stdout  # the version is reported
    assert ADMIN_PW not in ok.stdout + ok.stderr
    strict = check(cli, lone, "--require-replica")
    assert strict.returncode == 2 and "no connected replica" in strict.stdout

    # Wrong password and nothing listening.
    bad = check(cli, lone, password="wrong")
    assert bad.returncode == 2 and "rejected the credentials" in bad.stderr and "wrong" not in bad.stderr
    gone = check(cli, _free_port())
    assert gone.returncode == 2 and "cannot reach" in gone.stderr

    # Eviction destroys GCS state: an error.
    evicting = servers.start("maxmemory 2gb", "maxmemory-policy allkeys-lru")
    ev = check(cli, evicting)
    assert ev.returncode == 2 and "maxmemory-policy is allkeys-lru" in ev.stdout and "noeviction" in ev.stdout

    # A small maxmemory is a warning.
    small = servers.start("maxmemory 100mb", "maxmemory-policy noeviction")
    sm = check(cli, small)
    assert sm.returncode == 0 and "at least 1 GiB is recommended" in sm.stdout

    # A primary with a replica passes; the replica's own address is refused.
    primary = servers.start("maxmemory 1gb", "maxmemory-policy noeviction")
    replica = servers.start("maxmemory 1gb", "maxmemory-policy noeviction", f"replicaof 127.0.0.1 {primary}")
    deadline = time.time() + 15
    while time.time() < deadline and servers.admin(primary).info("replication")["connected_slaves"] < 1:
        time.sleep(0.2)
    good = check(cli, primary, "--require-replica")
    assert good.returncode == 0 and "1 connected replica" in good.stdout and "fit for the GCS" in good.stdout
    rep = check(cli, replica)
    assert rep.returncode == 2 and "names a replica" in rep.stdout

    # Credentials that may not run what the GCS needs.
    servers.admin(primary).execute_command("ACL", "SETUSER", "weak", "on", ">weak-pw", "~*", "-@all", "+ping", "+info")
    cli.env["T_WEAK"] = "weak-pw"
    weak = cli.run("storage", "check", f"127.0.0.1:{primary}", "--username", "weak", "--password-env", "T_WEAK")
    assert weak.returncode == 2 and "may not run HSET" in weak.stdout

    # A cluster of two shards.
    a = servers.start("cluster-enabled yes", "cluster-config-file a.conf", password=None)
    b = servers.start("cluster-enabled yes", "cluster-config-file b.conf", password=None)
    ra, rb = redis.Redis(port=a), redis.Redis(port=b)
    ra.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
    rb.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
    ra.execute_command("CLUSTER", "MEET", "127.0.0.1", b)
    deadline = time.time() + 15
    while time.time() < deadline and b"cluster_size:2" not in ra.execute_command("CLUSTER", "INFO"):
        time.sleep(0.2)
    shards = check(cli, a, password=None)
    assert shards.returncode == 2 and "cluster with 2 shards" in shards.stdout


def test_deploy_refuses_an_unfit_store_before_starting_anything(cli, servers):
    port = servers.start("maxmemory 2gb", "maxmemory-policy volatile-lru")
    cli.env["T_PW"] = ADMIN_PW
    spec = cli.write_spec(
        "t-unfit",
        ray_gcs_external_storage_config={"address": f"127.0.0.1:{port}", "redis_password_env": "T_PW"},
    )
    proc = cli.run("deploy", "-f", str(spec))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "maxmemory-policy is volatile-lru" in proc.stderr and "nothing was started" in proc.stderr
    assert read_record(cli.home, "t-unfit") is None
    assert not (cli.home / "cloud" / "cloud.json").exists()


def _make_tls(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hw-test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return {"ca": d / "ca.pem", "cert": d / "srv.pem", "key": d / "srv.key"}


def test_tls_deploy_end_to_end(cli, servers, tmp_path):
    tls = _make_tls(tmp_path)
    (port,) = free_ports(1, set())
    servers.start(
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {tls['cert']}",
        f"tls-key-file {tls['key']}",
        f"tls-ca-cert-file {tls['ca']}",
        "tls-auth-clients no",
        "maxmemory 1gb",
        "maxmemory-policy noeviction",
        port=port,
    )
    cli.env["HEADWAY_MODE"] = "loopback"
    cli.env["T_TLS_PW"] = ADMIN_PW
    gcs = {"address": f"rediss://127.0.0.1:{port}", "redis_password_env": "T_TLS_PW"}
    # The system CA bundle does not know the test's CA: a clear refusal, nothing started.
    spec = cli.write_spec("t-tls", ray_gcs_external_storage_config=gcs)
    refused = cli.run("deploy", "-f", str(spec))
    assert refused.returncode == 2 and "TLS" in refused.stderr and "redis_certificate_path" in refused.stderr
    spec = cli.write_spec("t-tls", ray_gcs_external_storage_config=gcs | {"redis_certificate_path": str(tls["ca"])})
    cli.run("deploy", "-f", str(spec), check=True)
    st = cli.status("t-tls")
    assert st["state"] == "RUNNING" and st["storage"]["address"].startswith("rediss://")
    client = redis.Redis(host="127.0.0.1", port=port, password=ADMIN_PW, ssl=True, ssl_ca_certs=str(tls["ca"]))
    ns = st["storage"]["namespace"]
    assert any(k.endswith(b"@NODE") for k in client.scan_iter(match=f"RAY{ns}@*"))
    cli.run("terminate", "t-tls", check=True)
    assert not list(client.scan_iter(match=f"RAY{ns}@*"))


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_isolation_usage_alert_and_cleanup_on_the_managed_store(cli):
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        _managed_store_scenario(cli, f"http://127.0.0.1:{hook.server_port}/alert")
    finally:
        hook.shutdown()


def _managed_store_scenario(cli, webhook: str) -> None:
    cli.run("cloud", "setup", "--alert-percent", "80", "--alert-webhook", webhook, check=True)
    name = "t-iso"
    cli.run("deploy", "-f", str(cli.write_spec(name)), check=True)
    st = cli.status(name)
    s = st["storage"]
    ns, user = s["namespace"], s["user"]
    assert user and s["usage"]["bytes"] > 0
    cloud = json.loads((cli.home / "cloud" / "cloud.json").read_text())
    primary = next(p for p in cloud["store"] if p["role"] == "primary")["port"]
    admin_pw = (cli.home / "cloud" / "store.password").read_text().strip()
    admin = redis.Redis(port=primary, password=admin_pw)
    # The head runs as the service's own user.
    head = next(n for n in cli.record(name)["nodes"] if n["role"] == "head")
    head_cmdlines = [
        Path(f"/proc/{p}/cmdline").read_bytes() for p in cli.node_pids(name, "head") if Path(f"/proc/{p}").exists()
    ]
    assert any(f"--redis-username={user}".encode() in c for c in head_cmdlines), head["name"]

    # Isolation: the service's user cannot read or delete another namespace's keys.
    admin.hset("RAYhw-other-1234@NODE", "n", "other-service-metadata")
    own_pw = (cli.home / "services" / name / f"store-{cli.record(name)['cluster_id']}.password").read_text().strip()
    as_service = redis.Redis(port=primary, username=user, password=own_pw)
    assert as_service.hgetall(f"RAY{ns}@NODE")  # its own tables: yes
    for attempt in (
        lambda: as_service.hgetall("RAYhw-other-1234@NODE"),
        lambda: as_service.unlink("RAYhw-other-1234@NODE"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    with pytest.raises(redis.exceptions.NoPermissionError):
        as_service.flushall()

    # Leftovers: a namespace nobody owns is reported and removed; others stay.
    cs = json.loads(cli.run("cloud", "status", "--json", check=True).stdout)
    assert "hw-other-1234" in cs["leftovers"] and ns not in cs["leftovers"]
    assert cs["namespaces"][ns]["service"] == name and cs["namespaces"][ns]["bytes"] > 0
    own_keys = sorted(admin.scan_iter(match=f"RAY{ns}@*"))
    refused = cli.run("storage", "cleanup", ns)
    assert refused.returncode == 2 and "terminate the service" in refused.stderr
    for pattern in ("*", "RAY*", "hw-*", f"{ns[:-2]}??"):  # never a glob: nothing is deleted
        refused = cli.run("storage", "cleanup", pattern)
        assert refused.returncode == 2 and "is a pattern; name one leftover namespace exactly" in refused.stderr
    refused = cli.run("storage", "cleanup", "hw-other")
    assert refused.returncode == 2 and "is not a leftover namespace" in refused.stderr
    assert sorted(admin.scan_iter(match=f"RAY{ns}@*")) == own_keys and admin.exists("RAYhw-other-1234@NODE")
    cli.run("storage", "cleanup", "hw-other-1234", check=True)
    assert not admin.exists("RAYhw-other-1234@NODE")
    assert sorted(admin.scan_iter(match=f"RAY{ns}@*")) == own_keys

    # One service's share: past its limit an alert names it (the limit made tiny here: a
    # service's GCS data is a few hundred KB of the store's 1 GB); back below, cleared.
    share = cli.status(name)["storage"]["usage"]["share_percent"]
    assert share is not None and 0 < share < 25
    cli.run("cloud", "setup", "--service-alert-percent", "0.001", check=True)
    raised = _wait_store_event(cli, name, "service_store_alert_raised")
    assert f"service {name} holds" in raised["message"] and raised["details"]["threshold"] == 0.001
    assert cli.status(name)["storage"]["share_alert"]["active"]
    url, token = (cli.run("api", what, check=True).stdout.strip() for what in ("url", "token"))
    metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert f'headway_service_store_share_percent{{service="{name}"}}' in metrics.text
    cli.run("cloud", "setup", "--service-alert-percent", "25", check=True)
    _wait_store_event(cli, name, "service_store_alert_cleared")

    # Alert: fill a store with a small maxmemory past 80%, then drain it. The limit is set on
    # both store processes: the alert reads the primary Sentinel names, and a loaded machine
    # can make Sentinel (1 s down-after) fail over on its own.
    replica = redis.Redis(port=next(p for p in cloud["store"] if p["role"] == "replica")["port"], password=admin_pw)
    base = admin.info("memory")["used_memory"]
    for store in (admin, replica):
        store.config_set("maxmemory", base + 16 * 2**20)
    filled = 0
    while admin.info("memory")["used_memory"] < 0.9 * (base + 16 * 2**20):
        admin.set(f"hwfill{filled}", b"x" * 2**18)
        filled += 1
    try:
        raised = _wait_store_event(cli, name, "store_alert_raised")
    except AssertionError as exc:  # say where the store stood: which process is primary, how full
        roles = {s.connection_pool.connection_kwargs["port"]: s.info("replication")["role"] for s in (admin, replica)}
        used = {s.connection_pool.connection_kwargs["port"]: s.info("memory")["used_memory"] for s in (admin, replica)}
        raise AssertionError(f"{exc}; roles {roles}, used {used}, limit {base + 16 * 2**20}") from None
    assert raised["details"]["percent"] >= 80
    assert "ALERT" in cli.run("status", name).stdout
    assert cli.status(name)["storage"]["alert"]["active"]
    admin.delete(*[f"hwfill{i}" for i in range(filled)])
    _wait_store_event(cli, name, "store_alert_cleared")
    assert not cli.status(name)["storage"]["alert"]["active"]
    kinds = [h["kind"] for h in _Hook.received]
    assert kinds[-2:] == ["store_alert_raised", "store_alert_cleared"], kinds
    for store in (admin, replica):
        store.config_set("maxmemory", "1gb")

    # The store's primary dies under traffic: Sentinel promotes the replica, the GCS exits,
    # the watchdog starts a head against the new primary; the old one comes back as replica.
    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    with Load([st["endpoint"]] * 8, headers=auth) as load:
        time.sleep(2)
        killed_at = time.time()
        os.kill(next(p for p in cloud["store"] if p["role"] == "primary")["pid"], signal.SIGKILL)
        running = cli.wait_event(name, "state", after=killed_at, state="RUNNING", timeout=150)
    ready = cli.wait_event(name, "store_ready", after=killed_at)
    print(
        f"\nstore primary SIGKILL: {load.report()}; head replaced against the promoted replica, "
        f"RUNNING {running['at'] - killed_at:.1f} s after the kill"
    )
    assert load.failed == 0, load.errors[:10]
    replica_port = next(p for p in cloud["store"] if p["role"] == "replica")["port"]
    assert f":{replica_port}" in ready["message"]
    deadline = time.time() + 30
    while time.time() < deadline:
        cs = json.loads(cli.run("cloud", "status", "--json", check=True).stdout)
        promoted = next(p for p in cs["store"] if p["port"] == replica_port)
        all_running = all(p["running"] for p in cs["store"])
        if cs["primary_port"] == replica_port and all_running and promoted.get("connected_replicas") == 1:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the old primary did not come back as a replica: {cs}")
    old_primary = redis.Redis(port=primary, password=admin_pw)
    assert user.encode() in b" ".join(old_primary.execute_command("ACL", "USERS"))
    admin = redis.Redis(port=replica_port, password=admin_pw)
    assert cli.status(name)["state"] == "RUNNING"

    # Terminate removes exactly its keys and its user.
    cli.run("terminate", name, check=True)
    assert not list(admin.scan_iter(match=f"RAY{ns}@*"))
    assert user.encode() not in b" ".join(admin.execute_command("ACL", "USERS"))


def _wait_store_event(cli, name: str, kind: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in cli.events(name):
            if e["kind"] == kind:
                return e
        time.sleep(0.5)
    raise AssertionError(f"no {kind} within {timeout} s: {cli.events(name)}")
