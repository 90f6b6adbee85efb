"""Does an application's ``import_path`` name code that will be there? Checked on the
deploying user's machine before anything starts, by reading the module's source, never by
importing it: user code does not run in headway's process (often root).

Ray puts the working_dir on the replicas' ``sys.path``, so ``pkg.mod:app`` is
``pkg/mod.py`` (or ``pkg/mod/__init__.py``) under it. A module found nowhere there may
come from headway's own Python environment (the nodes run the same one), or from the
requirements (named by distribution, not module: it cannot be told here); anything else
is an error that names the folder and the flag.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finding:
    """One import path's verdict: an error (the deploy is refused) or a note (not checked)."""

    error: str | None = None
    note: str | None = None


def module_file(module: str, roots: Sequence[Path]) -> Path | None:
    """The file ``module`` is read from under the first root that has it."""
    rel = Path(*module.split("."))
    for root in roots:
        for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def top_level_names(source: str) -> set[str] | None:
    """The names a module binds at its top level (in ``if``/``try``/``with``/``for`` blocks
    too, not inside functions or classes); None when a ``from x import *`` makes them
    unknowable. A SyntaxError when it does not parse."""
    names: set[str] = set()
    pending: list[ast.AST] = list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        for target in _targets(node):
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            pending.extend(getattr(node, block, []))
    return names


def _targets(node: ast.AST) -> list[ast.AST]:
    """What a statement assigns to."""
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
        return [node.target]
    if isinstance(node, ast.With | ast.AsyncWith):
        return [i.optional_vars for i in node.items if i.optional_vars is not None]
    return []


def installed(top_module: str) -> bool:
    """Whether headway's Python environment (the nodes') has this top-level module; looking
    it up runs none of its code."""
    try:
        return importlib.util.find_spec(top_module) is not None
    except (ImportError, ValueError):
        return False


def check(import_path: str, roots: Sequence[Path], has_requirements: bool) -> Finding:
    """Whether ``module:attribute`` is defined in the code under ``roots``."""
    module, attribute = import_path.split(":", 1)
    path = module_file(module, roots)
    if path is None:
        top = module.split(".")[0]
        if installed(top):
            return Finding(note=f"{import_path}: module {module} comes from headway's Python environment")
        if has_requirements:
            return Finding(
                note=f"{import_path}: module {module} is not in the working_dir; the requirements must bring it"
            )
        where = (
            f"in working_dir {', '.join(str(r) for r in roots)}"
            if roots
            else "anywhere: the service has no working_dir"
        )
        file = module.replace(".", "/") + ".py"
        return Finding(
            error=f"{import_path}: no module {module} {where}; set working_dir to the folder that holds {file} "
            "(or deploy with --working-dir FOLDER)"
        )
    try:
        names = top_level_names(path.read_text())
    except SyntaxError as exc:
        return Finding(error=f"{import_path}: {path} does not parse (line {exc.lineno}: {exc.msg}); fix the module")
    except (OSError, UnicodeDecodeError) as exc:
        return Finding(error=f"{import_path}: cannot read {path} ({exc}); check the file")
    first = attribute.split(".")[0]
    if names is not None and first not in names:
        shown = ", ".join(sorted(n for n in names if not n.startswith("_"))[:8]) or "nothing"
        return Finding(
            error=f"{import_path}: {path} defines no {first} at its top level (it defines {shown}); fix import_path"
        )
    return Finding()
