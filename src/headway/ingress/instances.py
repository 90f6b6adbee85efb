"""Where an endpoint's HAProxy instances run and how to talk to them: the process here or
one on each ingress host, alive or not, and HAProxy's runtime API on each admin socket
(a command, the backends that are UP, the counters added up over the instances)."""

from __future__ import annotations

from headway.hosts import ssh
from headway.ingress import ingress_hosts, local_haproxy
from headway.ingress.local_haproxy import IngressError
from headway.model.cloud_config import SshCloud, SshError
from headway.plan import haproxy_config as hc
from headway.plan import haproxy_counts
from headway.state.records import IngressRecord, ServiceRecord
from headway.store.cloud import CloudRecord
from headway.system import paths, procs


def hosts_or_none(crec: CloudRecord | None) -> SshCloud | None:
    """The cloud config when the endpoints run on its ingress hosts."""
    return crec.ssh if crec is not None and crec.ssh is not None and crec.ssh.ingress is not None else None


def hosts_config(crec: CloudRecord | None) -> SshCloud:
    """The cloud config of an endpoint that runs on ingress hosts, unless the cloud (the
    caller's record of it, read once per unit of work) names none any more."""
    cfg = hosts_or_none(crec)
    if cfg is None:
        raise IngressError("the endpoint runs on ingress hosts, but the cloud config names none any more")
    return cfg


def alive(crec: CloudRecord | None, ing: IngressRecord | None) -> bool:
    """Here: the process runs. On hosts: each host that answers runs its instance (one that
    does not answer is not counted: nothing can be started there until it is back)."""
    if not ing:
        return False
    if not ing.on_hosts:
        return procs.same_process(ing.pid, ing.pid_started)
    cfg = hosts_config(crec)
    return all(not ssh.answers(h) or ingress_hosts.alive(h, ing.instances.get(h.address)) for h in cfg.ingress_hosts())


def marker(rec: ServiceRecord) -> str:
    return (rec.ingress.marker if rec.ingress else "") or f"{rec.cluster_id}/ingress"


def command(ing: IngressRecord, cmd: str, timeout_s: float = 2.0) -> str:
    """One command to the local instance's admin socket."""
    return local_haproxy.admin(ing.socket, cmd, timeout_s)


def _per_instance(crec: CloudRecord | None, ing: IngressRecord, cmds: list[str]) -> list[list[str]]:
    """Each running instance's replies to ``cmds`` (here: the one process; on hosts: every
    instance whose host answers)."""
    if not cmds:
        return []
    if not ing.on_hosts:
        return [[command(ing, c) for c in cmds]]
    cfg = hosts_config(crec)
    root = str(paths.node_temp_root())
    out = []
    for host in cfg.ingress_hosts():
        if host.address not in ing.instances or not ssh.answers(host):
            continue
        try:
            sock = ingress_hosts.files(ing.marker, host.address, root)["socket"]
            out.append(ingress_hosts.commands(cfg, host, sock, cmds))
        except SshError:
            continue
    return out


def send_all(crec: CloudRecord | None, ing: IngressRecord, cmds: list[str]) -> list[tuple[str, str]]:
    """A runtime change to every instance: (command, reply) pairs of all of them."""
    return [(c, r) for replies in _per_instance(crec, ing, cmds) for c, r in zip(cmds, replies, strict=True)]


def up_backends(crec: CloudRecord | None, ing: IngressRecord | None) -> set[str]:
    """The backends the ingress lets in now (UP after their health checks)."""
    return up_in(stats(crec, ing) or {"backends": []})


def up_in(st: dict) -> set[str]:
    """The backends UP in a ``stats`` reading."""
    return {b["address"] for b in st["backends"] if str(b["status"]).startswith("UP")}


def stats(crec: CloudRecord | None, ing: IngressRecord | None) -> dict | None:
    """Backends (up/down, requests, errors) and the endpoint's counters, or None if down.
    On hosts: the counters of every instance added up (only the one holding the address
    serves), a backend UP when an instance finds it so."""
    if ing is None or not alive(crec, ing):
        return None
    try:
        replies = _per_instance(crec, ing, ["show stat", *haproxy_counts.commands()])
    except OSError:
        return None
    if not replies:
        return None
    slots = {hc.slot_name(i): addr for i, addr in enumerate(ing.slots) if addr}
    counters = ("requests", "errors", "retries", "redispatches", "hrsp_5xx")
    backends: dict[str, dict] = {}
    frontend: dict[str, int] = {}
    counts = haproxy_counts.Counts()
    for text, *tables in replies:
        counts.add(haproxy_counts.parse(*tables))
        for k, v in hc.parse_frontend(text).items():
            frontend[k] = frontend.get(k, 0) + v
        for s in hc.parse_stats(text):
            if s.slot not in slots:
                continue
            b = backends.setdefault(s.slot, {"address": slots[s.slot], "status": s.status} | dict.fromkeys(counters, 0))
            if s.status.startswith("UP"):
                b["status"] = s.status
            for k in counters:
                b[k] += getattr(s, k)
    return {"frontend": frontend, "backends": list(backends.values()), "responses": _responses(counts)}


def _responses(counts: haproxy_counts.Counts) -> dict:
    """The per-request counts by backend address (exact codes, the latency histogram, a
    backend since removed too: its requests were served) and the endpoint's own answers."""
    by_backend = {
        addr: {
            "codes": counts.codes.get(addr, {}),
            "buckets_ms": {
                str(b): n for b, n in zip(haproxy_counts.BUCKETS_MS, counts.buckets.get(addr, []), strict=False)
            },
            "sum_ms": counts.sum_ms.get(addr, 0),
            "count": counts.count.get(addr, 0),
        }
        for addr in sorted(counts.codes.keys() | counts.count.keys())
    }
    return {"by_backend": by_backend, "own": counts.own}
