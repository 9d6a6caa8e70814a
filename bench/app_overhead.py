"""The app's overhead around generation: /generate through gradio_client vs model.generate.

    python bench/app_overhead.py --out runs/bench/app_overhead.json          # embedded default
    python bench/app_overhead.py --adapter runs/sft/adapter --tokens 64 --repeats 10 --out X.json

One run launches the app on 127.0.0.1 in this process and, alternating, times
  direct: tokenize + model.generate + decode of the same conditioned prompt, and
  app:    gradio_client -> /generate (HTTP, queue, preference mapping, prompt building,
          generation, reward scoring with the model's reward functions, JSON back),
both up to --tokens new tokens with the app's sampling settings and seed 0, so both sample the
same reply. The mapping, prompt building and scoring are also timed on their own, so
the table says where the overhead goes. Medians over --repeats after one warm-up of each.
"""

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "What is a good way to spend a rainy afternoon?"


def load_app():
    """app.py sits at the repository root, outside the ric package."""
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("app", module)
    spec.loader.exec_module(module)
    return module


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_s(fn, repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))


def run(args) -> dict:
    from gradio_client import Client

    from ric.generation import GenerationSettings

    app = load_app()
    steer, label = app.load_steerable(args.model, args.adapter, args.dtype)
    n = len(steer.reward_names)
    weights = [1.0 / n] * n
    # The app's own sampling settings and seed 0 on both paths, so both sample the same reply
    # of the same length (a seed also makes /generate run alone, outside the batcher).
    settings = GenerationSettings(args.tokens)

    def direct():
        return steer.complete(
            [steer.prompt(PROMPT, steer.desired(weights))], settings, seed=0, progress=False
        )[0].text

    demo = app.build_demo(steer, model_label=label)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=app_port(), quiet=True
    )
    try:
        client = Client(url, verbose=False)

        def api():
            return client.predict(
                PROMPT, weights, steer.meta.mapping, args.tokens, 0, api_name="/generate"
            )

        reply = direct()
        api()  # warm-up: first requests pay for connection setup and lazy imports
        direct_t, api_t = [], []
        for _ in range(args.repeats):  # alternate, so background load hits both alike
            direct_t.append(timed(direct))
            api_t.append(timed(api))
    finally:
        demo.close()
    parts = {
        "mapping": median_s(lambda: steer.desired(weights), args.repeats),
        "prompt": median_s(lambda: steer.prompt(PROMPT, steer.desired(weights)), args.repeats),
        "scoring": median_s(lambda: steer.score([PROMPT], [reply]), args.repeats),
    }
    d, a = statistics.median(direct_t), statistics.median(api_t)
    return {
        "model": label,
        "rewards": steer.reward_names,
        "tokens": args.tokens,
        "repeats": args.repeats,
        "dtype": args.dtype,
        "direct_median_s": d,
        "app_median_s": a,
        "overhead_s": a - d,
        "overhead_pct": 100 * (a - d) / d,
        "parts_median_s": parts,
        "direct_s": direct_t,
        "app_s": api_t,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def app_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def print_table(r: dict) -> None:
    print(f"\n{r['model']}: {r['tokens']} new tokens, median of {r['repeats']}")
    rows = [
        ("direct (SteerableModel.complete)", r["direct_median_s"]),
        ("app /generate (gradio_client)", r["app_median_s"]),
        ("overhead", r["overhead_s"]),
        *((f"  of which {k}", v) for k, v in r["parts_median_s"].items()),
        ("  rest (HTTP, queue, JSON)", r["overhead_s"] - sum(r["parts_median_s"].values())),
    ]
    for name, s in rows:
        print(f"{name:32s} {1000 * s:9.1f} ms")
    print(f"{'overhead / direct':32s} {r['overhead_pct']:9.1f} %")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="base model id or path (default: the embedded default)")
    p.add_argument("--adapter", help="RiC adapter (default: assets/text/adapter if present)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--tokens", type=int, default=32, help="new tokens per generation")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", required=True, help="JSON results file")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.tokens < 1:
        p.error("--repeats and --tokens must be >= 1")
    result = run(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main()
