"""Nodes' Prometheus texts merged into one, each sample labelled with where it came from."""

from prometheus_client.parser import text_string_to_metric_families

from headway.plan import metrics_federation

_HEAD = """# HELP ray_node_cpu_utilization CPU
# TYPE ray_node_cpu_utilization gauge
ray_node_cpu_utilization{NodeAddress="10.0.0.2",SessionName="s"} 12.5
# HELP ray_serve_num_router_requests_total requests
# TYPE ray_serve_num_router_requests_total counter
ray_serve_num_router_requests_total{deployment="Hello",route="/",service="theirs"} 20000001.0
"""
_WORKER = """# HELP ray_node_cpu_utilization CPU
# TYPE ray_node_cpu_utilization gauge
ray_node_cpu_utilization{NodeAddress="10.0.0.3",SessionName="s"} 40.0
# HELP ray_serve_deployment_processing_latency_ms latency
# TYPE ray_serve_deployment_processing_latency_ms histogram
ray_serve_deployment_processing_latency_ms_bucket{deployment="Hello",le="1.0"} 3.0
ray_serve_deployment_processing_latency_ms_bucket{deployment="Hello",le="+Inf"} 5.0
ray_serve_deployment_processing_latency_ms_count{deployment="Hello"} 5.0
ray_serve_deployment_processing_latency_ms_sum{deployment="Hello"} 7.5
"""


def _samples(text):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_samples_of_every_node_labelled_and_merged_by_family():
    head = {"service": "svc", "cluster": "svc", "node": "head"}
    worker = {"service": "svc", "cluster": "svc_r2", "node": "worker-1"}
    text = metrics_federation.render([(head, _HEAD), (worker, _WORKER)])
    assert text.count("# TYPE ray_node_cpu_utilization gauge") == 1
    got = _samples(text)
    cpu = {dict(k[1])["node"]: v for k, v in got.items() if k[0] == "ray_node_cpu_utilization"}
    assert cpu == {"head": 12.5, "worker-1": 40.0}
    # A node's own label named like one headway adds is kept under exported_<name>.
    ((key, value),) = [(k, v) for k, v in got.items() if k[0] == "ray_serve_num_router_requests_total"]
    assert dict(key[1])["service"] == "svc" and dict(key[1])["exported_service"] == "theirs"
    assert value == 20_000_001
    hist = {k[0]: v for k, v in got.items() if k[0].startswith("ray_serve_deployment_processing_latency_ms")}
    assert hist["ray_serve_deployment_processing_latency_ms_count"] == 5
    assert all(dict(k[1])["cluster"] == "svc_r2" for k in got if k[0].startswith("ray_serve_deployment"))


def test_a_clashing_text_that_does_not_parse_is_skipped_not_fatal():
    bad = 'x{service="a"} this is { not prometheus'
    text = metrics_federation.render(
        [({"node": "head"}, bad), ({"service": "s", "cluster": "s", "node": "w"}, _WORKER)]
    )
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names == {"ray_node_cpu_utilization", "ray_serve_deployment_processing_latency_ms"}
    assert metrics_federation.render([]) == ""


def test_each_family_once_with_its_samples_together():
    """Prometheus refuses a family whose samples are split or whose TYPE comes twice."""
    added = [{"service": "s", "cluster": "s", "node": n} for n in ("a", "b", "c")]
    text = metrics_federation.render([(lab, _WORKER) for lab in added])
    assert text.count("# TYPE ray_serve_deployment_processing_latency_ms histogram") == 1
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    fams = [ln.split("{")[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for ln in lines]
    assert fams == sorted(fams, key=fams.index)  # grouped: a family never comes back later
    assert 'ray_node_cpu_utilization{service="s",cluster="s",node="c",NodeAddress="10.0.0.3"' in text
    bare = metrics_federation.render([({"service": "s", "cluster": "s", "node": "a"}, "# TYPE up gauge\nup 1\n")])
    assert 'up{service="s",cluster="s",node="a"} 1' in bare
