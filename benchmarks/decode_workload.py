"""What the cloud decode benchmarks run: model shapes with random weights, prompts of exact length,
answers of given lengths, and how runs are timed and summed up (``cloud_decode.py`` and
``cloud_serve_ways.py`` share it)."""

from __future__ import annotations

import statistics
import time

import torch

SHAPES = {
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
        rope_theta=100000.0,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
    ),
}


def word_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0", pad_token="w0", eos_token="w0")


def random_model(shape: str, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=0, pad_token_id=0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    return model


def prompts(batch: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(10, vocab - 10, (batch, length), generator=generator)


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def summarize(times: list[float], batch: int, new: int) -> dict:
    return summarize_tokens(times, batch * new)


def summarize_tokens(times: list[float], tokens: int) -> dict:
    best = statistics.median(times)
    return {"seconds": best, "tokens_per_s": tokens / best, "runs": times}


def answer_lengths(batch: int, new: int, stagger: bool) -> list[int]:
    """New tokens of each request: all ``new``, or (stagger) spread from new/2 to 3new/2 so that rows
    leave the running batch at different steps, as they do in service, and the batch compacts often."""
    if not stagger or batch == 1:
        return [new] * batch
    return [new // 2 + (i * new) // (batch - 1) for i in range(batch)]
