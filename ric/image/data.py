"""Training images: the photographs scikit-image ships (embedded backend) and captioned folders
(SD backend).

The prompted embedded model draws its subjects from skimage/data/, read from disk inside the
installed package, so no pooch download can happen. A caption names a subject by its name or an
alias ("a photo of a cat" -> cat); `subject_index` is the one parser, used by the model and by
the compliance reward alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ric.artifacts import read_jsonl

# Name -> (file in skimage/data/, sampling weight when no subjects are given): colour photos
# twice as often as grey ones, so that "not colourful" is common but not the majority.
SKIMAGE_PHOTOS = {
    "astronaut": ("astronaut.png", 2),
    "chelsea": ("chelsea.png", 2),
    "coffee": ("coffee.png", 2),
    "rocket": ("rocket.jpg", 2),
    "colorwheel": ("color.png", 2),
    "hubble_deep_field": ("hubble_deep_field.jpg", 2),
    "immunohistochemistry": ("ihc.png", 2),
    "retina": ("retina.jpg", 2),
    "motorcycle": ("motorcycle_left.png", 2),
    "logo": ("logo.png", 2),
    "camera": ("camera.png", 1),
    "brick": ("brick.png", 1),
    "grass": ("grass.png", 1),
    "gravel": ("gravel.png", 1),
    "moon": ("moon.png", 1),
    "coins": ("coins.png", 1),
}

# Prompted subjects: subject -> (photograph, other words a caption may use for it).
SUBJECTS = {
    "astronaut": ("astronaut", ["eileen collins", "spacesuit"]),
    "cat": ("chelsea", ["kitten", "chelsea"]),
    "coffee": ("coffee", ["cup of coffee", "cup", "espresso"]),
    "rocket": ("rocket", ["launch", "spacecraft"]),
    "coins": ("coins", ["coin", "money"]),
    "moon": ("moon", ["lunar surface", "crater"]),
    "cameraman": ("camera", ["photographer", "camera"]),
    "motorcycle": ("motorcycle", ["motorbike", "bike"]),
    "galaxy": ("hubble_deep_field", ["galaxies", "deep field", "space"]),
    "retina": ("retina", ["eye", "fundus"]),
}


def subject_index(caption: str, subjects: Sequence[str]) -> int | None:
    """Index in `subjects` of the subject a caption names (whole words, name or alias, the
    longest match first); None when it names none of them.

    >>> subject_index("A photo of a cat", ["astronaut", "cat"])
    1
    """
    text = " ".join(re.findall(r"[a-z]+", caption.lower()))
    words = sorted(
        ((w, i) for i, s in enumerate(subjects) for w in [s, *SUBJECTS.get(s, ("", []))[1]]),
        key=lambda wi: -len(wi[0]),
    )
    for word, i in words:
        if re.search(rf"\b{re.escape(word)}\b", text):
            return i
    return None


def skimage_data_dir() -> Path:
    """skimage/data/ inside the installed package (found without importing skimage)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded image model trains on scikit-image's photographs: "
            "pip install scikit-image"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_photos(names: Sequence[str] | None = None) -> list[np.ndarray]:
    """The bundled photographs as HxWx3 uint8: grey ones as RGB, RGBA composited on white."""
    from PIL import Image

    names = list(SKIMAGE_PHOTOS) if names is None else list(names)
    photos = []
    for name in names:
        if name not in SKIMAGE_PHOTOS:
            raise ValueError(
                f"{name!r} is not a bundled skimage photograph; choose from {list(SKIMAGE_PHOTOS)}"
            )
        path = skimage_data_dir() / SKIMAGE_PHOTOS[name][0]
        if not path.is_file():
            raise RuntimeError(f"{path} is missing: reinstall scikit-image")
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba).convert("RGB")
            else:
                img = im.convert("RGB")
        photos.append(np.asarray(img))
    return photos


