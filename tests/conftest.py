"""Shared fixtures: tiny models and tokenizers built in code, so most tests need no weights."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "hello there how are you today",
    "the weather is sunny and bright and i feel great",
    "my dog died and i am very sad",
    "explain in detail how a bicycle works",
    "rm1_score rm2_score rm3_score 0 1 2 3 4 5 6 7 8 9 . - < > _",
    "user assistant system",
]


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer with ChatML special tokens, trained in a blink."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def build_tiny_lm(tokenizer, seed: int = 0):
    """A 2-layer Llama of width 32: runs every code path of a real model in milliseconds.
    Heads of size 16: onnxruntime's attention kernel takes no smaller (the onnx engine's tests
    export this same model)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,  # the onnx export's context: room for long prompts
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny causal LM saved as safetensors, loadable by any from_pretrained path."""
    path = tmp_path_factory.mktemp("tiny_lm")
    build_tiny_lm(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def make_tiny_adapter(
    folder, model_dir, reward_names=("positivity", "brevity"), seed=0, vectors=False
):
    """A LoRA adapter on the tiny LM with RiC metadata: what train/sft.py writes, in a blink.
    vectors=True adds random reward vectors (ric.vectors), saved with the LoRA."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ric.artifacts import RicMeta
    from ric.conditioning import ConditioningFormat
    from ric.normalization import RewardStats
    from ric.vectors import ATTR, attach_reward_vectors

    fmt = ConditioningFormat(vectors=vectors)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    if vectors:
        attach_reward_vectors(base, AutoTokenizer.from_pretrained(model_dir), fmt, 2)
        torch.manual_seed(seed)
        with torch.no_grad():
            getattr(base.get_decoder(), ATTR).v.normal_(std=0.2)
    lora = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules="all-linear",
        modules_to_save=[ATTR] if vectors else None,
    )
    peft = get_peft_model(base, lora)
    peft.save_pretrained(folder)
    rng = np.random.default_rng(seed)
    stats = RewardStats.fit(rng.normal(size=(200, len(reward_names))), list(reward_names))
    stats.save(folder)
    RicMeta(
        base_model=str(model_dir),
        reward_names=list(reward_names),
        stats=stats.to_dict(),
        conditioning=fmt.to_dict(),
    ).save(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir):
    return make_tiny_adapter(tmp_path_factory.mktemp("tiny_adapter"), tiny_model_dir)
