"""From a service YAML to a running Serve service whose GCS lives in the store — and back to nothing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import HELLO, read_record

from headway.cluster.local_provider import free_ports
from headway.store import storage, store_tls
from headway.system import netns, procs

pytestmark = pytest.mark.integration


def _cloud_client(cli):
    cloud = json.loads((cli.home / "cloud" / "cloud.json").read_text())
    pw = (cli.home / "cloud" / "store.password").read_text().strip()
    primary = next(s for s in cloud["store"] if s["role"] == "primary")
    return storage.connect(storage.StoreAddress("127.0.0.1", primary["port"], password=pw)), cloud, pw


def _ask(url: str) -> dict:
    r = httpx.get(url + "/", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _assert_service_gone(cli, st: dict, cluster_id: str, client) -> None:
    assert procs.pids_with_marker(cluster_id) == [], "processes of the service survived terminate"
    if st["storage"].get("namespace"):
        assert storage.namespace_keys(client, st["storage"]["namespace"]) == []
    assert not [n for n in netns.list_namespaces() if n.startswith(f"hw-{st['name']}.")]
    assert read_record(cli.home, st["name"]) is None
    assert st["name"] not in cli.run("list", "--json", check=True).stdout
    temp_root = Path(cli.env["HEADWAY_TMP"])
    assert not [p for p in temp_root.glob(f"{cluster_id}-*")], "node temp dirs survived"


def _cluster_id(cli, name: str) -> str:
    return cli.record(name)["cluster_id"]


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_deploy_in_namespaces_serves_and_terminates_cleanly(cli):
    """Deployed from an unchanged `serve build` output of examples/hello (``--name`` and
    ``--working-dir`` given): headway's defaults make it the hello service."""
    name = "t-hello"
    spec = cli.home / "serve_build.yaml"
    shutil.copy(Path(__file__).parents[1] / "unit" / "data" / "serve_build.yaml", spec)
    cli.services += [name, "t-other"]
    # Leftovers: one of this service from a "crashed run", one of another service.
    subprocess.run(["ip", "netns", "add", f"hw-{name}.worker-9"], check=True)
    subprocess.run(["ip", "netns", "add", "hw-t-other.head"], check=True)
    try:
        t0 = time.monotonic()
        out = cli.run("deploy", "-f", str(spec), "--name", name, "--working-dir", str(HELLO / "app"), check=True)
        print(f"deploy took {time.monotonic() - t0:.1f} s")
        assert "RUNNING" in out.stdout and "endpoint" in out.stdout
        assert "note: http_options host/port (0.0.0.0:8000): headway decides where the proxies listen" in out.stdout
        namespaces = netns.list_namespaces()
        assert f"hw-{name}.worker-9" not in namespaces, "leftover namespace was not removed"
        assert "hw-t-other.head" in namespaces, "another service's namespace was touched"
    finally:
        netns.delete("hw-t-other.head")

    st = cli.status(name)
    assert st["state"] == "RUNNING"
    assert st["gcs_fault_tolerance"] is True
    roles = sorted(n["role"] for n in st["nodes"])
    assert roles == ["head", "worker", "worker"]
    assert all(n["alive"] for n in st["nodes"])
    ips = [n["ip"] for n in st["nodes"]]
    subnet_prefix = cli.env["HEADWAY_SUBNET"].rsplit(".", 1)[0] + "."
    assert len(set(ips)) == 3 and all(ip.startswith(subnet_prefix) for ip in ips)
    assert all(n["netns"].startswith(f"hw-{name}.{n['name']}-") for n in st["nodes"])
    assert [a["status"] for a in st["applications"]] == ["RUNNING"]
    assert "***" in st["storage"]["address"]

    # 2. each worker's own proxy answers, from its own node
    workers = [n for n in st["nodes"] if n["role"] == "worker"]
    assert "proxy_url" not in json.dumps(st) and "endpoints" not in st  # status advertises the endpoint only
    urls = cli.proxy_urls(name)
    answers = {w["name"]: _ask(urls[w["name"]]) for w in workers}
    for w in workers:
        assert answers[w["name"]]["node"] == w["name"]
        assert answers[w["name"]]["node_ip"] == w["ip"]

    # 3. the store holds this service's namespace and no other
    client, _, pw = _cloud_client(cli)
    ns = st["storage"]["namespace"]
    assert storage.namespaces_in_store(client) == {ns}
    tables = {k.decode().split("@", 1)[1] for k in storage.namespace_keys(client, ns)}
    assert {"NODE", "KV", "ACTOR"} <= tables
    assert pw not in json.dumps(st) and pw not in cli.run("status", name).stdout

    # the nodes are really separate hosts: every process of the service sits in a namespace
    cluster_id = _cluster_id(cli, name)
    assert procs.pids_with_marker(cluster_id)
    for n in st["nodes"]:
        assert netns.pids(n["netns"]), f"no process in {n['netns']}"

    # 4. terminate leaves nothing
    cli.run("terminate", name, check=True)
    _assert_service_gone(cli, st, cluster_id, client)
    cloud_rec = json.loads((cli.home / "cloud" / "cloud.json").read_text())
    cli.run("cloud", "teardown", check=True)
    client.close()
    assert not netns.bridge_exists(cli.env["HEADWAY_BRIDGE"])
    assert not any(procs.same_process(s["pid"], s["pid_started"]) for s in cloud_rec["store"])


