"""The HAProxy config of a *door*: one port shared by several services' endpoints, each
claiming its names (``endpoint.hostnames``). Pure text.

A door only routes, and nothing of a service lives in it: with TLS it reads the name in
the client's hello (SNI) and passes the connection, still encrypted, to the endpoint that
claims it, which ends TLS with its own certificate and checks its own token and limits;
without TLS it reads the Host header. A name no service claims is not served: a TLS
connection is closed, a plain request gets 421. The PROXY protocol hands each endpoint
the client's address, so its rate limit and logs see the client, not the door.
"""

from __future__ import annotations

from dataclasses import dataclass

from headway.plan.haproxy_config import NOBODY


@dataclass(frozen=True)
class Room:
    """One service behind the door: its names and its endpoint's private listener."""

    service: str
    names: tuple[str, ...]
    listen: str


@dataclass(frozen=True)
class DoorSettings:
    bind: str
    port: int
    tls: bool
    stats_socket: str
    rooms: tuple[Room, ...]
    #: How long an old door lingers after a reload for the connections it passed on: as
    #: long as the longest request timeout behind it, and a margin.
    linger_s: float = 75.0
    unprivileged: bool = False
    # On the ingress hosts: bind the moving address whether or not this host holds it.
    freebind: bool = False


def backend_name(service: str) -> str:
    return f"to_{service}"


def render(s: DoorSettings) -> str:
    lines = [
        "global",
        "    maxconn 4096",
        "    log stdout format raw local0",
        f"    stats socket {s.stats_socket} mode 600 level admin expose-fd listeners",
        f"    hard-stop-after {int(s.linger_s * 1000)}ms",
        *([f"    uid {NOBODY}", f"    gid {NOBODY}"] if s.unprivileged else []),
        "",
        "defaults",
        "    log global",
        "    option dontlognull",
        "    timeout connect 1s",
        # The endpoints behind time their requests out; the door follows their connections.
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout client-fin 5s",
        "",
        "frontend door",
        f"    bind {s.bind}:{s.port}{' transparent' if s.freebind else ''}",
    ]
    if s.tls:
        lines += [
            "    mode tcp",
            "    tcp-request inspect-delay 5s",
            "    tcp-request content reject unless { req.ssl_hello_type 1 }",
        ]
    else:
        every = " ".join(n for r in s.rooms for n in r.names)
        lines += [
            "    mode http",
            "    option http-keep-alive",
            "    timeout http-request 10s",
            "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
            f"    http-request deny deny_status 421 unless {{ var(txn.host) -m str {every} }}",
        ]
    name = "req.ssl_sni,lower" if s.tls else "var(txn.host)"
    lines += [f"    use_backend {backend_name(r.service)} if {{ {name} -m str {' '.join(r.names)} }}" for r in s.rooms]
    for r in s.rooms:
        lines += [
            "",
            f"backend {backend_name(r.service)}",
            f"    mode {'tcp' if s.tls else 'http'}",
            f"    server endpoint {r.listen} send-proxy-v2",
        ]
    return "\n".join(lines) + "\n"
