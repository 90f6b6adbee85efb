"""The service YAML as typed models.

Field names follow the managed platforms' service config so that users can bring
their files unchanged (``enable``/``enabled``, ``redis_certificate_path``/
``certificate_path``). Every validation error names the field path and says how
to fix it, because the YAML is the product's main user interface.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from . import requirements as reqs
from .ray_node_env import reserved_env
from .store_address import StoreError, parse_address

__all__ = [
    "Application",
    "ComputeConfig",
    "GcsStorageConfig",
    "HeadNode",
    "HttpOptions",
    "ServiceSpec",
    "SpecError",
    "WorkerGroup",
]

# Every pattern is used with ``fullmatch``: ``$`` would let a trailing newline through
# (``"abc\n"``), and a name ends up in an HAProxy config line and in namespace names.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
IMPORT_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESOURCE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,63}")
ROUTE_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

#: Workers one service may have: the ingress has a fixed number of server slots, and a
#: replacement or rolling update needs some free beside the running workers.
MAX_WORKERS = 16
MAX_REPLICAS = 1024
#: Largest amount of one resource, and longest timeout (a day): beyond is a typo.
MAX_RESOURCE = 1_000_000
MAX_TIMEOUT_S = 86_400
#: A service YAML larger than this, or whose aliases expand to more nodes than this, is
#: refused before it is built in memory (a 600-byte alias bomb expands to gigabytes).
MAX_YAML_BYTES = 256 * 1024
MAX_YAML_NODES = 100_000
MAX_TEXT = 256  # free-form labels: instance_type, version_name, cloud, project
MAX_ENV_VALUE = 32 * 1024


class SpecError(ValueError):
    """A service YAML that cannot be used; ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid service spec {source}:\n{lines}")


class _Strict(BaseModel):
    # NaN and infinity are never a valid amount or timeout: they pass comparisons and crash later.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _label(v: str | None) -> str | None:
    """A free-form label: printable, one line, bounded."""
    if v is not None and (len(v) > MAX_TEXT or not v.isprintable()):
        raise ValueError(f"must be one printable line of at most {MAX_TEXT} characters")
    return v


def _check_resources(v: dict[str, float]) -> dict[str, float]:
    for key, amount in v.items():
        if not RESOURCE_RE.fullmatch(key):
            raise ValueError(
                f"resource name {key!r} is not valid; use letters, digits and _ . : / - (at most 64), "
                "starting with a letter or _"
            )
        if not 0 <= amount <= MAX_RESOURCE:
            raise ValueError(f"resource {key} is {amount}; amounts must be between 0 and {MAX_RESOURCE}")
    return v


