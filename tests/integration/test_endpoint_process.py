"""The endpoint's process as headway runs it (a real HAProxy, small HTTP servers as the
workers, no Ray): a slot table that grows under load, and a fixed port that an update
moves, each by a seamless reload, and a port another service holds refused first."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from headway.cluster.local_provider import free_ports
from headway.ingress import endpoint, instances
from headway.model.spec import ServiceSpec
from headway.plan import haproxy_config as hc
from headway.state import records
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
    backends = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, ports)])
    spec = ServiceSpec.model_validate(SPEC)
    rec = _service("wide", SPEC, ports[:4])
    stop = threading.Event()
    try:
        ing = endpoint.start(None, rec, spec)
        assert len(ing.slots) == hc.SLOT_BLOCK
        _wait_up(rec, set(endpoint.backends(rec)))
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
                        codes.append(type(exc).__name__)

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in clients:
            t.start()
        time.sleep(1)
        rec.nodes = [_worker(i, port) for i, port in enumerate(ports)]  # 20 more workers join
        endpoint.sync_backends(None, rec, spec)
        assert len(ing.slots) == 32 and ing.pid != first_pid  # grown by a reload
        _wait_up(rec, set(endpoint.backends(rec)))
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
        backends.kill()
        backends.wait()


def test_a_fixed_port_is_taken_an_update_moves_it_and_another_service_cannot_have_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    workers = free_ports(2, set())
    first, second = free_ports(2, set(workers))
    backends = subprocess.Popen([sys.executable, "-c", _BACKENDS, *map(str, workers)])
    spec = ServiceSpec.model_validate(SPEC | {"endpoint": {"port": first}})
    rec = _service("wide", spec.model_dump(mode="json"), workers)
    try:
        ing = endpoint.start(None, rec, spec)
        records.save(rec)
        assert (ing.port, rec.endpoint) == (first, f"http://127.0.0.1:{first}")
        _wait_up(rec, set(endpoint.backends(rec)))
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
        _wait_up(rec, set(endpoint.backends(rec)))
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
        backends.kill()
        backends.wait()
