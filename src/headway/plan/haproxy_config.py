"""The HAProxy configuration of a service's ingress, and its runtime changes: pure text.

Why each setting (the failure story, measured with Ray 2.60 in the ingress tests):

- Backends are the Serve proxies of the *workers* only: the head's proxy answers
  ``/-/healthz`` with 200 even when it can reach no replica.
- ``inter 250ms fall 2``: an active check every 250 ms takes a dead node out after
  two misses (~0.5-0.8 s). ``rise 2`` lets a new or returning node in only after two
  good answers, i.e. once its proxy routes to a running replica (503 before).
- ``observe layer4 ... on-error mark-down``: a refused or reset connection marks the
  server down at once, before the next check (passive observation). Layer 7
  observation is not used: one 500 from a user's code must not take a node out.
- ``retries`` + ``option redispatch 1`` + ``retry-on conn-failure empty-response``: a
  request whose connection was refused or reset before any answer goes to another
  server. ``timeout connect 1s`` bounds the wait on a host that vanished silently.
- ``http-request wait-for-body`` for idempotent requests: HAProxy can send a request again
  only if it held the whole of it when it first sent it; without it, a request with a
  body (a PUT, a POST the service marks idempotent) whose headers went out before its body
  arrived was not retried (measured: about one in three such requests in flight on a
  vanished host got 502 instead of the other host's answer). It waits as long as the
  headers may take (``timeout http-request``); a body larger than a buffer (16 kB) is
  still streamed, and not retried. Other requests are streamed as they come (``option
  http-buffer-request`` would hold a slow upload, and give it 408 after that timeout).
- Retrying a 5xx (``500 502 503 504`` in ``retry-on``) is on by default but only for
  idempotent methods (``http-request disable-l7-retry`` for the others): a surviving
  proxy may still route to a dead replica for a moment and answer 500.
- A host that vanishes without a reset (powered off, cable cut) leaves requests in flight
  on it waiting: no answer, no error. Kernel-level limits on the server connections end
  them: TCP keepalive (``option srvtcpka``, a probe after 1 s of silence) and ``tcp-ut``
  on each server line (TCP_USER_TIMEOUT: data, or keepalive probes, unacknowledged for
  2 s). A live host's kernel answers both however busy its process is, so a slow answer
  is never cut, and a server put in maintenance still drains (``on-marked-down
  shutdown-sessions`` would cut those too). The one live case cut: a server that reads
  none of a request body for 2 s (its window shut), which the Serve proxy does not do.
  Measured through a cut link (``bench.vanished_host``, docs/benchmarks.md): an
  idempotent request in flight is retried on another server (it waited the whole
  ``timeout server`` before). ``timeout connect 1s`` bounds a new connection.
- Any other request goes through a twin backend, ``workers_once``: the same servers
  (each *tracks* its twin, so one check and one state), without those limits. Once sent
  it is never sent again, so cutting its connection early gains nothing: HAProxy would
  close the client's connection without an answer (on a reused client connection it
  treats a failed server connection as a keep-alive race the client should retry). It
  waits for its answer instead, and a host that vanished under it gives a clear 504
  after the request timeout. A service marks more requests idempotent by path
  (``endpoint.idempotent_paths``).
- ``option idle-close-on-response``: on a reload the old process answers the next
  request of each idle keep-alive connection (with ``Connection: close``) instead of
  closing it under a client that is sending (measured: 3 of ~1,100 requests failed
  during a reload without it). ``hard-stop-after`` bounds how long it lingers.
- Logs (``logs/haproxy.log``) hold only abnormal requests (``dontlog-normal``):
  errors, timeouts, retried or redispatched ones; never a header, so never the token.
- Each response is counted inside HAProxy by exact code and latency (``haproxy_counts``).
- Server slots are pre-declared so that nodes added, replaced or removed are applied
  through the runtime API (admin socket) without restarting HAProxy. A service's table
  comes in blocks of ``SLOT_BLOCK`` and grows by a seamless reload when its backends (a
  rollout's two clusters together) outnumber it, up to ``MAX_SLOTS``. An empty slot costs
  a line of config and no check; each backend costs a health check every 250 ms from each
  endpoint instance (256 workers: ~1,000 small requests/s on the ingress host, 4/s on each
  worker's proxy; ``HEADWAY_MAX_WORKERS`` says how many one service may have).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from headway.plan import haproxy_counts, haproxy_grpc, haproxy_limits

#: A slot table grows in blocks of this many servers.
SLOT_BLOCK = 16
#: The most one table holds: a service's most workers (``spec_base.MAX_WORKERS``, the
#: ceiling of its setting) beside as many of a rollout's new cluster.
MAX_SLOTS = 2048
BACKEND = "workers"
#: The twin of ``BACKEND`` that requests which must not be sent twice go through.
ONCE_BACKEND = "workers_once"
IDEMPOTENT = "GET HEAD OPTIONS PUT DELETE TRACE"
NOBODY = 65534  # the unprivileged uid and gid HAProxy runs as once its listeners are bound
DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_KEEP_ALIVE_S = 60.0
#: How long a client may take to send a request's headers (and an idempotent one's body).
HTTP_REQUEST_TIMEOUT_S = 10
#: A server connection silent this long is probed (TCP keepalive), twice, this far apart.
VANISHED_PROBE_S = 1
#: Data a server host has not acknowledged for this long: the host is gone (TCP_USER_TIMEOUT;
#: also a server that stops reading a request body this long, its window shut). With it set,
#: the kernel also ends a connection whose keepalive probes go unanswered this long after
#: the last packet received, whatever the probe count.
VANISHED_UNACKED_S = 2
#: On every server line, not ``default-server``: HAProxy 2.8.25 does not pass ``tcp-ut`` down
#: from ``default-server`` (strace: no TCP_USER_TIMEOUT on the server connections), which left
#: a request sent on a pooled connection to a vanished host retransmitting for ~8 s.
SERVER_TCP_UT = f"tcp-ut {VANISHED_UNACKED_S}s"


@dataclass(frozen=True)
class IngressSettings:
    bind: str
    port: int
    stats_socket: str
    #: the bearer tokens the endpoint accepts (the current one, and a rotated-out one for
    #: its grace period); none: the endpoint is open
    tokens: tuple[str, ...] = field(default=(), repr=False)
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    keep_alive_timeout_s: float = DEFAULT_KEEP_ALIVE_S
    retry_5xx_idempotent: bool = True
    check_interval_ms: int = 250
    fall: int = 2
    rise: int = 2
    retries: int = 3
    # During a rollout: the two clusters' servers share the traffic by weight (round robin
    # follows weights; leastconn sends an idle service's every request to the heaviest
    # server), and every request is logged, so each version's latency can be read.
    weighted: bool = False
    # The endpoints on several hosts: each binds the moving address even while another
    # host holds it (``transparent``: IP_TRANSPARENT), so it answers the moment the
    # address arrives.
    freebind: bool = False
    # Started as root (to bind, and ``transparent``), it then runs as nobody: a flaw in the
    # endpoint must not hand out root on the ingress host.
    unprivileged: bool = False
    # Limits at the door (the service's ``endpoint:`` block; rules in ``haproxy_limits``).
    max_body_bytes: int | None = None
    rate_per_s: float | None = None
    rate_burst: int = 0
    retry_budget_percent: int = haproxy_limits.DEFAULT_RETRY_BUDGET_PERCENT
    # HTTPS: the certificate chain and key in one PEM file (HAProxy's ``crt``), and an id of
    # its content (a new certificate is a new config: a seamless reload puts it in place).
    tls_pem: str | None = None
    tls_id: str = ""
    # The names it serves (the Host header; with TLS the SNI too); any other gets 421.
    hostnames: tuple[str, ...] = ()
    # Behind a shared port's door (``haproxy_door``): a private listener instead of
    # bind:port, whose connections open with the PROXY protocol (the client's address).
    listen: str | None = None
    # gRPC to the workers' Serve gRPC proxies (``haproxy_grpc``), for a service with grpc_options.
    grpc: bool = False
    # Path prefixes whose requests are idempotent whatever their method.
    idempotent_paths: tuple[str, ...] = ()


def request_timeout_s(*given: float | None) -> float:
    """The first timeout given (the endpoint's own, then the Serve config's), else 60 s."""
    return next((t for t in given if t), DEFAULT_REQUEST_TIMEOUT_S)


def slot_name(i: int) -> str:
    return f"s{i + 1}"


def named_slots(slots: list[str | None]) -> list[tuple[str, str | None]]:
    """Each slot's server name beside its address (or None)."""
    return [(slot_name(i), addr) for i, addr in enumerate(slots)]


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


