"""Which alerts a service raises or clears now: a pure function of what was observed, the
rules (``model.alert_rules``) and which alerts are active. Each alert is raised once and
cleared once (its state is kept by the caller), so a webhook gets one message per change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from headway.model.alert_rules import AlertRules


@dataclass(frozen=True)
class Observed:
    service: str
    state: str
    #: when the head was lost, during a recovery (None otherwise)
    recovering_since: float | None = None
    #: how long the head was away, from the last recovery's end (RUNNING) event
    last_downtime_s: float | None = None
    #: the endpoint's requests and 5xx over the rules' window (None: no reading)
    requests: int | None = None
    errors_5xx: int | None = None


@dataclass(frozen=True)
class Change:
    key: str  # what the caller keeps the alert's state under
    kind: str  # head_failure, head_recovered, recovery_slow, recovery_slow_cleared, error_ratio_high, ...
    raised: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def decide(rules: AlertRules, obs: Observed, active: dict[str, bool], now: float) -> list[Change]:
    out: list[Change] = []
    svc = obs.service
    recovering = obs.recovering_since is not None
    key = f"head:{svc}"
    if rules.head_failure and recovering and not active.get(key):
        out.append(
            Change(
                key,
                "head_failure",
                True,
                f"service {svc}: its head node was lost; a new head is being started (the workers keep serving)",
                {"lost_at": obs.recovering_since},
            )
        )
    elif not recovering and active.get(key):
        back = f" after {obs.last_downtime_s:g} s" if obs.last_downtime_s is not None else ""
        out.append(
            Change(
                key,
                "head_recovered",
                False,
                f"service {svc}: its head is back{back}",
                {"downtime_s": obs.last_downtime_s},
            )
        )
    key = f"slow:{svc}"
    limit = rules.recovery_longer_than_s
    if limit is not None and recovering and not active.get(key):
        assert obs.recovering_since is not None
        away = now - obs.recovering_since
        if away >= limit:
            out.append(
                Change(
                    key,
                    "recovery_slow",
                    True,
                    f"service {svc}: its head has been away {away:.0f} s (more than {limit:g} s); "
                    "see its timeline for the step it is at",
                    {"away_s": round(away, 1), "limit_s": limit},
                )
            )
    elif not recovering and active.get(key):
        out.append(Change(key, "recovery_slow_cleared", False, f"service {svc}: its head is back", {}))
    out += _errors(rules, obs, active)
    return out


def _errors(rules: AlertRules, obs: Observed, active: dict[str, bool]) -> list[Change]:
    key, limit = f"errors:{obs.service}", rules.error_ratio_above
    if limit is None or obs.requests is None or obs.errors_5xx is None or obs.requests < rules.min_requests:
        return []  # too few requests to judge: the alert stays as it is
    ratio = obs.errors_5xx / obs.requests
    details = {"ratio": round(ratio, 4), "limit": limit, "requests": obs.requests, "errors_5xx": obs.errors_5xx}
    window = f"{rules.error_window_s:g} s"
    if ratio > limit and not active.get(key):
        return [
            Change(
                key,
                "error_ratio_high",
                True,
                f"service {obs.service}: {100 * ratio:.1f}% of its requests got a 5xx in the last {window} "
                f"({obs.errors_5xx} of {obs.requests}; limit {100 * limit:g}%)",
                details,
            )
        ]
    if ratio <= limit and active.get(key):
        return [
            Change(
                key,
                "error_ratio_cleared",
                False,
                f"service {obs.service}: 5xx back to {100 * ratio:.1f}% in the last {window}",
                details,
            )
        ]
    return []
