"""`headway config`: the deployed spec as a user could deploy it again, never a secret."""

from __future__ import annotations

import json

import yaml

from headway.model.spec_load import parse_spec
from headway.model.spec_show import shown


def test_secrets_are_masked_and_the_rest_is_what_the_user_wrote():
    spec = parse_spec(
        {
            "name": "s",
            "requirements": ["vaderSentiment==3.3.2"],
            "env_vars": {"DB_PASSWORD": "hunter2", "api_key": "k-123", "MODE": "fast"},
            "ray_gcs_external_storage_config": {
                "address": "redis://app:s3cr%40t@10.0.0.5:6380",
                "redis_password_file": "/root/.headway/services/s/files/pw",
            },
            "applications": [{"import_path": "m:a", "runtime_env": {"env_vars": {"HF_TOKEN": "hf_x", "N": "1"}}}],
        },
        "t",
    )
    out = shown(spec)
    text = json.dumps(out)
    for secret in ("hunter2", "k-123", "s3cr", "hf_x", "/root/.headway"):
        assert secret not in text
    assert out["env_vars"] == {"DB_PASSWORD": "***", "api_key": "***", "MODE": "fast"}
    assert out["ray_gcs_external_storage_config"]["address"] == "redis://app:***@10.0.0.5:6380"
    assert out["ray_gcs_external_storage_config"]["redis_password_file"] == "(uploaded at deploy)"
    assert out["applications"][0]["runtime_env"]["env_vars"] == {"HF_TOKEN": "***", "N": "1"}
    assert out["requirements"] == ["vaderSentiment==3.3.2"]
    assert "compute_config" not in out  # defaults left out: what the user wrote


def test_what_is_shown_deploys_again_to_the_same_spec():
    spec = parse_spec(
        {
            "name": "s",
            "working_dir": "/srv/app",
            "applications": [
                {"name": "a", "import_path": "m:a", "route_prefix": "/a", "args": {"x": 1}},
                {
                    "name": "b",
                    "import_path": "m:b",
                    "route_prefix": "/b",
                    "deployments": [{"name": "B", "num_replicas": 3}],
                },
            ],
            "compute_config": {"worker_nodes": [{"name": "w", "count": 3, "resources": {"CPU": 2}}]},
        },
        "t",
    )
    again = parse_spec(yaml.safe_load(yaml.safe_dump(shown(spec))), "t")
    assert again == spec
