"""Spec parsing: valid files load; every invalid case names the field and the fix."""

from pathlib import Path

import pytest
import yaml

from headway.model.spec import SpecError
from headway.model.spec_load import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[3]

BASE = {
    "name": "svc",
    "applications": [{"name": "app", "import_path": "mod:app", "route_prefix": "/"}],
}


def _with(**kw):
    d = yaml.safe_load(yaml.safe_dump(BASE))
    d.update(kw)
    return d


def _problems(data, **kw) -> list[str]:
    with pytest.raises(SpecError) as ei:
        parse_spec(data, "t.yaml", **kw)
    return ei.value.problems


def test_example_service_loads():
    spec = load_spec(ROOT / "examples/hello/service.yaml")
    assert spec.name == "hello"
    assert spec.worker_count == 2
    assert spec.gcs_ft is True
    assert Path(spec.working_dir).is_dir()  # resolved relative to the YAML


def test_defaults():
    spec = parse_spec(BASE)
    assert spec.gcs_ft
    assert spec.ray_gcs_external_storage_config.address is None
    assert spec.query_auth_token_enabled is True
    assert spec.worker_count == 2


@pytest.mark.parametrize("key", ["enable", "enabled"])
def test_enable_aliases(key):
    spec = parse_spec(_with(ray_gcs_external_storage_config={key: False}))
    assert spec.gcs_ft is False


@pytest.mark.parametrize("key", ["redis_certificate_path", "certificate_path"])
def test_certificate_aliases(key):
    spec = parse_spec(_with(ray_gcs_external_storage_config={"address": "rediss://h:1", key: "/ca.pem"}))
    assert spec.ray_gcs_external_storage_config.redis_certificate_path == "/ca.pem"


def test_managed_platform_fields_accepted():
    spec = parse_spec(
        _with(
            env_vars={"A": 1, "B": "x"},
            working_dir="s3://bucket/x.zip",
            query_auth_token_enabled=False,
            http_options={"request_timeout_s": 30},
            compute_config={
                "head_node": {"instance_type": "m5.large", "resources": {}},
                "worker_nodes": [{"name": "cpu", "instance_type": "m5.large", "resources": {"CPU": 2}, "count": 3}],
            },
        )
    )
    assert spec.env_vars == {"A": "1", "B": "x"}
    assert spec.worker_count == 3


def test_unknown_top_level_field_is_named():
    problems = _problems(_with(replicas=3))
    assert problems == ["replicas: unknown field; remove it or check its spelling"]


def test_unknown_nested_field_is_named_with_path():
    data = _with(compute_config={"worker_nodes": [{"name": "w", "cout": 2}]})
    problems = _problems(data)
    assert "compute_config.worker_nodes[0].cout: unknown field" in problems[0]


def test_missing_name():
    d = _with()
    del d["name"]
    assert _problems(d) == ["name: required field is missing; add it"]


def test_missing_applications():
    d = _with()
    del d["applications"]
    assert "applications: required field is missing" in _problems(d)[0]


@pytest.mark.parametrize("bad", ["Hello", "hello_world", "-x", "x-", "a" * 41, ""])
def test_bad_service_name(bad):
    p = _problems(_with(name=bad))
    assert p[0].startswith("name: ")
    assert "lowercase letters, digits and dashes" in p[0]


def test_bad_import_path():
    p = _problems(_with(applications=[{"name": "a", "import_path": "module.attr"}]))
    assert p[0].startswith("applications[0].import_path:")
    assert "module:attribute" in p[0]


def test_route_prefix_needs_slash():
    p = _problems(_with(applications=[{"name": "a", "import_path": "m:a", "route_prefix": "api"}]))
    assert "applications[0].route_prefix" in p[0] and "'/api'" in p[0]


def test_duplicate_app_names():
    apps = [
        {"name": "a", "import_path": "m:a", "route_prefix": "/1"},
        {"name": "a", "import_path": "m:b", "route_prefix": "/2"},
    ]
    assert "repeated: a" in _problems(_with(applications=apps))[0]


def test_duplicate_route_prefix():
    apps = [{"name": "a", "import_path": "m:a"}, {"name": "b", "import_path": "m:b"}]
    assert "route_prefix must be unique" in _problems(_with(applications=apps))[0]


def test_empty_applications():
    assert "at least one application" in _problems(_with(applications=[]))[0]


def test_head_cpus_refused():
    p = _problems(_with(compute_config={"head_node": {"resources": {"CPU": 2}}}))
    assert p[0].startswith("compute_config.head_node.resources:")
    assert "CPU: 0" in p[0]


def test_negative_count():
    p = _problems(_with(compute_config={"worker_nodes": [{"name": "w", "count": -1}]}))
    assert p[0].startswith("compute_config.worker_nodes[0].count:")


def test_count_not_a_number():
    p = _problems(_with(compute_config={"worker_nodes": [{"name": "w", "count": "two"}]}))
    assert "compute_config.worker_nodes[0].count" in p[0] and "whole number" in p[0]


def test_duplicate_worker_groups():
    groups = [{"name": "w"}, {"name": "w"}]
    assert "used twice" in _problems(_with(compute_config={"worker_nodes": groups}))[0]


def test_enable_not_bool():
    p = _problems(_with(ray_gcs_external_storage_config={"enable": "maybe"}))
    assert p[0].startswith("ray_gcs_external_storage_config.enable")
    assert "true or false" in p[0]


def test_address_required_without_cloud_store():
    p = _problems(BASE, has_default_store=False)
    assert p[0].startswith("ray_gcs_external_storage_config.address: required")
    assert "headway cloud setup" in p[0]


def test_address_not_required_when_ft_disabled():
    spec = parse_spec(_with(ray_gcs_external_storage_config={"enable": False}), has_default_store=False)
    assert not spec.gcs_ft


def test_two_password_sources_refused():
    p = _problems(
        _with(
            ray_gcs_external_storage_config={
                "address": "h:1",
                "redis_password_env": "X",
                "redis_password_file": "/f",
            }
        )
    )
    assert "either redis_password_env or redis_password_file" in p[0]


def test_several_problems_reported_at_once():
    d = _with(name="Bad Name", extra=1)
    assert len(_problems(d)) == 2


def test_not_a_mapping():
    assert "expected a YAML mapping" in _problems(["a", "b"])[0]


def test_malformed_yaml_names_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\napplications:\n  - name: [a\n")
    with pytest.raises(SpecError) as ei:
        load_spec(f)
    assert "not valid YAML at line" in ei.value.problems[0]


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as ei:
        load_spec(tmp_path / "nope.yaml")
    assert "cannot read the file" in ei.value.problems[0]


def test_working_dir_must_exist(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_with(working_dir="missing")))
    with pytest.raises(SpecError) as ei:
        load_spec(f)
    assert ei.value.problems[0].startswith("working_dir: folder")
