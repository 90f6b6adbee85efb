"""Hosts as Linux network namespaces joined by one bridge.

Each namespace is a "host" with its own IP: killing every process in it is a host
crash, downing its link a partition. The subnet is never routed outward: the
namespaces get no default route, so they reach each other and the bridge address
only. All names start with ``hw`` so that nothing else on the machine is touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from dataclasses import dataclass

from headway.model.errors import Failed

DEFAULT_BRIDGE = "hwbr0"
DEFAULT_SUBNET = "10.213.0.0/24"


def bridge_name() -> str:
    """``HEADWAY_BRIDGE`` or hwbr0; tests use their own so they never touch a user's cloud."""
    name = os.environ.get("HEADWAY_BRIDGE", DEFAULT_BRIDGE)
    if not name.startswith("hw") or len(name) > 15:
        raise NetnsError(f"HEADWAY_BRIDGE={name!r}: a bridge name must start with 'hw' and fit 15 bytes")
    return name


class NetnsError(Failed):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise NetnsError("the 'ip' tool is missing (network namespaces need it): apt-get install iproute2") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"'ip {' '.join(args)}' failed: {proc.stderr.strip()}")
    return proc


def available() -> bool:
    """Namespaces need root on Linux and the ``ip`` tool."""
    return os.geteuid() == 0 and os.path.exists("/proc/self/ns/net") and _has_ip()


def _has_ip() -> bool:
    try:
        return subprocess.run(["ip", "-V"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Subnet:
    network: ipaddress.IPv4Network

    @classmethod
    def configured(cls) -> Subnet:
        return cls(ipaddress.IPv4Network(os.environ.get("HEADWAY_SUBNET", DEFAULT_SUBNET)))

    @property
    def bridge_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def host_ips(self) -> list[str]:
        """Addresses for nodes: everything but the network, bridge and broadcast."""
        return [str(h) for h in self.network.hosts()][1:]


def route_conflict(subnet: Subnet, routes_text: str) -> str | None:
    """The first route of the machine (``ip route`` output) overlapping ``subnet``, if any.

    Our own bridge's route is not a conflict.
    """
    for line in routes_text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "default":
            continue
        if f"dev {bridge_name()}" in line:
            continue
        try:
            net = ipaddress.IPv4Network(parts[0], strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet.network):
            return line.strip()
    return None


def ensure_bridge(subnet: Subnet) -> None:
    """Create the bridge with the subnet's first address; idempotent."""
    bridge = bridge_name()
    if bridge_exists(bridge):
        return
    conflict = route_conflict(subnet, _ip("route").stdout)
    if conflict:
        raise NetnsError(
            f"subnet {subnet.network} overlaps a route of this machine ({conflict}); "
            "set HEADWAY_SUBNET to a free /24, e.g. 10.214.0.0/24"
        )
    _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "add", f"{subnet.bridge_ip}/{subnet.prefixlen}", "dev", bridge)
    _ip("link", "set", bridge, "up")


def bridge_exists(name: str | None = None) -> bool:
    return _ip("link", "show", name or bridge_name(), check=False).returncode == 0


def remove_bridge() -> None:
    if bridge_exists():
        _ip("link", "del", bridge_name(), check=False)


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def exists(name: str) -> bool:
    return name in list_namespaces()


def _veth_name(ns: str) -> str:
    # Interface names are limited to 15 bytes; a hash of the namespace keeps them unique.
    return "hwv" + hashlib.sha1(ns.encode()).hexdigest()[:10]


def create(name: str, ip: str, subnet: Subnet) -> None:
    """A namespace with loopback up and ``eth0`` on the bridge at ``ip``."""
    if not name.startswith("hw"):
        raise ValueError("headway namespaces are named hw…")
    if exists(name):
        delete(name)
    _ip("netns", "add", name)
    host_if = _veth_name(name)
    _ip("link", "del", host_if, check=False)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", host_if, "master", bridge_name())
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
    except NetnsError:
        delete(name)
        raise


def pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def delete(name: str) -> None:
    """Remove the namespace and its veth (the caller has killed its processes)."""
    _ip("link", "del", _veth_name(name), check=False)
    _ip("netns", "del", name, check=False)


def set_link(name: str, up: bool) -> None:
    """Partition (down) or heal (up) a host."""
    _ip("link", "set", _veth_name(name), "up" if up else "down")


def exec_prefix(name: str) -> list[str]:
    return ["ip", "netns", "exec", name]
