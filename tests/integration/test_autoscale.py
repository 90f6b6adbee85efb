"""Autoscaling under load through the endpoint: Serve's replicas follow the requests in
flight, worker nodes follow the replicas, nothing is added while the head is down, and a
node leaves without a failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml
from conftest import Load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "autoscale"


def _workers(cli, name: str) -> list[str]:
    return sorted(n["name"] for n in cli.record(name)["nodes"] if n["role"] == "worker")


class Sampler:
    """The service's workers and state, read from its record twice a second."""

    def __init__(self, cli, name: str):
        self.cli, self.name = cli, name
        self.samples: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rec = self.cli.record(self.name)
            workers = sum(1 for n in rec["nodes"] if n["role"] == "worker")
            self.samples.append((time.time(), rec["state"], workers))
            self._stop.wait(0.5)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_nodes_follow_the_load_pause_while_the_head_is_down_and_leave_without_a_failure(cli):
    name = "t-auto"
    data = yaml.safe_load((EXAMPLE / "service.yaml").read_text())
    data |= {"name": name, "working_dir": str(EXAMPLE / "app")}
    data["compute_config"]["idle_timeout_s"] = 15
    data["applications"][0]["deployments"][0]["autoscaling_config"]["downscale_delay_s"] = 8
    spec = cli.home / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(data))
    cli.services.append(name)
    cli.run("deploy", "-f", str(spec), check=True)
    assert _workers(cli, name) == ["pool-1"]
    st = cli.status(name)
    auth = {"Authorization": f"Bearer {cli.run('token', name, check=True).stdout.strip()}"}
    t0 = time.time()

    with Sampler(cli, name) as sampler, Load([st["endpoint"]], headers=auth) as light:
        # Ramp: 12 clients, each request holding a replica 0.2 s -> Serve wants 4 replicas,
        # one per 1-CPU node; the group may grow to 3. The head dies as the ramp starts.
        with Load([st["endpoint"]] * 12, headers=auth, pace_s=0.05) as heavy:
            time.sleep(2)
            killed_at = cli.crash(name, "head")
            cli.wait_event(name, "state", killed_at, state="RUNNING", timeout=180)
            _wait(lambda: len(_workers(cli, name)) == 3, 240, "the group grew to max_nodes 3")
            time.sleep(5)  # the new replicas serve
        grown = time.time()
        print(f"ramp: {heavy.report()}")
        # Back to one client: Serve removes replicas, the idle nodes leave.
        _wait(lambda: len(_workers(cli, name)) == 1, 240, "the group shrank back to min_nodes 1")
        time.sleep(3)
    print(f"light: {light.report()}")

    events = cli.record(name)["events"]
    for e in events:
        if e["at"] > t0 and (e["kind"].startswith(("scale_", "autoscal")) or e["kind"] == "state"):
            print(f"+{e['at'] - t0:6.1f} s {e['kind']}: {e['message']}")
    kinds = [(e["kind"], e["at"]) for e in events]
    suspended = next(at for k, at in kinds if k == "autoscaling_suspended" and at > killed_at)
    resumed = next(at for k, at in kinds if k == "autoscaling_resumed" and at > suspended)
    ups = [e for e in events if e["kind"] == "scale_up" and e["at"] > t0]
    downs = [e for e in events if e["kind"] == "scale_down" and e["at"] > grown]
    assert ups and all(e["at"] > resumed for e in ups), "a node was added while the head was down"
    assert sum(len(e["details"]["nodes"]) for e in ups) == 2 and downs
    # Sampled: never more than max_nodes; no node added while the head was recovering.
    assert max(w for _, _, w in sampler.samples) == 3
    during = [w for at, state, w in sampler.samples if state == "HEAD_RECOVERING"]
    assert during and max(during) == 1, during
    assert any("at max_nodes" in e["message"] for e in events if e["kind"] == "autoscale_blocked")
    assert heavy.failed == 0 and light.failed == 0, (heavy.errors[:5], light.errors[:5])
    st = cli.status(name)
    assert st["state"] == "RUNNING"
