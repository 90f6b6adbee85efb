"""Store addresses: forms accepted, secrets masked, Ray's variable rendered."""

import pytest

from headway.store import storage


@pytest.mark.parametrize(
    "text,host,port,tls",
    [
        ("h:7000", "h", 7000, False),
        ("redis://h:7000", "h", 7000, False),
        ("rediss://h:7001", "h", 7001, True),
        ("redis://h", "h", 6379, False),
        ("10.0.0.5:6380", "10.0.0.5", 6380, False),
    ],
)
def test_forms(text, host, port, tls):
    a = storage.parse_address(text)
    assert (a.host, a.port, a.tls) == (host, port, tls)


def test_credentials_in_url_are_masked():
    a = storage.parse_address("redis://user:s3cr%40t@h:1")
    assert a.username == "user" and a.password == "s3cr@t"
    assert a.masked() == "redis://user:***@h:1"
    assert "s3cr" not in str(a) and "s3cr" not in repr(a)


def test_ray_address():
    assert storage.parse_address("redis://:p@h:1").ray_address() == "h:1"
    assert storage.parse_address("rediss://h:1").ray_address() == "rediss://h:1"


@pytest.mark.parametrize(
    "bad,msg",
    [
        ("", "empty"),
        ("http://h:1", "unsupported scheme"),
        ("redis://h:notaport", "invalid port"),
        ("redis://:1", "no host"),
    ],
)
def test_bad_addresses(bad, msg):
    with pytest.raises(storage.StoreError, match=msg):
        storage.parse_address(bad)


def test_password_from_env(monkeypatch):
    monkeypatch.setenv("HW_TEST_PW", "pw1")
    assert storage.resolve_password("HW_TEST_PW", None, environ={"HW_TEST_PW": "pw1"}) == "pw1"


def test_password_env_missing(monkeypatch):
    monkeypatch.delenv("HW_TEST_PW", raising=False)
    with pytest.raises(storage.StoreError, match="HW_TEST_PW .* is not set"):
        storage.resolve_password("HW_TEST_PW", None)


def test_password_from_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("pw2\n")
    assert storage.resolve_password(None, str(f)) == "pw2"


def test_unreachable_store_message_has_fix_and_no_secret():
    a = storage.StoreAddress("127.0.0.1", 1, password="topsecret")
    with pytest.raises(storage.StoreError) as ei:
        storage.check_reachable(a, timeout_s=1)
    text = str(ei.value)
    assert "cannot reach the GCS store at redis://:***@127.0.0.1:1" in text
    assert "topsecret" not in text


def test_namespaces_unique():
    assert storage.new_namespace("a") != storage.new_namespace("a")
    assert storage.key_pattern("hw-a-1") == "RAYhw-a-1@*"
