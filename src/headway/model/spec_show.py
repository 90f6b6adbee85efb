"""A deployed spec as ``headway config`` shows it: the YAML a user could deploy again,
with every secret masked (a password in the store address, env_vars whose name says
secret) and the control host's own copies of uploaded files named as uploads."""

from __future__ import annotations

import re
from typing import Any

from headway.model.spec import GCS_FILE_FIELDS, ServiceSpec
from headway.model.store_address import StoreError, parse_address

MASK = "***"
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|AUTH)", re.IGNORECASE)


def _mask_env(env: dict[str, str]) -> dict[str, str]:
    return {k: MASK if SECRET_NAME.search(k) else v for k, v in env.items()}


def shown(spec: ServiceSpec) -> dict[str, Any]:
    """The spec as a mapping, secrets masked, defaults left out (what the user wrote)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    gcs = data.get("ray_gcs_external_storage_config", {})
    if gcs.get("address"):
        try:
            gcs["address"] = parse_address(gcs["address"]).masked()
        except StoreError:
            gcs["address"] = MASK
    for field in GCS_FILE_FIELDS:
        if gcs.get(field):
            gcs[field] = "(uploaded at deploy)"
    tls = data.get("endpoint", {}).get("tls")
    if tls:
        data["endpoint"]["tls"] = dict.fromkeys(tls, "(uploaded at deploy)")
    if data.get("env_vars"):
        data["env_vars"] = _mask_env(data["env_vars"])
    for app in data.get("applications", []):
        env = app.get("runtime_env", {})
        if env.get("env_vars"):
            env["env_vars"] = _mask_env(env["env_vars"])
    return data
