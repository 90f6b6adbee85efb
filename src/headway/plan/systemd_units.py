"""The systemd units headway writes, as text: what starts a process at boot and after a
crash, without the controller's help (the controller's own repair stays the second line).

``KillMode=process``: stopping or restarting the controller's unit must not take down the
nodes, stores and endpoints it started (they serve while it is away, by design).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Unit:
    name: str  # the file's name, e.g. headway-controller.service
    description: str
    exec_start: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    environment_file: str | None = None  # read if present ('-' prefix)
    user: str | None = None
    kill_mode: str = "control-group"
    restart_sec: float = 2.0
    after: Sequence[str] = ("network-online.target",)
    before: Sequence[str] = ()
    #: "simple": a process systemd keeps running (``Restart=always``); "oneshot": a command
    #: run once at boot, whose processes outlive it (``KillMode=process``).
    kind: Literal["simple", "oneshot"] = "simple"


def _quoted(value: str) -> str:
    """A value systemd reads back as written: double quotes, with its escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(unit: Unit) -> str:
    """The unit file's text."""
    if any("\n" in part for part in (*unit.exec_start, *unit.environment.values())):
        raise ValueError("a unit's command and environment are single lines")
    lines = [
        "[Unit]",
        f"Description={unit.description}",
        *(f"After={a}" for a in unit.after),
        *(f"Wants={a}" for a in unit.after if a.endswith("-online.target")),
        *(f"Before={b}" for b in unit.before),
        "",
        "[Service]",
        f"Type={unit.kind}",
        f"ExecStart={shlex.join(unit.exec_start)}",
    ]
    if unit.environment_file:
        lines.append(f"EnvironmentFile=-{unit.environment_file}")
    lines += [f"Environment={_quoted(f'{k}={v}')}" for k, v in sorted(unit.environment.items())]
    if unit.user:
        lines.append(f"User={unit.user}")
    if unit.kind == "oneshot":
        lines += ["RemainAfterExit=yes", "KillMode=process"]
    else:
        lines += ["Restart=always", f"RestartSec={unit.restart_sec:g}", f"KillMode={unit.kill_mode}"]
    lines += [
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
