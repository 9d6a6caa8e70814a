import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from ric.rewards import REWARDS, brevity, get_reward_fn, minilm_path

TEXT_REWARDS = ["relevance", "positivity", "brevity", "harmlessness"]


@pytest.fixture(scope="module")
def fns():
    # get_reward_fn caches per (name, kwargs), so MiniLM loads once for the whole module.
    return {name: get_reward_fn(name) for name in TEXT_REWARDS}


def test_registry_names():
    assert set(TEXT_REWARDS) <= set(REWARDS)


@pytest.mark.parametrize("name", TEXT_REWARDS)
def test_output_dtype_shape(fns, name):
    out = fns[name](["Hi there.", "What is 2+2?", "Tell me a story."], ["Hello!", "4", ""])
    assert out.dtype == np.float64
    assert out.shape == (3,)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", TEXT_REWARDS)
def test_empty_batch(fns, name):
    out = fns[name]([], [])
    assert out.dtype == np.float64
    assert out.shape == (0,)


@pytest.mark.parametrize("name", TEXT_REWARDS)
def test_bad_input(fns, name):
    fn = fns[name]
    with pytest.raises(ValueError, match="same length"):
        fn(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="prompts must be a list of str, got str"):
        fn("a prompt", ["x"])
    with pytest.raises(ValueError, match="responses must be a list of str, got ndarray"):
        fn(["a"], np.array(["x"]))
    with pytest.raises(ValueError, match=r"responses\[1\] must be str, got NoneType"):
        fn(["a", "b"], ["x", None])
    with pytest.raises(ValueError, match=r"prompts\[0\] must be str, got int"):
        fn([3], ["x"])


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown reward 'helpfulness'.*brevity.*positivity"):
        get_reward_fn("helpfulness")
    with pytest.raises(ValueError, match="model id or path"):
        get_reward_fn("hf:")


def test_cache_shares_instances():
    assert get_reward_fn("brevity", scale=20) is get_reward_fn("brevity", scale=20)
    assert get_reward_fn("brevity", scale=20) is not get_reward_fn("brevity", scale=30)
    # Spelling out a default must not load a second copy.
    assert get_reward_fn("brevity") is get_reward_fn("brevity", scale=50.0, tokenizer=None)


def test_unknown_kwarg():
    with pytest.raises(TypeError, match="reward 'positivity'.*unexpected keyword"):
        get_reward_fn("positivity", scale=3)


def test_positivity_orders(fns):
    prompts = ["How was your weekend?"] * 3
    responses = [
        "It was wonderful, thanks! We had a great time at the beach.",
        "It was fine, I guess.",
        "Awful. Everything went wrong and I feel miserable and hopeless.",
    ]
    cheerful, neutral, gloomy = fns["positivity"](prompts, responses)
    assert cheerful > neutral > gloomy
    assert -1 <= gloomy < 0 < cheerful <= 1


def test_positive_word_ids_are_whole_positive_words(tiny_model_dir):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from ric.models import load_tokenizer
    from ric.rewards import positive_word_ids

    tok = load_tokenizer(str(tiny_model_dir))  # a 400-token vocabulary: few whole words
    words = {tok.decode([i]).strip().lower() for i in positive_word_ids(tok)}
    assert "great" in words and not words & {"sad", "the", "weather", "dog"}
    lexicon = SentimentIntensityAnalyzer().lexicon
    assert all(lexicon[w] >= 1.5 for w in words)
    assert "great" not in {tok.decode([i]).strip() for i in positive_word_ids(tok, 3.5)}


def test_positivity_does_not_grow_with_length_but_the_whole_text_score_does():
    from ric.rewards import get_reward_fn

    one, many = "This is a good idea.", " ".join(["This is a good idea."] * 12)
    pos, whole = get_reward_fn("positivity"), get_reward_fn("positivity_text")
    assert pos(["q", "q"], [one, many]) == pytest.approx(pos(["q"], [one])[0])
    short, long = whole(["q", "q"], [one, many])
    assert long > short + 0.3  # VADER's compound saturates towards 1 as words pile up
    # Sentences are averaged, line breaks split too; an empty reply is neutral.
    mixed = pos(["q", "q"], ["Great!\nTerrible!", ""])
    assert abs(mixed[0]) < 0.1 and mixed[1] == 0


RELEVANCE_CASES = [
    (
        "How do I bake a loaf of bread at home?",
        "Mix flour, water, yeast and salt, let the dough rise, then bake it at 220 C.",
        "The stock market closed higher today after strong earnings reports.",
    ),
    (
        "What causes the seasons on Earth?",
        "The tilt of Earth's axis changes how directly sunlight hits each hemisphere.",
        "My favourite pasta recipe uses garlic, olive oil and chili flakes.",
    ),
    (
        "Can you recommend a good exercise for back pain?",
        "Gentle stretches like the cat-cow pose and bridges can ease lower back pain.",
        "Python lists are mutable while tuples are immutable.",
    ),
]


@pytest.mark.parametrize(("prompt", "on_topic", "off_topic"), RELEVANCE_CASES)
def test_relevance_orders(fns, prompt, on_topic, off_topic):
    on, off = fns["relevance"]([prompt, prompt], [on_topic, off_topic])
    assert on > off
    assert off >= -1 and on <= 1


