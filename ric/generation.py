"""Batched and streamed text generation.

Batch-1 decoding of a small model on a CPU is bound by reading the weights once per token, so
throughput comes from batching many prompts per forward pass. Prompts are sorted by length so a
batch wastes little on padding, and results come back in the caller's order.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.max_new_tokens, int) and 1 <= self.max_new_tokens <= 4096):
            raise ValueError(
                f"max_new_tokens must be an int in [1, 4096], got {self.max_new_tokens}"
            )
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def kwargs(self) -> dict:
        kw = asdict(self)
        if not self.do_sample:
            kw.pop("temperature"), kw.pop("top_p")
        return kw


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a list of str")
    return list(prompts)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: GenerationSettings | None = None,
    batch_size: int = 16,
    seed: int | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """Responses (special tokens stripped) for fully formatted prompts, in input order."""
    prompts = _check_prompts(prompts)
    settings = settings or GenerationSettings()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if seed is not None:
        torch.manual_seed(seed)
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    out: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        gen = model.generate(**enc, **settings.kwargs(), pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(gen[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            out[i] = text.strip()
        bar.update(len(idx))
    bar.close()
    return out


def stream(
    model, tokenizer, prompt: str, settings: GenerationSettings | None = None, stop=None
) -> Iterator[str]:
    """Yield the growing response text token by token; `stop` is a threading.Event that ends
    generation early (the UI's stop button)."""
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    stop = stop or threading.Event()

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> bool:
            return stop.is_set()

    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **enc,
                    **settings.kwargs(),
                    pad_token_id=tokenizer.pad_token_id,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Stop()]),
                )
        except BaseException as e:  # surfaced to the caller below, not lost in the thread
            errors.append(e)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text.strip()
    thread.join()
    if errors:
        raise errors[0]


def is_degenerate(text: str, min_chars: int = 2, max_repeat_frac: float = 0.5) -> bool:
    """True for empty output or text dominated by one repeated word or line (MORS drops these)."""
    if len(text.strip()) < min_chars:
        return True
    words = re.findall(r"\w+", text.lower())
    if len(words) >= 8:
        top = max(words.count(w) for w in set(words))
        if top / len(words) > max_repeat_frac:
            return True
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return len(lines) >= 4 and len(set(lines)) <= len(lines) // 3
