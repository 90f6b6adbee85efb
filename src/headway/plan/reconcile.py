"""The reconcile plan: from the desired version and what was observed, the next steps —
a pure function, each step with the reason it is needed.

The order is the product's promise:

1. Terminate always wins: asked for, it is the only step.
2. The endpoint first (it is the data path), then the head: nothing can be changed
   through a dead GCS, so while the head is down (or being replaced) no update step
   is planned — only the head's recovery and the replacement of workers lost with it.
3. Dead workers are replaced before anything is changed.
4. A change of the head's settings replaces the head through the same fenced path as
   a failure.
5. Workers are added before others are removed (capacity never dips below what is
   asked), and a worker whose settings changed is *rolled*: its successor joins first,
   then it is drained and removed — one at a time.
6. The applications last (Serve rolls their replicas itself), then RUNNING.

``allowed`` is the table of which steps each state permits; ``plan`` never proposes
one that is not allowed, and a test walks every state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from headway.model.states import State


class StepKind(StrEnum):
    TERMINATE = "terminate"
    RESTART_INGRESS = "restart_ingress"
    RECOVER_HEAD = "recover_head"  # the head died: fence it, start a new one, re-adopt
    REPLACE_DEAD_WORKER = "replace_dead_worker"
    REPLACE_HEAD = "replace_head"  # the head's settings changed: the same fenced path
    ADD_WORKER = "add_worker"
    ROLL_WORKER = "roll_worker"  # successor joins, then the old one is drained and removed
    REMOVE_WORKER = "remove_worker"
    APPLY_APPS = "apply_apps"
    MARK_RUNNING = "mark_running"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    node: str | None = None
    group: str | None = None
    reason: str = ""

    def __str__(self) -> str:
        target = f" {self.node}" if self.node else ""
        return f"{self.kind}{target}: {self.reason}"


@dataclass(frozen=True)
class NodeView:
    name: str
    role: str  # head | worker
    group: str | None
    alive: bool
    config: str | None  # digest of the settings it was started with (None: unknown, left alone)


@dataclass(frozen=True)
class Desired:
    version: int
    workers: tuple[tuple[str, str, str], ...]  # (name, group, config digest)
    head_config: str
    apps: str  # digest of the Serve config


@dataclass(frozen=True)
class Observed:
    state: State
    nodes: tuple[NodeView, ...]
    head_alive: bool = True
    ingress_up: bool = True
    apps: str | None = None  # digest of the Serve config last applied
    terminate_requested: bool = False


#: Which steps each state allows. HEAD_RECOVERING allows no update step (the mission:
#: changes wait while the head is down); terminate is allowed everywhere it can run.
_REPAIRS = {StepKind.RESTART_INGRESS, StepKind.RECOVER_HEAD, StepKind.REPLACE_DEAD_WORKER, StepKind.TERMINATE}
#: Steps that change a service toward its desired version (rather than repair it).
CHANGES = frozenset(
    {
        StepKind.REPLACE_HEAD,
        StepKind.ADD_WORKER,
        StepKind.ROLL_WORKER,
        StepKind.REMOVE_WORKER,
        StepKind.APPLY_APPS,
        StepKind.MARK_RUNNING,
    }
)
ALLOWED: dict[State, frozenset[StepKind]] = {
    State.STARTING: frozenset(CHANGES | {StepKind.TERMINATE}),
    State.RUNNING: frozenset(_REPAIRS | CHANGES),
    State.UPDATING: frozenset(_REPAIRS | CHANGES),
    State.UNHEALTHY: frozenset(_REPAIRS | CHANGES),
    State.HEAD_RECOVERING: frozenset(_REPAIRS | {StepKind.MARK_RUNNING}),
    State.TERMINATING: frozenset({StepKind.TERMINATE}),
    State.TERMINATED: frozenset(),
}


def allowed(state: State, kind: StepKind) -> bool:
    return kind in ALLOWED[state]


def plan(desired: Desired, observed: Observed) -> list[Step]:
    """The steps that take ``observed`` to ``desired``, in the order they must run."""
    state = observed.state
    if state == State.TERMINATED:
        return []
    if observed.terminate_requested or state == State.TERMINATING:
        return [Step(StepKind.TERMINATE, reason="terminate was asked for: it preempts everything")]
    steps: list[Step] = []
    if not observed.ingress_up and state != State.STARTING:
        steps.append(Step(StepKind.RESTART_INGRESS, reason="the ingress process is gone"))
    workers = [n for n in observed.nodes if n.role == "worker"]
    wanted = {name: (group, config) for name, group, config in desired.workers}
    dead = [w for w in workers if not w.alive and w.name in wanted]  # a dead one nobody wants is just removed
    if not observed.head_alive or state == State.HEAD_RECOVERING:
        why = "the head is down" if not observed.head_alive else "an interrupted recovery is resumed"
        steps.append(Step(StepKind.RECOVER_HEAD, reason=why + "; updates wait until it is back"))
        steps += [Step(StepKind.REPLACE_DEAD_WORKER, w.name, w.group, "lost while the head was down") for w in dead]
        return [s for s in steps if allowed(state, s.kind)]
    steps += [Step(StepKind.REPLACE_DEAD_WORKER, w.name, w.group, "its host is down") for w in dead]
    head = next((n for n in observed.nodes if n.role == "head"), None)
    if head is not None and head.config is not None and head.config != desired.head_config:
        steps.append(Step(StepKind.REPLACE_HEAD, "head", None, "the head's settings changed (fenced restart)"))
    have = {w.name: w for w in workers}
    for name, (group, _) in wanted.items():
        if name not in have:
            steps.append(Step(StepKind.ADD_WORKER, name, group, f"group {group} asks for it"))
    for w in workers:
        if w.name in wanted and w.alive:
            group, config = wanted[w.name]
            if w.group != group:
                steps.append(Step(StepKind.ROLL_WORKER, w.name, group, f"moves from group {w.group} to {group}"))
            elif w.config is not None and w.config != config:
                steps.append(Step(StepKind.ROLL_WORKER, w.name, group, "its group's resources or env_vars changed"))
    steps += [
        Step(StepKind.REMOVE_WORKER, w.name, w.group, "no group asks for it") for w in workers if w.name not in wanted
    ]
    if observed.apps != desired.apps:
        steps.append(Step(StepKind.APPLY_APPS, reason="the applications differ from the desired version"))
    if not steps and state != State.RUNNING:
        steps.append(Step(StepKind.MARK_RUNNING, reason=f"version {desired.version} is converged"))
    return [s for s in steps if allowed(state, s.kind)]


def digest(value: Any) -> str:
    """A short, stable fingerprint of JSON-able settings."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def node_config(resources: dict[str, float], env_vars: dict[str, str]) -> str:
    """What a node was started with that only a restart can change."""
    return digest({"resources": resources, "env_vars": env_vars})


def desired_workers(
    groups: Iterable[Any], env_vars: dict[str, str], autoscaled: Mapping[str, Iterable[str]] = {}
) -> tuple[tuple[str, str, str], ...]:
    """(name, group, config) of every worker a spec asks for: ``<group>-1`` … ``<group>-<count>``;
    for a group that follows the load, the nodes the autoscaler last chose (``autoscaled``,
    group → names), brought within the group's bounds (a deploy may have moved them)."""
    out = []
    for g in groups:
        names = list(autoscaled.get(g.name, ())) if g.autoscaled else []
        names = names[: g.most]
        i = 1
        while len(names) < g.initial:
            if f"{g.name}-{i}" not in names:
                names.append(f"{g.name}-{i}")
            i += 1
        out += [(n, g.name, node_config(g.resources, env_vars)) for n in names]
    return tuple(out)
