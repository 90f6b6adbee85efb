"""The history file: points kept in order, pruned by age, forgotten with the service."""

from headway.state import series_store


def test_points_in_order_pruned_by_age_and_forgotten(tmp_path):
    for t in range(0, 100, 10):
        series_store.append("a", float(t), {"requests": t}, {"t": t}, keep_s=45, home=tmp_path)
    series_store.append("b", 95.0, None, {"t": 95}, keep_s=45, home=tmp_path)
    assert [p["t"] for p in series_store.points("a", 0, home=tmp_path)] == [50, 60, 70, 80, 90]
    assert [p["t"] for p in series_store.points("a", 75, home=tmp_path)] == [80, 90]
    assert series_store.last_reading("a", home=tmp_path) == (90.0, {"requests": 90})
    assert series_store.last_reading("b", home=tmp_path) == (95.0, None)
    assert series_store.size_bytes("a", home=tmp_path) > 0
    series_store.forget("a", home=tmp_path)
    assert series_store.points("a", 0, home=tmp_path) == [] and series_store.last_reading("a", home=tmp_path) is None
    assert len(series_store.points("b", 0, home=tmp_path)) == 1
    assert (series_store.path(tmp_path).stat().st_mode & 0o777) == 0o600
