"""Placement: replicas that could not serve without the head, in the spec and as observed."""

from headway.model.spec_load import parse_spec
from headway.plan import placement


def spec(**kw):
    data = {
        "name": "s",
        "applications": [{"import_path": "m:a", "deployments": kw.pop("deployments", [])}],
        "compute_config": {"worker_nodes": [{"name": "w", "count": kw.pop("workers", 2)}]},
        "ray_gcs_external_storage_config": {"address": "redis://h:1"},
    }
    return parse_spec(data, "t.yaml", has_default_store=False)


def test_spec_placement_ok_when_spread():
    assert (
        placement.spec_problems(spec(deployments=[{"name": "D", "num_replicas": 2, "max_replicas_per_node": 1}])) == []
    )
    assert placement.spec_problems(spec()) == []  # settings in code: judged once running


def test_spec_placement_problems_name_the_field_and_the_fix():
    (p,) = placement.spec_problems(spec(deployments=[{"name": "D", "num_replicas": 1}]))
    assert "applications.default.deployments.D" in p and "max_replicas_per_node: 1" in p
    (p,) = placement.spec_problems(spec(deployments=[{"name": "D", "num_replicas": 2, "max_replicas_per_node": 2}]))
    assert "sit on one worker" in p
    (p,) = placement.spec_problems(spec(workers=1))
    assert "1 worker node" in p


def test_observed_placement():
    spread = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["a", "b"]}}}
    assert placement.observed_problems(spread, "h") == []
    packed = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["a"]}}}
    (p,) = placement.observed_problems(packed, "h")
    assert "app/D" in p and "1 worker" in p
    on_head = {"app": {"D": {"running": 2, "target": 2, "node_ids": ["h", "a"]}}}
    problems = placement.observed_problems(on_head, "h")
    assert any("head node" in p for p in problems)
