"""The control plane's API server: where it listens (loopback, or TLS beyond it), its
socket taken first (a control plane that cannot serve its API must not start: the CLI
talks to it), then uvicorn in a thread, behind the token gate."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable

from headway.api import api_gate
from headway.state import db

#: Open connections the API keeps at most (beyond it, new requests get 503 at once), and
#: how long a connection may stay silent — before its first byte, or between requests:
#: a thousand idle sockets must not hold the control plane's file descriptors for long.
MAX_CONNECTIONS = 1024
IDLE_TIMEOUT_S = 5

DEFAULT_PORT = 8765


def listen_address() -> tuple[str, int]:
    """Where the API listens: ``HEADWAY_API_BIND``:``HEADWAY_API_PORT`` (127.0.0.1:8765)."""
    return os.environ.get("HEADWAY_API_BIND", "127.0.0.1"), int(os.environ.get("HEADWAY_API_PORT", DEFAULT_PORT))


def tls_files() -> tuple[str, str] | None:
    """The API's certificate and key (``HEADWAY_API_TLS_CERT``/``_KEY``), if given."""
    cert, key = os.environ.get("HEADWAY_API_TLS_CERT"), os.environ.get("HEADWAY_API_TLS_KEY")
    return (cert, key) if cert and key else None


def bind_refusal(host: str, tls: bool) -> str | None:
    """Why the API may not listen on ``host``: beyond loopback only with TLS, or the token
    (the key to every service) would cross the network in clear text."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or tls:
        return None
    return (
        f"HEADWAY_API_BIND={host} is not loopback: the API needs TLS there; set HEADWAY_API_TLS_CERT and "
        "HEADWAY_API_TLS_KEY (a certificate and its key), or bind to 127.0.0.1"
    )


def bind() -> socket.socket:
    """Take the API's port before anything else: a control plane that cannot serve its
    API must not start (the CLI talks to it)."""
    host, port = listen_address()
    refusal = bind_refusal(host, tls_files() is not None)
    if refusal:
        raise RuntimeError(refusal)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"the API cannot listen on {host}:{port} ({exc.strerror}); free the port or set HEADWAY_API_PORT"
        ) from None
    sock.listen(128)
    return sock


def serve(sock: socket.socket, asgi_app: Callable) -> None:
    """Serve ``asgi_app`` (``app.create_app``'s) on ``sock`` behind the token gate, in a thread."""
    import uvicorn

    tls = tls_files()
    app = api_gate.Gate(asgi_app, lambda: (db.get_token("api"), db.get_token("metrics")))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=IDLE_TIMEOUT_S,
        http=_silent_closed(IDLE_TIMEOUT_S),
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True).start()


def _silent_closed(idle_s: float) -> type:
    """uvicorn's HTTP protocol, closing a connection that sends nothing for ``idle_s`` after
    it opened (uvicorn times out only the idle time after a response)."""
    import asyncio

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class SilentClosed(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._silence = asyncio.get_event_loop().call_later(idle_s, transport.close)

        def data_received(self, data: bytes) -> None:
            self._silence.cancel()
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._silence.cancel()
            super().connection_lost(exc)

    return SilentClosed
