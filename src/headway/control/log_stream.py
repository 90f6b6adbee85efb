"""A service's logs as one stream: every node's own log and its Serve logs (replicas, proxy,
the Serve controller), the endpoint's log and what was kept of retired nodes — each line
with its time and its node, merged by time (``plan.log_lines``), from ``--since``.

``--node N`` keeps one node's files, ``--app A`` the replica logs of one application (a
failed replica's traceback is in them). Read from the files (``cluster.node_logs``), so
it works while the head is down. ``follow`` reads what each file gains, every ``POLL_S``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from headway.cluster.local_provider import read_since
from headway.control import log_archive
from headway.control.context import Context
from headway.model.errors import InputError
from headway.plan import log_lines
from headway.state import records
from headway.state.records import NodeRecord, ServiceRecord

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
        return self.node is None or source.split(" ")[0] == self.node


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


def _nodes(ctx: Context, rec: ServiceRecord) -> list[tuple[str, NodeRecord, object]]:
    return [(log_archive.label_of(c, n), n, ctx.provider(c)) for c in _clusters(rec) for n in c.nodes]


def _ingress_log(rec: ServiceRecord) -> str | None:
    return rec.ingress.log if rec.ingress and not rec.ingress.on_hosts else None


def read(ctx: Context, rec: ServiceRecord, filt: Filter, since_s: float | None, lines: int) -> list[str]:
    """The stream's last ``lines`` (from ``since_s`` ago), rendered."""
    filt = check(rec, filt)
    streams: list[list[log_lines.Line]] = []
    for label, node, prov in _nodes(ctx, rec):
        for path, (text, _, mtime) in prov.read_logs(node, None).items():  # type: ignore[attr-defined]
            if filt.keeps(label, path):
                streams.append(log_lines.stamp(text, label, mtime))
    for label, path in log_archive.files(rec.name):
        if filt.keeps(label, path):
            streams.append(log_lines.stamp(Path(path).read_text(errors="replace"), label, os.path.getmtime(path)))
    ing = _ingress_log(rec)
    if ing and filt.keeps(INGRESS, ing) and os.path.exists(ing):
        text, _ = _tail(ing)
        streams.append(log_lines.stamp(text, INGRESS, os.path.getmtime(ing)))
    since = time.time() - since_s if since_s else None
    return [log_lines.render(ln) for ln in log_lines.merge(streams, since, max(1, min(lines, MAX_LINES)))]


def _tail(path: str, max_bytes: int = 256 * 1024) -> tuple[str, int]:
    size = os.path.getsize(path)
    text, end = read_since(path, max(0, size - max_bytes))
    return (text.split("\n", 1)[1] if size > max_bytes and "\n" in text else text), end


def _ends(ctx: Context, rec: ServiceRecord) -> dict[tuple[str, str], int]:
    """Where each file ends now: following starts there."""
    ends = {}
    for label, node, prov in _nodes(ctx, rec):
        for path, (_, end, _) in prov.read_logs(node, None).items():  # type: ignore[attr-defined]
            ends[(label, path)] = end
    ing = _ingress_log(rec)
    if ing:
        ends[(INGRESS, ing)] = read_since(ing, None)[1]
    return ends


def follow(
    ctx: Context, rec: ServiceRecord, filt: Filter, since_s: float | None, lines: int, stop: threading.Event
) -> Iterator[str]:
    """``read``, then the lines every file gains (nodes that come later too), until ``stop``.
    (Where the files end is taken before the read: a line written in between comes twice
    rather than never.)"""
    offsets = _ends(ctx, rec)
    for line in read(ctx, rec, filt, since_s, lines):
        yield line + "\n"
    partial: dict[tuple[str, str], str] = {}
    while not stop.wait(POLL_S):
        rec = records.load(rec.name) or rec
        fresh: list[log_lines.Line] = []
        now = time.time()
        for label, node, prov in _nodes(ctx, rec):
            known = {p: o for (lab, p), o in offsets.items() if lab == label}
            for path, (text, end, _) in prov.read_logs(node, known or None).items():  # type: ignore[attr-defined]
                offsets[(label, path)] = end
                if filt.keeps(label, path):
                    fresh += _complete(partial, (label, path), text, label, now)
        ing = _ingress_log(rec)
        if ing and filt.keeps(INGRESS, ing):
            key = (INGRESS, ing)
            text, offsets[key] = read_since(ing, offsets.get(key))
            fresh += _complete(partial, key, text, INGRESS, now)
        for ln in log_lines.merge([fresh]):
            yield log_lines.render(ln) + "\n"


def _complete(partial: dict, key: tuple[str, str], text: str, label: str, now: float) -> list[log_lines.Line]:
    """The whole lines of what a file gained (a line cut by the read waits for its end)."""
    if not text:
        return []
    *done, partial[key] = (partial.get(key, "") + text).split("\n")
    return log_lines.stamp("\n".join(done), label, now) if done else []
