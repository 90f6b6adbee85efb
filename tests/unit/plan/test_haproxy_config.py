"""The ingress config and its runtime changes, as text (checked by the real haproxy -c)."""

import subprocess
from pathlib import Path

import pytest

from headway.model.spec import MAX_WORKERS
from headway.plan import haproxy_config as hc
from headway.system import binaries


def conf(**kw) -> hc.IngressSettings:
    return hc.IngressSettings(**({"bind": "127.0.0.1", "port": 18080, "stats_socket": "/tmp/x.sock"} | kw))


def slots(*addrs: str) -> list[str | None]:
    return list(addrs) + [None] * (hc.SLOT_BLOCK - len(addrs))


def test_config_is_valid_haproxy(tmp_path):
    f = tmp_path / "h.cfg"
    f.write_text(hc.render(conf(tokens=("t0k", "old"), stats_socket=str(tmp_path / "s")), slots("10.0.0.3:8000")))
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_weighted_config_of_a_rollout_is_valid_haproxy(tmp_path):
    f = tmp_path / "h.cfg"
    weights = {"10.0.0.3:8000": 230, "10.0.0.4:8000": 26, "10.0.0.5:8000": 0}
    settings = conf(tokens=("t0k",), stats_socket=str(tmp_path / "s"), weighted=True)
    f.write_text(hc.render(settings, slots(*weights), weights))
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_endpoint_on_several_hosts_binds_the_moving_address_it_may_not_hold(tmp_path):
    """``transparent``: each ingress host binds the address keepalived moves, held or not;
    haproxy -c accepts it and a real start binds an address this machine does not have."""
    settings = conf(bind="10.213.250.100", stats_socket=str(tmp_path / "s"), freebind=True)
    text = hc.render(settings, slots("10.0.0.3:8000"))
    assert "    bind 10.213.250.100:18080 transparent" in text
    assert " transparent" not in hc.render(conf(), slots())
    f = tmp_path / "h.cfg"
    f.write_text(text)
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_token_checked_only_when_enabled():
    assert 'deny_status 401 unless { req.hdr(authorization) -m str "Bearer t0k" }' in hc.render(
        conf(tokens=("t0k",)), slots()
    )
    assert "deny_status 401" not in hc.render(conf(tokens=()), slots())
    two = hc.render(conf(tokens=("new", "old")), slots())  # a rotation's grace period: either one
    assert 'deny_status 401 unless { req.hdr(authorization) -m str "Bearer new" "Bearer old" }' in two


def test_settings_repr_hides_the_token():
    assert "t0k" not in repr(conf(tokens=("t0k",)))


def test_5xx_retried_for_idempotent_methods_only():
    text = hc.render(conf(), slots())
    assert "retry-on conn-failure empty-response junk-response 500 502 503 504" in text
    assert "acl hw_idempotent method GET HEAD OPTIONS PUT DELETE TRACE\n" in text
    assert "http-request disable-l7-retry unless hw_idempotent" in text
    assert "    http-request wait-for-body time 10s if hw_idempotent\n" in text  # held whole: can be sent again
    assert "http-buffer-request" not in text  # other requests stream as they come
    assert "path_beg" not in text
    assert "option redispatch 1" in text
    no5xx = hc.render(conf(retry_5xx_idempotent=False), slots())
    assert "retry-on conn-failure empty-response junk-response\n" in no5xx


def test_a_request_that_must_not_be_sent_twice_goes_through_a_twin_backend_without_the_vanished_host_limits(
    tmp_path,
):
    """Its connection is not cut after 2 s unacknowledged (it could not be retried anyway,
    and HAProxy would close the client's connection without an answer): it gets its 504."""
    text = hc.render(conf(idempotent_paths=("/v1/embed", "/score")), slots("10.0.0.3:8000"))
    assert "    acl hw_idempotent path_beg /v1/embed /score\n" in text
    assert "    use_backend workers_once unless hw_idempotent\n    default_backend workers\n" in text
    once = text.split("\nbackend workers_once\n", 1)[1].split("\n\n", 1)[0]
    assert "    no option srvtcpka" in once and "tcp-ut" not in once and " check" not in once
    assert "    server s1 10.0.0.3:8000 track workers/s1\n" in once + "\n"
    assert "    server s2 127.0.0.1:9 track workers/s2" in once
    grpc = hc.render(conf(grpc=True), slots("10.0.0.3:8000"), grpc_of={"10.0.0.3:8000": "10.0.0.3:9000"})
    assert grpc.index("use_backend grpc_workers") < grpc.index("use_backend workers_once")  # gRPC POSTs: gRPC's
    f = tmp_path / "h.cfg"
    f.write_text(text.replace("/tmp/x.sock", str(tmp_path / "s")))
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_twin_backend_follows_every_address_and_weight_change():
    _, commands = hc.plan_slots(slots(), ["10.0.0.3:8000"])
    assert "set server workers_once/s1 addr 10.0.0.3 port 8000" in commands
    weights = hc.weight_commands(slots("10.0.0.3:8000"), {"10.0.0.3:8000": 7})
    assert weights == ["set weight workers/s1 7", "set weight workers_once/s1 7"]


