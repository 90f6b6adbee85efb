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
from headway.ingress import backends, door, endpoint, instances
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

    def do_GET(self):  # answers with its port: which worker served; /sick: 503; /flaky: 503 from the first
        port = self.server.server_address[1]
        body = str(port).encode()
        sick = self.path == "/sick" or (self.path == "/flaky" and port == int(sys.argv[1]))
        status = b"503 Service Unavailable" if sick else b"200 OK"
        self.wfile.write(b"HTTP/1.1 %s\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (status, len(body), body))

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


def _wait_listening(ports: list[int], proc: subprocess.Popen) -> None:
    """Until each port accepts a connection: a gRPC server's process takes a while to import
    grpcio on a loaded machine, and HAProxy tracks those servers by the HTTP side's health."""
    deadline = time.monotonic() + 30
    waiting = list(ports)
    while waiting:
        assert proc.poll() is None, f"the backends exited ({proc.returncode})"
        assert time.monotonic() < deadline, f"nothing listens on {waiting}"
        try:
            socket.create_connection(("127.0.0.1", waiting[0]), timeout=1).close()
            waiting.pop(0)
        except OSError:
            time.sleep(0.1)


def _wait_up(rec: ServiceRecord, want: set[str]) -> None:
    deadline = time.monotonic() + 30
    while _up(rec) != want:
        assert time.monotonic() < deadline, f"in rotation: {sorted(_up(rec))}; wanted {sorted(want)}"
        time.sleep(0.1)


def _clients(url: str, auth: dict, stop: threading.Event, n: int, verify: ssl.SSLContext | bool = True):
    """``n`` clients sending GETs until ``stop``; the list each answer's code (or error) lands in."""
    codes: list[int | str] = []

    def load() -> None:
        with httpx.Client(verify=verify, timeout=30) as c:
            while not stop.is_set():
                try:
                    codes.append(c.get(url, headers=auth).status_code)
                except httpx.HTTPError as exc:
                    codes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=load, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, codes


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
        clients, codes = _clients(url, auth, stop, 4)
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
            == f"endpoint.port {first} is the endpoint of service wide; pick another port, or give both services "
            "endpoint.hostnames to share it"
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


def _ca_and_two_leaves(folder: Path, names: tuple[str, str] = ("localhost", "localhost")) -> tuple[str, list]:
    """A CA's PEM file, and two (certificate, key) PEM texts it signed, for ``names``."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key, signer, ca: bool, name: str = "") -> x509.Certificate:
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
            alt = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key, True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaves = []
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(name, "test CA", key, ca_key, False, name)
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
        clients, codes = _clients(url, auth, stop, 3, verify=both)
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


def _curl(*args: str) -> tuple[int, str]:
    """curl's exit code, and the status and body it got."""
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-w", " %{http_code}", *args], capture_output=True, text=True, timeout=20
    )
    return proc.returncode, proc.stdout.strip()


