"""The ssh provider on real SSH: hosts are network namespaces, each running its own sshd
(Debian's openssh-server) with keys this test generates; headway reaches them only over
SSH. A host with the wrong bootstrap venv is refused by name; then the full scenario:
deploy, the head *host* dies (every process of it, sshd included), it reboots (sshd comes
back), and headway restarts the head on it while the workers keep serving."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from conftest import Load, greetings, probe_from, read_record, wait_greetings
from ssh_hosts import SSHD, Hosts

from headway.hosts.ssh import local_versions
from headway.system import netns, procs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not Path(SSHD).exists(), reason="Debian's openssh-server is not installed (make system)"),
]


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _terminate_leaving_nothing(cli, hosts: Hosts, names: list[str]) -> None:
    """Terminate the services; no process of a Ray node is left on any host."""
    for name in names:
        cli.run("terminate", name, check=True)
    for host_name in hosts.names:
        marked = [p for p in netns.pids(host_name) if b"HEADWAY_NODE=" in _environ(p)]
        assert marked == [], f"Ray processes left on {host_name}"


def _other_python() -> str | None:
    """A Python of another minor version on this machine, for a real mismatch."""
    mine = sys.version_info[:2]
    for cand in sorted(Path("/root/.pyenv/versions").glob("3.*/bin/python3")) + [Path("/usr/bin/python3")]:
        r = subprocess.run(
            [str(cand), "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
        )
        if r.returncode == 0 and tuple(map(int, r.stdout.split())) != mine:
            return str(cand)
    return None


def _answered_by(endpoint: str, auth: dict) -> str | None:
    """The node whose replica answered one GET through the endpoint (examples/hello)."""
    r = httpx.get(endpoint + "/", headers=auth, timeout=10)
    return r.json().get("node") if r.status_code == 200 else None


def test_ssh_hosts_version_mismatch_then_head_host_dies_and_reboots(cli):
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 3) as hosts:
            py, ray_version = local_versions()

            # 1. A host whose venv has another Python and no Ray: refused by name, nothing started.
            other = _other_python() or sys.executable
            bad_venv = root / "oldvenv"
            subprocess.run([other, "-m", "venv", "--without-pip", str(bad_venv)], check=True)
            bad = root / "bad.yaml"
            cfg = hosts.config(str(bad_venv), ["head", "worker", "worker"])
            bad.write_text(yaml.safe_dump(cfg))
            refused = cli.run("cloud", "setup", "--config", str(bad))
            assert refused.returncode == 2, refused.stdout + refused.stderr
            err = " ".join(refused.stderr.split())
            assert "hosts are not ready (nothing was started)" in err
            for ip in hosts.ips:
                assert f"host {ip}: version mismatch in {bad_venv}" in err
            assert f"Ray missing (headway runs {ray_version})" in err
            if other != sys.executable:
                assert f"(headway runs {py})" in err
            assert f"pip install 'ray[serve]=={ray_version}'" in err  # says how to bootstrap
            assert not (cli.home / "cloud" / "cloud.json").exists()

            # 1b. Host keys: unknown ones are refused (no trust on first use unless asked for), and
            # a changed one is refused loudly; nothing runs on such a host.
            unknown = hosts.config(sys.prefix, ["head", "worker", "worker"])
            (root / "empty_known_hosts").write_text("")
            unknown["ssh"]["known_hosts"] = str(root / "empty_known_hosts")
            (root / "unknown.yaml").write_text(yaml.safe_dump(unknown))
            refused = cli.run("cloud", "setup", "--config", str(root / "unknown.yaml"))
            err = " ".join(refused.stderr.split())
            assert refused.returncode == 2 and f"host {hosts.ips[0]}: its SSH host key (ssh-ed25519" in err, err
            assert "is in no known_hosts" in err and "host_key_policy: pin_new" in err
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "other_key")], check=True)
            other_pub = " ".join((root / "other_key.pub").read_text().split()[:2])
            (root / "changed_known_hosts").write_text("".join(f"{ip} {other_pub}\n" for ip in hosts.ips))
            unknown["ssh"]["known_hosts"] = str(root / "changed_known_hosts")
            (root / "changed.yaml").write_text(yaml.safe_dump(unknown))
            refused = cli.run("cloud", "setup", "--config", str(root / "changed.yaml"))
            err = " ".join(refused.stderr.split())
            assert refused.returncode == 2 and f"host {hosts.ips[0]}: its SSH host key CHANGED" in err, err
            assert "possibly a man in the middle, nothing was run on it" in err
            assert not (cli.home / "cloud" / "cloud.json").exists()

            # 2. The bootstrap venv right (this machine's, the hosts share its files): setup works.
            good = root / "cloud.yaml"
            good.write_text(yaml.safe_dump(hosts.config(sys.prefix, ["head", "worker", "worker"])))
            cli.run("cloud", "setup", "--config", str(good), check=True)
            name = "t-ssh"
            spec = cli.write_spec(name)
            out = cli.run("deploy", "-f", str(spec), check=True).stdout
            assert "checking 3 host(s): SSH, Python and Ray versions" in out
            st = cli.status(name)
            assert st["state"] == "RUNNING"
            by_name = {n["name"]: n for n in cli.record(name)["nodes"]}
            assert by_name["head"]["ip"] == hosts.ips[0] and by_name["head"]["host"] == hosts.ips[0]
            assert {by_name["worker-1"]["ip"], by_name["worker-2"]["ip"]} == set(hosts.ips[1:])
            # The Ray processes run inside the hosts (started over SSH), not beside headway.
            head_host_pids = set(netns.pids(hosts.names[0]))
            assert set(procs.pids_with_marker(by_name["head"]["marker"])) <= head_host_pids
            worker_ids = {n: by_name[n]["node_id"] for n in ("worker-1", "worker-2")}
            token = cli.run("token", name, check=True).stdout.strip()
            auth = {"Authorization": f"Bearer {token}"}
            assert httpx.get(st["endpoint"] + "/", headers=auth, timeout=10).status_code == 200

            # 3. The head host and a worker's host die together (sshd too). The head host
            # "reboots" 8 s later and the head comes back on it. The worker's host is still
            # down then: it cannot be fenced, so the recovery ends without it (the other worker
            # serves; it once left the service UNHEALTHY for good) and the watchdog replaces it
            # once its host is back.
            lost = next(n for n in worker_ids if by_name[n]["ip"] == hosts.ips[2])
            kept = next(n for n in worker_ids if n != lost)
            with Load([st["endpoint"]] * 4, headers=auth) as load:
                time.sleep(2)
                died_at = time.time()
                killed = hosts.crash(hosts.names[0]) + hosts.crash(hosts.names[2])
                cli.wait_event(name, "state", after=died_at - 1, state="HEAD_RECOVERING", timeout=30)
                time.sleep(max(0.0, died_at + 8 - time.time()))
                hosts.boot(hosts.names[0])
                rebooted_at = time.time()
                running = cli.wait_event(name, "state", after=rebooted_at, state="RUNNING", timeout=180)
                assert cli.status(name)["state"] == "RUNNING"  # with its worker's host still down
                hosts.boot(hosts.names[2])
                worker_back_at = time.time()
                replaced = cli.wait_event(name, "worker_replaced", after=worker_back_at, timeout=120)
                # Serving through the endpoint again before the next step kills the other worker.
                deadline = time.monotonic() + 90
                while _answered_by(st["endpoint"], auth) != lost:
                    assert time.monotonic() < deadline, f"{lost}'s replacement never answered through the endpoint"
                    time.sleep(0.2)
            events = cli.events(name)
            failed_attempts = [e for e in events if e["at"] > died_at and e["state"] == "UNHEALTHY"]
            refusals = [e for e in events if e["kind"] == "worker_replacement_failed"]
            deferred = [e for e in refusals if died_at < e["at"] < running["at"]]
            retried = [e for e in refusals if running["at"] < e["at"]]
            print(
                f"\nssh: head host and {lost}'s host died ({killed} processes), the head's rebooted after "
                f"{rebooted_at - died_at:.1f} s; RUNNING {running['at'] - died_at:.1f} s after the death "
                f"({running['at'] - rebooted_at:.1f} s after the reboot); {len(failed_attempts)} attempt(s) refused "
                f"while the host was down; {lost} replaced {replaced['at'] - worker_back_at:.1f} s after its host came "
                f"back ({len(retried)} attempt(s) refused before); {load.report()}"
            )
            assert load.failed == 0, load.errors[:5]
            assert failed_attempts and "cannot fence" in failed_attempts[0]["message"]
            # The recovery's own refusal names the worker (a round may have tried it before the
            # head was declared dead: the host crashes are seconds apart).
            assert deferred and all("cannot fence" in e["message"] for e in deferred), deferred
            assert any(e["details"].get("workers") == [lost] for e in deferred), deferred
            assert len(retried) <= (worker_back_at - running["at"]) / 5 + 2  # not every round: a pause between
            after = read_record(cli.home, name)
            nodes = {n["name"]: n for n in after["nodes"]}
            assert nodes["head"]["host"] == hosts.ips[0]
            assert nodes[kept]["node_id"] == worker_ids[kept]  # re-adopted, not replaced
            assert nodes[lost]["ip"] == hosts.ips[2] and nodes[lost]["node_id"] != worker_ids[lost]
            assert cli.status(name)["state"] == "RUNNING"

            # 4. A worker's Ray processes die, its host stays up. Both worker hosts are in use:
            # the replacement takes the fenced host again (it used to count as used: "all in use").
            w1 = nodes["worker-1"]
            with Load([st["endpoint"]] * 4, headers=auth) as load:
                time.sleep(1)
                killed_at = time.time()
                for pid in procs.pids_with_marker(w1["marker"]):
                    with contextlib.suppress(ProcessLookupError):  # gone with one killed before it
                        os.kill(pid, signal.SIGKILL)
                replaced = cli.wait_event(name, "worker_replaced", after=killed_at, timeout=120)
                time.sleep(1)
            print(
                f"ssh: worker-1's processes killed, replaced on its own host after "
                f"{replaced['at'] - killed_at:.1f} s; {load.report()}"
            )
            assert load.failed == 0, load.errors[:5]
            again = {n["name"]: n for n in read_record(cli.home, name)["nodes"]}
            assert again["worker-1"]["ip"] == w1["ip"] and again["worker-1"]["node_id"] != w1["node_id"]
            assert not [e for e in cli.events(name) if e["at"] > killed_at and e["kind"] == "worker_replacement_failed"]

            _terminate_leaving_nothing(cli, hosts, [name])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ssh_floating_head_address_moves_to_a_standby_host(cli):
    """floating mode: the head host dies for good; the move hook puts the head address on
    the standby head host and the head starts there; the workers re-register at the same
    address and keep their node ids."""
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 4) as hosts:
            vip = str(hosts.subnet.network.network_address + 100)
            floating = {"mode": "floating", "address": vip, "move_hook": str(hosts.move_hook(vip))}
            cfg = hosts.config(sys.prefix, ["head", "head", "worker", "worker"], floating)
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True)
            name = "t-float"
            cli.run("deploy", "-f", str(cli.write_spec(name)), check=True)
            st = cli.status(name)
            head = next(n for n in cli.record(name)["nodes"] if n["name"] == "head")
            assert head["ip"] == vip and head["host"] == hosts.ips[0]

            # The managed store listens on the network here: TLS only, the head verifies it
            # with the cloud's CA, and a plain-text client gets nowhere.
            cloud_rec = json.loads((cli.home / "cloud" / "cloud.json").read_text())
            assert cloud_rec["tls"] is True
            port = next(p for p in cloud_rec["store"] if p["role"] == "primary")["port"]
            pw = (cli.home / "cloud" / "store.password").read_text().strip()
            ca = cli.home / "cloud" / "tls" / "ca.pem"
            with pytest.raises(redis.exceptions.ConnectionError):
                redis.Redis(host=hosts.subnet.bridge_ip, port=port, password=pw, socket_timeout=3).ping()
            tls_client = redis.Redis(
                host=hosts.subnet.bridge_ip, port=port, password=pw, ssl=True, ssl_ca_certs=str(ca), socket_timeout=3
            )
            assert tls_client.ping() and tls_client.info("replication")["connected_slaves"] == 1
            head_env = _environ(head["pid"])
            assert f"RAY_REDIS_ADDRESS=rediss://{hosts.subnet.bridge_ip}:".encode() in head_env
            # The head's own copy of the CA, in its temp dir (it cannot read the control plane's).
            copy = f"{head['temp_dir']}/store-ca-cert.pem"
            assert f"RAY_REDIS_CA_CERT={copy}".encode() in head_env
            assert Path(copy).read_text() == ca.read_text()
            # Another host (a worker host, not the ingress host) cannot reach a worker's Serve proxy.
            worker_ips = [n["ip"] for n in cli.record(name)["nodes"] if n["role"] == "worker"]
            worker_ns = hosts.names[hosts.ips.index(worker_ips[0])]
            assert probe_from(worker_ns, "tcp", f"{worker_ips[1]}:8000") == "refused"
            workers = {n["name"]: n["node_id"] for n in cli.record(name)["nodes"] if n["role"] == "worker"}
            token = cli.run("token", name, check=True).stdout.strip()
            auth = {"Authorization": f"Bearer {token}"}
            with Load([st["endpoint"]] * 4, headers=auth) as load:
                time.sleep(2)
                died_at = time.time()
                hosts.crash(hosts.names[0])  # and it never comes back
                running = cli.wait_event(name, "state", after=died_at, state="RUNNING", timeout=180)
                time.sleep(1)
            nodes = {n["name"]: n for n in cli.record(name)["nodes"]}
            print(
                f"\nssh floating: head host gone; head on the standby, RUNNING {running['at'] - died_at:.1f} s "
                f"after the death; {load.report()}"
            )
            assert load.failed == 0, load.errors[:5]
            assert nodes["head"]["ip"] == vip and nodes["head"]["host"] == hosts.ips[1]
            assert {n: nodes[n]["node_id"] for n in workers} == workers
            assert vip in subprocess.run(["ip", "-n", hosts.names[1], "addr"], capture_output=True, text=True).stdout
            assert httpx.get(st["endpoint"] + "/", headers=auth, timeout=10).status_code == 200
            cli.run("terminate", name, check=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ssh_two_services_share_three_hosts_and_survive_a_worker_host_death(cli):
    """Small fleets: two services on three hosts, the second one answering gRPC too. Each
    host may carry several Ray nodes (its ``max_nodes``), each with its own ports (gRPC's
    included); a service's workers spread over distinct hosts first. A worker host dies
    (every process, sshd too): both services keep serving, HTTP and gRPC; when it reboots,
    each gets its worker back there."""
    root = Path(tempfile.mkdtemp(prefix="hwssh-"))
    try:
        with Hosts(root, 3) as hosts:
            cfg = hosts.config(sys.prefix, ["head", "worker", "worker"])
            cfg["ssh"]["hosts"][0]["max_nodes"] = 2
            for h in cfg["ssh"]["hosts"][1:]:
                h["max_nodes"] = 4
            (root / "cloud.yaml").write_text(yaml.safe_dump(cfg))
            cli.run("cloud", "setup", "--config", str(root / "cloud.yaml"), check=True)
            names = ["t-fleet-a", "t-fleet-b"]
            cli.run("deploy", "-f", str(cli.write_spec(names[0])), check=True)
            cli.run("deploy", "-f", str(cli.write_spec(names[1], example="grpc")), check=True)
            recs = {name: cli.record(name) for name in names}
            heads = {name: next(n for n in r["nodes"] if n["role"] == "head") for name, r in recs.items()}
            assert {h["ip"] for h in heads.values()} == {hosts.ips[0]}  # both heads on the head host ...
            assert len({h["ports"]["gcs"] for h in heads.values()}) == 2  # ... each with its own ports
            for name, r in recs.items():
                ips = sorted(n["ip"] for n in r["nodes"] if n["role"] == "worker")
                assert ips == sorted(hosts.ips[1:]), (name, ips)  # spread: one worker per host
            on_b = [n for r in recs.values() for n in r["nodes"] if n["ip"] == hosts.ips[1]]
            assert len(on_b) == 2 and len({n["ports"]["proxy"] for n in on_b}) == 2  # shared, own ports
            assert len({n["ports"]["grpc"] for n in on_b}) == 2
            endpoints = {name: cli.status(name)["endpoint"] for name in names}
            auths = {
                name: {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()} for name in names
            }
            for name in names:
                assert httpx.get(endpoints[name] + "/", headers=auths[name], timeout=10).status_code == 200
            # Over SSH hosts: both workers' gRPC proxies answer through the endpoint.
            grpc_b, token_b = endpoints[names[1]].removeprefix("http://"), auths[names[1]]["Authorization"][7:]
            both = {f"hello you from {n['name']}" for n in recs[names[1]]["nodes"] if n["role"] == "worker"}
            wait_greetings(grpc_b, token_b, both)

            loads = [Load([endpoints[n]] * 2, headers=auths[n]) for n in names]
            for load in loads:
                load.__enter__()
            try:
                time.sleep(2)
                died_at = time.time()
                hosts.crash(hosts.names[1])
                time.sleep(3)  # its backends out of rotation: gRPC from the other worker
                assert len(greetings(grpc_b, token_b, 20)) == 1
                time.sleep(7)  # both services serve from their other worker meanwhile
                hosts.boot(hosts.names[1])
                for name in names:
                    cli.wait_event(name, "worker_replaced", after=died_at, timeout=180)
                time.sleep(1)
            finally:
                for load in loads:
                    load.__exit__(None, None, None)
            print(
                f"\nssh fleet: a worker host shared by two services died and rebooted 10 s later; "
                f"{[load.report() for load in loads]}"
            )
            for load in loads:
                assert load.failed == 0, load.errors[:5]
            wait_greetings(grpc_b, token_b, both)  # the replaced worker's gRPC proxy too
            for name in names:
                ips = sorted(n["ip"] for n in cli.record(name)["nodes"] if n["role"] == "worker")
                assert ips == sorted(hosts.ips[1:]), (name, ips)  # back on the rebooted host
                assert cli.status(name)["state"] == "RUNNING"
            # Once the dead workers are removed (their host answers again), their successors
            # there keep their own packet filter: the other worker host cannot reach their
            # Serve proxies (it could when the dead one's removal dropped a shared table).
            for name in names:
                deadline = time.monotonic() + 60
                while cli.record(name).get("retired") and time.monotonic() < deadline:
                    time.sleep(0.5)
                back = next(n for n in cli.record(name)["nodes"] if n["role"] == "worker" and n["ip"] == hosts.ips[1])
                assert probe_from(hosts.names[2], "tcp", f"{back['ip']}:{back['ports']['proxy']}") == "refused", name
            # The logs of every node, read over SSH, in one stream by time.
            out = cli.run("logs", names[0], "--since", "10m", check=True).stdout
            sources = {ln.split(" | ")[0].split(" ")[-1] for ln in out.splitlines()[1:] if " | " in ln}
            assert {"head", "worker-1", "worker-2"} <= sources, out[-1500:]
            assert "GET /" in cli.run("logs", names[0], "--app", "hello", "--since", "10m", check=True).stdout
            _terminate_leaving_nothing(cli, hosts, names)
    finally:
        shutil.rmtree(root, ignore_errors=True)