def test_health_checks_take_a_dead_node_out_within_a_second():
    s = conf()
    assert s.check_interval_ms * s.fall <= 1000
    text = hc.render(s, slots())
    assert "option httpchk GET /-/healthz" in text
    assert "on-error mark-down" in text and "observe layer4" in text


def test_a_server_host_that_vanished_is_given_up_by_the_kernel_not_drained_by_haproxy():
    """Keepalive and TCP_USER_TIMEOUT on every server connection (bench.vanished_host
    measures them through a cut link); never ``shutdown-sessions``, which would also cut
    the requests a server put in maintenance (a rollout, a scale-down) is still answering."""
    text = hc.render(conf(), slots("10.0.0.3:8000"))
    assert "    option srvtcpka\n" in text and "    srvtcpka-cnt 2\n" in text
    assert f"    srvtcpka-idle {hc.VANISHED_PROBE_S}s\n" in text
    # On each server line: HAProxy 2.8 does not pass tcp-ut down from default-server.
    workers = text.split("\nbackend workers\n", 1)[1].split("\n\n", 1)[0]
    servers = [line for line in workers.splitlines() if line.strip().startswith("server ")]
    assert servers and all(f" tcp-ut {hc.VANISHED_UNACKED_S}s" in line for line in servers), servers
    assert "tcp-ut" not in next(line for line in text.splitlines() if "default-server" in line)
    with_grpc = hc.render(conf(grpc=True), slots("10.0.0.3:8000"), grpc_of={"10.0.0.3:8000": "10.0.0.3:9000"})
    assert "proto h2 track workers/s1 tcp-ut 2s" in with_grpc
    assert "shutdown-sessions" not in text
    assert hc.VANISHED_PROBE_S + hc.VANISHED_UNACKED_S <= 3  # given up well before 5 s


def test_request_timeout_is_the_server_timeout():
    assert "timeout server 7500ms" in hc.render(conf(request_timeout_s=7.5), slots())


def test_every_slot_is_declared():
    text = hc.render(conf(), slots("10.0.0.3:8000", "10.0.0.4:8000"))
    assert "server s1 10.0.0.3:8000 check tcp-ut 2s\n" in text
    assert "server s2 10.0.0.4:8000 check tcp-ut 2s\n" in text
    assert text.count(" check tcp-ut 2s disabled") == hc.SLOT_BLOCK - 2


def test_plan_keeps_slots_of_staying_backends():
    new, cmds = hc.plan_slots(slots("a:1", "b:1"), ["a:1", "b:1"])
    assert new == slots("a:1", "b:1") and cmds == []


def test_plan_replaces_a_dead_worker():
    new, cmds = hc.plan_slots(slots("a:1", "b:1"), ["a:1", "c:2"])
    assert new == slots("a:1", "c:2")
    assert cmds == [
        "set server workers/s2 state maint",
        "set server workers/s2 addr c port 2",
        "set server workers_once/s2 addr c port 2",
        "set server workers/s2 health down",
        "set server workers/s2 state ready",
    ]