def _tls(s: IngressSettings) -> str:
    """The bind's TLS options: TLS 1.2 and up, HTTP/2 or HTTP/1.1 as the client's ALPN
    asks (the backends get HTTP/1.1 either way); no plain HTTP on the port."""
    if s.tls_pem is None:
        return ""
    return f" ssl crt {s.tls_pem} alpn h2,http/1.1 ssl-min-ver TLSv1.2  # certificate {s.tls_id}"


def _bind(s: IngressSettings) -> str:
    if s.listen is not None:
        return f"    bind {s.listen} accept-proxy{_tls(s)}"
    return f"    bind {s.bind}:{s.port}{' transparent' if s.freebind else ''}{_tls(s)}"


def _names(s: IngressSettings) -> list[str]:
    """421 Misdirected Request for a name the service does not claim (a client that asks
    the shared port for another service's name, or none)."""
    if not s.hostnames:
        return []
    names = " ".join(s.hostnames)
    rules = [f"    http-request deny deny_status 421 unless {{ req.hdr(host),field(1,:),lower -m str {names} }}"]
    if s.tls_pem is not None:
        rules.append(f"    http-request deny deny_status 421 unless {{ ssl_fc_sni,lower -m str {names} }}")
    return rules


def render(
    settings: IngressSettings,
    slots: list[str | None],
    weights: dict[str, int] | None = None,
    grpc_of: dict[str, str] | None = None,
) -> str:
    """The whole config; ``slots[i]`` is the ``ip:port`` of server ``s<i+1>`` or None (unused);
    ``weights``: a server's weight by address (during a rollout); ``grpc_of``: each
    backend's gRPC address (a service with gRPC)."""
    s = settings
    balance = "roundrobin" if s.weighted else "leastconn"  # why: ``IngressSettings.weighted``
    retry_on = "conn-failure empty-response junk-response"
    if s.retry_5xx_idempotent:
        retry_on += " 500 502 503 504"
    lines = [
        "global",
        "    maxconn 4096",
        "    log stdout format raw local0",
        f"    stats socket {s.stats_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "    tune.stick-counters 6",  # sc0-sc2: the counts; sc3-sc4: the rate limit; sc5: the retry budget
        f"    hard-stop-after {_ms(max(s.request_timeout_s, s.keep_alive_timeout_s) + 15)}",
        *([f"    uid {NOBODY}", f"    gid {NOBODY}"] if s.unprivileged else []),
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        *([] if s.weighted else ["    option dontlog-normal"]),  # only what went wrong: errors, timeouts, retries
        "    option dontlognull",
        "    option idle-close-on-response",  # a reload answers the next request before closing
        "    timeout connect 1s",
        f"    timeout client {_ms(max(s.request_timeout_s, s.keep_alive_timeout_s))}",
        f"    timeout server {_ms(s.request_timeout_s)}",
        f"    timeout http-request {HTTP_REQUEST_TIMEOUT_S}s",
        f"    timeout http-keep-alive {_ms(s.keep_alive_timeout_s)}",
        "    timeout queue 10s",
        "    timeout check 1s",
        "    option srvtcpka",  # with tcp-ut below: a server host that vanished is given up in ~3 s
        f"    srvtcpka-idle {VANISHED_PROBE_S}s",
        f"    srvtcpka-intvl {VANISHED_PROBE_S}s",
        "    srvtcpka-cnt 2",
        f"    retries {s.retries}",
        "    option redispatch 1",
        f"    retry-on {retry_on}",
        "",
        "frontend endpoint",
        _bind(s),
        *haproxy_counts.request_rules(),
        *_names(s),
    ]
    if s.tokens:
        bearer = "req.hdr(authorization) -m str " + " ".join(f'"Bearer {t}"' for t in s.tokens)
        lines.append(f"    http-request deny deny_status 401 unless {{ {bearer} }}")
    lines += haproxy_limits.request_rules(bool(s.tokens), s.max_body_bytes, s.rate_per_s, s.rate_burst)
    lines += haproxy_limits.retry_budget_rules(s.retry_budget_percent)
    if s.tokens:
        lines.append("    http-request del-header authorization")  # the token is the endpoint's, not the app's
    lines += [
        f"    acl hw_idempotent method {IDEMPOTENT}",
        *([f"    acl hw_idempotent path_beg {' '.join(s.idempotent_paths)}"] if s.idempotent_paths else []),
        # A body held whole (up to a buffer) can be sent again: see the module's docstring.
        f"    http-request wait-for-body time {HTTP_REQUEST_TIMEOUT_S}s if hw_idempotent",
        "    http-request disable-l7-retry unless hw_idempotent",
        *haproxy_counts.response_rules(),
        *haproxy_limits.retry_budget_count(),
        *([haproxy_grpc.frontend_rule()] if s.grpc else []),
        f"    use_backend {ONCE_BACKEND} unless hw_idempotent",
        f"    default_backend {BACKEND}",
        "",
        *haproxy_counts.tables(),
        *haproxy_limits.tables(bool(s.tokens), s.rate_per_s),
        "",
        f"backend {BACKEND}",
        f"    balance {balance}",
        "    option httpchk GET /-/healthz",
        "    http-check expect status 200",
        "    http-reuse safe",
        f"    default-server inter {s.check_interval_ms}ms fastinter {s.check_interval_ms}ms "
        f"downinter {s.check_interval_ms * 2}ms fall {s.fall} rise {s.rise} "
        f"observe layer4 error-limit 1 on-error mark-down",
    ]
    for i, addr in enumerate(slots):
        if addr:
            lines.append(f"    server {slot_name(i)} {addr} check {SERVER_TCP_UT}{_weight(weights, addr)}")
        else:
            lines.append(f"    server {slot_name(i)} 127.0.0.1:9 check {SERVER_TCP_UT} disabled")  # filled at runtime
    lines += ["", f"backend {ONCE_BACKEND}", f"    balance {balance}", "    no option srvtcpka", "    http-reuse safe"]
    lines += [
        f"    server {slot_name(i)} {addr or '127.0.0.1:9'} track {BACKEND}/{slot_name(i)}{_weight(weights, addr)}"
        for i, addr in enumerate(slots)
    ]
    if s.grpc:
        lines += haproxy_grpc.backend(BACKEND, named_slots(slots), grpc_of or {}, balance, weights, SERVER_TCP_UT)
    return "\n".join(lines) + "\n"


