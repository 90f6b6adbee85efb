"""The SSH transport's one retry: a kept-open connection that died under a command."""

import paramiko
import pytest

from headway.hosts import ssh
from headway.model.cloud_config import SshHost

HOST = SshHost(address="10.0.0.1", key="/k", role="worker")


class _Client:
    def __init__(self, fails: int):
        self.fails, self.calls = fails, 0

    def exec_command(self, command, timeout=None):
        self.calls += 1
        if self.calls <= self.fails:
            raise paramiko.ChannelException(1, "Administratively prohibited")
        return ("in", "out", command)


def test_a_refused_channel_is_opened_once_more_on_a_fresh_connection(monkeypatch):
    client, forgotten = _Client(fails=1), []
    monkeypatch.setattr(ssh, "_client", lambda host: client)
    monkeypatch.setattr(ssh, "forget", lambda host: forgotten.append(host.address))
    assert ssh._exec(HOST, "true", 5) == ("in", "out", "true")
    assert client.calls == 2 and forgotten == ["10.0.0.1"]


def test_twice_refused_is_the_hosts_failure(monkeypatch):
    client = _Client(fails=2)
    monkeypatch.setattr(ssh, "_client", lambda host: client)
    monkeypatch.setattr(ssh, "forget", lambda host: None)
    with pytest.raises(ssh.SshError, match="host 10.0.0.1: SSH command failed"):
        ssh.run(HOST, "true", 5)
    assert client.calls == 2  # never a third time: a command runs at most once