class Application(_Strict):
    """One Ray Serve application: the same block as in a Serve config file."""

    name: str = "default"
    import_path: str
    route_prefix: str | None = "/"
    args: dict[str, Any] = Field(default_factory=dict)
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    deployments: list[dict[str, Any]] = Field(default_factory=list)
    logging_config: dict[str, Any] | None = None  # Serve's, passed on as given

    @field_validator("name")
    @classmethod
    def _app_name(cls, v: str) -> str:
        if not v or len(v) > 128 or not v.isprintable() or "/" in v:
            raise ValueError(f"{v!r} is not a valid application name; use 1-128 printable characters without '/'")
        return v

    @field_validator("runtime_env")
    @classmethod
    def _runtime_env(cls, v: dict[str, Any]) -> dict[str, Any]:
        return reqs.check_runtime_env(v)

    @field_validator("deployments")
    @classmethod
    def _deployments(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, dep in enumerate(v):
            problem = _autoscaling_problem(dep)
            if problem:
                raise ValueError(f"deployment {dep.get('name', f'#{i + 1}')}: {problem}")
        return v

    @field_validator("import_path")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not IMPORT_PATH_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not of the form 'module:attribute'; "
                "write e.g. 'app:deployment' (the module is looked up in working_dir)"
            )
        return v

    @field_validator("route_prefix")
    @classmethod
    def _route_prefix(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{v!r} must start with '/', e.g. '/{v}'")
        if v is not None and (len(v) > 256 or not ROUTE_RE.fullmatch(v)):
            raise ValueError(f"{v!r} is not a valid URL path; use letters, digits and URL path characters")
        return v


def _autoscaling_problem(dep: dict[str, Any]) -> str | None:
    """What Serve would refuse in a deployment's ``autoscaling_config``, said before the deploy."""
    if "autoscaling_config" not in dep:
        return None
    cfg = dep["autoscaling_config"]
    if not isinstance(cfg, dict):
        return "autoscaling_config must be a mapping (min_replicas, max_replicas, target_ongoing_requests, ...)"
    if isinstance(dep.get("num_replicas"), int):
        return "num_replicas and autoscaling_config together; remove num_replicas (or write num_replicas: auto)"
    lo, hi = cfg.get("min_replicas", 1), cfg.get("max_replicas", 1)
    for key, value in (("min_replicas", lo), ("max_replicas", hi)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > MAX_REPLICAS:
            return f"autoscaling_config.{key} is {value!r}; give a whole number from 0 to {MAX_REPLICAS}"
    if hi < 1 or lo > hi:
        return f"autoscaling_config: max_replicas {hi} must be at least 1 and at least min_replicas {lo}"
    return None


class HeadNode(_Strict):
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=dict)

    _instance_type = field_validator("instance_type")(_label)

    @field_validator("resources")
    @classmethod
    def _no_head_cpus(cls, v: dict[str, float]) -> dict[str, float]:
        _check_resources(v)
        if v.get("CPU", 0) != 0:
            raise ValueError(
                "the head node always has CPU: 0 so that no replica lands on it "
                "(replicas must survive the head); remove CPU from head_node.resources"
            )
        return v


class WorkerGroup(_Strict):
    """A set of alike worker nodes: ``count`` of them (fixed), or between ``min_nodes`` and
    ``max_nodes`` (the managed platforms' names) as Serve's demand asks (``autoscale``)."""

    name: str = "worker"
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    count: int | None = Field(default=None, ge=0, le=MAX_WORKERS)  # 1 when neither bound is given
    min_nodes: int | None = Field(default=None, ge=0, le=MAX_WORKERS)
    max_nodes: int | None = Field(default=None, ge=1, le=MAX_WORKERS)

    _instance_type = field_validator("instance_type")(_label)

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
            raise ValueError(
                f"{v!r} is not a valid group name; use 1-20 lowercase letters, digits and dashes"
            )
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_resources(v)


class ComputeConfig(_Strict):
    cloud: str | None = None
    head_node: HeadNode = Field(default_factory=HeadNode)
    worker_nodes: list[WorkerGroup] = Field(default_factory=lambda: [WorkerGroup(count=2)])
    #: A node of a group that follows the load is removed after this long idle (KubeRay's
    #: ``idleTimeoutSeconds``, same default).
    idle_timeout_s: float = Field(default=60, ge=5, le=86400)

    _cloud = field_validator("cloud")(_label)

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
        total = sum(g.most for g in self.worker_nodes)
        counting = " (counting each group's max_nodes)" if any(g.autoscaled for g in self.worker_nodes) else ""
        if total > MAX_WORKERS:
            raise ValueError(
                f"{total} workers in all{counting}; one service has at most {MAX_WORKERS} "
                "(the endpoint's server slots); lower the counts or split the service"
            )
        return self


#: The fields of ``ray_gcs_external_storage_config`` that name a file (on the deploying
#: user's machine; uploaded at deploy, never shown back).
GCS_FILE_FIELDS = (
    "redis_password_file",
    "redis_certificate_path",
    "redis_client_certificate_path",
    "redis_client_key_path",
)


class GcsStorageConfig(_Strict):
    """Where the head keeps the GCS. ``address`` empty means the cloud's managed store."""

    enable: bool = Field(default=True, validation_alias=AliasChoices("enable", "enabled"))
    address: str | None = None
    redis_certificate_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_certificate_path", "certificate_path"),
    )
    redis_username: str | None = None
    redis_password_env: str | None = None
    redis_password_file: str | None = None
    redis_client_certificate_path: str | None = None  # TLS client certificate (optional)
    redis_client_key_path: str | None = None
    require_replica: bool = False  # a store without a connected replica is an error, not a warning

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v:
            try:
                parse_address(v)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("redis_password_env")
    @classmethod
    def _password_env(cls, v: str | None) -> str | None:
        if v is not None and not ENV_KEY_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an environment variable name; use letters, digits and _")
        return v

    @field_validator("redis_username")
    @classmethod
    def _username(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v) > 128 or not v.isprintable() or " " in v):
            raise ValueError("a username is 1-128 printable characters without spaces")
        return v

    @field_validator("redis_certificate_path", "redis_password_file", "redis_client_certificate_path",
                     "redis_client_key_path")  # fmt: skip
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v) > 4096 or not v.isprintable()):
            raise ValueError("must be a file path: one printable line")
        return v

    @model_validator(mode="after")
    def _one_password_source(self) -> GcsStorageConfig:
        if self.redis_password_env and self.redis_password_file:
            raise ValueError("give either redis_password_env or redis_password_file, not both")
        return self


