"""headway as a user installs it: a wheel built from this tree, installed with plain pip
into a fresh venv of Python 3.12 (not the one the suite runs on), answers ``--version``
and validates the example service."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python312() -> str | None:
    """A Python 3.12 that runs (pyenv's own before a shim that may answer for another version)."""
    found = [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
        shutil.which("python3.12"),
    ]
    for candidate in filter(None, found):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


PY312 = _python312()


@pytest.mark.skipif(PY312 is None, reason="no Python 3.12 on this machine")
def test_the_wheel_installs_with_pip_on_python_312_and_runs(tmp_path: Path) -> None:
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("headway-*.whl")
    subprocess.run([PY312, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=1200
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")} | {
        "HEADWAY_HOME": str(tmp_path / "state"),
        "HEADWAY_AUTO_CLOUD": "1",
    }
    headway = str(venv / "bin" / "headway")
    version = subprocess.run([headway, "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("headway 0.1.0 (Ray 2.60"), version
    assert "Python 3.12" in version.stdout
    checked = subprocess.run(
        [headway, "validate", "-f", str(ROOT / "examples/hello/service.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid: a deploy would create hello" in checked.stdout
    assert not (tmp_path / "state" / "controller.json").exists()  # validating started nothing
