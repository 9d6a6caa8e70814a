"""A steerable RiC text model: preference weights in, conditioned reply and its rewards out.

This is the one object the app, the evaluator, data preparation, MORS and the benchmarks drive.
It bundles a generation engine (ric.generation: "transformers" or the fast "onnx" one, picked by
name), the tokenizer, the artifact's metadata (reward names, statistics, prompt format) and the
reward functions, so that a caller never re-implements the mapping, the prompt format or the
decode loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ric.artifacts import RicMeta
from ric.conditioning import ConditioningFormat, format_conditioned_prompt, format_plain_prompt
from ric.generation import Batcher, Completion, Engine, GenerationSettings, TransformersEngine
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
    every plot means. `engine` defaults to the transformers one over `model`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        meta: RicMeta,
        conditioned: bool = True,
        engine: Engine | None = None,
    ):
        self._model, self.tokenizer, self.meta = model, tokenizer, meta
        self.engine = engine or TransformersEngine(model, tokenizer)
        self.stats = RewardStats.from_dict(meta.stats)
        self.fmt = ConditioningFormat.from_dict(meta.conditioning)
        self.conditioned = conditioned
        self._rewards = [get_reward_fn(n) for n in meta.reward_names]
        # Batch jobs (sweeps, data) take the engine one at a time; live users share it through
        # the batcher, which runs their requests together.
        self.lock = threading.Lock()
        self._batcher: Batcher | None = None
        self._load_args: dict = {}
        # Adapter folders that answer besides the evaluated one (a baseline policy's own; its
        # meta only lends the reward statistics): a resumed sweep checks their weights too.
        self.sources: list[Path] = []

    @classmethod
    def load(
        cls,
        adapter: str | Path | None = None,
        model: str | None = None,
        dtype: str = "bfloat16",
        meta: RicMeta | None = None,
        backend: str = "auto",
        threads: int | None = None,
    ) -> SteerableModel:
        """From a RiC adapter folder, or an unconditioned base model with given `meta`.

        backend: a name from ric.models.BACKENDS ("transformers", "onnx", "onnx-fp32", ...) or
        "auto" (onnx int8 on a CPU-only machine, transformers where CUDA is available).
        """
        from ric.models import load_adapter_meta, load_engine

        if adapter is not None:
            meta = load_adapter_meta(adapter)
        elif meta is None:
            raise ValueError("pass a RiC adapter folder, or metadata for an unconditioned model")
        name = model if adapter is not None else (model or meta.base_model)
        args = {"name": name, "adapter": adapter, "dtype": dtype}
        engine, torch_model, tok = load_engine(backend, threads=threads, **args)
        steer = cls(torch_model, tok, meta, conditioned=adapter is not None, engine=engine)
        steer._load_args = args
        return steer

    @property
    def model(self):
        """The torch model (for log-probabilities and training probes); loaded on first use
        when the engine is not the transformers one."""
        if self._model is None:
            from ric.models import load_model

            a = self._load_args
            self._model, _ = load_model(a["name"], adapter=a["adapter"], dtype=a["dtype"])
        return self._model

    @property
    def reward_names(self) -> list[str]:
        return list(self.meta.reward_names)

    @property
    def backend(self) -> str:
        return self.engine.name

    def desired(self, weights: Sequence[float], method: str | None = None) -> np.ndarray:
        return preference_to_rewards(weights, method=method or self.meta.mapping, stats=self.stats)

    def prompt(
        self,
        messages: str | list[dict],
        desired: Sequence[float] | None,
        system: str | None = None,
    ) -> str:
        """Model input for a chat (str = one user turn); tags only when conditioned. `system`
        replaces the system turn: a hidden sampling instruction that no training prompt keeps."""
        if not self.conditioned or desired is None:
            return format_plain_prompt(messages, self.tokenizer, self.fmt, system=system)
        return format_conditioned_prompt(
            messages,
            desired,
            self.fmt,
            tokenizer=self.tokenizer,
            names=self.reward_names,
            system=system,
        )

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Normalized rewards, shape (n, n_rewards); reward models see prompts without tags."""
        raw = np.stack([fn(prompts, responses) for fn in self._rewards], axis=1)
        return self.stats.normalize(raw)

    def complete(
        self,
        inputs: list[str],
        settings: GenerationSettings | None = None,
        seed: int | None = None,
        batch_size: int = 16,
        progress: bool = True,
        desc: str = "generating",
    ) -> list[Completion]:
        """Completions of fully formatted model inputs (data sampling, MORS, sweeps)."""
        with self.lock:
            return self.engine.complete(inputs, settings, seed, batch_size, progress, desc)

    def complete_batch(
        self,
        prompts: list[str],
        weights: Sequence[float],
        settings: GenerationSettings | None = None,
        method: str | None = None,
        batch_size: int = 16,
        seed: int | None = None,
        progress: bool = True,
        system: str | None = None,
    ) -> tuple[list[Completion], np.ndarray, np.ndarray]:
        """(completions, desired (n_rewards,), achieved (n, n_rewards)) for single-turn prompts;
        the rewards score the prompts alone, never `system`."""
        desired = self.desired(weights, method)
        inputs = [self.prompt(p, desired, system) for p in prompts]
        done = self.complete(inputs, settings, seed, batch_size, progress)
        return done, desired, self.score(prompts, [c.text for c in done])

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
        done, desired, achieved = self.complete_batch(
            prompts, weights, settings, method, batch_size, seed, progress
        )
        return [c.text for c in done], desired, achieved

    def reply(
        self,
        prompt: str,
        weights: Sequence[float],
        method: str | None = None,
        settings: GenerationSettings | None = None,
        seed: int | None = None,
    ) -> Reply:
        """One single-turn reply with its desired and achieved rewards. Without a seed it joins
        whatever other live requests are running (one batch); a seed makes it repeatable, so it
        runs alone."""
        prompt, notices = check_user_prompt(prompt)
        if seed is None:
            desired = self.desired(weights, method)
            *_, text = ("", *self.batcher.stream(self.prompt(prompt, desired), settings))
            achieved = self.score([prompt], [text])
        else:
            texts, desired, achieved = self.generate_batch(
                [prompt], weights, settings, method, batch_size=1, seed=seed, progress=False
            )
            text = texts[0]
        return Reply(
            text, list(map(float, weights)), desired.tolist(), achieved[0].tolist(), notices
        )

    @property
    def batcher(self) -> Batcher:
        if self._batcher is None:
            self._batcher = Batcher(self.engine)
        return self._batcher

    def queue_position(self) -> int:
        """Requests ahead of a new live one (0: it starts at once)."""
        return self._batcher.position() if self._batcher else 0

    def stream_chat(
        self,
        messages: str | list[dict],
        weights: Sequence[float],
        method: str | None = None,
        settings: GenerationSettings | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Growing reply text for a chat whose last message is the user's. Concurrent callers
        are decoded together in one batch (their weights may differ)."""
        desired = self.desired(weights, method)
        yield from self.batcher.stream(self.prompt(messages, desired), settings, stop)


def check_user_prompt(prompt: str, max_chars: int = MAX_PROMPT_CHARS) -> tuple[str, list[str]]:
    """Reject what is not text (or not valid Unicode) and empty prompts; truncate over-long ones
    with a notice the UI can show. Tags and control tokens are removed later, where the prompt
    is formatted for the model (ric.conditioning.sanitize_with_notices)."""
    from ric.validation import check_text

    prompt = check_text(prompt, "prompt")
    if not prompt.strip():
        raise ValueError("the prompt is empty: type a message first")
    notices = []
    if len(prompt) > max_chars:
        notices.append(f"prompt truncated from {len(prompt)} to {max_chars} characters")
        prompt = prompt[:max_chars]
    return prompt, notices
