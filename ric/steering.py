"""A steerable RiC text model: preference weights in, conditioned reply and its rewards out.

This is the one object the app, the evaluator and the benchmarks drive. It bundles the model,
its tokenizer, the artifact's metadata (reward names, statistics, prompt format) and the reward
functions, so that a caller never re-implements the mapping or the prompt format.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ric.artifacts import RicMeta
from ric.conditioning import ConditioningFormat, format_conditioned_prompt, format_plain_prompt
from ric.generation import GenerationSettings, generate, stream
from ric.mapping import preference_to_rewards
from ric.normalization import RewardStats
from ric.rewards import get_reward_fn

MAX_PROMPT_CHARS = 2000


@dataclass
class Reply:
    text: str
    weights: list[float]
    desired: list[float]
    achieved: list[float]  # normalized with the artifact's statistics
    notices: list[str] = field(default_factory=list)


class SteerableModel:
    """A loaded model with its RiC metadata.

    `conditioned` is False for a base model without a RiC adapter: it then gets the plain
    prompt (no tags) and the preference is ignored, which is what the "base" reference point in
    every plot means.
    """

    def __init__(self, model, tokenizer, meta: RicMeta, conditioned: bool = True):
        self.model, self.tokenizer, self.meta = model, tokenizer, meta
        self.stats = RewardStats.from_dict(meta.stats)
        self.fmt = ConditioningFormat.from_dict(meta.conditioning)
        self.conditioned = conditioned
        self._rewards = [get_reward_fn(n) for n in meta.reward_names]
        # One generate at a time per model: torch on 2 cores gains nothing from overlapping
        # forward passes, and the streamer threads would interleave.
        self.lock = threading.Lock()

    @classmethod
    def load(
        cls,
        adapter: str | Path | None = None,
        model: str | None = None,
        dtype: str = "bfloat16",
        meta: RicMeta | None = None,
    ) -> SteerableModel:
        """From a RiC adapter folder, or an unconditioned base model with given `meta`."""
        from ric.models import load_adapter_meta, load_model

        if adapter is not None:
            meta = load_adapter_meta(adapter)
            m, tok = load_model(model, adapter=str(adapter), dtype=dtype)
        elif meta is not None:
            m, tok = load_model(model or meta.base_model, dtype=dtype)
        else:
            raise ValueError("pass a RiC adapter folder, or metadata for an unconditioned model")
        return cls(m, tok, meta, conditioned=adapter is not None)

    @property
    def reward_names(self) -> list[str]:
        return list(self.meta.reward_names)

    def desired(self, weights: Sequence[float], method: str | None = None) -> np.ndarray:
        return preference_to_rewards(weights, method=method or self.meta.mapping, stats=self.stats)

    def prompt(self, messages: str | list[dict], desired: Sequence[float] | None) -> str:
        """Model input for a chat (str = one user turn); tags only when conditioned."""
        if not self.conditioned or desired is None:
            return format_plain_prompt(messages, self.tokenizer, self.fmt)
        return format_conditioned_prompt(
            messages, desired, self.fmt, tokenizer=self.tokenizer, names=self.reward_names
        )

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Normalized rewards, shape (n, n_rewards); reward models see prompts without tags."""
        raw = np.stack([fn(prompts, responses) for fn in self._rewards], axis=1)
        return self.stats.normalize(raw)

    def generate_batch(
        self,
        prompts: list[str],
        weights: Sequence[float],
        settings: GenerationSettings | None = None,
        method: str | None = None,
        batch_size: int = 16,
        seed: int | None = None,
        progress: bool = True,
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(responses, desired (n_rewards,), achieved (n, n_rewards)) for single-turn prompts."""
        desired = self.desired(weights, method)
        inputs = [self.prompt(p, desired) for p in prompts]
        with self.lock:
            texts = generate(
                self.model, self.tokenizer, inputs, settings, batch_size, seed, progress
            )
        return texts, desired, self.score(prompts, texts)

    def reply(
        self,
        prompt: str,
        weights: Sequence[float],
        method: str | None = None,
        settings: GenerationSettings | None = None,
        seed: int | None = None,
    ) -> Reply:
        """One single-turn reply with its desired and achieved rewards."""
        prompt, notices = check_user_prompt(prompt)
        texts, desired, achieved = self.generate_batch(
            [prompt], weights, settings, method, batch_size=1, seed=seed, progress=False
        )
        return Reply(
            texts[0], list(map(float, weights)), desired.tolist(), achieved[0].tolist(), notices
        )

    def stream_chat(
        self,
        messages: list[dict],
        weights: Sequence[float],
        method: str | None = None,
        settings: GenerationSettings | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Growing reply text for a multi-turn chat whose last message is the user's."""
        desired = self.desired(weights, method)
        text = self.prompt(messages, desired)
        with self.lock:
            yield from stream(self.model, self.tokenizer, text, settings, stop)


def check_user_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> tuple[str, list[str]]:
    """Reject empty prompts; truncate over-long ones with a notice the UI can show."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: type a message first")
    notices = []
    if len(prompt) > max_chars:
        notices.append(f"prompt truncated from {len(prompt)} to {max_chars} characters")
        prompt = prompt[:max_chars]
    return prompt, notices
