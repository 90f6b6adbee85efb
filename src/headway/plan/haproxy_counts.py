"""What the endpoint counts per request, inside HAProxy: exact status codes and a latency
histogram per backend server, as config text and as parsed counters.

Why stick tables: HAProxy's own statistics give only status classes (``hrsp_4xx``) and
an average time, and its Prometheus exporter no histogram; logging every request would
cost a write per request. Stick tables count inside HAProxy, are read with ``show table``
on the admin socket the controller already talks to (here or over SSH), and cost a few
integer increments per request. Three tables:

- ``hw_latency`` (key: the server's ``ip:port``, which outlives a slot's reuse): one
  counter per latency bucket (cumulative: a request increments every bucket it fits),
  the sum of the latencies in ms, the count.
  The latency is from the request's arrival to the response headers of the server.
- ``hw_codes`` (key: ``<ip:port>/<status>``): responses of each server by exact code.
- ``hw_own`` (one key): the responses the endpoint itself made (a refused token, no
  server left, a timeout), by code: no server answered them, so they belong to no version.

A reload starts a new process with empty tables: the counters go back to zero, which
Prometheus reads as a counter reset. Counters are 32 bits: the latency sum in ms wraps
after 49 days of summed latency (at 100 req/s of 50 ms: ten days), also read as a reset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Upper bounds of the latency buckets, in ms (Prometheus's ``le``; +Inf is the count).
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
#: The codes HAProxy answers with itself (anything else counts under ``other``).
OWN_CODES = (400, 401, 403, 404, 405, 408, 410, 413, 421, 425, 429, 500, 501, 502, 503, 504)
LATENCY_TABLE = "hw_latency"
CODES_TABLE = "hw_codes"
OWN_TABLE = "hw_own"
_SUM = len(BUCKETS_MS)
_COUNT = _SUM + 1
_OTHER = len(OWN_CODES)


def tables() -> list[str]:
    """The three ``backend`` sections that hold the tables (no servers: storage only)."""
    return [
        f"backend {LATENCY_TABLE}",
        f"    stick-table type string len 48 size 1k store gpc({_COUNT + 1})",
        "",
        f"backend {CODES_TABLE}",
        "    stick-table type string len 52 size 8k store gpc0",
        "",
        f"backend {OWN_TABLE}",
        f"    stick-table type integer size 1 store gpc({_OTHER + 1})",
    ]


def request_rules() -> list[str]:
    """The frontend's first rules (before its access rules, so a refused request counts)."""
    return [
        "    http-request set-var(txn.hw_t0) date(0,ms)",
        f"    http-request track-sc2 int(0) table {OWN_TABLE}",
    ]


def response_rules() -> list[str]:
    """The frontend's counting of each response."""
    lines = [
        # A server's response: its latency and its exact code, by server.
        "    http-response set-var(txn.hw_served) bool(true)",
        "    http-response set-var(txn.hw_ms) date(0,ms),sub(txn.hw_t0)",
        "    http-response set-var(txn.hw_code) status",
        "    http-response set-var(txn.hw_port) bc_dst_port",
        "    http-response set-var(txn.hw_srv) bc_dst,concat(:,txn.hw_port,)",
        "    http-response set-var(txn.hw_key) var(txn.hw_srv),concat(/,txn.hw_code,)",
        f"    http-response track-sc0 var(txn.hw_srv) table {LATENCY_TABLE}",
        f"    http-response track-sc1 var(txn.hw_key) table {CODES_TABLE}",
        "    http-response sc-inc-gpc0(1)",
    ]
    lines += [
        f"    http-response sc-inc-gpc({i},0) if {{ var(txn.hw_ms) -m int le {b} }}" for i, b in enumerate(BUCKETS_MS)
    ]
    lines += [
        f"    http-response sc-add-gpc({_SUM},0) var(txn.hw_ms)",
        f"    http-response sc-inc-gpc({_COUNT},0)",
    ]
    # The endpoint's own answers: every response that did not come from a server.
    own = "!{ var(txn.hw_served) -m found }"
    lines += [f"    http-after-response sc-inc-gpc({i},2) if {own} {{ status {c} }}" for i, c in enumerate(OWN_CODES)]
    known = " ".join(str(c) for c in OWN_CODES)
    lines.append(f"    http-after-response sc-inc-gpc({_OTHER},2) if {own} !{{ status {known} }}")
    return lines


@dataclass
class Counts:
    """One instance's (or several added up) counters, by backend address (``ip:port``)."""

    codes: dict[str, dict[str, int]] = field(default_factory=dict)  # address -> code -> responses
    buckets: dict[str, list[int]] = field(default_factory=dict)  # address -> cumulative count per bucket
    sum_ms: dict[str, int] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    own: dict[str, int] = field(default_factory=dict)  # code ("other" too) -> responses

    def add(self, other: Counts) -> None:
        for addr, codes in other.codes.items():
            _add_into(self.codes.setdefault(addr, {}), codes)
        for addr, b in other.buckets.items():
            mine = self.buckets.get(addr, [0] * len(BUCKETS_MS))
            self.buckets[addr] = [x + y for x, y in zip(mine, b, strict=True)]
        _add_into(self.sum_ms, other.sum_ms)
        _add_into(self.count, other.count)
        _add_into(self.own, other.own)


def _add_into(into: dict[str, int], more: dict[str, int]) -> None:
    for k, n in more.items():
        into[k] = into.get(k, 0) + n


_KEY = re.compile(r"\bkey=(\S+)")
_GPC = re.compile(r"\bgpc(\d+)=(\d+)")


def _entries(text: str) -> list[tuple[str, dict[int, int]]]:
    """``show table`` lines: each entry's key and its counters by index."""
    out = []
    for line in text.splitlines():
        m = _KEY.search(line)
        if m:
            out.append((m.group(1), {int(i): int(v) for i, v in _GPC.findall(line)}))
    return out


def parse(latency: str, codes: str, own: str) -> Counts:
    """The replies to ``show table`` of the three tables (``commands``)."""
    c = Counts()
    for addr, g in _entries(latency):
        c.buckets[addr] = [g.get(i, 0) for i in range(len(BUCKETS_MS))]
        c.sum_ms[addr] = g.get(_SUM, 0)
        c.count[addr] = g.get(_COUNT, 0)
    for key, g in _entries(codes):
        addr, _, code = key.rpartition("/")
        if addr and code.isdigit():
            c.codes.setdefault(addr, {})[code] = g.get(0, 0)
    for _, g in _entries(own):
        for i, code in enumerate((*OWN_CODES, "other")):
            if g.get(i):
                c.own[str(code)] = g[i]
    return c


def commands() -> list[str]:
    return [f"show table {t}" for t in (LATENCY_TABLE, CODES_TABLE, OWN_TABLE)]
