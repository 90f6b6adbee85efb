"""A service's logs as one stream: every node's own log and its Serve logs (replicas, proxy,
the Serve controller), the endpoint's log and what was kept of retired nodes — each line
with its time and its node, merged by time (``plan.log_lines``), from ``--since``.

``--node N`` keeps one node's files, ``--app A`` the replica logs of one application (a
failed replica's traceback is in them). Read from the files (``cluster.node_logs``), so
it works while the head is down. ``follow`` reads what each file gains, every ``POLL_S``.
"""

from __future__ import annotations

import functools
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from headway.cluster import node_logs
from headway.control import log_archive
from headway.control.context import Context
from headway.hosts import ssh
from headway.ingress import ingress_hosts, instances
from headway.model.cloud_config import SshError, SshHost
from headway.model.errors import InputError
from headway.plan import log_lines
from headway.state import records
from headway.state.records import ServiceRecord
from headway.system import paths

POLL_S = 1.0
MAX_LINES = 20000
INGRESS = "ingress"


@dataclass(frozen=True)
class Filter:
    """Which part of the stream: one node's files, or one application's replica logs."""

    node: str | None = None
    app: str | None = None

    def keeps(self, source: str, path: str) -> bool:
        if self.app is not None:
            return os.path.basename(path).startswith(f"replica_{self.app}_")
        base = source.split(" ")[0]  # "worker-1 (retired)" is worker-1's too
        return self.node is None or base == self.node or (self.node == INGRESS and base.startswith(INGRESS + "@"))


def _clusters(rec: ServiceRecord) -> list[ServiceRecord]:
    new = records.load(rec.rollout.cluster) if rec.rollout else None
    return [rec] + ([new] if new else [])


def check(rec: ServiceRecord, filt: Filter) -> Filter:
    """An unknown node or application is a clear error, before anything is read."""
    if filt.node and filt.app:
        raise InputError("choose one: a node (--node) or an application (--app)")
    names = [log_archive.label_of(c, n) for c in _clusters(rec) for n in c.nodes] + log_archive.labels(rec.name)
    if filt.node and filt.node not in {n.split(" ")[0] for n in names} and filt.node != INGRESS:
        raise InputError(f"service {rec.name} has no node {filt.node}; its nodes: {', '.join(names)}")
    apps = [a.name for a in rec.spec.applications]
    if filt.app and filt.app not in apps:
        raise InputError(f"service {rec.name} has no application {filt.app}; its applications: {', '.join(apps)}")
    return filt


@dataclass(frozen=True)
class _Source:
    """One place logs are read from: a node (its files on its host), or the endpoint."""

    label: str
    read: Callable[[dict[str, int] | None], node_logs.Read]


def _sources(ctx: Context, rec: ServiceRecord) -> list[_Source]:
    out = []
    for cluster in _clusters(rec):
        prov = ctx.provider(cluster)
        for node in cluster.nodes:
            out.append(_Source(log_archive.label_of(cluster, node), functools.partial(prov.read_logs, node)))
    ing = rec.ingress
    if ing is not None and not ing.on_hosts:
        out.append(_Source(INGRESS, functools.partial(node_logs.read_files, [ing.log])))
    elif ing is not None:
        root = str(paths.node_temp_root())
        for host in instances.hosts_config(ctx.cloud).ingress_hosts():
            log = ingress_hosts.files(ing.marker, host.address, root)["log"]
            out.append(_Source(f"{INGRESS}@{host.address}", functools.partial(_read_on, host, log)))
    return out


def _read_on(host: SshHost, path: str, offsets: dict[str, int] | None) -> node_logs.Read:
    """A file on an ingress host, as ``node_logs`` reads a node's."""
    try:
        _, out, _ = ssh.run(host, node_logs.files_script(shlex.quote(path), offsets), timeout_s=10)
    except SshError:
        return {}
    return node_logs.parse_remote(out, tail=offsets is None)


def read(ctx: Context, rec: ServiceRecord, filt: Filter, since_s: float | None, lines: int) -> list[str]:
    """The stream's last ``lines`` (from ``since_s`` ago), rendered."""
    filt = check(rec, filt)
    streams: list[list[log_lines.Line]] = []
    for src in _sources(ctx, rec):
        for path, (text, _, mtime) in src.read(None).items():
            if filt.keeps(src.label, path):
                streams.append(log_lines.stamp(text, src.label, mtime))
    for label, path in log_archive.files(rec.name):
        if filt.keeps(label, path):
            streams.append(log_lines.stamp(Path(path).read_text(errors="replace"), label, os.path.getmtime(path)))
    since = time.time() - since_s if since_s else None
    return [log_lines.render(ln) for ln in log_lines.merge(streams, since, max(1, min(lines, MAX_LINES)))]


def follow(
    ctx: Context, rec: ServiceRecord, filt: Filter, since_s: float | None, lines: int, stop: threading.Event
) -> Iterator[str]:
    """``read``, then the lines every file gains (nodes that come later too), until ``stop``.
    (Where the files end is taken before the read: a line written in between comes twice
    rather than never.)"""
    offsets = {(src.label, p): end for src in _sources(ctx, rec) for p, (_, end, _) in src.read(None).items()}
    for line in read(ctx, rec, filt, since_s, lines):
        yield line + "\n"
    partial: dict[tuple[str, str], str] = {}
    while not stop.wait(POLL_S):
        rec = records.load(rec.name) or rec
        fresh: list[log_lines.Line] = []
        now = time.time()
        for src in _sources(ctx, rec):
            known = {p: o for (lab, p), o in offsets.items() if lab == src.label}
            for path, (text, end, _) in src.read(known or None).items():
                offsets[(src.label, path)] = end
                if filt.keeps(src.label, path):
                    fresh += _complete(partial, (src.label, path), text, src.label, now)
        for ln in log_lines.merge([fresh]):
            yield log_lines.render(ln) + "\n"


def _complete(partial: dict, key: tuple[str, str], text: str, label: str, now: float) -> list[log_lines.Line]:
    """The whole lines of what a file gained (a line cut by the read waits for its end)."""
    if not text:
        return []
    *done, partial[key] = (partial.get(key, "") + text).split("\n")
    return log_lines.stamp("\n".join(done), label, now) if done else []
