"""Ray nodes on real machines, over SSH: the ``ssh`` provider.

Same contract as ``LocalProvider`` (plan, start, alive, pids, kill, remove), one Ray node
per host. A node's processes carry the same ``HEADWAY_NODE`` marker as locally and are
found and killed on the host by that marker, never by name. Nothing is installed on a
host: its bootstrap venv (same Python and Ray as headway's) runs ``ray start``.

The head's address: in ``same_host`` mode the head is restarted on the host it ran on —
a dead host has to come back (reboot) before the head can. In ``floating`` mode the head
address is the operator's floating IP or DNS name, and ``move_hook`` moves it to the head
candidate headway picks (the old host if it answers, else a standby); the hook is the
fence of an unreachable old host.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from headway.cluster import firewall, node_logs
from headway.cluster.local_provider import NETNS_NODE_PORTS, LocalProvider, ProviderError, free_ports
from headway.cluster.package import package_home
from headway.cluster.ray_node import DASHBOARD_PORT, GCS_PORT, GRPC_PORT, SERVE_PORT, NodeLaunch
from headway.hosts import remote, ssh, vip
from headway.model import cloud_config
from headway.model.cloud_config import SshCloud, SshError, SshHost
from headway.state.records import NodeRecord, ServiceRecord, all_records
from headway.store import store_procs
from headway.system import node_user, paths


class SshProvider:
    mode = "ssh"
    shares_clock = False  # hosts' clocks may differ from the control host's
    loopback = False

    def __init__(self, cfg: SshCloud):
        self.cfg = cfg
        ssh.configure_host_keys(cfg)
        self._cpus: dict[str, int] = {}
        # Nodes planned by this provider but not yet saved in a record (a batch of workers).
        self._planned: list[tuple[str, dict[str, int]]] = []

    @property
    def floating(self) -> bool:
        return self.cfg.head_address.mode == "floating"

    # -- planning ------------------------------------------------------------------------
    def plan_head(self) -> tuple[str, dict[str, int]]:
        default = {
            "gcs": GCS_PORT,
            "dashboard": DASHBOARD_PORT,
            "client_server": firewall.CLIENT_SERVER_PORT,
            "proxy": SERVE_PORT,
            "grpc": GRPC_PORT,
        } | NETNS_NODE_PORTS
        if self.floating:
            assert self.cfg.head_address.address is not None
            return self.cfg.head_address.address, default
        return self._plan(self.cfg.heads(), set(), default, "head candidate")

    def plan_worker(self, taken_ips: set[str]) -> tuple[str, dict[str, int]]:
        """A worker host with room for one more node (``max_nodes``, default its CPUs), one
        that holds none of this service's nodes (``taken_ips``) first, the least loaded first:
        a service's replicas spread over distinct hosts before two share one. A dead node's
        host counts it until the node is fenced."""
        return self._plan(
            self.cfg.workers(), taken_ips, NETNS_NODE_PORTS | {"proxy": SERVE_PORT, "grpc": GRPC_PORT}, "worker"
        )

    def _plan(
        self, hosts: list[SshHost], mine: set[str], default: dict[str, int], what: str
    ) -> tuple[str, dict[str, int]]:
        load = placement_load(all_records(), self._planned)
        room = [h for h in hosts if len(load.get(h.address, [])) < self._capacity(h)]
        for h in sorted(room, key=lambda h: (h.address in mine, len(load.get(h.address, [])))):
            if ssh.reachable(h):
                taken = {p for ports in load.get(h.address, []) for p in ports.values()}
                ports = default if not taken & set(default.values()) else _free_ports_for(default, taken)
                self._planned.append((h.address, ports))
                return h.address, ports
        why = f"{', '.join(h.address for h in room)} unreachable" if room else "every one is full (max_nodes)"
        raise ProviderError(
            f"no {what} host has room ({len(hosts)} in the cloud config, {why}); add a host or raise its max_nodes"
        )

    def _capacity(self, h: SshHost) -> int:
        """The Ray nodes a host may carry: its ``max_nodes``, else its CPUs (asked once)."""
        if h.max_nodes:
            return h.max_nodes
        if h.address not in self._cpus:
            try:
                status, out, _ = ssh.run(h, "nproc", timeout_s=ssh.CONNECT_TIMEOUT_S)
            except SshError:
                return 1
            self._cpus[h.address] = int(out) if status == 0 and out.strip().isdigit() else 1
        return self._cpus[h.address]

    node_ports = staticmethod(LocalProvider.node_ports)

    def _head_host(self, rec: ServiceRecord) -> str:
        """Where a (new) head runs: in floating mode the old head's host if it answers,
        else the first head candidate that answers."""
        old = rec.head.host if rec.head is not None else None
        order = [h for h in self.cfg.heads() if h.address == old] + [h for h in self.cfg.heads() if h.address != old]
        for h in order:
            if ssh.reachable(h):
                return h.address
        raise ProviderError("no head candidate host answers SSH")

    def new_node(
        self, rec: ServiceRecord, name: str, role: str, ip: str, ports: dict[str, int], group: str | None = None
    ) -> NodeRecord:
        generation = int(time.time() * 1000)
        host = self._head_host(rec) if role == "head" and self.floating else ip
        temp_dir = str(paths.node_temp_root() / f"{rec.cluster_id}{name[:1]}{generation % 10**5:05d}")
        return NodeRecord(
            name=name,
            role=role,  # type: ignore[arg-type]
            group=group,
            ip=ip,
            host=host,
            ports=ports,
            temp_dir=temp_dir,
            log=f"{temp_dir}.log",  # on the host
            marker=f"{rec.cluster_id}/{name}/{generation}",
        )

    # -- side effects --------------------------------------------------------------------
    def _host(self, node: NodeRecord) -> SshHost:
        return self.cfg.host(node.host or node.ip)

    def can_sandbox(self, node: NodeRecord) -> bool:
        """Only root on the host can run a node as the service's user; an SSH user that is
        not root runs its nodes as itself (README, security model)."""
        return self._host(node).user == "root"

    def distribute(self, local_file: str, node: NodeRecord, gid: int | None = None, read_at: str | None = None) -> None:
        """Put a file the nodes read by ``file://`` (a package) on the host at ``read_at``
        (default: its path here), readable there by the service's group (``gid``) only."""
        host = self._host(node)
        target = read_at or local_file
        remote.put_file(host, local_file, target, package_home(target))
        if gid is not None and self.can_sandbox(node):
            f, d = shlex.quote(target), shlex.quote(str(Path(target).parent))
            mode_f, mode_d = f"{node_user.PACKAGE_FILE_MODE:o}", f"{node_user.PACKAGE_DIR_MODE:o}"
            ssh.run(host, f"chgrp {int(gid)} {f} {d} && chmod {mode_f} {f} && chmod {mode_d} {d}")

    def start(self, node: NodeRecord, launch: NodeLaunch) -> int:
        host = self._host(node)
        if node.role == "head" and self.floating:
            hook = self.cfg.head_address.move_hook
            assert hook is not None and self.cfg.head_address.address is not None
            done = subprocess.run([hook, self.cfg.head_address.address, host.address], capture_output=True, text=True)
            if done.returncode != 0:
                raise ProviderError(f"move_hook {hook} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        guarded = firewall.guarded_ports(node.role, node.ports)
        rules = firewall.render(_rules_id(node), guarded, self.cfg.trusted())
        status, _, err = ssh.run(host, f"printf '%s' {shlex.quote(rules)} | nft -f -")
        if status != 0:
            raise ProviderError(f"host {host.address}: nft refused the node's packet filter: {err.strip()[-300:]}")
        box = launch.sandbox
        remote.ensure_dirs(host, node.temp_dir, str(Path(node.temp_dir).parent))
        if box is not None:
            mine = shlex.quote(node.temp_dir)
            ssh.run(host, f"chgrp {box.gid} {mine} && chmod {node_user.TEMP_DIR_MODE:o} {mine}")
        for path, content in launch.secret_files.items():
            remote.put_private(host, path, content, (box.uid, box.gid) if box else None)
        argv = launch.command(f"{self.cfg.venv}/bin/python")
        try:
            node.pid = remote.start_detached(
                host, argv, launch.env, node.temp_dir, node.log, node.marker, what="ray start"
            )
        except SshError as exc:
            raise ProviderError(str(exc)) from None
        node.pid_started = remote.start_time(host, node.pid)
        node.started_at = time.time()
        return node.pid

    def alive(self, node: NodeRecord) -> bool:
        """The host answers SSH and the node's supervisor still runs."""
        return bool(remote.same_process(self._host(node), node.pid, node.pid_started))

    def alive_or_unknown(self, node: NodeRecord) -> bool | None:
        return remote.same_process(self._host(node), node.pid, node.pid_started, unanswered=None)

    def pids(self, node: NodeRecord) -> list[int]:
        """Every process on the host carrying the node's marker. Raises when the host does
        not answer: an unreachable node cannot be shown to be gone."""
        if self.floating and node.role == "head" and not ssh.reachable(self._host(node)):
            return []  # fenced by the move hook: the address will be taken from it
        try:
            return remote.marked_pids(self._host(node), node.marker)
        except SshError as exc:
            raise ProviderError(f"cannot fence node {node.name}: {exc}; it is retried when the host answers") from None

    def kill(self, node: NodeRecord, grace_s: float = 0.0) -> None:
        for _ in range(5):
            left = self.pids(node)
            if not left:
                return
            try:
                remote.kill(self._host(node), left)
            except SshError:
                if not (self.floating and node.role == "head"):
                    raise
            time.sleep(0.2)

    def remove(self, node: NodeRecord) -> None:
        self.kill(node)
        with contextlib.suppress(SshError):  # an unreachable (fenced) host keeps its temp dir and rules
            drop = shlex.quote(firewall.remove_script(_rules_id(node)))
            ssh.run(self._host(node), f"rm -rf {shlex.quote(node.temp_dir)}; printf '%s' {drop} | nft -f - ; true")

    def log_tail(self, node: NodeRecord, lines: int) -> str:
        try:
            _, out, _ = ssh.run(self._host(node), f"tail -n {int(lines)} {shlex.quote(node.log)}")
        except SshError as exc:
            return f"({exc})\n"
        return out

    def set_priority(self, node: NodeRecord, nice: int) -> None:
        """A head here has its host to itself: it never starts at another priority."""

    def log_since(self, node: NodeRecord, offset: int | None) -> tuple[str, int]:
        path = shlex.quote(node.log)
        try:
            if offset is None:
                _, out, _ = ssh.run(self._host(node), f"stat -c %s {path}")
                return "", int(out.strip() or 0)
            _, out, _ = ssh.run(self._host(node), f"tail -c +{int(offset) + 1} {path}")
        except (SshError, ValueError):
            return "", offset or 0
        return out, offset + len(out.encode())

    def read_logs(self, node: NodeRecord, offsets: dict[str, int] | None) -> node_logs.Read:
        try:
            _, out, _ = ssh.run(self._host(node), node_logs.remote_script(node.log, node.temp_dir, offsets))
        except SshError:
            return {}
        return node_logs.parse_remote(out, tail=offsets is None)

    def leftover_namespaces(self, service: str, keep: set[str]) -> list[str]:
        return []

    def remove_namespace(self, name: str) -> None:  # pragma: no cover - no namespaces here
        pass

    def check_ready(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Every host answers SSH and runs headway's Python and Ray, or HostsNotReady."""
        progress(f"checking {len(self.cfg.hosts)} host(s): SSH, Python and Ray versions")
        cloud_config.check_hosts(self.version_problems())

    def version_problems(self) -> list[str]:
        """Every host whose bootstrap venv differs from headway's Python/Ray, that lacks the
        packet filter, or that is down or unknown."""
        out = []
        for h in self.cfg.hosts:
            try:
                p = ssh.version_problem(h, self.cfg.venv)
                if p is None and ssh.run(h, "command -v nft >/dev/null")[0] != 0:
                    p = f"host {h.address}: nft is missing (the nodes' packet filter); apt-get install nftables"
                if p is None and h.user == "root":
                    status, _, err = ssh.run(h, shlex.join(node_user.PROBE))
                    p = node_user.probe_problem(status, err, f"host {h.address}")
                if p is None and h in self.cfg.ingress_hosts():
                    p = vip.missing_tools(h, self.cfg.venv)
                store_host = self.cfg.store is not None and h.address in self.cfg.store.hosts
                if p is None and store_host and store_procs.server_path(self.cfg, h.address) is None:
                    p = f"host {h.address}: no redis-server (the store runs there); apt-get install redis-server"
            except SshError as exc:
                p = str(exc)
            if p:
                out.append(p)
        return out


def placement_load(
    recs: Iterable[ServiceRecord], planned: Iterable[tuple[str, dict[str, int]]] = ()
) -> dict[str, list[dict[str, int]]]:
    """Host address -> the ports of each Ray node it carries (of every service, those being
    planned too). A dead node counts until it is fenced: its processes may still run."""
    load: dict[str, list[dict[str, int]]] = {}
    for rec in recs:
        for n in [*rec.nodes, *rec.retired]:
            if not n.fenced:
                load.setdefault(n.host or n.ip, []).append(n.ports)
    for host, ports in planned:
        load.setdefault(host, []).append(ports)
    return load


def _free_ports_for(default: dict[str, int], taken: set[int]) -> dict[str, int]:
    """Ports of the same roles as ``default`` that no node on the host holds (a second node there)."""
    return dict(zip(default, free_ports(len(default), taken | set(default.values())), strict=True))


def _rules_id(node: NodeRecord) -> str:
    """The node's own packet-filter table on its host (several nodes of a cluster may share
    one). Named by the node's marker, which a replacement does not share: named by the node's
    name, the dead worker's removal (after its replacement joined on the same host, once the
    host came back) deleted the replacement's table and left its ports open to every host."""
    return node.cluster_id + hashlib.sha1(node.marker.encode()).hexdigest()[:8]
