"""A backend host that vanishes without a reset (its link cut, its processes left running)
under load through a real HAProxy rendered by headway (no Ray): how long requests in flight
on it wait, with the endpoint's kernel-level limits on server connections (``option
srvtcpka`` + ``tcp-ut``) and without them. Each backend is a host of its own: a network
namespace (``hw`` prefix) with a veth to this machine. Needs root.

    .venv/bin/python -m bench.vanished_host [--runs N] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import report
from headway.plan import haproxy_config as hc
from headway.system import binaries, netns

#: The service's request timeout here: what a request in flight waited before (default 60 s).
REQUEST_TIMEOUT_S = 20.0
GET_CLIENTS, POST_CLIENTS = 4, 2

_BACKEND = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        if self.headers.get("content-length"):
            self.rfile.read(int(self.headers["content-length"]))
        if self.path != "/-/healthz":
            time.sleep(float(sys.argv[2]))  # requests are in flight when the link goes
        # One write: a response cut between its header and its body can be retried by no one.
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    do_GET = do_POST = do_PUT = answer

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            pass

    def log_message(self, *a):
        pass

ThreadingHTTPServer((sys.argv[1], 8000), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _status(sock: str) -> dict[str, str]:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            s.sendall(b"show stat\n")
            out = b""
            while data := s.recv(65536):
                out += data
    except OSError:
        return {}  # not listening yet
    return {st.slot: st.status for st in hc.parse_stats(out.decode())}


def _without_limits(cfg: str) -> str:
    """The configuration as it was before the limits (for the comparison rows)."""
    lines = [line for line in cfg.splitlines() if "srvtcpka" not in line]
    return "\n".join(lines).replace(f" tcp-ut {hc.VANISHED_UNACKED_S}s", "") + "\n"


@dataclass(frozen=True)
class Lab:
    """Two backend hosts behind a real endpoint: its URL, token header and admin socket,
    and each host's network namespace (``hosts[0]`` is the one a test cuts off)."""

    url: str
    auth: dict[str, str]
    sock: str
    hosts: list[str]
    backends: list[str]  # each host's ``ip:port``, in its slot

    def cut(self, index: int = 0) -> None:
        """The host's link goes down: no reset, no answer, its processes left running."""
        _ip("-n", self.hosts[index], "link", "set", "eth0", "down")


