import threading

import pytest
import torch

from ric.generation import GenerationSettings, generate, is_degenerate, stream
from ric.models import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


def test_batched_matches_one_at_a_time_in_order(tiny):
    model, tok = tiny
    prompts = ["hello", "the weather is sunny and bright today", "my dog", "explain it"]
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False)
    batched = generate(model, tok, prompts, greedy, batch_size=4, progress=False)
    single = [generate(model, tok, [p], greedy, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == single
    assert len(batched) == 4 and all(isinstance(t, str) for t in batched)


def test_seed_makes_sampling_repeatable(tiny):
    model, tok = tiny
    s = GenerationSettings(max_new_tokens=8, temperature=1.0)
    a = generate(model, tok, ["hello there"] * 3, s, seed=3, progress=False)
    b = generate(model, tok, ["hello there"] * 3, s, seed=3, progress=False)
    assert a == b


def test_stream_grows_and_stops(tiny):
    model, tok = tiny
    s = GenerationSettings(max_new_tokens=8, do_sample=False)
    pieces = list(stream(model, tok, "hello", s))
    final = generate(model, tok, ["hello"], s, progress=False)[0]
    assert pieces and pieces[-1] == final
    stop = threading.Event()
    stop.set()
    stopped = list(stream(model, tok, "hello", GenerationSettings(max_new_tokens=50), stop=stop))
    assert len(stopped) <= 2


def test_load_model_dtype_and_errors(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and tok.padding_side == "left"
    with pytest.raises(ValueError, match="dtype"):
        load_model(str(tiny_model_dir), dtype="int3")
    with pytest.raises(FileNotFoundError, match="adapter"):
        load_model(str(tiny_model_dir), adapter="/nonexistent/adapter")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenerationSettings(**kwargs)


def test_bad_prompts(tiny):
    with pytest.raises(ValueError, match="list of str"):
        generate(*tiny, "just a string", progress=False)


def test_is_degenerate():
    assert is_degenerate("")
    assert is_degenerate("the the the the the the the the the")
    assert is_degenerate("ok\nok\nok\nok\nok\nok")
    assert not is_degenerate("A perfectly ordinary answer with several different words.")
