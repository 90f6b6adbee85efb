"""Which control plane the CLI talks to: the environment, then the config file's current
context, else this host's. A wrong address or a missing token is said before any call."""

from __future__ import annotations

from pathlib import Path

import pytest

from headway.cli import target
from headway.cli.target import TargetError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HEADWAY_API_URL", "HEADWAY_API_TOKEN", "HEADWAY_API_TOKEN_FILE", "HEADWAY_API_CA", "HEADWAY_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HEADWAY_CONFIG", str(tmp_path / "config.yaml"))


def test_nothing_named_is_this_hosts_control_plane() -> None:
    assert target.remote() is None


def test_the_environment_names_a_remote_one(monkeypatch) -> None:
    monkeypatch.setenv("HEADWAY_API_URL", "https://ctl.example.com:8765/")
    with pytest.raises(TargetError, match="no API token is given: set HEADWAY_API_TOKEN"):
        target.remote()
    monkeypatch.setenv("HEADWAY_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("HEADWAY_API_CA", "/etc/ca.pem")
    r = target.remote()
    assert r == target.Remote("https://ctl.example.com:8765", "s3cret-token", "/etc/ca.pem", "HEADWAY_API_URL")
    assert "s3cret-token" not in repr(r)


@pytest.mark.parametrize(
    "url", ["ftp://h:1", "http://h:1/api", "http://user:pw@h:1", "http://h:1?x=1", "h:8765", "http://h:99999"]
)
def test_an_address_with_more_than_scheme_host_and_port_is_refused(monkeypatch, url: str) -> None:
    monkeypatch.setenv("HEADWAY_API_URL", url)
    monkeypatch.setenv("HEADWAY_API_TOKEN", "t")
    with pytest.raises(TargetError, match="HEADWAY_API_URL"):
        target.remote()


def test_contexts_of_the_config_file(monkeypatch, tmp_path: Path) -> None:
    token = tmp_path / "prod.token"
    token.write_text("prod-token\n")
    target.save_config(
        {
            "current": "prod",
            "contexts": {"prod": {"api_url": "http://10.0.0.1:8765", "token_file": str(token)}, "here": {}},
        }
    )
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o600
    r = target.remote()
    assert r is not None and (r.url, r.token, r.named_by) == ("http://10.0.0.1:8765", "prod-token", "context prod")
    monkeypatch.setenv("HEADWAY_CONTEXT", "here")  # --context here: an empty context is this host's
    assert target.remote() is None
    monkeypatch.setenv("HEADWAY_CONTEXT", "nope")
    with pytest.raises(TargetError, match="no context named nope.*contexts: here, prod"):
        target.remote()
    monkeypatch.delenv("HEADWAY_CONTEXT")
    monkeypatch.setenv("HEADWAY_API_TOKEN", "from-env")  # the environment wins over the file
    assert target.remote().token == "from-env"
    token.write_text("")
    monkeypatch.delenv("HEADWAY_API_TOKEN")
    with pytest.raises(TargetError, match="token file .* is empty"):
        target.remote()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("contexts: [a, b]\n", "a 'contexts:' mapping"),
        ("contexts: {p: {api_url: 'http://h:1', password: x}}\n", "unknown field"),
        ("contexts: {p: [1]}\n", "expected a mapping"),
        ("contexts: {p: {api_url: 'http://h:1'\n", "cannot read it"),
    ],
)
def test_a_malformed_config_file_is_named(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(TargetError, match=said):
        target.remote()
