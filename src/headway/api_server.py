"""The control plane's API server: its socket taken first (a control plane that cannot
serve its API must not start: the CLI talks to it), then uvicorn in a thread."""

from __future__ import annotations

import socket
import threading

from . import api, operations


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
    config = uvicorn.Config(api.create_app(ops), log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)  # fmt: skip
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True).start()
