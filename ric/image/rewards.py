"""Image rewards: each a small factory returning ``fn(prompts, images) -> np.ndarray``.

Prompts are the captions WITHOUT reward tags; images are PIL images or HxWx3 uint8 arrays; the
result is float64 of shape (n,). Factories are picked by name from `REWARDS`; build them with
``ric.rewards.get_reward_fn(name, **kwargs)``, which shares one loaded model per configuration
with the text rewards. Offline: compressibility, colorfulness, sharpness, contrast,
aesthetic_composite, compliance (its classifier ships with the model); aesthetic (LAION) needs
the hub once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

# Image rewards are called as fn(prompts, images) -> np.ndarray (float64, shape (n,)): prompts
# are the captions WITHOUT reward tags, images PIL images or HxWx3 uint8 arrays. The offline
# ones (compressibility, colorfulness, sharpness) need no download; aesthetic needs the hub.

ImageRewardFn = Callable[[list[str], list[Any]], np.ndarray]

CLIP_L14 = "openai/clip-vit-large-patch14"


def _as_rgb_array(image: Any, i: int) -> np.ndarray:
    """An HxWx3 uint8 array from a PIL image (any mode) or an HxWx3 uint8 array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"images[{i}] must be an HxWx3 uint8 array, got {image.dtype} {image.shape}"
            )
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"images[{i}] is empty, shape {image.shape}")
        return image
    # A PIL image without importing PIL here: every PIL.Image.Image has .convert and .size.
    if hasattr(image, "convert") and hasattr(image, "size") and hasattr(image, "mode"):
        return np.asarray(image.convert("RGB"))
    raise ValueError(
        f"images[{i}] must be a PIL image or an HxWx3 uint8 array, got {type(image).__name__}"
    )


def _image_reward_fn(score: Callable[..., Any], name: str, doc: str, prompted: bool = False):
    """Wrap a scorer of RGB uint8 arrays (and, when prompted, of their captions) with the
    checks every image reward shares."""

    def fn(prompts: list[str], images: list[Any]) -> np.ndarray:
        from ric.rewards import _check_texts  # here: ric.rewards imports this module

        prompts = _check_texts(prompts, "prompts")
        if not isinstance(images, (list, tuple)):
            raise ValueError(
                f"images must be a list of PIL images or HxWx3 uint8 arrays, "
                f"got {type(images).__name__}"
            )
        if len(prompts) != len(images):
            raise ValueError(
                f"prompts and images must have the same length, "
                f"got {len(prompts)} prompts and {len(images)} images"
            )
        if not images:
            return np.zeros(0, dtype=np.float64)
        arrays = [_as_rgb_array(img, i) for i, img in enumerate(images)]
        scores = score(arrays, prompts) if prompted else score(arrays)
        out = np.asarray(scores, dtype=np.float64).reshape(-1)
        if out.shape != (len(arrays),):
            raise RuntimeError(f"reward {name!r} returned {out.shape[0]} scores for {len(arrays)}")
        return out

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def compressibility(size: int | None = 512, quality: int = 95) -> ImageRewardFn:
    """Minus the JPEG size in kB (1000 bytes) at ``quality``, after resizing to size x size.

    The paper's diffusion reward (512 x 512, quality 95); ``size=None`` keeps the image's own
    size. Higher is better: a flat image compresses to a few hundred bytes, noise does not.

    >>> fn = compressibility(size=64)
    >>> fn([""], [np.zeros((32, 32, 3), np.uint8)])  # doctest: +SKIP
    array([-0.7...])
    """
    if size is not None and not (isinstance(size, int) and size > 0):
        raise ValueError(f"compressibility size must be a positive int or None, got {size!r}")
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ValueError(f"JPEG quality must be an int in [1, 100], got {quality!r}")
    import io

    from PIL import Image

    def score(images: list[np.ndarray]) -> list[float]:
        out = []
        for arr in images:
            img = Image.fromarray(arr)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            out.append(-buf.tell() / 1000.0)
        return out

    return _image_reward_fn(score, "compressibility", compressibility.__doc__)


