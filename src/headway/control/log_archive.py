"""What is kept of a retired node's logs (a replaced head or worker, a node scaled away,
a rollout's old cluster) until its service is terminated: the last part of each of its
log files, copied to the control host before the node's host and temp dir go.

``services/<service>/logs/retired/<node>.<when>/<file>``, each file's modification time
kept (its lines without a time of their own take it); at most ``MAX_FILE_BYTES`` per
file and ``MAX_TOTAL_BYTES`` per service, the oldest copies dropped first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from headway.state.records import NodeRecord, ServiceRecord
from headway.system import paths

MAX_FILE_BYTES = 256 * 1024
MAX_TOTAL_BYTES = 32 * 2**20
RETIRED = "(retired)"

log = logging.getLogger("headway.log_archive")


def root(service: str) -> Path:
    return paths.service_dir(service) / "logs" / "retired"


def label_of(rec: ServiceRecord, node: NodeRecord) -> str:
    """A node's name in the logs; a rollout's new cluster's nodes say which (``worker-1@r3``)."""
    return f"{node.name}@{rec.name.removeprefix(rec.parent + '_')}" if rec.parent else node.name


def retire(prov: object, rec: ServiceRecord, node: NodeRecord, keep_logs: bool = True) -> None:
    """Remove a node from its host (``prov.remove``), its logs kept here first."""
    if keep_logs:
        keep(prov, rec.service, label_of(rec, node), node)
    prov.remove(node)  # type: ignore[attr-defined]


def keep(prov: object, service: str, label: str, node: NodeRecord) -> None:
    """Copy the node's logs here (never fails the removal it precedes)."""
    try:
        got = prov.read_logs(node, None)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - a host that does not answer keeps nothing
        log.info("%s: the logs of %s not kept (%s)", service, label, type(exc).__name__)
        return
    here = str(paths.service_dir(service))
    dest = root(service) / f"{label}.{int(time.time() * 1000)}"
    for path, (text, _, mtime) in got.items():
        if path.startswith(here) or not text:
            continue  # a node log on the control host stays where it is (its successor appends to it)
        dest.mkdir(parents=True, exist_ok=True)
        f = dest / os.path.basename(path)
        paths.write_private(f, text.encode()[-MAX_FILE_BYTES:].decode(errors="replace"))
        os.utime(f, (mtime, mtime))
    _prune(service)


def _prune(service: str) -> None:
    copies = sorted(root(service).glob("*"), key=lambda d: d.stat().st_mtime) if root(service).exists() else []
    sizes = {d: sum(f.stat().st_size for f in d.glob("*")) for d in copies}
    total = sum(sizes.values())
    for d in copies:
        if total <= MAX_TOTAL_BYTES:
            break
        shutil.rmtree(d, ignore_errors=True)
        total -= sizes[d]


def files(service: str) -> list[tuple[str, str]]:
    """(source label, path) of every kept file: ``worker-1 (retired)``."""
    out = []
    if root(service).exists():
        for d in sorted(root(service).iterdir()):
            label = f"{d.name.rsplit('.', 1)[0]} {RETIRED}"
            out += [(label, str(f)) for f in sorted(d.glob("*"))]
    return out


def labels(service: str) -> list[str]:
    return sorted({label for label, _ in files(service)})


def forget(service: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root(service))
