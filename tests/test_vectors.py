"""Reward vectors (ric.vectors) on the tiny in-code model: read from the tags, neutral at zero,
the same in one forward and in cached decoding, trained, saved and loaded with the LoRA."""

from pathlib import Path

import pytest
import torch
from conftest import build_tiny_lm, make_tiny_adapter
from safetensors.torch import load_file
from training_helpers import REWARDS, ending_model, prepare_cfg, sft_recipe

from ric.conditioning import ConditioningFormat, format_conditioned_prompt
from ric.vectors import ATTR, SCALE, attach_reward_vectors, has_reward_vectors

FMT = ConditioningFormat(vectors=True)


def _prompt(tok, z):
    return format_conditioned_prompt("how are you today", z, FMT, tokenizer=tok)


def _ids(tok, text):
    return torch.tensor([tok(text, add_special_tokens=False).input_ids])


def _with_vectors(tok, seed=1):
    model = build_tiny_lm(tok).eval()
    attach_reward_vectors(model, tok, FMT, 2)
    torch.manual_seed(seed)
    with torch.no_grad():
        getattr(model.get_decoder(), ATTR).v.normal_(std=0.05)
    return model


def test_vectors_start_at_zero_and_act_through_the_tag_values(tiny_tokenizer):
    tok = tiny_tokenizer
    plain = build_tiny_lm(tok).eval()
    model = build_tiny_lm(tok).eval()
    attach_reward_vectors(model, tok, FMT, 2)
    assert has_reward_vectors(model) and not has_reward_vectors(plain)
    ids = _ids(tok, _prompt(tok, [1.5, -0.5]))
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, plain(ids).logits)  # zero vectors: base model
        v = getattr(model.get_decoder(), ATTR).v
        v.normal_(std=0.05)
        # The vectors are what is added: by hand, every layer's input gets z . v^l at each
        # position (the tiny model's 2 layers).
        z = torch.tensor([1.5, -0.5])
        adds = [SCALE * (z[:, None] * v[layer]).sum(0) for layer in range(2)]
        hooks = [
            layer.register_forward_pre_hook(
                lambda m, a, kw, add=add: (
                    ((a[0] + add,) + a[1:], kw)
                    if a
                    else (a, {**kw, "hidden_states": kw["hidden_states"] + add})
                ),
                with_kwargs=True,
            )
            for layer, add in zip(plain.get_decoder().layers, adds, strict=True)
        ]
        assert torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-5)
        for h in hooks:
            h.remove()
        other = model(_ids(tok, _prompt(tok, [-1.5, 0.5]))).logits
        assert not torch.allclose(other[0, -1], model(ids).logits[0, -1])
        # Tags of value 0, or none at all, are the neutral point.
        zero = _ids(tok, _prompt(tok, [0.0, 0.0]))
        assert torch.allclose(model(zero).logits, plain(zero).logits, atol=1e-6)
        untagged = _ids(
            tok, tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        )
        assert torch.allclose(model(untagged).logits, plain(untagged).logits, atol=1e-6)


def test_cached_decoding_keeps_the_prompts_values(tiny_tokenizer):
    """generate() sees the whole prompt once, then one token at a time: the values read at the
    prefill must act on every later step, as in training's single forward."""
    tok = tiny_tokenizer
    model = _with_vectors(tok)
    rows = [_prompt(tok, [2.0, -1.0]), _prompt(tok, [-2.0, 1.0])]
    for text in rows:
        ids = _ids(tok, text)
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
            seq = ids
            for _ in range(6):  # no cache: every forward reads the tags again
                nxt = model(seq, use_cache=False).logits[0, -1].argmax()
                seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
        assert out[0].tolist() == seq[0].tolist()


def test_attach_refuses_twice_and_models_without_layers(tiny_tokenizer):
    model = _with_vectors(tiny_tokenizer)
    with pytest.raises(ValueError, match="already has reward vectors"):
        attach_reward_vectors(model, tiny_tokenizer, FMT, 2)
    with pytest.raises(ValueError, match="decoder with a .layers list"):
        attach_reward_vectors(torch.nn.Linear(2, 2), tiny_tokenizer, FMT, 2)
    with pytest.raises(ValueError, match="vectors must be true or false"):
        ConditioningFormat(vectors="yes")


