"""The log files of a node, wherever it runs: its own log (``ray start``'s output and its
supervisor's) and Ray's Serve logs in its session (replicas, proxy, the Serve controller),
read as the last bytes of each or as what each gained since an offset.

Read from the files, not through Ray's log API on the head: they are there while the
head is down, which is when they are wanted.
"""

from __future__ import annotations

import glob
import os
import shlex

#: What one file gives at most per read (the tail of a long log, or a burst when following).
MAX_BYTES = 256 * 1024
#: A read: path -> (text, the offset where it ends, the file's modification time)
Read = dict[str, tuple[str, int, float]]
_SEP = "\x1e"


def serve_dir(temp_dir: str) -> str:
    """Ray's Serve logs of the node whose temp dir this is."""
    return f"{temp_dir}/session_latest/logs/serve"


def _start(size: int, offset: int | None, max_bytes: int) -> int:
    """Tail mode (no offset): the last ``max_bytes``; else the offset, or 0 if the file shrank."""
    if offset is None:
        return max(0, size - max_bytes)
    return offset if offset <= size else 0


def _whole_lines(data: str, cut: bool) -> str:
    """A tail that starts mid-file starts mid-line: drop that first partial line."""
    return data.split("\n", 1)[1] if cut and "\n" in data else ("" if cut else data)


def read_local(log: str, temp_dir: str, offsets: dict[str, int] | None, max_bytes: int = MAX_BYTES) -> Read:
    """A node's own ``log`` and its Serve logs (under ``temp_dir``), on this machine."""
    serve = sorted(glob.glob(glob.escape(serve_dir(temp_dir)) + "/*.log"))
    return read_files([log, *serve], offsets, max_bytes)


def read_files(files: list[str], offsets: dict[str, int] | None, max_bytes: int = MAX_BYTES) -> Read:
    """Files on this machine, read as ``NodeProvider.read_logs`` says (tails, or from offsets)."""
    out: Read = {}
    for path in files:
        try:
            st = os.stat(path)
            start = _start(st.st_size, None if offsets is None else offsets.get(path, 0), max_bytes)
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(max_bytes).decode(errors="replace")
        except OSError:
            continue
        out[path] = (_whole_lines(data, offsets is None and start > 0), start + len(data.encode()), st.st_mtime)
    return out


def remote_script(log: str, temp_dir: str, offsets: dict[str, int] | None, max_bytes: int = MAX_BYTES) -> str:
    """A node's files, read on its host (``files_script``)."""
    return files_script(f"{shlex.quote(log)} {shlex.quote(serve_dir(temp_dir))}/*.log", offsets, max_bytes)


def files_script(words: str, offsets: dict[str, int] | None, max_bytes: int = MAX_BYTES) -> str:
    """One shell command for a host: for each file ``words`` names (quoted paths, globs) a
    header (``\x1e size start mtime path``) and its bytes from ``start``."""
    cases = "".join(f"{shlex.quote(p)}) o={int(o)};; " for p, o in (offsets or {}).items())
    fresh = "-1" if offsets is None else "0"  # a file not read before: its tail, or all of a new one
    return (
        f"for f in {words}; do "
        '[ -f "$f" ] || continue; s=$(stat -c %s "$f"); m=$(stat -c %Y "$f"); '
        f'case "$f" in {cases}*) o={fresh};; esac; '
        f'if [ "$o" -lt 0 ]; then o=$(( s > {int(max_bytes)} ? s - {int(max_bytes)} : 0 )); fi; '
        'if [ "$o" -gt "$s" ]; then o=0; fi; '
        f'printf \'{_SEP}%s %s %s %s\\n\' "$s" "$o" "$m" "$f"; '
        f'tail -c +$((o + 1)) "$f" | head -c {int(max_bytes)}; done'
    )


def parse_remote(out: str, tail: bool) -> Read:
    """What ``remote_script`` printed."""
    read: Read = {}
    for chunk in out.split(_SEP)[1:]:
        header, _, data = chunk.partition("\n")
        try:
            _size, start, mtime, path = header.split(" ", 3)
            first = int(start)
        except ValueError:
            continue
        read[path] = (_whole_lines(data, tail and first > 0), first + len(data.encode()), float(mtime))
    return read
