"""A service's logs, wherever they live: its nodes' and the endpoint's, as one stream
merged by time (``log_stream``: a node's own output and its Serve logs, replicas included,
read from the files, so with the head down too), and the control host's own — the
controller's lines about the service and the endpoint's HAProxy log (abnormal requests only).

``read`` gives the last lines once; ``follow`` goes on yielding what is appended until
stopped (the CLI runs on the control host, so it follows without the API in between).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from headway.cluster.local_provider import read_since, tail_file
from headway.control import log_stream
from headway.control.context import Context
from headway.model.errors import InputError
from headway.plan import log_lines
from headway.state.records import ServiceRecord
from headway.system import paths

POLL_S = 0.5
MAX_LINES = 20000


def lines_wanted(lines: int | None, since_s: float | None) -> int:
    """``--lines`` as given; else all of a ``--since`` window (up to the cap), or 100."""
    return lines if lines is not None else (MAX_LINES if since_s else 100)


def since_of(text: str | None) -> float | None:
    """``--since 10m`` in seconds; a clear error for anything else."""
    if not text:
        return None
    try:
        return log_lines.duration_s(text)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None


@dataclass(frozen=True)
class Source:
    """Which log: the service's stream (all of it, one ``node``'s or one ``app``'s part of
    it, from ``since_s`` ago), or the ``controller``'s or the ``ingress``'s own."""

    node: str | None = None
    app: str | None = None
    controller: bool = False
    ingress: bool = False
    since_s: float | None = None

    def check(self) -> Source:
        chosen = [x for x in (self.node, self.app, self.controller or None, self.ingress or None) if x]
        if len(chosen) > 1:
            raise InputError("choose one log: a node, an application, the controller or the ingress")
        return self

    @property
    def stream(self) -> log_stream.Filter | None:
        return None if self.controller or self.ingress else log_stream.Filter(self.node, self.app)


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


def read(ctx: Context, rec: ServiceRecord, source: Source, lines: int = 100) -> list[dict[str, str]]:
    """The last ``lines`` of the chosen log: one entry (title, text)."""
    source, lines = source.check(), max(1, min(lines, MAX_LINES))
    filt = source.stream
    if filt is not None:
        got = log_stream.read(ctx, rec, filt, source.since_s, lines)
        return [{"title": _title(rec, source), "text": "".join(ln + "\n" for ln in got) or "(nothing logged)\n"}]
    if source.controller:
        path = paths.home() / "controller.log"
        return [
            {
                "title": f"controller ({path}), lines about {rec.name}",
                "text": tail_file(path, lines, _mentions(rec.name)),
            }
        ]
    if rec.ingress is None:
        raise InputError(f"service {rec.name} has no endpoint yet")
    return [
        {"title": f"ingress ({rec.ingress.log}): abnormal requests only", "text": tail_file(rec.ingress.log, lines)}
    ]


def _title(rec: ServiceRecord, source: Source) -> str:
    part = f"node {source.node}" if source.node else f"application {source.app}" if source.app else "every node"
    since = f", the last {source.since_s:g} s" if source.since_s else ""
    return f"{rec.name}: {part}{since} (time, node | line)"


def follow(ctx: Context, rec: ServiceRecord, source: Source, lines: int, stop: threading.Event) -> Iterator[str]:
    """The last ``lines``, then every line appended, until ``stop`` is set."""
    source = source.check()
    filt = source.stream
    if filt is not None:
        log_stream.check(rec, filt)  # a wrong node or application: an error before the first line
        yield f"-- {_title(rec, source)}\n"
        yield from log_stream.follow(ctx, rec, filt, source.since_s, lines, stop)
        return
    for entry in read(ctx, rec, source, lines):
        yield f"-- {entry['title']}\n{entry['text']}"
    if source.controller:
        yield from _follow_file(paths.home() / "controller.log", stop, _mentions(rec.name))
    elif rec.ingress is not None:
        yield from _follow_file(Path(rec.ingress.log), stop)