def colorfulness() -> ImageRewardFn:
    """Hasler & Suesstrunk (2003) colorfulness: 0 for a grey image, ~100+ for saturated ones.

    With rg = R - G and yb = (R + G) / 2 - B over all pixels (0..255):
    ``sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``.

    >>> fn = colorfulness()
    >>> fn(["", ""], [np.full((8, 8, 3), 128, np.uint8), np.eye(3, dtype=np.uint8)[None].repeat(3, 0) * 255])  # doctest: +SKIP
    array([  0.        , 133.8...])
    """

    def one(arr: np.ndarray) -> float:
        rgb = arr.reshape(-1, 3).astype(np.float64)
        rg = rgb[:, 0] - rgb[:, 1]
        yb = 0.5 * (rgb[:, 0] + rgb[:, 1]) - rgb[:, 2]
        return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))

    def score(images: list[np.ndarray]) -> list[float]:
        return [one(arr) for arr in images]

    return _image_reward_fn(score, "colorfulness", colorfulness.__doc__)


def sharpness(log: bool = True) -> ImageRewardFn:
    """Variance of the Laplacian of the grey image (0..255), ``log1p`` of it by default.

    A standard focus measure: blur removes high frequencies and with them the Laplacian's
    variance; the log keeps one noisy image from dominating the z-scores.

    >>> fn = sharpness()
    >>> fn([""], [np.full((16, 16, 3), 90, np.uint8)])  # doctest: +SKIP
    array([0.])
    """
    from scipy.ndimage import laplace

    def one(arr: np.ndarray) -> float:
        # ITU-R 601 luma, the grey conversion PIL and skimage use.
        grey = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        var = float(laplace(grey, mode="reflect").var())
        return float(np.log1p(var)) if log else var

    def score(images: list[np.ndarray]) -> list[float]:
        return [one(arr) for arr in images]

    return _image_reward_fn(score, "sharpness", sharpness.__doc__)


def aesthetic_mlp(dim: int = 768):
    """The LAION improved-aesthetic-predictor head: an MLP on unit-norm CLIP image embeddings.

    Its state-dict keys (``layers.0.weight`` ... ``layers.7.bias``) match the released
    ``sac+logos+ava1-l14-linearMSE.pth``, so converted weights load as they are.
    """
    import torch
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(dim, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, embeds: torch.Tensor) -> torch.Tensor:
            return self.layers(embeds).squeeze(-1)

    return AestheticMLP()


def convert_aesthetic_weights(pth: str | Path, out: str | Path) -> Path:
    """Convert the released ``sac+logos+ava1-l14-linearMSE.pth`` to safetensors, once.

    The .pth is loaded with ``weights_only=True`` (plain tensors, no code is unpickled).

        python -c "from ric.rewards import convert_aesthetic_weights as c; \\
            c('sac+logos+ava1-l14-linearMSE.pth', 'aesthetic_mlp.safetensors')"
    """
    import torch
    from safetensors.torch import save_file

    state = torch.load(pth, map_location="cpu", weights_only=True)
    state = {k: v.contiguous() for k, v in state.items()}
    aesthetic_mlp(state["layers.0.weight"].shape[1]).load_state_dict(state)  # checks the keys
    save_file(state, str(out))
    return Path(out)


def _load_aesthetic_weights(mlp_weights: str | None) -> dict:
    """State dict of the aesthetic MLP from a safetensors path or ``org/repo:file.safetensors``."""
    missing = (
        "the 'aesthetic' reward needs the LAION improved-aesthetic-predictor MLP as safetensors: "
        "pass mlp_weights=PATH or mlp_weights='org/repo:file.safetensors' (convert the released "
        "sac+logos+ava1-l14-linearMSE.pth with ric.rewards.convert_aesthetic_weights)"
    )
    if not mlp_weights:
        raise RuntimeError(missing)
    from safetensors.torch import load_file

    path = Path(mlp_weights)
    if not path.is_file():
        repo, sep, filename = str(mlp_weights).partition(":")
        if not sep or not filename.endswith(".safetensors"):
            raise RuntimeError(f"{missing}; {mlp_weights!r} is neither a file nor such a hub spec")
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(repo, filename))
        except Exception as e:  # offline, unknown repo, missing file: all mean "not available"
            raise RuntimeError(f"{missing}; could not fetch {mlp_weights!r}: {e}") from e
    return load_file(str(path))


