"""The controller's configuration file: KEY=VALUE as systemd reads it; a line that is not
one is named, not skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headway.model.errors import InputError
from headway.system import env_file


def test_lines_comments_quotes_and_export() -> None:
    text = """
# the package index the deploys resolve from
PIP_INDEX_URL=https://pypi.internal/simple
export HEADWAY_PROBE_PERIOD_S = 0.25
; a comment too
QUOTED="a value with spaces"
SINGLE='x=1'
EMPTY=
"""
    assert env_file.parse(text, "f") == {
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "HEADWAY_PROBE_PERIOD_S": "0.25",
        "QUOTED": "a value with spaces",
        "SINGLE": "x=1",
        "EMPTY": "",
    }


@pytest.mark.parametrize("line", ["just words", "1BAD=x", "KEY", "A-B=1"])
def test_a_line_that_is_not_a_setting_is_named(line: str) -> None:
    with pytest.raises(InputError, match=r"controller.env:2: not a KEY=VALUE line"):
        env_file.parse(f"OK=1\n{line}\n", "controller.env")


def test_apply_sets_the_environment_and_an_absent_file_is_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADWAY_CONTROLLER_ENV", str(tmp_path / "controller.env"))
    assert env_file.apply() == {}
    (tmp_path / "controller.env").write_text("HW_TEST_SETTING=from-the-file\n")
    monkeypatch.setenv("HW_TEST_SETTING", "inherited")
    assert env_file.apply() == {"HW_TEST_SETTING": "from-the-file"}
    assert os.environ["HW_TEST_SETTING"] == "from-the-file"  # the file wins over the inherited value
