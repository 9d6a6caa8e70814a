"""The Image tab: preference sliders for the image model's rewards, a prompt box, the generated
images with their achieved rewards and the image front; plus the /generate_image API endpoint.
Every generation goes through ric.image.sampling.SteerableImageModel.

The image model is optional: without one (not trained yet, a wrong --image-model folder, a
broken one) the tab says why and how to train it, and the Text tabs work as before.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import numpy as np

from ric.app.loading import load_fronts
from ric.app.widgets import (
    normalized,
    preference_table,
    ui_errors,
    weight_sliders,
    wire_simplex_sliders,
)
from ric.image.sampling import SteerableImageModel, enlarge
from ric.mapping import METHODS
from ric.plotting import pareto_figure
from ric.validation import MAX_IMAGE_PROMPT_CHARS, Limits, check_seed, check_whole, image_request

IMAGE_ASSETS = Path(__file__).resolve().parents[2] / "assets" / "image"
DEFAULT_IMAGE_MODEL = IMAGE_ASSETS / "model"
IMAGE_FRONT = IMAGE_ASSETS / "front.json"
IMAGE_BASE_FRONT = IMAGE_ASSETS / "base_front.json"
IMAGE_TRAIN_COMMAND = "python train/train_diffusion.py --config train/recipes/cpu_image.yaml"
MAX_IMAGES = 8  # per request
DISPLAY_SIZE = 128  # smaller images (the embedded model makes 32 px) are enlarged to this
# The image model has its own slot: it is a different model (its own lock), so an image request
# does not wait behind a long chat reply, and vice versa.
IMAGE_QUEUE = dict(concurrency_id="image_model", concurrency_limit=1)


def no_image_model_note(problem: str | None = None) -> str:
    """The Image tab's text when there is no image model: why, and how to get one."""
    lead = problem or (
        "**No image model:** the RiC image model has not been trained and shipped yet."
    )
    return (
        f"{lead}\n\n"
        "Train the embedded one (a small prompted, reward-conditioned UNet, under an hour on "
        "1 CPU thread; docs/IMAGE.md):\n\n"
        f"```bash\n{IMAGE_TRAIN_COMMAND}\n```\n\n"
        "then start the app with `--image-model runs/image/model` (or ship it as "
        "`assets/image/model`, the default)."
    )


def load_image_model(
    folder: str | Path | None, device: str | None = None
) -> tuple[SteerableImageModel | None, str]:
    """(model, a one-line description), or (None, why there is none: Markdown for the tab).
    A missing or broken image model never stops the app: the Text tabs work without it."""
    if folder is None:
        return None, no_image_model_note()
    if not Path(folder).exists():
        return None, no_image_model_note(
            f"**`--image-model {folder}`: that folder does not exist.**"
        )
    t0 = time.time()
    print(f"ric: loading RiC image model {folder} ...", flush=True)
    try:
        image = SteerableImageModel.load(folder, device=device)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        print(f"ric: cannot load the image model {folder}: {e}", file=sys.stderr, flush=True)
        return None, no_image_model_note(
            f"**Cannot load the image model `{folder}`:** "
            + html.escape(str(e) or type(e).__name__, quote=False)
        )
    print(
        f"ric: image model loaded in {time.time() - t0:.1f} s; rewards {image.reward_names}",
        flush=True,
    )
    return image, f"RiC image model `{folder}`"


def image_setup(folder: str | None) -> tuple[SteerableImageModel | None, str, list[dict]]:
    """(image model or None, its description or the tab's note, its fronts): the given folder,
    else the shipped assets/image/model if it exists; the shipped fronts go with the shipped
    model only."""
    if folder is None and DEFAULT_IMAGE_MODEL.is_dir():
        folder = str(DEFAULT_IMAGE_MODEL)
    image, label = load_image_model(folder)
    if image is None:
        print("ric: no image model: the Image tab says how to train one", flush=True)
        return None, label, []
    fronts = []
    if Path(folder).resolve() == DEFAULT_IMAGE_MODEL.resolve():
        fronts = load_fronts([IMAGE_FRONT, IMAGE_BASE_FRONT], image.reward_names)
    return image, label, fronts


def check_image_request(n, seed) -> tuple[int, int]:
    """(n, seed) as ints (no seed: 0), or ValueError naming the field (ric.validation)."""
    return check_whole(n, "n (number of images)", 1, MAX_IMAGES), check_seed(seed, default=0)


