"""Throughput of the offline-data pipeline, and decode speed against the memory-bandwidth bound.

    python bench/throughput.py                                  # embedded default -> runs/bench/
    python bench/throughput.py --model DIR --n 4 --out /tmp/throughput.json      # smoke test

1. Data pipeline (the inner loop of train/prepare_dataset.py): --n training prompts, each gets a
   sampled response that every offline reward scores. Either one sample at a time (generate,
   then score, prompt by prompt: how the released code generated) or batched
   (ric.generation.generate in length-sorted batches of --batch-size, then one scoring call per
   reward). Same prompts and sampling settings; reward models are loaded before timing.
2. Decode at batch 1: (T - 1) / (t(T tokens) - t(1 token)), both forced to exactly that many
   tokens (min_new_tokens), median of --repeats, greedy. The bound: every new token reads every
   weight once (the lm_head's full matrix, but only one row of an untied input embedding), so
   tokens/s <= bandwidth / weight bytes. Bandwidth: the best of a large numpy copy (one thread)
   and a torch copy (torch's threads), counting the bytes read plus the bytes written.
Writes --out (runs/bench/throughput.json); bench/fronts.py --report-only puts it in the docs.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ric.artifacts import write_json
from ric.baselines import machine_info
from ric.generation import GenerationSettings, generate
from ric.models import load_model
from ric.rewards import get_reward_fn
from ric.training import read_prompts

# What cpu_data.yaml samples with (rewards, temperature, top_p).
DATA_REWARDS = "relevance,positivity,brevity,harmlessness"


def copy_bandwidth(mb: int, repeats: int = 5) -> dict:
    """Bytes moved per second (read + write) by the fastest of `repeats` large copies."""
    n = mb * 2**20 // 4
    a, b = np.ones(n, np.float32), np.empty(n, np.float32)
    ta, tb = torch.ones(n), torch.empty(n)
    out = {}
    for name, copy in (
        ("numpy_copy", lambda: np.copyto(b, a)),
        ("torch_copy", lambda: tb.copy_(ta)),
    ):
        copy()  # touch the pages first
        best = min(_timed(copy) for _ in range(repeats))
        out[name] = 2 * a.nbytes / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def weight_bytes_per_token(model) -> tuple[int, int]:
    """(bytes read per decoded token, parameter count), tied weights counted once."""
    seen, total, count = set(), 0, 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        total += p.numel() * p.element_size()
        count += p.numel()
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    if emb.data_ptr() != head.data_ptr():  # untied: a lookup reads one row, not the matrix
        total -= (emb.shape[0] - 1) * emb.shape[1] * emb.element_size()
    return total, count


def pipeline(model, tok, prompts: list[str], rewards, settings, batch_size: int) -> dict:
    """Sequential vs batched generate + score of the same prompts."""
    inputs = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]

    def n_tokens(texts):
        return sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)

    def sequential():
        texts = []
        for p, x in zip(prompts, inputs, strict=True):
            text = generate(model, tok, [x], settings, batch_size=1, progress=False)
            for fn in rewards:
                fn([p], text)
            texts += text
        return texts

    def batched():
        texts = generate(model, tok, inputs, settings, batch_size=batch_size, progress=False)
        for fn in rewards:
            fn(prompts, texts)
        return texts

    out = {}
    for name, run, label in (
        ("sequential", sequential, "one sample at a time (released code)"),
        ("batched", batched, f"batched, batch size {batch_size} (ric)"),
    ):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        texts = run()
        dt = time.perf_counter() - t0
        tokens = n_tokens(texts)
        out[name] = {
            "label": label,
            "seconds": dt,
            "responses": len(texts),
            "new_tokens": tokens,
            "responses_per_s": len(texts) / dt,
            "tokens_per_s": tokens / dt,
        }
    out["speedup"] = out["batched"]["responses_per_s"] / out["sequential"]["responses_per_s"]
    return out


@torch.inference_mode()
def decode(model, tok, prompt: str, tokens: int, repeats: int) -> dict:
    enc = tok(
        tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        ),
        return_tensors="pt",
        add_special_tokens=False,
    )

    def run(n):
        return _timed(
            lambda: model.generate(
                **enc,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        )

    run(2)  # warm-up
    t1 = statistics.median(run(1) for _ in range(repeats))
    tn = statistics.median(run(tokens) for _ in range(repeats))
    return {"tokens": tokens, "repeats": repeats, "tokens_per_s": (tokens - 1) / (tn - t1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=None, help="model id or path (default: embedded SmolLM2)")
    p.add_argument("--dtype", default="bfloat16", help="as the data pipeline and evaluation use")
    p.add_argument("--prompts", default="assets/prompts/train.txt")
    p.add_argument("--n", type=int, default=48, help="prompts for the pipeline comparison")
    p.add_argument("--batch-size", type=int, default=48, help="batched mode (cpu_data.yaml: 48)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rewards", default=DATA_REWARDS, help="comma-separated reward names")
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bw-mb", type=int, default=512, help="copy size, well above the caches")
    p.add_argument("--out", default="runs/bench/throughput.json")
    args = p.parse_args(argv)

    model, tok = load_model(args.model, dtype=args.dtype)
    prompts = read_prompts(args.prompts)[: args.n]
    rewards = [get_reward_fn(n) for n in args.rewards.split(",") if n]
    for fn in rewards:  # load the reward models before timing
        fn(prompts[:1], ["warm-up"])
    generate(model, tok, prompts[:1], GenerationSettings(2), progress=False)
    settings = GenerationSettings(args.max_new_tokens, temperature=0.8, top_p=0.95)
    pipe = pipeline(model, tok, prompts, rewards, settings, args.batch_size)

    dec = decode(model, tok, prompts[0], args.decode_tokens, args.repeats)
    bw = copy_bandwidth(args.bw_mb)
    method = max(bw, key=bw.get)
    nbytes, nparams = weight_bytes_per_token(model)
    bound = bw[method] * 1e9 / nbytes
    dec.update(
        bytes_per_token=nbytes,
        n_params=nparams,
        bandwidth=bw,
        bandwidth_method=method,
        bandwidth_gb_s=bw[method],
        bound_tokens_per_s=bound,
        fraction_of_bound=dec["tokens_per_s"] / bound,
    )
    result = {
        "model": args.model or "smollm2-135m-instruct",
        "dtype": args.dtype,
        "n": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "rewards": args.rewards.split(","),
        "machine": machine_info(),
        "command": "python bench/throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "pipeline": pipe,
        "decode": dec,
    }
    write_json(Path(args.out), result)
    print(
        f"pipeline: {pipe['sequential']['responses_per_s']:.2f} -> "
        f"{pipe['batched']['responses_per_s']:.2f} responses/s ({pipe['speedup']:.1f}x); decode "
        f"{dec['tokens_per_s']:.1f} tok/s, bound {bound:.1f} ({100 * dec['fraction_of_bound']:.0f}%)"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
