"""The ``headway`` command line.

Exit codes (``errors``): 0 done, 1 the operation failed, 2 the input (YAML, address, name,
version) is wrong, 3 refused for now (the head is recovering, or another change holds the
service): retry later or pass ``--wait``. The service commands are here; the platform's
(cloud, storage, chaos) are in ``cli_admin``, the control plane's (controller, API,
dashboard, completion) in ``cli_control``.
Errors are one readable paragraph, never a traceback, and never hold a secret.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
import yaml
from rich.markup import escape

from headway.cli import cli_admin, cli_context, cli_control, cli_read, cli_rollout  # noqa: F401 - each registers its commands
from headway.cli.cli_common import (
    _change,
    _deployed,
    _emit,
    _fail,
    _progress,
    _remote,
    _via_api,
    api_path,
    json_option,
    main,
    out,
    service_name,
)
from headway.cli.cli_rollout import wait_for_rollout
from headway.model.spec import MAX_WORKERS, ServiceSpec, SpecError
from headway.model.spec_load import inline_requirement_files, load_spec_text, safe_yaml
from headway.state import uploads


@main.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="the service YAML")
@click.option("--wait", is_flag=True, help="if the head is recovering, wait for it and then apply")
@click.option("--wait-timeout", default=600.0, show_default=True, help="seconds --wait waits at most")
@click.option("--strict", is_flag=True, help="refuse a service whose replicas could not serve without the head")
@click.option("--dry-run", is_flag=True, help="check the YAML, its files and the store; start nothing")
@click.option("--name", default=None, help="the service's name, for a file without one (a `serve build` config)")
@click.option(
    "--working-dir",
    "working_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="the folder with the app's code, for a file without working_dir",
)
@click.option(
    "--strategy",
    type=click.Choice(["in_place", "rollout"]),
    default=None,
    help="how an update is applied (default: the YAML's rollout_strategy, else in place when it can be)",
)
@click.option(
    "--canary-percent",
    type=click.IntRange(1, 99),
    default=None,
    help="a rollout stops at this share of traffic until 'headway rollout promote'",
)
@click.option(
    "--max-surge-percent",
    type=click.IntRange(1, 100),
    default=None,
    help="extra workers a rollout may start, as a percentage of each group",
)
@click.option(
    "--wait-rollout",
    is_flag=True,
    help="when the update is a rollout, block until it ends: exit 0 completed, 1 rolled back, 3 canary held",
)
@json_option
def deploy(
    path: str,
    wait: bool,
    wait_timeout: float,
    strict: bool,
    dry_run: bool,
    name: str | None,
    working_dir: str | None,
    strategy: str | None,
    canary_percent: int | None,
    max_surge_percent: int | None,
    wait_rollout: bool,
    as_json: bool,
) -> None:
    """Deploy a service, or update it if one of that name exists (in place, or as a rollout)."""
    try:
        text, spec, uploaded = _read(path, name, working_dir)
    except SpecError as exc:
        _fail(str(exc), 2)
    if dry_run:
        _checked(_dry_run(spec, strict, _checked_body(text, path, spec, uploaded)), as_json)
        return
    body = {
        **_checked_body(text, path, spec, uploaded),
        "strict": strict,
        "wait": wait,
        "wait_timeout": wait_timeout,
        "strategy": strategy,
        "canary_percent": canary_percent,
        "max_surge_percent": max_surge_percent,
        "package": uploaded.get("package"),
    }
    result = _change("PUT", api_path("services", spec.name), json=body)
    if not as_json:
        _deployed(result)
    if wait_rollout and result.get("rollout"):
        code, st = wait_for_rollout(spec.name, wait_timeout)
        result |= {"rollout_outcome": st["outcome"], "exit_code": code}
        if not _emit(result, as_json) and code == 0:
            out.print(f"[bold green]{escape(st['outcome'])}[/]", highlight=False)
        if code != 0:
            _fail(st["outcome"], code)
        return
    _emit(result, as_json)


@main.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="the service YAML")
@click.option("--strict", is_flag=True, help="replicas that could not serve without the head are an error")
@click.option("--name", default=None, help="the service's name, for a file without one (a `serve build` config)")
@click.option(
    "--working-dir",
    "working_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="the folder with the app's code, for a file without working_dir",
)
@json_option
def validate(path: str, strict: bool, name: str | None, working_dir: str | None, as_json: bool) -> None:
    """Every check a deploy runs before it starts anything (the store's fitness too); starts nothing."""
    try:
        text, spec, uploaded = _read(path, name, working_dir)
    except SpecError as exc:
        _fail(str(exc), 2)
    _checked(_dry_run(spec, strict, _checked_body(text, path, spec, uploaded)), as_json)


def _checked_body(text: str, path: str, spec: ServiceSpec, uploaded: dict) -> dict:
    """What the control plane checks a service from: the YAML, the files it names, and the
    password variable it names (its value; nothing else of this shell's environment)."""
    return {"yaml": text, "source": path, "env": spec.needed_env(dict(os.environ)), "files": uploaded["files"]}


def _checked(result: dict, as_json: bool) -> None:
    """What a dry run found, as JSON or as the sentence a person reads."""
    if _emit(result, as_json):
        return
    grows = f" (up to {result['workers_max']} as the load asks)" if result["workers_max"] else ""
    what = (
        f"update service {result['name']} (running version {result['running_version']})"
        if result["action"] == "update"
        else f"create {result['name']}"
    )
    out.print(
        f"[green]valid[/]: a deploy would {what}: {result['applications']} application(s), "
        f"{result['workers']} worker(s){grows}; nothing was started"
    )


def _read(path: str, name: str | None, working_dir: str | None) -> tuple[str, ServiceSpec, dict]:
    """The YAML as sent (with ``--name``/``--working-dir`` filled in), the spec it validates
    to (``parse_spec`` says when a ``--name`` disagrees with the file), and the uploads."""
    from headway.store import cloud

    base = Path(path).parent
    has_store = _remote() or cloud.default_store_available()  # a remote one checks again
    text = _with_overrides(path, name, working_dir)
    spec = load_spec_text(text, path, base, has_default_store=has_store, name=name)
    if spec.working_dir is None and _code_beside(spec, base):
        out.print(f"note: working_dir: {base.resolve()}, the YAML's folder, which holds the applications' code")
        text = _with_overrides(path, name, str(base))
        spec = load_spec_text(text, path, base, has_default_store=has_store, name=name)
    _check_import_paths(spec, path)
    return text, spec, _uploads(spec, base)


def _code_beside(spec: ServiceSpec, base: Path) -> bool:
    """Whether an application's module lives in the YAML's folder (a ``serve build`` file
    written next to its code): that folder is then the working_dir."""
    from headway.cluster import import_paths

    return any(import_paths.module_file(app.import_path.split(":")[0], [base]) for app in spec.applications)


def _check_import_paths(spec: ServiceSpec, source: str) -> None:
    """Every import path names code that will be shipped or is installed (read, not run)."""
    from headway.cluster import import_paths

    if spec.working_dir and "://" in spec.working_dir:
        out.print(f"note: working_dir {spec.working_dir} is remote: its import paths are checked when it starts")
        return
    roots = [Path(spec.working_dir)] if spec.working_dir else []
    errors = []
    for app in spec.applications:
        found = import_paths.check(app.import_path, roots, bool(spec.app_requirements(app)))
        if found.note:
            out.print(f"note: application {app.name}: {found.note}", highlight=False)
        if found.error:
            errors.append(f"applications ({app.name}).import_path: {found.error}")
    if errors:
        raise SpecError(source, errors)


def _with_overrides(path: str, name: str | None, working_dir: str | None) -> str:
    """The file's text, with ``--name``/``--working-dir`` filled in where it has none and
    the requirements files it names read in (the control plane opens no path)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(path, [f"cannot read the file ({exc.strerror}); check the path"]) from None
    data = safe_yaml(text, path)
    if not isinstance(data, dict):
        return text  # the validation says what is wrong
    inlined = inline_requirement_files(data, Path(path).parent, path)
    if name is None and working_dir is None and inlined == data:
        return text
    data = inlined
    if name is not None and data.get("name") is None:
        data["name"] = name
    if working_dir is not None:
        if data.get("working_dir"):
            raise SpecError(path, ["working_dir: the file has one already; drop --working-dir or the field"])
        data["working_dir"] = str(Path(working_dir).resolve())
    return yaml.safe_dump(data, sort_keys=False)


def _dry_run(spec: ServiceSpec, strict: bool, body: dict) -> dict:
    """Every check a deploy runs before it starts anything, by the control plane that
    would deploy: here, without starting one, or through a remote one's API."""
    from headway.cluster import deps
    from headway.store import storage

    if _remote():
        return _change("POST", api_path("services", spec.name, "validate"), json=body | {"strict": strict})
    from headway.cli import local

    storage.given_env.set(spec.needed_env(dict(os.environ)))
    with tempfile.TemporaryDirectory(prefix="hwvalidate-") as folder:  # as the API checks the uploads
        try:
            checked = uploads.store_files(spec, body["files"], Path(folder))
            return local.dry_run(checked, strict, _progress())
        except (storage.StoreError, deps.DependencyError, uploads.UploadError) as exc:
            _fail(f"{exc}\nnothing was started.", 2)


def _uploads(spec, base: Path) -> dict:
    """What the control plane gets instead of paths on this machine: the packaged
    working_dir and the contents of the files the spec names (it opens no path itself)."""
    from headway.cluster.package import package_working_dir

    out: dict = {"files": {}}
    for field, name in uploads.named_files(spec).items():
        f = base / name
        try:
            out["files"][field] = f.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(
                str(f),
                [f"{uploads.yaml_field(field)}: cannot read {f} ({exc}); check the path (relative to the YAML)"],
            ) from None
    if uploads.needs_package(spec):
        with tempfile.TemporaryDirectory(prefix="hwpkg-") as tmp:
            uri = package_working_dir(spec.working_dir, Path(tmp), spec.excludes)
            out["package"] = uploads.encode_package(Path(uri.removeprefix("file://")))
    return out


@main.command()
@service_name
@click.option("--group", required=True, help="the worker group to resize")
@click.option("--count", required=True, type=click.IntRange(0, MAX_WORKERS), help="its new number of workers")
@click.option("--wait", is_flag=True, help="if the head is recovering, wait for it and then apply")
@click.option("--wait-timeout", default=600.0, show_default=True)
@json_option
def scale(name: str, group: str, count: int, wait: bool, wait_timeout: float, as_json: bool) -> None:
    """Change the number of workers of one fixed group (an update of the service); a group
    with min_nodes/max_nodes follows the load: change its bounds in the YAML instead."""
    body = {"group": group, "count": count, "wait": wait, "wait_timeout": wait_timeout}
    _result(_change("POST", api_path("services", name, "scale"), json=body), as_json)


@main.command()
@service_name
@click.option("--to", "to", type=click.IntRange(1), default=None, help="the version (default: the one before)")
@json_option
def rollback(name: str, to: int | None, as_json: bool) -> None:
    """Deploy an earlier version of a service again (a new version with its spec and package)."""
    body = {"to": to} if to else {}
    _result(_change("POST", api_path("services", name, "rollback"), json=body), as_json)


def _result(result: dict, as_json: bool) -> None:
    if not _emit(result, as_json):
        _deployed(result)


@main.command()
@service_name
@json_option
def terminate(name: str, as_json: bool) -> None:
    """Stop every node of a service and delete its keys from the store."""
    _change("DELETE", api_path("services", name))
    if not _emit({"name": name, "terminated": True}, as_json):
        out.print(f"service {name} terminated")


@main.command()
@service_name
@click.option("--rotate", is_flag=True, help="make a new token; the current one stays accepted for --grace seconds")
@click.option(
    "--grace",
    type=click.FloatRange(0, 7 * 24 * 3600),
    default=3600.0,
    show_default=True,
    help="seconds the replaced token is still accepted",
)
@json_option
def token(name: str, rotate: bool, grace: float, as_json: bool) -> None:
    """Print the bearer token of a service's endpoint (the only place it is shown); with
    --rotate, a new one (the current one stays accepted for --grace seconds, then is refused)."""
    if rotate:
        out.file = sys.stderr  # stdout holds the new token alone: NEW=$(headway token NAME --rotate)
        result = _change("POST", api_path("services", name, "token", "rotate"), json={"grace_s": grace})
        if not _emit(result, as_json):
            click.echo(result["token"])
        return
    value = _via_api("GET", api_path("services", name, "token"), lambda here: here.token(name))["token"]
    if value is None:
        _fail(f"service {name} has no token yet; deploy it first")
    if not _emit({"name": name, "token": value}, as_json):
        click.echo(value)


if __name__ == "__main__":
    main()
