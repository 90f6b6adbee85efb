"""The ``alerts:`` block of a cloud config: where alerts go and what raises them.

```yaml
alerts:
  webhook: https://hooks.example.com/headway   # each alert is POSTed here as JSON
  head_failure: true                # a head lost, and its return
  recovery_longer_than_s: 60        # a head still not back after this long
  error_ratio_above: 0.05           # 5xx / requests at the endpoint over error_window_s
  error_window_s: 60
  min_requests: 20                  # fewer requests in the window: no ratio is judged
  store_percent: 80                 # a store's memory, % of maxmemory
  link_base: https://ctl.example.com:8765   # the control plane's URL, for timeline links
```

Every field but ``webhook`` has the default shown; a rule set to ``null`` is off.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from headway.model.cloud_config import read_config_file
from headway.model.errors import InputError


def _url(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http:// or https:// URL with a host")
    return value.rstrip("/")


class AlertRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook: str | None = Field(default=None, description="where alerts are POSTed (JSON)")
    head_failure: bool = True
    recovery_longer_than_s: float | None = Field(default=60.0, gt=0, le=86_400)
    error_ratio_above: float | None = Field(default=0.05, gt=0, le=1)
    error_window_s: float = Field(default=60.0, ge=10, le=3600)
    min_requests: int = Field(default=20, ge=1)
    store_percent: float = Field(default=80.0, ge=1, le=100)
    link_base: str | None = Field(default=None, description="the control plane's URL, for timeline links")

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        return _url(v, "webhook")

    @field_validator("link_base")
    @classmethod
    def _link_base(cls, v: str | None) -> str | None:
        return _url(v, "link_base")


class AlertsConfigError(InputError):
    pass


def load(path: str) -> AlertRules | None:
    """The ``alerts:`` block of a cloud config file (None when it has none)."""
    data = read_config_file(path, AlertsConfigError)
    if not isinstance(data, dict) or data.get("alerts") is None:
        return None
    if not isinstance(data["alerts"], dict):
        raise AlertsConfigError(f"{path}: alerts: expected a mapping (webhook, head_failure, …)")
    try:
        return AlertRules.model_validate(data["alerts"])
    except ValidationError as exc:
        problems = "; ".join(
            f"alerts.{'.'.join(str(x) for x in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise AlertsConfigError(f"{path}: {problems}") from None


def names_ssh(path: str) -> bool:
    """Whether a cloud config has an ``ssh:`` block (else it may hold only ``alerts:``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return True  # the SSH loader says what is wrong with the file
    return not isinstance(data, dict) or "ssh" in data or "alerts" not in data