def for_display(images: Sequence) -> list:
    """Images smaller than DISPLAY_SIZE enlarged (nearest neighbour: pixels stay crisp)."""
    return [enlarge([im], DISPLAY_SIZE)[0] if im.width < DISPLAY_SIZE else im for im in images]


def image_caption(k: int, names: Sequence[str], achieved: Sequence[float]) -> str:
    """Gallery caption: "#2  compressibility +0.31 · colorfulness -1.20"."""
    return f"#{k + 1}  " + " · ".join(
        f"{name} {a:+.2f}" for name, a in zip(names, achieved, strict=True)
    )


def image_rows(names: Sequence[str], desired, achieved) -> list[list]:
    """Rows of the results table: desired, each image's achieved rewards, their mean, and the
    mean's gap to the desired rewards."""
    mean = np.asarray(achieved).mean(axis=0)
    rows = [["desired", *desired]]
    rows += [[f"image {k + 1}", *a] for k, a in enumerate(achieved)]
    rows += [["mean", *mean], ["mean - desired", *(mean - np.asarray(desired))]]
    return [[r[0], *(round(float(v), 3) for v in r[1:])] for r in rows]


def image_header(image: SteerableImageModel, label: str) -> str:
    extra = image.meta.extra
    size = extra.get("image_size") or extra.get("resolution")
    parts = [
        f"**Image model:** {label} ({image.backend_name})",
        f"**rewards:** {', '.join(image.reward_names)}",
        f"{extra.get('num_inference_steps', 25)} sampling steps, "
        f"guidance {extra.get('guidance_scale', 3.0)}",
    ]
    if size:
        parts.append(f"{size} px images" + (" (shown enlarged)" if size < DISPLAY_SIZE else ""))
    if image.subjects:
        parts.append(f"**subjects:** {', '.join(image.subjects)}")
    clf = extra.get("classifier") or {}
    if clf.get("test_accuracy") is not None:
        text = f"compliance classifier {clf['test_accuracy']:.1%} right on held-out crops"
        if wide := clf.get("wide_crops"):  # trained on large crops: say what close-ups get
            text += f" ({wide['accuracy']:.0%} on the crops the image model learned from)"
        parts.append(text)
    timing = extra.get("train", {}).get("sample_timing") or {}
    if timing.get("seconds"):
        parts.append(f"{timing['n_images']} images in {timing['seconds']:.2g} s after training")
    return " · ".join(parts)


