"""The endpoint's per-request counts in a real HAProxy (no Ray): exact codes by backend,
the endpoint's own answers, and the latency histogram, read back through the admin socket."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from conftest import haproxy_says

from headway.plan import haproxy_config as hc
from headway.plan import haproxy_counts
from headway.system import binaries

_BACKEND = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.3)
        code = 404 if self.path == "/missing" else 200
        self.send_response(code)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(sock: str) -> None:
    """Until the backend passes its health checks."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if any(st.status == "UP" for st in hc.parse_stats(haproxy_says(sock, "show stat"))):
                return
        except OSError:
            pass  # the admin socket is not there yet
        time.sleep(0.1)
    raise AssertionError("the backend never passed its health checks")


def test_codes_own_answers_and_latency_are_counted_per_backend():
    with tempfile.TemporaryDirectory(prefix="hw-counts-") as d:
        backend_port, port = _free_port(), _free_port()
        script = Path(d, "backend.py")
        script.write_text(_BACKEND)
        sock = str(Path(d, "admin.sock"))
        settings = hc.IngressSettings(bind="127.0.0.1", port=port, stats_socket=sock, tokens=("t0k",))
        slots = hc.empty_slots()
        addr = f"127.0.0.1:{backend_port}"
        slots[5] = addr
        Path(d, "h.cfg").write_text(hc.render(settings, slots))
        procs = [subprocess.Popen([sys.executable, str(script), str(backend_port)])]
        try:
            procs.append(subprocess.Popen([binaries.haproxy(), "-f", str(Path(d, "h.cfg"))]))
            url, auth = f"http://127.0.0.1:{port}", {"authorization": "Bearer t0k"}
            _wait_up(sock)
            codes = [httpx.get(url + "/", headers=auth).status_code for _ in range(6)]
            codes += [httpx.get(url + "/missing", headers=auth).status_code for _ in range(3)]
            codes += [httpx.get(url + "/slow", headers=auth).status_code for _ in range(2)]
            codes += [httpx.get(url + "/").status_code for _ in range(4)]
            codes += [httpx.get(url + "/", headers={"authorization": "Bearer wrong"}).status_code]
            assert codes == [200] * 6 + [404] * 3 + [200] * 2 + [401] * 5

            c = haproxy_counts.parse(*(haproxy_says(sock, cmd) for cmd in haproxy_counts.commands()))
            assert c.codes == {addr: {"200": 8, "404": 3}}
            assert c.own == {"401": 5}
            assert c.count == {addr: 11}
            by_le = dict(zip(haproxy_counts.BUCKETS_MS, c.buckets[addr], strict=True))
            assert by_le[250] == 9 and by_le[500] == 11  # the two slow ones take 300 ms
            assert 600 <= c.sum_ms[addr] < 600 + 10 * 50
        finally:
            for p in procs:
                p.kill()
                p.wait()


_ECHO = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        if self.headers.get("content-length"):
            self.rfile.read(int(self.headers["content-length"]))
        body = b"auth" if "authorization" in self.headers else b"none"  # what the replica would see
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_limits_at_the_door_refuse_with_their_code_and_the_app_never_sees_the_token():
    """``endpoint.max_body_bytes`` and ``endpoint.rate_limit`` as headway renders them."""
    with tempfile.TemporaryDirectory(prefix="hw-limits-") as d:
        backend_port, port = _free_port(), _free_port()
        Path(d, "backend.py").write_text(_ECHO)
        sock = str(Path(d, "admin.sock"))
        settings = hc.IngressSettings(
            bind="127.0.0.1",
            port=port,
            stats_socket=sock,
            tokens=("t0k",),
            max_body_bytes=100,
            rate_per_s=2,
            rate_burst=2,
        )
        slots = hc.empty_slots()
        slots[0] = f"127.0.0.1:{backend_port}"
        Path(d, "h.cfg").write_text(hc.render(settings, slots))
        procs = [subprocess.Popen([sys.executable, str(Path(d, "backend.py")), str(backend_port)])]
        try:
            procs.append(subprocess.Popen([binaries.haproxy(), "-f", str(Path(d, "h.cfg"))]))
            url, auth = f"http://127.0.0.1:{port}/", {"authorization": "Bearer t0k"}
            _wait_up(sock)
            with httpx.Client(timeout=10) as c:
                small = c.post(url, headers=auth, content=b"x" * 100)
                assert (small.status_code, small.text) == (200, "none")  # the token stays at the door
                assert c.post(url, headers=auth, content=b"x" * 101).status_code == 413
                chunked = c.post(url, headers=auth, content=iter([b"x" * 10]))  # no stated length
                assert chunked.status_code == 411 and "Content-Length" in chunked.text
                time.sleep(2.1)  # two whole periods: nothing of the requests above is counted
                burst = [c.get(url, headers=auth) for _ in range(10)]
                wrong = [c.get(url, headers={"authorization": "Bearer nope"}).status_code for _ in range(3)]
            codes = [r.status_code for r in burst]
            print(f"\nrate limit 2/s + 2: a burst of 10 got {codes}")
            # 2/s + 2 within a second: 4 (a burst that crosses into the next second may get a few more)
            assert 4 <= codes.count(200) <= 6 and codes.count(429) == 10 - codes.count(200), codes
            assert codes.index(429) == codes.count(200)  # the first ones pass, then it closes
            refused = burst[codes.index(429)]
            assert refused.headers["retry-after"] == "1" and "rate limit exceeded" in refused.text
            assert wrong == [401] * 3  # a wrong token is refused first, spending no one's budget
            time.sleep(2.1)  # refused requests count too: the window has to pass whole
            assert httpx.get(url, headers=auth, timeout=10).status_code == 200
            counts = haproxy_counts.parse(*(haproxy_says(sock, cmd) for cmd in haproxy_counts.commands()))
            assert counts.own.get("429") == codes.count(429) and counts.own.get("413") == 1
        finally:
            for p in procs:
                p.kill()
                p.wait()
