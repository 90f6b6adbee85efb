"""Is a store fit to hold GCS state? Pure judgements of what ``INFO`` and a probe showed.

Each check says what is wrong and how to fix it. Errors stop a deploy before any node
starts; warnings are printed. Only ``INFO`` is read (not ``CONFIG``), because managed
Redis services and restricted ACL users often may not run ``CONFIG``; ``INFO`` holds
``maxmemory`` and ``maxmemory_policy`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

GiB = 1024**3
RECOMMENDED_MAXMEMORY = GiB

#: What the GCS runs on its namespace (Ray 2.60): hashes, scans, deletes, and INFO.
GCS_COMMANDS = (
    "INFO",
    "HSET",
    "HGET",
    "HMGET",
    "HGETALL",
    "HDEL",
    "HSCAN",
    "HEXISTS",
    "SCAN",
    "DEL",
    "UNLINK",
)


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning", "info"]
    check: str
    message: str


@dataclass(frozen=True)
class StoreFacts:
    """What the store said about itself (``INFO``) and what a probe in a namespace could do."""

    info: dict[str, str]
    shards: int | None = None  # masters serving slots, when cluster mode is on
    denied: tuple[str, ...] = ()  # GCS commands the credentials may not run
    probe_error: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


def _int(info: Mapping[str, str | int], key: str) -> int | None:
    v = info.get(key)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def judge(facts: StoreFacts, require_replica: bool) -> list[Finding]:
    info = facts.info
    out: list[Finding] = []
    version = info.get("valkey_version") or info.get("redis_version") or "unknown"
    server = "Valkey" if "valkey_version" in info else "Redis"
    out.append(Finding("info", "version", f"{server} {version}"))

    if info.get("cluster_enabled") == "1" and (facts.shards or 0) > 1:
        out.append(
            Finding(
                "error",
                "single shard",
                f"the store is a cluster with {facts.shards} shards; Ray's GCS supports one shard only — "
                "use a single-shard cluster or a primary/replica pair",
            )
        )

    role = info.get("role")
    if role and role != "master":
        out.append(
            Finding(
                "error",
                "primary",
                "the address names a replica (read-only); point it at the primary, or at a Sentinel",
            )
        )
    replicas = _int(info, "connected_slaves") or 0
    if role == "master" and replicas < 1:
        msg = (
            "no connected replica: the GCS state is lost with this one server; "
            "add a replica (replicaof) or use 'headway cloud setup'"
        )
        out.append(Finding("error" if require_replica else "warning", "replica", msg))
    elif role == "master":
        out.append(Finding("info", "replica", f"{replicas} connected replica(s)"))

    policy = info.get("maxmemory_policy", "")
    if policy.startswith(("allkeys-", "volatile-")):
        out.append(
            Finding(
                "error",
                "eviction",
                f"maxmemory-policy is {policy}: eviction silently destroys GCS state; "
                "set 'maxmemory-policy noeviction'",
            )
        )
    maxmemory = _int(info, "maxmemory")
    if maxmemory == 0:
        out.append(
            Finding(
                "warning",
                "maxmemory",
                "maxmemory is not set: the store can grow until the machine runs out of memory and "
                "usage alerts have no limit to compare with; set 'maxmemory 1gb' or more",
            )
        )
    elif maxmemory is not None and maxmemory < RECOMMENDED_MAXMEMORY:
        out.append(
            Finding(
                "warning",
                "maxmemory",
                f"maxmemory is {maxmemory / 2**20:.0f} MiB; at least 1 GiB is recommended",
            )
        )

    if facts.denied:
        out.append(
            Finding(
                "error",
                "permissions",
                f"the credentials may not run {', '.join(facts.denied)}, which the GCS needs; grant "
                f"'+info +@hash +scan +del +unlink' on keys '~RAY<namespace>@*' and the key 'DUMMY'",
            )
        )
    elif facts.probe_error:
        out.append(Finding("error", "permissions", facts.probe_error))
    return out


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def usage_percent(info: Mapping[str, str | int]) -> float | None:
    """``used_memory`` as a % of ``maxmemory`` (None when no maxmemory is set)."""
    used, limit = _int(info, "used_memory"), _int(info, "maxmemory")
    if not used or not limit:
        return None
    return 100.0 * used / limit


def share_percent(used: int, maxmemory: int) -> float | None:
    """A namespace's bytes as a % of its store's ``maxmemory`` (None without a maxmemory)."""
    return 100.0 * used / maxmemory if maxmemory else None


def alert_transition(active: bool, percent: float | None, threshold: float) -> Literal["raise", "clear"] | None:
    """Raise once when usage passes the threshold, clear once when it drops below."""
    if percent is None:
        return None
    if not active and percent >= threshold:
        return "raise"
    if active and percent < threshold:
        return "clear"
    return None
