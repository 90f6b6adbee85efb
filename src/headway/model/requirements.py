"""An application's Python packages, as its service YAML declares them: checked as
plain index requirements and gathered per application.

Two ways to declare them, both honoured: the managed platforms' service-level
``requirements:`` and Serve's per-application ``runtime_env.pip`` (or ``uv``). The nodes
never install anything themselves (they may have no route to a package index); the
control host resolves each application's list once into a package of its own (``deps``).
So a requirement must name a package on an index: a URL, a path or a pip option would
make the control host fetch or read whatever the YAML says.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

MAX_REQUIREMENTS = 200
MAX_REQUIREMENT_LEN = 300
#: The runtime_env keys that install packages; both become the same shipped package.
PIP_KEYS = ("pip", "uv")
#: runtime_env keys headway cannot honour, and what to do instead.
REFUSED_RUNTIME_ENV = {
    "conda": "headway does not run conda on the nodes; list the packages under pip (they are resolved on the "
    "control host and shipped)",
    "container": "headway runs Ray from each host's Python environment, not a container; list the packages under pip",
    "image_uri": "headway runs Ray from each host's Python environment, not a container image; list the "
    "packages under pip",
}


def check(line: str) -> str:
    """One requirement, as written (``scikit-learn>=1.5``, ``pandas[parquet]``), or a
    ValueError that says what is wrong with it."""
    text = line.strip()
    if not text or len(text) > MAX_REQUIREMENT_LEN or not text.isprintable():
        raise ValueError(f"{line[:60]!r} is not a package requirement; write e.g. 'scikit-learn>=1.5'")
    if text.startswith("-"):
        raise ValueError(
            f"{text!r}: pip options are not taken from a service YAML; list packages only (the control "
            "host's pip configuration, e.g. PIP_INDEX_URL, says where they come from)"
        )
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise ValueError(f"{text!r} is not a package requirement; write e.g. 'scikit-learn>=1.5'") from None
    if req.url:
        raise ValueError(
            f"{text!r}: a URL or path is not installed by headway; publish the package to an index "
            "the control host reaches, or put the code in working_dir"
        )
    return text


def parse_file(text: str) -> list[str]:
    """The requirements of a requirements file: one per line, ``#`` comments and blank
    lines skipped; an option line (``-r``, ``--index-url``) is refused by ``check``."""
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def check_list(value: Any) -> list[str]:
    """A list of requirements (each checked), bounded."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("write a list of package requirements, e.g. ['scikit-learn>=1.5']")
    if len(value) > MAX_REQUIREMENTS:
        raise ValueError(f"more than {MAX_REQUIREMENTS} requirements; list only the ones the app imports")
    return [check(v) for v in value]


def pip_packages(runtime_env: dict[str, Any]) -> list[str]:
    """The packages a runtime_env's pip (or uv) field lists: a list, or Ray's
    ``{packages: [...]}`` form."""
    out: list[str] = []
    for key in PIP_KEYS:
        value = runtime_env.get(key)
        if isinstance(value, dict):
            value = value.get("packages", [])
        if value:
            out += check_list(value)
    return out


def check_runtime_env(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """A runtime_env headway can honour, or a ValueError naming the field."""
    for key, why in REFUSED_RUNTIME_ENV.items():
        if key in runtime_env:
            raise ValueError(f"runtime_env.{key}: {why}")
    for key in PIP_KEYS:
        value = runtime_env.get(key)
        if isinstance(value, str):
            raise ValueError(
                f"runtime_env.{key}: {value!r} is a file on your machine; deploy with the CLI (it "
                "reads the file) or give the list of packages"
            )
        if isinstance(value, dict):
            extra = sorted(set(value) - {"packages", "pip_check", "pip_version", "uv_version", "uv_check"})
            if extra:
                raise ValueError(f"runtime_env.{key}: unknown field(s) {', '.join(extra)}; give packages: [...]")
    pip_packages(runtime_env)
    return runtime_env


def without_packages(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """The runtime_env Serve gets: the packages come shipped (``py_modules``), so Ray
    must not create a virtualenv and install them on the node."""
    return {k: v for k, v in runtime_env.items() if k not in PIP_KEYS}


def merged(service_level: list[str], runtime_env: dict[str, Any]) -> list[str]:
    """One application's requirements: the service's, then its own, each once."""
    out: list[str] = []
    for req in [*service_level, *pip_packages(runtime_env)]:
        if req not in out:
            out.append(req)
    return out


def digest(reqs: list[str], environment: dict[str, str]) -> str:
    """Names a resolved package: the same list against the same Ray environment (Python,
    Ray and their packages) is resolved once."""
    blob = json.dumps({"requirements": sorted(reqs), "environment": sorted(environment.items())})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
