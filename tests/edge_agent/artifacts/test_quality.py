"""The quality figures and the gate, on logits made up for the purpose."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.artifacts.manifest import Manifest, QualityReport
from edge_agent.artifacts.quality import (
    ReferenceQuality,
    agreement_prompts,
    check_tokenizer,
    compare,
    evaluation_text,
    gate_failure,
    perplexity,
)
from hybrid.errors import ArtifactError

VOCAB = 10


def confident(ids: list[int], strength: float = 20.0) -> np.ndarray:
    """Logits that predict each next id of ``ids`` (the last row predicts nothing in particular)."""
    logits = np.zeros((len(ids), VOCAB), np.float32)
    for position, following in enumerate(ids[1:]):
        logits[position, following] = strength
    return logits


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    assert perplexity(np.zeros((6, VOCAB), np.float32), [1, 2, 3, 4, 5, 6]) == pytest.approx(VOCAB)


def test_perplexity_of_a_model_that_is_always_right_is_one():
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    assert perplexity(confident(ids), ids) == pytest.approx(1.0, abs=1e-6)


def test_compare_reports_agreement_and_the_gate():
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    logits = confident(ids, strength=2.0)
    measured = perplexity(logits, ids)
    argmax = logits.argmax(-1).tolist()
    passing = compare(logits, ids, ReferenceQuality(len(ids), measured / 1.02, argmax), max_increase=0.03)
    assert passing.passed and passing.perplexity_increase == pytest.approx(0.02, abs=1e-4)
    assert passing.next_token_agreement == 1.0 and passing.text_tokens == len(ids)
    disagreeing = [(a + 1) % VOCAB for a in argmax[:4]] + argmax[4:]
    failing = compare(logits, ids, ReferenceQuality(len(ids), measured / 1.05, disagreeing), max_increase=0.03)
    assert not failing.passed and failing.next_token_agreement == 0.5


def manifest_with(perplexity_value: float, reference: float) -> Manifest:
    increase = perplexity_value / reference - 1
    quality = QualityReport(
        text_tokens=300,
        reference_perplexity=reference,
        perplexity=perplexity_value,
        perplexity_increase=increase,
        next_token_agreement=0.9,
        max_perplexity_increase=0.03,
        passed=increase <= 0.03,
    )
    return Manifest(
        model="m",
        source_fingerprint="f",
        precision="int4-b32",
        full_precision=False,
        opset=17,
        context_window=8192,
        quality=quality,
        files={},
    )


def test_the_gate_passes_within_the_limit_and_says_why_not_beyond_it():
    assert gate_failure(manifest_with(10.2, 10.0), 0.03) is None
    failure = gate_failure(manifest_with(12.0, 10.0), 0.03)
    assert failure == "int4-b32: perplexity 12.00 vs 10.00 for the full model (+20.0%, limit +3%)"
    assert gate_failure(manifest_with(12.0, 10.0), 0.25) is None, "the limit is the caller's, not the manifest's"


def test_the_shipped_evaluation_text_and_prompts():
    assert len(evaluation_text().split()) > 150
    prompts = agreement_prompts()
    assert len(prompts) >= 4 and all(p.strip() == p and p for p in prompts)


class WordTokenizer:
    """Splits on spaces: enough to count the evaluation text's tokens one way."""

    def __call__(self, text: str):
        class Encoded:
            input_ids = text.split()

        return Encoded()


def gated_on(tokens: int) -> QualityReport:
    return QualityReport(
        text_tokens=tokens,
        reference_perplexity=29.0,
        perplexity=29.1,
        perplexity_increase=0.003,
        next_token_agreement=0.95,
        max_perplexity_increase=0.03,
        passed=True,
    )


def test_a_tokenizer_that_splits_the_evaluation_text_as_the_exporter_did_is_accepted():
    check_tokenizer(WordTokenizer(), gated_on(len(evaluation_text().split())))
    check_tokenizer(WordTokenizer(), None)  # an artifact without a quality report has nothing to check against


def test_a_tokenizer_that_splits_it_otherwise_is_refused_saying_what_to_do():
    with pytest.raises(ArtifactError, match="splits the evaluation text into .* gated on 301 tokens.*transformers"):
        check_tokenizer(WordTokenizer(), gated_on(301))
