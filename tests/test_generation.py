import threading
import time

import pytest
import torch

from ric.generation import (
    Batcher,
    GenerationSettings,
    OnnxEngine,
    TransformersEngine,
    generate,
    is_degenerate,
)
from ric.models import load_engine, load_model, load_tokenizer, onnx_model_dir


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
    engine = TransformersEngine(*tiny)
    s = GenerationSettings(max_new_tokens=8, do_sample=False)
    pieces = list(engine.stream("hello", s))
    final = engine.complete(["hello"], s, progress=False)[0]
    assert pieces and pieces[-1] == final.text
    assert all(b.startswith(a) for a, b in zip(pieces, pieces[1:], strict=False))
    stop = threading.Event()
    stop.set()
    stopped = list(engine.stream("hello", GenerationSettings(max_new_tokens=50), stop=stop))
    assert len(stopped) <= 2


def test_completion_counts_tokens_and_end_of_text(tiny):
    model, tok = tiny
    engine = TransformersEngine(model, tok)
    (capped,) = engine.complete(["hello"], GenerationSettings(6, do_sample=False), progress=False)
    assert (capped.n_tokens, capped.finished) == (6, False)
    # Make end-of-text the only choice: every row must end by itself after one token.
    bias = torch.full((len(tok),), -1e4)
    bias[tok.eos_token_id] = 1e4
    with torch.no_grad():
        model.lm_head.bias = torch.nn.Parameter(bias)
    try:
        ended = engine.complete(["hello", "my dog"], GenerationSettings(6), progress=False)
    finally:
        model.lm_head.bias = None
    assert [(c.text, c.n_tokens, c.finished) for c in ended] == [("", 1, True)] * 2


@pytest.fixture(scope="module")
def onnx_engine(tiny_adapter_dir):
    folder = onnx_model_dir(adapter=tiny_adapter_dir, precision="fp32")
    return OnnxEngine(folder, load_tokenizer(str(folder)), threads=1)


PROMPTS = ["hello", "the weather is sunny and bright today", "my dog", "explain it in detail"]


def test_onnx_export_matches_transformers_greedy(tiny_adapter_dir, onnx_engine):
    """The fp32 export of base + merged LoRA decodes exactly like transformers; its right-padded
    batches give what one prompt at a time gives."""
    greedy = GenerationSettings(max_new_tokens=8, do_sample=False)
    model, tok = load_model(adapter=str(tiny_adapter_dir), merge=True)
    reference = TransformersEngine(model, tok).complete(PROMPTS, greedy, progress=False)
    batched = onnx_engine.complete(PROMPTS, greedy, batch_size=4, progress=False)
    single = [onnx_engine.complete([p], greedy, progress=False)[0] for p in PROMPTS]
    assert batched == single == reference
    s = GenerationSettings(max_new_tokens=8, temperature=1.0)
    a = onnx_engine.complete(PROMPTS, s, seed=4, progress=False)
    assert a == onnx_engine.complete(PROMPTS, s, seed=4, progress=False)


def test_onnx_export_is_cached_by_content(tiny_adapter_dir, onnx_engine):
    again = onnx_model_dir(adapter=tiny_adapter_dir, precision="fp32")
    assert again == onnx_engine.folder
    with pytest.raises(ValueError, match="precision"):
        onnx_model_dir(adapter=tiny_adapter_dir, precision="int3")
    with pytest.raises(ValueError, match="backend"):
        load_engine("vllm-on-cpu", adapter=tiny_adapter_dir)


def test_batcher_serves_concurrent_requests_together(onnx_engine):
    """Requests that arrive together share a batch and each gets its own greedy reply."""
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False)
    expected = [onnx_engine.complete([p], greedy, progress=False)[0].text for p in PROMPTS]
    batch_sizes = []
    real = onnx_engine.stream_batch

    def spy(prompts, *a, **k):
        batch_sizes.append(len(prompts))
        return real(prompts, *a, **k)

    onnx_engine.stream_batch = spy
    try:
        batcher = Batcher(onnx_engine, window_s=0.2)
        results = [None] * len(PROMPTS)

        def user(i):
            *_, results[i] = batcher.stream(PROMPTS[i], greedy)

        threads = [threading.Thread(target=user, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        del onnx_engine.stream_batch
    assert results == expected
    assert batch_sizes == [4]


@pytest.mark.parametrize("engine_kind", ["onnx", "transformers"])
def test_batcher_late_joiner_restarts_a_young_batch(engine_kind, onnx_engine, tiny_adapter_dir):
    """A request arriving while a batch is young joins it: the running row continues from its
    prompt plus the tokens it has, and every greedy reply is what it would be alone."""
    if engine_kind == "onnx":
        engine = onnx_engine
    else:
        engine = TransformersEngine(*load_model(adapter=str(tiny_adapter_dir), merge=True))
    long = GenerationSettings(max_new_tokens=40, do_sample=False)
    alone = {p: engine.complete([p], long, progress=False)[0].text for p in PROMPTS[:2]}
    # The tiny model decodes 40 tokens before a thread can start: slow each step down.
    real = engine.stream_batch

    def slow(*a, **k):
        for rows in real(*a, **k):
            time.sleep(0.02)
            yield rows

    if engine_kind == "onnx":
        engine.stream_batch = slow
    else:
        engine.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))
    batcher = Batcher(engine, window_s=0.01, join_tokens=30)
    first_tokens = threading.Event()
    results = {}

    def user(prompt, signal=None):
        for text in batcher.stream(prompt, long):
            if signal is not None and text:
                signal.set()
        results[prompt] = text

    a = threading.Thread(target=user, args=(PROMPTS[0], first_tokens))
    a.start()
    assert first_tokens.wait(timeout=60)
    b = threading.Thread(target=user, args=(PROMPTS[1],))
    b.start()
    a.join(timeout=60), b.join(timeout=60)
    if engine_kind == "onnx":
        del engine.stream_batch
    assert results == alone
    assert batcher.batches[0] == 1 and 2 in batcher.batches  # restarted with the joiner
    assert batcher.position() == 0


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
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"logit_bias": {5: float("nan")}}, "logit_bias"),
        ({"logit_bias": {5: "high"}}, "logit_bias"),
        ({"logit_bias": {5: True}}, "logit_bias"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenerationSettings(**kwargs)


def test_bad_prompts(tiny):
    with pytest.raises(ValueError, match="list of str"):
        generate(*tiny, "just a string", progress=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=True)


def test_is_degenerate():
    assert is_degenerate("")
    assert is_degenerate("the the the the the the the the the")
    assert is_degenerate("ok\nok\nok\nok\nok\nok")
    assert not is_degenerate("A perfectly ordinary answer with several different words.")


def test_merged_model_dir_is_the_merged_model(tiny_adapter_dir):
    from ric.models import merged_model_dir

    folder = merged_model_dir(adapter=tiny_adapter_dir)
    assert merged_model_dir(adapter=tiny_adapter_dir) == folder  # cached
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False)
    merged = TransformersEngine(*load_model(str(folder))).complete(PROMPTS, greedy, progress=False)
    model, tok = load_model(adapter=str(tiny_adapter_dir))  # LoRA kept as an adapter
    assert merged == TransformersEngine(model, tok).complete(PROMPTS, greedy, progress=False)