def test_loopback_mode_with_and_without_ft(cli):
    cli.env["HEADWAY_MODE"] = "loopback"
    ft = cli.write_spec("t-loop")
    (fixed,) = free_ports(1, set())
    made = store_tls.ensure(cli.home / "tls", ["localhost"])  # a CA and a certificate for the endpoint
    noft = cli.write_spec(
        "t-noft",
        # a fixed endpoint port, HTTPS with files named relative to the YAML, one name (behind the port's door)
        endpoint={"port": fixed, "hostnames": ["localhost"], "tls": {"cert": "tls/store.pem", "key": "tls/store.key"}},
        ray_gcs_external_storage_config={"enabled": False},
        compute_config={"worker_nodes": [{"name": "w", "resources": {"CPU": 1}, "count": 1}]},
        applications=[
            {
                "name": "hello",
                "import_path": "hello:build",
                "route_prefix": "/",
                "args": {"greeting": "hi"},
                "deployments": [{"name": "Hello", "num_replicas": 1}],
            }
        ],
    )
    cli.run("deploy", "-f", str(ft), check=True)
    cli.run("deploy", "-f", str(noft), check=True)

    st = cli.status("t-loop")
    assert st["state"] == "RUNNING" and st["mode"] == "loopback"
    workers = [n for n in st["nodes"] if n["role"] == "worker"]
    assert {n["ip"] for n in st["nodes"]} == {"127.0.0.1"}
    urls = cli.proxy_urls("t-loop")
    assert len(set(urls.values())) == 2
    for w in workers:
        assert _ask(urls[w["name"]])["node"] == w["name"]

    st2 = cli.status("t-noft")
    assert st2["state"] == "RUNNING"
    assert st2["gcs_fault_tolerance"] is False
    assert "disabled" in st2["storage"]["note"]
    assert "disabled" in cli.run("status", "t-noft").stdout
    (w,) = [n for n in st2["nodes"] if n["role"] == "worker"]
    assert _ask(cli.proxy_urls("t-noft")[w["name"]])["message"] == "hi from w-1"
    assert st2["endpoint"] == f"https://localhost:{fixed}"
    assert st2["certificate"]["names"] == ["localhost"] and not st2["certificate"]["expiring"]
    assert "certificate: localhost, expires " in cli.run("status", "t-noft").stdout
    auth = {"Authorization": "Bearer " + cli.run("token", "t-noft", check=True).stdout.strip()}
    answer = httpx.get(st2["endpoint"] + "/", headers=auth, timeout=10, verify=made.ca)
    assert answer.json()["message"] == "hi from w-1"
    shown = cli.run("config", "t-noft", check=True).stdout
    assert "(uploaded at deploy)" in shown and "PRIVATE KEY" not in shown and "store.key" not in shown
    # Another service asking for that port: refused with the reason, nothing changed.
    taken = cli.run("deploy", "-f", str(cli.write_spec("t-loop", endpoint={"port": fixed})))
    assert taken.returncode == 2 and f"endpoint.port {fixed} is the endpoint of service t-noft" in taken.stderr
    assert cli.status("t-loop")["state"] == "RUNNING" and cli.status("t-loop")["running_version"] == 1

    client, _, _ = _cloud_client(cli)
    assert storage.namespaces_in_store(client) == {st["storage"]["namespace"]}

    if os.geteuid() == 0:  # as root, loopback nodes are boxed in too: each service its own uid
        uids = {}
        for name in ("t-loop", "t-noft"):
            rec = cli.record(name)
            raylets = [
                p
                for n in rec["nodes"]
                for p in procs.pids_with_marker(n["marker"])
                if Path(f"/proc/{p}/comm").read_text().strip() == "raylet"
            ]
            uids[name] = {Path(f"/proc/{p}").stat().st_uid for p in raylets}
            assert uids[name] == {rec["node_uid"]} and rec["node_uid"] != 0, (name, uids[name])
        assert uids["t-loop"] != uids["t-noft"]

    # deploying an existing name is an update: same nodes, new answer
    pids_before = {w["name"]: _ask(urls[w["name"]])["pid"] for w in workers}
    updated = cli.write_spec(
        "t-loop",
        applications=[
            {
                "name": "hello",
                "import_path": "hello:build",
                "route_prefix": "/",
                "args": {"greeting": "howdy"},
            }
        ],
    )
    out = cli.run("deploy", "-f", str(updated), check=True)
    assert "updating service t-loop" in out.stdout
    st_upd = cli.status("t-loop")
    assert cli.proxy_urls("t-loop") == urls
    assert st_upd["storage"]["namespace"] == st["storage"]["namespace"]
    for w in workers:
        reply = _ask(urls[w["name"]])
        assert reply["message"] == f"howdy from {w['name']}"
        assert reply["pid"] != pids_before[w["name"]]
    timeline = json.loads(cli.run("events", "t-loop", "--json", check=True).stdout)
    assert [e["state"] for e in timeline if e["kind"] == "state"] == [
        "STARTING",
        "RUNNING",
        "UPDATING",
        "RUNNING",
    ]
    assert {"head_started", "workers_joined"} <= {e["kind"] for e in timeline}

    ids = {n: _cluster_id(cli, n) for n in ("t-loop", "t-noft")}
    cli.run("terminate", "t-noft", check=True)
    _assert_service_gone(cli, st2, ids["t-noft"], client)
    assert _ask(urls[workers[0]["name"]])["node"] == workers[0]["name"], "terminate touched another service"
    cli.run("terminate", "t-loop", check=True)
    _assert_service_gone(cli, st, ids["t-loop"], client)
    client.close()


