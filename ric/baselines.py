"""The baselines RiC is measured against (docs/METHOD.md section 8), on RiC's own evaluation.

- Rewarded Soups (Rame et al. 2023): one LoRA per reward, each trained by SFT on the top
  quantile of the offline data for its reward, with plain prompts (no reward tags). At inference
  the adapters are interpolated with the preference w.
- MORLHF: RL on the scalarized reward sum_i w_i z_i (z: rewards normalized with the shared
  RewardStats), one LoRA run per w, with TRL's GRPOTrainer (one reward function per reward and
  `reward_weights` = w).
- Prompt-only: the base model told the preference in words; no training.

Each baseline is a `SteerableModel` with `conditioned=False` whose `complete_batch` first sets up
the policy for w (mixes the soup, picks the MORLHF run, writes the instruction). So
`ric.evaluation.evaluate_front` sweeps it exactly as it sweeps RiC: same prompts, same generation
settings, same reward functions, same RewardStats (the RiC adapter's), same reference point,
and the same front.json. The `desired` values a baseline front records are what RiC's mapping
would ask for at w: the baseline never sees them (only Spearman and monotonicity are meaningful).

The `backend` of each loader is the engine that writes the answers (ric.models.BACKENDS). RiC's
fronts are measured on "auto" (onnx int8 on a CPU-only machine), so the benchmark passes the same
to its baselines: a soup or MORLHF run is then merged into the base model at each w, exported
once (cached by content) and served by its own engine. "transformers" keeps every adapter in one
PeftModel and switches in place (the exactness tests use it).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ric.artifacts import META_FILE, RicMeta, atomic_dir, clean_stale_tmp, read_json, write_json
from ric.conditioning import ConditioningFormat, format_plain_prompt
from ric.config import field
from ric.data import load_dataset_rows, read_prompts
from ric.defaults import DEFAULT
from ric.normalization import RewardStats
from ric.rewards import get_reward_fn
from ric.runlog import RunClock, command_line, set_threads_from_env
from ric.sft import (
    TRAIN_LOG,
    SFTRecipe,
    checkpoint_callback,
    recipe_lora,
    run_trainer,
    save_adapter,
    train_sft,
    training_rows,
)
from ric.steering import SteerableModel

# ---------------------------------------------------------------- shared pieces


def ric_training_rows(meta: RicMeta, data_dir: str | Path | None = None) -> list[dict]:
    """The rows a RiC adapter's own stage trained on, by the recipe its ric.json records (its
    data set minus the prompts it held out for its monitor): the baselines train on these,
    and RiC's statistics are theirs."""
    recorded = meta.extra.get("recipe", {})
    known = {f.name for f in dataclasses.fields(SFTRecipe)}
    recipe = SFTRecipe(**{k: v for k, v in recorded.items() if k in known})
    recipe.rewards = list(meta.reward_names)
    if data_dir is not None:
        recipe.data_dir = str(data_dir)
    return training_rows(recipe)[0]


def shared_stats(rows: list[dict], rewards: Sequence[str]) -> RewardStats:
    """The statistics train_sft fits on these rows (mean and std of each reward)."""
    return RewardStats.fit(np.array([r["raw"] for r in rows]), list(rewards))


def same_normalization(a: RewardStats, b: RewardStats) -> bool:
    """True when two stats normalize identically (names, means and stds)."""
    return (
        a.names == b.names
        and np.allclose(a.mean, b.mean, rtol=1e-9, atol=1e-12)
        and np.allclose(a.std, b.std, rtol=1e-9, atol=1e-12)
    )


def plain_prompt(tokenizer, prompt: str, fmt: ConditioningFormat, system: str | None = None) -> str:
    """The model input without reward tags (what SteerableModel(conditioned=False) builds)."""
    return format_plain_prompt(prompt, tokenizer, fmt, system)


# ---------------------------------------------------------------- prompt-only

# How each default reward is put into words for the prompt-only baseline.
REWARD_PHRASES = {
    "positivity": "be positive and upbeat",
    "brevity": "be brief",
    "relevance": "stay on topic",
    "harmlessness": "be harmless and polite",
}


