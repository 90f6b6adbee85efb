"""The layers, checked rather than hoped for: no import circles between headway's modules
(at module level or hidden inside functions), and the pure modules — the decisions and
the types — import nothing that does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "headway"
MODULES = {p.stem for p in SRC.glob("*.py")}

#: Decisions and types: pure functions of their input (unit-tested without Ray).
PURE = {
    "errors",
    "plan",
    "states",
    "spec",
    "store_address",
    "ray_node_env",
    "watchdog",
    "haproxy_config",
    "placement",
    "store_fitness",
    "metrics",
    "store_conf",
    "requirements",
    "spec_show",
    "autoscale",
    "spec_base",
    "spec_compute",
    "spec_rollout",
    "rollout_policy",
}
IO_LIBS = {"httpx", "redis", "paramiko", "subprocess", "socket", "sqlite3", "requests", "aiohttp", "ray"}


def _imports(path: Path, everywhere: bool) -> tuple[set[str], set[str]]:
    """(headway modules, other top-level packages) that ``path`` imports."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    ours, theirs = set(), set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            ours |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            theirs.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            theirs |= {a.name.split(".")[0] for a in node.names}
    return ours & MODULES, theirs


def _cycles(everywhere: bool) -> list[list[str]]:
    graph = {m: _imports(SRC / f"{m}.py", everywhere)[0] for m in MODULES}
    found, color = [], {}

    def visit(n: str, stack: list[str]) -> None:
        color[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if color.get(d) == 1:
                found.append(stack[stack.index(d) :] + [d])
            elif not color.get(d):
                visit(d, stack)
        stack.pop()
        color[n] = 2

    for m in sorted(graph):
        if not color.get(m):
            visit(m, [])
    return found


def test_no_import_circles():
    assert _cycles(everywhere=True) == []


def test_pure_modules_do_no_io():
    for m in sorted(PURE):
        ours, theirs = _imports(SRC / f"{m}.py", everywhere=True)
        assert ours <= PURE, (m, ours - PURE)
        assert not theirs & IO_LIBS, (m, theirs & IO_LIBS)


def test_both_providers_implement_the_node_provider_contract():
    import inspect

    from headway.node_provider import NodeProvider
    from headway.provider import LocalProvider
    from headway.ssh_provider import SshProvider

    members = {n for n in dir(NodeProvider) if not n.startswith("_")} | {"mode"}
    for cls in (LocalProvider, SshProvider):
        for name in sorted(members - {"mode"}):
            assert hasattr(cls, name), (cls.__name__, name)
            ours, theirs = getattr(NodeProvider, name), getattr(cls, name)
            if callable(ours) and callable(theirs):
                want = list(inspect.signature(ours).parameters)
                got = list(inspect.signature(theirs).parameters)
                assert got[: len(want)] == want, (cls.__name__, name, got, want)


def test_exit_codes_and_http_statuses_come_from_the_error_type():
    from headway import errors, records, service, ssh, storage, uploads
    from headway.spec import SpecError

    cases = [
        (service.PlacementError("x"), 2, 422),
        (service.HeadRecovering("x"), 3, 409),
        (records.Busy("x"), 3, 409),
        (service.DeployError("x"), 1, 503),
        (storage.StoreError("x"), 2, 422),
        (ssh.HostKeyError("x"), 2, 422),
        (ssh.HostsNotReady("x"), 2, 422),
        (ssh.SshError("x"), 1, 503),
        (SpecError("s", ["p"]), 2, 422),
        (uploads.UploadError("x"), 2, 422),
        (errors.Cancelled("x"), 1, 503),
        (KeyError("x"), 1, 500),
    ]
    for exc, code, status in cases:
        assert (errors.exit_code_of(exc), errors.http_status_of(exc)) == (code, status), type(exc).__name__
