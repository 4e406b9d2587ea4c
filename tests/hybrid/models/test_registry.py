from __future__ import annotations

import pytest

from hybrid.errors import ModelNotFoundError
from hybrid.models import resolve_model


def test_default_model_is_converted_once_with_a_fixed_tokenizer(resolved_model, tokenizer):
    assert resolved_model.name == "smollm2-135m"
    assert (resolved_model.hf_dir / "config.json").is_file()
    # The converted tokenizer must say: the end token is <|im_end|> (id 2) and no BOS is prepended.
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2
    assert tokenizer("Hello world").input_ids[0] != tokenizer.bos_token_id
    again = resolve_model("smollm2-135m")
    assert again == resolved_model


def test_a_local_hugging_face_folder_resolves_with_its_own_fingerprint(resolved_model):
    local = resolve_model(str(resolved_model.hf_dir))
    assert local.hf_dir == resolved_model.hf_dir.resolve()
    assert len(local.fingerprint) == 64 and local.fingerprint != resolved_model.fingerprint


def test_unknown_model_names_the_choices(tmp_path):
    with pytest.raises(ModelNotFoundError, match="unknown model 'llama-99b'"):
        resolve_model("llama-99b")
    with pytest.raises(ModelNotFoundError, match="local Hugging Face folder holding config.json"):
        resolve_model(str(tmp_path))
