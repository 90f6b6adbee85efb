"""Log lines from many files made one stream: each line's time (its own, or the one of the
line it continues: a traceback), its source (the node it came from), merged by time and
cut at ``--since``. Pure text.

The formats met: Ray's and Serve's (``INFO 2026-12-07 05:20:00,123 ...``, local time),
ISO-8601 (``2026-12-07T05:20:00.123``), HAProxy's (``[07/Dec/2026:05:20:00.123]``).
A file whose lines carry no time at all (``ray start``'s output in a node's own log)
takes its last modification time for every line: the time it was last written.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?")
_HAPROXY = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\]")
#: Where in a line a time is looked for: near its start (a message may quote a date).
_HEAD = 64
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Line:
    t: float
    source: str
    text: str


def _epoch(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None) -> float | None:
    try:
        base = time.mktime((y, mo, d, h, mi, s, 0, 0, -1))  # local time, as Ray and HAProxy write
    except (OverflowError, ValueError):
        return None
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def timestamp(line: str) -> float | None:
    """The time a line says it was written, or None."""
    head = line[:_HEAD]
    m = _ISO.search(head)
    if m:
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        return _epoch(y, mo, d, h, mi, s, m.group(7))
    m = _HAPROXY.search(head)
    if m and m.group(2) in _MONTHS:
        d, y, h, mi, s = (int(m.group(i)) for i in (1, 3, 4, 5, 6))
        return _epoch(y, _MONTHS[m.group(2)], d, h, mi, s, m.group(7))
    return None


def stamp(text: str, source: str, written_at: float) -> list[Line]:
    """Each line of a file with its time: its own; else the previous line's (a traceback
    continues the line that logged it); before the first dated line, or in a file with
    none, ``written_at`` (its modification time) — capped so that no line comes after it."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    times = [timestamp(ln) for ln in lines]
    first = next((t for t in times if t is not None), None)
    out, current = [], min(first, written_at) if first is not None else written_at
    for ln, t in zip(lines, times, strict=True):
        if t is not None:
            current = t
        out.append(Line(current, source, ln))
    return out


def merge(streams: list[list[Line]], since: float | None = None, limit: int | None = None) -> list[Line]:
    """One stream in time order (a source's own order kept for equal times), from ``since``,
    the last ``limit`` lines."""
    merged = sorted((ln for s in streams for ln in s), key=lambda ln: ln.t)
    if since is not None:
        merged = [ln for ln in merged if ln.t >= since]
    return merged[-limit:] if limit else merged


def render(line: Line) -> str:
    """``2026-12-07 05:20:00.123 worker-1 | the line`` (local time, ms)."""
    when = dt.datetime.fromtimestamp(line.t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"{when} {line.source} | {line.text}"


def duration_s(text: str) -> float:
    """``--since``: ``90`` or ``90s``, ``10m``, ``2h``, ``1d``; ValueError with what is wrong."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise ValueError(f"'{text}' is not a duration: give a number with s, m, h or d (e.g. 10m, 2h, 90s)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]
