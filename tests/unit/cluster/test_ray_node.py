"""The ray start command lines carry the facts GCS FT depends on."""

from headway.cluster import ray_node
from headway.cluster.ray_node import GcsStorage, NodePorts

STORE = GcsStorage(ray_address="10.1.0.1:6379", namespace="hw-x-1", password="pw", username="u")


def _head(**kw):
    args = dict(
        ip="10.1.0.2",
        ports=NodePorts(gcs=6379, dashboard=8265),
        temp_dir="/tmp/hw/h",
        storage=STORE,
        resources={},
        marker="c/head/1",
        loopback=False,
    )
    args.update(kw)
    return ray_node.head_launch(**args)


def _worker(**kw):
    args = dict(
        ip="10.1.0.3",
        head_address="10.1.0.2:6379",
        ports=NodePorts(),
        temp_dir="/tmp/hw/w",
        resources={"CPU": 2},
        node_name="w-1",
        marker="c/w-1/1",
        loopback=False,
    )
    args.update(kw)
    return ray_node.worker_launch(**args)


def test_head_gets_store_and_namespace():
    h = _head()
    assert h.env["RAY_REDIS_ADDRESS"] == "10.1.0.1:6379"
    assert h.env["RAY_external_storage_namespace"] == "hw-x-1"
    assert "--redis-password=pw" in h.argv and "--redis-username=u" in h.argv


def test_head_has_zero_cpus_and_dashboard():
    h = _head(resources={"GPU": 0, "custom": 1})
    i = h.argv.index("--num-cpus")
    assert h.argv[i + 1] == "0"
    assert "--include-dashboard=true" in h.argv
    assert "--head" in h.argv and "--block" not in h.argv  # headway's supervisor watches the node
    assert '{"custom": 1}' in h.argv


def test_a_node_runs_under_headway_supervisor_with_the_hosts_ray():
    cmd = _head().command("/venv/bin/python")
    assert cmd[:3] == ["/venv/bin/python", "-S", "-c"] and "PR_SET_CHILD_SUBREAPER" in cmd[3]
    assert cmd[4:6] == ["/venv/bin/python", "-c"] and "ray.serve.scripts" in cmd[6]  # Ray's CLI, lean
    assert cmd[7] == "start" and "--head" in cmd


def test_the_head_dashboard_loads_serves_and_the_state_api_only(monkeypatch):
    """The head's environment names the modules; Ray's CLI, lean, adds them to the
    dashboard's command line, and to no other process's (checked here on Ray's own
    ``start_ray_process``, stubbed: the rest of the script, ``ray start``, not run)."""
    import sys

    import ray._private.services as services

    from headway.system import node_supervisor

    assert _head().env[node_supervisor.DASHBOARD_MODULES_VAR] == "ServeHead,StateHead"
    assert node_supervisor.DASHBOARD_MODULES_VAR not in _worker().env
    started: list[tuple[list[str], str]] = []
    stub = lambda command, process_type, *a, **k: started.append((command, process_type))  # noqa: E731
    monkeypatch.setattr(services, "start_ray_process", stub)
    for name in node_supervisor.UNUSED_CLI_MODULES:  # the script marks them absent: undone after
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv(node_supervisor.DASHBOARD_MODULES_VAR, "ServeHead,StateHead")
    script = node_supervisor.RAY_CLI.split("from ray.scripts.scripts import main")[0]
    exec(compile(script, "ray-cli", "exec"), {})  # noqa: S102 - headway's own script, as the node runs it
    services.start_ray_process(["python", "dashboard.py"], "dashboard")
    services.start_ray_process(["gcs_server"], "gcs_server")
    assert started == [
        (["python", "dashboard.py", "--modules-to-load=ServeHead,StateHead"], "dashboard"),
        (["gcs_server"], "gcs_server"),
    ]


def test_head_without_ft_has_no_store():
    h = _head(storage=None)
    assert "RAY_REDIS_ADDRESS" not in h.env
    assert not any(a.startswith("--redis-password") for a in h.argv)


def test_tls_variables():
    h = _head(storage=GcsStorage("rediss://h:1", "ns", ca_cert="/ca", client_cert="/c", client_key="/k"))
    assert h.env["RAY_REDIS_ADDRESS"] == "rediss://h:1"
    assert (h.env["RAY_REDIS_CA_CERT"], h.env["RAY_REDIS_CLIENT_CERT"], h.env["RAY_REDIS_CLIENT_KEY"]) == (
        "/ca",
        "/c",
        "/k",
    )


