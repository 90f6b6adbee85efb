"""Where a service's store is and with which credentials."""

import pytest
from service_records import SPEC

from headway.control import store_access
from headway.model.spec import ServiceSpec
from headway.state import db
from headway.store import storage


def test_a_spec_store_password_from_env_survives_the_deploying_shell(tmp_path, monkeypatch):
    """Repairs and the store watch resolve the password long after the CLI that had the
    variable: the value handed over at deploy is stored with the service and used."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.delenv("T_PW", raising=False)
    spec = ServiceSpec.model_validate(
        SPEC | {"ray_gcs_external_storage_config": {"address": "redis://h:1", "redis_password_env": "T_PW"}}
    )
    with pytest.raises(storage.StoreError, match="T_PW"):
        store_access.resolve_spec_storage(spec)
    db.set_secrets("s", {"T_PW": "stored"})
    assert store_access.resolve_spec_storage(spec).password == "stored"
    token = storage.given_env.set({"T_PW": "handed"})  # a deploy in flight wins
    try:
        assert store_access.resolve_spec_storage(spec).password == "handed"
    finally:
        storage.given_env.reset(token)
    monkeypatch.setenv("T_PW", "controller-env")  # the daemon's own env is never read for a caller
    assert store_access.resolve_spec_storage(spec).password == "stored"
    with pytest.raises(storage.StoreError, match="T_PW"):  # a service with nothing stored
        store_access.resolve_spec_storage(spec.model_copy(update={"name": "s2"}))
