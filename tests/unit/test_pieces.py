"""Pure pieces: route conflicts, Serve config, packaging, process markers."""

import ipaddress
import os
import subprocess
import sys
import time
import zipfile

import pytest

from headway.cluster import serve
from headway.cluster.package import package_working_dir
from headway.model.spec_load import parse_spec
from headway.system import netns, procs

ROUTES = """default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
10.213.0.0/24 dev hwbr0 proto kernel scope link src 10.213.0.1
"""


def test_route_conflict_detected():
    sub = netns.Subnet(ipaddress.IPv4Network("192.0.2.0/25"))
    assert "192.0.2.0/24" in netns.route_conflict(sub, ROUTES)


def test_own_bridge_is_no_conflict():
    assert netns.route_conflict(netns.Subnet.configured(), ROUTES) is None


def test_subnet_addresses(monkeypatch):
    monkeypatch.setenv("HEADWAY_SUBNET", "10.9.9.0/29")
    s = netns.Subnet.configured()
    assert s.bridge_ip == "10.9.9.1"
    assert s.host_ips() == ["10.9.9.2", "10.9.9.3", "10.9.9.4", "10.9.9.5", "10.9.9.6"]


def test_veth_names_fit_the_kernel_limit():
    assert len(netns._veth_name("hw-" + "a" * 40 + ".worker-12")) <= 15


def test_serve_config():
    spec = parse_spec(
        {
            "name": "s",
            "env_vars": {"A": "1"},
            "http_options": {"request_timeout_s": 7},
            "applications": [
                {"name": "a", "import_path": "m:a", "args": {"x": 1}},
                {
                    "name": "b",
                    "import_path": "m:b",
                    "route_prefix": "/b",
                    "runtime_env": {"working_dir": "file:///other.zip"},
                },
            ],
        }
    )
    cfg = serve.serve_config(spec, "file:///wd.zip", 8000)
    assert cfg["proxy_location"] == "EveryNode"
    assert cfg["http_options"] == {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 7}
    a, b = cfg["applications"]
    assert a["runtime_env"] == {"working_dir": "file:///wd.zip", "env_vars": {"A": "1"}}
    assert a["args"] == {"x": 1}
    assert b["runtime_env"]["working_dir"] == "file:///other.zip"


def test_package_is_content_addressed(tmp_path):
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "m.py").write_text("x = 1\n")
    (src / "__pycache__" / "m.pyc").write_bytes(b"junk")
    out = tmp_path / "out"
    uri1 = package_working_dir(str(src), out, [])
    assert uri1 == package_working_dir(str(src), out, [])
    names = zipfile.ZipFile(uri1.removeprefix("file://")).namelist()
    assert names == ["working_dir/m.py"]
    (src / "m.py").write_text("x = 2\n")
    uri2 = package_working_dir(str(src), out, [])
    assert uri2 != uri1
    assert sorted(os.listdir(out)) == [os.path.basename(uri2)]  # old package removed


def test_marker_finds_exactly_our_processes():
    env = dict(os.environ, HEADWAY_NODE="unit-abc/w-1/1")
    other = dict(os.environ, HEADWAY_NODE="unit-abcd/w-1/1")
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    theirs = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=other)
    try:
        time.sleep(0.2)
        assert procs.pids_with_marker("unit-abc") == [mine.pid]
        assert procs.pids_with_marker("unit-abc/w-1") == [mine.pid]
        started = procs.start_time(mine.pid)
        assert procs.same_process(mine.pid, started)
        assert not procs.same_process(mine.pid, started + 1)
        procs.kill_pids([mine.pid])
        mine.wait(5)
        assert procs.pids_with_marker("unit-abc") == []
        assert theirs.poll() is None
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_wait_running_partial_needs_a_replica_of_every_deployment(monkeypatch):
    """A rollout's new cluster may start smaller than its version: DEPLOYING is enough once
    every deployment runs a replica — not while Serve has listed none yet."""
    from headway.cluster import serve

    def app(status: str, running: int, listed: bool = True) -> dict:
        deps = {"D": {"replicas": [{"state": "RUNNING", "node_id": "n1"}] * running, "target_num_replicas": 2}}
        return {"applications": {"a": {"status": status, "deployments": deps if listed else {}}}}

    seen = iter([app("DEPLOYING", 0, listed=False), app("DEPLOYING", 0), app("DEPLOYING", 1)])
    monkeypatch.setattr(serve, "get_applications", lambda head: next(seen))
    monkeypatch.setattr(serve.time, "sleep", lambda s: None)
    assert serve.wait_running(None, ["a"], 10, partial_ok=True) == {"a": "DEPLOYING"}
    monkeypatch.setattr(serve, "get_applications", lambda head: app("DEPLOYING", 1))
    with pytest.raises(serve.ServeError):
        serve.wait_running(None, ["a"], 0.01)  # without partial_ok: RUNNING or the timeout
