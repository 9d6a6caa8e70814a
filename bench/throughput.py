"""Generation engines side by side: batch-1 decode against the memory-bandwidth bound, first
token latency, batched throughput, and the data pipeline's generate + score.

    python bench/throughput.py                            # embedded default -> runs/bench/
    python bench/throughput.py --model DIR --n 4 --decode-tokens 8 --out /tmp/t.json   # smoke

Every backend is measured in the same run, interleaved (backend A, B, A, B, ... for --repeats
rounds, medians reported), so a busy machine slows them alike. For each backend:
- decode_tok_s: one prompt, greedy, (n - 1) / (time of token n - time of token 1);
- first_token_ms: from the call to the first generated token (prompt processing included);
- prefill_tok_s: a batch of --batch-size prompts read at once (the first step), prompt tokens
  per second: what re-reading costs when the app's batcher restarts a batch;
- batched_tok_s: --n prompts sampled in batches of --batch-size, generated tokens per second
  (--batched-repeats interleaved rounds, median);
- pipeline_responses_s: the same plus scoring by the data rewards (train/prepare_dataset.py's
  inner loop), responses per second;
- bound_fraction: decode_tok_s / (bandwidth / bytes read per token). The bytes are the weights a
  token reads: every matrix once, one row of an untied input embedding, no rotary tables.
  Bandwidth: the best large copy (numpy and torch), bytes read plus written.
Threads: --threads for every backend (default: every core), written to the output.

    python bench/throughput.py --report-only        # docs/ENGINES.md from runs/bench/*.json

writes docs/ENGINES.md from this bench's output, bench/load.py's and bench/fidelity.py's.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ric.artifacts import write_json
from ric.conditioning import format_plain_prompt
from ric.data import read_prompts
from ric.generation import Engine, GenerationSettings
from ric.models import load_engine
from ric.rewards import get_reward_fn
from ric.runlog import machine_info

DATA_REWARDS = "relevance,positivity,brevity"
LONG_PROMPT = "Write a detailed story about a lighthouse keeper who finds a message in a bottle."


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


def torch_bytes_per_token(model) -> int:
    """Weight bytes one decoded token reads in a torch model, tied weights counted once."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    if emb.data_ptr() != head.data_ptr():  # untied: a lookup reads one row, not the matrix
        total -= (emb.shape[0] - 1) * emb.shape[1] * emb.element_size()
    return total