def test_two_services_share_one_https_port_by_name_and_a_name_nobody_claims_is_not_served(tmp_path, monkeypatch):
    """Two services on one port, each with its names, certificate and token, behind the
    port's door; the refusals of a third that cannot share; each leaves, the door last."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    workers = free_ports(2, set())
    (port,) = free_ports(1, set(workers))
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    ca, pairs = _ca_and_two_leaves(tmp_path, ("shop.example", "api.example"))

    def spec_of(name: str, names: list[str] | None, pair: tuple[str, str] | None) -> ServiceSpec:
        block: dict = {"port": port} | ({"hostnames": names} if names else {})
        if pair is not None:
            block["tls"] = {"cert": "c.pem", "key": "k.pem"}
        spec = ServiceSpec.model_validate(SPEC | {"name": name, "endpoint": block})
        files = {"endpoint.tls.cert": pair[0], "endpoint.tls.key": pair[1]} if pair else {}
        return uploads.store_files(spec, files)

    specs = {"shop": spec_of("shop", ["shop.example"], pairs[0]), "api": spec_of("api", ["api.example"], pairs[1])}
    recs = {
        name: _service(name, specs[name].model_dump(mode="json"), [w]) for name, w in zip(specs, workers, strict=True)
    }
    try:
        endpoint.start(None, recs["shop"], specs["shop"])
        records.save(recs["shop"])
        assert recs["shop"].endpoint == f"https://shop.example:{port}"
        # What cannot share the port is refused before anything starts, with the reason.
        for spec, said in [
            (spec_of("api", ["shop.example"], pairs[1]), "endpoint.hostnames: shop.example is served by service shop"),
            (spec_of("api", None, pairs[1]), f"endpoint.port {port} is the endpoint of service shop; pick another"),
            (spec_of("api", ["api.example"], None), f"endpoint.port {port} serves HTTPS for service shop"),
        ]:
            assert said in (endpoint.listen_problem(None, spec) or ""), said
        assert endpoint.listen_problem(None, specs["api"]) is None
        endpoint.start(None, recs["api"], specs["api"])
        records.save(recs["api"])
        for rec in recs.values():
            _wait_up(rec, set(backends.backends(rec)))
        headers = {}
        for name in recs:
            headers[name] = tmp_path / f"auth-{name}"  # the tokens stay off every command line
            headers[name].write_text(f"Authorization: Bearer {endpoint.endpoint_token(name)}\n")

        def ask(host: str, token: str, *extra: str) -> tuple[int, str]:
            where = ["--resolve", f"{host}:{port}:127.0.0.1", "--cacert", ca]
            return _curl(*where, "-H", f"@{headers[token]}", *extra, f"https://{host}:{port}/")

        assert ask("shop.example", "shop", "--http2") == (0, f"{workers[0]} 200")
        assert ask("api.example", "api") == (0, f"{workers[1]} 200")
        assert ask("api.example", "shop")[1].endswith(" 401")  # each service its own token
        assert ask("shop.example", "shop", "-H", "Host: api.example")[1].endswith(" 421")  # SNI and Host agree
        assert ask("other.example", "shop")[0] != 0  # a name nobody claims: the handshake is refused
        assert _curl("-k", "-H", f"@{headers['shop']}", f"https://127.0.0.1:{port}/")[0] != 0  # no name at all
        assert _curl("-H", f"@{headers['shop']}", f"http://127.0.0.1:{port}/")[0] != 0  # no plain HTTP

        endpoint.stop(None, recs["api"])  # the door drops it; shop still served
        records.remove("api")
        assert ask("api.example", "api")[0] != 0
        assert ask("shop.example", "shop") == (0, f"{workers[0]} 200")
        endpoint.stop(None, recs["shop"])  # the last one: the door goes, the port is free
        records.remove("shop")
        assert list((tmp_path / "home" / "doors").iterdir()) == []
        with socket.socket() as s:  # no listener left on it (connections closed a moment ago may linger)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        for rec in recs.values():
            endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()


def test_two_services_share_one_plain_port_by_host_and_an_unclaimed_host_gets_421(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    workers = free_ports(2, set())
    (port,) = free_ports(1, set(workers))
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    names = {"shop": "shop.example", "api": "api.example"}
    specs = {
        n: ServiceSpec.model_validate(SPEC | {"name": n, "endpoint": {"port": port, "hostnames": [h]}})
        for n, h in names.items()
    }
    recs = {n: _service(n, specs[n].model_dump(mode="json"), [w]) for n, w in zip(names, workers, strict=True)}
    try:
        for n, rec in recs.items():
            endpoint.start(None, rec, specs[n])
            records.save(rec)
            _wait_up(rec, set(backends.backends(rec)))
        assert recs["api"].endpoint == f"http://api.example:{port}"
        url = f"http://127.0.0.1:{port}/"
        for (n, host), worker in zip(names.items(), workers, strict=True):
            auth = {"Authorization": f"Bearer {endpoint.endpoint_token(n)}"}
            answer = httpx.get(url, headers=auth | {"Host": f"{host}:{port}"}, timeout=10)
            assert (answer.status_code, answer.text) == (200, str(worker))
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token('shop')}"}
        assert httpx.get(url, headers=auth | {"Host": "other.example"}, timeout=10).status_code == 421
        assert httpx.get(url, headers=auth, timeout=10).status_code == 421  # an address is no name
        assert httpx.get(url, headers=auth | {"Host": "api.example"}, timeout=10).status_code == 401
        # The door dies: the endpoints still run; what the controller does brings it back.
        folder = next((tmp_path / "home" / "doors").iterdir())
        doors = procs.pids_with_marker(f"door@{folder}")
        assert doors and door.answering(None, recs["shop"])
        procs.kill_pids(doors)
        assert not door.answering(None, recs["shop"]) and instances.alive(None, recs["shop"].ingress)
        door.follow(None, recs["shop"])
        answer = httpx.get(url, headers=auth | {"Host": "shop.example"}, timeout=10)
        assert (answer.status_code, answer.text) == (200, str(workers[0]))
    finally:
        for rec in recs.values():
            endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()


def test_retries_help_a_worker_that_fails_but_do_not_multiply_the_load_of_a_service_that_does(tmp_path, monkeypatch):
    """The retry budget: with one worker failing, every failed GET is retried on the other
    and answered; with every worker failing, each GET reaches the service about once, not
    1 + ``retries`` times, unless the budget allows it (100 %)."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    workers = free_ports(2, set())
    backends_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    spec = ServiceSpec.model_validate(SPEC)
    rec = _service("sick", SPEC, workers)
    try:
        ing = endpoint.start(None, rec, spec)
        _wait_up(rec, set(backends.backends(rec)))
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token(rec.name)}"}

        def tries() -> int:
            """The requests the workers have answered, retries included."""
            stats = hc.parse_stats(instances.command(ing, "show stat"))
            return sum(st.requests for st in stats if st.address in rec.ingress.slots)

        def get(path: str, n: int) -> tuple[set[int], int]:
            """n GETs of ``path``: their codes, and how many tries the workers answered."""
            before = tries()
            with httpx.Client(timeout=10) as c:
                codes = {c.get(f"http://127.0.0.1:{ing.port}{path}", headers=auth).status_code for _ in range(n)}
            return codes, tries() - before

        assert get("/flaky", 100)[0] == {200}  # the failing worker's answers were retried on the other
        # Now every worker fails: retries go on until the failures of the last 10 s pass 20 %
        # of the requests and 10 (the 100 good ones above count: ~38 GETs), then stop.
        codes, sick = get("/sick", 200)
        print(f"\nretry budget 20 %: 200 GETs to a failing service reached it {sick} times")
        assert codes == {503} and sick < 2 * 200, sick

        generous = ServiceSpec.model_validate(SPEC | {"endpoint": {"retry_budget_percent": 100}})
        assert endpoint.apply_update(None, rec, generous) == "reloaded"  # a new process: counters from 0
        _wait_up(rec, set(backends.backends(rec)))
        codes, sick = get("/sick", 200)
        print(f"retry budget 100 %: the same 200 GETs reached it {sick} times")
        assert codes == {503} and sick >= 3 * 200, sick  # each tried 1 + retries (3) times
    finally:
        endpoint.stop(None, rec)
        backends_proc.kill()
        backends_proc.wait()