@contextlib.contextmanager
def lab(request_timeout_s: float, answer_s: float = 0.3, limits: bool = True, **settings: object) -> Iterator[Lab]:
    """Two backend hosts (network namespaces with a veth each, answering every request after
    ``answer_s``) behind the endpoint's HAProxy as headway renders it (``limits``: as it
    is, else without the vanished-host limits), both passed their checks; everything
    removed on the way out."""
    tag = os.getpid() % 200
    net = f"10.252.{tag}"  # two /30 links: this machine's end, the host's end
    hosts = {f"hwvh{tag}a": (f"{net}.1", f"{net}.2"), f"hwvh{tag}b": (f"{net}.5", f"{net}.6")}
    children: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="hw-vanish-") as d:
        try:
            Path(d, "backend.py").write_text(_BACKEND)
            for ns, (here, there) in hosts.items():
                _ip("netns", "add", ns)
                _ip("link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("addr", "add", f"{here}/30", "dev", ns)
                _ip("link", "set", ns, "up")
                _ip("-n", ns, "addr", "add", f"{there}/30", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                argv = ["ip", "netns", "exec", ns, sys.executable, str(Path(d, "backend.py")), there, str(answer_s)]
                children.append(subprocess.Popen(argv))
            sock, port = str(Path(d, "admin.sock")), _free_port()
            conf = hc.IngressSettings(
                bind="127.0.0.1",
                port=port,
                stats_socket=sock,
                tokens=("t0k",),
                request_timeout_s=request_timeout_s,
                **settings,  # type: ignore[arg-type]
            )
            slots = hc.empty_slots()
            slots[0], slots[1] = (f"{there}:8000" for _, there in hosts.values())
            cfg = hc.render(conf, slots)
            Path(d, "h.cfg").write_text(cfg if limits else _without_limits(cfg))
            haproxy = [binaries.haproxy(), "-f", str(Path(d, "h.cfg"))]
            children.append(subprocess.Popen(haproxy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 30
            while [_status(sock).get(slot) for slot in ("s1", "s2")] != ["UP", "UP"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the backends never passed their health checks")
                time.sleep(0.1)
            yield Lab(f"http://127.0.0.1:{port}/", {"authorization": "Bearer t0k"}, sock, list(hosts), slots[:2])
        finally:
            for child in children:
                child.kill()
                child.wait()
            for ns in hosts:
                netns.delete(ns)
                subprocess.run(["ip", "link", "del", ns], capture_output=True)


def one_run(limits: bool) -> dict:
    """Two backend hosts, load through the endpoint, one host's link cut: what each request saw."""
    stop = threading.Event()
    done: list[tuple[str, float, float, int | str]] = []
    with lab(REQUEST_TIMEOUT_S, limits=limits) as the:
        try:

            def client(method: str) -> None:
                with httpx.Client(timeout=REQUEST_TIMEOUT_S + 30) as c:
                    while not stop.is_set():
                        sent = time.monotonic()
                        body = b"x" * 8 if method == "POST" else None
                        try:
                            code: int | str = c.request(method, the.url, headers=the.auth, content=body).status_code
                        except httpx.HTTPError as exc:
                            code = type(exc).__name__
                        done.append((method, sent, time.monotonic() - sent, code))

            methods = ("GET",) * GET_CLIENTS + ("POST",) * POST_CLIENTS
            threads = [threading.Thread(target=client, args=(m,), daemon=True) for m in methods]
            for t in threads:
                t.start()
            time.sleep(2)
            cut_at = time.monotonic()
            the.cut(0)
            out_at = None
            while time.monotonic() - cut_at < 8:
                if out_at is None and _status(the.sock).get("s1", "").startswith("DOWN"):
                    out_at = time.monotonic()
                time.sleep(0.05)
            stop.set()
            for t in threads:
                t.join(timeout=REQUEST_TIMEOUT_S + 40)
        finally:
            stop.set()
    hit = [r for r in done if r[2] > 1.0]  # each request takes 0.3 s: these met the dead host
    return {
        "out_s": None if out_at is None else out_at - cut_at,
        "requests": len(done),
        "failed": sum(r[3] != 200 for r in done),
        "get_hit": sorted((round(r[2], 1), r[3]) for r in hit if r[0] == "GET"),
        "post_hit": sorted((round(r[2], 1), r[3]) for r in hit if r[0] == "POST"),
        "waited_timeout": sum(r[2] >= REQUEST_TIMEOUT_S - 0.5 for r in done),
    }


def markdown(rows: list[tuple[bool, dict]]) -> str:
    def cell(hit: list[tuple[float, int | str]]) -> str:
        return ", ".join(f"{s:.1f} s {'ok' if c == 200 else c}" for s, c in hit) or "—"

    out = [
        report.header(
            f"two backend hosts (network namespaces), {GET_CLIENTS} GET and {POST_CLIENTS} POST clients "
            f"without retries through the endpoint, each request 0.3 s, one host's link cut, request "
            f"timeout {REQUEST_TIMEOUT_S:g} s. Each request that met the dead host, with its time and outcome"
        ),
        "",
        "| endpoint | out of rotation | requests / failed | GETs that met it | POSTs that met it |",
        "|---|---|---|---|---|",
    ]
    for limits, r in rows:
        name = "keepalive + tcp-ut (now)" if limits else "without them (before)"
        out_s = "—" if r["out_s"] is None else f"{r['out_s']:.1f} s"
        out.append(
            f"| {name} | {out_s} | {r['requests']} / {r['failed']} | {cell(r['get_hit'])} | {cell(r['post_hit'])} |"
        )
    after = [r for limits, r in rows if limits]
    answered = [s for r in after for s, c in r["get_hit"] if c == 200]
    gets_waited = sum(s >= REQUEST_TIMEOUT_S - 0.5 for r in after for s, _ in r["get_hit"])
    posts = [(s, c) for r in after for s, c in r["post_hit"]]
    timed_out = sum(c == 504 and s >= REQUEST_TIMEOUT_S - 0.5 for s, c in posts)
    out += [
        "",
        f"With the limits, over {len(after)} runs: {len(answered)} GETs that met the dead host were answered by "
        f"the other, in median {statistics.median(answered or [0]):.1f} s, the slowest "
        f"{max(answered or [0]):.1f} s; {gets_waited} GETs waited the whole timeout. Of {len(posts)} POSTs that "
        f"met it (sent once, never again), {timed_out} got a 504 after the request timeout.",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6, help="runs with the limits (two more run without)")
    ap.add_argument("--markdown", help="rewrite the vanished-host section of this file (docs/benchmarks.md)")
    args = ap.parse_args()
    rows = [(False, one_run(False)) for _ in range(2)] + [(True, one_run(True)) for _ in range(args.runs)]
    report.publish(markdown(rows), args.markdown, "vanished-host")


if __name__ == "__main__":
    main()