def test_sft_trains_saves_and_loads_the_vectors(tmp_path, tiny_model_dir):
    from ric.data import prepare_dataset
    from ric.models import load_engine, load_model
    from ric.sft import train_sft

    model_dir = ending_model(tiny_model_dir, tmp_path / "lm")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello there\nmy dog died\nhow are you today\nwhat is great\n")
    data = tmp_path / "data"
    prepare_dataset(prepare_cfg(data, model_dir, prompts, samples_per_prompt=3))
    with pytest.raises(ValueError, match="needs conditioned=true"):
        train_sft(
            sft_recipe(
                tmp_path / "x", model_dir, data, conditioning=FMT.to_dict(), conditioned=False
            )
        )
    recipe = sft_recipe(tmp_path / "sft", model_dir, data, conditioning=FMT.to_dict())
    adapter = train_sft(recipe)
    weights = load_file(Path(adapter) / "adapter_model.safetensors")
    saved = [v for k, v in weights.items() if ATTR in k]
    assert len(saved) == 1 and saved[0].shape[:2] == (2, len(REWARDS))
    assert saved[0].abs().sum() > 0  # trained away from zero
    model, _ = load_model(adapter=str(adapter), merge=True)
    loaded = getattr(model.get_decoder(), ATTR).v.detach()
    assert torch.equal(loaded, saved[0])
    # A killed run resumes with its vectors: they are in every checkpoint's adapter file.
    ckpt = sorted((tmp_path / "sft" / "checkpoints").glob("checkpoint-*"))[-1]
    assert any(ATTR in k for k in load_file(ckpt / "adapter_model.safetensors"))
    # vLLM has no way to add them: refused with a message, before anything loads.
    with pytest.raises(ValueError, match="vLLM does not run"):
        load_engine("vllm", adapter=adapter)


def test_onnx_export_adds_the_vectors_as_transformers_does(tmp_path, tiny_model_dir):
    """The fp32 onnx export of an adapter with reward vectors (ric.vectors.add_to_onnx) decodes
    like transformers, one batch holding rows of different tag values and a plain prompt."""
    from ric.generation import GenerationSettings, TransformersEngine
    from ric.models import load_engine, load_model

    adapter = make_tiny_adapter(tmp_path / "a", tiny_model_dir, vectors=True)
    model, tok = load_model(adapter=str(adapter), merge=True)
    zs = ([0.0, 0.0], [1.5, -1.0], [-2.0, 2.0])
    prompts = [_prompt(tok, z) for z in zs] + ["a plain prompt without tags"]
    greedy = GenerationSettings(max_new_tokens=8, do_sample=False)
    reference = TransformersEngine(model, tok).complete(prompts, greedy, progress=False)
    assert len({r.text for r in reference[:3]}) == 3  # the tag values change the reply
    engine, _, _ = load_engine("onnx-fp32", adapter=adapter)
    assert engine.name == "onnx" and engine.vectors[1] == 2
    assert engine.complete(prompts, greedy, batch_size=4, progress=False) == reference
    auto, _, _ = load_engine("auto", adapter=adapter)  # on a CPU the fast engine serves it
    assert auto.name == "onnx"
    # A graph it does not recognise is refused with a message, before anything is written.
    from ric.vectors import adapter_vectors, add_to_onnx

    model_file = engine.folder / "model.onnx"
    before = model_file.stat().st_mtime_ns
    with pytest.raises(ValueError, match="already takes reward_z"):
        add_to_onnx(model_file, adapter_vectors(adapter))
    assert model_file.stat().st_mtime_ns == before
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [x])
    onnx.save(helper.make_model(other), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="no single /model/layers.0/input_layernorm/ node"):
        add_to_onnx(tmp_path / "other.onnx", adapter_vectors(adapter))