def onnx_bytes_per_token(folder: Path) -> int:
    """The same for an onnxruntime-genai export, from its initializers' shapes and types."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    total = 0
    for init in graph.initializer:
        size = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        shape = list(init.dims)
        if "cos_cache" in init.name or "sin_cache" in init.name:
            continue  # one row per position is read, a rounding error
        if "embed_tokens" in init.name and len(shape) == 2:
            shape[0] = 1
        total += int(np.prod(shape)) * size
    return total


def bytes_per_token(engine: Engine) -> int:
    if engine.name == "onnx":
        return onnx_bytes_per_token(engine.folder)
    return torch_bytes_per_token(engine.model)


def decode_once(engine: Engine, prompt: str, tokens: int) -> tuple[float, float, int]:
    """(first-token seconds, decode tokens/s, tokens generated) for one greedy reply."""
    greedy = GenerationSettings(max_new_tokens=tokens, do_sample=False)
    t0 = time.perf_counter()
    stamps = []
    for rows in engine.stream_batch([prompt], greedy):
        if len(rows.ids[0]) > len(stamps):
            stamps.append(time.perf_counter())
    n = len(stamps)
    rate = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan")
    return stamps[0] - t0, rate, n


def prefill_rate(engine: Engine, inputs: list[str]) -> float:
    """Prompt tokens per second of one batched first step (one token generated)."""
    ids = [engine.tokenizer(p, add_special_tokens=False).input_ids for p in inputs]
    one = GenerationSettings(max_new_tokens=1, do_sample=False)
    t0 = time.perf_counter()
    for _ in engine.stream_batch(ids, one):
        break
    return sum(map(len, ids)) / (time.perf_counter() - t0)


def batched_run(engine, inputs, prompts, rewards, settings, batch_size) -> dict:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    done = engine.complete(inputs, settings, seed=0, batch_size=batch_size, progress=False)
    gen_s = time.perf_counter() - t0
    texts = [c.text for c in done]
    for fn in rewards:
        fn(prompts, texts)
    total_s = time.perf_counter() - t0
    tokens = sum(c.n_tokens for c in done)
    return {"tok_s": tokens / gen_s, "responses_s": len(done) / total_s, "tokens": tokens}


def table(t: dict) -> list[str]:
    """The side-by-side table (docs/ENGINES.md and docs/BENCHMARKS.md)."""
    lines = [
        f"{t['model']}{' + ' + t['adapter'] if t.get('adapter') else ''}, {t['threads']} "
        f"thread(s), {t['machine'].get('cpu', 'CPU')}; bandwidth {t['bandwidth_gb_s']:.1f} GB/s "
        f"(best large copy); batched: {t['n']} prompts, batch {t['batch_size']}, "
        f"{t['max_new_tokens']} new tokens. `{t['command']}`",
        "",
        "| backend | batch-1 decode tok/s | % of its bandwidth bound | first token ms "
        "| prefill tok/s | batched tok/s | generate + score responses/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in t["backends"].items():
        lines.append(
            f"| {name} | {r['decode_tok_s']:.1f} | {100 * r['bound_fraction']:.0f}% of "
            f"{r['bound_tok_s']:.0f} ({r['bytes_per_token'] / 1e6:.0f} MB/token) | "
            f"{r['first_token_ms']:.0f} | {r.get('prefill_tok_s', float('nan')):.0f} | "
            f"{r['batched_tok_s']:.0f} | "
            f"{r['pipeline_responses_s']:.2f} |"
        )
    return lines


def report(runs: Path, docs: Path) -> Path:
    """docs/ENGINES.md from the engine benches' JSON files (the parts that exist)."""
    from ric.artifacts import atomic_write_text, read_json

    def load(name):
        f = runs / "bench" / f"{name}.json"
        return read_json(f) if f.exists() else None

    t, load_run, fid = load("throughput"), load("load"), load("fidelity")
    lines = [
        "# Generation engines",
        "",
        "Generated by `python bench/throughput.py --report-only` from the JSON files of",
        "`bench/throughput.py`, `bench/load.py` and `bench/fidelity.py` (their commands below).",
        "What the engines are and how they are chosen: ric/generation.py, ric/models.py",
        "(`--backend auto|transformers|onnx|onnx-int4|onnx-fp32|vllm`).",
        "",
        "## Speed",
        "",
    ]
    lines += table(t) if t else ["Not run yet: `python bench/throughput.py`."]
    lines += ["", "## Concurrent users (the app, /generate)", ""]
    if load_run:
        r = load_run
        lines += [
            f"{r['users']} users x {r['requests_per_user']} request(s), {r['tokens']} new tokens "
            f"each, started together: one user alone {r['single_s']:.2f} s; the last of "
            f"{r['users']} finished after {r['last_s']:.2f} s ({r['last_over_single']:.1f}x); "
            f"p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s; {r['errors']} errors. "
            f"`{r['command']}`",
        ]
    else:
        lines.append("Not run yet: `python bench/load.py --users 16 --tokens 64`.")
    lines += ["", "## Fidelity", ""]
    if fid:
        g, f = fid["greedy"], fid["front"]
        same = ", ".join(f"{k} {v}/{g['prompts']}" for k, v in g["identical"].items())
        lines += [
            f"Greedy replies identical to transformers fp32 (LoRA merged), {g['prompts']} "
            f"held-out prompts, {g['tokens']} tokens: {same}.",
            "",
            f"Greedy fronts, {len(f['weights'])} preference points x {f['prompts']} unseen "
            f"prompts, against {f['reference']} (reference point "
            f"{[round(x, 3) for x in f['reference_point']]}):",
            "",
            "| engine | largest gap in a point's mean reward | hypervolume | vs reference |",
            "|---|---|---|---|",
            f"| {f['reference']} | - | {f['hypervolume'][f['reference']]:.3f} | - |",
        ]
        for k, gap in f["vs_reference"].items():
            lines.append(
                f"| {k} | {gap['max_abs_gap']:.3f} | {f['hypervolume'][k]:.3f} | "
                f"{100 * gap['hypervolume_rel_gap']:.1f}% |"
            )
        if fid.get("ends"):
            e = fid["ends"]
            n = next(iter(e.values()))["replies"]
            lines += [
                "",
                f"Replies that end by themselves (plain prompts, {n} sampled replies, "
                "temperature 0.7, top_p 0.95): "
                + ", ".join(
                    f"{k} {100 * v['ended_share']:.0f}% ({v['mean_tokens']:.0f} tokens)"
                    for k, v in e.items()
                )
                + ".",
            ]
        lines += ["", f"`{fid['command']}`"]
    else:
        lines.append("Not run yet: `python bench/fidelity.py`.")
    notes = docs / "engines_notes.md"  # the reading of the numbers, written by people
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    out = docs / "ENGINES.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--report-only", action="store_true", help="write docs/ENGINES.md and stop")
    p.add_argument("--runs", default="runs", help="where the bench JSON files are")
    p.add_argument("--docs", default="docs")
    p.add_argument("--model", default=None, help="model id or path (default: embedded SmolLM2)")
    p.add_argument("--adapter", default=None, help="a RiC adapter (its LoRA is merged)")
    p.add_argument("--backends", default="transformers,onnx", help="comma-separated names")
    p.add_argument("--dtype", default="bfloat16", help="torch dtype of the transformers backend")
    p.add_argument("--threads", type=int, default=None, help="default: every core")
    p.add_argument("--prompts", default="assets/prompts/train.txt")
    p.add_argument("--n", type=int, default=32, help="prompts for the batched measures")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rewards", default=DATA_REWARDS, help="comma-separated reward names")
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batched-repeats", type=int, default=2, help="rounds of the batched runs")
    p.add_argument("--bw-mb", type=int, default=512, help="copy size, well above the caches")
    p.add_argument("--out", default="runs/bench/throughput.json")
    args = p.parse_args(argv)
    if args.report_only:
        print(f"written {report(Path(args.runs), Path(args.docs))}")
        return

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    # The engines SteerableModel drives, loaded exactly as it loads them.
    engines = {
        name: load_engine(name, args.model, args.adapter, args.dtype, threads)[0]
        for name in args.backends.split(",")
    }
    tok = next(iter(engines.values())).tokenizer
    prompts = read_prompts(args.prompts)[: args.n]
    inputs = [format_plain_prompt(q, tok) for q in prompts]
    long_input = format_plain_prompt(LONG_PROMPT, tok)
    rewards = [get_reward_fn(n) for n in args.rewards.split(",") if n]
    for fn in rewards:  # load the reward models before timing
        fn(prompts[:1], ["warm-up"])
    settings = GenerationSettings(args.max_new_tokens, temperature=0.8, top_p=0.95)
    for engine in engines.values():  # warm-up: lazy inits, allocator
        decode_once(engine, long_input, 4)

    rounds = {name: [] for name in engines}
    prefill = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            rounds[name].append(decode_once(engine, long_input, args.decode_tokens))
            prefill[name].append(prefill_rate(engine, inputs[: args.batch_size]))
    # Interleaved like decode: one batched run of each engine per round, medians reported.
    runs = {name: [] for name in engines}
    for _ in range(args.batched_repeats):
        for name, engine in engines.items():
            runs[name].append(
                batched_run(engine, inputs, prompts, rewards, settings, args.batch_size)
            )
    batched = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("tok_s", "responses_s")}
        for name, rs in runs.items()
    }
    bw = copy_bandwidth(args.bw_mb)
    bandwidth = max(bw.values())
    out = {}
    for name, engine in engines.items():
        nbytes = bytes_per_token(engine)
        rate = statistics.median(r[1] for r in rounds[name])
        out[name] = {
            "engine": engine.name,
            "decode_tok_s": rate,
            "decode_tokens": statistics.median(r[2] for r in rounds[name]),
            "first_token_ms": 1000 * statistics.median(r[0] for r in rounds[name]),
            "prefill_tok_s": statistics.median(prefill[name]),
            "bytes_per_token": nbytes,
            "bound_tok_s": bandwidth * 1e9 / nbytes,
            "bound_fraction": rate / (bandwidth * 1e9 / nbytes),
            "batched_tok_s": batched[name]["tok_s"],
            "pipeline_responses_s": batched[name]["responses_s"],
        }
    result = {
        "model": args.model or "smollm2-135m-instruct",
        "adapter": args.adapter,
        "threads": threads,
        "n": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "bandwidth": bw,
        "bandwidth_gb_s": bandwidth,
        "backends": out,
        "machine": machine_info(),
        "command": "python bench/throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(Path(args.out), result)
    print(f"threads {threads}, bandwidth {bandwidth:.1f} GB/s")
    for name, r in out.items():
        print(
            f"{name:>14}: decode {r['decode_tok_s']:6.1f} tok/s ({100 * r['bound_fraction']:.0f}% "
            f"of {r['bound_tok_s']:.0f}), first token {r['first_token_ms']:.0f} ms, batched "
            f"{r['batched_tok_s']:.0f} tok/s, generate+score {r['pipeline_responses_s']:.2f}/s"
        )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