def preference_instruction(weights: Sequence[float], names: Sequence[str]) -> str:
    """The preference in words, e.g. "Priority: 70% be positive and upbeat, 30% be brief."

    >>> preference_instruction([0.7, 0.3], ["positivity", "brevity"])
    'Priority: 70% be positive and upbeat, 30% be brief.'
    """
    if len(weights) != len(names):
        raise ValueError(f"{len(weights)} weights for {len(names)} rewards")
    parts = [
        f"{round(100 * float(w))}% {REWARD_PHRASES.get(n, f'score high on {n}')}"
        for w, n in zip(weights, names, strict=True)
    ]
    return "Priority: " + ", ".join(parts) + "."


class PromptOnlyPolicy(SteerableModel):
    """The base model with the preference as a system instruction."""

    def complete_batch(
        self,
        prompts,
        weights,
        settings=None,
        method=None,
        batch_size=16,
        seed=None,
        progress=True,
        system=None,
    ):
        if system is not None:
            raise ValueError(
                "prompt-only writes the preference into the system turn: a --system probe "
                "cannot replace it"
            )
        system = preference_instruction(weights, self.reward_names)
        inputs = [plain_prompt(self.tokenizer, p, self.fmt, system) for p in prompts]
        outs = self.complete(inputs, settings, seed=seed, batch_size=batch_size, progress=progress)
        texts = [o.text for o in outs]
        return outs, self.desired(weights, method), self.score(prompts, texts)


def load_prompt_only(
    meta: RicMeta, model: str | None = None, dtype="bfloat16", backend: str = "transformers"
):
    """The base model as a PromptOnlyPolicy (no adapter), served by `backend`."""
    return PromptOnlyPolicy.load(meta=meta, model=model, dtype=dtype, backend=backend)


# ---------------------------------------------------------------- one model per preference


class _PerWeightPolicy(SteerableModel):
    """What the soup and MORLHF policies share: a different model answers at each w.

    With the transformers backend `model` is a PeftModel holding every adapter and the
    subclasses switch them in place. With any other backend `serve(folder)` loads the engine of
    the base model with that adapter merged in (ric.models.load_engine: the onnx export is
    built once per adapter and cached by content) in place of the previous one.
    """

    def __init__(
        self,
        model,
        tokenizer,
        meta,
        backend="transformers",
        base=None,
        dtype="bfloat16",
        sources: Sequence[str | Path] = (),
    ):
        engine = None
        if backend != "transformers":  # the first serve() brings the engine; until then its
            from ric.generation import Engine  # name is all a front can record

            engine = Engine()
            engine.name = backend
        super().__init__(model, tokenizer, meta, conditioned=False, engine=engine)
        self.backend_name, self.base, self.dtype = backend, base or meta.base_model, dtype
        self._load_args = {"name": self.base, "adapter": None, "dtype": dtype}
        self._served: Path | None = None
        self.sources = [Path(d) for d in sources]

    @property
    def in_place(self) -> bool:
        return self.backend_name == "transformers"

    def serve(self, adapter: Path) -> None:
        if adapter != self._served:
            from ric.models import load_engine

            self.engine, _, _ = load_engine(
                self.backend_name, name=self.base, adapter=adapter, dtype=self.dtype
            )
            self._served = adapter

    def complete_batch(self, prompts, weights, *args, **kwargs):
        with self.lock:
            self.use(weights)
        return super().complete_batch(prompts, weights, *args, **kwargs)


# ---------------------------------------------------------------- Rewarded Soups


@dataclasses.dataclass
class SoupsRecipe:
    data_dir: str = field("runs/data", "prepared offline dataset (the one RiC trains on)")
    out_dir: str = field("runs/bench/soups", "output: <reward>/adapter, <reward>/train_log.json")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    rewards: list = field(list(DEFAULT.rewards), "one ingredient per reward, in this order")
    keep_quantile: float = field(
        0.7, "ingredient i trains on rows whose normalized reward i >= this data quantile"
    )
    combination: str = field(
        "cat", "peft add_weighted_adapter combination: 'cat' (exact) or 'linear' (approximate)"
    )
    sft: dict = field({}, "SFTRecipe fields for each ingredient's SFT (LoRA, optimizer, steps)")
    seed: int = field(0, "random seed")


