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

The onnx engine runs them too: `add_to_onnx` rewrites an onnxruntime-genai export so that every
layer's input gets z . v^l from an extra graph input `reward_z` (batch, n_rewards), which the
engine fills from the same tags (`tag_values`) before the prompt goes in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
        z = tag_values(ids.tolist(), tokenizer, fmt, n_rewards)
        return torch.tensor(z, dtype=torch.float32, device=ids.device)

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


def tag_values(rows, tokenizer, fmt: ConditioningFormat, n_rewards: int) -> list[list[float]]:
    """z for each row of token ids: the values of its last n_rewards tags. The last ones are
    the current turn's (user text cannot carry tags: sanitized); a row without them (a plain
    chat) gets z = 0, the vectors' neutral point."""
    out = []
    for row in rows:
        values = parse_reward_tags(tokenizer.decode(row), fmt)
        out.append(values[-n_rewards:] if len(values) >= n_rewards else [0.0] * n_rewards)
    return out


def adapter_vectors(adapter) -> np.ndarray:
    """The (n_layers, n_rewards, hidden) additions per unit of z that an adapter's safetensors
    file holds (its stored vectors times SCALE), in float32."""
    from safetensors.torch import load_file  # torch: a bf16 file has no numpy dtype

    weights = load_file(str(Path(adapter) / "adapter_model.safetensors"))
    found = [v for k, v in weights.items() if ATTR in k.split(".")]
    if len(found) != 1:
        raise ValueError(f"{adapter} holds {len(found)} reward-vector tensors, expected one")
    return found[0].float().numpy() * SCALE


def add_to_onnx(model_file, vectors: np.ndarray) -> None:
    """Rewrite an onnxruntime-genai decoder export in place: a graph input `reward_z`
    (batch, n_rewards) and, before each layer l, its residual stream + z . v^l.

    The exporter names each layer's first norm `/model/layers.{l}/input_layernorm/...`; its
    first input is the residual stream entering the layer (the embeddings for layer 0, the
    previous layer's sum otherwise), read only there and by that layer's second norm. Every
    reader of that tensor gets the biased one, as the torch hook gives the layer its input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(model_file))
    graph = model.graph
    if any(i.name == "reward_z" for i in graph.input):
        raise ValueError(f"{model_file} already takes reward_z")
    n_layers, n_rewards, _ = vectors.shape
    graph.input.append(
        helper.make_tensor_value_info("reward_z", TensorProto.FLOAT, ["batch_size", n_rewards])
    )
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "reward_z.axes"))
    for layer in range(n_layers):
        prefix = f"/model/layers.{layer}/input_layernorm/"
        norms = [n for n in graph.node if n.name.startswith(prefix)]
        if len(norms) != 1:
            raise ValueError(f"the export has no single {prefix} node to add reward vectors at")
        stream, name = norms[0].input[0], f"/model/layers.{layer}/reward_vectors"
        weight = f"model.layers.{layer}.reward_vectors"
        graph.initializer.append(numpy_helper.from_array(vectors[layer], weight))
        added = [
            helper.make_node(
                "MatMul", ["reward_z", weight], [f"{name}/z_v"], name=f"{name}/MatMul"
            ),
            helper.make_node(
                "Unsqueeze",
                [f"{name}/z_v", "reward_z.axes"],
                [f"{name}/bias"],
                name=f"{name}/Unsqueeze",
            ),
            helper.make_node(
                "Add", [stream, f"{name}/bias"], [f"{name}/output_0"], name=f"{name}/Add"
            ),
        ]
        for node in graph.node:
            node.input[:] = [f"{name}/output_0" if x == stream else x for x in node.input]
        at = list(graph.node).index(norms[0])
        for k, node in enumerate(added):
            graph.node.insert(at + k, node)
    # Every weight is in memory now; onnx appends to an existing data file, so start a new one.
    data = Path(str(model_file) + ".data")
    data.unlink(missing_ok=True)
    onnx.save(model, str(model_file), save_as_external_data=True, location=data.name)


def prepare_model(model, tokenizer, fmt: ConditioningFormat, n_rewards: int) -> None:
    """Attach reward vectors when the format asks for them (before loading or adding LoRA)."""
    if fmt.vectors:
        attach_reward_vectors(model, tokenizer, fmt, n_rewards)
