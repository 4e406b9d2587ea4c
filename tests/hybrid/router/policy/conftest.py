from __future__ import annotations

import random

import pytest

from hybrid.router.ledger import CallLedger
from hybrid.router.policy.ejection import OutlierDetector
from hybrid.router.policy.hotness import HotnessTracker
from hybrid.router.policy.policy import RoutingPolicy
from tests.hybrid.router.policy.fakes import FakeClock, replica


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ledger():
    return CallLedger()


@pytest.fixture
def policy(clock, ledger):
    return RoutingPolicy(
        HotnessTracker(clock=clock), OutlierDetector(clock=clock), random.Random(1), clock, ledger=ledger
    )


@pytest.fixture
def fleet():
    return [replica("edge-1", "edge", rtt=5), replica("priv-1", "private", rtt=40), replica("pub-1", "public", rtt=80)]
