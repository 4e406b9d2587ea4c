"""Starting a local Ray head on a busy small machine: one of Ray's fixed start-up waits missed is tried once more;
any other failure is not (fake ``ray.init``)."""

from __future__ import annotations

import pytest
import ray

from cloud.server import init_ray

SLOW_RAYLET = (
    "The current node timed out during startup. This could happen because some of the raylet failed to startup or "
    "the GCS has become overloaded."
)


@pytest.fixture
def calls(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    return []


def init_failing_with(errors: list[Exception], calls: list[dict]):
    def init(**kwargs):
        calls.append(kwargs)
        if errors:
            raise errors.pop(0)

    return init


@pytest.mark.parametrize("error", [Exception(SLOW_RAYLET), RuntimeError("Timed out waiting for file /tmp/ray/x")])
def test_a_head_that_missed_a_start_up_wait_is_started_once_more(monkeypatch, calls, error):
    monkeypatch.setattr(ray, "init", init_failing_with([error], calls))
    init_ray(num_cpus=2)
    assert len(calls) == 2


def test_twice_slow_or_another_failure_is_raised(monkeypatch, calls):
    monkeypatch.setattr(ray, "init", init_failing_with([Exception(SLOW_RAYLET), Exception(SLOW_RAYLET)], calls))
    with pytest.raises(Exception, match="timed out during startup"):
        init_ray(num_cpus=2)
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(ray, "init", init_failing_with([ValueError("bad num_cpus")], calls))
    with pytest.raises(ValueError):
        init_ray(num_cpus=2)
    assert len(calls) == 1
