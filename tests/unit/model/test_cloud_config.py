"""The ssh cloud config and the bootstrap check's verdicts (the SSH itself is stubbed:
the real thing runs in tests/integration/test_ssh.py)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from headway.hosts import ssh
from headway.model import cloud_config


def _write(tmp_path, text: str) -> str:
    f = tmp_path / "cloud.yaml"
    f.write_text(text)
    return str(f)


GOOD = """
ssh:
  venv: /opt/ray
  store_address: 10.0.0.1
  hosts:
    - {address: 10.0.0.2, key: /k, role: head}
    - {address: 10.0.0.3, key: /k, role: worker}
"""


def test_good_config(tmp_path):
    cfg = cloud_config.load_cloud_config(_write(tmp_path, GOOD))
    assert [h.address for h in cfg.heads()] == ["10.0.0.2"] and cfg.head_address.mode == "same_host"
    assert cfg.host("10.0.0.3").user == "root"
    with pytest.raises(cloud_config.SshError, match="no host 10.9.9.9"):
        cfg.host("10.9.9.9")


@pytest.mark.parametrize(
    "text,message",
    [
        ("hosts: []", "expected a mapping with an 'ssh:' block"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: cook}]}", "ssh.hosts.0.role"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: worker}]}", "no host has role: head"),
        ("ssh: {venv: /v, hosts: [{address: h, key: k, role: head}]}", "ssh.store_address: Field required"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: head, colour: 1}]}", "colour"),
        (
            "ssh: {venv: /v, store_address: a, head_address: {mode: floating}, "
            "hosts: [{address: h, key: k, role: head}]}",
            "floating mode needs address and move_hook",
        ),
        (
            "ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: head}, "
            "{address: h, key: k, role: worker}]}",
            "listed twice",
        ),
        ("ssh: [", "not valid YAML"),
    ],
)
def test_bad_config_says_which_field(tmp_path, text, message):
    with pytest.raises(cloud_config.SshError, match=message):
        cloud_config.load_cloud_config(_write(tmp_path, text))


INGRESS = (
    GOOD
    + """  ingress:
    address: 10.0.0.100
    hosts: [10.0.0.3, 10.0.0.2]
"""
)


def test_endpoints_on_ingress_hosts(tmp_path):
    cfg = cloud_config.load_cloud_config(_write(tmp_path, INGRESS))
    assert cfg.ingress is not None and [h.address for h in cfg.ingress_hosts()] == ["10.0.0.3", "10.0.0.2"]
    assert cfg.ingress.interface == "eth0" and cfg.ingress.prefix_length == 24
    # The nodes' packet filter admits the control host and every ingress host to a Serve proxy.
    assert cfg.trusted() == ["10.0.0.1", "10.0.0.3", "10.0.0.2"]
    assert cloud_config.load_cloud_config(_write(tmp_path, GOOD)).trusted() == ["10.0.0.1"]
    # Hosts that run a controller (leader or standby) are admitted too, each address once.
    with_controllers = cloud_config.load_cloud_config(
        _write(tmp_path, INGRESS + "  controllers: [10.0.0.2, 10.0.0.3]\n")
    )
    assert with_controllers.trusted() == ["10.0.0.1", "10.0.0.3", "10.0.0.2"]
    with pytest.raises(cloud_config.SshError, match="ssh.controllers: 10.0.0.9 not in ssh.hosts"):
        cloud_config.load_cloud_config(_write(tmp_path, GOOD + "  controllers: [10.0.0.9]\n"))


@pytest.mark.parametrize(
    "ingress,message",
    [
        ("{address: 10.0.0.100, hosts: [10.0.0.2]}", "ssh.ingress.hosts: List should have at least 2"),
        ("{address: 10.0.0.100, hosts: [10.0.0.2, 10.0.0.9]}", "10.0.0.9 not in ssh.hosts"),
        ("{address: 10.0.0.100, hosts: [10.0.0.2, 10.0.0.2]}", "listed twice"),
        ("{address: 10.0.0.2, hosts: [10.0.0.2, 10.0.0.3]}", "is a host's own address"),
        ("{address: vip.example, hosts: [10.0.0.2, 10.0.0.3]}", "not an IPv4 address"),
        ("{address: 10.0.0.100, hosts: [10.0.0.2, 10.0.0.3], interface: 'eth0; x'}", "ssh.ingress.interface"),
        ("{address: 10.0.0.100, hosts: [10.0.0.2, 10.0.0.3], router_id: 300}", "ssh.ingress.router_id"),
    ],
)
def test_bad_ingress_block_says_what(tmp_path, ingress, message):
    with pytest.raises(cloud_config.SshError, match=message):
        cloud_config.load_cloud_config(_write(tmp_path, GOOD + f"  ingress: {ingress}\n"))


def test_keepalived_config_of_each_ingress_host(tmp_path):
    from headway.hosts import vip

    cfg = cloud_config.load_cloud_config(_write(tmp_path, INGRESS))
    assert cfg.ingress is not None
    first = vip.render(cfg.ingress, "10.0.0.3", "headway_ab12")
    second = vip.render(cfg.ingress, "10.0.0.2", "headway_ab12")
    for text in (first, second):
        assert "vrrp_version 3" in text and "state BACKUP" in text and "nopreempt" in text
        assert "vrrp_startup_delay 2" in text  # a host that boots hears the holder first
        assert "10.0.0.100/24 dev eth0" in text and "virtual_router_id 51" in text
    # Each host talks to the others by unicast; the first listed has the highest priority.
    assert "unicast_src_ip 10.0.0.3" in first and "        10.0.0.2\n" in first and "        10.0.0.3\n" not in first
    assert "priority 200" in first and "priority 190" in second
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if Path(keepalived).exists():  # the real parser agrees (make system-test installs it)
        f = tmp_path / "keepalived.conf"
        f.write_text(first)
        done = subprocess.run([keepalived, "-t", "-f", str(f)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_missing_file(tmp_path):
    with pytest.raises(cloud_config.SshError, match="cannot read the file"):
        cloud_config.load_cloud_config(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    "remote,verdict",
    [
        ((0, "3.11.9 2.60.0\n", ""), None),  # patch releases may differ
        ((0, "3.12.1 2.60.0\n", ""), "Python 3.12.1 (headway runs 3.11.7)"),
        ((0, "3.11.7 missing\n", ""), "Ray missing (headway runs 2.60.0)"),
        ((0, "3.11.7 2.54.0\n", ""), "Ray 2.54.0 (headway runs 2.60.0)"),
        ((127, "", "sh: 1: /opt/ray/bin/python: not found"), "no Python at /opt/ray/bin/python"),
    ],
)
def test_version_verdicts(monkeypatch, remote, verdict):
    monkeypatch.setattr(ssh, "local_versions", lambda: ("3.11.7", "2.60.0"))
    monkeypatch.setattr(ssh, "run", lambda host, cmd, timeout_s=0: remote)
    host = cloud_config.SshHost(address="10.0.0.2", key="/k", role="worker")
    got = ssh.version_problem(host, "/opt/ray")
    if verdict is None:
        assert got is None
    else:
        assert got.startswith("host 10.0.0.2: ") and verdict in got
        assert "pip install 'ray[serve]==2.60.0'" in got


def test_check_hosts_lists_every_problem():
    cloud_config.check_hosts([])
    with pytest.raises(cloud_config.HostsNotReady, match="nothing was started") as exc:
        cloud_config.check_hosts(["host a: x", "host b: y"])
    assert "host a: x" in str(exc.value) and "host b: y" in str(exc.value)


FLEET = """
ssh:
  venv: /opt/ray
  store_address: 10.0.0.1
  hosts:
    - {address: 10.0.0.2, key: /k, role: head, max_nodes: 2}
    - {address: 10.0.0.3, key: /k, role: worker, max_nodes: 2}
    - {address: 10.0.0.4, key: /k, role: worker, max_nodes: 2}
