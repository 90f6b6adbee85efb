"""The endpoint's process as headway runs it (a real HAProxy, small HTTP servers as the
workers, no Ray): a slot table that grows under load, and a fixed port that an update
moves, each by a seamless reload, and a port another service holds refused first."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headway.cluster.local_provider import free_ports
from headway.ingress import backends, endpoint, instances
from headway.model.spec import ServiceSpec
from headway.plan import haproxy_config as hc
from headway.state import records, uploads
from headway.state.records import NodeRecord, ServiceRecord
from headway.system import procs

_BACKENDS = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            pass  # a health check's connection, closed at once

    def log_message(self, *a):
        pass

for port in sys.argv[1:]:
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
"""

SPEC = {
    "name": "wide",
    "applications": [{"import_path": "m:a"}],
    "compute_config": {"worker_nodes": [{"name": "w", "count": 24}]},
}


def _service(name: str, spec: dict, ports: list[int]) -> ServiceRecord:
    ids = {"name": name, "cluster_id": f"c{name}", "mode": "local", "state": "RUNNING", "gcs_ft": False}
    rec = ServiceRecord(**ids, spec=spec, head_ip="127.0.0.1", gcs_port=1, dashboard_port=1, serve_port=1)
    rec.nodes = [_worker(i, port) for i, port in enumerate(ports)]
    return rec


def _worker(i: int, port: int) -> NodeRecord:
    return NodeRecord(
        name=f"w-{i}", role="worker", ip="127.0.0.1", ports={"proxy": port}, temp_dir="/t", log="/l", marker="m"
    )


def _up(rec: ServiceRecord) -> set[str]:
    """The addresses of the servers HAProxy has in rotation now."""
    ing = rec.ingress
    assert ing is not None
    status = {st.slot: st.status for st in hc.parse_stats(instances.command(ing, "show stat"))}
    return {addr for i, addr in enumerate(ing.slots) if addr and status.get(hc.slot_name(i)) == "UP"}


def _wait_up(rec: ServiceRecord, want: set[str]) -> None:
    deadline = time.monotonic() + 30
    while _up(rec) != want:
        assert time.monotonic() < deadline, f"in rotation: {sorted(_up(rec))}; wanted {sorted(want)}"
        time.sleep(0.1)


def test_the_slot_table_grows_under_load_and_every_worker_is_in_rotation(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    ports = free_ports(24, set())
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, ports)])
    spec = ServiceSpec.model_validate(SPEC)
    rec = _service("wide", SPEC, ports[:4])
    stop = threading.Event()
    try:
        ing = endpoint.start(None, rec, spec)
        assert len(ing.slots) == hc.SLOT_BLOCK
        _wait_up(rec, set(backends.backends(rec)))
        first_pid = ing.pid

        url = f"http://127.0.0.1:{ing.port}/"
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token(rec.name)}"}
        codes: list[int | str] = []

        def load() -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    try:
                        codes.append(c.get(url, headers=auth).status_code)
                    except httpx.HTTPError as exc:
                        codes.append(f"{type(exc).__name__}: {exc}")

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in clients:
            t.start()
        time.sleep(1)
        rec.nodes = [_worker(i, port) for i, port in enumerate(ports)]  # 20 more workers join
        endpoint.sync_backends(None, rec, spec)
        assert len(ing.slots) == 32 and ing.pid != first_pid  # grown by a reload
        _wait_up(rec, set(backends.backends(rec)))
        time.sleep(1)
        stop.set()
        for t in clients:
            t.join(timeout=40)
        served = {st.address for st in hc.parse_stats(instances.command(ing, "show stat")) if st.requests}
        print(f"\n24 workers behind one endpoint: {len(codes)} requests across the growth, {len(served)} served")
        assert codes and set(codes) == {200}, {c for c in codes if c != 200}
        assert len(served) == 24  # every worker took requests once in rotation
        deadline = time.monotonic() + 20  # the old process finishes its requests and leaves
        while procs.same_process(first_pid, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not procs.same_process(first_pid, None)
    finally:
        stop.set()
        endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()


def test_a_fixed_port_is_taken_an_update_moves_it_and_another_service_cannot_have_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    workers = free_ports(2, set())
    first, second = free_ports(2, set(workers))
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    spec = ServiceSpec.model_validate(SPEC | {"endpoint": {"port": first}})
    rec = _service("wide", spec.model_dump(mode="json"), workers)
    try:
        ing = endpoint.start(None, rec, spec)
        records.save(rec)
        assert (ing.port, rec.endpoint) == (first, f"http://127.0.0.1:{first}")
        _wait_up(rec, set(backends.backends(rec)))
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token(rec.name)}"}
        assert httpx.get(f"http://127.0.0.1:{first}/", headers=auth).status_code == 200

        # Another service asking for that port is refused before anything starts.
        other = ServiceSpec.model_validate(SPEC | {"name": "other", "endpoint": {"port": first}})
        assert (
            endpoint.listen_problem(None, other)
            == f"endpoint.port {first} is the endpoint of service wide; pick another port"
        )
        assert endpoint.listen_problem(None, spec) is None  # its own
        with socket.socket() as squatter:  # a port another program holds
            squatter.bind(("127.0.0.1", second))
            squatter.listen()
            moved = ServiceSpec.model_validate(SPEC | {"endpoint": {"port": second}})
            assert "is not free on this machine" in (endpoint.listen_problem(None, moved) or "")

        assert endpoint.apply_update(None, rec, moved) == "reloaded"
        assert (ing.port, rec.endpoint) == (second, f"http://127.0.0.1:{second}")
        _wait_up(rec, set(backends.backends(rec)))
        assert httpx.get(f"http://127.0.0.1:{second}/", headers=auth).status_code == 200
        deadline = time.monotonic() + 20  # the old process hands over and leaves: the old port closes
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{first}/", headers=auth, timeout=2)
            except httpx.ConnectError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the endpoint still answers on its old port {first}")
        unfixed = ServiceSpec.model_validate(SPEC)  # the block removed: the port is kept
        endpoint.apply_update(None, rec, unfixed)
        assert ing.port == second
    finally:
        endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()


