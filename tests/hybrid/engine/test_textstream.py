"""Incremental detokenization and stop strings: with a byte-level fake tokenizer (fast), and the real one (slow)."""

from __future__ import annotations

from dataclasses import dataclass

from hybrid.engine.textstream import TextStream


@dataclass
class Encoding:
    input_ids: list[int]


class ByteTokenizer:
    """One token per UTF-8 byte: a character beyond ASCII takes several tokens, as with byte-level BPE."""

    def __call__(self, text: str) -> Encoding:
        return Encoding(list(text.encode()))

    def decode(self, ids, skip_special_tokens=False) -> str:
        return bytes(ids).decode(errors="replace")


def test_a_character_split_over_tokens_is_released_whole():
    tokenizer = ByteTokenizer()
    text = "naïve 東京 🙂!"
    deltas, _ = stream_all(tokenizer, text)
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas), "a partial character leaked into a delta"
    assert "東" in deltas and "🙂" in deltas, "each character goes out as soon as its last byte arrives"


def test_a_stop_string_across_tokens_is_held_back_then_cut():
    stream = TextStream(ByteTokenizer(), stop=["STOP"])
    deltas = [stream.push(t) for t in b"go ST"]
    assert "".join(deltas) == "go ", "'ST' could begin the stop string: it must wait"
    deltas += [stream.push(t) for t in b"OP and more"]
    assert "".join(deltas) + stream.finish() == "go " and stream.stopped
    assert stream.push(ord("x")) == "", "nothing follows a stop string"


def test_held_back_text_is_released_when_it_turns_out_not_to_stop():
    stream = TextStream(ByteTokenizer(), stop=["STOP"])
    deltas = [stream.push(t) for t in b"go STAY"]
    assert "".join(deltas) == "go STAY" and not stream.stopped
    held = TextStream(ByteTokenizer(), stop=["STOP"])
    deltas = [held.push(t) for t in b"go ST"]
    assert "".join(deltas) + held.finish() == "go ST", "finish releases what was held back"


def stream_all(tokenizer, text: str, stop=()) -> tuple[list[str], TextStream]:
    stream = TextStream(tokenizer, stop)
    deltas = [stream.push(t) for t in tokenizer(text).input_ids]
    deltas.append(stream.finish())
    return deltas, stream


def test_deltas_join_to_the_decoded_text(tokenizer):
    text = "Héllo wörld — naïve café, 東京 and emojis 🙂 too.\nNew line."
    deltas, _ = stream_all(tokenizer, text)
    assert "".join(deltas) == tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True)
    assert not any("\ufffd" in d for d in deltas), "a partial character leaked into a delta"
    assert sum(1 for d in deltas if d) > 5, "text must stream in pieces, not at the end"


def test_stop_string_ends_the_text_before_it(tokenizer):
    deltas, stream = stream_all(tokenizer, "The answer is 42. Then more text follows.", stop=[". Then"])
    assert "".join(deltas) == "The answer is 42"
    assert stream.stopped


def test_text_that_only_starts_like_a_stop_string_is_released(tokenizer):
    deltas, stream = stream_all(tokenizer, "red, green, blue", stop=[", yellow"])
    assert "".join(deltas) == "red, green, blue"
    assert not stream.stopped


def test_the_fast_tokenizers_stream_decodes_as_the_python_path_does(tokenizer):
    """The Rust DecodeStream and the two-decodes path give the same deltas, token for token."""
    text = "Héllo wörld — naïve café, 東京 and emojis 🙂 too.\nNew line.  Two spaces, a tab\tand <b>markup</b>."
    ids = tokenizer(text).input_ids + [tokenizer.eos_token_id or 0]  # a special token skipped on the way
    fast = TextStream(tokenizer)
    assert fast._stream is not None, "the real tokenizer is a fast one"
    slow = TextStream(tokenizer)
    slow._stream = None
    assert [fast.push(t) for t in ids] == [slow.push(t) for t in ids]
    assert fast.finish() == slow.finish()
