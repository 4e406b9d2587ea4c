"""Request bodies: the OpenAI fields this server honours, and nothing else.

A field is either served or refused. The models forbid unknown fields; the OpenAI fields that are
known but not implemented (``hybrid.router.openai.unsupported``) pass only at a value that asks for
nothing. ``parse_request`` turns any problem into one InvalidFieldError that says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import pydantic_core
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from hybrid import constants
from hybrid.router.openai import unsupported
from hybrid.router.openai.errors import InvalidFieldError

# ``user`` becomes the routing affinity key: an identifier, not a document.
MAX_USER_CHARS = 256

# strict: JSON types as they are, so `max_tokens: true`, `stream: "yes"` or `temperature: "1"` are refused, not coerced.
_STRICT = ConfigDict(extra="forbid", strict=True)


def _integral(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says), 3.5 is not and stays refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integer fields: JSON numbers without a fraction, never booleans or strings.
TokenCount = Annotated[int, Field(ge=1, le=constants.MAX_NEW_TOKENS_LIMIT), BeforeValidator(_integral)]
Seed = Annotated[int, Field(ge=0, le=2**64 - 1), BeforeValidator(_integral)]


class ContentPart(BaseModel):
    # Parts of any type are read, so that a non-text one is refused by its type rather than by its shape.
    model_config = ConfigDict(extra="allow")
    type: str = Field(description="The part's kind: only text parts are served.", json_schema_extra={"enum": ["text"]})
    text: str | None = Field(default=None, description="The text of a text part.")


class ChatMessage(BaseModel):
    model_config = _STRICT
    unimplemented: ClassVar[Mapping[str, unsupported.Unimplemented]] = unsupported.MESSAGE
    role: str = Field(
        description="system, user or assistant; developer is taken as system.",
        json_schema_extra={"enum": ["system", "user", "assistant", "developer"]},
    )
    content: str | list[ContentPart] | None = Field(default=None, description="The text, whole or in text parts.")


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool | None = Field(default=None, description="Send a last chunk with the token usage.")


class SamplingRequest(BaseModel):
    """The fields chat and text completions share."""

    model_config = _STRICT
    unimplemented: ClassVar[Mapping[str, unsupported.Unimplemented]] = {}
    model: str | None = Field(default=None, description="The model to serve; any model served here when left out.")
    max_tokens: TokenCount | None = Field(default=None, description="Most tokens to generate.")
    # The ranges are checked with every request's (hybrid.protocol); the schema says them too.
    temperature: float | None = Field(
        default=None,
        description="Sampling temperature; 0 or none is greedy.",
        json_schema_extra={"minimum": 0, "maximum": constants.MAX_TEMPERATURE},
    )
    top_p: float | None = Field(
        default=None, description="Nucleus sampling mass.", json_schema_extra={"exclusiveMinimum": 0, "maximum": 1}
    )
    seed: Seed | None = Field(default=None, description="Seed of the sampler, for repeatability.")
    stop: str | list[str] | None = Field(default=None, description="Text that ends the answer where it appears.")
    stream: bool = Field(default=False, description="Answer as Server-Sent Events, chunk by chunk.")
    stream_options: StreamOptions | None = Field(default=None, description="Options of a streamed answer.")
    user: str | None = Field(
        default=None,
        max_length=MAX_USER_CHARS,
        description="The end user: requests with the same one go to the same replica where they can (affinity).",
    )
    priority: str | None = Field(
        default=None,
        description="realtime, interactive or batch; the x-hybrid-priority header wins over it.",
        json_schema_extra={"enum": ["realtime", "interactive", "batch", None]},
    )


class ChatCompletionRequest(SamplingRequest):
    unimplemented: ClassVar[Mapping[str, unsupported.Unimplemented]] = unsupported.CHAT
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: TokenCount | None = Field(
        default=None, description="Most tokens to generate; wins over max_tokens."
    )


class CompletionRequest(SamplingRequest):
    unimplemented: ClassVar[Mapping[str, unsupported.Unimplemented]] = unsupported.COMPLETION
    # A list is read only to be refused with what to do instead: the schema says what is served.
    prompt: Annotated[str | list[Any], WithJsonSchema({"type": "string", "pattern": r"\S"})] = Field(
        description="The text to continue; one string per request."
    )


Body = TypeVar("Body", bound=SamplingRequest)


def parse_request(raw: bytes, model: type[Body]) -> Body:
    """The body as ``model``. Raises InvalidFieldError naming what is wrong and what to change."""
    fields = _json_object(raw)
    refusals = unsupported.refuse_unimplemented(fields, model.unimplemented)
    messages = fields.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if isinstance(message, dict):
                refusals += unsupported.refuse_unimplemented(message, ChatMessage.unimplemented, f"messages[{index}].")
    if refusals:
        raise InvalidFieldError("; ".join(sentence for _, sentence in refusals), param=refusals[0][0])
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        raise InvalidFieldError(describe_problems(problems), param=_where(problems[0]["loc"]) or None) from None


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidFieldError("the body is empty: send a JSON object")
    try:
        # Strict JSON: no NaN, valid UTF-8, no lone surrogate escapes (text the model could not encode).
        fields = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        raise InvalidFieldError(f"the body is not valid JSON ({error}): send a JSON object in UTF-8") from None
    if not isinstance(fields, dict):
        raise InvalidFieldError(f"the body is a JSON {type(fields).__name__}: send a JSON object")
    return fields


def _where(loc: tuple[int | str, ...]) -> str:
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where


def describe_problems(problems: list[dict[str, Any]]) -> str:
    """Pydantic's validation errors as one sentence a person can act on."""
    parts = []
    for problem in problems:
        where = _where(problem["loc"]) or "the body"
        kind = problem["type"]
        if kind == "extra_forbidden":
            parts.append(f"{where} is not a field this server knows: remove it")
        elif kind == "missing":
            parts.append(f"{where} is required")
        elif kind == "string_too_long":
            parts.append(f"{where} is longer than {problem['ctx']['max_length']} characters: shorten it")
        else:
            got = problem.get("input")
            shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) and len(repr(got)) <= 60 else ""
            parts.append(f"{where}: {problem['msg']}{shown}")
    return "; ".join(parts) or "the request body is not valid"
