"""The control plane's configuration file: ``KEY=VALUE`` lines, as systemd's
``EnvironmentFile=`` reads them (``/etc/headway/controller.env``, or the file
``HEADWAY_CONTROLLER_ENV`` names).

The controller reads it when it starts and again before each operation, and its values
win over the environment it inherited: a controller started by whichever shell ran the
first deploy still takes ``PIP_INDEX_URL`` (or any setting) from the file, and a change
there counts from the next deploy on, without a restart.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from headway.model.errors import InputError

DEFAULT = Path("/etc/headway/controller.env")
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


def path() -> Path:
    return Path(os.environ.get("HEADWAY_CONTROLLER_ENV") or DEFAULT)


def parse(text: str, source: str) -> dict[str, str]:
    """The file's settings; a line that is not ``KEY=VALUE`` (or a comment) is an error
    that names it. Values may be quoted ('…' or "…"), as systemd allows."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            raise InputError(f"{source}:{number}: not a KEY=VALUE line; fix or comment it out with '#'")
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


def apply(file: Path | None = None) -> dict[str, str]:
    """Set this process's environment from the file (absent: nothing); what it set."""
    f = file or path()
    try:
        text = f.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InputError(f"{f}: cannot read it ({exc.strerror})") from None
    values = parse(text, str(f))
    os.environ.update(values)
    return values