def top_quantile_rows(rows: list[dict], stats: RewardStats, i: int, q: float) -> list[dict]:
    """Rows whose normalized reward i reaches the q-quantile of reward i over the data."""
    z = stats.normalize(np.array([r["raw"] for r in rows]))[:, i]
    threshold = stats.quantile(q)[i]
    return [r for r, zi in zip(rows, z, strict=True) if zi >= threshold]


def train_soup_ingredients(
    recipe: SoupsRecipe, stats: RewardStats | None = None, rows: list[dict] | None = None
) -> list[Path]:
    """One LoRA per reward via ric.sft.train_sft, each on the top of `rows` (default: every
    row of recipe.data_dir) for its reward; finished ingredients are skipped."""
    if rows is None:
        rows = load_dataset_rows(recipe.data_dir, list(recipe.rewards))
    if stats is None:
        stats = shared_stats(rows, recipe.rewards)
    adapters = []
    for i, name in enumerate(recipe.rewards):
        out = Path(recipe.out_dir) / name
        adapter = out / "adapter"
        if (out / TRAIN_LOG).exists() and (adapter / "ric.json").exists():
            adapters.append(adapter)
            continue
        subset = top_quantile_rows(rows, stats, i, recipe.keep_quantile)
        fields = {
            **recipe.sft,
            "data_dir": recipe.data_dir,
            "out_dir": str(out),
            "model": recipe.model,
            "rewards": list(recipe.rewards),
            "seed": recipe.seed,
            "conditioned": False,
        }
        info = {
            "kind": "rewarded_soups",
            "ingredient": name,
            "keep_quantile": recipe.keep_quantile,
            "n_rows": len(subset),
            "conditioned": False,
        }
        adapters.append(train_sft(SFTRecipe(**fields), subset, stats, {"baseline": info}))
    return adapters


class SoupPolicy(_PerWeightPolicy):
    """Rewarded Soups: the ingredients' LoRA deltas interpolated with w.

    combination "cat" (default) concatenates the ingredients' LoRA factors, A = [w_i s_i A_i],
    B = [B_i], so the soup's delta is exactly sum_i w_i s_i B_i A_i: the linear interpolation
    of the ingredients' full weights theta_i = theta_0 + delta_i that Rewarded Soups defines, at
    rank sum(r_i). Interpolating A and B separately (or peft's "linear", which scales both by
    sqrt(w_i s_i)) multiplies out to cross terms sqrt(w_i w_j) B_i A_j: not an interpolation of
    the models, and sensitive to how the factors happen to be scaled.

    With a backend other than transformers each mix is also saved as an adapter folder,
    `mix_dir`/w<w1>_<w2>/ (weights and a ric.json saying what it mixes), and served from there.
    """

    def __init__(
        self,
        model,
        tokenizer,
        meta,
        ingredients: list[str],
        combination: str = "cat",
        ingredient_dirs: Sequence[str | Path] = (),
        mix_dir: str | Path | None = None,
        **serving,
    ):
        super().__init__(model, tokenizer, meta, sources=ingredient_dirs, **serving)
        self.ingredients, self.combination = list(ingredients), combination
        self.mix_dir = Path(mix_dir) if mix_dir else None
        self._mix, self._mix_weights, self._count = None, None, 0

    def use(self, weights: Sequence[float]) -> str:
        """Make the soup for `weights` the active adapter; returns its name."""
        w = [float(x) for x in weights]
        if len(w) != len(self.ingredients):
            raise ValueError(f"{len(w)} weights for {len(self.ingredients)} ingredients")
        if not self.in_place:
            self.serve(self.saved_mix(w))
            return self._mix
        if w != self._mix_weights:
            # A fresh name per mix: peft's add_weighted_adapter is a no-op for an existing name
            # (and module names may not contain dots, so the weights cannot be the name).
            self._count += 1
            name = f"soup_{self._count}"
            self.model.add_weighted_adapter(
                self.ingredients, w, name, combination_type=self.combination
            )
            self.model.set_adapter(name)
            self.model.eval()  # the new adapter's modules start in train mode: LoRA dropout on
            if self._mix is not None:
                self.model.delete_adapter(self._mix)
            self._mix, self._mix_weights = name, w
        return self._mix

    def saved_mix(self, weights: Sequence[float]) -> Path:
        """The soup for `weights` as an adapter folder under mix_dir (made once)."""
        w = [float(x) for x in weights]
        folder = self.mix_dir / run_name(w)
        if (folder / META_FILE).exists():
            return folder
        name = f"mix_{run_name(w).replace('.', '_')}"
        self.model.add_weighted_adapter(
            self.ingredients, w, name, combination_type=self.combination
        )
        try:
            with atomic_dir(folder) as tmp:
                # peft saves an adapter not named "default" in a subfolder of that name (and a
                # model card beside it)
                self.model.save_pretrained(tmp / "peft", selected_adapters=[name])
                for f in (tmp / "peft" / name).iterdir():
                    f.rename(tmp / f.name)
                shutil.rmtree(tmp / "peft")
                meta = RicMeta.load(self.sources[0])
                meta.base_model = self.base
                meta.extra = {
                    "baseline": {
                        "kind": "rewarded_soups_mix",
                        "weights": w,
                        "ingredients": [str(d) for d in self.sources],
                        "combination": self.combination,
                        "conditioned": False,
                    }
                }
                meta.save(tmp)
        finally:
            self.model.delete_adapter(name)
        return folder


