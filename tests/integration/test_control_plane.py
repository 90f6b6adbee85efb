"""The control plane on a real service, one cluster for all of it: a deploy from a remote
CLI (another HOME, no state) through the REST API, the web dashboard in headless
Chromium, a restart of the control plane that loses nothing and re-adopts the service, a
head kill seen by the browser (RUNNING → HEAD_RECOVERING → RUNNING) and by /metrics,
scaling up and down, then the remote CLI's reads, a followed log and a terminate."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from conftest import HEADWAY, HELLO, Load
from prometheus_client.parser import text_string_to_metric_families

from headway.plan import grafana
from headway.system import procs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


def _text(driver, element_id: str) -> str | None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return driver.find_element("id", element_id).text
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _wait_text(driver, element_id: str, want: str, timeout: float) -> float:
    """Poll the page until the element shows ``want``; return when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _text(driver, element_id) == want:
            return time.time()
        time.sleep(0.2)
    raise AssertionError(f"#{element_id} never showed {want!r} (last: {_text(driver, element_id)!r})")


def _wait_element(driver, element_id: str, timeout: float):
    """The element once the page has drawn it (the store is read beside the services)."""
    from selenium.common.exceptions import NoSuchElementException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.find_element("id", element_id)
        except NoSuchElementException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _metrics(url: str, token: str) -> dict[str, float]:
    """Every sample of ``/metrics`` as prometheus_client's parser reads it, keyed
    ``name{labels}`` with the labels in alphabetical order (as the library writes them)."""
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for smp in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(smp.labels.items()))
            out[f"{smp.name}{{{labels}}}" if labels else smp.name] = smp.value
    return out


def _served_names(url: str, token: str) -> set[str]:
    """Every metric name ``/metrics`` declares (HELP/TYPE) or has a sample of."""
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    fams = list(text_string_to_metric_families(r.text))
    return (
        {f.name for f in fams}
        | {f"{f.name}_total" for f in fams if f.type == "counter"}
        | {smp.name for f in fams for smp in f.samples}
    )


