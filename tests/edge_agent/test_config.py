"""The edge agent's settings, checked as they are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_agent.config import EdgeAgentSettings


def test_discovery_is_checked_by_the_one_spec_parser():
    assert EdgeAgentSettings(discovery="consul:127.0.0.1:8500").discovery == "consul:127.0.0.1:8500"
    assert EdgeAgentSettings(discovery="none").discovery == "none"
    with pytest.raises(ValidationError, match="use 'static:FILE', 'consul'"):
        EdgeAgentSettings(discovery="consul:")
