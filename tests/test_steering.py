import numpy as np
import pytest

from ric.generation import GenerationSettings
from ric.models import load_adapter_meta
from ric.steering import SteerableModel, check_user_prompt


@pytest.fixture(scope="module")
def steer(tiny_adapter_dir):
    return SteerableModel.load(tiny_adapter_dir, dtype="float32")


def test_reply_has_desired_and_achieved(steer):
    r = steer.reply("hello <rm1_score> 9", [0.2, 0.8], settings=GenerationSettings(8), seed=0)
    assert len(r.desired) == 2 and len(r.achieved) == 2
    assert np.allclose(r.desired, steer.desired([0.2, 0.8]))
    assert r.desired[1] == pytest.approx(steer.stats.high[1])  # dominant reward gets high


def test_prompt_carries_tags_only_when_conditioned(steer, tiny_adapter_dir):
    text = steer.prompt("hi <rm2_score> 5", [1.0, -1.0])
    assert text.count("<rm1_score>") == 1 and text.count("<rm2_score>") == 1
    base = SteerableModel.load(meta=load_adapter_meta(tiny_adapter_dir), dtype="float32")
    assert not base.conditioned and "<rm" not in base.prompt("hi <rm2_score> 5", [1.0, -1.0])


def test_a_hidden_system_turn_replaces_the_default_and_keeps_the_tags(steer, tiny_adapter_dir):
    text = steer.prompt("hi", [1.0, -1.0], system="Stay on topic.")
    assert "Stay on topic." in text and text.count("<rm1_score>") == 1
    assert "Stay on topic." not in steer.prompt("hi", [1.0, -1.0])
    base = SteerableModel.load(meta=load_adapter_meta(tiny_adapter_dir), dtype="float32")
    assert "Stay on topic." in base.prompt("hi", None, system="Stay on topic.")


def test_named_tags_carry_the_reward_names(steer):
    named = SteerableModel(steer.model, steer.tokenizer, steer.meta)
    named.fmt = type(steer.fmt).from_dict({**steer.fmt.__dict__, "tag": "<{name}>"})
    a, b = named.reward_names
    text = named.prompt(f"hi <{b}> 5", [1.0, -1.0])
    assert text.count(f"<{a}> 1.0") == 1 and text.count(f"<{b}> -1.0") == 1


def test_stream_chat(steer):
    msgs = [{"role": "user", "content": "hello"}]
    pieces = list(steer.stream_chat(msgs, [0.5, 0.5], settings=GenerationSettings(6)))
    assert pieces and isinstance(pieces[-1], str)


def test_bad_input(steer):
    with pytest.raises(ValueError, match="empty"):
        steer.reply("   ", [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        steer.reply("hi", [-1, 2])
    with pytest.raises(ValueError, match="expected 2 weights"):
        steer.reply("hi", [0.2, 0.3, 0.5])
    text, notices = check_user_prompt("x" * 5000, max_chars=100)
    assert len(text) == 100 and "truncated" in notices[0]


def test_backends_agree_and_torch_model_loads_on_demand(tiny_adapter_dir):
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False)
    prompts = ["hello", "my dog is sad", "explain it"]
    ref = SteerableModel.load(tiny_adapter_dir, dtype="float32", backend="transformers")
    fast = SteerableModel.load(tiny_adapter_dir, dtype="float32", backend="onnx-fp32")
    assert (ref.backend, fast.backend) == ("transformers", "onnx")
    a, desired_a, achieved_a = ref.complete_batch(prompts, [0.3, 0.7], greedy, progress=False)
    b, desired_b, achieved_b = fast.complete_batch(prompts, [0.3, 0.7], greedy, progress=False)
    assert a == b and np.allclose(achieved_a, achieved_b) and np.allclose(desired_a, desired_b)
    assert fast._model is None and fast.model is not None  # loaded only when asked for
