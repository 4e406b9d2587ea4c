"""Where the router learns of replicas: an outage of discovery keeps the last view."""

from __future__ import annotations

from hybrid.discovery import StaticFileRegistry
from hybrid.router.sources import StaticSource
from tests.hybrid.discovery.samples import sample_record


def test_the_router_keeps_its_last_view_when_the_file_goes_away_and_says_so_once(tmp_path, caplog):
    path = tmp_path / "discovery.yaml"
    StaticFileRegistry(path).register(sample_record("edge-1"))
    source = StaticSource(path)
    assert [r.id for r in source.records()] == [sample_record("edge-1").id] and source.healthy
    path.unlink()
    with caplog.at_level("WARNING", logger="hybrid.router"):
        for _ in range(5):
            assert [r.id for r in source.records()] == [sample_record("edge-1").id], "the last view, kept"
    assert not source.healthy
    assert sum("keeping the last view" in r.getMessage() for r in caplog.records) == 1
    StaticFileRegistry(path).register(sample_record("edge-1"))
    assert source.records() and source.healthy
