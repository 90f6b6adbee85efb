"""A read that meets a connection the server closed under it is sent once more; a change
(not idempotent) is not: the CLI must not fail a deploy on a keep-alive race, nor send a
deploy twice."""

from __future__ import annotations

import os
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
    assert Client(f"http://127.0.0.1:{port}", "t", True, "see the log", timeout_s=5).call(
        "GET", "/api/operations/x"
    ) == {"ok": True}
    assert len(seen) == 2


def test_a_change_is_never_sent_twice():
    port, seen = _server([None, OK])
    with pytest.raises(ApiError, match="does not answer"):
        Client(f"http://127.0.0.1:{port}", "t", True, "see the log", timeout_s=5).call(
            "PUT", "/api/services/x", json={}
        )
    assert len(seen) == 1


def _redirect(to: str) -> bytes:
    return (
        f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )


def test_a_standbys_307_is_followed_once_with_the_same_token():
    leader_port, leader_seen = _server([OK])
    port, seen = _server([_redirect(f"http://127.0.0.1:{leader_port}/api/services")])
    client = Client(f"http://127.0.0.1:{port}", "tok", True, "hint", remote=True, timeout_s=5)
    assert client.call("GET", "/api/services") == {"ok": True}
    assert b"authorization: bearer tok" in leader_seen[0].lower()


def test_no_other_redirect_and_no_second_hop_is_followed():
    far_port, far_seen = _server([OK])
    hop_port, _ = _server([_redirect(f"http://127.0.0.1:{far_port}/api/services")])
    port, _ = _server([_redirect(f"http://127.0.0.1:{hop_port}/api/services")])
    with pytest.raises(ApiError, match="standby"):
        Client(f"http://127.0.0.1:{port}", "tok", True, "hint", timeout_s=5).call("GET", "/api/services")
    port, _ = _server([_redirect(f"http://127.0.0.1:{far_port}/somewhere/else")])  # another path: not followed
    with pytest.raises(ApiError, match="standby"):
        Client(f"http://127.0.0.1:{port}", "tok", True, "hint", timeout_s=5).call("GET", "/api/services")
    assert far_seen == []


def test_a_name_is_one_path_part_whatever_it_holds():
    from headway.cli.cli_common import api_path

    assert api_path("storage", "namespaces", "hw-x??") == "/api/storage/namespaces/hw-x%3F%3F"
    assert api_path("services", "a/b#c", "logs") == "/api/services/a%2Fb%23c/logs"


def test_a_standby_here_is_a_control_plane_the_cli_can_use(tmp_path, monkeypatch):
    """A standby's API (the real one) sends callers to the leader: ``ensure`` takes it as
    this host's control plane instead of starting a second controller or timing out."""
    from headway.cli import client
    from headway.control import standby_api
    from headway.state import daemon_info, db

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    db.api_token()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()
    server = standby_api.serve(sock, lambda: "http://127.0.0.1:9", stop, None)
    try:
        daemon_info.announce(f"http://127.0.0.1:{sock.getsockname()[1]}", "standby")  # as the daemon does
        assert client.ensure(timeout_s=5).base_url == daemon_info.api_url()
        assert daemon_info.running_pid() == os.getpid()  # found, not started again
    finally:
        stop.set()
        server.join()
        sock.close()