def image_tab(image: SteerableImageModel | None, note: str, fronts: Sequence[dict] = ()) -> None:
    """The Image tab: preference sliders for the image rewards, the prompt box, generated
    images with their achieved rewards and the image front; with no image model, `note` says why and how to
    train one. Registers /generate_image when there is a model."""
    if image is None:
        gr.Markdown(note, elem_id="image-note")
        return
    names = image.reward_names
    n = len(names)
    plottable = n in (2, 3)
    default_method = image.meta.mapping

    def figure(desired=None, generations=()):
        if not plottable:
            return None
        return pareto_figure(names, fronts, desired, generations, "generations")

    # The API and the prompt box go through the same checks, so both refuse a prompt that
    # names no subject of a prompted model with the same message, naming `prompt`.
    limits = Limits(n_rewards=n, max_images=MAX_IMAGES, subjects=tuple(image.subjects))

    def run(weights, method, n_images, seed, prompt):
        req = image_request(weights, method, n_images, seed, prompt, limits)
        caption = image.user_prompt(req.prompt)  # "" becomes the model's first subject
        return image.generate(
            req.weights, n=req.n, seed=req.seed, method=req.method, prompt=caption
        )

    @ui_errors
    def generate_image_api(weights, method, n, seed, prompt=""):
        """`n` images (1-8) at preference `weights` (one per image reward, >= 0; renormalized
        to sum 1), sampled with `seed`, for `prompt` (a prompted model's prompt must name one
        of its subjects; empty: its first subject, or no caption for an unprompted model).
        Returns (images as a gallery: (file, caption) pairs, at the model's own resolution;
        desired rewards; achieved rewards, one list per image); rewards are normalized, in the
        model's reward order."""
        images, desired, achieved = run(weights, method, n, seed, prompt)
        gallery = [
            (im, image_caption(k, names, a))
            for k, (im, a) in enumerate(zip(images, achieved, strict=True))
        ]
        return gallery, desired.tolist(), achieved.tolist()

    def preferences(*args):
        """Sliders, method, generations -> preference table and plot."""
        *weights, method, generations = args
        desired = image.desired(weights, method).tolist()
        last = generations[-1]["achieved"] if generations else None
        table = preference_table(names, normalized(weights), desired, last, "last mean")
        return table, figure(desired, generations)

    @ui_errors
    def generate_images(*args):
        """Generate, score, then show the images, the table, the plot with the new mean."""
        *weights, method, n_images, seed, prompt, generations = args
        images, desired, achieved = run(weights, method, n_images, seed, prompt)
        mean = achieved.mean(axis=0)
        w = normalized(weights)
        point = dict(weights=w, desired=desired.tolist(), achieved=mean.tolist())
        generations = [*generations, point]
        shown = for_display(images)
        gallery = [
            (im, image_caption(k, names, a))
            for k, (im, a) in enumerate(zip(shown, achieved, strict=True))
        ]
        return (
            gallery,
            image_rows(names, desired, achieved),
            preference_table(names, w, desired, mean, "last mean"),
            figure(desired.tolist(), generations),
            generations,
        )

    @ui_errors
    def clear_images(*args):
        *weights, method = args
        table, plot = preferences(*weights, method, [])
        return [], [], table, plot, []

    w0 = [round(1 / n, 2)] * n
    d0 = image.desired(w0).tolist()
    gr.Markdown(image_header(image, note), elem_id="image-header")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                sliders = weight_sliders(names, "img-w")
            method = gr.Radio(
                list(METHODS),
                value=default_method,
                label="mapping",
                info=f"preference -> desired rewards (docs/METHOD.md §6); this model's: {default_method}",
                elem_id="img-method",
            )
            pref_md = gr.Markdown(preference_table(names, w0, d0), elem_id="img-preferences")
            subjects = image.subjects
            prompt = gr.Textbox(
                subjects[0] if subjects else "",
                label="prompt",
                info=(
                    "name one of the subjects: " + ", ".join(subjects)
                    if subjects
                    else "a caption (reward tags are added by the model)"
                ),
                max_length=MAX_IMAGE_PROMPT_CHARS,
                elem_id="img-prompt",
            )
            if subjects:
                gr.Examples([[s] for s in subjects], [prompt], label="subjects")
            with gr.Row():
                count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="images", elem_id="img-n")
                seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="img-seed")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="img-generate")
                clear = gr.Button("Clear", elem_id="img-clear")
            gallery = gr.Gallery(
                label="generated images",
                columns=4,
                height="auto",
                object_fit="contain",
                format="png",
                interactive=False,
                elem_id="img-gallery",
            )
            table = gr.Dataframe(
                headers=["", *names],
                value=[],
                interactive=False,
                label="rewards (normalized): desired vs achieved",
                elem_id="img-rewards",
            )
        with gr.Column(scale=2):
            plot = gr.Plot(
                figure(d0),
                label="image rewards (normalized)",
                elem_id="img-pareto",
                visible=plottable,
            )
    generations = gr.State([])

    private = dict(api_visibility="private")
    wire_simplex_sliders(
        sliders, [method, generations], [pref_md, plot], preferences, "image_slider"
    )
    method.change(
        ui_errors(preferences),
        [*sliders, method, generations],
        [pref_md, plot],
        show_progress="hidden",
        **private,
    )
    go.click(
        generate_images,
        [*sliders, method, count, seed, prompt, generations],
        [gallery, table, pref_md, plot, generations],
        show_progress="minimal",
        **IMAGE_QUEUE,
        **private,
    )
    clear.click(
        clear_images,
        [*sliders, method],
        [gallery, table, pref_md, plot, generations],
        queue=False,
        **private,
    )
    # The API endpoint: hidden components only carry its inputs and outputs (a gallery, so
    # gradio serves the images as files; gr.api could only return JSON). preprocess=False:
    # gr.Number would round n=1.5 to 2 and fail on "4" without naming the field; the values
    # go to image_request as sent.
    with gr.Group(visible=False):
        api_in = [
            gr.JSON(label="weights"),
            gr.Textbox(default_method, label="method"),
            gr.Number(4, precision=0, label="n"),
            gr.Number(0, precision=0, label="seed"),
            gr.Textbox("", label="prompt"),  # a value, so gradio_client may leave it out
        ]
        api_out = [
            gr.Gallery(label="images", format="png"),
            gr.JSON(label="desired"),
            gr.JSON(label="achieved"),
        ]
    gr.on(
        [],
        generate_image_api,
        api_in,
        api_out,
        api_name="generate_image",
        show_progress="hidden",
        preprocess=False,
        **IMAGE_QUEUE,
    )
