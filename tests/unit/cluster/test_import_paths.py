"""An import path is checked by reading the module, never by running it."""

from __future__ import annotations

from pathlib import Path

from headway.cluster import import_paths
from headway.cluster.import_paths import check, module_file, top_level_names


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root


def test_a_module_is_a_file_or_a_package_under_the_first_root_that_has_it(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", {"app.py": "x = 1", "pkg/__init__.py": "", "pkg/mod.py": "y = 2"})
    b = _tree(tmp_path / "b", {"app.py": "z = 3", "other/__init__.py": "w = 4"})
    assert module_file("app", [a, b]) == a / "app.py"
    assert module_file("pkg.mod", [b, a]) == a / "pkg/mod.py"
    assert module_file("other", [a, b]) == b / "other/__init__.py"
    assert module_file("missing", [a, b]) is None


def test_top_level_names_follow_blocks_but_not_functions() -> None:
    source = """
import os, numpy as np
from ray import serve
from x.y import z as w
try:
    import fast as speed
except ImportError:
    speed = None
if True:
    app = 1
else:
    other: int = 2
with open("f") as (fh, gh):
    pass
for i in range(3):
    pass
def build(args):
    hidden = 1
class Model:
    attr = 2
"""
    names = top_level_names(source)
    assert names == {"os", "np", "serve", "w", "speed", "app", "other", "fh", "gh", "i", "build", "Model"}
    assert top_level_names("from lots import *\n") is None


def test_a_missing_module_or_attribute_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"hello.py": "app = 1\ndef build(args): ...\n", "broken.py": "def f(:\n"})
    assert check("hello:app", [root], False) == import_paths.Finding()
    assert check("hello:build.attr", [root], False).error is None  # the first name is what the module binds
    missing = check("nosuchmodule:app", [root], False).error
    assert missing and f"no module nosuchmodule in working_dir {root}" in missing and "nosuchmodule.py" in missing
    nowd = check("nosuchmodule:app", [], False).error
    assert nowd and "the service has no working_dir" in nowd and "--working-dir" in nowd
    attr = check("hello:nothere", [root], False).error
    assert attr and "defines no nothere" in attr and "app, build" in attr
    bad = check("broken:f", [root], False).error
    assert bad and "does not parse (line 1" in bad


def test_a_module_from_the_environment_or_the_requirements_is_a_note(tmp_path: Path) -> None:
    installed = check("json:loads", [tmp_path], False)
    assert installed.error is None and "headway's Python environment" in (installed.note or "")
    required = check("someones_model_lib:app", [tmp_path], True)
    assert required.error is None and "requirements must bring it" in (required.note or "")
