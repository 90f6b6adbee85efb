"""Reading a service YAML: size and alias limits before anything is built, then the
models of ``spec``, with every error turned into one line that names the field path and
says how to fix it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from headway.model import requirements as reqs
from headway.model import spec as models
from headway.model.spec import MAX_YAML_BYTES, MAX_YAML_NODES, ServiceSpec, SpecError

__all__ = ["inline_requirement_files", "load_spec", "load_spec_text", "parse_spec", "safe_yaml"]


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
    "finite_number": "write a finite number",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


#: Fields of the managed platforms' service YAML that headway does not have (yet): what
#: each means here, instead of "unknown field".
FOREIGN: dict[str, str] = {
    "image_uri": "headway runs Ray from each host's Python environment, not a container image; ship your code "
    "with working_dir and list its packages under requirements (resolved on the control host, shipped to the nodes)",
    "containerfile": "headway runs Ray from each host's Python environment, not a container image",
}


def _known_fields() -> set[str]:
    names: set[str] = set()
    for m in (
        models.ServiceSpec,
        models.Application,
        models.ComputeConfig,
        models.HeadNode,
        models.WorkerGroup,
        models.GcsStorageConfig,
        models.HttpOptions,
    ):
        names |= set(m.model_fields)
    return names


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    where = _loc(tuple(err["loc"]))
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        if "head_node" in err["loc"] and field in ("min_nodes", "max_nodes", "count"):
            return f"{where}: the head is one node and never scaled; give {field} to a group of worker_nodes"
        if field in FOREIGN:
            return f"{where}: {FOREIGN[field]}"
        close = difflib.get_close_matches(field, sorted(_known_fields()), n=1, cutoff=0.75)
        if close:
            return f"{where}: unknown field; did you mean {close[0]}?"
        return f"{where}: unknown field; {_HINTS[kind]}"
    if kind == "missing":
        return f"{where}: required field is missing; add it"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    hint = _HINTS.get(kind, "")
    return f"{where}: {msg}" + (f"; {hint}" if hint else "")


def parse_spec(
    data: Any, source: str = "<spec>", *, has_default_store: bool = True, name: str | None = None
) -> ServiceSpec:
    """Validate a loaded YAML document.

    ``has_default_store`` says whether a cloud default store exists; without one an
    FT-enabled service must name its own ``address``. ``name``: the service's name when
    the document has none (a `serve build` config deployed with ``--name``).
    """
    if not isinstance(data, dict):
        raise SpecError(source, ["(top level): expected a YAML mapping with at least name and applications"])
    if name is not None:
        if data.get("name") not in (None, name):
            raise SpecError(
                source,
                [
                    f"name: the file names service {data['name']!r}, but {name!r} was asked "
                    "for; make them agree or drop one"
                ],
            )
        data = {**data, "name": name}
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


def notes(spec: ServiceSpec) -> list[str]:
    """What headway does instead of what a Serve config asked for, one line each (a
    `serve build` config deploys unchanged; these say where headway decides)."""
    out = []
    if spec.proxy_location not in (None, "EveryNode"):
        out.append(
            f"proxy_location {spec.proxy_location}: headway runs a Serve proxy on every node (the endpoint "
            "sends to the workers' proxies); EveryNode is used"
        )
    http = spec.http_options
    if http.host is not None or http.port is not None:
        out.append(
            f"http_options host/port ({http.host or '-'}:{http.port or '-'}): headway decides where the "
            "proxies listen; clients use the service's endpoint, on "
            f"{spec.endpoint.bind or 'the default address'}:{spec.endpoint.port or 'a port picked once'} "
            "(Serve's defaults are not taken; the endpoint: block decides)"
        )
    if spec.grpc_options.port is not None and spec.grpc_options.enabled:
        out.append(
            f"grpc_options.port ({spec.grpc_options.port}): headway decides where the proxies listen; gRPC "
            "clients use the service's endpoint (HTTP/2; with endpoint.tls, HTTPS)"
        )
    return out


def load_spec(path: str | Path, *, has_default_store: bool = True) -> ServiceSpec:
    """Read and validate a service YAML; relative ``working_dir`` is resolved from its folder."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(str(p), [f"cannot read the file ({exc.strerror}); check the path"]) from None
    return load_spec_text(text, str(p), p.parent, has_default_store=has_default_store)


def _expanded_nodes(node: yaml.Node, budget: int) -> int:
    """How many nodes the document has once its aliases are expanded, counting at most
    ``budget`` (an alias is a reference: a few hundred bytes can stand for billions)."""
    seen = 0
    stack = [node]
    while stack and seen <= budget:
        n = stack.pop()
        seen += 1
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
    return seen


def safe_yaml(text: str, source: str) -> Any:
    """Parse a service YAML within size limits, before anything is built from it."""
    if len(text.encode()) > MAX_YAML_BYTES:
        raise SpecError(
            source,
            [f"(top level): the YAML is larger than {MAX_YAML_BYTES // 1024} KiB; keep data out of the service spec"],
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_nodes(root, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise SpecError(
                source,
                [
                    f"(top level): the YAML expands to more than {MAX_YAML_NODES} values "
                    "(anchors and aliases); write the values out"
                ],
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, [f"not valid YAML at {where}: {problem}; fix the syntax"]) from None


def load_spec_text(
    text: str, source: str, base_dir: Path | None, *, has_default_store: bool = True, name: str | None = None
) -> ServiceSpec:
    """Validate a service YAML given as text. With ``base_dir`` (the CLI: the YAML's
    folder) a local ``working_dir`` is resolved from it and must exist; without (the
    control plane's API) no path is looked at: the package comes uploaded. ``name``: see
    ``parse_spec``."""
    data = safe_yaml(text, source)
    if base_dir is not None:
        data = inline_requirement_files(data, base_dir, source)
    spec = parse_spec(data, source, has_default_store=has_default_store, name=name)
    if base_dir is not None and spec.working_dir and "://" not in spec.working_dir:
        wd = (base_dir / spec.working_dir).resolve()
        if not wd.is_dir():
            raise SpecError(source, [f"working_dir: folder {wd} does not exist; fix the path (relative to the YAML)"])
        spec = spec.model_copy(update={"working_dir": str(wd)})
    return spec


def _read_requirements(path_text: str, base_dir: Path, source: str, field: str) -> list[str]:
    path = (base_dir / path_text).resolve()
    try:
        return reqs.parse_file(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not a text file"
        raise SpecError(
            source, [f"{field}: cannot read {path} ({why}); give a requirements file relative to the YAML, or a list"]
        ) from None


def inline_requirement_files(data: Any, base_dir: Path, source: str) -> Any:
    """The document with every requirements file it names (``requirements: reqs.txt``,
    ``runtime_env: {pip: reqs.txt}``) read into a list: the CLI reads them on the
    user's machine; the control plane opens no path a YAML names."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if isinstance(data.get("requirements"), str):
        data["requirements"] = _read_requirements(data["requirements"], base_dir, source, "requirements")
    apps = data.get("applications")
    if isinstance(apps, list):
        data["applications"] = [_inline_app(app, i, base_dir, source) for i, app in enumerate(apps)]
    return data


def _inline_app(app: Any, index: int, base_dir: Path, source: str) -> Any:
    env = app.get("runtime_env") if isinstance(app, dict) else None
    if not isinstance(env, dict):
        return app
    env = dict(env)
    for key in reqs.PIP_KEYS:
        if isinstance(env.get(key), str):
            env[key] = _read_requirements(env[key], base_dir, source, f"applications[{index}].runtime_env.{key}")
    return {**app, "runtime_env": env}
