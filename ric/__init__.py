"""ric: Rewards-in-Context (Yang et al., ICML 2024) for steerable multi-objective alignment."""

from ric.conditioning import ConditioningFormat, format_conditioned_prompt, sanitize_user_text
from ric.mapping import preference_to_rewards
from ric.normalization import RewardStats
from ric.pareto import hypervolume, pareto_mask
from ric.rewards import get_reward_fn

__all__ = [
    "ConditioningFormat",
    "RewardStats",
    "format_conditioned_prompt",
    "get_reward_fn",
    "hypervolume",
    "pareto_mask",
    "preference_to_rewards",
    "sanitize_user_text",
]
__version__ = "0.1.0"
