"""gRPC through a service's endpoint, as HAProxy config and runtime commands: pure text.

A service with ``grpc_options`` (servicer functions) has every worker's Serve proxy serve
gRPC on a port of its own beside HTTP. The endpoint sends a request whose content type is
``application/grpc`` to those ports over HTTP/2 (the client's side is HTTP/2 too: ALPN
with TLS, the HTTP/2 preface in clear, which HAProxy recognises by itself), everything
else to the HTTP proxies as before. The token is checked the same way: a gRPC client
sends it as ``authorization: Bearer …`` metadata, and a refusal (HTTP 401) reaches it as
``UNAUTHENTICATED``.

The gRPC backend has the same slots as the HTTP one, each slot the same worker, and each
of its servers *tracks* the HTTP server of its slot: one health check per worker (its
HTTP proxy's ``/-/healthz``, which answers 200 only once the worker reaches a running
replica), and a worker taken out (maintenance, down) leaves both backends at once.
"""

from __future__ import annotations

GRPC_BACKEND = "grpc_workers"


def frontend_rule() -> str:
    return f"    use_backend {GRPC_BACKEND} if {{ req.hdr(content-type) -m beg application/grpc }}"


Slots = list[tuple[str, str | None]]  # (server name, the HTTP backend's address or None)


def backend(
    http_backend: str,
    slots: Slots,
    grpc_of: dict[str, str],
    balance: str,
    weights: dict[str, int] | None = None,
    server_options: str = "",
) -> list[str]:
    """The gRPC backend: each server is the gRPC address of the worker in the HTTP server
    of the same name, with the HTTP servers' connection ``server_options``."""
    lines = ["", f"backend {GRPC_BACKEND}", f"    balance {balance}"]
    for name, addr in slots:
        target = grpc_of.get(addr or "", "127.0.0.1:9")
        weight = f" weight {weights[addr]}" if weights and addr in weights else ""
        lines.append(f"    server {name} {target} proto h2 track {http_backend}/{name} {server_options}{weight}")
    return lines


def commands(slots: Slots, grpc_of: dict[str, str], weights: dict[str, int]) -> list[str]:
    """Point each gRPC slot at its worker's gRPC port (state follows the HTTP slot)."""
    out = []
    for name, addr in slots:
        if addr and addr in grpc_of:
            ip, port = grpc_of[addr].rsplit(":", 1)
            out.append(f"set server {GRPC_BACKEND}/{name} addr {ip} port {port}")
            if addr in weights:
                out.append(f"set weight {GRPC_BACKEND}/{name} {weights[addr]}")
    return out
