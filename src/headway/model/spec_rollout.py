"""How a service is updated: in place, or rolled out as a new cluster behind the same
endpoint — the ``rollout_strategy``, ``canary_percent`` and ``max_surge_percent`` fields of
the managed platforms' service config, and the ``rollout`` block with the steps and the
thresholds a new version is judged by (``rollout_policy`` applies them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from headway.model.spec_base import Strict

Strategy = Literal["in_place", "rollout"]


class RolloutConfig(Strict):
    """The traffic steps and what a step must show before the next one."""

    # The share of requests (percent) the new version gets at each step, after a first
    # step at 0 % where it only has to pass the ingress's health checks.
    steps_percent: list[int] = Field(default_factory=lambda: [10, 25, 50, 100])
    # How long each step is held (and judged) before the next.
    step_interval_s: float = Field(default=30.0, ge=1, le=3600)
    # The new version's 5xx share may exceed the old one's by at most this much (0.01: one
    # point) over the same window; a 5xx the ingress retried elsewhere counts too.
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    # Its p99 latency may be at most this many times the old one's (judged once both versions
    # served 100 requests in the step: below that a "p99" is one cold request) ...
    max_p99_ratio: float = Field(default=2.0, ge=1, le=100)
    # ... unless it is within this many milliseconds of it (a fast service is not judged on noise).
    p99_slack_ms: float = Field(default=50.0, ge=0, le=60_000)
    # Fewer requests than this to the new version in a step: the step is judged on the
    # health of its nodes alone (and says so), an idle service's rollout still completes.
    min_requests: int = Field(default=20, ge=1, le=1_000_000)

    @field_validator("steps_percent")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or v[-1] != 100:
            raise ValueError("must end at 100 (the new version takes all traffic), e.g. [10, 25, 50, 100]")
        if any(not 0 < p <= 100 for p in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("must be percentages between 1 and 100, each larger than the one before")
        return v


def normalise_strategy(v: Any) -> Any:
    """The managed platforms write ``ROLLOUT`` / ``IN_PLACE``; both spellings are taken."""
    return v.lower() if isinstance(v, str) else v
