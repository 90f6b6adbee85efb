"""The packet filter of a node's host: only the control host reaches the unauthenticated ports.

A Serve proxy checks no token (the ingress does), and Ray's metrics port serves
without one; the dashboard and the Ray Client server check Ray's token, and are
closed here too, so a stranger does not even get to try. On each node's host an
nftables table admits to those ports only the control host — where the ingress and
the controller run — and loopback, and resets every other connection (a client sees
"connection refused" at once rather than waiting for a timeout).

Everything else Ray listens on (GCS, raylet, object manager, workers, agents) must
stay open between the nodes, and is guarded by Ray's token authentication.

The rules are pure text (``render``); applying them is one ``nft -f -`` in the node's
network namespace or, over SSH, on the node's host (``apply_command``).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable

from headway.cluster.ray_node import DASHBOARD_PORT, GRPC_PORT, SERVE_PORT
from headway.model.errors import Failed

#: Ray's default Ray Client server port (the head starts one unless told another).
CLIENT_SERVER_PORT = 10001
#: Ray's metrics export port on a node with its own address (``provider.NETNS_NODE_PORTS``).
_GUARDED_KEYS = ("dashboard", "client_server", "metrics_export")


class FirewallError(Failed):
    pass


def table_name(cluster_id: str) -> str:
    """One table per cluster on a host, so that removing it touches no other service's rules."""
    if not cluster_id.isalnum():
        raise ValueError("cluster ids are alphanumeric")
    return f"headway_{cluster_id}"


def guarded_ports(role: str, ports: dict[str, int]) -> list[int]:
    """The ports of a node that only the control host may reach."""
    out = {ports[k] for k in _GUARDED_KEYS if ports.get(k)}
    out.add(ports.get("proxy") or SERVE_PORT)  # every node runs a Serve proxy (EveryNode)
    out.add(ports.get("grpc") or GRPC_PORT)  # and, for a service with grpc_options, its gRPC side
    if role == "head":
        out |= {ports.get("dashboard") or DASHBOARD_PORT, ports.get("client_server") or CLIENT_SERVER_PORT}
    return sorted(out)


def render(cluster_id: str, ports: Iterable[int], allowed: str | Iterable[str]) -> str:
    """An nftables script: admit ``allowed`` (the control host, and the ingress hosts when
    the endpoints run on several) and loopback to ``ports``, reset every other TCP
    connection to them. Replaces the cluster's table atomically."""
    # A typo must not become a rule that admits nobody (or everybody): each is parsed.
    addrs = [ipaddress.ip_address(a) for a in ([allowed] if isinstance(allowed, str) else allowed)]
    port_set = ", ".join(str(int(p)) for p in sorted(set(ports)))
    name = table_name(cluster_id)
    by_family = {fam: ", ".join(str(a) for a in addrs if a.version == v) for fam, v in (("ip", 4), ("ip6", 6))}
    admits = [
        f"    {fam} saddr {{ {srcs} }} tcp dport {{ {port_set} }} accept" for fam, srcs in by_family.items() if srcs
    ]
    return "\n".join(
        [
            f"table inet {name}",  # create it if missing, so the delete below never fails
            f"delete table inet {name}",
            f"table inet {name} {{",
            "  chain input {",
            "    type filter hook input priority 0; policy accept;",
            f'    iifname "lo" tcp dport {{ {port_set} }} accept',
            *admits,
            f"    tcp dport {{ {port_set} }} reject with tcp reset",
            "  }",
            "}",
            "",
        ]
    )


def remove_script(cluster_id: str) -> str:
    name = table_name(cluster_id)
    return f"table inet {name}\ndelete table inet {name}\n"


def _nft() -> str | None:
    return shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)


def available() -> bool:
    return _nft() is not None


def apply_local(script: str, prefix: list[str]) -> None:
    """Load ``script`` with ``nft`` (in a namespace when ``prefix`` is ``ip netns exec NS``)."""
    nft = _nft()
    if nft is None:
        raise FirewallError("the packet filter needs nftables ('nft' is not installed): apt-get install nftables")
    done = subprocess.run([*prefix, nft, "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        raise FirewallError(f"nft refused the node's rules: {done.stderr.strip()[-300:]}")