def _ca_and_two_leaves(folder: Path) -> tuple[str, list[tuple[str, str]]]:
    """A CA's PEM file, and two (certificate, key) PEM texts it signed for localhost."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key, signer, ca: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key, True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaves = []
    for _ in range(2):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build("localhost", "test CA", key, ca_key, False)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        leaves.append((cert.public_bytes(serialization.Encoding.PEM).decode(), pem_key.decode()))
    return str(folder / "ca.pem"), leaves


def test_https_with_http2_no_plain_http_and_a_new_certificate_without_a_failed_request(tmp_path, monkeypatch):
    """A service with ``endpoint.tls``: HTTPS only, HTTP/2 or HTTP/1.1 by ALPN, the token
    checked; a redeploy with another certificate swaps it by a seamless reload under load."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    workers = free_ports(2, set())
    (port,) = free_ports(1, set(workers))
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    ca, (first, second) = _ca_and_two_leaves(tmp_path)

    def deployed(pair: tuple[str, str]) -> ServiceSpec:  # as the API takes a deploy's uploads
        raw = SPEC | {"name": "secure", "endpoint": {"port": port, "tls": {"cert": "c.pem", "key": "k.pem"}}}
        files = {"endpoint.tls.cert": pair[0], "endpoint.tls.key": pair[1]}
        return uploads.store_files(ServiceSpec.model_validate(raw), files)

    def served() -> str:  # the certificate the endpoint presents now
        return ssl.get_server_certificate(("127.0.0.1", port), ca_certs=ca)

    spec = deployed(first)
    rec = _service("secure", spec.model_dump(mode="json"), workers)
    stop = threading.Event()
    try:
        ing = endpoint.start(None, rec, spec)
        assert rec.endpoint == f"https://127.0.0.1:{port}"
        assert oct(os.stat(Path(ing.config).with_name(endpoint.TLS_PEM)).st_mode & 0o777) == "0o600"
        _wait_up(rec, set(backends.backends(rec)))
        header = tmp_path / "auth"  # the token stays off every command line
        header.write_text(f"Authorization: Bearer {endpoint.endpoint_token(rec.name)}\n")
        header.chmod(0o600)
        url = f"https://localhost:{port}/"

        def curl(*args: str) -> tuple[int, str]:
            proc = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "10", *args],
                capture_output=True,
                text=True,
                timeout=20,
            )
            return proc.returncode, proc.stdout

        assert curl("--cacert", ca, "-H", f"@{header}", "--http2", url) == (0, "200 2")
        assert curl("--cacert", ca, "-H", f"@{header}", "--http1.1", url) == (0, "200 1.1")
        assert curl("--cacert", ca, url) == (0, "401 2")  # no token
        code, said = curl("-H", f"@{header}", f"http://127.0.0.1:{port}/")  # plain HTTP is not served
        assert code != 0 and not said.startswith("200"), (code, said)

        both = ssl.create_default_context(cafile=ca)
        assert served() == first[0]
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token(rec.name)}"}
        codes: list[int | str] = []

        def load() -> None:
            with httpx.Client(verify=both, timeout=30) as c:
                while not stop.is_set():
                    try:
                        codes.append(c.get(url, headers=auth).status_code)
                    except httpx.HTTPError as exc:
                        codes.append(f"{type(exc).__name__}: {exc}")

        clients = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in clients:
            t.start()
        time.sleep(1)
        assert endpoint.apply_update(None, rec, deployed(second)) == "reloaded"
        deadline = time.monotonic() + 20  # the old process finishes its connections and leaves
        while served() != second[0]:
            assert time.monotonic() < deadline, "the new certificate is not served"
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for t in clients:
            t.join(timeout=40)
        print(f"\nHTTPS across a certificate change: {len(codes)} requests, {codes.count(200)} answered 200")
        assert len(codes) > 20 and set(codes) == {200}, {c for c in codes if c != 200}
        assert curl("--cacert", ca, "-H", f"@{header}", url) == (0, "200 2")
    finally:
        stop.set()
        endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()
