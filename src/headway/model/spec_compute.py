"""``compute_config``: the head and the worker groups — fixed (``count``) or following the
load (``min_nodes``/``max_nodes``, the managed platforms' names)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from headway.model.spec_base import MAX_WORKERS, NAME_RE, Strict, check_label, check_resources


class HeadNode(Strict):
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=dict)

    _instance_type = field_validator("instance_type")(check_label)

    @field_validator("resources")
    @classmethod
    def _no_head_cpus(cls, v: dict[str, float]) -> dict[str, float]:
        check_resources(v)
        if v.get("CPU", 0) != 0:
            raise ValueError(
                "the head node always has CPU: 0 so that no replica lands on it "
                "(replicas must survive the head); remove CPU from head_node.resources"
            )
        return v


class WorkerGroup(Strict):
    """A set of alike worker nodes: ``count`` of them (fixed), or between ``min_nodes`` and
    ``max_nodes`` (the managed platforms' names) as Serve's demand asks (``autoscale``)."""

    name: str = "worker"
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    count: int | None = Field(default=None, ge=0, le=MAX_WORKERS)  # 1 when neither bound is given
    min_nodes: int | None = Field(default=None, ge=0, le=MAX_WORKERS)
    max_nodes: int | None = Field(default=None, ge=1, le=MAX_WORKERS)

    _instance_type = field_validator("instance_type")(check_label)

    @property
    def autoscaled(self) -> bool:
        return self.min_nodes is not None or self.max_nodes is not None

    @property
    def initial(self) -> int:
        """How many nodes the group starts with (an autoscaled one: its minimum)."""
        return (self.min_nodes or 0) if self.autoscaled else self.count or 0

    @property
    def most(self) -> int:
        """The most nodes the group can have."""
        return (self.max_nodes or 0) if self.autoscaled else self.count or 0

    @model_validator(mode="before")
    @classmethod
    def _fixed_by_default(cls, data: Any) -> Any:
        """A group with neither bound is fixed, at one node unless ``count`` says more."""
        bounded = isinstance(data, dict) and (data.get("min_nodes") is not None or data.get("max_nodes") is not None)
        if isinstance(data, dict) and not bounded and data.get("count") is None:
            return {**data, "count": 1}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroup:
        if not self.autoscaled:
            return self
        if self.count is not None:
            raise ValueError(
                f"group {self.name!r} has count and min_nodes/max_nodes; give count for a fixed group, "
                "or min_nodes and max_nodes for one that follows the load"
            )
        if self.max_nodes is None:
            raise ValueError(f"group {self.name!r} has min_nodes but no max_nodes; say how far it may grow")
        if self.min_nodes is not None and self.min_nodes > self.max_nodes:
            raise ValueError(
                f"group {self.name!r}: min_nodes {self.min_nodes} is above max_nodes {self.max_nodes}; "
                "min_nodes must be at most max_nodes"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v) or len(v) > 20:
            raise ValueError(f"{v!r} is not a valid group name; use 1-20 lowercase letters, digits and dashes")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        return check_resources(v)


class ComputeConfig(Strict):
    cloud: str | None = None
    head_node: HeadNode = Field(default_factory=HeadNode)
    worker_nodes: list[WorkerGroup] = Field(default_factory=lambda: [WorkerGroup(count=2)])
    #: A node of a group that follows the load is removed after this long idle (KubeRay's
    #: ``idleTimeoutSeconds``, same default).
    idle_timeout_s: float = Field(default=60, ge=5, le=86400)

    _cloud = field_validator("cloud")(check_label)

    @property
    def autoscaled(self) -> bool:
        """Some group follows the load (the controller's autoscaling rounds are for it)."""
        return any(g.autoscaled for g in self.worker_nodes)

    @property
    def most_workers(self) -> int:
        """The most workers the service can have at once (each group's ``max_nodes`` counted)."""
        return sum(g.most for g in self.worker_nodes)

    def group(self, name: str) -> WorkerGroup | None:
        return next((g for g in self.worker_nodes if g.name == name), None)

    @model_validator(mode="after")
    def _unique_groups(self) -> ComputeConfig:
        seen: set[str] = set()
        for group in self.worker_nodes:
            if group.name in seen:
                raise ValueError(f"worker group name {group.name!r} is used twice; give each group its own name")
            seen.add(group.name)
        if self.worker_nodes and sum(g.initial for g in self.worker_nodes) == 0:
            raise ValueError(
                "no worker node to start with, and the head holds no replicas; give a group count >= 1 "
                "or min_nodes >= 1 (a group may grow from there)"
            )
        if self.most_workers > MAX_WORKERS:
            raise ValueError(f"{workers_in_all(self)}; one service has at most {MAX_WORKERS}; {FEWER}")
        return self


#: What to do about a service with too many workers.
FEWER = "lower the counts or split the service"


def workers_in_all(compute: ComputeConfig) -> str:
    counting = " (counting each group's max_nodes)" if compute.autoscaled else ""
    return f"{compute.most_workers} workers in all{counting}"
