"""Log lines from many files made one stream: times, tracebacks, merge, --since."""

import time

import pytest

from headway.plan import log_lines


def _t(s: str) -> float:
    return time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S"))


def test_the_formats_met_give_their_time():
    ray = "INFO 2026-12-07 05:20:00,123 app_Hello abc -- GET / 200 1.2ms"
    assert log_lines.timestamp(ray) == pytest.approx(_t("2026-12-07 05:20:00") + 0.123)
    iso = "2026-12-07T05:20:01.5 headway: something"
    assert log_lines.timestamp(iso) == pytest.approx(_t("2026-12-07 05:20:01") + 0.5)
    hap = "127.0.0.1:5000 [07/Dec/2026:05:20:02.250] endpoint workers/s1 0/0/1/2/3 503 ..."
    assert log_lines.timestamp(hap) == pytest.approx(_t("2026-12-07 05:20:02") + 0.25)
    assert log_lines.timestamp("Traceback (most recent call last):") is None
    assert log_lines.timestamp("x" * 80 + " 2026-12-07 05:20:00") is None  # a date quoted far in a message
    log_lines.timestamp("2026-13-45 99:99:99 nonsense")  # an impossible date does not raise


def test_a_traceback_keeps_the_time_of_the_line_that_logged_it():
    text = (
        "ERROR 2026-12-07 05:20:00,000 replica -- Exception in __call__\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in __call__\n'
        "ZeroDivisionError: division by zero\n"
        "INFO 2026-12-07 05:20:05,000 replica -- next\n"
    )
    lines = log_lines.stamp(text, "worker-1", written_at=_t("2026-12-07 06:00:00"))
    assert [ln.t for ln in lines] == [_t("2026-12-07 05:20:00")] * 4 + [_t("2026-12-07 05:20:05")]
    assert {ln.source for ln in lines} == {"worker-1"}


def test_a_file_without_times_takes_its_modification_time():
    lines = log_lines.stamp("Local node IP: 10.0.0.2\n\nRay runtime started.\n", "head", written_at=1000.0)
    assert [(ln.t, ln.text) for ln in lines] == [(1000.0, "Local node IP: 10.0.0.2"), (1000.0, "Ray runtime started.")]


def test_streams_merged_by_time_cut_at_since_and_limited():
    a = [log_lines.Line(1.0, "w1", "a1"), log_lines.Line(3.0, "w1", "a3"), log_lines.Line(3.0, "w1", "a3b")]
    b = [log_lines.Line(2.0, "w2", "b2"), log_lines.Line(4.0, "w2", "b4")]
    assert [ln.text for ln in log_lines.merge([a, b])] == ["a1", "b2", "a3", "a3b", "b4"]
    assert [ln.text for ln in log_lines.merge([a, b], since=2.5)] == ["a3", "a3b", "b4"]
    assert [ln.text for ln in log_lines.merge([a, b], limit=2)] == ["a3b", "b4"]


def test_render_says_when_and_where():
    out = log_lines.render(log_lines.Line(_t("2026-12-07 05:20:00") + 0.5, "worker-2", "hello"))
    assert out == "2026-12-07 05:20:00.500 worker-2 | hello"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1.5d", 129600)])
def test_since_durations(text, seconds):
    assert log_lines.duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["", "ten minutes", "10 min", "-5m", "5w", "1e3"])
def test_a_bad_since_says_what_to_give(bad):
    with pytest.raises(ValueError, match="10m, 2h, 90s"):
        log_lines.duration_s(bad)
