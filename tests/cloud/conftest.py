"""Cloud tier fixtures: the engine in this process, and one local Ray cluster for the whole session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cloud_engine(resolved_model):
    from cloud.config import ReplicaSettings
    from cloud.engine import build_engine

    engine = build_engine(
        ReplicaSettings(region="test-cloud-region", device="cpu", max_batch_size=8), replica_id="test-cloud"
    )
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def private_app(serve_cluster) -> str:
    return serve_cluster.deploy("private", tier="private")