def load_soup(
    meta: RicMeta,
    adapters: Sequence[str | Path],
    model: str | None = None,
    dtype="bfloat16",
    combination: str = "cat",
    backend: str = "transformers",
    mix_dir: str | Path | None = None,
) -> SoupPolicy:
    """SoupPolicy over ingredient adapters given in the order of meta.reward_names.

    backend other than transformers: the mixes are saved under `mix_dir` (required) and
    served by that engine; the PeftModel that mixes them is then float32 (exact mixing)."""
    from peft import PeftModel

    from ric.models import load_model, resolve_backend

    if len(adapters) != len(meta.reward_names):
        raise ValueError(f"{len(adapters)} ingredients for rewards {meta.reward_names}")
    backend = resolve_backend(backend)
    if backend != "transformers" and mix_dir is None:
        raise ValueError(f"backend {backend!r} serves saved mixes: pass mix_dir")
    name = model or meta.base_model
    base, tok = load_model(name, dtype=dtype if backend == "transformers" else "float32")
    names = [f"ingredient_{n}" for n in meta.reward_names]
    peft = PeftModel.from_pretrained(base, str(adapters[0]), adapter_name=names[0])
    for n, path in zip(names[1:], adapters[1:], strict=True):
        peft.load_adapter(str(path), adapter_name=n)
    peft.eval()
    return SoupPolicy(
        peft,
        tok,
        meta,
        names,
        combination,
        adapters,
        mix_dir,
        backend=backend,
        base=name,
        dtype=dtype,
    )


# ---------------------------------------------------------------- MORLHF


