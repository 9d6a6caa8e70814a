"""Reward vectors: the rewards written in the prompt also enter every layer as learned vectors.

With `ConditioningFormat(vectors=True)` each reward i gets one learned vector per decoder layer,
v_i^l, and the input of layer l at every position gets sum_i z_i v_i^l, where z holds the
normalized rewards written in the prompt's tags (read back from the token ids, so anything that
feeds the model a tagged prompt feeds it z too). The tags stay in the prompt; the vectors are a
second route from the same numbers.

Why (docs/METHOD.md section 3, docs/TRAINING.md): SFT of the 135M default on its own tagged
answers learned the average of what the tags stand for and not their values. Reading a number
several hundred tokens back needs an attention circuit that does not exist yet, and its
gradient is second-order (the head must attend to the tag AND the value must already matter),
so a few hundred CPU steps never built it. A value-scaled vector acts on every position
directly, first-order in v, like a diffusion U-Net's timestep embedding or a Decision
Transformer's return embedding.

The module sits on the decoder as `reward_vectors` and trains and saves through peft's
`modules_to_save`: it lives in the adapter's own safetensors file, and loading, merging and
resuming need nothing more than attaching it to the base model first. Generation: the prefill
forward (the whole prompt) reads z; the one-token decode steps after it reuse that z, so one
model serves one batch at a time (the engines' Batcher runs one).
"""

from __future__ import annotations

import torch
from torch import nn

from ric.conditioning import ConditioningFormat, parse_reward_tags

ATTR = "reward_vectors"
# Adam moves every parameter by about the learning rate per step, whatever its scale: the
# vectors are stored divided by this factor so that they learn 10x faster than the LoRA
# weights at one shared rate. 10 is the only scale tried (runs/sft_vec, docs/TRAINING.md).
SCALE = 10.0


class RewardVectors(nn.Module):
    """(n_layers, n_rewards, hidden) vectors, zero at the start (the base model unchanged)."""

    def __init__(self, n_layers: int, n_rewards: int, hidden: int):
        super().__init__()
        self.v = nn.Parameter(torch.zeros(n_layers, n_rewards, hidden))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, n_rewards) rewards -> (n_layers, batch, hidden) additions."""
        return torch.einsum("bn,lnd->lbd", z.to(self.v.dtype), self.v) * SCALE


def has_reward_vectors(model) -> bool:
    decoder = _decoder(model)
    return decoder is not None and hasattr(decoder, ATTR)


def _decoder(model):
    get = getattr(model, "get_decoder", None)
    return get() if callable(get) else None


def attach_reward_vectors(model, tokenizer, fmt: ConditioningFormat, n_rewards: int) -> None:
    """Give a causal LM (before peft wraps it) zero reward vectors and the hooks that add them."""
    decoder = _decoder(model)
    layers = getattr(decoder, "layers", None)
    if decoder is None or not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"reward vectors need a decoder with a .layers list; {type(model).__name__} has none"
        )
    if hasattr(decoder, ATTR):
        raise ValueError("this model already has reward vectors")
    decoder.add_module(ATTR, RewardVectors(len(layers), n_rewards, model.config.hidden_size))
    state: dict = {}

    def read_tags(ids: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in ids.tolist():
            values = parse_reward_tags(tokenizer.decode(row), fmt)
            # The last n tags are the current turn's (user text cannot carry tags: sanitized);
            # a prompt without them (a plain chat) gets z = 0, the vectors' neutral point.
            rows.append(values[-n_rewards:] if len(values) >= n_rewards else [0.0] * n_rewards)
        return torch.tensor(rows, dtype=torch.float32, device=ids.device)

    def before_decoder(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:  # inputs_embeds: no ids to read tags from
            state["add"] = None
            return None
        z = state.get("z")
        if ids.shape[1] > 1 or z is None or z.shape[0] != ids.shape[0]:
            z = state["z"] = read_tags(ids)
        # getattr at call time: peft swaps in its trainable copy (modules_to_save)
        state["add"] = getattr(decoder, ATTR)(z)
        return None

    decoder.register_forward_pre_hook(before_decoder, with_kwargs=True)
    for index, layer in enumerate(layers):

        def before_layer(module, args, kwargs, index=index):
            add = state.get("add")
            if add is None:
                return None
            if args:
                return (args[0] + add[index][:, None, :].to(args[0].dtype), *args[1:]), kwargs
            h = kwargs["hidden_states"]
            return args, {**kwargs, "hidden_states": h + add[index][:, None, :].to(h.dtype)}

        layer.register_forward_pre_hook(before_layer, with_kwargs=True)


def prepare_model(model, tokenizer, fmt: ConditioningFormat, n_rewards: int) -> None:
    """Attach reward vectors when the format asks for them (before loading or adding LoRA)."""
    if fmt.vectors:
        attach_reward_vectors(model, tokenizer, fmt, n_rewards)
