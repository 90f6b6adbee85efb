"""Changes of a service that need no Ray: scaling one group of its spec, and the refusals
that come before anything starts."""

import pytest
from service_records import SPEC, record

from headway.control import changes
from headway.control.context import Context
from headway.model import errors
from headway.model.spec import ServiceSpec
from headway.state import records


def test_scaled_spec_changes_one_group():
    spec = changes.scaled_spec(record("RUNNING"), "w", 3)
    assert [g.count for g in spec.compute_config.worker_nodes] == [3]


def test_scaled_spec_unknown_group_names_the_known_ones():
    with pytest.raises(changes.InputError, match="no worker group 'x'; its groups: w"):
        changes.scaled_spec(record("RUNNING"), "x", 3)


def test_strict_refuses_a_spec_whose_replicas_need_the_head_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    lone = ServiceSpec.model_validate(
        SPEC | {"applications": [{"import_path": "m:a", "deployments": [{"name": "D", "num_replicas": 1}]}]}
    )
    said = []
    with pytest.raises(errors.PlacementError, match="refused \\(--strict\\), nothing was started"):
        changes.deploy(Context(None, providers=_no_provider), lone, said.append, strict=True)
    assert records.load("s") is None and not any("warning" in s for s in said)


def test_a_rollback_names_the_service_it_does_not_know(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    with pytest.raises(errors.InputError, match="no service named nope; 'headway list' shows the services"):
        changes.rollback(Context(None, providers=_no_provider), "nope", None)


def _no_provider(crec, rec=None):
    raise AssertionError("a refused change must not reach a provider")
