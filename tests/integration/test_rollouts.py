"""Rollouts under steady load through the endpoint (the token on every request): a new
version beside the old one, traffic in steps that the answers follow, a surge cap, a
worker of each cluster and the control plane killed mid-rollout, a broken version rolled
back by itself, a new head killed mid-rollout — and no key of a removed cluster left in
the store."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import redis
from conftest import Load, endpoint_oddities, read_record

from headway.system import procs

APP_DIR = Path(__file__).resolve().parent / "apps" / "versioned"


class Answers(Load):
    """Clients that never retry; every answer kept with its time, status and version."""

    def __init__(self, url: str, headers: dict[str, str], clients: int = 3, pace_s: float = 0.03):
        super().__init__([url] * clients, headers=headers, pace_s=pace_s)
        self.seen: list[tuple[float, int, str]] = []  # (time, status, version or error)

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=self.timeout_s, headers=self.headers) as c:
            while not self._stop.is_set():
                try:
                    r = c.get(url + "/")
                    self.seen.append((time.time(), r.status_code, r.json().get("version", "?")))
                except (httpx.HTTPError, ValueError) as exc:
                    self.seen.append((time.time(), 0, type(exc).__name__))
                self._stop.wait(self.pace_s)

    def failures(self, since: float = 0.0) -> list[tuple[float, int, str]]:
        return [s for s in self.seen if s[0] >= since and s[1] != 200]

    def share(self, version: str, start: float, end: float) -> tuple[float, int]:
        got = [s for s in self.seen if start <= s[0] < end and s[1] == 200]
        return (sum(1 for s in got if s[2] == version) / len(got) if got else 0.0), len(got)


def _spec(cli, name: str, answer: str, fail_ratio: float = 0.0, **extra) -> str:
    app = {
        "name": "app",
        "import_path": "versioned:build",
        "route_prefix": "/",
        "args": {"answer": answer, "fail_ratio": fail_ratio},
    }
    rollout = {"steps_percent": [10, 25, 50, 100], "step_interval_s": 6}
    path = cli.write_spec(name, applications=[app], working_dir=str(APP_DIR), rollout=rollout, **extra)
    return str(path)


def _store(cli) -> redis.Redis:
    cloud = json.loads((cli.home / "cloud" / "cloud.json").read_text())
    primary = next(p for p in cloud["store"] if p["role"] == "primary")["port"]
    return redis.Redis(port=primary, password=(cli.home / "cloud" / "store.password").read_text().strip())


def _gone(cli, store: redis.Redis, rec: dict) -> None:
    """Nothing of a removed cluster is left: no process, no store key, no ACL user."""
    assert procs.pids_with_marker(rec["cluster_id"] + "/") == [], rec["name"]
    assert store.keys(f"RAY{rec['namespace']}@*") == [], rec["namespace"]
    assert rec["store_user"] not in [u if isinstance(u, str) else u.decode() for u in store.acl_users()]


def _events(cli, name: str, after: float, kind: str) -> list[dict]:
    return [e for e in cli.record(name)["events"] if e["at"] > after and e["kind"] == kind]


def test_rollout_steps_surge_broken_version_and_new_head_killed(cli):
    name = "t-ro"
    cli.run("deploy", "-f", _spec(cli, name, "v1"), check=True)
    auth = {"Authorization": "Bearer " + cli.run("token", name, check=True).stdout.strip()}
    endpoint = cli.status(name)["endpoint"]
    store = _store(cli)
    v1 = cli.record(name)

    # 1. v1 -> v2 with max_surge_percent 50 and 2 workers: never more than 3 alive at once,
    # and the share of v2 answers follows each step's weight.
    most_workers, samples = 0, 0
    with Answers(endpoint, auth) as answers:
        time.sleep(2)
        t0 = time.time()
        out = cli.run("deploy", "-f", _spec(cli, name, "v2"), "--strategy", "rollout", "--max-surge-percent", "50")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "rolling out beside it" in out.stdout, out.stdout
        deadline = time.monotonic() + 300
        faults: dict[str, float] = {}
        while time.monotonic() < deadline:
            rec = read_record(cli.home, name)
            percent = (rec["rollout"] or {}).get("percent")
            if percent == 10 and "worker" not in faults:  # an old worker dies: replaced, nothing lost
                faults["worker"] = cli.crash(name, "worker-1")
            if percent == 25 and "controller" not in faults:  # the control plane dies and comes back
                pid = cli.controller_pid()
                assert pid
                os.kill(pid, signal.SIGKILL)
                faults["controller"] = time.time()
                time.sleep(4)
                assert read_record(cli.home, name)["rollout"]["percent"] == 25  # nothing moves it meanwhile
                cli.run("controller", "start", check=True)
            new = read_record(cli.home, f"{name}_r2")
            alive = len([n for n in rec["nodes"] if n["role"] == "worker"])
            alive += len([n for n in new["nodes"] if n["role"] == "worker"]) if new else 0
            most_workers, samples = max(most_workers, alive), samples + 1
            if rec["rollout"] is None:
                break
            time.sleep(0.5)
        time.sleep(3)
        done = time.time()
    steps = _events(cli, name, t0, "rollout_step")
    print(
        f"\nrollout v1 -> v2: {done - t0:.1f} s, {len(answers.seen)} requests, "
        f"{len(answers.failures())} failed, at most {most_workers} workers ({samples} samples)"
    )
    assert _events(cli, name, t0, "rollout_completed"), cli.events(name)[-8:]
    assert [e["details"]["percent"] for e in steps] == [10, 25, 50, 100]
    assert set(faults) == {"worker", "controller"}, faults
    assert _events(cli, name, faults["worker"], "worker_replaced"), cli.events(name)[-10:]
    assert answers.failures() == [], (answers.failures()[:10], endpoint_oddities(cli.home, name))
    assert 2 < most_workers <= 3, most_workers
    for step, nxt in zip(steps, [*steps[1:], None], strict=True):
        start, end = step["at"] + 1.0, (nxt["at"] if nxt else done - 3) - 0.5
        share, n = answers.share("v2", start, end)
        want = step["details"]["percent"] / 100
        print(f"  step {step['details']['percent']:>3} %: v2 answered {share:.1%} of {n}")
        assert abs(share - want) <= 0.12, (step["details"]["percent"], share, n)
    assert answers.share("v2", done - 2.5, done)[0] == 1.0
    after = cli.status(name)
    assert after["running_version"] == 2 and after["rollout"] is None and after["endpoint"] == endpoint
    assert read_record(cli.home, f"{name}_r2") is None
    _gone(cli, store, v1)
    status = cli.run("rollout", "status", name, check=True).stdout
    assert "no rollout in progress" in status and "version 2 serves all traffic" in status, status

    # 2. A version whose replicas answer 500 on half their requests: rolled back by itself at
    # its first step, the endpoint ends serving v2 only, the broken cluster's keys removed.
    with Answers(endpoint, auth) as answers:
        time.sleep(1)
        t1 = time.time()
        out = cli.run("deploy", "-f", _spec(cli, name, "v3", fail_ratio=0.5), "--strategy", "rollout")
        assert out.returncode == 0, out.stdout + out.stderr
        broken = read_record(cli.home, f"{name}_r3")
        assert broken is not None
        back = cli.wait_event(name, "rollout_rolled_back", after=t1, timeout=120)
        time.sleep(2)
    visible = answers.failures(t1)
    print(
        f"broken v3: rolled back in {back['at'] - t1:.1f} s; {len(answers.seen)} requests, "
        f"{len(visible)} answered 500 to clients: {back['message'][:160]}"
    )
    assert "5xx rate" in back["message"], back["message"]
    assert (
        not _events(cli, name, t1, "rollout_step")
        or _events(cli, name, t1, "rollout_step")[0]["details"]["percent"] == 10
    )
    assert len(visible) <= 0.1 * len([s for s in answers.seen if s[0] >= t1]), len(visible)
    assert answers.share("v2", back["at"] + 1, back["at"] + 2.5)[0] == 1.0
    st = cli.status(name)
    assert st["running_version"] == 2 and st["rollout"] is None
    _gone(cli, store, broken)
    versions = cli.run_json("versions", name)
    assert {v["number"]: v["outcome"] for v in versions["versions"]}[3] == "failed", versions
    waited = cli.run("rollout", "status", name, "--wait", "--json")  # it ended before: says how, at once
    assert waited.returncode == 1 and "rolled back" in json.loads(waited.stdout)["outcome"], waited

    # 3. At the canary (25 %), a worker of the new cluster, its head, then the old cluster's
    # head killed in turn: each repaired as usual, the rollout paused while a head is down and
    # held at 25 %; promoted, it completes; no request fails.
    with Answers(endpoint, auth) as answers:
        t2 = time.time()
        out = cli.run("deploy", "-f", _spec(cli, name, "v4"), "--canary-percent", "25")
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.monotonic() + 120
        while (cli.record(name)["rollout"] or {}).get("percent") != 25 and time.monotonic() < deadline:
            time.sleep(0.5)
        # A worker of the new cluster dies: the step pauses (the 500s the surviving proxies give
        # for its replicas are the machine's fault, not the version's), it is replaced there,
        # and the step goes on — never rolled back for it.
        lost = cli.crash(f"{name}_r4", "worker-1")
        paused = cli.wait_event(name, "rollout_paused", after=lost, timeout=60)
        assert "stopped answering" in paused["message"], paused
        cli.wait_event(f"{name}_r4", "replicas_placed", after=lost, timeout=120)
        cli.wait_event(name, "rollout_resumed", after=lost, timeout=60)
        assert not _events(cli, name, t2, "rollout_rolled_back"), cli.events(name)[-8:]
        killed = cli.crash(f"{name}_r4", "head")
        cli.wait_event(name, "rollout_paused", after=killed, timeout=60)
        cli.wait_event(f"{name}_r4", "state", after=killed, state="RUNNING", timeout=150)
        cli.wait_event(name, "rollout_resumed", after=killed, timeout=60)
        cli.wait_event(name, "rollout_canary_held", after=killed, timeout=60)
        assert cli.record(name)["rollout"]["percent"] == 25
        old_head = cli.crash(name, "head")  # and now the old cluster's head: paused, repaired, resumed
        cli.wait_event(name, "rollout_paused", after=old_head, timeout=60)
        cli.wait_event(name, "state", after=old_head, state="RUNNING", timeout=150)
        cli.wait_event(name, "rollout_resumed", after=old_head, timeout=60)
        assert cli.record(name)["rollout"]["percent"] == 25
        cli.run("rollout", "promote", name, check=True)
        waited = cli.run("rollout", "status", name, "--wait", "--wait-timeout", "200")  # blocks until the end
        assert waited.returncode == 0 and "completed" in waited.stdout, waited.stdout + waited.stderr
        assert cli.wait_event(name, "rollout_completed", after=killed, timeout=5)
        time.sleep(2)
    print(
        f"new head killed at 25 %: {len(answers.seen)} requests, {len(answers.failures())} failed; "
        f"done {time.time() - t2:.1f} s after the deploy"
    )
    assert answers.failures() == [], (answers.failures()[:10], endpoint_oddities(cli.home, name))
    assert cli.status(name)["running_version"] == 4

    # 4. The operator rolls a canary back: traffic returns at once, the new cluster is removed.
    with Answers(endpoint, auth) as answers:
        t3 = time.time()
        held = cli.run("deploy", "-f", _spec(cli, name, "v5"), "--canary-percent", "10", "--wait-rollout", "--json")
        assert held.returncode == 3, held.stdout + held.stderr  # returns once the canary is held for promote
        assert json.loads(held.stdout)["rollout"] == 5 and "rollout promote" in held.stderr
        assert cli.wait_event(name, "rollout_canary_held", after=t3, timeout=5)
        busy = cli.run("deploy", "-f", _spec(cli, name, "v6"))
        assert busy.returncode == 3 and "rollout rollback" in busy.stderr, busy.stderr
        canary = read_record(cli.home, f"{name}_r5")
        out = cli.run("rollout", "rollback", name, check=True).stdout
        assert "serves version 4 only" in out, out
        back = time.time()
        time.sleep(2)
    assert answers.failures() == [], (answers.failures()[:10], endpoint_oddities(cli.home, name))
    assert answers.share("v4", back, back + 2)[0] == 1.0 and answers.share("v5", t3, back)[0] > 0
    _gone(cli, store, canary)
    assert "rolled back by the operator" in cli.run("rollout", "status", name, check=True).stdout
    cli.run("terminate", name, check=True)
    assert store.keys("RAYhw-t-ro*") == []
