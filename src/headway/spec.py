"""The service YAML as typed models.

Field names follow the managed platforms' service config so that users can bring
their files unchanged (``enable``/``enabled``, ``redis_certificate_path``/
``certificate_path``). Every validation error names the field path and says how
to fix it, because the YAML is the product's main user interface.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "Application",
    "ComputeConfig",
    "GcsStorageConfig",
    "HeadNode",
    "HttpOptions",
    "ServiceSpec",
    "SpecError",
    "WorkerGroup",
    "load_spec",
    "parse_spec",
]

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
IMPORT_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class SpecError(ValueError):
    """A service YAML that cannot be used; ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid service spec {source}:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Application(_Strict):
    """One Ray Serve application: the same block as in a Serve config file."""

    name: str = "default"
    import_path: str
    route_prefix: str | None = "/"
    args: dict[str, Any] = Field(default_factory=dict)
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    deployments: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("import_path")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not IMPORT_PATH_RE.match(v):
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
        return v


class HeadNode(_Strict):
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _no_head_cpus(cls, v: dict[str, float]) -> dict[str, float]:
        if v.get("CPU", 0) != 0:
            raise ValueError(
                "the head node always has CPU: 0 so that no replica lands on it "
                "(replicas must survive the head); remove CPU from head_node.resources"
            )
        return v


class WorkerGroup(_Strict):
    name: str = "worker"
    instance_type: str | None = None
    resources: dict[str, float] = Field(default_factory=lambda: {"CPU": 1})
    count: int = Field(default=1, ge=0, le=16)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid group name; use lowercase letters, digits and dashes")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        for key, amount in v.items():
            if amount < 0:
                raise ValueError(f"resource {key} is {amount}; amounts must be >= 0")
        return v


class ComputeConfig(_Strict):
    cloud: str | None = None
    head_node: HeadNode = Field(default_factory=HeadNode)
    worker_nodes: list[WorkerGroup] = Field(default_factory=lambda: [WorkerGroup(count=2)])

    @model_validator(mode="after")
    def _unique_groups(self) -> ComputeConfig:
        seen: set[str] = set()
        for group in self.worker_nodes:
            if group.name in seen:
                raise ValueError(f"worker group name {group.name!r} is used twice; give each group its own name")
            seen.add(group.name)
        return self


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

    @model_validator(mode="after")
    def _one_password_source(self) -> GcsStorageConfig:
        if self.redis_password_env and self.redis_password_file:
            raise ValueError("give either redis_password_env or redis_password_file, not both")
        return self


class HttpOptions(_Strict):
    request_timeout_s: float | None = Field(default=None, gt=0)
    keep_alive_timeout_s: float | None = Field(default=None, gt=0)
    # The ingress retries a 5xx on another node, for idempotent methods only.
    retry_5xx_idempotent: bool = True


class ServiceSpec(_Strict):
    name: str
    applications: list[Application]
    compute_config: ComputeConfig = Field(default_factory=ComputeConfig)
    ray_gcs_external_storage_config: GcsStorageConfig = Field(default_factory=GcsStorageConfig)
    env_vars: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    excludes: list[str] = Field(default_factory=list)
    query_auth_token_enabled: bool = True
    http_options: HttpOptions = Field(default_factory=HttpOptions)
    version_name: str | None = None
    cloud: str | None = None
    project: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid service name; use 1-40 lowercase letters, digits "
                "and dashes, starting and ending with a letter or digit (e.g. 'hello-api')"
            )
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
        return sum(g.count for g in self.compute_config.worker_nodes)

    @property
    def gcs_ft(self) -> bool:
        return self.ray_gcs_external_storage_config.enable


_HINTS: dict[str, str] = {
    "missing": "add it",
    "extra_forbidden": "remove it or check its spelling",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "string_type": "write a string",
    "list_type": "write a YAML list (lines starting with '- ')",
    "dict_type": "write a YAML mapping (key: value lines)",
    "model_type": "write a YAML mapping (key: value lines)",
    "greater_than_equal": "",
    "less_than_equal": "",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    where = _loc(tuple(err["loc"]))
    if kind == "extra_forbidden":
        return f"{where}: unknown field; {_HINTS[kind]}"
    if kind == "missing":
        return f"{where}: required field is missing; add it"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    hint = _HINTS.get(kind, "")
    return f"{where}: {msg}" + (f"; {hint}" if hint else "")


def parse_spec(data: Any, source: str = "<spec>", *, has_default_store: bool = True) -> ServiceSpec:
    """Validate a loaded YAML document.

    ``has_default_store`` says whether a cloud default store exists; without one an
    FT-enabled service must name its own ``address``.
    """
    if not isinstance(data, dict):
        raise SpecError(source, ["(top level): expected a YAML mapping with at least name and applications"])
    try:
        spec = ServiceSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, [_describe(e) for e in exc.errors()]) from None
    gcs = spec.ray_gcs_external_storage_config
    if gcs.enable and not gcs.address and not has_default_store:
        raise SpecError(
            source,
            [
                "ray_gcs_external_storage_config.address: required when GCS fault tolerance is "
                "enabled and no cloud store exists; set it to host:port or redis://host:port, "
                "run 'headway cloud setup', or set enable: false"
            ],
        )
    return spec


def load_spec(path: str | Path, *, has_default_store: bool = True) -> ServiceSpec:
    """Read and validate a service YAML; relative ``working_dir`` is resolved from its folder."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(str(p), [f"cannot read the file ({exc.strerror}); check the path"]) from None
    return load_spec_text(text, str(p), p.parent, has_default_store=has_default_store)


def load_spec_text(text: str, source: str, base_dir: Path | None, *, has_default_store: bool = True) -> ServiceSpec:
    """Validate a service YAML given as text (the API's input); a relative ``working_dir``
    is resolved from ``base_dir``, and is an error without one."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, [f"not valid YAML at {where}: {problem}; fix the syntax"]) from None
    spec = parse_spec(data, source, has_default_store=has_default_store)
    if spec.working_dir and "://" not in spec.working_dir:
        if base_dir is None and not Path(spec.working_dir).is_absolute():
            raise SpecError(source, ["working_dir: a relative path needs base_dir; give an absolute path"])
        wd = ((base_dir or Path("/")) / spec.working_dir).resolve()
        if not wd.is_dir():
            raise SpecError(source, [f"working_dir: folder {wd} does not exist; fix the path (relative to the YAML)"])
        spec = spec.model_copy(update={"working_dir": str(wd)})
    return spec
