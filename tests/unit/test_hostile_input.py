"""Hostile and careless input, refused before anything starts, with an error that names
the field and says what to do (no Ray, no network). Each row is a string an attacker
or a typo could produce; each asserts the exact message it must get."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from headway.control import store_usage
from headway.model import spec as spec_mod
from headway.model.spec import SpecError
from headway.model.spec_load import load_spec_text, parse_spec
from headway.state import db
from headway.store.storage import glob_escape, key_pattern

BASE = {"name": "svc", "applications": [{"name": "app", "import_path": "m:app"}]}


def _with(path: str, value) -> dict:
    """BASE with one nested field set: ``path`` like 'compute_config.worker_nodes'."""
    data = {**BASE, "applications": [dict(BASE["applications"][0])]}
    keys = path.split(".")
    target = data
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target.setdefault(k, {})
    target[keys[-1]] = value
    return data


def _refused(data: dict) -> str:
    with pytest.raises(SpecError) as ei:
        parse_spec(data, "t.yaml")
    return str(ei.value)


def _store(addr: str) -> dict:
    return _with("ray_gcs_external_storage_config", {"address": addr})


def _group(**kw) -> dict:
    return _with("compute_config", {"worker_nodes": [{"name": "w", "count": 2} | kw]})


CASES = [
    # names: a full match, never a prefix (``$`` lets "abc\n" through)
    ("name newline", _with("name", "abc\n"), "name: 'abc\\n' is not a valid service name"),
    ("name upper", _with("name", "ABC"), "name: 'ABC' is not a valid service name"),
    ("name too long", _with("name", "a" * 41), "is not a valid service name; use 1-40"),
    ("name shell", _with("name", "a;rm -rf"), "is not a valid service name"),
    ("name haproxy line", _with("name", "a\nbackend x"), "is not a valid service name"),
    ("group newline", _group(name="w\n"), "compute_config.worker_nodes[0].name: 'w\\n' is not a valid group name"),
    ("app name slash", _with("applications.0.name", "a/b"), "applications[0].name: 'a/b' is not a valid application"),
    ("app name control", _with("applications.0.name", "a\x1b[31m"), "is not a valid application name"),
    # env_vars: keys reach a shell over SSH and the environment of every node
    (
        "env key injection",
        _with("env_vars", {"X=1 $(touch /tmp/p) Y": "v"}),
        "env_vars: 'X=1 $(touch /tmp/p) Y' is not an environment variable name",
    ),
    ("env key digit", _with("env_vars", {"1A": "v"}), "'1A' is not an environment variable name"),
    ("env key empty", _with("env_vars", {"": "v"}), "'' is not an environment variable name"),
    ("env key space", _with("env_vars", {"A B": "v"}), "'A B' is not an environment variable name"),
    ("env marker", _with("env_vars", {"HEADWAY_NODE": "x"}), "env_vars: HEADWAY_NODE is set by headway"),
    ("env store", _with("env_vars", {"RAY_REDIS_ADDRESS": "evil:6379"}), "RAY_REDIS_ADDRESS is set by headway"),
    (
        "env namespace",
        _with("env_vars", {"RAY_external_storage_namespace": "other"}),
        "RAY_external_storage_namespace is set by headway",
    ),
    ("env auth off", _with("env_vars", {"RAY_AUTH_MODE": "disabled"}), "RAY_AUTH_MODE is set by headway"),
    ("env auth path", _with("env_vars", {"RAY_AUTH_TOKEN_PATH": "/x"}), "RAY_AUTH_TOKEN_PATH is set by headway"),
    (
        "env grpc port",
        _with("env_vars", {"RAY_SERVE_WORKER_PROXY_GRPC_PORT": "1"}),
        "RAY_SERVE_WORKER_PROXY_GRPC_PORT is set by headway",
    ),
    (
        "env ft timeout",
        _with("env_vars", {"RAY_gcs_rpc_server_reconnect_timeout_s": "1"}),
        "RAY_gcs_rpc_server_reconnect_timeout_s is set by headway (a GCS fault-tolerance setting)",
    ),
    ("env NUL", _with("env_vars", {"A": "x\x00y"}), "the value of A must be text without NUL"),
    ("env huge", _with("env_vars", {"A": "x" * 40000}), "the value of A must be text without NUL, at most"),
    # counts and numbers: bounded and finite, checked before any node starts
    ("count 1025", _group(count=1025), "worker_nodes[0].count: Input should be less than or equal to 1024"),
    ("count negative", _group(count=-1), "count: Input should be greater than or equal to 0"),
    (
        "total workers",
        _with("compute_config", {"worker_nodes": [{"name": "a", "count": 1000}, {"name": "b", "count": 25}]}),
        "1025 workers in all; one service has at most 1024",
    ),
    ("endpoint port 0", _with("endpoint", {"port": 0}), "endpoint.port: Input should be greater than or equal to 1"),
    ("endpoint port huge", _with("endpoint", {"port": 70000}), "endpoint.port: Input should be less than or equal to"),
    ("endpoint bind", _with("endpoint", {"bind": "0.0.0.0; rm -rf /"}), "is not an IP address; give an address"),
    ("hostname address", _with("endpoint", {"hostnames": ["10.0.0.1"]}), "'10.0.0.1' is an address, not a name"),
    ("hostname wildcard", _with("endpoint", {"hostnames": ["*.a.example"]}), "wildcards are not supported; list"),
    ("hostname config", _with("endpoint", {"hostnames": ["a.example }\n  bind"]}), "is not a host name; use letters"),
    ("hostname label", _with("endpoint", {"hostnames": ["x" * 64 + ".example"]}), "is not a host name"),
    ("hostname twice", _with("endpoint", {"hostnames": ["A.example", "a.example."]}), "a.example is listed twice"),
    ("endpoint timeout", _with("endpoint", {"request_timeout_s": 0}), "endpoint.request_timeout_s: Input should be"),
    ("retry budget", _with("endpoint", {"retry_budget_percent": 101}), "endpoint.retry_budget_percent: Input should"),
    ("hostnames none", _with("endpoint", {"hostnames": []}), "give 1 to 100 names, or leave hostnames out"),
    ("idempotent path relative", _with("endpoint", {"idempotent_paths": ["v1"]}), "'v1' is not a path prefix; give"),
    (
        "idempotent path config",
        _with("endpoint", {"idempotent_paths": ["/a }\n  use_backend x"]}),
        "is not a path prefix; give one that starts with /",
    ),
    ("idempotent path quote", _with("endpoint", {"idempotent_paths": ["/a'b"]}), "is not a path prefix"),
    ("idempotent paths many", _with("endpoint", {"idempotent_paths": ["/a"] * 51}), "at most 50 items"),
    ("hostnames many", _with("endpoint", {"hostnames": [f"h{i}.example" for i in range(101)]}), "give 1 to 100"),
    (
        "endpoint tls no key",
        _with("endpoint", {"tls": {"cert": "c.pem"}}),
        "endpoint.tls.key: required field is missing",
    ),
    (
        "endpoint tls empty",
        _with("endpoint", {"tls": {"cert": "", "key": "k"}}),
        "endpoint.tls.cert: String should have",
    ),
    (
        "endpoint tls extra",
        _with("endpoint", {"tls": {"cert": "c", "key": "k", "ca": "x"}}),
        "endpoint.tls.ca: unknown field",
    ),
    ("endpoint body 0", _with("endpoint", {"max_body_bytes": 0}), "endpoint.max_body_bytes: Input should be greater"),
    (
        "endpoint rate 0",
        _with("endpoint", {"rate_limit": {"requests_per_second": 0}}),
        "endpoint.rate_limit.requests_per_second: Input should be greater than 0",
    ),
    (
        "endpoint rate burst",
        _with("endpoint", {"rate_limit": {"requests_per_second": 5, "burst": -1}}),
        "endpoint.rate_limit.burst: Input should be greater than or equal to 0",
    ),
    ("endpoint rate missing", _with("endpoint", {"rate_limit": {"burst": 5}}), "requests_per_second"),
    ("endpoint unknown", _with("endpoint", {"prot": 8443}), "endpoint.prot: unknown field; did you mean port?"),
    ("cpu nan", _group(resources={"CPU": float("nan")}), "resources.CPU: Input should be a finite number"),
    ("cpu inf", _group(resources={"CPU": float("inf")}), "resources.CPU: Input should be a finite number"),
    ("cpu negative", _group(resources={"CPU": -1}), "resource CPU is -1.0; amounts must be between 0 and"),
    ("cpu huge", _group(resources={"CPU": 1e12}), "amounts must be between 0 and 1000000"),
    ("resource name", _group(resources={"GPU;rm": 1}), "resource name 'GPU;rm' is not valid"),
    ("head cpu", _with("compute_config", {"head_node": {"resources": {"CPU": 1}}}), "the head node always has CPU: 0"),
    (
        "timeout inf",
        _with("http_options", {"request_timeout_s": float("inf")}),
        "http_options.request_timeout_s: Input should be a finite number",
    ),
    (
        "timeout huge",
        _with("http_options", {"request_timeout_s": 1e9}),
        "http_options.request_timeout_s: Input should be less than or equal to 86400",
    ),
    (
        "keepalive nan",
        _with("http_options", {"keep_alive_timeout_s": float("nan")}),
        "keep_alive_timeout_s: Input should be a finite number",
    ),
    # store addresses: parsed strictly at validation, with the field path
    (
        "addr fragment",
        _store("redis://u:p@ss#w/rd@h"),
        "ray_gcs_external_storage_config.address: the store address has a '#' (a URL fragment); percent-encode",
    ),
    ("addr port 0", _store("redis://h:0"), "the store address has an invalid port"),
    ("addr port big", _store("redis://h:70000"), "the store address has an invalid port"),
    ("addr path", _store("redis://h:1/0"), "the store address has a path ('/0')"),
    ("addr query", _store("redis://h:1?ssl=false"), "the store address has a '?' (a URL query)"),
    ("addr spaces", _store("h:1 ; rm -rf /"), "the store address contains spaces or control characters"),
    ("addr newline", _store("redis://h\n:1"), "the store address contains spaces or control characters"),
    ("addr scheme", _store("http://h:1"), "unsupported scheme 'http' in the store address"),
    ("addr host", _store("redis://bad_host!:1"), "is not a DNS name or an IP address"),
    ("addr two ats", _store("redis://u:p@q@h:1"), "the store address has more than one '@'"),
    (
        "password env name",
        _with("ray_gcs_external_storage_config", {"address": "h:1", "redis_password_env": "A B"}),
        "redis_password_env: 'A B' is not an environment variable name",
    ),
    # everything else that ends up in a config, a URL or a log line
    (
        "import path newline",
        _with("applications.0.import_path", "os:system\n"),
        "applications[0].import_path: 'os:system\\n' is not of the form 'module:attribute'",
    ),
    ("import path shell", _with("applications.0.import_path", "a:b; c"), "is not of the form 'module:attribute'"),
    ("route newline", _with("applications.0.route_prefix", "/a\nb"), "route_prefix: '/a\\nb' is not a valid URL path"),
    ("route space", _with("applications.0.route_prefix", "/a b"), "'/a b' is not a valid URL path"),
    ("version newline", _with("version_name", "v1\nv2"), "version_name: must be one printable line"),
    ("instance type long", _group(instance_type="x" * 300), "instance_type: must be one printable line of at most"),
    ("working_dir file uri", _with("working_dir", "file:///etc"), "working_dir: give a local folder as a path"),
    ("working_dir newline", _with("working_dir", "app\nx"), "working_dir: must be a folder path or a URI"),
]


@pytest.mark.parametrize("label,data,message", CASES, ids=[c[0] for c in CASES])
def test_hostile_spec_is_refused_with_the_field_and_the_fix(label, data, message):
    assert message in _refused(data)


def test_there_are_at_least_forty_hostile_cases():
    assert len(CASES) >= 40


def test_nice_values_still_pass():
    ok = parse_spec(
        _with("env_vars", {"APP_MODE": "prod", "_X1": "1"})
        | {"ray_gcs_external_storage_config": {"address": "redis://user:p%23w%40rd@store.example:6380"}},
        "t.yaml",
    )
    assert ok.env_vars == {"APP_MODE": "prod", "_X1": "1"}
    from headway.store.storage import parse_address

    addr = parse_address(ok.ray_gcs_external_storage_config.address)
    assert (addr.host, addr.port, addr.password) == ("store.example", 6380, "p#w@rd")


BOMB = (
    'a: &a ["l","l","l","l","l","l","l","l","l"]\n'
    + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True))
    + "name: svc\napplications: [{import_path: 'm:app'}]\n"
)


def test_yaml_alias_bomb_is_refused_before_it_expands():
    t0 = time.monotonic()
    with pytest.raises(SpecError, match="expands to more than 100000 values"):
        load_spec_text(BOMB, "bomb.yaml", None)
    assert time.monotonic() - t0 < 2  # 9**8 values were never built
    assert len(BOMB) < 1000


def test_yaml_too_large_is_refused():
    big = "name: svc\n" + "# pad\n" * (spec_mod.MAX_YAML_BYTES // 6 + 1)
    with pytest.raises(SpecError, match="the YAML is larger than 256 KiB"):
        load_spec_text(big, "big.yaml", None)


def test_api_input_never_names_a_server_path(tmp_path):
    """Without base_dir (the API) a working_dir path is not looked at, however it reads."""
    text = "name: svc\nworking_dir: ../../../etc\napplications: [{import_path: 'm:app'}]\n"
    assert load_spec_text(text, "api", None).working_dir == "../../../etc"  # kept as text, never resolved


@pytest.mark.parametrize("namespace", ["*", "RAY*", "hw-a-[0-9]*", "a?b", "x\\"])
def test_glob_characters_are_literal_in_every_key_pattern(namespace):
    pattern = key_pattern(namespace)
    assert pattern.endswith("@*") and all(f"\\{c}" in pattern for c in namespace if c in "*?[]\\")
    assert glob_escape("plain-ns") == "plain-ns"


OWNERS = {"hw-a-1111": "a", "hw-b-2222": "b"}
LEFT = ["hw-old-3333"]


@pytest.mark.parametrize(
    "namespace,message",
    [
        ("*", "'*' is a pattern; name one leftover namespace exactly"),
        ("RAY*", "'RAY*' is a pattern"),
        ("hw-a-????", "'hw-a-????' is a pattern"),
        ("hw-[ab]-*", "is a pattern"),
        ("hw-a-1111", "namespace hw-a-1111 belongs to service a; terminate the service instead"),
        ("hw-b-2222", "belongs to service b"),
        ("hw-old", "'hw-old' is not a leftover namespace of the managed store (leftovers: hw-old-3333)"),
        ("", "'' is not a leftover namespace"),
    ],
)
def test_cleanup_refuses_anything_but_a_listed_leftover(namespace, message):
    assert message in store_usage.cleanup_refusal(namespace, OWNERS, LEFT)


def test_cleanup_accepts_an_exact_leftover():
    assert store_usage.cleanup_refusal("hw-old-3333", OWNERS, LEFT) is None


# -- the API: a wrong token is a 401, bad input a 422 naming it, never a 500 ------------------
@pytest.fixture
def api_client(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from headway.api import app as api

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.setenv("HEADWAY_AUTO_CLOUD", "0")
    c = TestClient(api.create_app(), raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {db.api_token()}"
    return c


def _scalable(tmp_path) -> None:
    from headway.state import records
    from headway.state.records import ServiceRecord

    records.save(
        ServiceRecord(
            name="s",
            cluster_id="c",
            mode="netns",
            head_ip="10.0.0.2",
            gcs_port=1,
            dashboard_port=2,
            serve_port=3,
            spec={
                "name": "s",
                "applications": [{"import_path": "m:a"}],
                "compute_config": {
                    "worker_nodes": [
                        {"name": "w", "count": 1},
                        {"name": "v", "count": 10},
                        {"name": "a", "min_nodes": 1, "max_nodes": 2},
                    ]
                },
            },
        )
    )


@pytest.mark.parametrize("token", ["tökén", "Bearer", "\u202e", "x" * 5000, "' OR 1=1 --"])
def test_bad_or_non_ascii_token_is_401_not_500(api_client, token):
    r = api_client.get("/api/services", headers={"Authorization": f"Bearer {token}".encode()})  # raw UTF-8 bytes
    assert r.status_code == 401, r.text
    assert "missing or wrong API token" in r.json()["detail"]


@pytest.mark.parametrize(
    "count,status,message",
    [
        (1025, 422, "less than or equal to 1024"),
        (-1, 422, "greater than or equal to 0"),
        (1013, 422, "cannot scale s: compute_config: 1025 workers in all (counting each group's max_nodes)"),
        # The control plane's setting (HEADWAY_MAX_WORKERS, 256 by default): refused at once.
        (245, 422, "257 workers in all (counting each group's max_nodes); this control plane allows at most 256"),
    ],
)
def test_scale_bounds_are_the_specs(api_client, tmp_path, monkeypatch, count, status, message):
    monkeypatch.delenv("HEADWAY_MAX_WORKERS", raising=False)
    _scalable(tmp_path)
    r = api_client.post("/api/services/s/scale", json={"group": "w", "count": count})
    assert r.status_code == status, r.text
    assert message in str(r.json()["detail"])


def test_scale_refuses_a_group_that_follows_the_load(api_client, tmp_path):
    _scalable(tmp_path)
    r = api_client.post("/api/services/s/scale", json={"group": "a", "count": 2})
    assert r.status_code == 422, r.text
    assert "group 'a' of s follows the load (min_nodes 1, max_nodes 2); change its bounds in the YAML" in r.text


YAML = "name: s\napplications: [{import_path: 'm:a'}]\nray_gcs_external_storage_config: {enable: false}\n"


@pytest.mark.parametrize(
    "body,message",
    [
        ({"yaml": YAML + "working_dir: ../../etc\n"}, "working_dir names a local folder: upload it as 'package'"),
        ({"yaml": YAML + "working_dir: /etc\n"}, "working_dir names a local folder"),
        ({"yaml": YAML, "package": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}, "package: uploaded, but the spec"),
        ({"yaml": YAML, "base_dir": "/etc"}, "base_dir"),
        (
            {"yaml": YAML.replace("{enable: false}", "{address: 'h:1', redis_password_file: /root/.ssh/id_rsa}")},
            "redis_password_file: /root/.ssh/id_rsa is a path on your machine; upload its content",
        ),
        (
            {"yaml": YAML.replace("{enable: false}", "{address: 'h:1', redis_certificate_path: /etc/shadow}")},
            "redis_certificate_path: /etc/shadow is a path on your machine",
        ),
        ({"yaml": YAML, "files": {"redis_password_file": "x"}}, "files: redis_password_file uploaded but the spec"),
        ({"yaml": YAML, "env": {"HOME": "/"}}, "env: HOME is not the variable the spec's redis_password_env names"),
        ({"yaml": YAML, "wait_timeout": 1e300}, "wait_timeout"),
        ({"yaml": YAML + "working_dir: app\n", "package": "not base64!"}, "package: not base64"),
    ],
)
def test_deploy_never_names_a_server_path(api_client, body, message):
    r = api_client.put("/api/services/s", json=body)
    assert r.status_code == 422, r.text
    assert message in str(r.json()["detail"])


def _zip(entries: dict[str, bytes]) -> str:
    import base64
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    "entries,message",
    [
        ({"working_dir/../../etc/cron.d/x": b"x"}, "is outside working_dir/"),
        ({"/etc/passwd": b"x"}, "is outside working_dir/"),
        ({"other/app.py": b"x"}, "is outside working_dir/"),
    ],
)
def test_uploaded_package_cannot_escape_its_folder(api_client, entries, message):
    r = api_client.put("/api/services/s", json={"yaml": YAML + "working_dir: app\n", "package": _zip(entries)})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]


def test_metrics_token_opens_metrics_only(api_client):

    metrics = db.metrics_token()
    ro = {"Authorization": f"Bearer {metrics}"}
    assert api_client.get("/metrics", headers=ro).status_code == 200
    for method, path in [("GET", "/api/services"), ("DELETE", "/api/services/x"), ("GET", "/api/storage")]:
        assert api_client.request(method, path, headers=ro).status_code == 401
    assert api_client.get("/metrics").status_code == 200  # the full token still reads them
    assert api_client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize(
    "host,tls,refused",
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("10.0.0.5", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_api_beyond_loopback_needs_tls(host, tls, refused):
    from headway.api import api_server

    why = api_server.bind_refusal(host, tls)
    assert (why is not None) == refused
    if refused:
        assert f"HEADWAY_API_BIND={host} is not loopback: the API needs TLS there" in why


def test_temp_and_state_dirs_are_private_and_owned(tmp_path, monkeypatch):
    import os
    import stat as st

    from headway.system import paths

    monkeypatch.setenv("HEADWAY_TMP", str(tmp_path / "t"))
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "h"))
    # The nodes' users pass through the temp root to their own dirs, but cannot list it.
    for d, mode in ((paths.node_temp_root(), 0o711), (paths.home(), 0o700)):
        assert st.S_IMODE(d.stat().st_mode) == mode and d.stat().st_uid == os.geteuid()
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    monkeypatch.setenv("HEADWAY_TMP", str(loose))
    assert st.S_IMODE(paths.node_temp_root().stat().st_mode) == 0o711  # tightened, ours
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    monkeypatch.setenv("HEADWAY_TMP", str(tmp_path / "link"))
    with pytest.raises(paths.PathsError, match="is not a directory \\(a link\\?\\)"):
        paths.node_temp_root()
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        monkeypatch.setenv("HEADWAY_TMP", str(theirs))
        with pytest.raises(paths.PathsError, match="belongs to another user \\(uid 65534\\)"):
            paths.node_temp_root()


def test_default_temp_root_is_per_user(monkeypatch):
    import os

    from headway.system import paths

    monkeypatch.delenv("HEADWAY_TMP", raising=False)
    default = f"/tmp/hw{os.geteuid()}"
    existed = os.path.exists(default)
    try:
        assert str(paths.node_temp_root()) == default
    finally:
        if not existed:
            os.rmdir(default)  # made by this test: not left behind


# -- nothing a user types reaches a shell; the packet filter admits only the control host ------
def test_hostile_env_reaches_a_real_shell_as_data(tmp_path):
    import subprocess

    from headway.hosts.remote import env_file, start_command

    canary = tmp_path / "pwned"
    env = {"A": f"1 $(touch {canary}) ; touch {canary}", "B": "x'y\"z`id`", "C": "a\nb"}
    log = tmp_path / "log"
    (tmp_path / ".env").write_text(env_file(env))
    cmd = start_command(["/usr/bin/env"], str(tmp_path / ".env"), str(tmp_path), str(log))
    for value in env.values():  # no value on the command line a host's users can read
        assert value not in cmd
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, timeout=10)
    for _ in range(50):
        if log.exists() and "C=a" in log.read_text():
            break
        time.sleep(0.1)
    text = log.read_text()
    assert f"A=1 $(touch {canary}) ; touch {canary}\n" in text
    assert "B=x'y\"z`id`\n" in text and "C=a\nb\n" in text
    assert not canary.exists()
    assert not (tmp_path / ".env").exists(), "the environment file stayed on the host"
    with pytest.raises(ValueError, match="not an environment variable name"):
        env_file({"A;id": "x"})


def test_packet_filter_rules_admit_only_the_control_host():
    from headway.cluster import firewall

    rules = firewall.render("ab12cd34", [8000, 8265, 10001], "10.213.0.1")
    assert "ip saddr { 10.213.0.1 } tcp dport { 8000, 8265, 10001 } accept" in rules
    assert 'iifname "lo" tcp dport { 8000, 8265, 10001 } accept' in rules
    assert "tcp dport { 8000, 8265, 10001 } reject with tcp reset" in rules
    assert rules.index("accept") < rules.index("reject")
    assert firewall.guarded_ports("worker", {"proxy": 8000, "metrics_export": 52367}) == [8000, 9000, 52367]
    assert firewall.guarded_ports("head", {}) == [8000, 8265, 9000, 10001]  # 9000: Serve's gRPC proxy
    with pytest.raises(ValueError):
        firewall.render("ab12cd34", [8000], "10.0.0.1; flush ruleset")
    with pytest.raises(ValueError):
        firewall.render("ab12cd34", [8000], ["10.0.0.1", "10.0.0.2 } accept"])
    # The endpoints on several hosts: each ingress host is admitted too, in one set per family.
    several = firewall.render("ab12cd34", [8000], ["10.0.0.1", "10.0.0.2", "fd00::3"])
    assert "ip saddr { 10.0.0.1, 10.0.0.2 } tcp dport { 8000 } accept" in several
    assert "ip6 saddr { fd00::3 } tcp dport { 8000 } accept" in several
    with pytest.raises(ValueError):
        firewall.table_name("x;y")


def test_managed_store_tls_certificate_names_every_address(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from headway.store import store_conf, store_tls

    files = store_tls.ensure(tmp_path / "tls", ["127.0.0.1", "10.0.0.1"])
    ca = x509.load_pem_x509_certificate(Path(files.ca).read_bytes())
    cert = x509.load_pem_x509_certificate(Path(files.cert).read_bytes())
    ips = {
        str(i)
        for i in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.IPAddress
        )
    }
    assert ips == {"127.0.0.1", "10.0.0.1"}
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert oct(os.stat(files.key).st_mode & 0o777) == "0o600"
    assert store_tls.ensure(tmp_path / "tls", ["127.0.0.1", "10.0.0.1"]) == files  # made once, kept
    proc = store_conf.StoreProcess(role="primary", port=16379, data_dir="/d", conf="/c", log="/l", marker="m")
    lines = store_conf.listen(proc, files)
    assert lines[:2] == ["port 0", "tls-port 16379"] and "tls-replication yes" in lines
    assert store_conf.listen(proc, None) == ["port 16379"]
    primary = store_conf.store(proc, ["127.0.0.1", "10.0.0.1"], "pw", "1gb", None, "10.0.0.1", files)
    assert "port 0\ntls-port 16379\n" in primary and "replicaof" not in primary
    replica = store_conf.store(proc, ["127.0.0.1"], "pw", "1gb", ("10.0.0.1", 16380), "10.0.0.1", None)
    assert "port 16379\n" in replica and "replicaof 10.0.0.1 16380\n" in replica
    assert "sentinel monitor hwstore 10.0.0.1 16380 1" in store_conf.sentinel(
        proc, ["127.0.0.1"], "pw", ("10.0.0.1", 16380), files
    )
    # One of three Sentinels on the store hosts: quorum 2, announcing its own host.
    third = store_conf.sentinel(proc, ["127.0.0.1", "10.0.0.4"], "pw", ("10.0.0.2", 16379), files, 2, "10.0.0.4")
    assert "sentinel monitor hwstore 10.0.0.2 16379 2" in third and "sentinel announce-ip 10.0.0.4" in third
