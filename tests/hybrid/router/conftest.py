"""A real router in front of the session's real edge agent, found through its static discovery file."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def edge_router(edge_agent):
    from hybrid.router.server import BackgroundRouter, RouterConfig

    router = BackgroundRouter(
        RouterConfig(port=0, discovery=edge_agent.agent.config.discovery, http_port=0, poll_interval_s=0.2)
    )
    yield router
    router.stop()
