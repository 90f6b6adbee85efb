"""A service record as the control code's unit tests start from (no Ray, no store)."""

from headway.state.records import ServiceRecord

SPEC = {
    "name": "s",
    "applications": [{"import_path": "m:a"}],
    "compute_config": {"worker_nodes": [{"name": "w", "count": 2}]},
    "ray_gcs_external_storage_config": {"address": "redis://h:1"},
}


def record(state: str, gcs_ft: bool = True) -> ServiceRecord:
    rec = ServiceRecord(
        name="s",
        cluster_id="c",
        mode="netns",
        state=state,
        gcs_ft=gcs_ft,
        spec=SPEC,
        head_ip="10.0.0.2",
        gcs_port=6379,
        dashboard_port=8265,
        serve_port=8000,
    )
    return rec
