"""The ssh cloud config and the bootstrap check's verdicts (the SSH itself is stubbed:
the real thing runs in tests/integration/test_ssh.py)."""

import pytest

from headway import ssh


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
    cfg = ssh.load_cloud_config(_write(tmp_path, GOOD))
    assert [h.address for h in cfg.heads()] == ["10.0.0.2"] and cfg.head_address.mode == "same_host"
    assert cfg.host("10.0.0.3").user == "root"
    with pytest.raises(ssh.SshError, match="no host 10.9.9.9"):
        cfg.host("10.9.9.9")


@pytest.mark.parametrize(
    "text,message",
    [
        ("hosts: []", "expected a mapping with an 'ssh:' block"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: cook}]}", "ssh.hosts.0.role"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: worker}]}", "no host has role: head"),
        ("ssh: {venv: /v, hosts: [{address: h, key: k, role: head}]}", "ssh.store_address: Field required"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: head, colour: 1}]}", "colour"),
        ("ssh: {venv: /v, store_address: a, head_address: {mode: floating}, hosts: [{address: h, key: k, role: head}]}",
         "floating mode needs address and move_hook"),
        ("ssh: {venv: /v, store_address: a, hosts: [{address: h, key: k, role: head}, "
         "{address: h, key: k, role: worker}]}", "listed twice"),
        ("ssh: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_config_says_which_field(tmp_path, text, message):
    with pytest.raises(ssh.SshError, match=message):
        ssh.load_cloud_config(_write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ssh.SshError, match="cannot read the file"):
        ssh.load_cloud_config(str(tmp_path / "nope.yaml"))


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
    host = ssh.SshHost(address="10.0.0.2", key="/k", role="worker")
    got = ssh.version_problem(host, "/opt/ray")
    if verdict is None:
        assert got is None
    else:
        assert got.startswith("host 10.0.0.2: ") and verdict in got
        assert "pip install 'ray[serve]==2.60.0'" in got


def test_check_hosts_lists_every_problem():
    ssh.check_hosts([])
    with pytest.raises(ssh.HostsNotReady, match="nothing was started") as exc:
        ssh.check_hosts(["host a: x", "host b: y"])
    assert "host a: x" in str(exc.value) and "host b: y" in str(exc.value)
