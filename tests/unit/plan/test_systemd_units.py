"""Unit files as text: what systemd reads back is what was meant (quoting), and a value
that would break a line is refused."""

from __future__ import annotations

import pytest

from headway.plan.systemd_units import Unit, render


def test_a_unit_with_environment_user_and_kill_mode() -> None:
    text = render(
        Unit(
            name="x.service",
            description="x",
            exec_start=["/opt/venv/bin/python", "-m", "headway.daemon", "--flag", "a b"],
            environment={"B": 'say "hi"', "A": "1"},
            environment_file="/etc/headway/controller.env",
            user="ops",
            kill_mode="process",
        )
    )
    assert "ExecStart=/opt/venv/bin/python -m headway.daemon --flag 'a b'\n" in text
    assert 'Environment="A=1"\nEnvironment="B=say \\"hi\\""\n' in text
    assert "EnvironmentFile=-/etc/headway/controller.env\n" in text
    assert "User=ops\n" in text and "KillMode=process\n" in text and "Restart=always\n" in text
    assert text.index("[Unit]") < text.index("[Service]") < text.index("[Install]")


def test_a_value_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="single lines"):
        render(Unit(name="x.service", description="x", exec_start=["a"], environment={"K": "1\nExecStart=evil"}))
