"""The service YAML as typed models.

Field names follow the managed platforms' service config so that users can bring
their files unchanged (``enable``/``enabled``, ``redis_certificate_path``/
``certificate_path``). Every validation error names the field path and says how
to fix it, because the YAML is the product's main user interface.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    field_validator,
    model_validator,
)

from headway.model import requirements as reqs
from headway.model.ray_node_env import reserved_env
from headway.model.spec_base import (  # noqa: F401 - the limits and patterns are read as spec.X too
    DEFAULT_MAX_WORKERS,
    ENV_KEY_RE,
    IMPORT_PATH_RE,
    MAX_ENV_VALUE,
    MAX_REPLICAS,
    MAX_RESOURCE,
    MAX_TEXT,
    MAX_TIMEOUT_S,
    MAX_WORKERS,
    MAX_YAML_BYTES,
    MAX_YAML_NODES,
    NAME_RE,
    RESOURCE_RE,
    ROUTE_RE,
    SpecError,
    Strict,
    check_label,
    check_resources,
)
from headway.model.spec_compute import ComputeConfig, HeadNode, WorkerGroup
from headway.model.spec_endpoint import EndpointConfig, GrpcOptions, with_serve_listen
from headway.model.spec_rollout import RolloutConfig, Strategy, normalise_strategy
from headway.model.store_address import StoreError, parse_address

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


class Application(Strict):
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


#: The fields of ``ray_gcs_external_storage_config`` that name a file (on the deploying
#: user's machine; uploaded at deploy, never shown back).
GCS_FILE_FIELDS = (
    "redis_password_file",
    "redis_certificate_path",
    "redis_client_certificate_path",
    "redis_client_key_path",
)


class GcsStorageConfig(Strict):
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

    @field_validator(
        "redis_certificate_path", "redis_password_file", "redis_client_certificate_path", "redis_client_key_path"
    )
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


class HttpOptions(Strict):
    # A Serve config's host and port: headway decides where the proxies listen (a note says
    # so at deploy); chosen ones (not Serve's defaults) are the endpoint's, unless the
    # ``endpoint:`` block gives its own (``spec_endpoint.with_serve_listen``).
    host: str | None = Field(default=None, max_length=253)
    port: int | None = Field(default=None, ge=0, le=65535)
    request_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    keep_alive_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    # The ingress retries a 5xx on another node, for idempotent methods only.
    retry_5xx_idempotent: bool = True


class ServiceSpec(Strict):
    name: str
    applications: list[Application]
    compute_config: ComputeConfig = Field(default_factory=ComputeConfig)
    ray_gcs_external_storage_config: GcsStorageConfig = Field(default_factory=GcsStorageConfig)
    env_vars: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    requirements: list[str] = Field(default_factory=list)  # every application's, beside its runtime_env pip
    excludes: list[str] = Field(default_factory=list)
    # A requirement published only as source (an sdist) is built, as an unprivileged user;
    # default: wheels only (a build runs the package's own code on the control host).
    allow_source_builds: bool = False
    query_auth_token_enabled: bool = True
    http_options: HttpOptions = Field(default_factory=HttpOptions)
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)  # where clients reach it
    version_name: str | None = None
    # How an update is applied (``spec_rollout``); None: in place unless it cannot be.
    rollout_strategy: Strategy | None = None
    canary_percent: int | None = Field(default=None, ge=1, le=99)  # a rollout stops there for 'rollout promote'
    max_surge_percent: int = Field(default=100, ge=1, le=100)  # extra workers a rollout may start, per group
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    cloud: str | None = None
    project: str | None = None
    # The rest of a `serve build` config: honoured where it makes sense (``notes`` says what
    # headway does instead elsewhere).
    proxy_location: Literal["EveryNode", "HeadOnly", "Disabled"] | None = None
    grpc_options: GrpcOptions = Field(default_factory=GrpcOptions)
    logging_config: dict[str, Any] | None = None

    _labels = field_validator("version_name", "cloud", "project")(check_label)
    _strategy = field_validator("rollout_strategy", mode="before")(normalise_strategy)

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

    @model_validator(mode="after")
    def _serve_listen(self) -> ServiceSpec:
        """``http_options.port``/``host`` of a Serve config are the endpoint's (where chosen)."""
        self.endpoint = with_serve_listen(self.endpoint, self.http_options.host, self.http_options.port)
        return self

    @property
    def worker_count(self) -> int:
        return sum(g.initial for g in self.compute_config.worker_nodes)

    def needed_env(self, environ: dict[str, str]) -> dict[str, str]:
        """The environment values a deploy of this spec reads (its store password variable)."""
        var = self.ray_gcs_external_storage_config.redis_password_env
        return {var: environ[var]} if var and var in environ else {}

    def app_requirements(self, app: Application) -> list[str]:
        """What ``app`` imports beyond Ray's environment: the service's and its own."""
        return reqs.merged(self.requirements, app.runtime_env)

    @property
    def gcs_ft(self) -> bool:
        return self.ray_gcs_external_storage_config.enable
