"""Text generation engines: one interface, chosen by name, behind every generated reply.

A RiC model is one causal LM plus plain-text tags, so anything that runs a causal LM can serve
it. Two engines implement the same three calls (`complete`, `stream_batch`, `stream`):

- "transformers": the reference. Batches are left-padded; `model.generate` does the sampling.
- "onnx": onnxruntime-genai on an int8 (or fp32) export of the model with any LoRA merged in
  (ric.models.onnx_model_dir builds and caches it). Batch-1 decoding of the 135M default runs at
  4-5x the speed of transformers on this 2-core CPU (docs/ENGINES.md has the measured table).
  Its batches are RIGHT-padded: its attention kernel reads each row's length from the mask and
  expects the prompt at the start of the row; left padding changed greedy outputs in our probe.

Callers never pick tokens themselves: they go through ric.steering.SteerableModel, which owns
an engine. `Batcher` lets concurrent users share one forward pass.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    repetition_penalty: float = 1.0
    # transformers' own default, stated so every engine samples alike; it also spares
    # onnxruntime-genai a full-vocabulary sort per row (47 -> 32 ms a step at batch 16).
    top_k: int = 50
    # token id -> added to its logit before any other change (OpenAI's and vLLM's `logit_bias`,
    # transformers' `sequence_bias` of one-token sequences). ric.data uses it as a hidden push
    # while sampling training answers; the app never sets it.
    logit_bias: dict[int, float] | None = None

    def __post_init__(self) -> None:
        if not (
            isinstance(self.max_new_tokens, int)
            and not isinstance(self.max_new_tokens, bool)
            and 1 <= self.max_new_tokens <= 4096
        ):
            raise ValueError(
                f"max_new_tokens must be an int in [1, 4096], got {self.max_new_tokens!r}"
            )
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ValueError(f"top_k must be an int >= 0 (0: no limit), got {self.top_k!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for t, b in (self.logit_bias or {}).items():
            number = isinstance(b, Real) and not isinstance(b, bool) and np.isfinite(b)
            if not (isinstance(t, int) and not isinstance(t, bool) and t >= 0 and number):
                raise ValueError(
                    f"logit_bias maps token ids (ints >= 0) to finite numbers, got {t!r}: {b!r}"
                )

    def kwargs(self) -> dict:
        """Keyword arguments of transformers' `generate`."""
        kw = asdict(self)
        if not self.do_sample:
            kw.pop("temperature"), kw.pop("top_p"), kw.pop("top_k")
        bias = kw.pop("logit_bias")
        if bias:
            kw["sequence_bias"] = {(t,): float(b) for t, b in bias.items()}
        return kw

    def sampling_key(self) -> tuple:
        """Requests whose keys are equal can share one batch (max_new_tokens may differ)."""
        bias = tuple(sorted((self.logit_bias or {}).items()))
        return (
            self.do_sample,
            self.temperature,
            self.top_p,
            self.top_k,
            self.repetition_penalty,
            bias,
        )


@dataclass
class Completion:
    """One generated reply: the text (special tokens dropped), the number of tokens the model
    generated, and whether it ended by itself (end-of-text) rather than at the token cap."""

    text: str
    n_tokens: int
    finished: bool


def _encode(tokenizer, prompts: Sequence) -> list[list[int]]:
    """Token ids of each prompt: a str is tokenized, a list of ids (a prompt plus the reply so
    far, when the Batcher restarts a batch) is taken as it is."""
    if isinstance(prompts, str) or not all(
        isinstance(p, str) or (isinstance(p, list) and all(isinstance(t, int) for t in p))
        for p in prompts
    ):
        raise ValueError("prompts must be a list of str")
    return [
        p if isinstance(p, list) else tokenizer(p, add_special_tokens=False).input_ids
        for p in prompts
    ]


