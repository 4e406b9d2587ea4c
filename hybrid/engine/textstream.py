"""Turns a stream of token ids into a stream of text deltas, honouring stop strings.

Tokens are decoded incrementally: a delta is emitted only once it no longer ends in a partial
UTF-8 character, and text that could be the start of a stop string is held back until it is known
not to be one. Stop strings are not returned.

A fast (Rust) tokenizer decodes through the tokenizers library's own ``DecodeStream``: one call into Rust a
token, where the Python ``decode`` wrapper costs two calls and its argument checks, which a replica streaming
a full batch pays for every row at every step. Other tokenizers go through ``decode``.
"""

from __future__ import annotations

try:
    from tokenizers.decoders import DecodeStream
except ImportError:  # an older tokenizers; every tokenizer then goes through decode
    DecodeStream = None


class TextStream:
    def __init__(self, tokenizer, stop: list[str] | tuple[str, ...] = ()):
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._text = ""
        self._sent = 0
        self.stopped = False
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = backend if DecodeStream is not None and backend is not None else None
        self._stream = DecodeStream(skip_special_tokens=True) if self._backend is not None else None

    def push(self, token_id: int) -> str:
        """Adds one token and returns the text that can be shown now (maybe empty)."""
        if self.stopped:
            return ""
        if self._stream is not None:
            piece = self._stream.step(self._backend, token_id)
            if piece:
                self._text += piece
            return self._release(final=False)
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        after = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._text += after[len(before) :]
            # Decoding from the previous read point keeps a leading space or a merge across
            # the token boundary consistent between 'before' and 'after'.
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
        return self._release(final=False)

    def finish(self) -> str:
        """Returns whatever was held back; call once when generation ends."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self._stop:
            window_start = max(0, self._sent - self._max_stop)
            hits = [i for i in (self._text.find(s, window_start) for s in self._stop) if i >= 0]
            if hits:
                cut = min(hits)
                delta = self._text[self._sent : cut] if cut > self._sent else ""
                self._sent = max(self._sent, cut)
                self._text = self._text[:cut]
                self.stopped = True
                return delta
        safe = len(self._text) if final else len(self._text) - self._held_back()
        delta = self._text[self._sent : safe] if safe > self._sent else ""
        self._sent = max(self._sent, safe)
        return delta

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        for length in range(min(self._max_stop - 1, len(self._text)), 0, -1):
            tail = self._text[-length:]
            if any(s.startswith(tail) for s in self._stop):
                return length
        return 0
