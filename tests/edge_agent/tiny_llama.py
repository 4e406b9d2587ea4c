"""A tiny random Llama (two layers, 256-token vocabulary) in PyTorch and as a lean ONNX graph, for fast tests.

Its vocabulary covers one byte a token, so the engine tests' one-character-per-token tokenizer fits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.artifacts.lean_graph import LeanWeights, build_lean_model

CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 256,
    "max_position_embeddings": 1024,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}


@dataclass
class TinyLlama:
    torch_model: object
    tensors: dict[str, np.ndarray]

    def lean_model(self, folder: Path, weights: LeanWeights, name: str) -> Path:
        import onnx

        path = folder / f"{name}.onnx"
        if not path.exists():
            onnx.save(build_lean_model(self.tensors, CONFIG, weights), str(path))
        return path

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.torch_model(torch.tensor([ids])).logits[0].numpy()

    def greedy(self, ids: list[int], new_tokens: int, end_id: int | None = None) -> list[int]:
        import torch

        with torch.inference_mode():
            out = self.torch_model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=end_id,
                pad_token_id=0,
            )
        return out[0, len(ids) :].tolist()


def make_tiny_llama(seed: int = 0) -> TinyLlama:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{k: v for k, v in CONFIG.items() if k != "model_type"})
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        # Norm weights away from one, so that a graph that skipped a norm's gamma would be caught.
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    tensors = {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
    tensors.pop("lm_head.weight", None)
    return TinyLlama(model, tensors)
