"""A compromised app stays in its box: a hostile replica of one service, searching every
command line, environment and small file it can read, finds none of another service's
secrets, the API token or the store's admin password — but does find its own service's
Ray token (the search works); it runs as its service's own uid, sees only its node's
processes, and never gets the endpoint's ``Authorization`` header. In netns mode, and in
SSH mode with the hostile worker on a host that is also a store host (the store's
config, TLS key and Sentinel's config lie there)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml
from ssh_hosts import SSHD, Hosts

from headway.system import procs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="boxing nodes in needs root")

HOSTILE = Path(__file__).parent / "apps" / "hostile"


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_a_hostile_replica_finds_no_secret_but_its_own(cli):
    _deploy_both(cli)
    _hostile_finds_nothing_but_its_own(cli, {})


@pytest.mark.skipif(not Path(SSHD).exists(), reason="Debian's openssh-server is not installed (make system-test)")
def test_over_ssh_a_hostile_replica_on_a_store_host_finds_no_secret_but_its_own(cli):
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 3) as hosts:
            cfg = hosts.config(sys.prefix, ["head", "worker", "worker"])
            cfg["ssh"]["store"] = {"hosts": [hosts.ips[1], hosts.ips[2], hosts.ips[0]], "data_dir": str(root / "st")}
            for h in cfg["ssh"]["hosts"]:
                h["max_nodes"] = 4
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True)
            _deploy_both(cli)
            worker = next(n for n in cli.record("t-hostile")["nodes"] if n["role"] == "worker")
            assert (worker.get("host") or worker["ip"]) in hosts.ips[1:], "the hostile worker is not on a store host"
            tls = cli.home / "cloud" / "tls"
            key_lines = [ln for ln in (tls / "store.key").read_text().splitlines() if "-----" not in ln]
            extra = {"store TLS key": key_lines[1]}  # on the store hosts too (their copies, 0600)
            _hostile_finds_nothing_but_its_own(cli, extra)
            for name in ("t-victim", "t-hostile"):
                cli.run("terminate", name, check=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _deploy_both(cli) -> None:
    cli.run("deploy", "-f", str(cli.write_spec("t-victim")), check=True)
    hostile = cli.write_spec(
        "t-hostile",
        working_dir=str(HOSTILE),
        applications=[{"name": "hostile", "import_path": "hostile:app", "route_prefix": "/"}],
        compute_config={"worker_nodes": [{"name": "worker", "resources": {"CPU": 1}, "count": 1}]},
    )
    cli.run("deploy", "-f", str(hostile), check=True)


def _hostile_finds_nothing_but_its_own(cli, extra: dict[str, str]) -> None:
    store_users = list((cli.home / "services" / "t-victim").glob("store-*.password"))
    assert store_users, "the victim has no store user password file"
    secrets = {
        "victim endpoint token": cli.run("token", "t-victim", check=True).stdout.strip(),
        "api token": cli.run("api", "token", check=True).stdout.strip(),
        "metrics token": cli.run("api", "token", "--metrics", check=True).stdout.strip(),
        "store admin password": (cli.home / "cloud" / "store.password").read_text().strip(),
        "victim ray token": cli.ray_token("t-victim"),
        "victim store user password": store_users[0].read_text().strip(),
        "own endpoint token": cli.run("token", "t-hostile", check=True).stdout.strip(),
        "own ray token": cli.ray_token("t-hostile"),
    } | extra
    assert all(len(v) >= 16 for v in secrets.values()), "a secret too short to search for"
    endpoint = cli.status("t-hostile")["endpoint"]
    auth = {"Authorization": f"Bearer {secrets['own endpoint token']}"}
    reply = httpx.post(endpoint + "/", json={"secrets": secrets, "budget_s": 40}, headers=auth, timeout=90)
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    print(f"hostile replica: uid {seen['uid']}, {len(seen['pids'])} processes seen, {seen['files_read']} files read")
    print(json.dumps(seen["found"], indent=1))

    node_uid = cli.record("t-hostile")["node_uid"]
    assert seen["uid"] == seen["euid"] == node_uid and node_uid != 0
    assert node_uid != cli.record("t-victim")["node_uid"], "two services share a node user"
    assert seen["files_read"] > 1000, "the search did not look at the file system"
    # Its own Ray token is in its node's 0600 file: the search finds what it may read.
    assert seen["found"]["own ray token"], "the search found not even the service's own token"
    leaked = {k: v for k, v in seen["found"].items() if v and k not in ("own ray token",)}
    assert not leaked, f"the hostile replica read secrets it must not: {leaked}"
    assert len(seen["pids"]) < 40 and 1 in seen["pids"], "the replica sees processes beyond its node"
    assert "authorization" not in seen["headers"], "the endpoint handed the token to the replica"

    # Seen from the host: every Ray process of the service runs as its uid, in temp dirs
    # only the service's group may enter (root's: Ray would make its own dir 0777).
    for node in cli.record("t-hostile")["nodes"]:
        info = os.stat(node["temp_dir"])  # test hosts share this machine's file system
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, node_uid, 0o770), node["temp_dir"]
        ray_procs = [p for p in procs.pids_with_marker(node["marker"]) if _comm(p) in ("raylet", "gcs_server")]
        assert ray_procs, f"no raylet found for {node['name']}"
        assert {_uid(p) for p in ray_procs} == {node_uid}, f"{node['name']}: Ray runs as another user"