def aesthetic(
    mlp_weights: str | None = None,
    clip_model: str = CLIP_L14,
    batch_size: int = 16,
    device: str | None = None,
) -> ImageRewardFn:
    """LAION improved aesthetic score (about 1..10): CLIP ViT-L/14 image embedding + MLP.

    Needs the hub (or local copies): ``clip_model`` (default openai/clip-vit-large-patch14)
    through transformers, and the MLP weights as safetensors (``mlp_weights``: a file, or
    ``org/repo:file.safetensors``). Raises RuntimeError naming what is missing otherwise.

    >>> fn = aesthetic(mlp_weights="aesthetic_mlp.safetensors")  # doctest: +SKIP
    >>> fn(["a photo of a cat"], [image])  # doctest: +SKIP
    array([5.8...])
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    state = _load_aesthetic_weights(mlp_weights)

    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    try:
        clip = CLIPModel.from_pretrained(clip_model, use_safetensors=True)
        processor = CLIPImageProcessor.from_pretrained(clip_model)
    except OSError as e:
        raise RuntimeError(
            f"the 'aesthetic' reward needs the CLIP model {clip_model!r} (safetensors weights and "
            f"its image processor), which could not be loaded; download it once with a hub "
            f"connection or pass clip_model=LOCAL_FOLDER: {e}"
        ) from e
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    mlp = aesthetic_mlp(clip.config.projection_dim)
    try:
        mlp.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"aesthetic MLP weights {mlp_weights!r} do not fit: {e}") from e
    clip.to(device).eval()
    mlp.to(device).eval()

    def score(images: list[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                pixels = processor(images=images[start : start + batch_size], return_tensors="pt")
                emb = clip.get_image_features(pixel_values=pixels["pixel_values"].to(device))
                emb = getattr(emb, "pooler_output", emb)  # a tensor, or an output object
                emb = emb / emb.norm(dim=-1, keepdim=True)
                out.append(mlp(emb.float()).cpu().numpy())
        return np.concatenate(out)

    return _image_reward_fn(score, "aesthetic", aesthetic.__doc__)


def contrast() -> ImageRewardFn:
    """RMS contrast: the standard deviation of the grey image's luma (0..255), 0 when flat.

    >>> contrast()([""], [np.full((8, 8, 3), 90, np.uint8)])  # doctest: +SKIP
    array([0.])
    """

    def score(images: list[np.ndarray]) -> list[float]:
        return [float(_luma(arr).std()) for arr in images]

    return _image_reward_fn(score, "contrast", contrast.__doc__)


def _luma(arr: np.ndarray) -> np.ndarray:
    # ITU-R 601 luma, the grey conversion PIL and skimage use.
    return arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# Each term of aesthetic_composite divided by its median over 2,000 32 px patches of the 8
# default subjects (7.36, 36.2, 25.2), so that the three weigh about equally.
COMPOSITE_SCALES = {"sharpness": 7.4, "contrast": 36.0, "colorfulness": 25.0}


def aesthetic_composite() -> ImageRewardFn:
    """A documented stand-in for an aesthetic score, offline: the mean of three classic
    no-reference measures, each divided by its typical value (COMPOSITE_SCALES):
    sharpness (log1p of the Laplacian variance), RMS contrast (std of luma) and Hasler &
    Suesstrunk colourfulness. 0 for a flat grey image; about 1 for a typical photograph patch;
    above 1 for crisp, contrasted, colourful images.

    >>> aesthetic_composite()([""], [np.full((8, 8, 3), 90, np.uint8)])  # doctest: +SKIP
    array([0.])
    """
    parts = {"sharpness": sharpness(), "contrast": contrast(), "colorfulness": colorfulness()}

    def score(images: list[np.ndarray]) -> np.ndarray:
        prompts = [""] * len(images)
        terms = [fn(prompts, images) / COMPOSITE_SCALES[k] for k, fn in parts.items()]
        return np.mean(terms, axis=0)

    return _image_reward_fn(score, "aesthetic_composite", aesthetic_composite.__doc__)


# Log-odds beyond +-10 (the classifier 99.995% sure either way) say nothing more about the
# image and would stretch the z-scores; on the training patches most values sit near the top.
COMPLIANCE_CLIP = 10.0


def compliance(classifier: str | None = None, device: str = "cpu") -> ImageRewardFn:
    """How clearly an image shows the subject its caption names: the log-odds
    ``log(p / (1 - p))`` of that subject under the shipped subject classifier
    (ric.image.classifier), clipped to +-COMPLIANCE_CLIP. 0 = a coin toss between "this
    subject" and "another one"; +4.6 = 99% sure; negative = it looks like another subject.
    Log-odds rather than p: p sits at 0.99+ for most training patches, which left the
    z-scores no room above the mean. `classifier` is the classifier's folder (classifier/ in
    a RiC image model folder).

    >>> fn = compliance("assets/image/model/classifier")  # doctest: +SKIP
    >>> fn(["a cat"], [cat_image])  # doctest: +SKIP
    array([6.2])
    """
    if classifier is None:
        raise ValueError("compliance needs classifier=<folder of the subject classifier>")
    from ric.image.classifier import SubjectClassifier
    from ric.image.data import subject_index

    clf = SubjectClassifier.load(classifier).to(device)

    def score(arrays: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        labels = [subject_index(p, clf.subjects) for p in prompts]
        missing = sorted({p for p, k in zip(prompts, labels, strict=True) if k is None})
        if missing:
            raise ValueError(
                f"compliance: captions {missing[:3]} name none of the subjects {clf.subjects}"
            )
        return np.clip(clf.log_odds(arrays, labels), -COMPLIANCE_CLIP, COMPLIANCE_CLIP)

    return _image_reward_fn(score, "compliance", compliance.__doc__, prompted=True)


REWARDS: dict[str, Callable[..., ImageRewardFn]] = {
    "compressibility": compressibility,
    "colorfulness": colorfulness,
    "sharpness": sharpness,
    "contrast": contrast,
    "aesthetic_composite": aesthetic_composite,
    "compliance": compliance,
    "aesthetic": aesthetic,
}
IMAGE_REWARDS = REWARDS  # the name ric.rewards has always exported

# Rewards that read the caption (the others score the image alone).
PROMPTED_REWARDS = ("compliance",)
# Rewards whose model ships inside the RiC model folder: kwarg -> sub-folder.
SHIPPED_WITH_MODEL = {"compliance": {"classifier": "classifier"}}


def model_reward_kwargs(names: Sequence[str], kwargs: dict, folder: str | Path | None) -> dict:
    """`kwargs` (reward -> factory kwargs) plus the reward models shipped in a model folder.

    >>> model_reward_kwargs(["compliance"], {}, "m")
    {'compliance': {'classifier': 'm/classifier'}}
    """
    out = {k: dict(v) for k, v in kwargs.items()}
    for name, files in SHIPPED_WITH_MODEL.items():
        if name in names and folder is not None:
            for key, sub in files.items():
                out.setdefault(name, {})[key] = str(Path(folder) / sub)
    return out


def is_image_reward(name: str) -> bool:
    """True for rewards called as fn(prompts, images) rather than fn(prompts, responses)."""
    return name in REWARDS


def score_images(
    names: Sequence[str],
    images: Sequence[Any],
    prompts: Sequence[str] | None = None,
    reward_kwargs: dict | None = None,
    chunk: int = 512,
    progress: bool = False,
) -> np.ndarray:
    """Raw rewards, shape (n_images, n_rewards); prompts default to "" (no caption)."""
    from ric.rewards import get_reward_fn

    reward_kwargs = reward_kwargs or {}
    fns = [get_reward_fn(n, **reward_kwargs.get(n, {})) for n in names]
    images = list(images)
    prompts = [""] * len(images) if prompts is None else list(prompts)
    out = np.zeros((len(images), len(fns)), dtype=np.float64)
    starts = range(0, len(images), chunk)
    for s in tqdm(starts, desc="scoring images", unit="chunk", disable=not progress):
        for j, fn in enumerate(fns):
            out[s : s + chunk, j] = fn(prompts[s : s + chunk], images[s : s + chunk])
    return out
