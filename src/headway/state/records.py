"""What headway started, as recorded in the state dir's database (``db``).

The record is written before each node is started (write-ahead), so a crashed CLI
leaves a record that names every namespace, process marker and temp dir to remove.
The database is mode 0600: the spec it holds may carry a store password.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from headway.model.errors import InputError
from headway.model.spec import ServiceSpec
from headway.model.states import Event, State
from headway.state import db, series_store


class NodeRecord(BaseModel):
    name: str
    role: Literal["head", "worker"]
    group: str | None = None
    ip: str
    netns: str | None = None
    host: str | None = None  # the machine reached over SSH (ssh provider); ``ip`` is Ray's address
    ports: dict[str, int] = Field(default_factory=dict)
    temp_dir: str
    log: str
    marker: str
    pid: int | None = None
    pid_started: int | None = None  # /proc start time of ``pid``: tells a reused PID apart
    started_at: float = 0.0
    node_id: str | None = None  # Ray's node id once joined; a re-adopted worker keeps it
    config: str | None = None  # digest of the settings it was started with (plan.node_config)
    fenced: bool = False  # every process of it killed: on a real host, the host may take a new node
    store: str | None = None  # a head on the managed store: host:port of the primary it was started with

    @property
    def cluster_id(self) -> str:
        """The service cluster this node belongs to (the first part of its marker)."""
        return self.marker.split("/", 1)[0]


class ProcId(BaseModel):
    """A process on another host: its PID and start time (together, its identity)."""

    pid: int
    pid_started: int | None = None


class IngressRecord(BaseModel):
    """The service's HAProxy: where it listens, which process it is, its server slots.
    With ``on_hosts``, one HAProxy per ingress host (``instances``) behind a moving address."""

    bind: str
    port: int
    config: str
    socket: str
    log: str
    pid: int | None = None
    pid_started: int | None = None
    slots: list[str | None] = Field(default_factory=list)
    settings_digest: str = ""  # of the config without its servers: tells when to reload
    marker: str = ""  # its processes' marker (set at its start: a rollout swaps the cluster under it)
    weights: dict[str, int] = Field(default_factory=dict)  # backend address -> weight, during a rollout
    on_hosts: bool = False  # the endpoint runs on the cloud's ingress hosts, not here
    tls: bool = False  # it serves HTTPS (the spec's endpoint.tls), and only that
    hostnames: list[str] = Field(default_factory=list)  # the names it serves; behind its port's door
    instances: dict[str, ProcId] = Field(default_factory=dict)  # ingress host -> its HAProxy


class RolloutRecord(BaseModel):
    """A rollout in progress: the new version runs as its own cluster (the service record
    ``cluster``) behind this service's endpoint, and takes ``percent`` of its traffic."""

    cluster: str  # the new cluster's record name: ``<service>_r<version>``
    version: int
    from_version: int | None
    percent: int = 0
    step_since: float = Field(default_factory=time.time)
    promoted: bool = False
    paused: str | None = None  # why it is paused (a head down, a server lost), shown by status
    last: str = ""  # the last decision's reason
    window: dict = Field(default_factory=dict)  # the ingress's counters and log offset at the step's start
    history: list[dict] = Field(default_factory=list)  # per step: percent, both versions' numbers, time
    started_at: float = Field(default_factory=time.time)


