"""A service's logs, wherever they live: a node's own output (its ``ray start``, read
where the node runs), an application's replica logs (Ray's log API on the head, from
every node), and the control host's own — the controller's lines about the service
and the endpoint's HAProxy log (abnormal requests only).

``read`` gives the last lines once; ``follow`` goes on yielding what is appended until
stopped (the CLI runs on the control host, so it follows without the API in between).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from headway.cluster import serve
from headway.cluster.local_provider import read_since, tail_file
from headway.control.context import Context
from headway.model.errors import InputError
from headway.state.records import NodeRecord, ServiceRecord
from headway.system import paths

POLL_S = 0.5
MAX_LINES = 5000


@dataclass(frozen=True)
class Source:
    """Which log: one of ``node``, ``app``, ``controller``, ``ingress`` is set."""

    node: str | None = None
    app: str | None = None
    controller: bool = False
    ingress: bool = False

    def check(self) -> Source:
        chosen = [x for x in (self.node, self.app, self.controller or None, self.ingress or None) if x]
        if len(chosen) > 1:
            raise InputError("choose one log: a node, an application, the controller or the ingress")
        return self if chosen else Source(node="head")


def _node(rec: ServiceRecord, name: str) -> NodeRecord:
    found = next((n for n in rec.nodes if n.name == name), None)
    if found is None:
        raise InputError(f"service {rec.name} has no node {name}; its nodes: {', '.join(n.name for n in rec.nodes)}")
    return found


def _mentions(name: str):
    pattern = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    return lambda line: bool(pattern.search(line))


def _follow_file(path: Path, stop: threading.Event, keep=lambda _line: True) -> Iterator[str]:
    """Whole lines appended to a local file from now on, those ``keep`` accepts."""
    _, offset = read_since(path, None)
    partial = ""
    while not stop.is_set():
        data, offset = read_since(path, offset)
        if data:
            partial += data
            *done, partial = partial.split("\n")
            kept = "".join(ln + "\n" for ln in done if keep(ln))
            if kept:
                yield kept
        stop.wait(POLL_S)


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _replica_files(rec: ServiceRecord, app: str) -> list[tuple[NodeRecord, str]]:
    """(node, file) of every replica log of ``app`` Ray's log API lists, on every node."""
    if app not in [a.name for a in rec.spec.applications]:
        apps = ", ".join(a.name for a in rec.spec.applications)
        raise InputError(f"service {rec.name} has no application {app}; its applications: {apps}")
    api = serve.head_api(rec)
    found = []
    pattern = f"serve/replica_{_escape_glob(app)}_*"
    for node in (n for n in rec.nodes if n.node_id):
        try:
            resp = httpx.get(
                api.url + "/api/v0/logs",
                headers=api.headers(),
                timeout=10,
                params={"node_id": node.node_id, "glob": pattern},
            )
            listed = resp.json().get("data", {}).get("result") or {} if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            continue
        found += [(node, f) for files in listed.values() for f in files]
    return found


def _replica_tail(rec: ServiceRecord, node: NodeRecord, filename: str, lines: int) -> str:
    api = serve.head_api(rec)
    try:
        resp = httpx.get(
            api.url + "/api/v0/logs/file",
            headers=api.headers(),
            timeout=15,
            params={"node_id": node.node_id, "filename": filename, "lines": lines, "filter_ansi_code": "true"},
        )
    except httpx.HTTPError as exc:
        return f"(cannot read it: {exc})\n"
    return resp.text if resp.status_code == 200 else f"(cannot read it: HTTP {resp.status_code})\n"


def read(ctx: Context, rec: ServiceRecord, source: Source, lines: int = 100) -> list[dict[str, str]]:
    """The last ``lines`` of the chosen log: one entry (title, text) per file."""
    source, lines = source.check(), max(1, min(lines, MAX_LINES))
    if source.app:
        if not serve.get_applications(serve.head_api(rec)):
            raise InputError(
                f"service {rec.name}: the head's dashboard does not answer (state {rec.state}); "
                "replica logs are read through it — try again once the head is up"
            )
        files = _replica_files(rec, source.app)
        if not files:
            return [{"title": f"application {source.app}", "text": "(no replica log yet)\n"}]
        return [
            {"title": f"{node.name}: {name}", "text": _replica_tail(rec, node, name, lines)} for node, name in files
        ]
    if source.controller:
        path = paths.home() / "controller.log"
        return [
            {
                "title": f"controller ({path}), lines about {rec.name}",
                "text": tail_file(path, lines, _mentions(rec.name)),
            }
        ]
    if source.ingress:
        if rec.ingress is None:
            raise InputError(f"service {rec.name} has no endpoint yet")
        return [
            {"title": f"ingress ({rec.ingress.log}): abnormal requests only", "text": tail_file(rec.ingress.log, lines)}
        ]
    node = _node(rec, source.node or "head")
    text = ctx.provider(rec).log_tail(node, lines)
    return [{"title": f"{node.name} at {node.host or node.ip}", "text": text}]


def follow(ctx: Context, rec: ServiceRecord, source: Source, lines: int, stop: threading.Event) -> Iterator[str]:
    """The last ``lines``, then every line appended, until ``stop`` is set. Replica logs
    follow the replicas found at the start (Ray's log stream per file)."""
    source = source.check()
    for entry in read(ctx, rec, source, lines):
        yield f"-- {entry['title']}\n{entry['text']}"
    if source.app:
        yield from _follow_replicas(rec, _replica_files(rec, source.app), stop)
    elif source.controller:
        yield from _follow_file(paths.home() / "controller.log", stop, _mentions(rec.name))
    elif source.ingress and rec.ingress is not None:
        yield from _follow_file(Path(rec.ingress.log), stop)
    else:
        yield from _follow_node(ctx, rec, _node(rec, source.node or "head"), stop)


def _follow_node(ctx: Context, rec: ServiceRecord, node: NodeRecord, stop: threading.Event) -> Iterator[str]:
    prov = ctx.provider(rec)
    _, offset = prov.log_since(node, None)
    while not stop.is_set():
        text, offset = prov.log_since(node, offset)
        if text:
            yield text
        stop.wait(POLL_S)


def _follow_replicas(rec: ServiceRecord, files: list[tuple[NodeRecord, str]], stop: threading.Event) -> Iterator[str]:
    lines: queue.Queue[str] = queue.Queue()

    def stream(node: NodeRecord, name: str) -> None:
        api = serve.head_api(rec)
        params = {"node_id": node.node_id, "filename": name, "lines": 0, "interval": POLL_S, "filter_ansi_code": "true"}
        try:
            with httpx.stream(
                "GET",
                api.url + "/api/v0/logs/stream",
                params=params,
                headers=api.headers(),
                timeout=httpx.Timeout(10, read=None),
            ) as resp:
                for line in resp.iter_lines():
                    if stop.is_set():
                        return
                    lines.put(f"{node.name}: {line}\n")
        except httpx.HTTPError as exc:
            lines.put(f"-- {node.name}: {name}: the stream ended ({type(exc).__name__})\n")

    for node, name in files:
        threading.Thread(target=stream, args=(node, name), daemon=True).start()
    while not stop.is_set():
        try:
            yield lines.get(timeout=POLL_S)
        except queue.Empty:
            time.sleep(0)
