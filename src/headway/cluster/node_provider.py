"""What a node provider does: the contract ``LocalProvider`` (network namespaces or loopback
ports on this machine) and ``SshProvider`` (real hosts over SSH) implement, and what every
lifecycle step is written against — never against one of them by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from headway.cluster.ray_node import NodeLaunch, NodePorts
from headway.state.records import NodeRecord, ServiceRecord


class NodeProvider(Protocol):
    mode: str
    shares_clock: bool  # the nodes' clock is the control host's (times in Ray's tables compare)

    @property
    def loopback(self) -> bool: ...

    def plan_head(self) -> tuple[str, dict[str, int]]:
        """The head's address and ports: the one address every worker will keep using."""

    def plan_worker(self, taken_ips: set[str]) -> tuple[str, dict[str, int]]: ...

    @staticmethod
    def node_ports(node: NodeRecord) -> NodePorts: ...

    def new_node(
        self, rec: ServiceRecord, name: str, role: str, ip: str, ports: dict[str, int], group: str | None = None
    ) -> NodeRecord:
        """A record for a node about to start (written before its process exists)."""

    def check_ready(self, progress: Callable[[str], None] = ...) -> None:
        """Raise when the hosts cannot take nodes (a bootstrap mismatch, a host down)."""

    def distribute(self, local_file: str, node: NodeRecord, gid: int | None = None, read_at: str | None = None) -> None:
        """Make a file the node reads by path (``read_at``, default the same path as here)
        exist on its host, readable by group ``gid`` (the service's) where the node is
        boxed in."""

    def can_sandbox(self, node: NodeRecord) -> bool:
        """Whether the node's host can run it as the service's own user (``node_user``)."""

    def start(self, node: NodeRecord, launch: NodeLaunch) -> int: ...

    def pids(self, node: NodeRecord) -> list[int]: ...

    def alive(self, node: NodeRecord) -> bool: ...

    def alive_or_unknown(self, node: NodeRecord) -> bool | None:
        """``alive``, or None when the node's host did not answer the look: the watchdog
        must not take one late answer from a loaded host for a crash."""

    def kill(self, node: NodeRecord, grace_s: float = 0.0) -> None:
        """Crash or fence the host: every process of it."""

    def remove(self, node: NodeRecord) -> None:
        """Kill and remove every trace of the host."""

    def log_tail(self, node: NodeRecord, lines: int) -> str:
        """The last lines of the node's log (its ``ray start`` output), wherever it lives."""

    def set_priority(self, node: NodeRecord, nice: int) -> None:
        """Set the niceness of every process of the node (a head back from recovery)."""

    def log_since(self, node: NodeRecord, offset: int | None) -> tuple[str, int]:
        """What the node's log gained past byte ``offset`` (None: nothing, only where it
        ends now), and the new offset: following a log wherever it lives."""

    def read_logs(self, node: NodeRecord, offsets: dict[str, int] | None) -> dict[str, tuple[str, int, float]]:
        """The node's log files (its own, Ray's Serve logs): the last part of each (``offsets``
        None) or what each gained past its offset; path -> (text, end offset, mtime)."""

    def leftover_namespaces(self, service: str, keep: set[str]) -> list[str]: ...

    def remove_namespace(self, name: str) -> None: ...