def eos_ids(tokenizer, model_config=None) -> set[int]:
    """Every id that ends a reply: the tokenizer's EOS and the generation config's."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    extra = getattr(model_config, "eos_token_id", None)
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return ids


class _Rows:
    """Per-row token bookkeeping shared by the engines' decode loops."""

    def __init__(self, tokenizer, n: int, caps: Sequence[int], stops: set[int]):
        self.tok, self.caps, self.stops = tokenizer, list(caps), stops
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.done = [False] * n
        self.finished = [False] * n

    def add(self, row: int, token: int) -> None:
        if self.done[row]:
            return
        if token in self.stops:
            self.done[row] = self.finished[row] = True
            return
        self.ids[row].append(int(token))
        if len(self.ids[row]) >= self.caps[row]:
            self.done[row] = True

    def text(self, row: int) -> str:
        return self.tok.decode(self.ids[row], skip_special_tokens=True).strip()

    def completions(self) -> list[Completion]:
        return [
            Completion(self.text(i), len(self.ids[i]) + self.finished[i], self.finished[i])
            for i in range(len(self.ids))
        ]


class Engine:
    """What every engine offers. Prompts are fully formatted model inputs (chat template and
    tags already applied); texts come back stripped, in the caller's order."""

    name = "engine"
    tokenizer = None

    @property
    def label(self) -> str:
        """The engine and its number format ("onnx int8"), as fronts record it."""
        return self.name

    def stream_batch(
        self,
        prompts: list[str],
        settings: GenerationSettings,
        caps: Sequence[int] | None = None,
        seed: int | None = None,
        stop: Callable[[int], bool] | None = None,
    ) -> Iterator[_Rows]:
        """Decode one batch, yielding the shared row state after every step. `caps` is each
        row's own token cap (default: settings.max_new_tokens); `stop(row)` ends a row early.
        A prompt may also be a list of token ids (taken as they are)."""
        raise NotImplementedError

    def complete(
        self,
        prompts: Sequence[str],
        settings: GenerationSettings | None = None,
        seed: int | None = None,
        batch_size: int = 16,
        progress: bool = True,
        desc: str = "generating",
    ) -> list[Completion]:
        """Batched generation, shortest prompts first so batches waste little on padding.

        A batch runs until its longest reply ends. Refilling the rows of replies that ended
        with waiting prompts (restarting the batch from each unfinished row's prompt plus its
        tokens) was tried and was slower here: onnxruntime-genai re-reads those tokens at a
        fraction of its decoding rate."""
        settings = settings or GenerationSettings()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        encoded = _encode(self.tokenizer, prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        out: list[Completion | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
        for k, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start : start + batch_size]
            # One seed per batch, derived from the caller's: a resumed job that redoes batch k
            # draws the same samples as the first attempt did.
            batch_seed = None if seed is None else seed * 100_003 + k
            *_, rows = self.stream_batch([encoded[i] for i in idx], settings, seed=batch_seed)
            for i, c in zip(idx, rows.completions(), strict=True):
                out[i] = c
            bar.update(len(idx))
        bar.close()
        return out

    def stream(
        self,
        prompt: str,
        settings: GenerationSettings | None = None,
        stop: threading.Event | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The growing reply text for one prompt; `stop` (the UI's Stop button) ends it."""
        settings = settings or GenerationSettings()
        stop = stop or threading.Event()
        last = None
        for rows in self.stream_batch([prompt], settings, seed=seed, stop=lambda _: stop.is_set()):
            text = rows.text(0)
            if text != last:
                last = text
                yield text


class TransformersEngine(Engine):
    """The reference engine: `model.generate` on a left-padded batch."""

    name = "transformers"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @property
    def label(self) -> str:
        return f"{self.name} {str(self.model.dtype).removeprefix('torch.')}"

    def stream_batch(self, prompts, settings, caps=None, seed=None, stop=None):
        from transformers import StoppingCriteria, StoppingCriteriaList

        encoded = _encode(self.tokenizer, prompts)
        caps = list(caps or [settings.max_new_tokens] * len(prompts))
        rows = _Rows(self.tokenizer, len(prompts), caps, eos_ids(self.tokenizer, self.model.config))
        if seed is not None:
            torch.manual_seed(seed)
        enc = self.tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(self.model.device)
        steps: queue.Queue = queue.Queue()
        stop = stop or (lambda _: False)

        class _Streamer:  # transformers calls put() with the prompt first, then each step
            seen_prompt = False

            def put(self, value):
                if not self.seen_prompt:
                    self.seen_prompt = True
                    return
                steps.put(value.reshape(-1).tolist())

            def end(self):
                steps.put(None)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                for r in range(len(prompts)):
                    if not rows.done[r] and stop(r):
                        rows.done[r] = True
                return all(rows.done)

        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        **enc,
                        **{**settings.kwargs(), "max_new_tokens": max(caps)},
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=_Streamer(),
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                    )
            except BaseException as e:  # re-raised below, not lost in the thread
                errors.append(e)
                steps.put(None)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while (tokens := steps.get()) is not None:
            for r, t in enumerate(tokens):
                rows.add(r, t)
            yield rows
        thread.join()
        if errors:
            raise errors[0]
        for r in range(len(prompts)):  # rows cut by the stop callback or the shared cap
            rows.done[r] = True
        yield rows


class OnnxEngine(Engine):
    """onnxruntime-genai on an exported folder (genai_config.json + model.onnx)."""

    name = "onnx"

    def __init__(self, folder: str | Path, tokenizer, threads: int | None = None):
        import onnxruntime_genai as og

        self.og, self.tokenizer, self.folder = og, tokenizer, Path(folder)
        self.threads = threads or default_threads()
        info = json.loads((self.folder / "genai_config.json").read_text())["model"]
        self.stops = eos_ids(tokenizer) | set(_as_list(info.get("eos_token_id")))
        # The pad id must never occur inside a prompt: onnxruntime-genai masks every position
        # that holds it. SmolLM2's own pad id is <|im_end|>, which every chat prompt contains,
        # so pad with a special token outside the chat template (<|endoftext|> there).
        self.pad_id = _pick_pad_id(tokenizer, self.stops)
        self.context = int(info.get("context_length") or 2048)
        cfg = og.Config(str(self.folder))
        options = {
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
            # Spinning threads busy-wait between ops and steal the core a second job needs.
            "allow_spinning": "0",
        }
        cfg.overlay(
            json.dumps(
                {"model": {"pad_token_id": self.pad_id, "decoder": {"session_options": options}}}
            )
        )
        self.model = og.Model(cfg)
        source = self.folder / "source.json"
        source = json.loads(source.read_text()) if source.exists() else {}
        self.precision = source.get("precision")
        # An export with reward vectors (ric.vectors.add_to_onnx) takes each row's tag values.
        vectors, self.vectors = source.get("reward_vectors"), None
        if vectors:
            from ric.conditioning import ConditioningFormat

            fmt = ConditioningFormat.from_dict(vectors["conditioning"])
            self.vectors = (fmt, int(vectors["n_rewards"]))

    @property
    def label(self) -> str:
        return f"{self.name} {self.precision}" if self.precision else self.name

    def stream_batch(self, prompts, settings, caps=None, seed=None, stop=None):
        og = self.og
        encoded = _encode(self.tokenizer, prompts)
        caps = list(caps or [settings.max_new_tokens] * len(prompts))
        rows = _Rows(self.tokenizer, len(prompts), caps, self.stops)
        if any(self.pad_id in ids for ids in encoded) and len(prompts) > 1:
            # A prompt holding the pad id cannot share a padded batch: run rows one by one.
            for r, p in enumerate(prompts):
                for sub in self.stream_batch([p], settings, [caps[r]], seed, None):
                    rows.ids[r], rows.done[r], rows.finished[r] = (
                        sub.ids[0],
                        sub.done[0],
                        sub.finished[0],
                    )
                    yield rows
            return
        width = max(len(ids) for ids in encoded)
        if width >= self.context:
            raise ValueError(
                f"the prompt is {width} tokens, longer than the model's context of "
                f"{self.context}: shorten it or start a new chat"
            )
        # The engine refuses a max_length beyond the context: cap the replies there instead.
        caps = [min(c, self.context - width) for c in caps]
        rows.caps = caps
        batch = np.full((len(prompts), width), self.pad_id, dtype=np.int32)
        for r, ids in enumerate(encoded):
            batch[r, : len(ids)] = ids  # right padding: see the module docstring
        params = og.GeneratorParams(self.model)
        search = {
            "max_length": width + max(caps),
            "batch_size": len(prompts),
            "do_sample": settings.do_sample,
        }
        if settings.do_sample:
            search.update(
                temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k
            )
            if seed is not None:
                search["random_seed"] = int(seed) % (2**31)
        params.set_search_options(**search)
        gen = og.Generator(self.model, params)
        if self.vectors:
            from ric.vectors import tag_values

            # onnxruntime-genai keeps a pointer to this buffer, not a copy, and reads it at every
            # decode step: it must live as long as `gen` (a temporary array was freed and
            # reused, and the steps after the first read garbage).
            reward_z = np.asarray(tag_values(encoded, self.tokenizer, *self.vectors), np.float32)
            gen.set_model_input("reward_z", reward_z)
        gen.append_tokens(batch)
        stop = stop or (lambda _: False)
        penalty, bias = settings.repetition_penalty, settings.logit_bias or {}
        if bias:
            bias_ids = np.fromiter(bias, dtype=np.int64)
            bias_values = np.array([bias[t] for t in bias_ids], dtype=np.float32)
        while not (all(rows.done) or gen.is_done()):
            if penalty != 1.0 or bias:
                logits = np.array(gen.get_logits(), dtype=np.float32)
                last = logits.reshape(len(encoded), -1, logits.shape[-1])[:, -1]
                if bias:  # first, as transformers orders its logits processors
                    last[:, bias_ids] += bias_values
                if penalty != 1.0:
                    self._penalize(last, encoded, rows, penalty)
                gen.set_logits(logits)
            gen.generate_next_token()
            for r, t in enumerate(gen.get_next_tokens()):
                rows.add(r, int(t))
                if not rows.done[r] and stop(r):
                    rows.done[r] = True
            yield rows
        for r in range(len(prompts)):
            rows.done[r] = True

    @staticmethod
    def _penalize(last: np.ndarray, encoded, rows: _Rows, penalty: float) -> None:
        """transformers' repetition penalty, applied here rather than by onnxruntime-genai:
        its own left fewer replies ending by themselves (the probe in
        train/recipes/cpu_data.yaml). Every token already in a row (prompt and reply, not padding) has its
        logit divided by the penalty when positive, multiplied when negative. Greedy replies
        then match transformers' token for token (tests/test_generation.py)."""
        for r, prompt in enumerate(encoded):
            seen = np.unique(np.asarray(prompt + rows.ids[r], dtype=np.int64))
            v = last[r, seen]
            last[r, seen] = np.where(v > 0, v / penalty, v * penalty)


class VllmEngine(Engine):
    """vLLM on a GPU over the merged model folder: offline batches for sweeps, data sampling
    and MORS. It does not stream: `stream_batch` yields once, when the batch is done (to serve
    the app on a GPU, run `vllm serve` on the same folder: docs/ENGINES.md). Not testable on
    the project's CPU machines; tests skip it when vllm is not installed."""

    name = "vllm"

    def __init__(self, folder: str | Path, tokenizer, dtype: str = "bfloat16", **llm_kwargs):
        from vllm import LLM

        self.tokenizer, self.folder = tokenizer, Path(folder)
        self.llm = LLM(model=str(folder), dtype=dtype, trust_remote_code=False, **llm_kwargs)

    def stream_batch(self, prompts, settings, caps=None, seed=None, stop=None):
        from vllm import SamplingParams

        encoded = _encode(self.tokenizer, prompts)
        caps = list(caps or [settings.max_new_tokens] * len(prompts))
        rows = _Rows(self.tokenizer, len(prompts), caps, eos_ids(self.tokenizer))
        params = [
            SamplingParams(
                max_tokens=cap,
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p if settings.do_sample else 1.0,
                top_k=settings.top_k if settings.do_sample and settings.top_k else -1,
                repetition_penalty=settings.repetition_penalty,
                logit_bias=settings.logit_bias,
                seed=None if seed is None else seed + r,
            )
            for r, cap in enumerate(caps)
        ]
        ids = [{"prompt_token_ids": e} for e in encoded]
        for r, out in enumerate(self.llm.generate(ids, params, use_tqdm=False)):
            choice = out.outputs[0]
            for t in choice.token_ids:
                rows.add(r, t)
            if choice.finish_reason == "stop" and not rows.finished[r]:
                rows.finished[r] = True  # vLLM may leave the end token out of token_ids
            rows.done[r] = True
        yield rows


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return [x] if isinstance(x, int) else list(x)


def _pick_pad_id(tokenizer, stops: set[int]) -> int:
    """A special token that is not an end token and not part of the chat template."""
    template = tokenizer.chat_template or ""
    for tok_text in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()):
        tid = tokenizer.convert_tokens_to_ids(tok_text)
        if tid is not None and tid not in stops and tok_text not in template:
            return int(tid)
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def default_threads() -> int:
    """One thread per core this process may use: OMP_NUM_THREADS if set (a background job
    given one core), else torch's count."""
    env = os.environ.get("OMP_NUM_THREADS")
    return int(env) if env and env.isdigit() and int(env) > 0 else torch.get_num_threads()


ENGINES = {"transformers": TransformersEngine, "onnx": OnnxEngine, "vllm": VllmEngine}


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
    """Texts for formatted prompts through the reference engine (tests and probes only: the
    product goes through SteerableModel)."""
    engine = TransformersEngine(model, tokenizer)
    return [c.text for c in engine.complete(prompts, settings, seed, batch_size, progress, desc)]


@dataclass
class _Request:
    ids: list[int]  # the prompt's tokens
    settings: GenerationSettings
    stop: threading.Event
    out: queue.Queue = field(default_factory=queue.Queue)
    reply: list[int] = field(default_factory=list)  # tokens decoded before a restart
    shown: str = ""
    ended: bool = False


class Batcher:
    """Serve concurrent streaming requests from one engine, several per forward pass.

    A worker thread takes every request waiting when it is free (after a short gathering
    window, so users who click together share a batch), groups them by sampling settings, and
    decodes each group as one batch, streaming every row to its own caller. Weights may differ
    between rows: only the tags in the prompts differ. `position()` tells a waiting user how
    many requests are ahead of theirs.

    Late joiners: users who "click together" reach the server spread over a second or more
    (bench/load.py saw 16 arrive as batches of 2, 2 and 12). While the running batch is young
    (its longest reply at most `join_tokens` tokens), a request with the same sampling settings
    restarts it: every running row continues from its prompt plus the tokens it already has,
    re-read in one prefill, beside the newcomers. Re-reading is not free (onnxruntime-genai
    reads prompts only about twice as fast as it decodes a full batch: bench/throughput.py's
    prefill_tok_s), so a batch restarts only while it would re-read at most `join_reread`
    tokens. Only the replies' randomness changes; greedy replies stay token for token the same
    (tests).
    """

    def __init__(
        self,
        engine: Engine,
        max_batch: int = 16,
        window_s: float = 0.03,
        join_tokens: int = 16,
        join_reread: int = 512,
    ):
        self.engine, self.max_batch, self.window_s = engine, max_batch, window_s
        self.join_tokens, self.join_reread = join_tokens, join_reread
        self._pending: list[_Request] = []
        self._cv = threading.Condition()
        self._busy = 0
        # sizes of the latest batches decoded (restarts included); bounded: the app runs for days
        self.batches: deque[int] = deque(maxlen=256)
        threading.Thread(target=self._work, daemon=True, name="ric-batcher").start()

    def position(self) -> int:
        with self._cv:
            return len(self._pending) + self._busy

    def stream(
        self,
        prompt: str,
        settings: GenerationSettings | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        ids = _encode(self.engine.tokenizer, [prompt])[0]
        req = _Request(ids, settings or GenerationSettings(), stop or threading.Event())
        with self._cv:
            self._pending.append(req)
            self._cv.notify()
        while True:
            items = [req.out.get()]
            while not req.out.empty():  # the worker may run ahead of a slow reader: skip to
                items.append(req.out.get())  # the newest text rather than replay each step
            texts = [v for k, v in items if k == "text"]
            if texts:
                yield texts[-1]
            for kind, value in items:
                if kind == "error":
                    raise value
                if kind == "end":
                    return
            if req.stop.is_set():  # stopped: what was shown is the reply
                return

    def _take(self) -> list[_Request]:
        with self._cv:
            while not self._pending:
                self._cv.wait()
        # Gather: keep waiting while requests still trickle in (users who clicked together
        # reach the server over a few hundred ms), at most 5 windows.
        seen = 0
        for _ in range(5):
            time.sleep(self.window_s)
            with self._cv:
                if len(self._pending) == seen or len(self._pending) >= self.max_batch:
                    break
                seen = len(self._pending)
        with self._cv:
            return self._claim(self._pending[0].settings.sampling_key(), self.max_batch)

    def _claim(self, key: tuple, room: int) -> list[_Request]:
        """Take up to `room` pending requests with sampling key `key` (lock held)."""
        group = [r for r in self._pending if r.settings.sampling_key() == key][:room]
        self._pending = [r for r in self._pending if r not in group]
        self._busy += len(group)
        return group

    def _work(self) -> None:
        while True:
            group = self._take()
            while group:
                group = self._run(group)

    def _run(self, group: list[_Request]) -> list[_Request]:
        """Decode `group` until it ends (-> []) or late joiners restart it (-> the rows that
        go on, with the joiners)."""
        key, restart = group[0].settings.sampling_key(), [False]
        tok = self.engine.tokenizer
        self.batches.append(len(group))
        try:
            for rows in self.engine.stream_batch(
                [r.ids + r.reply for r in group],
                group[0].settings,
                caps=[r.settings.max_new_tokens - len(r.reply) for r in group],
                stop=lambda i: restart[0] or group[i].stop.is_set(),
            ):
                for i, r in enumerate(group):
                    if r.ended:
                        continue
                    text = tok.decode(r.reply + rows.ids[i], skip_special_tokens=True).strip()
                    if text != r.shown:
                        r.shown = text
                        r.out.put(("text", text))
                    if rows.done[i] and not restart[0]:
                        self._end(r)
                if not restart[0] and self._joiners_waiting(group, rows, key):
                    restart[0] = True
        except BaseException as e:  # every waiting caller hears of it
            for r in group:
                if not r.ended:
                    self._end(r, ("error", e))
            return []
        going = []
        for i, r in enumerate(group):
            if r.ended:
                continue
            r.reply += rows.ids[i]
            cut = r.stop.is_set() or len(r.reply) >= r.settings.max_new_tokens
            if not restart[0] or rows.finished[i] or cut:
                self._end(r)
            else:
                going.append(r)
        with self._cv:
            return going + self._claim(key, self.max_batch - len(going)) if going else []

    def _end(self, r: _Request, message=("end", None)) -> None:
        with self._cv:  # counted out before its caller hears, so position() is already right
            self._busy -= 1
        r.ended = True
        r.out.put(message)

    def _joiners_waiting(self, group: list[_Request], rows: _Rows, key: tuple) -> bool:
        pairs = list(zip(group, rows.ids, strict=True))
        longest = max(len(r.reply) + len(ids) for r, ids in pairs)
        reread = sum(len(r.ids) + len(r.reply) + len(ids) for r, ids in pairs if not r.ended)
        if longest > self.join_tokens or reread > self.join_reread or len(group) >= self.max_batch:
            return False
        with self._cv:
            return any(r.settings.sampling_key() == key for r in self._pending)


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
