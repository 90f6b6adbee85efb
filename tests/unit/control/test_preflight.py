"""The control plane's limit on workers per service (``HEADWAY_MAX_WORKERS``): a setting
with a default, a ceiling, and a clear refusal of an unfit value or a service above it."""

import pytest
from service_records import SPEC, record

from headway.control import changes, preflight
from headway.model.errors import InputError
from headway.model.spec import DEFAULT_MAX_WORKERS, MAX_WORKERS, ServiceSpec


def spec(*groups: dict) -> ServiceSpec:
    return ServiceSpec.model_validate(SPEC | {"compute_config": {"worker_nodes": list(groups)}})


@pytest.mark.parametrize(
    "value,limit", [(None, DEFAULT_MAX_WORKERS), ("", DEFAULT_MAX_WORKERS), (" 300 ", 300), ("1024", MAX_WORKERS)]
)
def test_the_setting_and_its_default(value, limit):
    assert preflight.max_workers({} if value is None else {"HEADWAY_MAX_WORKERS": value}) == limit


@pytest.mark.parametrize("value", ["0", "1025", "-5", "many", "3e2", "12; rm -rf /" * 5])
def test_an_unfit_setting_is_named_not_taken_for_the_default(value):
    with pytest.raises(InputError, match="HEADWAY_MAX_WORKERS=.* is not a number of workers from 1 to 1024") as err:
        preflight.max_workers({"HEADWAY_MAX_WORKERS": value})
    assert len(str(err.value)) < 200  # a hostile value is cut, not echoed whole


def test_a_service_above_the_limit_is_refused_with_what_to_do():
    big = spec({"name": "w", "count": 200}, {"name": "a", "min_nodes": 1, "max_nodes": 57})
    with pytest.raises(InputError) as err:
        preflight.check_worker_limit(big, DEFAULT_MAX_WORKERS)
    said = str(err.value)
    assert said.startswith("257 workers in all (counting each group's max_nodes); this control plane allows at most")
    assert "HEADWAY_MAX_WORKERS, up to 1024" in said and "lower the counts or split the service" in said
    preflight.check_worker_limit(big, 300)  # a raised setting takes it
    preflight.check_worker_limit(spec({"name": "w", "count": 256}), DEFAULT_MAX_WORKERS)


def test_a_scale_above_the_setting_is_refused_at_once_and_one_within_a_raised_setting_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")  # groups w: 2
    monkeypatch.delenv("HEADWAY_MAX_WORKERS", raising=False)
    with pytest.raises(InputError, match="300 workers in all; this control plane allows at most 256"):
        changes.scaled_spec(rec, "w", 300)
    monkeypatch.setenv("HEADWAY_MAX_WORKERS", "512")
    assert changes.scaled_spec(rec, "w", 300).compute_config.most_workers == 300
