"""The demo behind `make demo`: deploy examples/hello, show each worker answering, clean up.

Pass --keep to leave the service running (then: headway terminate hello).
"""

from __future__ import annotations

import json
import subprocess
import sys
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
    finally:
        if not keep:
            sh("terminate", "hello")
            if not had_cloud:
                sh("cloud", "teardown")
        else:
            print("\nleft running; stop it with: headway terminate hello && headway cloud teardown")


if __name__ == "__main__":
    main()