class HttpOptions(_Strict):
    # A Serve config's host and port are accepted; headway decides where proxies listen (a
    # note says so at deploy): clients use the service's endpoint.
    host: str | None = Field(default=None, max_length=253)
    port: int | None = Field(default=None, ge=0, le=65535)
    request_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    keep_alive_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    # The ingress retries a 5xx on another node, for idempotent methods only.
    retry_5xx_idempotent: bool = True


class ServiceSpec(_Strict):
    name: str
    applications: list[Application]
    compute_config: ComputeConfig = Field(default_factory=ComputeConfig)
    ray_gcs_external_storage_config: GcsStorageConfig = Field(default_factory=GcsStorageConfig)
    env_vars: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    requirements: list[str] = Field(default_factory=list)  # every application's, beside its runtime_env pip
    excludes: list[str] = Field(default_factory=list)
    query_auth_token_enabled: bool = True
    http_options: HttpOptions = Field(default_factory=HttpOptions)
    version_name: str | None = None
    cloud: str | None = None
    project: str | None = None
    # The rest of a `serve build` config: honoured where it makes sense (``notes`` says what
    # headway does instead elsewhere).
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] | None = None
    grpc_options: dict[str, Any] = Field(default_factory=dict)
    logging_config: dict[str, Any] | None = None

    _labels = field_validator("version_name", "cloud", "project")(_label)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a valid service name; use 1-40 lowercase letters, digits "
                "and dashes, starting and ending with a letter or digit (e.g. 'hello-api')"
            )
        return v

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v or len(v) > 4096 or not v.isprintable():
            raise ValueError("must be a folder path or a URI: one printable line")
        if v.startswith("file://"):
            raise ValueError("give a local folder as a path (headway packages and ships it), not a file:// URI")
        return v

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirements(cls, v: Any) -> list[str]:
        if isinstance(v, str):
            raise ValueError(f"{v!r} is a file on your machine; deploy with the CLI (it reads it) or give the list")
        return reqs.check_list(v)

    @field_validator("env_vars")
    @classmethod
    def _env_vars(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not ENV_KEY_RE.fullmatch(key) or len(key) > 128:
                raise ValueError(
                    f"{key!r} is not an environment variable name; use letters, digits and _ "
                    "(not starting with a digit)"
                )
            owner = reserved_env(key)
            if owner:
                raise ValueError(f"{key} is set by headway ({owner}); remove it from env_vars")
            if "\0" in value or len(value) > MAX_ENV_VALUE:
                raise ValueError(f"the value of {key} must be text without NUL, at most {MAX_ENV_VALUE} bytes")
        return v

    @field_validator("applications")
    @classmethod
    def _apps(cls, v: list[Application]) -> list[Application]:
        if not v:
            raise ValueError("at least one application is needed")
        names = [a.name for a in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"application names must be unique; repeated: {', '.join(dupes)}")
        prefixes = [a.route_prefix for a in v if a.route_prefix is not None]
        pdupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if pdupes:
            raise ValueError(f"route_prefix must be unique; repeated: {', '.join(pdupes)}")
        return v

    @field_validator("env_vars", mode="before")
    @classmethod
    def _env_values_are_strings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: str(val) if isinstance(val, int | float | bool) else val for k, val in v.items()}
        return v

    @property
    def worker_count(self) -> int:
        return sum(g.initial for g in self.compute_config.worker_nodes)

    def app_requirements(self, app: Application) -> list[str]:
        """What ``app`` imports beyond Ray's environment: the service's and its own."""
        return reqs.merged(self.requirements, app.runtime_env)

    @property
    def gcs_ft(self) -> bool:
        return self.ray_gcs_external_storage_config.enable
