"""The control plane's API server: its socket taken first (a control plane that cannot
serve its API must not start: the CLI talks to it), then uvicorn in a thread."""

from __future__ import annotations

import socket
import threading

from headway.api import api_gate
from headway.api import app as api
from headway.control import operations
from headway.state import db

#: Open connections the API keeps at most (beyond it, new requests get 503 at once), and
#: how long a connection may stay silent — before its first byte, or between requests:
#: a thousand idle sockets must not hold the control plane's file descriptors for long.
MAX_CONNECTIONS = 1024
IDLE_TIMEOUT_S = 5


def bind() -> socket.socket:
    """Take the API's port before anything else: a control plane that cannot serve its
    API must not start (the CLI talks to it)."""
    host, port = api.bind()
    refusal = api.bind_refusal(host, api.tls_files() is not None)
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


def serve(sock: socket.socket, ops: operations.Operations) -> None:
    import uvicorn

    tls = api.tls_files()
    app = api_gate.Gate(api.create_app(ops), lambda: (db.get_token("api"), db.get_token("metrics")))
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