@dataclasses.dataclass
class MorlhfRecipe:
    out_dir: str = field("runs/bench/morlhf", "output: w<w1>_<w2>/ per preference")
    data_dir: str = field("runs/data", "offline dataset: only its reward statistics are used")
    model: str | None = field(None, "base model id or path; None = embedded SmolLM2-135M")
    prompts: str = field(DEFAULT.train_prompts, "RL prompts (the training prompts)")
    max_prompts: int | None = field(None, "use only the first N prompts")
    rewards: list = field(list(DEFAULT.rewards), "rewards, in reward_weights order")
    weights: list = field(
        [[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0]],
        "one RL run per preference vector w (the front's points)",
    )
    # GRPO
    max_steps: int = field(100, "optimizer steps per run (the compute budget)")
    num_generations: int = field(4, "completions per prompt (GRPO group size)")
    batch_size: int = field(16, "completions per optimizer step (prompts = this / num_generations)")
    grad_accum: int = field(1, "gradient accumulation steps")
    max_completion_length: int = field(64, "generation cap (same as the evaluation)")
    temperature: float = field(0.7, "sampling temperature while training")
    top_p: float = field(0.9, "nucleus while training")
    beta: float = field(0.04, "KL coefficient to the base model (0: no reference pass)")
    loss_type: str = field("dapo", "TRL GRPO loss_type")
    scale_rewards: str = field("group", "TRL GRPO scale_rewards: group | batch | none")
    learning_rate: float = field(5e-5, "peak learning rate")
    lr_scheduler: str = field("constant", "linear | constant | cosine")
    warmup_steps: int = field(0, "warmup steps")
    weight_decay: float = field(0.0, "weight decay")
    # LoRA (as the RiC SFT recipe)
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: int = field(32, "LoRA alpha")
    lora_dropout: float = field(0.05, "LoRA dropout")
    target_modules: str | list = field("all-linear", "LoRA target modules")
    lora_layers: int | None = field(None, "LoRA on the last N transformer layers only")
    bf16: bool = field(False, "bf16 autocast (CPUs with avx512_bf16, or GPUs)")
    save_steps: int = field(25, "checkpoint every N steps (resume from the latest)")
    logging_steps: int = field(5, "log every N steps")
    seed: int = field(0, "random seed")


def run_name(weights: Sequence[float]) -> str:
    """Folder name of the MORLHF run for w, e.g. "w0.25_0.75"."""
    return "w" + "_".join(f"{float(x):.2f}" for x in weights)


def _completion_text(c) -> str:
    # Conversational completions are [{"role": "assistant", "content": ...}].
    return c[-1]["content"] if isinstance(c, list) else c


def normalized_reward_funcs(names: Sequence[str], stats: RewardStats) -> list:
    """One TRL reward function per reward: its value z-scored with `stats` (the shared ones).

    TRL calls fn(prompts=..., completions=..., **dataset_columns); the reward models see the
    plain user request (the dataset's "query" column), as everywhere else in ric.
    """
    funcs = []
    for name in names:
        fn = get_reward_fn(name)
        mean, std = stats.mean[stats.names.index(name)], stats.std[stats.names.index(name)]

        def z(prompts, completions, query, _fn=fn, _m=mean, _s=std, **_):
            texts = [_completion_text(c) for c in completions]
            return ((_fn(list(query), texts) - _m) / _s).tolist()

        z.__name__ = z.__qualname__ = name  # TRL logs rewards/<name>/mean
        funcs.append(z)
    return funcs


