"""The local node provider: each Ray node is a host on this machine.

As root (``netns`` mode) a host is a network namespace ``hw-<service>.<node>`` with its
own IP on the bridge; without root (``loopback`` mode) every host is 127.0.0.1 with
distinct ports. Nodes are started detached (own session), so they outlive the CLI.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from headway.cluster import firewall, node_logs
from headway.cluster.ray_node import DASHBOARD_PORT, GCS_PORT, GRPC_PORT, SERVE_PORT, NodeLaunch, NodePorts
from headway.model.errors import Failed
from headway.model.ray_node_env import inherited
from headway.state.records import NodeRecord, ServiceRecord, all_records
from headway.system import netns, node_user, paths, procs

LOOPBACK = "127.0.0.1"
MAX_TEMP_DIR_LEN = 38
_HEAD_PORT_KEYS = ("gcs", "dashboard", "client_server", "proxy", "grpc")
_NODE_PORT_KEYS = (
    "node_manager",
    "object_manager",
    "dashboard_agent_listen",
    "dashboard_agent_grpc",
    "metrics_export",
    "runtime_env_agent",
)


#: Fixed agent and manager ports for a node with an IP of its own. Left to Ray (0),
#: its raylet waits for the agents to write their port files and aborts the node
#: when a slow agent misses that wait (seen on a loaded 2-core machine: a new head
#: died with "Timed out waiting for file .../metrics_agent_port_<node>").
NETNS_NODE_PORTS: dict[str, int] = {
    "node_manager": 52360,
    "object_manager": 52361,
    "dashboard_agent_listen": 52365,
    "dashboard_agent_grpc": 52366,
    "metrics_export": 52367,
    "runtime_env_agent": 52368,
}


class ProviderError(Failed):
    pass


def namespace_name(service: str, node: str, generation: int) -> str:
    """``hw-<service>.<node>-<gen>``: each host of a node has its own namespace, so a dead
    host can stay (and reset stray connections) while its replacement starts.
    '.' never occurs in a service name, so 'hw-<service>.' prefixes never collide."""
    return f"hw-{service}.{node}-{generation % 10000}"


# Ports handed to Ray are picked below the kernel's ephemeral range: a port from bind(0)
# lies inside that range and may be taken by any outgoing connection (Ray's own gRPC
# clients) before the node that was promised it gets to listen.
_PORT_RANGE = (20000, 32000)


def free_ports(n: int, taken: set[int]) -> list[int]:
    low, high = _PORT_RANGE
    ports: list[int] = []
    start = random.randrange(low, high)
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise ProviderError(f"no {n} free ports left in {low}-{high}")


def tail_file(path: str | Path, lines: int, keep: Callable[[str], bool] = lambda _line: True) -> str:
    """The last ``lines`` lines of a local file that ``keep`` accepts (a node's log, the
    controller's, HAProxy's), or a line saying why there is none."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(collections.deque((ln for ln in fh if keep(ln)), maxlen=lines))
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})\n"