def test_a_drained_worker_back_at_the_same_address_comes_in_again():
    """A dead worker is drained; its replacement lands on the same host and ports (the host
    rebooted): it must be let in again, not left in maintenance (seen on SSH ingress hosts)."""
    table, cmds = hc.drained(slots("a:1", "b:1"), ["b:1"])
    assert table == slots("a:1") and cmds == ["set server workers/s2 state maint"]
    new, cmds = hc.plan_slots(table, ["a:1", "b:1"])
    assert new == slots("a:1", "b:1")
    assert cmds == [
        "set server workers/s2 addr b port 1",
        "set server workers_once/s2 addr b port 1",
        "set server workers/s2 health down",
        "set server workers/s2 state ready",
    ]
    assert hc.drained(slots("a:1"), ["z:9"]) == (slots("a:1"), [])


def test_plan_refuses_more_than_the_slots():
    with pytest.raises(ValueError, match="more than 16"):
        hc.plan_slots(slots(), [f"10.0.0.{i}:1" for i in range(hc.SLOT_BLOCK + 1)])


def test_a_table_grows_by_blocks_keeping_every_backend_in_its_slot():
    assert [hc.slots_for(n) for n in (0, 1, 16, 17, 32, 33, 256, 512)] == [16, 16, 16, 32, 32, 48, 256, 512]
    table = slots(*(f"10.0.0.{i}:8000" for i in range(16)))
    assert hc.grown(table, 16) is None  # room already: no reload
    bigger = hc.grown(table, 24)
    assert bigger is not None and len(bigger) == 32 and bigger[:16] == table and bigger[16:] == [None] * 16
    desired = [f"10.0.0.{i}:8000" for i in range(24)]
    placed, commands = hc.plan_slots(bigger, desired)
    assert placed[:16] == table and {a for a in placed if a} == set(desired)  # the 16 stay where they were
    assert "set server workers/s17 addr 10.0.0.16 port 8000" in commands
    with pytest.raises(ValueError, match=f"at most {hc.MAX_SLOTS}"):
        hc.grown(table, hc.MAX_SLOTS + 1)


def test_a_full_table_for_the_largest_rollout_is_valid_haproxy(tmp_path):
    """The most workers any setting allows beside as many of a rollout's new cluster: one
    config HAProxy accepts."""
    assert hc.MAX_SLOTS == 2 * MAX_WORKERS
    addrs = [f"10.0.{i // 250}.{i % 250 + 1}:8000" for i in range(hc.MAX_SLOTS)]
    f = tmp_path / "h.cfg"
    f.write_text(hc.render(conf(weighted=True), addrs, dict.fromkeys(addrs, 50)))
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f.read_text().count(" check tcp-ut 2s weight 50\n") == hc.MAX_SLOTS


STAT = (Path(__file__).parents[1] / "data" / "haproxy_stat.csv").read_text()


def test_stats_per_backend():
    s1, s2 = hc.parse_stats(STAT)
    assert (s1.slot, s1.status, s1.requests, s1.errors) == ("s1", "UP", 70, 0)
    assert (s2.slot, s2.status, s2.requests, s2.errors, s2.retries, s2.redispatches) == (
        "s2",
        "DOWN",
        30,
        3,
        3,
        1,
    )
    assert s2.hrsp_5xx == 2 and s2.address == "10.0.0.4:8000"
    assert hc.parse_frontend(STAT) == {"requests": 120, "hrsp_2xx": 100, "hrsp_4xx": 20, "hrsp_5xx": 0}


def test_the_process_holding_the_admin_socket_is_read_from_show_info():
    assert hc.info_pid("Name: HAProxy\nVersion: 2.8.25\nPid: 4242\nUptime: 0d 0h00m01s\n") == 4242
    assert hc.info_pid("Name: HAProxy\nPid: \n") is None and hc.info_pid("") is None


def test_limits_at_the_door_are_valid_haproxy_after_the_token_check_and_before_it_is_removed(tmp_path):
    for tokens in (("t0k",), ()):
        text = hc.render(conf(tokens=tokens, max_body_bytes=1000, rate_per_s=0.5, rate_burst=0), slots())
        f = tmp_path / "h.cfg"
        f.write_text(text)
        proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rules = [line.strip() for line in text.splitlines() if line.strip().startswith("http-request")]
        track = next(i for i, r in enumerate(rules) if r.startswith("http-request track-sc3"))
        if tokens:
            assert rules.index(next(r for r in rules if "deny_status 401" in r)) < track
            assert rules.index("http-request del-header authorization") > track  # keyed by it, then removed
            assert "track-sc3 req.hdr(authorization),sha1,hex" in rules[track]  # its digest, not the token
        else:
            assert rules[track].startswith("http-request track-sc3 src ")
        # Half a request a second: one in any second, 5 in any 10 s (never "none at all").
        assert "{ sc_http_req_rate(3) gt 1 } || { sc_http_req_rate(4) gt 5 }" in text
        assert "deny_status 413 if { req.hdr_val(content-length) gt 1000 }" in text
    plain = hc.render(conf(), slots())
    assert "track-sc3" not in plain and "deny_status 413" not in plain and "status 411" not in plain


