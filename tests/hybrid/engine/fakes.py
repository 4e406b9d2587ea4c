"""A continuous-batching engine over a scripted fake model, and a one-character-per-token tokenizer.

The engine core (scheduling, streaming, stop strings, deadlines, drain) runs unchanged; only the model
is replaced, so each test runs in milliseconds and every token it sees is known in advance.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hybrid.engine.continuous import ContinuousBatchingEngine, Sequence
from hybrid.protocol import GenerationRequest, Priority, ServedBy, Tier

END = 0  # the end-of-text token: no character encodes to it
QUANTIZED = ServedBy(Tier.EDGE, "fake-replica", "test-region", "int8-b32")


@dataclass
class Encoding:
    input_ids: list[int]


class CharTokenizer:
    """One token per character (its code point); the end token decodes to nothing."""

    eos_token_id = END

    def __call__(self, text: str) -> Encoding:
        return Encoding([ord(c) for c in text])

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, return_dict=False):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages) + (
            "<assistant>" if add_generation_prompt else ""
        )
        return self(text).input_ids

    def decode(self, ids, skip_special_tokens=False) -> str:
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == END))


class ScriptedEngine(ContinuousBatchingEngine):
    """Answers each prompt with its script (``scripts[prompt]``, else ``default_answer``), then the end token.

    A decode step of R rows sleeps ``step_s + per_row_s * R``, so a batch takes the time a real one would
    relative to its size. ``fail_on_rows`` makes the first decode step of that many rows raise, ``fail_prefill``
    the first prefill. Every model call is logged as ``(kind, [request ids])``, and each call checks the row
    contract the engine promises."""

    def __init__(
        self,
        scripts: dict[str, str] | None = None,
        default_answer: str = "lorem ipsum dolor sit amet " * 8,
        step_s: float = 0.002,
        per_row_s: float = 0.0,
        fail_on_rows: int | None = None,
        fail_prefill: bool = False,
        **settings,
    ):
        defaults = {
            "served_by": QUANTIZED,
            "model_name": "fake-model",
            "max_context_tokens": 512,
            "full_precision": False,
            "end_ids": {END},
            "max_batch_size": 4,
            "max_wait_ms": 10.0,
        }
        super().__init__(CharTokenizer(), **{**defaults, **settings})
        self.scripts = scripts or {}
        self.default_answer = default_answer
        self.step_s = step_s
        self.per_row_s = per_row_s
        self.fail_on_rows = fail_on_rows
        self.fail_prefill = fail_prefill
        self.calls: list[tuple[str, list[str]]] = []
        # The fake model's own view of the running batch: the rows it holds state for, in order.
        self.state: list[Sequence] = []
        self._script: dict[int, list[int]] = {}
        self._position: dict[int, int] = {}
        self._lock = threading.Lock()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._pause_after_prefill = False

    def pause(self) -> None:
        """Holds the next decode step until ``resume``: the batch stays as it is while a test lines up requests."""
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    def pause_after_next_prefill(self) -> None:
        """Holds the decode step that follows the next prefill until ``resume``."""
        self._pause_after_prefill = True

    def answer_to(self, request: GenerationRequest) -> str:
        key = request.prompt if request.prompt is not None else request.messages[-1]["content"]
        return self.scripts.get(key, self.default_answer)

    def _prefill(self, joiners: list[Sequence]) -> list[int]:
        self._log("prefill", joiners)
        if self.fail_prefill:
            self.fail_prefill = False
            raise RuntimeError("the fake model broke")
        for seq in joiners:
            self._script[id(seq)] = [ord(c) for c in self.answer_to(seq.request)] + [END]
            self._position[id(seq)] = 0
        self.state.extend(joiners)
        if self._pause_after_prefill:
            self._pause_after_prefill = False
            self.pause()
        return [self._advance(seq) for seq in joiners]

    def _decode(self, rows: list[Sequence]) -> list[int]:
        assert rows == self.state, "the engine decoded rows other than those the model holds"
        self._log("decode", rows)
        if self.fail_on_rows is not None and len(rows) == self.fail_on_rows:
            self.fail_on_rows = None
            raise RuntimeError("the fake model broke")
        assert self._unpaused.wait(timeout=5), "the test never resumed the model"
        time.sleep(self.step_s + self.per_row_s * len(rows))
        for seq in rows:
            script, position = self._script[id(seq)], self._position[id(seq)]
            assert seq.next_token == script[position - 1], "the engine fed back a token other than the last one"
        return [self._advance(seq) for seq in rows]

    def _keep(self, indices: list[int]) -> None:
        self.state = [self.state[i] for i in indices]

    def _advance(self, seq: Sequence) -> int:
        script, position = self._script[id(seq)], self._position[id(seq)]
        self._position[id(seq)] = position + 1
        return script[position] if position < len(script) else END

    def _log(self, kind: str, sequences: list[Sequence]) -> None:
        with self._lock:
            self.calls.append((kind, [s.request.request_id for s in sequences]))

    def prefilled(self) -> list[list[str]]:
        """The request ids of each prefill, in order."""
        with self._lock:
            return [ids for kind, ids in self.calls if kind == "prefill"]

    def decoded_together(self, *request_ids: str) -> bool:
        """Whether some decode step advanced all these requests at once."""
        with self._lock:
            return any(kind == "decode" and set(request_ids) <= set(ids) for kind, ids in self.calls)


def make_request(prompt: str = "hello", request_id: str = "", **fields) -> GenerationRequest:
    settings = {
        "request_id": request_id or prompt,
        "model": "",
        "prompt": prompt,
        "messages": None,
        "max_new_tokens": 64,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": None,
        "stop": [],
        "priority": Priority.INTERACTIVE,
    }
    return GenerationRequest(**{**settings, **fields})


class OverlappingEngine(ScriptedEngine):
    """The scripted model as a device whose launches return at once: ``_start_decode`` computes the step (so it
    has finished when read) and ``_finish_decode`` hands it back. Starts, reads and emits are logged, so a test
    can see that each step started before the host's work on the one before it."""

    overlaps_steps = True

    def _start_decode(self, rows: list[Sequence]) -> list[int]:
        tokens = self._decode(rows)
        self._log("start", rows)
        return tokens

    def _finish_decode(self, rows: list[Sequence], started: list[int]) -> list[int]:
        self._log("finish", rows)
        return started

    def _emit(self, sequences: list[Sequence], tokens: list[int]) -> None:
        self._log("emit", sequences)
        super()._emit(sequences, tokens)

    def order(self) -> list[str]:
        """The kinds of call in the order they came, but the fake's own inner ``decode``."""
        with self._lock:
            return [kind for kind, _ in self.calls if kind != "decode"]