def _assert_nothing_started(cli, name: str) -> None:
    assert read_record(cli.home, name) is None
    assert not (cli.home / "cloud" / "cloud.json").exists(), "the cloud store was started anyway"
    if os.geteuid() == 0:
        assert not [n for n in netns.list_namespaces() if n.startswith(f"hw-{name}.")]


def test_unreachable_store_fails_fast_and_starts_nothing(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    spec = cli.write_spec("t-unreach", ray_gcs_external_storage_config={"address": f"127.0.0.1:{port}"})
    t0 = time.monotonic()
    proc = cli.run("deploy", "-f", str(spec))
    elapsed = time.monotonic() - t0
    print(f"unreachable store refused in {elapsed:.1f} s")
    assert proc.returncode == 2
    assert f"cannot reach the GCS store at redis://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 15
    _assert_nothing_started(cli, "t-unreach")


def test_wrong_password_fails_and_never_shows_it(cli, store_server):
    port, _right = store_server
    wrong = "wrong-pass-Xy93"
    inline = cli.write_spec(
        "t-badpw", ray_gcs_external_storage_config={"address": f"redis://:{wrong}@127.0.0.1:{port}"}
    )
    proc = cli.run("deploy", "-f", str(inline))
    assert proc.returncode == 2
    assert "rejected the credentials" in proc.stderr or "requires a valid password" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    _assert_nothing_started(cli, "t-badpw")

    cli.env["HW_TEST_STORE_PW"] = wrong
    by_env = cli.write_spec(
        "t-badpw2",
        ray_gcs_external_storage_config={
            "address": f"127.0.0.1:{port}",
            "redis_password_env": "HW_TEST_STORE_PW",
        },
    )
    proc = cli.run("deploy", "-f", str(by_env))
    assert proc.returncode == 2 and "rejected the credentials" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    _assert_nothing_started(cli, "t-badpw2")

    nopw = cli.write_spec("t-nopw", ray_gcs_external_storage_config={"address": f"127.0.0.1:{port}"})
    proc = cli.run("deploy", "-f", str(nopw))
    assert proc.returncode == 2 and "password" in proc.stderr


def test_malformed_yaml_is_refused_with_its_line(cli):
    bad = cli.home / "bad.yaml"
    bad.write_text("name: t-bad\napplications:\n  - name: [oops\n")
    proc = cli.run("deploy", "-f", str(bad))
    assert proc.returncode == 2
    assert "not valid YAML at line" in proc.stderr
    unknown = cli.write_spec("t-unknown", replicas=3)
    proc = cli.run("deploy", "-f", str(unknown))
    assert proc.returncode == 2 and "replicas: unknown field" in proc.stderr
    _assert_nothing_started(cli, "t-unknown")


def test_address_required_when_no_cloud_store(cli):
    cli.env["HEADWAY_AUTO_CLOUD"] = "0"
    spec = cli.write_spec("t-noaddr")
    proc = cli.run("deploy", "-f", str(spec))
    assert proc.returncode == 2
    assert "ray_gcs_external_storage_config.address: required" in proc.stderr
    _assert_nothing_started(cli, "t-noaddr")


def test_strict_refuses_replicas_that_need_the_head(cli):
    spec = cli.write_spec(
        "t-strict",
        applications=[
            {
                "name": "hello",
                "import_path": "hello:build",
                "deployments": [{"name": "Hello", "num_replicas": 1}],
            }
        ],
    )
    proc = cli.run("deploy", "-f", str(spec), "--strict")
    assert proc.returncode == 2
    assert "applications.hello.deployments.Hello: num_replicas 1" in proc.stderr
    assert "max_replicas_per_node: 1" in proc.stderr
    _assert_nothing_started(cli, "t-strict")