def train_morlhf(recipe: MorlhfRecipe, weights: Sequence[float], stats: RewardStats) -> Path:
    """One GRPO run on sum_i w_i z_i; returns OUT/<run>/adapter. Resumes from checkpoints."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from ric.models import load_tokenizer, resolve_model

    w = [float(x) for x in weights]
    if len(w) != len(recipe.rewards) or min(w) < 0 or not np.isclose(sum(w), 1.0):
        raise ValueError(f"weights must be {len(recipe.rewards)} non-negative values summing to 1")
    set_threads_from_env()
    out = Path(recipe.out_dir) / run_name(w)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out)
    clock = RunClock(out)
    queries = read_prompts(recipe.prompts)[: recipe.max_prompts]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": q}], "query": q} for q in queries]
    )
    path = resolve_model(recipe.model)
    tok = load_tokenizer(path)  # left padding for generation
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    peft_config = recipe_lora(model, recipe)
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
        beta=recipe.beta,
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        reward_weights=w,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        bf16=recipe.bf16,
        # A 135M model fits in memory many times over: recomputing activations only costs time.
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        save_steps=recipe.save_steps,
        save_total_limit=2,
        logging_steps=recipe.logging_steps,
        report_to=[],
        seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=normalized_reward_funcs(recipe.rewards, stats),
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[checkpoint_callback(clock)],
    )
    result = run_trainer(trainer, out / "checkpoints")
    meta = RicMeta(
        base_model=recipe.model or DEFAULT.model,
        reward_names=list(recipe.rewards),
        stats=stats.to_dict(),
        conditioning=ConditioningFormat().to_dict(),
        extra={
            "recipe": dataclasses.asdict(recipe),
            "baseline": {"kind": "morlhf", "weights": w, "conditioned": False},
        },
    )
    adapter = save_adapter(trainer.model, out / "adapter", meta)
    write_json(
        out / TRAIN_LOG,
        {
            "command": command_line(),
            "weights": w,
            **result,
            "completions_per_step": recipe.batch_size * recipe.grad_accum,
            "finished": True,
            **clock.stop(),
        },
    )
    return adapter


def train_morlhf_all(recipe: MorlhfRecipe, stats: RewardStats) -> list[Path]:
    """Every run of the recipe; runs whose train_log.json has all steps are skipped."""
    adapters = []
    for w in recipe.weights:
        out = Path(recipe.out_dir) / run_name(w)
        log = read_json(out / TRAIN_LOG) if (out / TRAIN_LOG).exists() else {}
        if log.get("finished") and log["steps"] >= recipe.max_steps:
            adapters.append(out / "adapter")
            continue
        adapters.append(train_morlhf(recipe, w, stats))
    return adapters


class MorlhfPolicy(_PerWeightPolicy):
    """The MORLHF runs as one policy: the run trained for w answers at w (and nowhere else).
    `runs` maps each run's weights to its adapter's name in the PeftModel (transformers
    backend) or to its adapter folder (any other backend)."""

    def __init__(self, model, tokenizer, meta, runs: dict[tuple, str | Path], **serving):
        super().__init__(model, tokenizer, meta, **serving)
        self.runs = runs

    def use(self, weights: Sequence[float]) -> str | Path:
        for w, run in self.runs.items():
            if np.allclose(w, weights, atol=1e-6):
                if not self.in_place:
                    self.serve(Path(run))
                    return run
                self.model.set_adapter(run)
                self.model.eval()  # no LoRA dropout at inference
                return run
        raise ValueError(f"no MORLHF run for weights {list(weights)}; runs: {list(self.runs)}")


def load_morlhf(
    meta: RicMeta,
    adapters: Sequence[str | Path],
    model: str | None = None,
    dtype="bfloat16",
    backend: str = "transformers",
) -> MorlhfPolicy:
    """MorlhfPolicy over run adapters (each ric.json records its weights)."""
    from ric.models import load_model, load_tokenizer, resolve_backend

    backend = resolve_backend(backend)
    name = model or meta.base_model
    weights = [tuple(RicMeta.load(path).extra["baseline"]["weights"]) for path in adapters]
    if backend != "transformers":  # each run is merged and served by its own engine
        runs = {w: Path(path) for w, path in zip(weights, adapters, strict=True)}
        return MorlhfPolicy(
            None, load_tokenizer(name), meta, runs, backend=backend, base=name, sources=adapters
        )
    from peft import PeftModel

    base, tok = load_model(name, dtype=dtype)
    runs, peft = {}, None
    for k, (w, path) in enumerate(zip(weights, adapters, strict=True)):
        run = f"run_{k}"
        if peft is None:
            peft = PeftModel.from_pretrained(base, str(path), adapter_name=run)
        else:
            peft.load_adapter(str(path), adapter_name=run)
        runs[w] = run
    peft.eval()
    return MorlhfPolicy(peft, tok, meta, runs, base=name, dtype=dtype, sources=adapters)


# Recipe file stem -> its dataclass (train/recipes/bench_*.yaml), for bench/ and the tests.
BENCH_RECIPES = {"bench_soups": SoupsRecipe, "bench_morlhf": MorlhfRecipe}

__all__ = [
    "BENCH_RECIPES",
    "MorlhfPolicy",
    "MorlhfRecipe",
    "PromptOnlyPolicy",
    "SoupPolicy",
    "SoupsRecipe",
    "load_morlhf",
    "load_prompt_only",
    "load_soup",
    "normalized_reward_funcs",
    "plain_prompt",
    "preference_instruction",
    "ric_training_rows",
    "shared_stats",
    "top_quantile_rows",
    "train_morlhf",
    "train_morlhf_all",
    "train_soup_ingredients",
]
