"""A hostile replica (a test app, not an example): asked with a list of secrets, it looks
for each of them everywhere it can read — every process's command line and environment
in its /proc, and every small file of the file system — and says where it found which,
with its uid, the processes it sees and the request headers it was given."""

from __future__ import annotations

import os
import time

from ray import serve
from starlette.requests import Request

SKIP = ("/proc", "/sys", "/dev", "/usr", "/lib", "/bin", "/sbin")
#: Where secrets lie first (its own home and temp dir, then the shared places), then the rest.
FIRST = ("/tmp", "/root", "/home", "/var", "/run", "/etc", "/opt", "/srv", "/work", "/dev/shm", "/")
MAX_FILE = 256 * 1024


def _search(needles: dict[str, bytes], budget_s: float) -> tuple[dict[str, list[str]], int]:
    found: dict[str, list[str]] = {k: [] for k in needles}
    seen = 0

    def look(data: bytes, where: str) -> None:
        for name, needle in needles.items():
            if needle in data:
                found[name].append(where)

    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as fh:
                    look(fh.read(), f"/proc/{pid}/{part}")
            except OSError:
                pass
    deadline = time.monotonic() + budget_s
    starts = [os.environ.get("HOME", "/"), os.environ.get("TMPDIR", "/"), *FIRST]
    done: set[str] = set()
    for start in dict.fromkeys(starts):
        for root, dirs, files in os.walk(start, onerror=lambda _e: None):
            if root in done:
                dirs[:] = []
                continue
            done.add(root)
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP or start == os.path.join(root, d)]
            seen += _read_all(root, files, look)
            if time.monotonic() > deadline:
                return found, seen
    return found, seen


def _read_all(root: str, files: list[str], look) -> int:
    seen = 0
    for f in files:
        path = os.path.join(root, f)
        try:
            if os.path.islink(path) or os.path.getsize(path) > MAX_FILE:
                continue
            with open(path, "rb") as fh:
                look(fh.read(), path)
            seen += 1
        except OSError:
            continue
    return seen


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5})
class Hostile:
    async def __call__(self, request: Request) -> dict:
        if request.method == "GET":
            return {"uid": os.getuid(), "headers": sorted(request.headers.keys())}
        body = await request.json()
        needles = {k: v.encode() for k, v in body["secrets"].items() if v}
        found, seen = _search(needles, float(body.get("budget_s", 60)))
        return {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "files_read": seen,
            "found": found,
            "headers": sorted(request.headers.keys()),
        }


app = Hostile.bind()
