"""A requirement published only as source (an sdist) is refused by default, naming the
flag that allows it; allowed, it is built as nobody, with the state dir out of its sight.
The sdist is made here and served from a local folder (no Ray: pip and the sandbox)."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from headway.cluster import deps

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="building as another user needs root")

SETUP = """
import os
from setuptools import setup
probe = os.environ.get("HW_PROBE", "")
with open("hwsdistonly_built.py", "w") as fh:
    fh.write(f"UID = {os.getuid()}\\nSAW_STATE = {os.path.exists(probe)}\\n")
setup(name="hwsdistonly", version="0.1", py_modules=["hwsdistonly_built"])
"""


def _sdist(folder: Path) -> None:
    src = folder / "hwsdistonly-0.1"
    src.mkdir(parents=True)
    (src / "setup.py").write_text(SETUP)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: hwsdistonly\nVersion: 0.1\n")
    with tarfile.open(folder / "hwsdistonly-0.1.tar.gz", "w:gz") as tar:
        tar.add(src, "hwsdistonly-0.1")


@pytest.fixture
def open_dir():
    """A folder anyone may read (an index must be; so is the state dir here, on purpose:
    the build must not see it all the same)."""
    d = Path(tempfile.mkdtemp(prefix="hwt-sdist-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_sdist_is_refused_by_default_and_built_as_nobody_when_allowed(open_dir, monkeypatch):
    tmp_path = open_dir
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / "state.db").write_text("the control plane's secrets")
    (home / "state.db").chmod(0o644)  # readable by anyone here: only the sandbox's cover hides it
    _sdist(tmp_path / "index")
    monkeypatch.setenv("HEADWAY_HOME", str(home))
    monkeypatch.setattr(deps.paths, "home", lambda: home)  # as it is, not tightened to 0700
    monkeypatch.setenv("PIP_FIND_LINKS", f"{tmp_path / 'index'} {os.environ.get('PIP_FIND_LINKS', '')}".strip())
    monkeypatch.setenv("HW_PROBE", str(home / "state.db"))

    with pytest.raises(deps.DependencyError, match="allow_source_builds: true") as refused:
        deps.resolve(["hwsdistonly"])
    print(refused.value)

    package = deps.build("svc", ["hwsdistonly"], source=True)
    with zipfile.ZipFile(package) as zf:
        built = zf.read("deps/hwsdistonly_built.py").decode()
    print(built)
    assert "UID = 65534" in built, "the source build ran as root"
    assert "SAW_STATE = False" in built, "the source build could see the state dir"
