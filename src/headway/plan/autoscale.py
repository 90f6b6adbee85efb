"""Node autoscaling: how many workers each group that follows the load should have — a
pure function of what the GCS says (the resource requests waiting for room, and how long
each node has been idle) and the groups' bounds.

Why headway decides and not Ray's autoscaler (the ``monitor.py`` process with a node
provider, as KubeRay runs it): that process runs on the head, so it dies with it and
comes back only with a new head's boot (it is left out of the head to make that boot
lighter: ``ray_node.LEAN_HEAD_FLAGS``); a provider inside it would have to call back
into headway's control plane (with a credential on the head) to create a netns or an
SSH host; and "no node is added or removed while the head is down" is then a property
of who decides. The GCS already aggregates the one input Ray's autoscaler v2 uses —
``GetClusterResourceState``: pending resource requests (a replica Serve wants that fits
on no node is one) and every node's idle time — so headway reads that (``gcs_client``)
and decides here, the same way: bin-pack the waiting requests onto new nodes of the
first group whose node shape holds them, up to ``max_nodes``; remove nodes idle past
the idle timeout that hold no replica, down to ``min_nodes``, and only when nothing
waits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from headway.model.states import State

#: Resource names in Ray's requests that no group's shape states and nothing is placed by.
_IGNORED = ("memory", "object_store_memory")
#: At most this many requests of one shape are packed per decision (Serve asks for a few).
MAX_BUNDLES = 64
#: Timeline events of a suspension (recorded by the head's recovery) and of its end.
SUSPENDED = "autoscaling_suspended"
RESUMED = "autoscaling_resumed"
#: After the head is back, decisions wait this long: raylets re-report their demand to the
#: new GCS, and a decision on what the old one last knew would be stale.
SETTLE_S = 10.0


@dataclass(frozen=True)
class GroupView:
    name: str
    min_nodes: int
    max_nodes: int
    shape: Mapping[str, float]  # the resources of one of its nodes
    nodes: tuple[str, ...]  # its nodes now (names)


@dataclass(frozen=True)
class NodeUse:
    name: str
    idle_s: float | None  # None: not (yet) known to the GCS, e.g. still joining
    holds_replica: bool


@dataclass(frozen=True)
class Decision:
    group: str
    nodes: tuple[str, ...]  # the group's nodes after it
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reason: str = ""


def suspended(state: State, running_since: float | None, now: float) -> str | None:
    """Why no decision may be taken now, or None. While the head is down or being
    replaced nothing is added or removed for the load (a dead worker is still replaced,
    as part of recovery); after it is back, a short wait for fresh demand."""
    if state != State.RUNNING:
        return f"the service is {state}"
    if running_since is not None and now - running_since < SETTLE_S:
        return f"waiting {SETTLE_S:.0f} s after RUNNING for the nodes to report their demand afresh"
    return None


def _fits(room: Mapping[str, float], bundle: Mapping[str, float]) -> bool:
    return all(room.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items() if v > 0)


def _wanted(bundle: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in bundle.items() if k not in _IGNORED and not k.startswith("node:")}


def _new_names(group: str, n: int, taken: set[str]) -> list[str]:
    out, i = [], 1
    while len(out) < n:
        name = f"{group}-{i}"
        if name not in taken:
            out.append(name)
            taken.add(name)
        i += 1
    return out


def describe(bundle: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"


def scale_up(
    groups: Sequence[GroupView], pending: Iterable[tuple[Mapping[str, float], int]], taken: set[str]
) -> tuple[list[Decision], list[str]]:
    """New nodes for the waiting requests (first group that holds each, up to its max),
    and what cannot be placed anywhere (said, not retried into a loop)."""
    rooms: list[dict[str, float]] = []  # what is left on each new node
    added: Counter[str] = Counter()  # new nodes per group
    blocked: dict[str, str] = {}
    for raw, count in pending:
        bundle = _wanted(raw)
        for _ in range(min(count, MAX_BUNDLES)):
            spot = next((room for room in rooms if _fits(room, bundle)), None)
            if spot is None:
                roomy = (g for g in groups if _fits(g.shape, bundle) and len(g.nodes) + added[g.name] < g.max_nodes)
                group = next(roomy, None)
                if group is None:
                    fits_somewhere = any(_fits(g.shape, bundle) for g in groups)
                    blocked[describe(bundle)] = (
                        "every group that holds it is at max_nodes"
                        if fits_somewhere
                        else "no group's nodes are large enough"
                    )
                    continue
                added[group.name] += 1
                spot = dict(group.shape)
                rooms.append(spot)
            for k, v in bundle.items():
                spot[k] = spot.get(k, 0.0) - v
    decisions = []
    for g in groups:
        if added[g.name]:
            new = _new_names(g.name, added[g.name], taken)
            why = f"{len(new)} node(s) for resource requests that fit on no node"
            decisions.append(Decision(g.name, (*g.nodes, *new), added=tuple(new), reason=why))
    return decisions, [f"{shape}: {why}" for shape, why in blocked.items()]


def scale_down(groups: Sequence[GroupView], uses: Mapping[str, NodeUse], idle_timeout_s: float) -> list[Decision]:
    """Nodes idle past the timeout that hold no replica go, newest first, down to min_nodes."""
    decisions = []
    for g in groups:
        spare = len(g.nodes) - g.min_nodes
        idle = [
            n
            for n in reversed(g.nodes)
            if (u := uses.get(n)) is not None
            and u.idle_s is not None
            and u.idle_s >= idle_timeout_s
            and not u.holds_replica
        ]
        gone = idle[: max(0, spare)]
        if gone:
            why = f"idle for more than {idle_timeout_s:g} s and holding no replica"
            decisions.append(
                Decision(g.name, tuple(n for n in g.nodes if n not in gone), removed=tuple(gone), reason=why)
            )
    return decisions


def decide(
    groups: Sequence[GroupView],
    uses: Mapping[str, NodeUse],
    pending: Sequence[tuple[Mapping[str, float], int]],
    idle_timeout_s: float,
    taken: set[str],
) -> tuple[list[Decision], list[str]]:
    """The decisions for this round, and the requests no node can ever take (to report).

    A round with a node still joining takes no decision: the requests it will take are
    still listed as waiting. Nodes are removed only when nothing waits."""
    members = {n for g in groups for n in g.nodes}
    if any(uses.get(n) is None or uses[n].idle_s is None for n in members):
        return [], []
    if pending:
        return scale_up(groups, pending, taken)
    return scale_down(groups, uses, idle_timeout_s), []
