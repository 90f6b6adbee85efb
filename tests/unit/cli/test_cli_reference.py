"""The README's CLI reference and `headway --help` say the same: every command and option
that exists is documented, and every documented one exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from headway.cli.main import main

README = Path(__file__).resolve().parents[3] / "README.md"
WORD = re.compile(r"^[a-z][a-z-]*$")
LONG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _reference() -> dict[str, set[str]]:
    """Command path → long options, from the code block under '## The CLI'."""
    text = README.read_text()
    section = text[text.index("## The CLI") :]
    block = section[section.index("```") + 3 :]
    block = block[block.index("\n") + 1 : block.index("```")]
    documented: dict[str, set[str]] = {}
    current: list[str] = []
    for raw in block.splitlines():
        line = raw.split("#", 1)[0]
        if raw.startswith("headway "):
            tokens = line.split()[1:]
            path: list[str] = []
            alternatives: list[str] = []
            for i, tok in enumerate(tokens):
                if WORD.match(tok) and (not path or i == len(path)):
                    path.append(tok)
                elif tok == "|" and path and i + 1 < len(tokens) and WORD.match(tokens[i + 1]):
                    alternatives.append(tokens[i + 1])
                elif tok != "|" and tok not in alternatives:
                    break
            base = " ".join(path)
            current = [base] + [" ".join([*path[:-1], alt]) for alt in alternatives]
            for cmd in current:
                documented.setdefault(cmd, set())
        if current:
            for cmd in current:
                documented[cmd] |= set(LONG.findall(line))
    return documented


def _tree(cmd: click.Command = main, path: tuple[str, ...] = ()) -> dict[str, set[str]]:
    if isinstance(cmd, click.Group):
        out: dict[str, set[str]] = {}
        for name, sub in cmd.commands.items():
            out |= _tree(sub, (*path, name))
        return out
    longs = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}
    return {" ".join(path): longs - {"--help"}}


def test_every_command_and_option_is_documented_and_exists():
    documented, real = _reference(), _tree()
    top = {o for p in main.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")}
    real[""] = top - {"--help"}  # `headway --version`, `headway --api-url URL COMMAND`
    assert sorted(set(real) - set(documented)) == [], "commands missing from the README's CLI reference"
    assert sorted(set(documented) - set(real)) == [], "the README documents commands that do not exist"
    for cmd in sorted(real):
        assert documented[cmd] == real[cmd], (cmd, "documented", documented[cmd], "real", real[cmd])


def test_the_reference_parser_sees_alternatives_and_continuations():
    ref = _reference()
    assert {"controller start", "controller stop", "controller status"} <= set(ref)
    assert "--client-key" in ref["storage check"] and "--namespace" in ref["storage check"]
    assert "--dry-run" not in ref["validate"]  # a comment's mention is not an option


def _leaf_commands() -> list[str]:
    return sorted(_tree())


@pytest.mark.parametrize("path", _leaf_commands())
def test_every_command_answers_help_with_what_it_does(path):
    res = CliRunner().invoke(main, [*path.split(), "--help"])
    assert res.exit_code == 0, res.output
    summary = res.output.split("\n\n")[1].strip()
    assert len(summary) > 10, f"headway {path} --help says nothing about what it does"


@pytest.mark.parametrize("path", ["status", "events", "logs", "config", "versions", "token"])
def test_every_reading_command_names_an_unknown_service(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    res = CliRunner().invoke(main, [*path.split(), "nope"])
    assert res.exit_code == 2, res.output
    assert "no service named nope" in res.output
