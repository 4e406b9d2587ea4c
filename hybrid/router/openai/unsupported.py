"""OpenAI request fields this server knows but does not implement.

Each is accepted only at a value that asks for nothing (``n: 1``, ``logprobs: false``,
``response_format: {"type": "text"}``, ...): any other value is refused by name with what to change,
never ignored, so a client that relies on it learns at once that it is not served here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unimplemented:
    """A field that is not implemented: ``asks_nothing`` tells the values that are harmless to accept."""

    asks_nothing: Callable[[Any], bool]
    fix: str


def _null(value: Any) -> bool:
    return value is None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict) and not value)


def _null_or(*inert: Any) -> Callable[[Any], bool]:
    # Compared with their types too: in Python True == 1 and False == 0, in JSON they differ.
    def asks_nothing(value: Any) -> bool:
        return value is None or any(type(value) is type(v) and value == v for v in inert)

    return asks_nothing


def _zero(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)


_NO_TOOLS = "the models here do not call tools"
_NO_LOGPROBS = "log probabilities are not returned"
_ONE_CHOICE = "remove it or set it to 1 (one choice per request is served: send several requests instead)"
_NO_PENALTY = "remove it or set it to 0 (repetition penalties are not applied)"
_TEXT_ONLY = "only text is served"

_SHARED = {
    "n": Unimplemented(_null_or(1), _ONE_CHOICE),
    "presence_penalty": Unimplemented(_zero, _NO_PENALTY),
    "frequency_penalty": Unimplemented(_zero, _NO_PENALTY),
    "logit_bias": Unimplemented(_empty, "remove it (token biases are not applied)"),
}

CHAT: Mapping[str, Unimplemented] = _SHARED | {
    "tools": Unimplemented(_empty, f"remove it ({_NO_TOOLS})"),
    "tool_choice": Unimplemented(_null_or("none"), f'remove it or set it to "none" ({_NO_TOOLS})'),
    "parallel_tool_calls": Unimplemented(_null, f"remove it ({_NO_TOOLS})"),
    "functions": Unimplemented(_empty, f"remove it ({_NO_TOOLS})"),
    "function_call": Unimplemented(_null_or("none"), f'remove it or set it to "none" ({_NO_TOOLS})'),
    "response_format": Unimplemented(
        _null_or({"type": "text"}),
        'remove it or set it to {"type": "text"} (answers are not constrained to JSON or to a schema)',
    ),
    "logprobs": Unimplemented(_null_or(False), f"remove it or set it to false ({_NO_LOGPROBS})"),
    "top_logprobs": Unimplemented(_null_or(0), f"remove it ({_NO_LOGPROBS})"),
    "audio": Unimplemented(_null, f"remove it ({_TEXT_ONLY})"),
    "modalities": Unimplemented(_null_or(["text"]), f'remove it or set it to ["text"] ({_TEXT_ONLY})'),
    "prediction": Unimplemented(_null, "remove it (predicted outputs are not used)"),
    "store": Unimplemented(_null_or(False), "remove it or set it to false (answers are not stored)"),
    "metadata": Unimplemented(_empty, "remove it (answers are not stored, so there is nothing to tag)"),
    "service_tier": Unimplemented(
        _null_or("auto", "default"),
        'remove it or set it to "auto" (the x-hybrid-priority header chooses how a request is served)',
    ),
    "reasoning_effort": Unimplemented(_null, "remove it (the models here have no separate reasoning)"),
    "verbosity": Unimplemented(_null, "remove it (answers are as long as max_tokens and stop allow)"),
    "web_search_options": Unimplemented(_null, "remove it (there is no web search)"),
}

COMPLETION: Mapping[str, Unimplemented] = _SHARED | {
    "best_of": Unimplemented(_null_or(1), _ONE_CHOICE),
    "logprobs": Unimplemented(_null, f"remove it ({_NO_LOGPROBS})"),
    "echo": Unimplemented(_null_or(False), "remove it or set it to false (the prompt is not echoed)"),
    "suffix": Unimplemented(_null_or(""), "remove it (text is only appended, never inserted)"),
}

MESSAGE: Mapping[str, Unimplemented] = {
    "name": Unimplemented(_null, "remove it (participant names are not passed to the model)"),
    "tool_calls": Unimplemented(_empty, f"remove it ({_NO_TOOLS})"),
    "tool_call_id": Unimplemented(_null, f"remove it ({_NO_TOOLS})"),
    "function_call": Unimplemented(_null, f"remove it ({_NO_TOOLS})"),
    "refusal": Unimplemented(_null, "remove it (put the text in content)"),
    "audio": Unimplemented(_null, f"remove it ({_TEXT_ONLY})"),
    "annotations": Unimplemented(_empty, "remove it (put the text in content)"),
}


def refuse_unimplemented(
    fields: dict[str, Any], table: Mapping[str, Unimplemented], where: str = ""
) -> list[tuple[str, str]]:
    """Drops the fields of ``table`` that ask for nothing; returns (field, refusal) for each that asks for more."""
    refusals = []
    for name in [n for n in fields if n in table]:
        if table[name].asks_nothing(fields[name]):
            del fields[name]
        else:
            param = where + name
            refusals.append((param, f"{param} is not supported by this server: {table[name].fix}"))
    return refusals
