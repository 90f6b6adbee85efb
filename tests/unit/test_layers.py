"""The layers, checked rather than hoped for. The layers, their order, the purity of ``model``
and ``plan`` and the absence of import circles are the contracts in ``pyproject.toml``
(``[tool.importlinter]``), checked by ``lint-imports``; here it runs as a test too, and a
deliberately broken copy of the package proves the contracts can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-logo", "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_the_layer_contracts_hold():
    done = _lint(ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_the_contracts_catch_a_wrong_way_import_an_io_import_and_a_circle(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "headway", src / "headway", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "headway" / "plan" / "watchdog.py").open("a").write("\nfrom headway.state import db  # noqa\n")
    (src / "headway" / "model" / "states.py").open("a").write("\nimport socket  # noqa\n")
    (src / "headway" / "control" / "context.py").open("a").write("\nfrom headway.control import views  # noqa\n")
    out = _lint(src).stdout
    assert "headway.plan is not allowed to import headway.state" in out
    assert "headway.plan.watchdog -> headway.state.db" in out
    assert "headway.model is not allowed to import socket" in out
    assert "0 kept, 3 broken" in out


def test_both_providers_implement_the_node_provider_contract():
    import inspect

    from headway.cluster.local_provider import LocalProvider
    from headway.cluster.node_provider import NodeProvider
    from headway.cluster.ssh_provider import SshProvider

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
    from headway.model import cloud_config, errors
    from headway.model.spec import SpecError
    from headway.state import uploads
    from headway.store import storage

    cases = [
        (errors.PlacementError("x"), 2, 422),
        (errors.HeadRecovering("x"), 3, 409),
        (errors.Busy("x"), 3, 409),
        (errors.DeployError("x"), 1, 503),
        (storage.StoreError("x"), 2, 422),
        (cloud_config.HostKeyError("x"), 2, 422),
        (cloud_config.HostsNotReady("x"), 2, 422),
        (cloud_config.SshError("x"), 1, 503),
        (SpecError("s", ["p"]), 2, 422),
        (uploads.UploadError("x"), 2, 422),
        (errors.Cancelled("x"), 1, 503),
        (KeyError("x"), 1, 500),
    ]
    for exc, code, status in cases:
        assert (errors.exit_code_of(exc), errors.http_status_of(exc)) == (code, status), type(exc).__name__


def test_the_map_in_the_docs_is_the_codes():
    """docs/internals.md draws the layers from the imports; a change that moves an arrow
    regenerates it (``python scripts/layer_map.py --write``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("layer_map", ROOT / "scripts" / "layer_map.py")
    layer_map = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layer_map)
    assert layer_map.drawn() == layer_map.mermaid(layer_map.graph()), "run: python scripts/layer_map.py --write"
    assert set(layer_map.LAYERS) == {
        p.name for p in (ROOT / "src" / "headway").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    } | {"daemon"}


def test_test_file_names_are_unique_across_the_tree():
    """The integration tests import ``conftest`` by name (pytest's default import mode), so
    two test files of one name anywhere under tests/ stop the whole run at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
