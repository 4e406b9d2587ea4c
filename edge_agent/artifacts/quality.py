"""The quality gate: an artifact's perplexity and next-token agreement against the full model.

Both are measured on a text shipped with the project, teacher-forced, through the same runtime that
serves the artifact. An artifact more than ``max_perplexity_increase`` worse in perplexity fails the gate.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edge_agent.artifacts.manifest import MODEL_FILE, Manifest, QualityReport
from hybrid.errors import ArtifactError, QualityGateError
from hybrid.models.registry import ResolvedModel


@dataclass
class ReferenceQuality:
    """The full model on the evaluation text: its perplexity and its argmax at every position."""

    tokens: int
    perplexity: float
    argmax: list[int]


def evaluation_text() -> str:
    return resources.files("edge_agent.artifacts").joinpath("data/quality_text.txt").read_text()


def agreement_prompts() -> list[str]:
    """Chat prompts on which a runtime's greedy answers are compared with the full model's."""
    text = resources.files("edge_agent.artifacts").joinpath("data/agreement_prompts.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    """exp(mean negative log-likelihood) of ids[1:] given logits[:-1]."""
    logits = logits.astype(np.float64)
    shifted = logits[:-1] - logits[:-1].max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    targets = np.asarray(ids[1:])
    nll = -log_probs[np.arange(len(targets)), targets]
    return float(math.exp(nll.mean()))


def reference_quality(model: ResolvedModel, cache_dir: Path) -> ReferenceQuality:
    """The full PyTorch model on the evaluation text, cached per source model."""
    path = cache_dir / "quality" / f"reference-{model.fingerprint[:16]}.json"
    if path.is_file():
        return ReferenceQuality(**json.loads(path.read_text()))
    import torch

    from hybrid.models.registry import load_tokenizer, load_torch_model

    tokenizer = load_tokenizer(model.hf_dir)
    ids = tokenizer(evaluation_text()).input_ids
    torch_model = load_torch_model(model.hf_dir)
    with torch.inference_mode():
        logits = torch_model(torch.tensor([ids])).logits[0].numpy()
    result = ReferenceQuality(tokens=len(ids), perplexity=perplexity(logits, ids), argmax=logits.argmax(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(result)))
    return result


def compare(logits: np.ndarray, ids: list[int], reference: ReferenceQuality, max_increase: float) -> QualityReport:
    """The report on an artifact whose logits over the evaluation text ``ids`` are ``logits``."""
    measured = perplexity(logits, ids)
    increase = measured / reference.perplexity - 1.0
    agreement = float(np.mean(logits.argmax(-1) == np.asarray(reference.argmax)))
    return QualityReport(
        text_tokens=len(ids),
        reference_perplexity=round(reference.perplexity, 4),
        perplexity=round(measured, 4),
        perplexity_increase=round(increase, 5),
        next_token_agreement=round(agreement, 4),
        max_perplexity_increase=max_increase,
        passed=increase <= max_increase,
    )


def measure_quality(folder: Path, reference: ReferenceQuality, max_increase: float, lean: bool = False) -> QualityReport:
    """Runs the evaluation text through the artifact with ONNX Runtime and compares it with the reference.

    A lean graph takes the text in its serving chunks, so the gate measures the path that serves."""
    from hybrid.models.registry import load_tokenizer

    ids = load_tokenizer(folder)(evaluation_text()).input_ids
    if len(ids) != reference.tokens:
        raise QualityGateError(
            f"artifact tokenizer gives {len(ids)} tokens for the evaluation text, the full model {reference.tokens}"
        )
    n = len(ids)
    if lean:
        from edge_agent.lean_runtime import LeanDecoder

        runtime = LeanDecoder(folder / MODEL_FILE, providers=["CPUExecutionProvider"], max_slots=1, max_context=n)
        return compare(runtime.prefill(0, ids, all_logits=True), ids, reference, max_increase)
    from edge_agent.runtime import OnnxCausalLM

    runtime = OnnxCausalLM(folder / MODEL_FILE, providers=["CPUExecutionProvider"])
    logits, _ = runtime.forward(
        np.array([ids]), np.ones((1, n), np.int64), np.arange(n)[None, :], runtime.empty_cache(1), all_logits=True
    )
    return compare(logits[0], ids, reference, max_increase)


def gate_failure(manifest: Manifest, max_increase: float) -> str | None:
    """None when the artifact passes the gate, else a one-line account of why not."""
    quality = manifest.quality
    assert quality is not None
    increase = quality.perplexity / quality.reference_perplexity - 1.0
    if increase <= max_increase:
        return None
    return (
        f"{manifest.precision}: perplexity {quality.perplexity:.2f} vs {quality.reference_perplexity:.2f} for the full "
        f"model (+{increase:.1%}, limit +{max_increase:.0%})"
    )


def check_tokenizer(tokenizer, quality: QualityReport | None) -> None:
    """Refuses a tokenizer that splits the evaluation text otherwise than the one the artifact was gated with.

    The same tokenizer files can be read differently by another major version of transformers (4.57's files under
    5.x: 355 tokens for the evaluation text instead of 301, different from the first): the model would then be
    fed ids it was never gated on, and answer nonsense without an error."""
    if quality is None:
        return
    counted = len(tokenizer(evaluation_text()).input_ids)
    if counted != quality.text_tokens:
        import transformers

        raise ArtifactError(
            f"this node's tokenizer splits the evaluation text into {counted} tokens, where the artifact was gated "
            f"on {quality.text_tokens} tokens: its transformers {transformers.__version__} reads the artifact's tokenizer "
            "otherwise than the exporter's did. Install the transformers the edge extra pins, or re-export the artifact"
        )
