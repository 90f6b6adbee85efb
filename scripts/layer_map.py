"""Print the layer map of ``src/headway`` as a Mermaid flowchart (GitHub draws it), and the
height of its import graph: ``python scripts/layer_map.py [--levels | --write]``
(``--write`` puts the map into ``docs/internals.md``).

``docs/internals.md`` holds its output between ``<!-- layer map -->`` markers, and a unit
test checks the two agree, so the picture is the code's, not a drawing that drifts. The
height is the longest chain of modules each importing the next (every ``import`` in a
module counts, those inside functions too).
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "headway"
#: Top to bottom, as the layers contract in pyproject.toml orders them.
LAYERS = ["cli", "daemon", "api", "control", "ingress", "cluster", "store", "hosts", "state", "system", "plan", "model"]


def modules() -> dict[str, Path]:
    """Dotted name (without ``headway.``) → file, for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "headway":
            base = node.module.removeprefix("headway").lstrip(".")
            for alias in node.names:
                full = f"{base}.{alias.name}".lstrip(".")
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("headway.") for a in node.names if a.name.startswith("headway.")}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer_of(module: str) -> str:
    return module.split(".")[0]


def longest_chain(g: dict[str, set[str]]) -> list[str]:
    @cache
    def chain(n: str) -> tuple[str, ...]:
        return (n, *max((chain(d) for d in g[n]), key=len, default=()))

    return list(max((chain(n) for n in g), key=len))


def mermaid(g: dict[str, set[str]]) -> str:
    """One box per layer (its modules and lines), one arrow per layer it imports directly."""
    lines_of: dict[str, int] = {}
    count: dict[str, int] = {}
    for name, path in modules().items():
        lay = layer_of(name)
        lines_of[lay] = lines_of.get(lay, 0) + len(path.read_text().splitlines())
        count[lay] = count.get(lay, 0) + 1
    edges = sorted({(layer_of(a), layer_of(b)) for a, deps in g.items() for b in deps if layer_of(a) != layer_of(b)})
    out = ["```mermaid", "flowchart TD"]
    for lay in LAYERS:
        what = "module" if count[lay] == 1 else "modules"
        out.append(f'    {lay}["{lay}<br/>{count[lay]} {what}, {lines_of[lay]} lines"]')
    out += [f"    {a} --> {b}" for a, b in sorted(edges, key=lambda e: (LAYERS.index(e[0]), LAYERS.index(e[1])))]
    out.append("```")
    return "\n".join(out)


DOC = SRC.parents[1] / "docs" / "internals.md"
BEGIN, END = "<!-- layer map -->\n", "\n<!-- /layer map -->"


def drawn() -> str:
    """The map as docs/internals.md holds it now."""
    return DOC.read_text().split(BEGIN, 1)[1].split(END, 1)[0]


def main(argv: list[str]) -> int:
    g = graph()
    if "--write" in argv:
        text = DOC.read_text()
        DOC.write_text(text.replace(BEGIN + drawn() + END, BEGIN + mermaid(g) + END))
    elif "--levels" in argv:
        chain = longest_chain(g)
        print(f"{len(chain)} levels: {' -> '.join(chain)}")
    else:
        print(mermaid(g))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
