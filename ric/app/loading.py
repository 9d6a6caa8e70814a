"""Loading what the app serves: the text model (a RiC adapter, the shipped one, or the untrained
base model) and the evaluated fronts drawn beside it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ric.artifacts import RicMeta, read_json
from ric.conditioning import ConditioningFormat
from ric.models import DEFAULT_MODEL
from ric.normalization import RewardStats
from ric.steering import SteerableModel

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "text"
DEFAULT_ADAPTER = ASSETS / "adapter"
BASE_META = ASSETS / "base_meta.json"
FRONT = ASSETS / "front.json"
BASE_FRONT = ASSETS / "base_front.json"
OFFLINE_FRONT = ASSETS / "offline_front.json"  # the same adapter before MORS, when shipped
# Without base_meta.json nothing says how the base model's rewards are distributed: these
# rewards are then shown raw (mean 0, std 1) and mapped into [-2, 2].
FALLBACK_REWARDS = ["relevance", "brevity"]
FALLBACK_RANGE = (-2.0, 2.0)


def fallback_meta(model: str | None) -> RicMeta:
    """Metadata for the untrained base model when no base_meta.json is shipped."""
    n = len(FALLBACK_REWARDS)
    stats = RewardStats(
        names=list(FALLBACK_REWARDS),
        mean=[0.0] * n,
        std=[1.0] * n,
        low=[FALLBACK_RANGE[0]] * n,
        high=[FALLBACK_RANGE[1]] * n,
    )
    return RicMeta(
        base_model=model or DEFAULT_MODEL,
        reward_names=list(FALLBACK_REWARDS),
        stats=stats.to_dict(),
        conditioning=ConditioningFormat().to_dict(),
        extra={"unnormalized": True},
    )


def load_steerable(
    model: str | None = None,
    adapter: str | None = None,
    dtype: str = "bfloat16",
    backend: str = "auto",
) -> tuple[SteerableModel, str]:
    """(model, a one-line description): the given adapter, else the shipped default adapter,
    else the untrained base model."""
    t0 = time.time()
    if adapter is None and DEFAULT_ADAPTER.is_dir():
        adapter = str(DEFAULT_ADAPTER)
    if adapter is not None:
        print(f"ric: loading RiC adapter {adapter} ({dtype}) ...", flush=True)
        steer = SteerableModel.load(adapter, model=model, dtype=dtype, backend=backend)
        label = f"RiC adapter `{adapter}` on `{model or steer.meta.base_model}`"
    else:
        meta = RicMeta(**read_json(BASE_META)) if BASE_META.exists() else fallback_meta(model)
        print(f"ric: no RiC adapter: loading the untrained base model ({dtype}) ...", flush=True)
        steer = SteerableModel.load(model=model, meta=meta, dtype=dtype, backend=backend)
        label = f"untrained base model `{model or meta.base_model}`"
    print(
        f"ric: loaded in {time.time() - t0:.1f} s ({steer.engine.label} engine); "
        f"rewards {steer.reward_names}",
        flush=True,
    )
    return steer, label


def load_fronts(paths: Sequence[str | Path | None], reward_names: Sequence[str]) -> list[dict]:
    """The front.json files that exist and match the model's rewards; others are skipped."""
    fronts = []
    for path in paths:
        if path is None or not Path(path).exists():
            continue
        front = read_json(path)
        if list(front.get("reward_names", [])) != list(reward_names):
            print(
                f"ric: skipping {path}: rewards {front.get('reward_names')} "
                f"are not the model's {list(reward_names)}",
                flush=True,
            )
            continue
        fronts.append(front)
    return fronts
