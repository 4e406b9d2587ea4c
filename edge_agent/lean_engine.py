"""Continuous batching over the lean decoder (the scheduling itself is hybrid.engine.continuous's).

Each running sequence owns a slot of the runtime's KV buffers from its prefill until it leaves; joiners take
the lowest free slots, so a batch that refills stays dense. Nothing is copied when rows leave or join.
"""

from __future__ import annotations

from edge_agent.lean_runtime import LeanDecoder
from hybrid.engine.continuous import ContinuousBatchingEngine, Sequence
from hybrid.engine.sampling import pick_tokens


class LeanGenerationEngine(ContinuousBatchingEngine):
    thread_name = "edge-engine"

    def __init__(self, runtime: LeanDecoder, tokenizer, **settings):
        super().__init__(tokenizer, **settings)
        self.runtime = runtime
        # The slot of each running row, in the rows' order.
        self._slots: list[int] = []

    def _free_slots(self, count: int) -> list[int]:
        taken = set(self._slots)
        free = [slot for slot in range(len(taken) + count) if slot not in taken]
        return free[:count]

    def _prefill(self, joiners: list[Sequence]) -> list[int]:
        slots = self._free_slots(len(joiners))
        room = max(s.request.max_new_tokens for s in joiners)
        logits = self.runtime.prefill_many(slots, [list(s.prompt_ids) for s in joiners], room=room)
        self._slots.extend(slots)
        return pick_tokens([s.sampler for s in joiners], logits)

    def _decode(self, rows: list[Sequence]) -> list[int]:
        logits = self.runtime.decode(self._slots, [s.next_token for s in rows], [s.cached for s in rows])
        return pick_tokens([s.sampler for s in rows], logits)

    def _keep(self, indices: list[int]) -> None:
        self._slots = [self._slots[i] for i in indices]
