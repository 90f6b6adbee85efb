"""An application's packages, resolved once on the control host and shipped to the nodes.

Ray's own ``runtime_env.pip`` has every node build a virtualenv from a package index: a
node with no route to one (a network namespace, a locked-down host) cannot start the
app, and every replaced worker or new head downloads everything again. Instead the
control host resolves the list against Ray's environment (Ray and what it depends on
keep the versions every node already has; a requirement that conflicts with them is an
error before any node starts), installs only what is missing into a folder, and zips it.
Serve gets the zip as ``py_modules`` — a ``file://`` package every node reads like the
working_dir, unpacked by Ray on the node, nothing fetched from the network.

Wheels only (``--only-binary=:all:``): building a source distribution runs its own code
(``setup.py``) on the control host, which runs as root beside the store's admin password.
A spec that needs one says ``allow_source_builds: true``; the resolution and the build
then run as nobody, in a mount namespace where the state dir is covered (the node
sandbox's machinery), in a folder of their own.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from headway.model import requirements as reqs
from headway.model.errors import InputError
from headway.model.spec import ServiceSpec
from headway.system import node_supervisor, node_user, paths

PIP_TIMEOUT_S = 600
NOBODY = 65534  # who builds a package from source
WHEELS_ONLY = "--only-binary=:all:"


class DependencyError(InputError):
    """A requirement cannot be resolved or installed: the message names it."""


@cache
def ray_environment() -> dict[str, str]:
    """What every node already has: ``ray[serve]`` and its dependencies, by name →
    installed version (the SSH hosts' bootstrap venv has exactly these), plus Python."""
    found: dict[str, str] = {}
    todo = [("ray", "serve")]
    while todo:
        name, extra = todo.pop()
        key = canonicalize_name(name)
        if key in found and not extra:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = req.marker is None or req.marker.evaluate({"extra": extra or ""})
            if wanted and canonicalize_name(req.name) not in found:
                todo.append((req.name, ""))
    found["python"] = platform.python_version()
    return found


def package_path(service: str, requirements: list[str]) -> Path:
    """Where the package of one requirement list lives (named by content)."""
    return paths.service_dir(service) / "pkg" / f"deps-{reqs.digest(requirements, ray_environment())}.zip"


def uris(service: str, spec: ServiceSpec) -> dict[str, str]:
    """Application name → the ``file://`` URI of its package, for the apps that need one."""
    out = {}
    for app in spec.applications:
        needed = spec.app_requirements(app)
        if needed:
            out[app.name] = f"file://{package_path(service, needed)}"
    return out


def _pip(args: list[str], what: str, workdir: str, source: bool = False) -> subprocess.CompletedProcess[str]:
    """pip with ``args``, in ``workdir``; wheels only unless ``source``, and then (as root)
    as nobody with the state dir covered: a source build runs the package's own code."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    cmd = [sys.executable, "-m", "pip", *args]
    if not source:
        cmd.append(WHEELS_ONLY)
    elif os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
        box = node_user.Sandbox(NOBODY, NOBODY, hide=(str(paths.home()),), expose=(workdir,))
        cmd = node_supervisor.boxed_exec(sys.executable, cmd, box.as_json())
        env |= {"HOME": workdir, "TMPDIR": workdir, "PIP_NO_CACHE_DIR": "1"}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=env, cwd=workdir)
    except subprocess.TimeoutExpired:
        raise DependencyError(
            f"{what}: pip did not finish in {PIP_TIMEOUT_S} s; check the control host's route to the package index"
        ) from None


def _pip_error(out: subprocess.CompletedProcess[str], requirements: list[str], source: bool = False) -> DependencyError:
    lines = [
        ln.strip().replace("The user requested (constraint)", "Ray's environment has")
        for ln in (out.stderr + out.stdout).splitlines()
    ]
    keep = [
        ln.removeprefix("ERROR: ")
        for ln in lines
        if (ln.startswith("ERROR:") and "ResolutionImpossible" not in ln) or "requested" in ln or "has " in ln
    ]
    detail = " / ".join(keep[-6:]) or (lines[-1] if lines else f"pip exited {out.returncode}")
    hint = "fix the requirement, or pick versions that agree with Ray's environment"
    if not source and any("No matching distribution" in ln or "Could not find a version" in ln for ln in lines):
        hint += (
            "; headway installs wheels only: a requirement published only as source (an sdist) needs "
            "allow_source_builds: true in the service YAML (it is then built as an unprivileged user)"
        )
    return DependencyError(
        f"requirements {', '.join(requirements)}: cannot be resolved on the control host (nothing was started): "
        f"{detail[:1500]}; {hint}"
    )


def resolve(requirements: list[str], source: bool = False) -> list[str]:
    """The exact packages to ship (``name==version``): the requirements' closure, with
    Ray's environment held at the versions the nodes have, minus that environment."""
    base = ray_environment()
    with tempfile.TemporaryDirectory(prefix="headway-deps-") as tmp:
        constraints = Path(tmp) / "ray-environment.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(base.items()) if n != "python"))
        os.chmod(constraints, 0o644)
        report = Path(tmp) / "report.json"
        out = _pip(
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                "-c",
                str(constraints),
                *requirements,
            ],
            "resolving",
            tmp,
            source,
        )
        if out.returncode != 0:
            raise _pip_error(out, requirements, source)
        installs = json.loads(report.read_text()).get("install", [])
    pins = []
    for item in installs:
        meta = item.get("metadata", {})
        if canonicalize_name(meta.get("name", "")) not in base:
            pins.append(f"{meta['name']}=={meta['version']}")
    return sorted(pins)


