"""Does a checkpoint read its reward tags? Log-likelihood probes, no generation.

    python train/probe_tags.py --checkpoint runs/sft3/checkpoints/checkpoint-100 \
        --recipe train/recipes/cpu_sft_primed.yaml --texts "In short:" "Sadly, this is hard."

For each text and each reward: the mean log-likelihood (nats) of the text as the start of the
response to N training prompts (or right after --after, e.g. a tone opener: log p(text | prompt,
opener)), with that reward's tag at the low and at the high end of its range (other tags at 0,
or at --others). A tag the model reads moves the texts it should govern (the tone
opener with positivity, the length primer with brevity); a tag it ignores moves nothing.
--table REWARD also prints, from the recipe's data, how often each length primer goes with each
range of that reward's normalized value: how much the tag could tell the model.
"""

import argparse
import functools
import json
from pathlib import Path

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="LoRA folder (checkpoint or adapter)")
    p.add_argument("--recipe", required=True, help="the SFT recipe the checkpoint came from")
    p.add_argument("--texts", nargs="+", required=True)
    p.add_argument("--rows", type=int, default=20, help="training prompts to average over")
    p.add_argument("--rewards", nargs="+", help="override the recipe's rewards (as trained)")
    p.add_argument("--table", help="reward whose relation to the length primers to tabulate")
    p.add_argument(
        "--after", default="", help="response start the texts follow (a tone opener, say)"
    )
    p.add_argument("--others", type=float, default=0.0, help="value of the other tags")
    args = p.parse_args(argv)
    if not (Path(args.checkpoint) / "adapter_config.json").exists():
        p.error(f"{args.checkpoint} holds no LoRA (adapter_config.json missing)")

    import torch
    from peft import PeftModel

    from ric.artifacts import RicMeta
    from ric.config import load_config
    from ric.models import load_tokenizer, resolve_model
    from ric.normalization import RewardStats
    from ric.steering import SteerableModel
    from ric.training import DEFAULT_LENGTHS, SFTRecipe, completion_logprob, load_dataset_rows

    recipe = load_config(SFTRecipe, args.recipe)
    if args.rewards:
        recipe.rewards = args.rewards
    rows = load_dataset_rows(recipe.data_dir, list(recipe.rewards))
    raw = np.array([r["raw"] for r in rows])
    # The statistics SFT fits on the same rows: the tags the checkpoint was trained with.
    stats = RewardStats.fit(
        raw, list(recipe.rewards), recipe.range_source, range_quantiles=recipe.range_quantiles
    )
    base = recipe.model
    if recipe.init_adapter:
        base = base or RicMeta.load(recipe.init_adapter).base_model
    path = resolve_model(base)
    tok = load_tokenizer(path)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    model = PeftModel.from_pretrained(model, args.checkpoint).eval()
    meta = RicMeta(
        base or "smollm2-135m-instruct", list(recipe.rewards), stats.to_dict(), recipe.conditioning
    )
    steer = SteerableModel(model, tok, meta)

    @functools.cache
    def opener_logp(prompt: str) -> float:  # the same for every text probed after it
        return completion_logprob(model, tok, prompt, args.after)

    def logp(prompt: str, text: str) -> float:
        """log p(text | prompt, --after): a primer's choice after the opener alone."""
        if not args.after:
            return completion_logprob(model, tok, prompt, text)
        return completion_logprob(model, tok, prompt, args.after + text) - opener_logp(prompt)

    prompts = list(dict.fromkeys(r["prompt"] for r in rows))[: args.rows]
    out = {}
    for text in args.texts:
        for i, name in enumerate(stats.names):
            ends = []
            for value in (stats.low[i], stats.high[i]):
                tags = np.full(len(stats.names), args.others)
                tags[i] = value
                ends.append(float(np.mean([logp(steer.prompt(q, tags), text) for q in prompts])))
            out[f"{text} | {name}"] = ends
            print(f"{text[:40]!r:44} {name:12} low {ends[0]:7.2f}  high {ends[1]:7.2f}")
    if args.table:
        z = stats.normalize(raw)[:, list(stats.names).index(args.table)]
        kinds = [p for p, *_ in DEFAULT_LENGTHS if p]
        which = np.array(
            [next((k for k in kinds if r.get("opener", "").endswith(k)), "") for r in rows]
        )
        for lo, hi in [(-9, -1), (-1, 0), (0, 1), (1, 9)]:
            m = (z >= lo) & (z < hi)
            share = {k or "(none)": round(float((which[m] == k).mean()), 2) for k in ["", *kinds]}
            print(f"{args.table} in [{lo}, {hi}): {m.sum()} rows, primers {share}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
