"""Does the fast engine give the model the transformers backend gives? Greedy text and fronts.

    python bench/fidelity.py --out runs/bench/fidelity.json          # shipped default adapter
    python bench/fidelity.py --adapter DIR --n-greedy 4 --n-front 4 --points 3 --out /tmp/f.json

1. Greedy text: --n-greedy held-out prompts (assets/prompts/eval.txt), conditioned at equal
   weights, --max-new-tokens greedy tokens, transformers fp32 with the LoRA merged against each
   onnx precision: how many replies are identical.
2. Fronts: --points preference weights x --n-front unseen prompts (assets/prompts/unseen30.txt),
   GREEDY decoding so the only difference is the engine (sampled fronts of 30 prompts differ by
   more than 0.1 between two seeds of the same engine). Each engine of --front-engines
   (backend:dtype) against the first: the largest gap in a point's mean achieved reward
   (normalized) and the hypervolume, one reference point for all. transformers in bfloat16
   against float32 is the yardstick: what a precision change alone does to a greedy front.
3. Ending by itself: --n-ends training prompts, plain (no tags, the base model as data sampling
   sees it), sampled twice each at temperature 0.7 / top_p 0.95 with up to --ends-tokens
   tokens: the share of replies each engine ends with end-of-text, and their mean length.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from ric.artifacts import write_json
from ric.data import read_prompts
from ric.generation import GenerationSettings
from ric.mapping import simplex_grid
from ric.pareto import default_reference_point, hypervolume
from ric.runlog import machine_info
from ric.steering import SteerableModel

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "text" / "adapter"


def greedy_match(adapter, prompts, tokens: int, fast: list[str]) -> dict:
    greedy = GenerationSettings(max_new_tokens=tokens, do_sample=False)
    ref = SteerableModel.load(adapter, dtype="float32", backend="transformers")
    n = len(ref.reward_names)
    texts = {"transformers": ref.generate_batch(prompts, [1 / n] * n, greedy, progress=False)[0]}
    for backend in fast:
        steer = SteerableModel.load(adapter, backend=backend)
        texts[backend] = steer.generate_batch(prompts, [1 / n] * n, greedy, progress=False)[0]
    return {
        b: sum(a == r for a, r in zip(t, texts["transformers"], strict=True))
        for b, t in texts.items()
        if b != "transformers"
    }


def front(steer: SteerableModel, prompts, weights, tokens: int) -> np.ndarray:
    greedy = GenerationSettings(max_new_tokens=tokens, do_sample=False)
    return np.array(
        [steer.generate_batch(prompts, w, greedy, progress=False)[2].mean(0) for w in weights]
    )


def ends(prompts, tokens: int, specs: list[str]) -> dict:
    from ric.conditioning import format_plain_prompt
    from ric.models import load_engine

    settings = GenerationSettings(tokens, temperature=0.7, top_p=0.95)
    out = {}
    for spec in specs:
        backend, _, dtype = spec.partition(":")
        engine, _, tok = load_engine(backend, dtype=dtype or "bfloat16")
        inputs = [format_plain_prompt(p, tok) for p in prompts] * 2
        done = engine.complete(inputs, settings, seed=1, progress=False)
        out[spec] = {
            "ended_share": sum(c.finished for c in done) / len(done),
            "mean_tokens": sum(c.n_tokens for c in done) / len(done),
            "replies": len(done),
        }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--adapter", default=str(SHIPPED))
    p.add_argument("--fast", default="onnx-fp32,onnx", help="engines compared in greedy text")
    p.add_argument(
        "--front-engines",
        default="transformers:float32,transformers:bfloat16,onnx,onnx-fp32",
        help="backend[:dtype] list; the first is the reference",
    )
    p.add_argument("--n-greedy", type=int, default=32)
    p.add_argument("--n-front", type=int, default=30)
    p.add_argument("--points", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--n-ends", type=int, default=32, help="prompts for the ending check (0: skip)")
    p.add_argument("--ends-tokens", type=int, default=384)
    p.add_argument("--out", default="runs/bench/fidelity.json")
    args = p.parse_args(argv)

    held_out = read_prompts("assets/prompts/eval.txt")[: args.n_greedy]
    matches = greedy_match(args.adapter, held_out, args.max_new_tokens, args.fast.split(","))
    specs = args.front_engines.split(",")
    unseen = read_prompts("assets/prompts/unseen30.txt")[: args.n_front]
    fronts = {}
    for spec in specs:
        backend, _, dtype = spec.partition(":")
        steer = SteerableModel.load(args.adapter, dtype=dtype or "bfloat16", backend=backend)
        weights = simplex_grid(len(steer.reward_names), args.points)
        fronts[spec] = front(steer, unseen, weights, args.max_new_tokens)
    ref_point = default_reference_point(np.vstack(list(fronts.values())))
    hv = {k: hypervolume(v, ref_point) for k, v in fronts.items()}
    ref = specs[0]
    result = {
        "adapter": args.adapter,
        "greedy": {"prompts": len(held_out), "tokens": args.max_new_tokens, "identical": matches},
        "front": {
            "reference": ref,
            "prompts": len(unseen),
            "weights": [list(map(float, w)) for w in weights],
            "achieved": {k: v.tolist() for k, v in fronts.items()},
            "reference_point": ref_point.tolist(),
            "hypervolume": hv,
            "vs_reference": {
                k: {
                    "max_abs_gap": float(np.abs(fronts[k] - fronts[ref]).max()),
                    "hypervolume_rel_gap": abs(hv[k] - hv[ref]) / hv[ref],
                }
                for k in specs[1:]
            },
        },
        "ends": ends(
            read_prompts("assets/prompts/train.txt")[: args.n_ends], args.ends_tokens, specs
        )
        if args.n_ends
        else None,
        "machine": machine_info(),
        "command": "python bench/fidelity.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(Path(args.out), result)
    print(f"greedy identical to transformers fp32 (of {len(held_out)}): {matches}")
    for k, gap in result["front"]["vs_reference"].items():
        print(
            f"greedy front {k} vs {ref}: largest reward gap {gap['max_abs_gap']:.3f}, "
            f"hypervolume {hv[k]:.3f} vs {hv[ref]:.3f} ({100 * gap['hypervolume_rel_gap']:.1f}%)"
        )
    for k, e in (result["ends"] or {}).items():
        print(
            f"{k}: {100 * e['ended_share']:.0f}% ended by themselves, {e['mean_tokens']:.0f} tokens"
        )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