_GRPC_BACKENDS = """
import sys, threading
from concurrent import futures
import grpc
from google.protobuf.wrappers_pb2 import StringValue

def serve(port):
    def hello(request, context):
        return StringValue(value=f"{request.value} from {port}")
    handler = grpc.method_handlers_generic_handler("hello.Greeter", {
        "Hello": grpc.unary_unary_rpc_method_handler(
            hello, request_deserializer=StringValue.FromString, response_serializer=StringValue.SerializeToString)})
    server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server

servers = [serve(int(p)) for p in sys.argv[1:]]
threading.Event().wait()
"""


def test_grpc_goes_to_each_workers_grpc_port_over_http2_and_follows_its_http_health(tmp_path, monkeypatch):
    """No Ray: small HTTP servers stand for the workers' Serve proxies, small gRPC servers
    for their gRPC proxies; HTTP/2 in clear from a real grpcio client."""
    import grpc
    from google.protobuf.wrappers_pb2 import StringValue

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    http_ports = free_ports(2, set())
    grpc_ports = free_ports(2, set(http_ports))
    http_proc = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, http_ports)])
    grpc_proc = subprocess.Popen([sys.executable, "-c", _GRPC_BACKENDS, *map(str, grpc_ports)])
    raw = SPEC | {"grpc_options": {"grpc_servicer_functions": ["protos.add_GreeterServicer_to_server"]}}
    spec = ServiceSpec.model_validate(raw)
    rec = _service("greeter", raw, http_ports)
    for node, port in zip(rec.nodes, grpc_ports, strict=True):
        node.ports["grpc"] = port
    try:
        _wait_listening(grpc_ports, grpc_proc)
        ing = endpoint.start(None, rec, spec)
        _wait_up(rec, set(backends.backends(rec)))
        meta = (("authorization", f"Bearer {endpoint.endpoint_token(rec.name)}"),)
        with grpc.insecure_channel(f"127.0.0.1:{ing.port}") as channel:
            hello = channel.unary_unary(
                "/hello.Greeter/Hello",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            said = {hello(StringValue(value="hi"), metadata=meta, timeout=10).value for _ in range(20)}
            assert said == {f"hi from {p}" for p in grpc_ports}
            try:
                hello(StringValue(value="hi"), timeout=10)
                raise AssertionError("answered without the token")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            # A worker leaves (its slot to maintenance): its gRPC side leaves with it.
            rec.nodes = rec.nodes[:1]
            endpoint.sync_backends(None, rec, spec)
            said = {hello(StringValue(value="hi"), metadata=meta, timeout=10).value for _ in range(10)}
            assert said == {f"hi from {grpc_ports[0]}"}
        auth = {"Authorization": f"Bearer {endpoint.endpoint_token(rec.name)}"}
        assert httpx.get(f"http://127.0.0.1:{ing.port}/", headers=auth, timeout=10).text == str(http_ports[0])

        # The same over HTTPS: HTTP/2 chosen by ALPN.
        ca, (pair, _) = _ca_and_two_leaves(tmp_path)
        tls = raw | {"endpoint": {"tls": {"cert": "c.pem", "key": "k.pem"}}}
        files = {"endpoint.tls.cert": pair[0], "endpoint.tls.key": pair[1]}
        secure = uploads.store_files(ServiceSpec.model_validate(tls), files)
        assert endpoint.apply_update(None, rec, secure) == "reloaded"
        _wait_up(rec, set(backends.backends(rec)))
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
        with grpc.secure_channel(f"localhost:{ing.port}", credentials) as channel:
            hello = channel.unary_unary(
                "/hello.Greeter/Hello",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            assert hello(StringValue(value="tls"), metadata=meta, timeout=10).value == f"tls from {grpc_ports[0]}"
    finally:
        endpoint.stop(None, rec)
        for p in (http_proc, grpc_proc):
            p.kill()
            p.wait()
