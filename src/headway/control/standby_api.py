"""The API of a standby controller: it answers, and sends every caller to the leader.

A standby takes its API port at start (as a leader does), so that the address an operator
or a script uses for it answers at once: with ``307 Temporary Redirect`` to the same path
on the leader's API (the leader publishes its URL with the lease), or ``503`` with a JSON
reason while no leader is known. When the standby takes the lease over, the same socket
is handed to the real API: the address never stops answering.

Plain sockets and a hand-written reply: a standby imports nothing it does not need, and
never answers 500 — a request it cannot parse gets a 400.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Collection
from urllib.parse import urlsplit

_MAX_REQUEST = 8192


def leader_target(url: str | None, controllers: Collection[str]) -> str | None:
    """The leader's published URL if a standby may send callers there, else None. Whoever
    can write the store can publish any text: only ``http(s)://HOST:PORT`` with no user,
    path, query or control character passes, and HOST must be one of the cloud's
    ``controllers`` (when it lists them) — never a stranger's server, never a header."""
    if not url or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        return None
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if controllers and parts.hostname not in controllers and not _same_ip(parts.hostname, controllers):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _same_ip(host: str, controllers: Collection[str]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(_ip_or_none(c) == ip for c in controllers)


def _ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def reply(request_line: str, leader_url: str | None) -> bytes:
    """The whole HTTP reply to a request whose first line is ``request_line``: pure."""
    parts = request_line.split()
    if len(parts) != 3 or not parts[1].startswith("/") or not parts[2].startswith("HTTP/"):
        return _response(400, {"error": "not an HTTP request"})
    path = parts[1]
    if leader_url:
        body = {"error": f"this controller is a standby; the leader's API is at {leader_url}", "leader": leader_url}
        return _response(307, body, {"Location": leader_url.rstrip("/") + path})
    return _response(
        503,
        {"error": "this controller is a standby and no leader holds the lease now; retry shortly"},
        {"Retry-After": "2"},
    )


def _response(status: int, body: dict, headers: dict[str, str] | None = None) -> bytes:
    reason = {307: "Temporary Redirect", 400: "Bad Request", 503: "Service Unavailable"}[status]
    data = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def serve(
    sock: socket.socket, leader_url: Callable[[], str | None], stop: threading.Event, tls: tuple[str, str] | None
) -> threading.Thread:
    """Answer on ``sock`` until ``stop`` is set; the socket stays open for the real API."""
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)

    def one(conn: socket.socket) -> None:
        try:
            conn.settimeout(3)
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n" not in data and len(data) < _MAX_REQUEST:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
            try:
                url = leader_url()
            except Exception:  # noqa: BLE001 - no leader known is a 503, never a 500
                url = None
            conn.sendall(reply(line, url))
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def loop() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()
        sock.settimeout(None)

    t = threading.Thread(target=loop, name="standby-api", daemon=True)
    t.start()
    return t
