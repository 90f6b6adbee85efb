"""The examples a user copies, deployed as they are (netns mode) and asked through the
endpoint with the token: the answers are checked, not only the status.

The sentiment example needs a package Ray does not ship: it is resolved once on the
control host and shipped; a killed worker's replacement (a host with no route to any
package index) serves it again without anything being resolved or downloaded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import HEADWAY, probe_from

from headway.system import netns

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _endpoint(cli, name: str) -> tuple[str, dict[str, str]]:
    token = cli.run("token", name, check=True).stdout.strip()
    return cli.status(name)["endpoint"], {"Authorization": f"Bearer {token}"}


def _sentiment(url: str, auth: dict[str, str], text: str) -> dict:
    r = httpx.post(url + "/", content=text, headers=auth, timeout=15)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_dependency_ray_does_not_ship_is_resolved_once_and_survives_a_worker_replacement(cli, tmp_path):
    name = "sentiment"
    cli.services += [name, "t-baddep"]
    # A requirement that resolves to nothing fails before anything starts, naming it.
    bad = yaml.safe_load((EXAMPLES / name / "service.yaml").read_text())
    bad |= {
        "name": "t-baddep",
        "working_dir": str(EXAMPLES / name / "app"),
        "requirements": ["vaderSentiment==3.3.2", "no-such-package-hw-4711"],
    }
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(yaml.safe_dump(bad))
    out = cli.run("deploy", "-f", str(bad_yaml))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no-such-package-hw-4711" in out.stderr and "nothing was started" in out.stderr
    assert not (cli.home / "cloud" / "cloud.json").exists(), "a cloud was set up for a deploy that cannot run"
    assert not [ns for ns in netns.list_namespaces() if ns.startswith("hw-t-baddep.")]

    t0 = time.monotonic()
    deployed = cli.run("deploy", "-f", str(EXAMPLES / name / "service.yaml"), check=True)
    print(f"deploy with a dependency took {time.monotonic() - t0:.1f} s")
    assert "vaderSentiment==3.3.2" in deployed.stdout  # what is shipped is said
    url, auth = _endpoint(cli, name)
    assert _sentiment(url, auth, "I love this, it is wonderful!")["label"] == "positive"
    assert _sentiment(url, auth, "This is terrible and I hate it.")["label"] == "negative"
    packages = sorted((cli.home / "services" / name / "pkg").glob("deps-*.zip"))
    assert len(packages) == 1
    built = packages[0].stat().st_mtime_ns

    _logs_of_every_kind(cli, name, url, auth)
    shown = cli.run("config", name, check=True).stdout
    assert "version 1 (running)" in shown and "- vaderSentiment==3.3.2" in shown and "shipped as deps-" in shown

    # The nodes have no route to a package index.
    rec = cli.record(name)
    victim = next(n for n in rec["nodes"] if n["role"] == "worker")
    for target in ("pypi.org:443", "151.101.0.223:443", "files.pythonhosted.org:443"):
        assert probe_from(victim["netns"], "tcp", target) != "open", target

    # A worker killed: its replacement serves the app from the shipped package.
    log_before = len((cli.home / "controller.log").read_text())
    t = cli.crash(name, victim["name"])
    placed = cli.wait_event(name, "replicas_placed", after=t, timeout=180)
    print(f"worker SIGKILL -> replicas placed again: {placed['at'] - t:.1f} s")
    new = next(n for n in cli.record(name)["nodes"] if n["name"] == victim["name"])
    assert new["ip"] != victim["ip"]
    assert probe_from(new["netns"], "tcp", "151.101.0.223:443") != "open"
    seen = set()
    deadline = time.monotonic() + 60
    while victim["name"] not in seen and time.monotonic() < deadline:
        reply = _sentiment(url, auth, "What a great day")
        assert reply["label"] == "positive"
        seen.add(reply["node"])
    assert victim["name"] in seen, f"the replaced worker never answered (answers from {seen})"
    assert packages[0].stat().st_mtime_ns == built, "the package was made again"
    log = (cli.home / "controller.log").read_text()[log_before:]
    assert "worker" in log and "resolving" not in log, "the controller resolved packages for a replacement"
    cli.run("terminate", name, check=True)
    assert not (cli.home / "services" / name / "pkg").exists() or not list(
        (cli.home / "services" / name / "pkg").glob("deps-*.zip")
    ), "the package outlived its service"


def _logs_of_every_kind(cli, name: str, url: str, auth: dict[str, str]) -> None:
    """`headway logs`: the application's replica logs from both workers, each line with its
    time and node (then followed while requests come in), every node merged by time with
    --since, the controller's lines about the service, the node's own output."""
    app = cli.run("logs", name, "--app", name, "-n", "50", check=True).stdout
    assert " worker-1 | " in app and " worker-2 | " in app, app[-800:]
    assert "POST /" in app  # Serve's access log of the requests above
    assert all(
        re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [\w@-]+( \(retired\))? \| ", ln) for ln in app.splitlines()[1:]
    ), app[:800]
    recent = cli.run("logs", name, "--since", "2m", check=True).stdout
    assert {"worker-1", "worker-2"} <= {ln.split(" | ")[0].split(" ")[-1] for ln in recent.splitlines()[1:]}
    bad = cli.run("logs", name, "--since", "soon")
    assert bad.returncode == 2 and "10m" in bad.stderr
    assert "deploy sentiment" in cli.run("logs", name, "--controller", check=True).stdout
    assert "Ray runtime started" in cli.run("logs", name, "--node", "head", "-n", "5000", check=True).stdout
    wrong = cli.run("logs", name, "--app", "nope")
    assert wrong.returncode == 2 and "has no application nope; its applications: sentiment" in wrong.stderr
    both = cli.run("logs", name, "--app", name, "--ingress")
    assert both.returncode == 2 and "choose one log" in both.stderr
    follower = subprocess.Popen(
        [HEADWAY, "logs", name, "--app", name, "-n", "1", "--follow"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
        for _ in range(8):
            _sentiment(url, auth, "followed")
        time.sleep(3)
    finally:
        follower.send_signal(signal.SIGINT)
        followed, errors = follower.communicate(timeout=20)
    assert followed.count("POST /") >= 6, (followed[-1500:], errors[-500:])


def test_composed_and_streaming_examples_answer_through_the_endpoint(cli):
    cli.services += ["composed", "streaming"]
    for name in ("composed", "streaming"):
        cli.run("deploy", "-f", str(EXAMPLES / name / "service.yaml"), check=True)

    url, auth = _endpoint(cli, "composed")
    assert httpx.get(url + "/", headers=auth, timeout=10).json()["routes"] == ["POST /analyze"]
    r = httpx.post(
        url + "/analyze",
        json={"text": "To be, or not to be: that is the question.", "top": 2},
        headers=auth,
        timeout=15,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["words"] == 10 and body["distinct"] == 8 and body["top"] == [["be", 2], ["to", 2]]
    workers = {n["name"] for n in cli.status("composed")["nodes"] if n["role"] == "worker"}
    assert {body["ingress_node"], body["tokenizer_node"], body["stats_node"]} <= workers
    bad = httpx.post(url + "/analyze", json={"text": "x", "top": 0}, headers=auth, timeout=15)
    assert bad.status_code == 422 and "top between 1 and 100" in bad.text
    assert httpx.post(url + "/analyze", json={"text": "x"}, timeout=15).status_code == 401

    url, auth = _endpoint(cli, "streaming")
    arrivals, events = [], []
    t0 = time.monotonic()
    with httpx.stream(
        "GET", url + "/generate", params={"prompt": "hi", "tokens": 6, "delay": 0.4}, headers=auth, timeout=30
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - t0)
                events.append(line.removeprefix("data: "))
    assert events[-1] == "[DONE]"
    tokens = [json.loads(e) for e in events[:-1]]
    assert [t["index"] for t in tokens] == list(range(6))
    # Sent as produced: the first token arrives long before the stream ends (6 x 0.4 s).
    print(f"streaming: first event after {arrivals[0]:.2f} s, last after {arrivals[-1]:.2f} s")
    assert arrivals[-1] - arrivals[0] > 1.5, arrivals
    for name in ("composed", "streaming"):
        cli.run("terminate", name, check=True)
