"""Packaging a local ``working_dir`` as a zip that every node can read by ``file://`` URI.

Ray caches runtime-env packages by URI, so the file name carries a content hash:
changed code gets a new URI and is really shipped on update.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import zipfile
from pathlib import Path

DEFAULT_EXCLUDES = ["__pycache__", "*.pyc", ".git", ".venv", "*.egg-info"]


def _files(root: Path, excludes: list[str]) -> list[Path]:
    out: list[Path] = []
    patterns = DEFAULT_EXCLUDES + excludes
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir / d, patterns))
        for f in sorted(filenames):
            rel = rel_dir / f
            if not _excluded(rel, patterns):
                out.append(rel)
    return out


def _excluded(rel: Path, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel.name, p) or fnmatch.fnmatch(str(rel), p) for p in patterns)


def package_working_dir(src: str, dest_dir: Path, excludes: list[str]) -> str:
    """Zip ``src`` (one top-level folder, as Ray expects) into ``dest_dir``; return its URI."""
    root = Path(src)
    files = _files(root, excludes)
    digest = hashlib.sha256()
    for rel in files:
        digest.update(str(rel).encode())
        digest.update((root / rel).read_bytes())
    name = f"working_dir-{digest.hexdigest()[:12]}.zip"
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel in files:
                zf.write(root / rel, arcname=str(Path("working_dir") / rel))
        tmp.replace(target)
    for old in dest_dir.glob("working_dir-*.zip"):
        if old != target:
            old.unlink(missing_ok=True)
    return f"file://{target}"


def uri_path(uri: str | None) -> str | None:
    """Where the nodes read a ``file://`` package (on their own hosts), or None for another
    kind of URI."""
    return uri[7:] if uri and uri.startswith("file://") else None


def package_home(path: str) -> str:
    """The state folder a package path lies in: packages are written as
    ``<home>/services/<name>/pkg/<file>`` by the controller that deployed them."""
    return str(Path(path).parents[3])
