"""A service with more workers than the endpoint's first slot table (16), through a real
HAProxy (no Ray): the table grows by a seamless reload while requests flow, every worker
ends up in rotation, and none of the requests fails."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx

from headway.cluster.local_provider import free_ports
from headway.ingress import endpoint, instances
from headway.model.spec import ServiceSpec
from headway.plan import haproxy_config as hc
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
    ids = {"name": "wide", "cluster_id": "cwide", "mode": "local", "state": "RUNNING", "gcs_ft": False}
    rec = ServiceRecord(**ids, spec=SPEC, head_ip="127.0.0.1", gcs_port=1, dashboard_port=1, serve_port=1)
    rec.nodes = [_worker(i, port) for i, port in enumerate(ports[:4])]
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