def make_patches(
    n: int,
    size: int = 32,
    seed: int = 0,
    names: Sequence[str] | None = None,
    min_crop: float = 0.0,
    uniform: bool = False,
    progress: bool = False,
    sides: bool = False,
) -> tuple[np.ndarray, ...]:
    """(n patches (n, size, size, 3) uint8, the index in `names` each came from), both
    deterministic in seed; with `sides`, also each crop's side over the photo's short side.

    Each patch: a photograph drawn by its SKIMAGE_PHOTOS weight (uniformly with `uniform`), a
    square crop whose side is log-uniform between max(size, min_crop x short side) and the
    short side, downscaled with a box filter, flipped left-right half the time.
    """
    from PIL import Image

    names = list(SKIMAGE_PHOTOS) if names is None else list(names)
    photos = [Image.fromarray(p) for p in load_photos(names)]
    weights = np.array([1 if uniform else SKIMAGE_PHOTOS[n_][1] for n_ in names], dtype=float)
    rng = np.random.default_rng(seed)
    which = rng.choice(len(photos), size=n, p=weights / weights.sum())
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    frac = np.empty(n)
    for k in tqdm(range(n), desc="cutting patches", unit="patch", disable=not progress):
        photo = photos[which[k]]
        w, h = photo.size
        short = min(w, h)
        lo = max(size, min(short, int(min_crop * short)))
        side = int(round(math.exp(rng.uniform(math.log(lo), math.log(short)))))
        frac[k] = side / short
        x, y = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
        patch = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BOX)
        if rng.random() < 0.5:
            patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out[k] = np.asarray(patch)
    return (out, which, frac) if sides else (out, which)


def subject_patches(
    n: int,
    size: int,
    seed: int,
    subjects: Sequence[str],
    min_crop: float,
    progress=False,
    sides: bool = False,
) -> tuple[np.ndarray, ...]:
    """Patches of the subjects' photographs, subjects drawn uniformly; labels index subjects
    (make_patches; `sides` adds each crop's side)."""
    names = [SUBJECTS[s][0] for s in subjects]
    return make_patches(n, size, seed, names, min_crop, True, progress, sides)


def vivid_edit(
    patches: np.ndarray, share: float, strength: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(patches, each one's edit strength) with a random `share` of them given the "vivid" edit
    photo apps offer, deterministic in seed: colour saturation x s, contrast x (1 + (s - 1) / 4),
    sharpening x s, s uniform in [1, strength] (1 = unedited). The edit raises the aesthetic
    composite and moves a patch away from its photograph (the classifier is less sure of it):
    the data then holds the aesthetic-vs-compliance trade-off (docs/IMAGE.md)."""
    from PIL import Image, ImageEnhance

    if not 0.0 <= share <= 1.0 or strength < 1.0:
        raise ValueError(f"vivid edit: share in [0, 1] and strength >= 1, got {share}, {strength}")
    rng = np.random.default_rng(seed)
    edited = rng.random(len(patches)) < share
    s = np.where(edited, rng.uniform(1.0, strength, len(patches)), 1.0)
    out = patches.copy()
    for k in np.flatnonzero(edited):
        im = ImageEnhance.Color(Image.fromarray(patches[k])).enhance(s[k])
        im = ImageEnhance.Contrast(im).enhance(1.0 + (s[k] - 1.0) / 4)
        out[k] = np.asarray(ImageEnhance.Sharpness(im).enhance(s[k]))
    return out, s


def read_caption_folder(folder: str | Path, caption_column: str = "text") -> list[tuple[Path, str]]:
    """(image path, caption) pairs from FOLDER/metadata.jsonl, the Hugging Face imagefolder
    layout: one ``{"file_name": "x.jpg", "text": "a caption"}`` per line."""
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} not found: the sd backend reads images + captions there")
    pairs = []
    for i, row in enumerate(read_jsonl(meta)):
        if "file_name" not in row or caption_column not in row:
            raise ValueError(f"{meta} line {i + 1} needs 'file_name' and {caption_column!r}")
        path = folder / row["file_name"]
        if not path.exists():
            raise FileNotFoundError(f"{meta} line {i + 1}: {path} does not exist")
        pairs.append((path, str(row[caption_column])))
    if len(pairs) < 2:
        raise ValueError(f"{meta} lists {len(pairs)} images; need at least 2")
    return pairs


def load_rgb(path: Path, resolution: int | None = None) -> np.ndarray:
    """An RGB image; with resolution: shorter side resized to it, then centre-cropped."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    if resolution is not None:
        w, h = img.size
        s = resolution / min(w, h)
        img = img.resize((max(resolution, round(w * s)), max(resolution, round(h * s))))
        w, h = img.size
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    return np.asarray(img)