class ServiceRecord(BaseModel):
    name: str
    cluster_id: str
    mode: str
    state: State = State.STARTING
    reason: str = ""
    gcs_ft: bool = True
    storage_source: Literal["cloud", "spec"] | None = None
    storage_masked: str | None = None
    namespace: str | None = None
    store_user: str | None = None  # this service's own ACL user on the managed store
    node_uid: int | None = None  # the uid and gid its Ray nodes run as (node_user); None: not boxed
    spec: ServiceSpec  # the desired version's spec (typed: validated once, when it was accepted)
    head_ip: str
    gcs_port: int
    dashboard_port: int
    serve_port: int
    working_dir_uri: str | None = None
    apps_digest: str | None = None  # of the Serve config last applied (plan.Observed.apps)
    desired_version: int | None = None  # the version being converged to (versions table)
    running_version: int | None = None  # the last version that reached RUNNING
    nodes: list[NodeRecord] = Field(default_factory=list)
    retired: list[NodeRecord] = Field(default_factory=list)  # dead hosts kept until replaced
    autoscaled: dict[str, list[str]] = Field(default_factory=dict)  # group -> its nodes, as the autoscaler chose
    waiting: list[str] = Field(default_factory=list)  # resource requests no node had room for, last seen
    ingress: IngressRecord | None = None
    parent: str | None = None  # a rollout's new cluster: the service whose endpoint fronts it
    rollout: RolloutRecord | None = None
    events: list[Event] = Field(default_factory=list)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def service(self) -> str:
        """The service this cluster runs (a rollout's new cluster runs its parent's)."""
        return self.parent or self.name

    @property
    def head(self) -> NodeRecord | None:
        return next((n for n in self.nodes if n.role == "head"), None)

    @property
    def workers(self) -> list[NodeRecord]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head_ip}:{self.dashboard_port}"

    @property
    def ray_token(self) -> str | None:
        return db.get_token(ray_token_scope(self.name))

    @property
    def gcs_address(self) -> str:
        return f"{self.head_ip}:{self.gcs_port}"

    @property
    def endpoint(self) -> str | None:
        if self.ingress is None:
            return None
        host = "127.0.0.1" if self.ingress.bind in ("0.0.0.0", "") else self.ingress.bind
        if self.ingress.hostnames:
            host = self.ingress.hostnames[0]
        return f"{'https' if self.ingress.tls else 'http'}://{host}:{self.ingress.port}"

    def proxy_url(self, node: NodeRecord) -> str:
        port = node.ports.get("proxy") or self.serve_port
        return f"http://{node.ip}:{port}"


def ray_token_scope(name: str) -> str:
    """The db scope of a service's Ray token (Ray's own authentication of its cluster)."""
    return f"ray:{name}"


def load(name: str, home: Path | None = None) -> ServiceRecord | None:
    """The service's record with its whole timeline, or None."""
    with db.connect(home) as conn:
        row = conn.execute("SELECT record FROM services WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        events = conn.execute("SELECT body FROM events WHERE service = ? ORDER BY id", (name,)).fetchall()
    rec = ServiceRecord.model_validate_json(row[0])
    rec.events = [Event.model_validate_json(e[0]) for e in events]
    return rec


def existing(name: str) -> ServiceRecord:
    """The service's record; a name no service has is the caller's mistake."""
    rec = load(name)
    if rec is None:
        raise InputError(f"no service named {name}; 'headway list' shows the services")
    return rec


def save(rec: ServiceRecord) -> None:
    """Write the record and append the events the database does not have yet, in one
    transaction. Events are append-only: the record carries them all, the first
    ``count`` of them are already stored."""
    rec.updated_at = time.time()
    body = rec.model_dump_json(exclude={"events"})
    with db.connect(write=True) as conn:
        conn.execute(
            "INSERT INTO services (name, record, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            (rec.name, body, rec.updated_at),
        )
        stored = conn.execute("SELECT COUNT(*) FROM events WHERE service = ?", (rec.name,)).fetchone()[0]
        conn.executemany(
            "INSERT INTO events (service, at, body) VALUES (?, ?, ?)",
            [(rec.name, e.at, e.model_dump_json()) for e in rec.events[stored:]],
        )


def remove(name: str) -> None:
    """Forget the service: its record, timeline, endpoint token and handed-over secrets."""
    with db.connect(write=True) as conn:
        conn.execute("DELETE FROM services WHERE name = ?", (name,))
        conn.execute("DELETE FROM events WHERE service = ?", (name,))
        scopes = (f"service:{name}", f"service:{name}{db.PREVIOUS}", ray_token_scope(name))
        conn.execute("DELETE FROM tokens WHERE scope IN (?, ?, ?)", scopes)
        conn.execute("DELETE FROM secrets WHERE service = ?", (name,))
        conn.execute("DELETE FROM versions WHERE service = ?", (name,))
    series_store.forget(name)


def names(home: Path | None = None) -> list[str]:
    with db.connect(home) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM services ORDER BY name")]


def all_records(home: Path | None = None) -> list[ServiceRecord]:
    return [rec for name in names(home) if (rec := load(name, home)) is not None]
