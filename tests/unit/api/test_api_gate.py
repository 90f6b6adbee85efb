"""The API against strangers, on a real uvicorn server in this process (no Ray): the token
is checked before a body is read, bodies have limits, idle sockets neither pile up nor
starve it, and ``/api/health`` tells a stranger nothing but that it is up."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import psutil
import pytest

from headway.api import api_gate, api_server, app
from headway.control import operations
from headway.state import db


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.setenv("HEADWAY_AUTO_CLOUD", "0")
    monkeypatch.setenv("HEADWAY_API_PORT", "0")
    token = db.api_token()
    db.metrics_token()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    api_server.serve(sock, app.create_app(operations.Operations()))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/api/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url, port, token
    sock.close()


def _raw(port: int, head: str, body: bytes = b"", timeout: float = 2.0) -> tuple[bytes, float]:
    """Send a request's head (and a first part of its body); the reply's first bytes and
    how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        reply = s.recv(4096)
        return reply, time.monotonic() - t0


def test_a_huge_body_without_a_token_is_refused_before_it_is_read(server):
    _url, port, _ = server
    me = psutil.Process()
    before = me.memory_info().rss
    head = f"PUT /api/services/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {200 * 2**20}"
    reply, took = _raw(port, head, b'{"yaml": "' + b"a" * 65536)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert took < 1.0
    assert me.memory_info().rss - before < 50 * 2**20


def test_a_body_above_the_route_limit_is_413_even_with_the_token(server):
    _url, port, token = server
    head = (
        f"POST /api/services/x/scale HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {api_gate.JSON_BODY_LIMIT + 1}"
    )
    reply, _ = _raw(port, head, b"{")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    head = (
        f"PUT /api/services/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {api_gate.DEPLOY_BODY_LIMIT + 1}"
    )
    reply, _ = _raw(port, head, b"{")
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_chunked_body_past_the_limit_is_413(server):
    url, _port, token = server

    def chunks():
        for _ in range(api_gate.JSON_BODY_LIMIT // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(
        url + "/api/services/x/scale",
        content=chunks(),
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_a_thousand_idle_sockets_neither_starve_the_api_nor_stay(server):
    url, port, token = server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
    try:
        t0 = time.monotonic()
        r = httpx.get(url + "/api/services", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 200 and time.monotonic() - t0 < 2.0
        # The silent ones are closed by the server after its idle time.
        deadline = time.monotonic() + api_server.IDLE_TIMEOUT_S + 10
        closed = 0
        for s in idle:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError, OSError):
                closed += s.recv(1) == b""
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


def test_health_says_only_that_it_is_up(server):
    url, _port, _token = server
    r = httpx.get(url + "/api/health", timeout=5)
    assert r.status_code == 200 and r.json() == {"ok": True}


@pytest.mark.parametrize(
    ("path", "wants"),
    [
        ("/api/health", None),
        ("/", None),
        ("/docs", None),
        ("/static/swagger/x.js", None),
        ("/metrics", "metrics"),
        ("/metrics/ray", "metrics"),
        ("/api/services", "api"),
        ("/api/services/x/token", "api"),
        ("/api", "api"),
    ],
)
def test_which_paths_want_which_token(path, wants):
    assert api_gate.needs(path) == wants


def test_a_malformed_authorization_header_is_no_token():
    assert api_gate.bearer([(b"authorization", "Bearer \xe9t\xe9".encode("latin-1"))]) == "\xe9t\xe9"
    assert api_gate.bearer([(b"authorization", b"Basic abc")]) == ""
    assert not api_gate.matches("\xe9t\xe9", "abc")