def build(service: str, requirements: list[str], progress=lambda _m: None, source: bool = False) -> Path:
    """The package of ``requirements``, made once: a deploy, a replaced worker or a new
    head of the same list reuses it (nothing resolved or downloaded again)."""
    target = package_path(service, requirements)
    if target.exists():
        return target
    progress(f"resolving {', '.join(requirements)} on the control host")
    pins = resolve(requirements, source)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="headway-deps-") as tmp:
        site = Path(tmp) / "site"
        if pins:
            out = _pip(
                ["install", "--no-deps", "--quiet", "--no-compile", "--target", str(site), *pins],
                "installing",
                tmp,
                source,
            )
            if out.returncode != 0:
                raise _pip_error(out, requirements, source)
        site.mkdir(exist_ok=True)
        zipped = target.with_name(f".{target.name}.{os.getpid()}.part")  # beside it: one file system
        _zip(site, zipped)
        os.chmod(zipped, 0o600)
        os.replace(zipped, target)
    size = target.stat().st_size
    progress(
        f"packages for the nodes: {', '.join(pins) or 'none beyond Ray'} ({size / 2**20:.1f} MiB, shipped "
        "like the working_dir)"
    )
    return target


def _zip(site: Path, dest: Path) -> None:
    """One top folder (Ray strips it when it unpacks a package onto a node)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(site.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, Path("deps") / path.relative_to(site))


def build_all(service: str, spec: ServiceSpec, progress=lambda _m: None) -> dict[str, str]:
    """Every application's package, before any node starts; application → URI."""
    for app in spec.applications:
        needed = spec.app_requirements(app)
        if needed:
            build(service, needed, progress, spec.allow_source_builds)
    return uris(service, spec)


def check_all(spec: ServiceSpec, progress=lambda _m: None) -> None:
    """Resolve every application's requirements (a dry run: nothing is installed or kept)."""
    for app in spec.applications:
        needed = spec.app_requirements(app)
        if needed:
            pins = resolve(needed, spec.allow_source_builds)
            shipped = ", ".join(pins) or "nothing beyond Ray's environment"
            progress(f"application {app.name}: {', '.join(needed)} resolve to {shipped}")