def test_https_binds_tls_1_2_and_up_with_http2_and_is_valid_haproxy(tmp_path):
    from headway.store import store_tls

    made = store_tls.ensure(tmp_path / "tls", ["localhost"])
    pem = tmp_path / "tls.pem"
    pem.write_text(Path(made.cert).read_text() + Path(made.key).read_text())
    text = hc.render(conf(stats_socket=str(tmp_path / "s"), tls_pem=str(pem), tls_id="abc123"), slots("10.0.0.3:8000"))
    bind = next(line for line in text.splitlines() if line.strip().startswith("bind "))
    assert f"ssl crt {pem} alpn h2,http/1.1 ssl-min-ver TLSv1.2" in bind and "abc123" in bind
    f = tmp_path / "h.cfg"
    f.write_text(text)
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plain = hc.render(conf(), slots("10.0.0.3:8000"))
    assert " ssl " not in plain and "alpn" not in plain


def test_an_endpoint_with_names_refuses_others_with_421_and_behind_a_door_reads_the_proxy_protocol(tmp_path):
    text = hc.render(conf(hostnames=("a.example", "b.example"), listen="abns@hw-x"), slots("10.0.0.3:8000"))
    assert "    bind abns@hw-x accept-proxy\n" in text and "18080" not in text
    assert "deny_status 421 unless { req.hdr(host),field(1,:),lower -m str a.example b.example }" in text
    assert "ssl_fc_sni" not in text  # no TLS, no SNI to check
    f = tmp_path / "h.cfg"
    f.write_text(text.replace("/tmp/x.sock", str(tmp_path / "s")))
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_retries_are_budgeted_by_the_share_of_failed_requests():
    text = hc.render(conf(retry_budget_percent=25), slots("10.0.0.3:8000"))
    assert "sc_http_req_rate(5),mul(25),div(100),add(10)" in text
    assert "http-request disable-l7-retry if { sc_gpc_rate(0,5),sub(txn.hw_budget) gt 0 }" in text
    assert "http-after-response sc-inc-gpc(0,5) if { status ge 500 }" in text
    assert "tune.stick-counters 6" in text


def test_the_endpoint_request_timeout_comes_first_then_the_serve_configs_then_60_s():
    assert hc.request_timeout_s(5, 30) == 5 and hc.request_timeout_s(None, 30) == 30
    assert hc.request_timeout_s(None, None) == hc.DEFAULT_REQUEST_TIMEOUT_S == 60
    assert "timeout server 5000ms" in hc.render(conf(request_timeout_s=hc.request_timeout_s(5, 30)), slots())


def test_grpc_requests_go_to_the_workers_grpc_ports_over_http2_tracking_their_http_health(tmp_path):
    grpc_of = {"10.0.0.3:8000": "10.0.0.3:9000", "10.0.0.4:8001": "10.0.0.4:9001"}
    text = hc.render(
        conf(grpc=True, stats_socket=str(tmp_path / "s")), slots("10.0.0.3:8000", "10.0.0.4:8001"), None, grpc_of
    )
    assert "use_backend grpc_workers if { req.hdr(content-type) -m beg application/grpc }" in text
    assert "    server s1 10.0.0.3:9000 proto h2 track workers/s1 tcp-ut 2s\n" in text
    assert "    server s2 10.0.0.4:9001 proto h2 track workers/s2 tcp-ut 2s\n" in text
    assert "    server s3 127.0.0.9:9" not in text
    assert "    server s3 127.0.0.1:9 proto h2 track workers/s3 tcp-ut 2s\n" in text
    (tmp_path / "h.cfg").write_text(text)
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(tmp_path / "h.cfg")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "grpc_workers" not in hc.render(conf(), slots("10.0.0.3:8000"))
