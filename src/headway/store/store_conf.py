"""The managed store's configuration files as text: pure renders of what each process
is (primary or replica, Sentinel) and how it listens — checked by unit tests, written by
``cloud``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

SENTINEL_NAME = "hwstore"


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str


class StoreProcess(BaseModel):
    role: str  # primary | replica | sentinel (as set up: a failover swaps primary and replica)
    port: int
    host: str | None = None  # a store host of the cloud config; None: this machine
    pid: int | None = None
    pid_started: int | None = None
    data_dir: str
    conf: str
    log: str
    marker: str


def listen(proc: StoreProcess, tls: TlsFiles | None) -> list[str]:
    """The port lines: plain TCP, or TLS only (no plain port at all) with the cloud's
    certificate; replication and Sentinel's links speak TLS too. Clients authenticate by
    password, not by certificate."""
    if tls is None:
        return [f"port {proc.port}"]
    return [
        "port 0",
        f"tls-port {proc.port}",
        f"tls-cert-file {tls.cert}",
        f"tls-key-file {tls.key}",
        f"tls-ca-cert-file {tls.ca}",
        "tls-auth-clients no",
        "tls-replication yes",
    ]


def pidfile(proc: StoreProcess) -> str:
    """Where the process writes its PID: how one its host started at boot is found again
    (Redis's process title overwrites the environment that holds headway's marker)."""
    return f"{proc.data_dir}/server.pid"


def store(
    proc: StoreProcess,
    bind: list[str],
    pw: str,
    maxmemory: str,
    primary: tuple[str, int] | None,
    announce: str,
    tls: TlsFiles | None,
) -> str:
    """A primary (``primary`` None) or a replica of the primary at ``primary`` (host, port);
    ``announce``: the process's own address as the nodes reach it."""
    lines = [
        *listen(proc, tls),
        f"bind {' '.join(bind)}",
        "protected-mode yes",
        f"dir {proc.data_dir}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        f"requirepass {pw}",
        f"masterauth {pw}",
        f"maxmemory {maxmemory}",
        "maxmemory-policy noeviction",
        "daemonize no",
        f"pidfile {pidfile(proc)}",
        f"logfile {proc.log}",
        # Sentinel hands out what replicas announce: the address the nodes can reach.
        f"replica-announce-ip {announce}",
    ]
    if primary is not None:
        lines.append(f"replicaof {primary[0]} {primary[1]}")
        lines.append("replica-read-only yes")
    return "\n".join(lines) + "\n"


def sentinel(
    proc: StoreProcess,
    bind: list[str],
    pw: str,
    primary: tuple[str, int],
    tls: TlsFiles | None,
    quorum: int = 1,
    announce: str | None = None,
) -> str:
    """One Sentinel on this machine (quorum 1), or one of three on the store hosts (quorum
    2, each announcing its host's address): the primary is declared down after 1 s."""
    lines = [
        *listen(proc, tls),
        f"bind {' '.join(bind)}",
        f"dir {proc.data_dir}",
        "daemonize no",
        f"pidfile {pidfile(proc)}",
        f"logfile {proc.log}",
        f"requirepass {pw}",
        *([f"sentinel announce-ip {announce}"] if announce else []),
        f"sentinel monitor {SENTINEL_NAME} {primary[0]} {primary[1]} {quorum}",
        f"sentinel auth-pass {SENTINEL_NAME} {pw}",
        f"sentinel down-after-milliseconds {SENTINEL_NAME} 1000",
        f"sentinel failover-timeout {SENTINEL_NAME} 5000",
        f"sentinel parallel-syncs {SENTINEL_NAME} 1",
    ]
    return "\n".join(lines) + "\n"