def test_vllm_engine_matches_transformers(tiny_adapter_dir):
    """Runs where vLLM and a GPU are (the device machine); skipped on the CPU machines."""
    pytest.importorskip("vllm", reason="vllm is not installed (GPU machines only)")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    greedy = GenerationSettings(max_new_tokens=6, do_sample=False)
    engine, _, _ = load_engine("vllm", adapter=tiny_adapter_dir, dtype="float32")
    model, tok = load_model(adapter=str(tiny_adapter_dir), merge=True)
    ref = TransformersEngine(model, tok).complete(PROMPTS, greedy, progress=False)
    assert engine.complete(PROMPTS, greedy, progress=False) == ref


def test_onnx_prompt_beyond_the_context_is_a_clear_error(onnx_engine):
    too_long = "hello there " * (onnx_engine.context // 2 + 10)
    with pytest.raises(ValueError, match="longer than the model's context"):
        onnx_engine.complete([too_long], GenerationSettings(4), progress=False)
    # A reply is cut where the context ends rather than failing.
    hello = onnx_engine.tokenizer("hello", add_special_tokens=False).input_ids
    near = onnx_engine.tokenizer.decode(hello * (onnx_engine.context - 6))
    (done,) = onnx_engine.complete([near], GenerationSettings(64, do_sample=False), progress=False)
    assert done.n_tokens <= 64 and not done.finished


def test_onnx_repetition_penalty_is_transformers(tiny_adapter_dir, onnx_engine):
    """The onnx engine applies transformers' repetition penalty itself: greedy replies match,
    batched (right-padded rows) as well as one by one."""
    greedy = GenerationSettings(max_new_tokens=8, do_sample=False, repetition_penalty=1.5)
    model, tok = load_model(adapter=str(tiny_adapter_dir), merge=True)
    reference = TransformersEngine(model, tok).complete(PROMPTS, greedy, progress=False)
    plain = GenerationSettings(max_new_tokens=8, do_sample=False)
    assert reference != TransformersEngine(model, tok).complete(PROMPTS, plain, progress=False)
    assert onnx_engine.complete(PROMPTS, greedy, batch_size=4, progress=False) == reference
    assert [onnx_engine.complete([p], greedy, progress=False)[0] for p in PROMPTS] == reference


def test_logit_bias_is_transformers_sequence_bias_on_every_engine(tiny_adapter_dir, onnx_engine):
    """The onnx engine adds the bias itself, before the repetition penalty as transformers
    orders its processors: greedy replies match, batched and one by one; a bias can force a
    token; biased and plain requests never share a batch."""
    model, tok = load_model(adapter=str(tiny_adapter_dir), merge=True)
    reference_engine = TransformersEngine(model, tok)
    plain = GenerationSettings(max_new_tokens=8, do_sample=False, repetition_penalty=1.5)
    biased = GenerationSettings(
        max_new_tokens=8,
        do_sample=False,
        repetition_penalty=1.5,
        logit_bias=dict.fromkeys(range(100, 300), 3.0),
    )
    reference = reference_engine.complete(PROMPTS, biased, progress=False)
    assert reference != reference_engine.complete(PROMPTS, plain, progress=False)
    assert onnx_engine.complete(PROMPTS, biased, batch_size=4, progress=False) == reference
    assert [onnx_engine.complete([p], biased, progress=False)[0] for p in PROMPTS] == reference
    forced = GenerationSettings(max_new_tokens=4, do_sample=False, logit_bias={321: 100.0})
    for engine in (reference_engine, onnx_engine):
        for done in engine.complete(PROMPTS[:2], forced, progress=False):
            assert done.text == tok.decode([321] * 4).strip() and done.n_tokens == 4
    assert biased.sampling_key() != plain.sampling_key()


def test_engines_say_what_they_run(onnx_engine, tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir), dtype="float32")
    assert TransformersEngine(model, tok).label == "transformers float32"
    assert onnx_engine.label == "onnx fp32" and onnx_engine.vectors is None