class _Webhook:
    """A webhook receiver on loopback: what the control plane POSTs, kept in order."""

    def __init__(self) -> None:
        import http.server
        import threading

        got = self.got = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kinds(self, service: str) -> list[str]:
        return [e["kind"] for e in self.got if e.get("service") == service]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _poll(api: httpx.Client, op: dict, timeout: float = 400) -> dict:
    deadline = time.monotonic() + timeout
    while not op["done"] and time.monotonic() < deadline:
        time.sleep(0.5)
        op = api.get(f"/api/operations/{op['id']}").json()
    assert op["done"], "operation did not finish"
    return op


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make system)")
def test_dashboard_restart_and_metrics_across_a_head_kill(cli):
    name = "t-cp"
    spec = cli.write_spec(name)
    url = cli.run("api", "url", check=True).stdout.strip()
    token = cli.run("api", "token", check=True).stdout.strip()
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert httpx.get(url + "/api/services", timeout=10).status_code == 401

    # The REST API opens no path a caller names: base_dir is refused.
    r = api.put(f"/api/services/{name}", json={"yaml": spec.read_text(), "base_dir": str(HELLO)})
    assert r.status_code == 422 and "base_dir" in r.text

    # 0. Deployed from "another machine": a second HOME with no state, the API named by
    # HEADWAY_API_URL + HEADWAY_API_TOKEN; the working_dir goes up as a package.
    remote_home = cli.home / "remote-home"
    remote_home.mkdir()
    remote = {k: v for k, v in cli.env.items() if not k.startswith("HEADWAY_")} | {
        "HOME": str(remote_home),
        "XDG_CONFIG_HOME": str(remote_home / ".config"),
        "HEADWAY_API_URL": url,
        "HEADWAY_API_TOKEN": token,
    }

    def far(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([HEADWAY, *args], env=remote, capture_output=True, text=True, timeout=400)

    checked = far("validate", "-f", str(spec), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["action"] == "create"
    assert "a deploy would set up the managed store first" in checked.stderr  # the control plane's own view
    deployed = far("deploy", "-f", str(spec))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "ingress listening at" in deployed.stdout and f"service {name} version 1 is RUNNING" in deployed.stdout
    st = api.get(f"/api/services/{name}").json()
    assert json.loads(far("status", name, "--json").stdout)["nodes"] == st["nodes"]
    assert st["state"] == "RUNNING" and all(n["alive"] for n in st["nodes"])

    profile = tempfile.mkdtemp(prefix="hwt-chrome-")
    driver = _browser(profile)
    try:
        # 1. The dashboard shows the service RUNNING, its nodes, backends and the store gauge.
        driver.get(f"{url}/#token={token}")
        _wait_text(driver, f"state-{name}", "RUNNING", 30)
        cells = driver.find_elements("css selector", "[data-node]")
        assert {c.get_attribute("data-node"): c.text for c in cells} == {
            "head": "up",
            "worker-1": "up",
            "worker-2": "up",
        }
        backends = [c.text for c in driver.find_elements("css selector", "[data-backend]")]
        assert len(backends) == 2 and all(b.startswith("UP") for b in backends), backends
        groups = {c.get_attribute("data-group"): c.text for c in driver.find_elements("css selector", "[data-group]")}
        assert groups == {"worker": "2"}, groups
        gauge = _wait_element(driver, "store-gauge", 20)
        assert gauge.get_attribute("data-alert") == "80" and float(gauge.get_attribute("data-percent")) > 0
        assert "token=" not in driver.current_url  # the page takes the token out of the address bar

        # 2. Restart the control plane (SIGKILL, then start): nothing is lost, the service is re-adopted.
        before = {
            "status": st,
            "events": api.get(f"/api/services/{name}/events").json(),
            "endpoint_token": cli.run("token", name, check=True).stdout.strip(),
        }
        old_pid = cli.controller_pid()
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while procs.alive(old_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        down = cli.run("status", name, "--json", check=True)  # read-only status without the daemon
        assert '"state": "RUNNING"' in down.stdout
        assert name in cli.run("list", check=True).stdout
        cli.run("controller", "start", check=True)
        new_pid = cli.controller_pid()
        assert new_pid and new_pid != old_pid
        assert cli.run("api", "token", check=True).stdout.strip() == token  # the same API token
        after_events = api.get(f"/api/services/{name}/events").json()
        assert after_events[: len(before["events"])] == before["events"], "the timeline lost entries"
        again = api.get(f"/api/services/{name}").json()
        assert [(n["name"], n["ip"]) for n in again["nodes"]] == [(n["name"], n["ip"]) for n in st["nodes"]]
        assert cli.run("token", name, check=True).stdout.strip() == before["endpoint_token"]
        m0 = _metrics(url, token)
        assert m0[f'headway_recoveries_total{{service="{name}"}}'] == 0

        # Alerts from the cloud config: a webhook, a recovery "slow" after 1 s.
        hook = _Webhook()
        alerts_yaml = cli.home / "alerts.yaml"
        alerts_yaml.write_text(f"alerts:\n  webhook: {hook.url}\n  recovery_longer_than_s: 1\n  link_base: {url}\n")
        cli.run("cloud", "setup", "--config", str(alerts_yaml), check=True)
        bad_yaml = cli.home / "bad-alerts.yaml"
        bad_yaml.write_text("alerts:\n  webhook: ftp://nowhere\n")
        bad = cli.run("cloud", "setup", "--config", str(bad_yaml))
        assert bad.returncode == 2 and "alerts.webhook" in bad.stderr, bad.stderr

        # 3. Kill the head through the API of the restarted control plane, under traffic.
        auth = {"Authorization": f"Bearer {before['endpoint_token']}"}
        # Some requests for a page the app does not have (404, from a worker) and some without the
        # token (401, from the endpoint itself): each counted by its exact code.
        assert {httpx.get(st["endpoint"] + "/missing", headers=auth).status_code for _ in range(5)} == {404}
        assert {httpx.get(st["endpoint"] + "/").status_code for _ in range(3)} == {401}
        with Load([st["endpoint"]] * 4, headers=auth) as load:
            time.sleep(2)
            r = api.post(f"/api/services/{name}/chaos/kill-head")
            assert r.status_code == 200 and r.json()["killed"] > 0, r.text
            killed_at = r.json()["at"]
            seen_recovering = _wait_text(driver, f"state-{name}", "HEAD_RECOVERING", 30)
            seen_running = _wait_text(driver, f"state-{name}", "RUNNING", 180)
            time.sleep(2)
        steps = driver.find_element("id", f"timeline-{name}").get_attribute("data-steps")
        assert steps == "head lost|new head|workers back|RUNNING", steps

        # The history (a point every 10 s): requests and latency under the load, the head's
        # loss and return marked; and the dashboard's charts draw it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hist = api.get(f"/api/services/{name}/series", params={"minutes": 10}).json()
            served = [p for p in hist["points"] if p["requests"] and p["p99_ms"] is not None]
            if served and {"head_lost", "head_back"} <= {mk["kind"] for mk in hist["marks"]}:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no history point with requests and both marks: {hist}")
        assert set(hist["points"][-1]) == {
            "t",
            "requests",
            "errors_5xx",
            "p50_ms",
            "p99_ms",
            "nodes",
            "replicas",
            "state",
        }
        assert all(p["errors_5xx"] in (0, None) for p in hist["points"])
        assert max(p["nodes"] for p in hist["points"]) == 3 and max(p["replicas"] or 0 for p in hist["points"]) == 2
        assert 0 < served[-1]["p50_ms"] <= served[-1]["p99_ms"]
        assert api.get(f"/api/services/{name}/series", params={"minutes": 0}).status_code == 422
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rate = _wait_element(driver, f"chart-rate-{name}", 20)
            if int(rate.get_attribute("data-points")) > 0 and int(rate.get_attribute("data-marks")) >= 2:
                break
            time.sleep(0.5)
        assert int(rate.get_attribute("data-points")) > 0 and float(rate.get_attribute("data-max")) > 1
        latency = driver.find_element("id", f"chart-latency-{name}")
        p99 = latency.find_element("css selector", '[data-series="p99"]').get_attribute("d")
        drawn = p99.count("M") + p99.count("L")  # one vertex per point with a p99
        after = api.get(f"/api/services/{name}/series", params={"minutes": 60}).json()["points"]
        assert 0 < drawn <= len([p for p in after if p["p99_ms"] is not None]), (p99, after)  # drawn before or after
        kinds = {e.get_attribute("data-mark") for e in rate.find_elements("css selector", "[data-mark]")}
        assert {"head_lost", "head_back"} <= kinds, kinds
        driver.save_screenshot(str(cli.home / "dashboard.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert load.failed == 0, load.errors[:5]

    # The webhook heard the head's loss, the slow recovery and the return, once each, with
    # the service and its timeline's link.
    deadline = time.monotonic() + 30
    while "recovery_slow_cleared" not in hook.kinds(name) and time.monotonic() < deadline:  # the last one sent
        time.sleep(0.5)
    hook.close()
    assert hook.kinds(name) == ["head_failure", "recovery_slow", "head_recovered", "recovery_slow_cleared"], hook.got
    first = hook.got[0]
    assert first["raised"] and name in first["message"] and first["timeline"] == f"{url}/api/services/{name}/events"
    assert api.get(first["timeline"]).status_code == 200
    assert hook.got[2]["downtime_s"] > 0

    # The logs of the last 3 minutes: both workers' lines (the requests above), each with its
    # time and node; the head's part holds the replaced head's lines too (kept at its removal).
    asked = time.time()
    recent = cli.run("logs", name, "--since", "3m", check=True).stdout.splitlines()[1:]
    stamped = [ln for ln in recent if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+( \(retired\))? \| ", ln)]
    sources = {ln.split(" | ")[0].split(" ", 2)[2] for ln in recent}
    assert stamped == recent and {"worker-1", "worker-2"} <= sources, sources
    oldest = min(time.mktime(time.strptime(ln[:19], "%Y-%m-%d %H:%M:%S")) for ln in recent)
    assert oldest >= asked - 180 - 1, recent[:3]  # nothing from before the window
    heads = cli.run("logs", name, "--node", "head", "--lines", "5000", check=True).stdout
    assert " head (retired) | " in heads and " head | " in heads, heads[-1500:]

    # 4. The metrics after the kill.
    running = [e for e in api.get(f"/api/services/{name}/events").json() if e["kind"] == "state"][-1]
    assert running["state"] == "RUNNING" and "downtime_s" in running["details"]
    m = _metrics(url, token)
    s = f'service="{name}"'
    assert m[f"headway_recoveries_total{{{s}}}"] == 1
    assert m[f"headway_last_recovery_seconds{{{s}}}"] == pytest.approx(running["details"]["downtime_s"])
    assert m[f'headway_service_state{{{s},state="RUNNING"}}'] == 1
    assert m[f'headway_service_state{{{s},state="HEAD_RECOVERING"}}'] == 0
    assert m[f"headway_head_up{{{s}}}"] == 1
    assert m[f"headway_ingress_backends_up{{{s}}}"] == 2
    assert m[f"headway_endpoint_requests_total{{{s}}}"] >= load.ok + 8
    assert m[f'headway_responses_total{{code="5xx",{s}}}'] == 0
    v = f'version="{again["running_version"]}"'
    assert m[f'headway_requests_total{{code="200",{s},{v}}}'] >= load.ok
    assert m[f'headway_requests_total{{code="404",{s},{v}}}'] == 5
    assert m[f'headway_requests_total{{code="401",{s},version=""}}'] == 3
    assert not any(k.startswith("headway_requests_total") and 'code="5' in k for k in m), m
    count = m[f"headway_request_duration_seconds_count{{{s},{v}}}"]
    assert count >= load.ok + 5
    buckets = sorted(
        (float(k.split('le="')[1].split('"')[0]), n)
        for k, n in m.items()
        if k.startswith("headway_request_duration_seconds_bucket{") and s in k and v in k
    )
    assert buckets[-1] == (float("inf"), count)
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)  # cumulative
    assert 0 < m[f"headway_request_duration_seconds_sum{{{s},{v}}}"] < count * 10
    assert m[f"headway_service_store_bytes{{{s}}}"] > 100_000
    # Ray's and Serve's own metrics of every node, through the control plane, with the
    # read-only metrics token; labelled with the service, the cluster and the node.
    ro = cli.run("api", "token", "--metrics", check=True).stdout.strip()
    assert httpx.get(url + "/metrics/ray", timeout=30).status_code == 401
    deadline = time.monotonic() + 60
    while True:  # a node too slow to answer (a loaded machine) is left out of one scrape
        r = httpx.get(url + "/metrics/ray", headers={"Authorization": f"Bearer {ro}"}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        ray_fams = list(text_string_to_metric_families(r.text))
        serve_samples = [x for f in ray_fams if f.name.startswith("ray_serve_") for x in f.samples]
        nodes = {x.labels.get("node") for x in serve_samples if x.labels.get("service") == name}
        if {"worker-1", "worker-2"} <= nodes or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {"worker-1", "worker-2"} <= nodes, (nodes, sorted(f.name for f in ray_fams)[:50])
    assert all({"service", "cluster", "node"} <= x.labels.keys() for f in ray_fams for x in f.samples)
    # The Grafana dashboard's every query reads only what this /metrics serves.
    served = _served_names(url, token)
    board = json.loads(cli.run("dashboard", "--grafana", check=True).stdout)
    for expr in grafana.queries(board):
        assert grafana.metric_names(expr) <= served, (expr, grafana.metric_names(expr) - served)
    store = api.get("/api/storage").json()["cloud"]
    assert m['headway_store_memory_percent{store="cloud"}'] == pytest.approx(store["percent"], abs=1.0)

    # 5. The remaining routes on the live service: nodes, token, scale up (API) and down (CLI), delete.
    nodes = api.get(f"/api/services/{name}/nodes").json()
    assert sorted(n["name"] for n in nodes) == ["head", "worker-1", "worker-2"] and all(n["alive"] for n in nodes)
    assert api.get(f"/api/services/{name}/token").json()["token"] == before["endpoint_token"]
    r = api.post(f"/api/services/{name}/scale", json={"group": "worker", "count": 3})
    assert r.status_code == 202, r.text
    scaled = _poll(api, r.json())
    assert scaled["exit_code"] == 0, (scaled["error"], scaled["lines"])
    st3 = api.get(f"/api/services/{name}").json()
    assert sorted(n["name"] for n in st3["nodes"]) == ["head", "worker-1", "worker-2", "worker-3"]
    assert len(st3["ingress"]["backends"]) == 3
    down = cli.run("scale", name, "--group", "worker", "--count", "2", check=True)
    assert "removing worker worker-3" in down.stdout
    assert sorted(n["name"] for n in api.get(f"/api/services/{name}/nodes").json()) == ["head", "worker-1", "worker-2"]
    # 6. The remote CLI again: the token, the head's log, a follow stopped by Ctrl-C, terminate.
    assert far("token", name).stdout.strip() == before["endpoint_token"]
    head_log = far("logs", name, "--lines", "20")
    assert head_log.returncode == 0 and "-- " in head_log.stdout, head_log.stderr
    follow = subprocess.Popen([HEADWAY, "logs", name, "-f"], env=remote, stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None and follow.stdout.readline().startswith("-- ")  # streamed from the API
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) in (0, 130)
    finally:
        follow.kill()
    gone = far("terminate", name)
    assert gone.returncode == 0 and f"service {name} terminated" in gone.stdout, gone.stderr
    assert api.get("/api/services").json() == []
    # No second control plane: one would need a state dir under the remote HOME.
    assert not (remote_home / ".headway").exists(), "the remote CLI made a state dir"
    assert api.get(f"/api/services/{name}").status_code == 404
    print(
        f"\ncontrol plane: {load.report()} through the endpoint; browser saw HEAD_RECOVERING "
        f"{seen_recovering - killed_at:.1f} s and RUNNING {seen_running - killed_at:.1f} s after the kill; "
        f"last recovery {running['details']['downtime_s']} s; store {store['percent']:.1f}%"
    )


def test_a_taken_api_port_is_a_clear_error(cli):
    """No Ray: the control plane must not start without its API, and must say why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(cli.env["HEADWAY_API_PORT"])))
        taken.listen()
        r = cli.run("api", "url")
    assert r.returncode == 1
    assert "the API cannot listen on 127.0.0.1" in r.stderr and "HEADWAY_API_PORT" in r.stderr
    assert cli.controller_pid() is None
