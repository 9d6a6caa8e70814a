"""The embedded default in one place: base model, reward names, prompt files.

Recipes (train/recipes/cpu_*.yaml), the app's fallback and the benches read these; a test checks
that the shipped recipes agree with them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Default:
    model: str = "smollm2-135m-instruct"
    # The pair the default model is conditioned on, in tag order. docs/REWARDS.md measures
    # each candidate over the base model's own answers. On plain samples no pair conflicts
    # within a prompt (|Spearman| <= 0.05, the retired instruction plan); on the graded-knob
    # data the most conflicting pair is relevance and positivity, because the positive-word
    # bias that spreads positivity also pulls answers off topic. Relevance stays a quality
    # guard instead (docs/METHOD.md section 8): no user wants a slider towards less relevant
    # answers. Brevity is the reward the answers move most; positivity is the partner a user
    # recognises ("upbeat vs brief"); harmlessness hardly moves.
    rewards: tuple[str, ...] = ("positivity", "brevity")
    # Every text reward the offline data is scored with, so the pair can be re-chosen without
    # sampling again.
    candidate_rewards: tuple[str, ...] = ("relevance", "positivity", "brevity", "harmlessness")
    train_prompts: str = "assets/prompts/train.txt"
    eval_prompts: str = "assets/prompts/eval.txt"
    # Hidden instructions for sampling the offline data (never in a training prompt).
    instructions: str = "assets/prompts/instructions.txt"


DEFAULT = Default()
