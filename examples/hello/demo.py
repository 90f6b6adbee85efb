"""The demo behind `make demo`: deploy examples/hello, ask its endpoint (both workers
answer), kill the head under traffic and show the service carry on and the head come
back, clean up.

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


def head_failure(endpoint: str, auth: dict[str, str]) -> None:
    """Traffic through the endpoint while `headway chaos kill-head` SIGKILLs the head."""
    urls = [endpoint] * 4
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def client(url: str) -> None:
        with httpx.Client(timeout=10, headers=auth) as c:
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


def show_metrics() -> None:
    """What a monitoring system scrapes after the failover."""
    url = subprocess.run([HEADWAY, "api", "url"], capture_output=True, text=True, check=True).stdout.strip()
    api_token = subprocess.run([HEADWAY, "api", "token"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"\n$ curl -H 'Authorization: Bearer …' {url}/metrics   (recoveries, head, backends)")
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {api_token}"}, timeout=30).text
    for line in text.splitlines():
        if line.startswith(
            (
                "headway_recoveries_total",
                "headway_last_recovery_seconds",
                "headway_head_up",
                "headway_ingress_backends_up",
            )
        ):
            print("  " + line)


def main() -> None:
    keep = "--keep" in sys.argv
    had_cloud = subprocess.run([HEADWAY, "cloud", "status"], capture_output=True).returncode == 0
    sh("deploy", "-f", str(HERE / "service.yaml"))
    try:
        st = json.loads(
            subprocess.run([HEADWAY, "status", "hello", "--json"], capture_output=True, text=True, check=True).stdout
        )
        token = subprocess.run([HEADWAY, "token", "hello"], capture_output=True, text=True, check=True).stdout
        auth = {"Authorization": f"Bearer {token.strip()}"}
        print(f"\nasking the endpoint {st['endpoint']} six times (with the token):")
        for _ in range(6):
            t0 = time.perf_counter()
            reply = httpx.get(st["endpoint"] + "/", headers=auth, timeout=10).json()
            ms = 1000 * (time.perf_counter() - t0)
            print(f"  -> {reply['message']!r} (pid {reply['pid']}, {ms:.1f} ms)")
        code = httpx.get(st["endpoint"] + "/", timeout=10).status_code
        print(f"  without the token: HTTP {code}")
        sh("status", "hello")
        url = subprocess.run([HEADWAY, "api", "url"], capture_output=True, text=True, check=True).stdout.strip()
        # The token stays out of the demo's output: `headway dashboard` prints the URL with it.
        print(f"\nweb dashboard: {url}/  ('headway dashboard' prints the link with your token)")
        head_failure(st["endpoint"], auth)
        show_metrics()
    finally:
        if not keep:
            sh("terminate", "hello")
            if not had_cloud:
                sh("cloud", "teardown")
        else:
            print("\nleft running; stop it with: headway terminate hello && headway cloud teardown")


if __name__ == "__main__":
    main()
