"""Incremental detokenization and stop strings, with the real tokenizer."""

from __future__ import annotations

from hybrid.engine.textstream import TextStream


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
