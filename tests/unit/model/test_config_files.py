"""Existing config files: a `serve build` output deploys unchanged with a name, honoured
where it makes sense and noted where headway decides; the managed platforms' fields say
what they mean here; a misspelt field gets a suggestion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from headway.cluster import serve
from headway.model.spec import SpecError
from headway.model.spec_load import load_spec_text, notes, parse_spec

BUILT = (Path(__file__).parents[1] / "data" / "serve_build.yaml").read_text()  # `serve build hello:app`, Ray 2.60


def test_a_serve_build_config_needs_only_a_name():
    with pytest.raises(SpecError, match="name: required field is missing"):
        load_spec_text(BUILT, "built.yaml", None)
    spec = load_spec_text(BUILT, "built.yaml", None, name="hello")
    assert spec.name == "hello" and [a.import_path for a in spec.applications] == ["hello:app"]
    assert spec.applications[0].deployments[0]["max_replicas_per_node"] == 1
    said = notes(spec)
    assert len(said) == 1 and said[0].startswith("http_options host/port (0.0.0.0:8000): headway decides")
    config = serve.serve_config(spec, None, 8000)
    assert config["logging_config"]["log_level"] == "INFO"  # honoured: passed on to Serve
    assert config["proxy_location"] == "EveryNode" and config["http_options"]["host"] == "0.0.0.0"
    assert config["applications"][0]["deployments"] == spec.applications[0].deployments


def test_a_serve_build_port_and_address_of_choice_are_the_endpoints_and_its_defaults_are_not():
    """``serve build`` writes Serve's defaults (0.0.0.0:8000) into every file: taken, every
    such service would ask for port 8000 on every address. A port or an address chosen in
    ``http_options`` is the endpoint's, unless the ``endpoint:`` block gives its own."""
    built = yaml.safe_load(BUILT)
    assert load_spec_text(BUILT, "built.yaml", None, name="hello").endpoint.port is None
    chosen = built | {"name": "hello", "http_options": {"host": "10.1.2.3", "port": 8123}}
    spec = parse_spec(chosen, "x")
    assert (spec.endpoint.bind, spec.endpoint.port) == ("10.1.2.3", 8123)
    assert "clients use the service's endpoint, on 10.1.2.3:8123" in notes(spec)[0]
    own = parse_spec(chosen | {"endpoint": {"port": 8443, "bind": "127.0.0.1"}}, "x")
    assert (own.endpoint.bind, own.endpoint.port) == ("127.0.0.1", 8443)
    named = parse_spec(built | {"name": "hello", "http_options": {"host": "localhost"}}, "x")
    assert named.endpoint.bind is None  # a name: Serve's, not an address to bind


def test_a_name_that_disagrees_is_said():
    with pytest.raises(SpecError, match="the file names service 'a', but 'b' was asked for"):
        parse_spec(yaml.safe_load(BUILT) | {"name": "a"}, "x", name="b")


@pytest.mark.parametrize(
    "overrides,note",
    [
        ({"proxy_location": "HeadOnly"}, "proxy_location HeadOnly: headway runs a Serve proxy on every node"),
        (
            {"grpc_options": {"port": 9000, "grpc_servicer_functions": ["m.add_GreeterServicer_to_server"]}},
            "grpc_options.port (9000): headway decides where the proxies listen; gRPC clients use the service",
        ),
    ],
)
def test_what_headway_decides_is_noted_not_refused(overrides, note):
    spec = parse_spec(yaml.safe_load(BUILT) | overrides, "x", name="hello")
    assert any(n.startswith(note) for n in notes(spec))


BASE = {"name": "s", "applications": [{"import_path": "m:a"}]}


@pytest.mark.parametrize(
    "data,message",
    [
        (
            BASE | {"compute_config": {"worker_nodes": [{"name": "w", "min_nodes": 1}]}},
            "compute_config.worker_nodes[0]: group 'w' has min_nodes but no max_nodes; say how far it may grow",
        ),
        (
            BASE
            | {
                "applications": [
                    {
                        "import_path": "m:a",
                        "deployments": [{"name": "A", "num_replicas": 2, "autoscaling_config": {"max_replicas": 3}}],
                    }
                ]
            },
            "applications[0].deployments: deployment A: num_replicas and autoscaling_config together",
        ),
        (
            BASE
            | {
                "applications": [
                    {
                        "import_path": "m:a",
                        "deployments": [{"name": "A", "autoscaling_config": {"min_replicas": 5, "max_replicas": 2}}],
                    }
                ]
            },
            "max_replicas 2 must be at least 1 and at least min_replicas 5",
        ),
        (
            BASE | {"compute_config": {"worker_nodes": [{"name": "w", "min_nodes": 0, "max_nodes": 2}]}},
            "no worker node to start with, and the head holds no replicas",
        ),
        (
            BASE | {"compute_config": {"head_node": {"max_nodes": 2}}},
            "compute_config.head_node.max_nodes: the head is one node and never scaled; give max_nodes to a group",
        ),
        (
            BASE | {"compute_config": {"worker_nodes": [{"name": "w", "min_nodes": 3, "max_nodes": 2}]}},
            "min_nodes 3 is above max_nodes 2",
        ),
        (
            BASE | {"compute_config": {"worker_nodes": [{"name": "w", "count": 2, "max_nodes": 4}]}},
            "group 'w' has count and min_nodes/max_nodes",
        ),
        (
            BASE | {"compute_config": {"worker_nodes": [{"name": "w", "max_nodes": 1000}, {"name": "v", "count": 25}]}},
            "1025 workers in all (counting each group's max_nodes); one service has at most 1024",
        ),
        (BASE | {"image_uri": "docker.io/me/app:1"}, "image_uri: headway runs Ray from each host's Python environment"),
        (BASE | {"requirements": ["torch @ https://x/t.whl"]}, "a URL or path is not installed by headway"),
        (BASE | {"requirements": ["--index-url=http://evil/"]}, "pip options are not taken from a service YAML"),
        (BASE | {"requirements": "reqs.txt"}, "'reqs.txt' is a file on your machine"),
        (
            BASE | {"applications": [{"import_path": "m:a", "runtime_env": {"conda": ["x"]}}]},
            "runtime_env.conda: headway does not run conda",
        ),
        (BASE | {"env_var": {"A": "1"}}, "env_var: unknown field; did you mean env_vars?"),
        (BASE | {"working_directory": "app"}, "working_directory: unknown field; did you mean working_dir?"),
        (BASE | {"colour": "red"}, "colour: unknown field; remove it or check its spelling"),
    ],
)
def test_managed_platform_fields_and_typos_say_what_to_do(data, message):
    with pytest.raises(SpecError) as ei:
        parse_spec(data, "t.yaml")
    assert message in str(ei.value)