def read_since(path: str | Path, offset: int | None) -> tuple[str, int]:
    """What a local file gained past byte ``offset`` (None: nothing, only where it ends
    now), and the new offset; a file that shrank (rotated) is read from its start."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, 2)
            if offset is None:
                return "", end
            fh.seek(offset if offset <= end else 0)
            data = fh.read()
            return data.decode(errors="replace"), fh.tell()
    except OSError:
        return "", offset or 0


def _used_ips(free_fenced: bool = False) -> set[str]:
    """Addresses a recorded node holds. ``free_fenced``: not those of fenced nodes (a real
    host whose node was killed may take its successor; a namespace still exists until removed)."""
    return {n.ip for rec in all_records() for n in [*rec.nodes, *rec.retired] if not (free_fenced and n.fenced)}


def used_ports() -> set[int]:
    """Every port a recorded node or ingress holds."""
    ports = {p for rec in all_records() for n in rec.nodes for p in n.ports.values()}
    return ports | {rec.ingress.port for rec in all_records() if rec.ingress}


class LocalProvider:
    shares_clock = True  # every node runs on this machine

    def __init__(self, mode: str, subnet: str | None = None):
        self.mode = mode
        self.subnet = netns.Subnet(ipaddress.IPv4Network(subnet)) if subnet else None
        # Ports planned by this provider but not yet saved in a record.
        self._planned: set[int] = set()

    @property
    def loopback(self) -> bool:
        return self.mode == "loopback"

    # -- planning ------------------------------------------------------------------
    def plan_head(self) -> tuple[str, dict[str, int]]:
        """The head's IP and ports: the address workers will always use."""
        if self.loopback:
            ports = self._ports(len(_HEAD_PORT_KEYS) + len(_NODE_PORT_KEYS))
            return LOOPBACK, dict(zip(_HEAD_PORT_KEYS + _NODE_PORT_KEYS, ports, strict=True))
        return self._free_ip(set()), {
            "gcs": GCS_PORT,
            "dashboard": DASHBOARD_PORT,
            "proxy": SERVE_PORT,
            "grpc": GRPC_PORT,
        } | NETNS_NODE_PORTS

    def plan_worker(self, taken_ips: set[str]) -> tuple[str, dict[str, int]]:
        if self.loopback:
            keys = (*_NODE_PORT_KEYS, "proxy", "grpc")
            ports = self._ports(len(keys))
            return LOOPBACK, dict(zip(keys, ports, strict=True))
        return self._free_ip(taken_ips), dict(NETNS_NODE_PORTS)

    def _ports(self, n: int) -> list[int]:
        ports = free_ports(n, used_ports() | self._planned)
        self._planned.update(ports)
        return ports

    def _free_ip(self, taken: set[str]) -> str:
        assert self.subnet is not None
        used = _used_ips() | taken
        for ip in self.subnet.host_ips():
            if ip not in used:
                return ip
        raise ProviderError(f"no free address left in {self.subnet.network}; terminate a service")

    @staticmethod
    def node_ports(node: NodeRecord) -> NodePorts:
        known = {k: v for k, v in node.ports.items() if k in NodePorts.__dataclass_fields__}
        return NodePorts(**known)

    def new_node(
        self,
        rec: ServiceRecord,
        name: str,
        role: str,
        ip: str,
        ports: dict[str, int],
        group: str | None = None,
    ) -> NodeRecord:
        generation = int(time.time() * 1000)
        # Short on purpose: Ray puts unix sockets ~75 bytes deep under it, and a socket
        # path longer than 107 bytes makes a dashboard module die at start.
        tag = hashlib.sha1(name.encode()).hexdigest()[:4]  # nodes started in the same ms differ
        temp_dir = str(paths.node_temp_root() / f"{rec.cluster_id}{tag}{generation % 10**5:05d}")
        if len(temp_dir) > MAX_TEMP_DIR_LEN:
            raise ProviderError(
                f"HEADWAY_TMP={paths.node_temp_root()} is too long for Ray's unix socket paths; "
                "use a short one such as /tmp/hw"
            )
        return NodeRecord(
            name=name,
            role=role,  # type: ignore[arg-type]
            group=group,
            ip=ip,
            netns=None if self.loopback else namespace_name(rec.name, name, generation),
            ports=ports,
            temp_dir=temp_dir,
            log=str(paths.service_dir(rec.service) / "logs" / f"{rec.name + '.' if rec.parent else ''}{name}.log"),
            marker=f"{rec.cluster_id}/{name}/{generation}",
        )

    def check_ready(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """This machine is the host: as root, it must be able to box nodes in."""
        if node_user.can_sandbox():
            done = subprocess.run(node_user.PROBE, capture_output=True, text=True)
            problem = node_user.probe_problem(done.returncode, done.stderr, "this machine")
            if problem:
                raise ProviderError(problem)

    # -- side effects ----------------------------------------------------------------
    def can_sandbox(self, node: NodeRecord) -> bool:
        return node_user.can_sandbox()

    def distribute(self, local_file: str, node: NodeRecord, gid: int | None = None, read_at: str | None = None) -> None:
        """Files the nodes read by ``file://`` are already here (one machine; a standby's
        copy is put where the nodes read it): only let the service's group read them, and
        their folder."""
        target = Path(read_at or local_file)
        if not target.exists():
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(local_file, target)
        if gid is not None and self.can_sandbox(node):
            node_user.share(target, gid)

    def start(self, node: NodeRecord, launch: NodeLaunch) -> int:
        """Create the host (its packet filter first) and start the node detached in it
        (``ray start`` under its supervisor); return the supervisor's PID."""
        prefix: list[str] = []
        if node.netns:
            assert self.subnet is not None
            netns.create(node.netns, node.ip, self.subnet)
            prefix = netns.exec_prefix(node.netns)
            guarded = firewall.guarded_ports(node.role, node.ports)
            firewall.apply_local(firewall.render(node.cluster_id, guarded, self.subnet.bridge_ip), prefix)
        box = launch.sandbox
        owner = (box.uid, box.gid) if box else None
        paths.node_dir(Path(node.temp_dir), box.gid if box else None, node_user.TEMP_DIR_MODE)
        os.makedirs(os.path.dirname(node.log), exist_ok=True)
        for path, content in launch.secret_files.items():
            paths.write_private(Path(path), content, owner)
        if launch.nice:
            prefix = [*prefix, "nice", "-n", str(launch.nice)]  # inherited by every process of the node
        # An allow-list: the controller's own environment (secrets, test settings) stays here.
        env = inherited(os.environ) | launch.env
        with open(node.log, "ab") as log:
            child = subprocess.Popen(
                prefix + launch.command(sys.executable),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=node.temp_dir,
            )
        procs.track(child)
        node.pid = child.pid
        node.pid_started = procs.start_time(child.pid)
        node.started_at = time.time()
        return child.pid

    def pids(self, node: NodeRecord) -> list[int]:
        found = set(procs.pids_with_marker(node.marker))
        if node.netns and netns.exists(node.netns):
            found |= set(netns.pids(node.netns))
        return sorted(found)

    def alive(self, node: NodeRecord) -> bool:
        """The node's supervisor runs: it exits as soon as one of the node's Ray processes
        (raylet, GCS, an agent) dies. Cheap enough to ask twice a second."""
        if node.pid_started is not None:
            return procs.same_process(node.pid, node.pid_started)
        return procs.alive(node.pid) and bool(procs.pids_with_marker(node.marker))

    def alive_or_unknown(self, node: NodeRecord) -> bool | None:
        return self.alive(node)  # a process on this machine always answers

    def kill(self, node: NodeRecord, grace_s: float = 0.0) -> None:
        """Crash or stop the host: every process of it, then the namespace."""
        procs.kill_pids(self.pids(node), grace_s=grace_s)
        if node.netns:
            # Processes spawned just now can still appear; kill until the namespace is empty.
            for _ in range(20):
                left = netns.pids(node.netns) if netns.exists(node.netns) else []
                if not left:
                    break
                procs.kill_pids(left)

    def remove(self, node: NodeRecord) -> None:
        """Kill and remove every trace of the host: processes, namespace, temp dir."""
        self.kill(node)
        if node.netns:
            netns.delete(node.netns)
        shutil.rmtree(node.temp_dir, ignore_errors=True)

    def log_tail(self, node: NodeRecord, lines: int) -> str:
        return tail_file(node.log, lines)

    def set_priority(self, node: NodeRecord, nice: int) -> None:
        for pid in self.pids(node):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, nice)

    def log_since(self, node: NodeRecord, offset: int | None) -> tuple[str, int]:
        return read_since(node.log, offset)

    def read_logs(self, node: NodeRecord, offsets: dict[str, int] | None) -> node_logs.Read:
        return node_logs.read_local(node.log, node.temp_dir, offsets)

    def leftover_namespaces(self, service: str, keep: set[str]) -> list[str]:
        """Namespaces of this service that no record names (a crashed run)."""
        prefix = f"hw-{service}."
        return [n for n in netns.list_namespaces() if n.startswith(prefix) and n not in keep]

    def remove_namespace(self, name: str) -> None:
        procs.kill_pids(netns.pids(name))
        netns.delete(name)
