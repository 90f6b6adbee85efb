"""Many workers behind one endpoint, on real Ray and HAProxy: a 24-worker service deploys
with every worker's proxy in the endpoint's table, and a worker whose link is cut (its
processes left running, as a host powered off or unplugged) costs no GET under load and
no request waits longer than 5 s. The heaviest deploy of the suite (~7 GB, 24 raylets), so
one test does both."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Load, read_record
from test_ingress import _show_stat

from headway.system import netns

pytestmark = pytest.mark.integration

WORKERS = 24


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_24_workers_behind_one_endpoint_and_a_link_cut_under_get_load(cli):
    name = "t-many"
    spec = cli.write_spec(
        name,
        applications=[
            {
                "name": "hello",
                "import_path": "hello:build",
                "route_prefix": "/",
                # One replica on every worker: Serve runs a proxy only where a replica is.
                "deployments": [{"name": "Hello", "num_replicas": WORKERS, "max_replicas_per_node": 1}],
            }
        ],
        compute_config={
            "head_node": {"resources": {}},
            "worker_nodes": [{"name": "worker", "resources": {"CPU": 1}, "count": WORKERS}],
        },
    )
    t0 = time.monotonic()
    cli.run("deploy", "-f", str(spec), check=True)
    deployed_s = time.monotonic() - t0
    st = cli.status(name)
    endpoint = st["endpoint"]
    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    rec = read_record(cli.home, name)
    workers = [n for n in rec["nodes"] if n["role"] == "worker"]
    assert len(workers) == WORKERS
    sock = rec["ingress"]["socket"]
    addrs = {f"{n['ip']}:{n['ports'].get('proxy') or rec['serve_port']}" for n in workers}
    # Every worker's proxy is in the table and passes its checks.
    _wait(lambda: addrs <= {a for a, s in _show_stat(sock).items() if s.startswith("UP")}, 120, "all 24 UP")

    victim = workers[WORKERS // 2]
    victim_addr = f"{victim['ip']}:{victim['ports'].get('proxy') or rec['serve_port']}"
    with Load([endpoint] * 6, headers=auth, timeout_s=30) as load:
        _wait(lambda: len({r["node"] for r in load.replies}) >= WORKERS // 2, 60, "answers from many workers")
        before = load.ok
        netns.set_link(victim["netns"], up=False)
        cut, cut_at = time.monotonic(), time.time()
        try:
            _wait(lambda: not _show_stat(sock).get(victim_addr, "DOWN").startswith("UP"), 10, "the cut worker DOWN")
            out_s = time.monotonic() - cut
            # Long enough for every request in flight on it to have been retried elsewhere.
            _wait(lambda: load.ok > before + 300 and time.monotonic() - cut > 8, 60, "load after the cut")
        finally:
            netns.set_link(victim["netns"], up=True)
    nodes = {r["node"] for r in load.replies}
    print(
        f"\n{WORKERS} workers deployed in {deployed_s:.0f} s; link cut: out of rotation in {out_s:.2f} s; "
        f"{load.report()}; answers from {len(nodes)} workers; "
        f"slow (s after the cut, took): {[(round(a - cut_at, 1), round(t, 1)) for a, t in load.slow]}"
    )
    logged = [line for line in Path(rec["ingress"]["log"]).read_text(errors="replace").splitlines() if '"GET ' in line]
    print("the endpoint's log of the retried requests:", *logged[-8:], sep="\n  ")
    assert load.failed == 0, load.errors[:10]
    assert load.max_latency <= 5.0, load.max_latency
    assert out_s <= 2.0, out_s
    assert len(nodes) >= WORKERS - 2, sorted(nodes)