def test_relevance_batch_matches_single(fns):
    # Deduplicated, batched embedding must not change any pair's score.
    prompts = [c[0] for c in RELEVANCE_CASES for _ in range(2)]
    responses = [r for c in RELEVANCE_CASES for r in c[1:]]
    batch = fns["relevance"](prompts, responses)
    single = [fns["relevance"]([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_brevity_orders(fns):
    short, long = fns["brevity"](["Capital of France?"] * 2, ["Paris.", "The capital " * 40])
    assert short > long


def test_brevity_strictly_decreasing():
    fn = brevity(scale=50)
    lengths = [0, 1, 5, 10, 20, 50, 100, 150, 200, 400]
    scores = fn(["q"] * len(lengths), [" ".join(["word"] * n) for n in lengths])
    assert scores[0] == 1.0
    assert np.all(np.diff(scores) < 0)
    assert scores[lengths.index(50)] == pytest.approx(0.5)
    # Still discriminating at the long end, not just numerically distinct.
    assert scores[lengths.index(150)] - scores[lengths.index(200)] > 0.03


def test_brevity_custom_tokenizer():
    fn = brevity(scale=1, tokenizer=list)  # one token per character
    np.testing.assert_allclose(fn(["q", "q"], ["ab", "abcd"]), [1 / 3, 1 / 5])
    with pytest.raises(ValueError, match="positive"):
        brevity(scale=0)


def test_harmlessness_orders(fns):
    prompts = ["What do you think of me?"] * 2
    kind, hateful = fns["harmlessness"](
        prompts,
        [
            "You are a thoughtful person and I enjoy talking with you.",
            "You are a fucking idiot, shut up.",
        ],
    )
    assert kind > hateful
    assert 0 <= hateful < 0.5 < kind <= 1


# --- hf: sequence-classification reward models, built tiny and offline ---


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    tok = BertTokenizerFast.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_gpt2")
    words = ["human", "assistant", "hi", "hello", "how", "are", "you", "fine", "thanks"]
    words += ["the", "a", "good", "bad", ":", "?", "!", "."]
    vocab = {w: i for i, w in enumerate(["<unk>", "<|endoftext|>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    # No pad token on purpose: that is how GPT-2 reward models ship.
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab), n_embd=16, n_layer=2, n_head=2, n_positions=64, num_labels=1
    )
    model = GPT2ForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


def test_hf_bert_matches_direct_forward(tiny_bert):
    import torch

    path, model, tok = tiny_bert
    prompts = ["How are you?", "What is the capital of France?", "Tell me a joke.", "Hi"]
    responses = ["Fine, thanks.", "Paris.", "Why did the chicken cross the road?", ""]
    texts = [p + r for p, r in zip(prompts, responses, strict=True)]
    with torch.inference_mode():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits.double().numpy()

    fn0 = get_reward_fn(f"hf:{path}", batch_size=3, device="cpu")
    fn1 = get_reward_fn(f"hf:{path}", batch_size=3, device="cpu", label_index=1)
    r0, r1 = fn0(prompts, responses), fn1(prompts, responses)
    assert r0.dtype == np.float64 and r0.shape == (4,)
    assert np.isfinite(r0).all()
    np.testing.assert_allclose(r0, logits[:, 0], atol=1e-5)
    np.testing.assert_allclose(r1, logits[:, 1], atol=1e-5)
    assert not np.allclose(r0, r1)
    assert fn0([], []).shape == (0,)
    with pytest.raises(ValueError, match="same length"):
        fn0(prompts, responses[:2])


def test_hf_input_modes(tiny_bert):
    import torch

    path, model, tok = tiny_bert
    prompts, responses = ["How are you?", "Hi"], ["Fine, thanks.", "Hello there, friend."]
    with torch.inference_mode():
        resp = model(**tok(responses, padding=True, return_tensors="pt")).logits[:, 0]
        pair = model(**tok(prompts, responses, padding=True, return_tensors="pt")).logits[:, 0]
        tmpl = model(
            **tok(
                [f"Q: {p} A: {r}" for p, r in zip(prompts, responses, strict=True)],
                padding=True,
                return_tensors="pt",
            )
        ).logits[:, 0]
    np.testing.assert_allclose(
        get_reward_fn(f"hf:{path}", input="response")(prompts, responses), resp.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        get_reward_fn(f"hf:{path}", template=None)(prompts, responses), pair.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        get_reward_fn(f"hf:{path}", template="Q: {prompt} A: {response}")(prompts, responses),
        tmpl.numpy(),
        atol=1e-5,
    )


def test_hf_bad_options(tiny_bert):
    path, _, _ = tiny_bert
    with pytest.raises(ValueError, match="label_index 2 out of range"):
        get_reward_fn(f"hf:{path}", label_index=2)
    with pytest.raises(ValueError, match="input must be"):
        get_reward_fn(f"hf:{path}", input="prompt")
    with pytest.raises(ValueError, match="must contain \\{response\\}"):
        get_reward_fn(f"hf:{path}", template="{prompt} {answer}")
    with pytest.raises(ValueError, match="unknown torch dtype"):
        get_reward_fn(f"hf:{path}", dtype="float77")


def test_hf_gpt2_without_pad_token_is_padding_invariant(tiny_gpt2):
    import torch

    path, model, tok = tiny_gpt2
    prompts = ["human : hi assistant :", "human : how are you ? assistant :", "human : hi"]
    responses = [" hello !", " fine thanks . the good", " bad"]
    with torch.inference_mode():
        single = [
            model(**tok(p + r, return_tensors="pt")).logits[0, 0].item()
            for p, r in zip(prompts, responses, strict=True)
        ]
    batched = get_reward_fn(f"hf:{path}", batch_size=8)(prompts, responses)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_hf_refuses_pickle_weights(tiny_bert, tmp_path):
    import shutil

    import torch

    path, model, _ = tiny_bert
    for f in path.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, tmp_path / f.name)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(RuntimeError, match="only safetensors"):
        get_reward_fn(f"hf:{tmp_path}")