"""


def _node(name: str, ip: str, ports: dict, fenced: bool = False):
    from headway.state.records import NodeRecord

    return NodeRecord(
        name=name, role="worker", ip=ip, ports=ports, temp_dir="/t", log="/l", marker=f"c/{name}/1", fenced=fenced
    )


def test_several_nodes_per_host_spread_first_own_ports_and_full_hosts(tmp_path, monkeypatch):
    """Placement over SSH hosts without SSH: a service's workers go to hosts it is not on
    first, the least loaded first; a second node on a host gets ports no node there holds;
    a full host (max_nodes) takes none; a dead node counts until it is fenced."""
    from headway.cluster import ssh_provider
    from headway.state.records import ServiceRecord

    monkeypatch.setattr(ssh, "configure_host_keys", lambda cfg: None)
    monkeypatch.setattr(ssh, "reachable", lambda h: True)
    cfg = cloud_config.load_cloud_config(_write(tmp_path, FLEET))
    other = ServiceRecord(
        name="other",
        cluster_id="c",
        mode="ssh",
        head_ip="10.0.0.2",
        gcs_port=1,
        dashboard_port=2,
        serve_port=3,
        spec={"name": "other", "applications": [{"import_path": "m:a"}]},
    )
    other.nodes = [_node("worker-1", "10.0.0.3", ssh_provider.NETNS_NODE_PORTS | {"proxy": 8000})]
    recs = [other]
    monkeypatch.setattr(ssh_provider, "all_records", lambda: recs)
    prov = ssh_provider.SshProvider(cfg)
    first, ports1 = prov.plan_worker(set())
    assert first == "10.0.0.4" and ports1["proxy"] == 8000  # the empty host first, Ray's default ports
    second, ports2 = prov.plan_worker({first})
    assert second == "10.0.0.3"  # this service is on .4 already: the other host, shared with "other"
    assert not set(ports2.values()) & set(other.nodes[0].ports.values()) and ports2["proxy"] != 8000
    third, _ = prov.plan_worker({first, second})
    assert third == "10.0.0.4"  # .3 is full (max_nodes 2), .4 has room
    with pytest.raises(ssh_provider.ProviderError, match="every one is full"):
        prov.plan_worker(set())
    # A dead node on a host counts until it is fenced.
    load = ssh_provider.placement_load([other])
    assert len(load["10.0.0.3"]) == 1
    other.nodes[0].fenced = True
    assert ssh_provider.placement_load([other]) == {}


def test_a_replacement_on_the_same_host_has_its_own_packet_filter_table():
    """The dead worker's removal drops its table: it must not be its replacement's (same
    name, same host, the host back after a reboot)."""
    from headway.cluster import firewall, ssh_provider

    old = _node("worker-2", "10.0.0.4", {})
    new = old.model_copy(update={"marker": "c/worker-2/2"})
    assert ssh_provider._rules_id(old) != ssh_provider._rules_id(new)
    assert ssh_provider._rules_id(old) == ssh_provider._rules_id(old.model_copy())  # stable for one node
    firewall.table_name(ssh_provider._rules_id(new))  # a valid table name (alphanumeric)