def test_worker_survives_long_head_outage_and_has_serve_knobs():
    w = _worker()
    assert w.env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    assert w.env["RAY_SERVE_KV_TIMEOUT_S"] == "5"
    assert w.env["RAY_gcs_server_request_timeout_seconds"] == "5"
    assert w.env["RAY_timeout_ms_task_wait_for_death_info"] == "0"
    assert "--address=10.1.0.2:6379" in w.argv
    assert w.argv[w.argv.index("--num-cpus") + 1] == "2"
    assert not any("redis" in a for a in w.argv)


def test_headway_settings_win_over_user_env():
    """Validation refuses these names; the launch still puts headway's values last."""
    w = _worker(user_env={"RAY_gcs_rpc_server_reconnect_timeout_s": "9", "HEADWAY_NODE": "x", "APP_MODE": "prod"})
    assert w.env["RAY_gcs_rpc_server_reconnect_timeout_s"] == "600"
    assert w.env["HEADWAY_NODE"] == "c/w-1/1"
    assert w.env["APP_MODE"] == "prod"


def test_ray_token_auth_on_every_node_from_a_private_file():
    for launch, temp in ((_head(auth_token="t0k"), "/tmp/hw/h"), (_worker(auth_token="t0k"), "/tmp/hw/w")):
        assert launch.env["RAY_AUTH_MODE"] == "token"
        assert launch.env["RAY_AUTH_TOKEN_PATH"] == f"{temp}/auth_token"
        assert launch.secret_files == {f"{temp}/auth_token": "t0k"}
        assert "t0k" not in " ".join(launch.argv) and "t0k" not in repr(launch)
        assert "t0k" not in launch.env.values()


def test_dashboard_listens_on_the_node_address_only():
    assert "--dashboard-host=10.1.0.2" in _head().argv
    assert not any("0.0.0.0" in a for a in _head().argv)


def test_loopback_worker_gets_own_ports_and_proxy_port():
    ports = NodePorts(
        node_manager=1,
        object_manager=2,
        dashboard_agent_listen=3,
        dashboard_agent_grpc=4,
        metrics_export=5,
        runtime_env_agent=6,
        proxy=7,
    )
    w = _worker(ports=ports, loopback=True)
    for flag, v in [
        ("--node-manager-port", 1),
        ("--object-manager-port", 2),
        ("--dashboard-agent-listen-port", 3),
        ("--dashboard-agent-grpc-port", 4),
        ("--metrics-export-port", 5),
        ("--runtime-env-agent-port", 6),
    ]:
        assert w.argv[w.argv.index(flag) + 1] == str(v)
    assert w.env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] == "7"
    assert w.argv[w.argv.index("--min-worker-port") + 1] == "0"


def test_every_node_is_marked_and_reports_no_usage():
    for launch in (_head(), _worker()):
        assert launch.env["HEADWAY_NODE"].startswith("c/")
        assert launch.env["RAY_USAGE_STATS_ENABLED"] == "0"


def test_redact_hides_password():
    assert "--redis-password=***" in ray_node.redact(_head().argv)
    assert not any(a.split("=")[-1] == "pw" for a in ray_node.redact(_head().argv))


def test_launch_repr_hides_password():
    text = repr(_head())
    assert "--redis-password=***" in text and "=pw'" not in text


def test_only_a_recovering_head_starts_ahead_of_the_replicas():
    assert _head().nice == 0
    assert _head(recovering=True).nice == ray_node.RECOVERY_NICE < 0
    assert _head(recovering=True).argv == _head().argv  # the same node, only its priority differs


def test_what_a_service_does_not_use_is_not_started():
    head, worker = (
        _head().argv,
        ray_node.worker_launch(
            ip="10.0.0.3",
            head_address="10.0.0.2:6379",
            ports=ray_node.NodePorts(),
            temp_dir="/t",
            resources={"CPU": 1},
            node_name="worker-1",
            marker="m",
            loopback=False,
        ).argv,
    )
    assert "--no-monitor" in head and "--no-monitor" not in worker  # the autoscaler monitor runs on a head only
    assert "--include-log-monitor=false" in head and "--include-log-monitor=false" in worker


def test_head_gets_tuned_node_death_detection():
    launch = ray_node.head_launch(
        ip="10.0.0.2",
        ports=ray_node.NodePorts(),
        temp_dir="/t",
        storage=None,
        resources={},
        marker="m",
        loopback=False,
    )
    for var in (
        "RAY_health_check_period_ms",
        "RAY_health_check_failure_threshold",
        "RAY_health_check_timeout_ms",
    ):
        assert var in launch.env
    assert "--node-name=head" in launch.argv
