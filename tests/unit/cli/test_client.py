"""A read that meets a connection the server closed under it is sent once more; a change
(not idempotent) is not: the CLI must not fail a deploy on a keep-alive race, nor send a
deploy twice."""

from __future__ import annotations

import socket
import threading

import pytest

from headway.cli.client import ApiError, Client


def _server(replies: list[bytes | None]) -> tuple[int, list[bytes]]:
    """Each connection reads a request and sends the next reply (None: closes at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    seen: list[bytes] = []

    def run() -> None:
        for reply in replies:
            conn, _ = sock.accept()
            seen.append(conn.recv(65536))
            if reply is not None:
                conn.sendall(reply)
            conn.close()
        sock.close()

    threading.Thread(target=run, daemon=True).start()
    return sock.getsockname()[1], seen


OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok":true}'


def test_a_read_is_sent_again_after_a_closed_connection():
    port, seen = _server([None, OK])
    assert Client(f"http://127.0.0.1:{port}", "t", timeout_s=5).call("GET", "/api/operations/x") == {"ok": True}
    assert len(seen) == 2


def test_a_change_is_never_sent_twice():
    port, seen = _server([None, OK])
    with pytest.raises(ApiError, match="does not answer"):
        Client(f"http://127.0.0.1:{port}", "t", timeout_s=5).call("PUT", "/api/services/x", json={})
    assert len(seen) == 1
