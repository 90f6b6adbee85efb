"""The demo behind `make demo`: deploy examples/hello, show each worker answering, kill
the head under traffic and show the service carry on and the head come back, clean up.

Pass --keep to leave the service running (then: headway terminate hello).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
HEADWAY = str(Path(sys.executable).parent / "headway")


def sh(*args: str) -> subprocess.CompletedProcess:
    print(f"\n$ headway {' '.join(args)}", flush=True)
    proc = subprocess.run([HEADWAY, *args], text=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    return proc


def head_failure(st: dict) -> None:
    """Traffic to both workers while `headway chaos kill-head` SIGKILLs the head."""
    urls = [n["proxy_url"] for n in st["nodes"] if n["role"] == "worker"]
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def client(url: str) -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    counts["ok" if c.get(url + "/").status_code == 200 else "failed"] += 1
                except httpx.HTTPError:
                    counts["failed"] += 1

    threads = [threading.Thread(target=client, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        sh("chaos", "kill-head", "hello")
        print("\nwaiting for the controller to replace the head (requests keep flowing)...", flush=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(1)
            evs = json.loads(
                subprocess.run([HEADWAY, "events", "hello", "--json"], capture_output=True, text=True).stdout
            )
            if evs and evs[-1]["kind"] == "state" and evs[-1]["message"] == "head replaced":
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\nrequests during the head failure: {counts['ok']} answered, {counts['failed']} failed")
    sh("events", "hello")


def main() -> None:
    keep = "--keep" in sys.argv
    had_cloud = subprocess.run([HEADWAY, "cloud", "status"], capture_output=True).returncode == 0
    sh("deploy", "-f", str(HERE / "service.yaml"))
    try:
        st = json.loads(
            subprocess.run(
                [HEADWAY, "status", "hello", "--json"], capture_output=True, text=True, check=True
            ).stdout
        )
        print("\nasking every worker's proxy three times:")
        for node in (n for n in st["nodes"] if n["role"] == "worker"):
            for _ in range(3):
                t0 = time.perf_counter()
                reply = httpx.get(node["proxy_url"] + "/", timeout=10).json()
                print(
                    f"  {node['proxy_url']} -> {reply['message']!r} "
                    f"(pid {reply['pid']}, {1000 * (time.perf_counter() - t0):.1f} ms)"
                )
        sh("status", "hello")
        head_failure(st)
    finally:
        if not keep:
            sh("terminate", "hello")
            if not had_cloud:
                sh("cloud", "teardown")
        else:
            print("\nleft running; stop it with: headway terminate hello && headway cloud teardown")


if __name__ == "__main__":
    main()
