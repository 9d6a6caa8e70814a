"""Does the fast engine give the model the transformers backend gives? Greedy text and fronts.

    python bench/fidelity.py --out runs/bench/fidelity.json          # shipped default adapter
    python bench/fidelity.py --adapter DIR --n-greedy 4 --n-front 4 --points 3 --out /tmp/f.json

1. Greedy text: --n-greedy held-out prompts (assets/prompts/eval.txt), conditioned at equal
   weights, --max-new-tokens greedy tokens, transformers fp32 with the LoRA merged against each
   onnx precision: how many replies are identical.
2. Fronts: --points preference weights x --n-front unseen prompts (assets/prompts/unseen30.txt),
   GREEDY decoding so the only difference is the engine (sampled fronts of 30 prompts differ by
   more than 0.1 between two seeds of the same engine), the reference engine against the fast
   one: each point's mean achieved rewards (normalized) and the hypervolume, with one
   reference point for both.
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--adapter", default=str(SHIPPED))
    p.add_argument("--fast", default="onnx-fp32,onnx", help="engines compared in greedy text")
    p.add_argument("--front-engines", default="transformers,onnx", help="reference,fast")
    p.add_argument("--n-greedy", type=int, default=32)
    p.add_argument("--n-front", type=int, default=30)
    p.add_argument("--points", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--out", default="runs/bench/fidelity.json")
    args = p.parse_args(argv)

    held_out = read_prompts("assets/prompts/eval.txt")[: args.n_greedy]
    matches = greedy_match(args.adapter, held_out, args.max_new_tokens, args.fast.split(","))
    ref_name, fast_name = args.front_engines.split(",")
    unseen = read_prompts("assets/prompts/unseen30.txt")[: args.n_front]
    fronts = {}
    for name in (ref_name, fast_name):
        steer = SteerableModel.load(args.adapter, backend=name)
        weights = simplex_grid(len(steer.reward_names), args.points)
        fronts[name] = front(steer, unseen, weights, args.max_new_tokens)
    ref_point = default_reference_point(np.vstack(list(fronts.values())))
    hv = {k: hypervolume(v, ref_point) for k, v in fronts.items()}
    gap = np.abs(fronts[fast_name] - fronts[ref_name])
    result = {
        "adapter": args.adapter,
        "greedy": {"prompts": len(held_out), "tokens": args.max_new_tokens, "identical": matches},
        "front": {
            "engines": [ref_name, fast_name],
            "prompts": len(unseen),
            "weights": [list(map(float, w)) for w in weights],
            "achieved": {k: v.tolist() for k, v in fronts.items()},
            "max_abs_gap": float(gap.max()),
            "reference_point": ref_point.tolist(),
            "hypervolume": hv,
            "hypervolume_rel_gap": abs(hv[fast_name] - hv[ref_name]) / hv[ref_name],
        },
        "machine": machine_info(),
        "command": "python bench/fidelity.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(Path(args.out), result)
    print(f"greedy identical to transformers fp32 (of {len(held_out)}): {matches}")
    f = result["front"]
    print(
        f"front {ref_name} vs {fast_name}: largest reward gap {f['max_abs_gap']:.3f}, hypervolume "
        f"{hv[ref_name]:.3f} vs {hv[fast_name]:.3f} ({100 * f['hypervolume_rel_gap']:.1f}%)"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
