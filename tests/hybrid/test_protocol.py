"""Request validation in the transport-free data plane."""

from __future__ import annotations

import pytest

from hybrid.client import build_request
from hybrid.errors import InvalidRequestError
from hybrid.protocol import Priority, request_from_proto


def test_defaults_are_greedy_interactive_with_an_id():
    request = request_from_proto(build_request(prompt="hi"))
    assert request.temperature == 0.0 and request.top_p == 1.0
    assert request.max_new_tokens == 128
    assert request.priority == Priority.INTERACTIVE
    assert len(request.request_id) == 32
    assert not request.require_full_precision


def test_fields_are_carried_over():
    request = request_from_proto(
        build_request(
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            max_new_tokens=7,
            temperature=0.5,
            top_p=0.9,
            seed=3,
            stop=["\n"],
            priority="realtime",
            affinity_key="user-1",
            client_region="eu",
            full_precision=True,
            request_id="r1",
        ),
        deadline=12.5,
    )
    assert request.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (request.max_new_tokens, request.seed, request.stop) == (7, 3, ["\n"])
    assert request.temperature == pytest.approx(0.5) and request.top_p == pytest.approx(0.9)
    assert request.priority == Priority.REALTIME and request.require_full_precision
    assert (request.affinity_key, request.client_region, request.request_id, request.deadline) == (
        "user-1",
        "eu",
        "r1",
        12.5,
    )


def test_explicit_zero_temperature_is_greedy_not_unset():
    assert request_from_proto(build_request(prompt="hi", temperature=0.0)).temperature == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prompt=""), "give exactly one of prompt or messages (the prompt is empty)"),
        (dict(messages=[{"role": "user", "content": "  "}]), "every message is empty"),
        (dict(prompt="hi", stop=[""]), "stop takes at most 8 non-empty strings"),
        (dict(prompt="hi", stop=["a"] * 9), "stop takes at most 8 non-empty strings"),
        (dict(prompt="hi", temperature=float("inf")), "temperature must be a finite number"),
        (dict(prompt="hi", temperature=2.5), "temperature must be in [0.0, 2.0], got 2.5"),
        (dict(prompt="hi", top_p=-0.1), "top_p must be in (0.0, 1.0]"),
        (dict(prompt="hi", max_new_tokens=4097), "max_new_tokens must be between 1 and 4096"),
    ],
)
def test_invalid_requests_say_what_to_change(kwargs, message):
    with pytest.raises(InvalidRequestError) as failure:
        request_from_proto(build_request(**kwargs))
    assert message in failure.value.message


def test_unknown_min_precision_is_refused():
    message = build_request(prompt="hi")
    message.min_precision = 7
    with pytest.raises(InvalidRequestError, match="min_precision 7 is unknown"):
        request_from_proto(message)


@pytest.mark.parametrize(
    ("field", "limit"),
    [("request_id", 128), ("affinity_key", 256), ("client_region", 64), ("model", 256)],
)
def test_strings_a_request_carries_are_bounded(field, limit):
    request_from_proto(build_request(prompt="hi", **{field: "x" * limit}))
    with pytest.raises(InvalidRequestError, match=f"{field} is {limit + 1} characters long; the limit is {limit}"):
        request_from_proto(build_request(prompt="hi", **{field: "x" * (limit + 1)}))


def test_a_megabyte_request_id_is_refused_without_echoing_it():
    with pytest.raises(InvalidRequestError) as refused:
        request_from_proto(build_request(prompt="hi", request_id="r" * 1_000_000))
    assert len(refused.value.message) < 200


def test_long_stop_strings_are_refused():
    with pytest.raises(InvalidRequestError, match=r"stop\[1\] is 257 characters long"):
        request_from_proto(build_request(prompt="hi", stop=["\n", "s" * 257]))


def test_priority_names_parse_either_case_and_refuse_others():
    assert Priority.names() == ["realtime", "interactive", "batch"]
    assert [Priority.parse(name) for name in ("realtime", "INTERACTIVE", "Batch")] == list(Priority)
    with pytest.raises(ValueError, match="unknown priority 'urgent': use realtime, interactive, batch"):
        Priority.parse("urgent")


def test_the_client_sends_the_priority_it_is_given_by_name():
    for priority in Priority:
        assert build_request(prompt="hi", priority=priority.name.lower()).priority == priority
        assert request_from_proto(build_request(prompt="hi", priority=priority.name)).priority == priority
