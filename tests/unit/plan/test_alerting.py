"""Alerts raised and cleared once each: a head lost and back, a slow recovery, 5xx ratio;
and the ``alerts:`` block's bad input refused with what is wrong."""

import pytest

from headway.model.alert_rules import AlertRules, AlertsConfigError, load, names_ssh
from headway.plan.alerting import Observed, decide

RULES = AlertRules(webhook="https://hooks.example.com/x", recovery_longer_than_s=30, error_ratio_above=0.1)


def _run(observations, rules=RULES):
    """Feed observations in turn, keeping the alerts' state as the caller does."""
    active, kinds = {}, []
    for now, obs in observations:
        for c in decide(rules, obs, active, now):
            active[c.key] = c.raised
            kinds.append(c.kind)
    return kinds


def test_a_head_lost_slow_and_back_alerts_once_each():
    lost = Observed("svc", "HEAD_RECOVERING", recovering_since=100.0)
    back = Observed("svc", "RUNNING", last_downtime_s=42.5)
    kinds = _run([(101, lost), (110, lost), (131, lost), (140, lost), (145, back), (150, back)])
    assert kinds == ["head_failure", "recovery_slow", "head_recovered", "recovery_slow_cleared"]
    msg = decide(RULES, back, {"head:svc": True}, 145)[0].message
    assert "svc" in msg and "42.5 s" in msg


def test_a_quick_recovery_is_not_slow_and_rules_can_be_off():
    lost = Observed("svc", "HEAD_RECOVERING", recovering_since=100.0)
    back = Observed("svc", "RUNNING", last_downtime_s=9.0)
    assert _run([(105, lost), (109, back)]) == ["head_failure", "head_recovered"]
    quiet = AlertRules(head_failure=False, recovery_longer_than_s=None, error_ratio_above=None)
    assert _run([(105, lost), (500, lost), (501, back)], quiet) == []


def test_the_5xx_ratio_needs_enough_requests_and_clears_once():
    def obs(req, err):
        return Observed("svc", "RUNNING", requests=req, errors_5xx=err)

    kinds = _run([(1, obs(10, 9)), (2, obs(100, 20)), (3, obs(100, 30)), (4, obs(5, 0)), (5, obs(100, 5))])
    assert kinds == ["error_ratio_high", "error_ratio_cleared"]  # 10 requests: too few to judge
    high = decide(RULES, obs(100, 20), {}, 0)[0]
    assert high.details["ratio"] == 0.2 and "20.0%" in high.message and "20 of 100" in high.message
    assert _run([(1, Observed("svc", "RUNNING"))]) == []  # no reading: nothing judged


def test_the_alerts_block(tmp_path):
    f = tmp_path / "cloud.yaml"
    f.write_text("alerts:\n  webhook: http://127.0.0.1:9/hook/\n  recovery_longer_than_s: 5\n")
    rules = load(str(f))
    assert rules.webhook == "http://127.0.0.1:9/hook" and rules.recovery_longer_than_s == 5
    assert rules.head_failure and rules.error_ratio_above == 0.05 and rules.store_percent == 80
    assert not names_ssh(str(f))
    f.write_text("ssh: {}\nalerts: null\n")
    assert load(str(f)) is None and names_ssh(str(f))


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ("webhook: ftp://x/y", "alerts.webhook: webhook must be an http:// or https:// URL"),
        ("webhook: not a url", "alerts.webhook"),
        ("error_ratio_above: 5", "alerts.error_ratio_above"),
        ("recovery_longer_than_s: -1", "alerts.recovery_longer_than_s"),
        ("store_percent: 0", "alerts.store_percent"),
        ("slack: yes", "alerts.slack: Extra inputs are not permitted"),
        ("[1, 2]", "alerts: expected a mapping"),
    ],
)
def test_bad_alerts_say_what_is_wrong(tmp_path, block, says):
    f = tmp_path / "cloud.yaml"
    f.write_text("alerts: " + block + "\n" if block.startswith("[") else "alerts:\n  " + block + "\n")
    with pytest.raises(AlertsConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load(str(f))