def _weight(weights: dict[str, int] | None, addr: str | None) -> str:
    return f" weight {weights[addr]}" if weights and addr in weights else ""


def empty_slots(count: int = SLOT_BLOCK) -> list[str | None]:
    return [None] * count


def slots_for(backends: int) -> int:
    """The table size that holds ``backends``: whole blocks, at least one."""
    return max(SLOT_BLOCK, -(-backends // SLOT_BLOCK) * SLOT_BLOCK)


def grown(slots: list[str | None], backends: int) -> list[str | None] | None:
    """``slots`` with room for ``backends`` (those staying keep their slots, as in
    ``plan_slots``), or None when it has room already."""
    size = slots_for(backends)
    if size > MAX_SLOTS:
        raise ValueError(f"{backends} worker nodes behind one endpoint; it holds at most {MAX_SLOTS}")
    return slots + [None] * (size - len(slots)) if size > len(slots) else None


def drained(current: list[str | None], addresses: Collection[str]) -> tuple[list[str | None], list[str]]:
    """New slot table and the commands that take ``addresses`` out of rotation now. Their
    slots are freed: a worker that comes back at the same address (its host rebooted, its
    ports free again) comes in as a new backend, down until its checks pass, instead of
    staying in maintenance under an address the table still holds."""
    slots, commands = list(current), []
    for i, addr in enumerate(slots):
        if addr and addr in addresses:
            commands.append(f"set server {BACKEND}/{slot_name(i)} state maint")
            slots[i] = None
    return slots, commands


def plan_slots(current: list[str | None], desired: list[str]) -> tuple[list[str | None], list[str]]:
    """New slot table and the runtime API commands that turn ``current`` into it.

    A backend that stays keeps its slot (its connections and counters); a removed one
    goes to maintenance; a new one takes a free slot, starts *down* and is let in by
    its health checks (``rise``), so no request reaches a proxy that is not ready.
    """
    slots, commands = drained(current, [a for a in current if a and a not in desired])
    for addr in desired:
        if addr in slots:
            continue
        try:
            i = slots.index(None)
        except ValueError:
            raise ValueError(f"more than {len(slots)} worker nodes behind one ingress") from None
        ip, port = addr.rsplit(":", 1)
        name = f"{BACKEND}/{slot_name(i)}"
        commands += [
            f"set server {name} addr {ip} port {port}",
            f"set server {ONCE_BACKEND}/{slot_name(i)} addr {ip} port {port}",  # its state follows
            f"set server {name} health down",
            f"set server {name} state ready",
        ]
        slots[i] = addr
    return slots, commands


def info_pid(show_info: str) -> int | None:
    """The PID in a ``show info`` reply: which process holds the admin socket now (during a
    reload the old one answers on it until the new one has taken the path over)."""
    m = re.search(r"^Pid: (\d+)$", show_info, re.MULTILINE)
    return int(m.group(1)) if m else None


def weight_commands(slots: list[str | None], weights: dict[str, int]) -> list[str]:
    """The runtime API commands that give each server its weight (idempotent), in both
    backends."""
    return [
        f"set weight {backend}/{slot_name(i)} {weights[a]}"
        for i, a in enumerate(slots)
        if a and a in weights
        for backend in (BACKEND, ONCE_BACKEND)
    ]


#: A request's line in HAProxy's HTTP log format: its server, timers and status.
_LOG_LINE = re.compile(rf" (?:{BACKEND}|{ONCE_BACKEND})/(s\d+) -?\d+/-?\d+/-?\d+/-?\d+/(\d+) (\d{{3}}) ")


def parse_log(lines: Iterable[str]) -> list[tuple[str, int, int]]:
    """(server slot, total time in ms, status) of each request in HTTP log lines."""
    out = []
    for line in lines:
        m = _LOG_LINE.search(line)
        if m:
            out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return out


@dataclass(frozen=True)
class ServerStat:
    slot: str
    status: str  # UP, DOWN, MAINT, "UP 1/2", ...
    address: str
    requests: int
    errors: int  # failed connections + failed responses + denied
    retries: int
    redispatches: int
    hrsp_5xx: int
    last_change_s: int


def parse_stats(text: str) -> list[ServerStat]:
    """Servers of the backend from ``show stat`` (CSV), one per slot: its state, and the
    requests of both its backends (a request that must not be sent twice goes through
    the twin, ``ONCE_BACKEND``)."""
    text = text.lstrip("# ")
    out: dict[str, ServerStat] = {}
    twins: list[ServerStat] = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") not in (BACKEND, ONCE_BACKEND) or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue

        def num(key: str, row: dict = row) -> int:
            v = row.get(key) or "0"
            return int(v) if v.isdigit() else 0

        stat = ServerStat(
            slot=row["svname"],
            status=row.get("status", ""),
            address=row.get("addr", ""),
            requests=num("stot"),
            errors=num("econ") + num("eresp"),
            retries=num("wretr"),
            redispatches=num("wredis"),
            hrsp_5xx=num("hrsp_5xx"),
            last_change_s=num("lastchg"),
        )
        if row["pxname"] == BACKEND:
            out[stat.slot] = stat
        else:
            twins.append(stat)
    for twin in twins:
        if (own := out.get(twin.slot)) is not None:
            counts = {k: getattr(own, k) + getattr(twin, k) for k in _COUNTERS}
            out[twin.slot] = dataclasses.replace(own, **counts)
    return list(out.values())


_COUNTERS = ("requests", "errors", "retries", "redispatches", "hrsp_5xx")


def parse_frontend(text: str) -> dict[str, int]:
    """Requests and responses of the endpoint as clients saw them."""
    text = text.lstrip("# ")
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("svname") == "FRONTEND" and row.get("pxname") == "endpoint":
            return {
                "requests": int(row.get("req_tot") or 0),
                "hrsp_2xx": int(row.get("hrsp_2xx") or 0),
                "hrsp_4xx": int(row.get("hrsp_4xx") or 0),
                "hrsp_5xx": int(row.get("hrsp_5xx") or 0),
            }
    return {}
