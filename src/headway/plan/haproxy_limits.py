"""Limits at a service's endpoint (its ``endpoint:`` block), as HAProxy rules: pure text.

- ``max_body_bytes``: a stated body length above it is refused with 413 before anything
  is read; a body that does not state its length (chunked) with 411, since its size is
  known only once it has been forwarded.
- ``rate_limit``: two sliding windows per key in stick tables, one second (the rate plus
  the burst) and ten seconds (ten times the rate plus the burst: the average). The key is
  the bearer token's SHA-1 (never the token: the tables are readable on the admin socket),
  or the client's address on an open endpoint. The rules come after the token check, so a
  wrong token is refused first and spends no one's budget; refused requests count, so a
  client that keeps on stays refused until it slows down. Uses sticky counters 3 and 4
  (0-2 are the request counts', ``haproxy_counts``).
- ``retry_budget_percent``: a request is retried on another server (a 5xx of an idempotent
  request, a connection that broke before an answer) only while the requests that failed
  in the last 10 s (a 5xx after any retries, the endpoint's own included) stay under that
  share of all its requests, plus ``RETRY_FLOOR``; beyond, a failure goes back as it is.
  While retries pay off (a worker died, the others answer) the failures stay few and
  every retry is made; a service that fails whatever the server gets each request once,
  not 1 + ``retries`` times. (HAProxy 2.8 cannot count the retries themselves: its
  ``txn.conn_retries`` came in 2.9.) A connection refused is still retried: it cost the
  server nothing. Sticky counter 5.
"""

from __future__ import annotations

import math

RATE_SHORT, RATE_LONG = "hw_rate_1s", "hw_rate_10s"
RETRY_BUDGET = "hw_retry_budget"
#: Failures allowed in any 10 s whatever the share: a quiet service's failed requests are
#: retried too.
RETRY_FLOOR = 10
DEFAULT_RETRY_BUDGET_PERCENT = 20


def retry_budget_rules(percent: int) -> list[str]:
    """The frontend's budget check, after the token check and the limits (a refused
    request spends none of it)."""
    return [
        f"    http-request track-sc5 int(0) table {RETRY_BUDGET}",
        f"    http-request set-var(txn.hw_budget) sc_http_req_rate(5),mul({percent}),div(100),add({RETRY_FLOOR})",
        "    http-request disable-l7-retry if { sc_gpc_rate(0,5),sub(txn.hw_budget) gt 0 }",
    ]


def retry_budget_count() -> list[str]:
    """Every failed answer spends the budget (HAProxy's own 5xx included)."""
    return ["    http-after-response sc-inc-gpc(0,5) if { status ge 500 }"]


def request_rules(tokens: bool, max_body_bytes: int | None, rate_per_s: float | None, burst: int) -> list[str]:
    """The frontend's limit rules (after the token check, before the token is removed)."""
    out = []
    if rate_per_s is not None:
        key = "req.hdr(authorization),sha1,hex" if tokens else "src"
        short = math.ceil(rate_per_s) + burst  # within any second
        long = math.ceil(rate_per_s * 10) + burst  # within any 10 s: the average
        out += [
            f"    http-request track-sc3 {key} table {RATE_SHORT}",
            f"    http-request track-sc4 {key} table {RATE_LONG}",
            '    http-request deny status 429 content-type text/plain string "rate limit exceeded" '
            f"hdr Retry-After 1 if {{ sc_http_req_rate(3) gt {short} }} || {{ sc_http_req_rate(4) gt {long} }}",
        ]
    if max_body_bytes is not None:
        out += [
            f"    http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt {max_body_bytes} }}",
            "    http-request return status 411 content-type text/plain "
            'string "a request body must state its length (Content-Length)" '
            "if { req.hdr(transfer-encoding) -m found }",
        ]
    return out


def tables(tokens: bool, rate_per_s: float | None) -> list[str]:
    """The retry budget's table, and the two rate tables when there is a rate limit
    (storage-only backends)."""
    budget = [
        "",
        f"backend {RETRY_BUDGET}",
        "    stick-table type integer size 1 expire 1m store http_req_rate(10s),gpc_rate(1,10s)",
    ]
    if rate_per_s is None:
        return budget
    kind = "string len 40" if tokens else "ipv6"
    return budget + [
        "",
        f"backend {RATE_SHORT}",
        f"    stick-table type {kind} size 100k expire 2s store http_req_rate(1s)",
        "",
        f"backend {RATE_LONG}",
        f"    stick-table type {kind} size 100k expire 20s store http_req_rate(10s)",
    ]
