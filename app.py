"""Gradio demo of Rewards-in-Context: move preference sliders, chat with the conditioned model,
generate images with the conditioned image model.

    python app.py                                  # embedded default on http://127.0.0.1:7860
    python app.py --adapter runs/sft/adapter       # a RiC adapter you trained
    python app.py --image-model runs/image/model   # a RiC image model you trained (Image tab)
    python app.py --host 0.0.0.0 --auth me:secret  # reachable from the network, with a login
    gradio app.py -- --adapter runs/sft/adapter    # hot reload while editing the UI

This file only wires widgets to ric/: the models, the preference mapping and reward scoring
live in ric.steering.SteerableModel (text) and ric.diffusion.SteerableImageModel (images), the
figures in ric.plotting. Bad input (empty prompt, bad weights) raises ValueError in ric/ (or
here); every callback turns it into gr.Error, so the user sees the message, never a stack
trace, and the server keeps serving. Both models are loaded once, by main(), before serving.

API (documented in README.md, called with gradio_client):
    /generate         (prompt, weights, method, max_new_tokens, seed)
                      -> (response, desired, achieved, notices)
    /map_preferences  (weights, method) -> desired
    /generate_image   (weights, method, n, seed) -> (images, desired, achieved)
                      (only when an image model is loaded)
"""

# No `from __future__ import annotations` here: gr.api reads the endpoints' type hints at
# runtime, and string annotations would collapse the outputs of /generate into one.
import argparse
import functools
import html
import inspect
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import numpy as np

from ric.artifacts import RicMeta, read_json
from ric.conditioning import ConditioningFormat, sanitize_with_notices
from ric.diffusion import SteerableImageModel, enlarge
from ric.generation import GenerationSettings
from ric.mapping import METHODS, simplex_grid
from ric.models import BACKENDS, DEFAULT_MODEL
from ric.normalization import RewardStats
from ric.plotting import pareto_figure
from ric.steering import SteerableModel, check_user_prompt
from ric.validation import (
    ENDPOINTS,
    InputError,
    Limits,
    check_arguments,
    check_seed,
    check_whole,
    generate_request,
    image_request,
    map_request,
)

ASSETS = Path(__file__).parent / "assets" / "text"
DEFAULT_ADAPTER = ASSETS / "adapter"
BASE_META = ASSETS / "base_meta.json"
FRONT = ASSETS / "front.json"
BASE_FRONT = ASSETS / "base_front.json"
OFFLINE_FRONT = ASSETS / "offline_front.json"  # the same adapter before MORS, when shipped
# Without base_meta.json nothing says how the base model's rewards are distributed: these
# rewards are then shown raw (mean 0, std 1) and mapped into [-2, 2].
FALLBACK_REWARDS = ["relevance", "brevity"]
FALLBACK_RANGE = (-2.0, 2.0)

MAX_NEW_TOKENS = 512  # per reply; a public demo should not let one request hold the model long
HISTORY_MESSAGES = 8  # earlier chat messages kept in the model input (4 exchanges)
# Events that run the model share one pool of slots, as many as one batch holds: requests that
# are running together are decoded together by the model's batcher (ric.generation.Batcher),
# so 16 users cost little more than one; beyond that a waiting user sees their queue position.
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=16)
CONCURRENCY = 8  # cheap events (mapping, plots) at once
QUEUE_SIZE = 64  # waiting requests beyond this are refused with "queue full"

IMAGE_ASSETS = Path(__file__).parent / "assets" / "image"
DEFAULT_IMAGE_MODEL = IMAGE_ASSETS / "model"
IMAGE_FRONT = IMAGE_ASSETS / "front.json"
IMAGE_BASE_FRONT = IMAGE_ASSETS / "base_front.json"
IMAGE_TRAIN_COMMAND = "python train/train_diffusion.py --config train/recipes/cpu_image.yaml"
MAX_IMAGES = 8  # per request
DISPLAY_SIZE = 128  # smaller images (the embedded model makes 32 px) are enlarged to this
# The image model has its own slot: it is a different model (its own lock), so an image request
# does not wait behind a long chat reply, and vice versa.
IMAGE_QUEUE = dict(concurrency_id="image_model", concurrency_limit=1)

# Gradio's convention (and what `gradio app.py` hot reload looks up). main() builds it, so
# importing this module, as the tests do, loads no model.
demo: gr.Blocks | None = None


# --- loading ---------------------------------------------------------------------------------


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
        f"ric: loaded in {time.time() - t0:.1f} s ({steer.backend} engine); "
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


def no_image_model_note(problem: str | None = None) -> str:
    """The Image tab's text when there is no image model: why, and how to get one."""
    lead = problem or (
        "**No image model:** the RiC image model has not been trained and shipped yet."
    )
    return (
        f"{lead}\n\n"
        "Train the embedded one (a small reward-conditioned UNet, about 20 minutes on 2 CPU "
        "cores; docs/IMAGE.md):\n\n"
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


# --- small helpers the callbacks share -------------------------------------------------------


def to_gr(e: ValueError) -> gr.Error:
    """The error a caller sees: only gr.Error messages reach them (any other exception arrives
    as {"error": null}); escaped, since it may quote their input."""
    return gr.Error(html.escape(str(e), quote=False), print_exception=False)


def ui_errors(fn):
    """Turn ValueError (bad input, raised by ric/ or ric.validation) into gr.Error: the message
    reaches the user, without a stack trace in the UI or the server log."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise to_gr(e) from None

        return gen

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise to_gr(e) from None

    return wrapper


class ApiBlocks(gr.Blocks):
    """gr.Blocks whose API endpoints answer a call with too few values by naming the missing
    ones: gradio's own check raises a plain ValueError, which reaches the caller as
    {"error": null}."""

    def validate_inputs(self, block_fn, inputs):
        if block_fn.api_name in ENDPOINTS:
            try:
                check_arguments(ENDPOINTS[block_fn.api_name][0], inputs)
            except InputError as e:
                raise to_gr(e) from None
        super().validate_inputs(block_fn, inputs)


def input_notices(prompt: str, fmt: ConditioningFormat, tokenizer=None) -> tuple[str, list[str]]:
    """(the prompt as the model gets it, notices): truncation, and the reward tags and chat
    control tokens typed by the user, which never reach the model
    (ric.conditioning.sanitize_with_notices)."""
    prompt, notices = check_user_prompt(prompt)
    clean, removed = sanitize_with_notices(prompt, fmt, tokenizer)
    return clean, notices + removed


def rebalance(weights: Sequence[float], moved: int) -> list[float]:
    """Keep the sliders on the simplex: the moved slider keeps its value and the others share
    the rest in their current proportions (equally if they are all zero)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, 1.0)
    rest = np.delete(w, moved)
    left = 1.0 - w[moved]
    rest = rest * left / rest.sum() if rest.sum() > 0 else np.full(rest.size, left / rest.size)
    return np.insert(rest, moved, w[moved]).round(2).tolist()


def normalized(weights) -> list[float]:
    w = np.asarray(weights, dtype=float)
    return (w / w.sum()).tolist() if w.sum() > 0 else w.tolist()


def weight_sliders(names: Sequence[str], elem_prefix: str = "w") -> list[gr.Slider]:
    """One slider per reward, starting at equal weights (kept on the simplex by
    wire_simplex_sliders)."""
    w0 = round(1 / len(names), 2)
    return [
        gr.Slider(0, 1, value=w0, step=0.01, label=name, elem_id=f"{elem_prefix}-{name}")
        for name in names
    ]


def wire_simplex_sliders(sliders, inputs, outputs, update, name: str = "slider") -> None:
    """Moving slider i rebalances the others onto the simplex (`rebalance`), then
    update(*weights, *inputs) fills `outputs`. The callbacks are named NAME_{i}_moved."""
    n = len(sliders)

    def on_slider(moved: int):
        def slider_moved(*args):
            weights = rebalance(args[:n], moved)
            # The dragged slider is not sent back: that would fight the user's hand.
            values = [gr.skip() if i == moved else w for i, w in enumerate(weights)]
            return *values, *update(*weights, *args[n:])

        slider_moved.__name__ = f"{name}_{moved}_moved"
        return ui_errors(slider_moved)

    for i, s in enumerate(sliders):
        s.input(
            on_slider(i),
            [*sliders, *inputs],
            [*sliders, *outputs],
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            api_visibility="private",
        )


def compare_weights(n: int, k: int) -> list[list[float]]:
    """k preferences spread over the simplex: evenly along w_1 for 2 objectives; for 3, the
    corners, the centre, the edge midpoints, then the thirds of the 13-vector sweep."""
    if n == 2:
        return simplex_grid(2, k).tolist()
    grid = simplex_grid(n) if n == 3 else np.concatenate([np.eye(n), np.full((1, n), 1 / n)])
    order = [0, 1, 2, 6, 3, 4, 5, *range(7, len(grid))] if n == 3 else range(len(grid))
    return grid[list(order)][:k].tolist()


def fmt_values(values: Sequence[float] | None, digits: int = 2) -> str:
    return "" if values is None else "  ".join(f"{v:+.{digits}f}" for v in values)


def preference_table(names, weights, desired, achieved=None, achieved_label="last reply") -> str:
    """Markdown: normalized weights, desired rewards and the last reply's achieved rewards."""
    rows = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| weight | " + " | ".join(f"{w:.2f}" for w in weights) + " |",
        "| desired | " + " | ".join(f"{d:+.2f}" for d in desired) + " |",
    ]
    if achieved is not None:
        rows.append(f"| {achieved_label} | " + " | ".join(f"{a:+.2f}" for a in achieved) + " |")
    return "\n".join(rows)


def reply_rows(replies: list[dict]) -> list[list]:
    return [
        [
            i + 1,
            fmt_values(r["weights"]),
            fmt_values(r["desired"]),
            fmt_values(r["achieved"]),
            r["text"][:120],
        ]
        for i, r in enumerate(replies)
    ]


# --- the app ---------------------------------------------------------------------------------


def build_demo(
    steer: SteerableModel,
    fronts: Sequence[dict] = (),
    image_model: SteerableImageModel | str | Path | None = None,
    model_label: str | None = None,
    image_fronts: Sequence[dict] = (),
    image_label: str | None = None,
) -> gr.Blocks:
    """The app around a loaded model. fronts: front.json dicts to draw (ric.plotting).

    image_model: a loaded SteerableImageModel (what main() passes), or a folder to load it from
    now, or None; without one the Image tab says how to train it. image_fronts: the image
    model's front.json dicts. image_label: the loaded model's description, or with
    image_model None the tab's note (load_image_model's reason there is no model)."""
    if isinstance(image_model, SteerableImageModel):
        image, image_note = image_model, image_label or "RiC image model"
    elif image_model is None and image_label:
        image, image_note = None, image_label
    else:
        image, image_note = load_image_model(image_model)
    names = steer.reward_names
    n = len(names)
    plottable = n in (2, 3)
    default_method = steer.meta.mapping
    stops: dict[str, threading.Event] = {}  # session -> its running generation's stop flag

    limits = Limits(n_rewards=n, max_new_tokens=MAX_NEW_TOKENS)

    def settings(max_new_tokens, temperature=0.7, top_p=0.9) -> GenerationSettings:
        max_new_tokens = check_whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
        return GenerationSettings(max_new_tokens, float(temperature), float(top_p))

    def figure(desired=None, replies=(), replies_name="replies"):
        return pareto_figure(names, fronts, desired, replies, replies_name) if plottable else None

    # -- API endpoints --

    @ui_errors
    def generate_api(
        prompt: str,
        weights: list[float],
        method: str = default_method,
        max_new_tokens: int = 64,
        seed: int | None = None,
    ) -> tuple[str, list[float], list[float], list[str]]:
        """One reply to `prompt` at preference `weights` (one per reward, >= 0; renormalized to
        sum 1). Returns (response, desired rewards, achieved rewards, notices); rewards are
        normalized, in the model's reward order."""
        req = generate_request(prompt, weights, method, max_new_tokens, seed, limits)
        _, notices = input_notices(req.prompt, steer.fmt, steer.tokenizer)
        r = steer.reply(req.prompt, req.weights, req.method, settings(req.max_new_tokens), req.seed)
        return r.text, r.desired, r.achieved, notices

    @ui_errors
    def map_preferences_api(weights: list[float], method: str = default_method) -> list[float]:
        """Desired (normalized) rewards for preference `weights` under mapping `method`."""
        req = map_request(weights, method, limits)
        return steer.desired(req.weights, req.method).tolist()

    # -- Text tab callbacks --

    def preferences(*args):
        """Sliders, method, replies -> preference table and plot."""
        *weights, method, replies = args
        desired = steer.desired(weights, method).tolist()
        last = replies[-1]["achieved"] if replies else None
        table = preference_table(names, normalized(weights), desired, last)
        return table, figure(desired, replies)

    @ui_errors
    def chat(request: gr.Request, message, history, replies, *args):
        """Stream one reply, then score it and add it to the table and the plot."""
        *weights, method, max_new_tokens, temperature = args
        shown, notices = input_notices(message, steer.fmt, steer.tokenizer)
        desired = steer.desired(weights, method).tolist()
        messages = [*history, {"role": "user", "content": shown}]
        gen_settings = settings(max_new_tokens, temperature)
        notice = "\n".join(f"- {m}" for m in notices)
        ahead = steer.queue_position()
        waiting = (
            f"- {ahead} request(s) ahead of yours; your reply starts when they end" if ahead else ""
        )
        yield (
            messages + [{"role": "assistant", "content": ""}],
            "",
            "\n".join(x for x in (notice, waiting) if x),
            *[gr.skip()] * 5,
        )

        stop = stops[request.session_hash] = threading.Event()
        text = ""
        try:
            for k, text in enumerate(
                steer.stream_chat(
                    messages[-HISTORY_MESSAGES - 1 :], weights, method, gen_settings, stop
                )
            ):
                # The first token replaces the "waiting" notice; later ones leave it alone.
                shown_notice = notice if k == 0 else gr.skip()
                yield (
                    messages + [{"role": "assistant", "content": text}],
                    gr.skip(),
                    shown_notice,
                    *[gr.skip()] * 5,
                )
        finally:
            stop.set()  # also ends the generation thread if the client went away
            stops.pop(request.session_hash, None)
        achieved = steer.score([shown], [text])[0].tolist()
        w = normalized(weights)
        replies = [*replies, dict(weights=w, desired=desired, achieved=achieved, text=text)]
        messages.append({"role": "assistant", "content": text})
        yield (
            messages,
            gr.skip(),
            notice,
            preference_table(names, w, desired, achieved),
            reply_rows(replies),
            figure(desired, replies),
            messages,
            replies,
        )

    def stop_chat(request: gr.Request):
        if (stop := stops.get(request.session_hash)) is not None:
            stop.set()

    @ui_errors
    def new_chat(request: gr.Request, *args):
        stop_chat(request)
        *weights, method = args
        table, plot = preferences(*weights, method, [])
        return [], "", "", table, [], plot, [], []

    # -- Compare tab callback --

    @ui_errors
    def compare(prompt, k, method, max_new_tokens, seed):
        """One prompt at k preferences along the front, generated as one batch."""
        prompt, notices = check_user_prompt(prompt)
        weights = compare_weights(n, int(k))
        desired = [steer.desired(w, method) for w in weights]
        inputs = [steer.prompt(prompt, d) for d in desired]
        done = steer.complete(
            inputs, settings(max_new_tokens), int(seed), batch_size=len(inputs), progress=False
        )
        texts = [c.text for c in done]
        achieved = steer.score([prompt] * len(texts), texts)
        rows = [
            [i + 1, fmt_values(w), fmt_values(d), fmt_values(a), t]
            for i, (w, d, a, t) in enumerate(zip(weights, desired, achieved, texts, strict=True))
        ]
        points = [
            dict(weights=w, desired=d.tolist(), achieved=a.tolist())
            for w, d, a in zip(weights, desired, achieved, strict=True)
        ]
        notice = "\n".join(f"- {m}" for m in notices)
        return rows, figure(None, points, "compared"), notice

    # -- layout --

    w0 = [round(1 / n, 2)] * n
    d0 = steer.desired(w0).tolist()
    with ApiBlocks(title="Rewards-in-Context", analytics_enabled=False) as blocks:
        gr.Markdown(header(steer, model_label, fronts))
        with gr.Tab("Text"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        sliders = weight_sliders(names)
                    with gr.Row():
                        method = gr.Radio(
                            list(METHODS),
                            value=default_method,
                            label="mapping",
                            info="preference -> desired rewards (METHOD.md §6)",
                        )
                    pref_md = gr.Markdown(preference_table(names, w0, d0), elem_id="preferences")
                    chatbot = gr.Chatbot(
                        height=380,
                        label="chat",
                        feedback_options=None,
                        elem_id="chatbot",
                        buttons=["copy"],
                    )
                    notice_md = gr.Markdown(elem_id="notices")
                    msg = gr.Textbox(
                        placeholder="Type a message and press Enter",
                        show_label=False,
                        elem_id="message",
                    )
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send")
                        stop = gr.Button("Stop", elem_id="stop")
                        clear = gr.Button("New chat", elem_id="new-chat")
                    with gr.Accordion("generation", open=False):
                        max_tokens = gr.Slider(
                            8, MAX_NEW_TOKENS, value=64, step=8, label="max new tokens"
                        )
                        temperature = gr.Slider(0.1, 1.5, value=0.7, step=0.05, label="temperature")
                with gr.Column(scale=2):
                    plot = gr.Plot(
                        figure(d0),
                        label="rewards (normalized)",
                        elem_id="pareto",
                        visible=plottable,
                    )
                    replies_df = gr.Dataframe(
                        headers=["#", "weights", "desired", "achieved", "reply"],
                        value=[],
                        interactive=False,
                        wrap=True,
                        label="replies",
                        elem_id="replies",
                    )
            history, replies = gr.State([]), gr.State([])
        with gr.Tab("Compare"):
            gr.Markdown("One prompt at several preferences along the front, side by side.")
            with gr.Row():
                cmp_prompt = gr.Textbox(label="prompt", scale=4)
                cmp_k = gr.Slider(2, 11 if n == 2 else 13, value=5, step=1, label="preferences")
                cmp_tokens = gr.Slider(8, MAX_NEW_TOKENS, value=64, step=8, label="max new tokens")
                cmp_seed = gr.Number(0, precision=0, label="seed")
            cmp_btn = gr.Button("Generate", variant="primary")
            cmp_notice = gr.Markdown()
            with gr.Row():
                cmp_df = gr.Dataframe(
                    headers=["#", "weights", "desired", "achieved", "response"],
                    interactive=False,
                    wrap=True,
                    scale=3,
                )
                cmp_plot = gr.Plot(
                    figure(), label="rewards (normalized)", visible=plottable, scale=2
                )
        with gr.Tab("Image"):
            image_tab(image, image_note, image_fronts)

        # -- events --
        private = dict(api_visibility="private")
        pref_inputs = [*sliders, method, replies]
        wire_simplex_sliders(sliders, [method, replies], [pref_md, plot], preferences)
        method.change(
            ui_errors(preferences), pref_inputs, [pref_md, plot], show_progress="hidden", **private
        )
        chat_io = dict(
            fn=chat,
            inputs=[msg, history, replies, *sliders, method, max_tokens, temperature],
            outputs=[chatbot, msg, notice_md, pref_md, replies_df, plot, history, replies],
            show_progress="minimal",
            **MODEL_QUEUE,
            **private,
        )
        chats = [msg.submit(**chat_io), send.click(**chat_io)]
        stop.click(stop_chat, None, None, queue=False, **private)
        gr.on(  # the chat's own trash icon is a "new chat" too
            [clear.click, chatbot.clear],
            new_chat,
            [*sliders, method],
            [chatbot, msg, notice_md, pref_md, replies_df, plot, history, replies],
            cancels=chats,
            queue=False,
            **private,
        )
        cmp_btn.click(
            compare,
            [cmp_prompt, cmp_k, method, cmp_tokens, cmp_seed],
            [cmp_df, cmp_plot, cmp_notice],
            **MODEL_QUEUE,
            **private,
        )
        gr.api(generate_api, api_name="generate", **MODEL_QUEUE)
        gr.api(map_preferences_api, api_name="map_preferences")
    blocks.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return blocks


def measured_steering(fronts: Sequence[dict]) -> str | None:
    """One line from the model's evaluated front (the first one with a sweep): how each slider
    moved its reward on held-out prompts, so nobody expects more than was measured."""
    for front in fronts:
        rho = (front.get("controllability") or {}).get("spearman")
        if not rho:
            continue
        n = (front.get("settings") or {}).get("max_prompts")
        achieved = np.array([p["achieved"] for p in front["points"]])
        names = front["reward_names"]
        parts = "; ".join(
            f"{name}: Spearman {r:+.2f}, mean {lo:+.2f} to {hi:+.2f}"
            for name, r, lo, hi in zip(names, rho, achieved.min(0), achieved.max(0), strict=True)
        )
        weak = [name for name, r in zip(names, rho, strict=True) if r < 0.9]
        line = (
            f"**Measured steering** ({len(front['points'])}-point sweep"
            + (f" on {n} held-out prompts" if n else "")
            + "; Spearman of each weight with its achieved reward, and the achieved range): "
            + parts
            + "."
        )
        if weak:
            line += (
                f" Below 0.9 the reward does not rise steadily with its slider: {', '.join(weak)}."
            )
        return "> " + line
    return None


def header(steer: SteerableModel, model_label: str | None, fronts: Sequence[dict] = ()) -> str:
    s = steer.stats
    lines = [
        "## Rewards-in-Context",
        f"**Model:** {model_label or steer.meta.base_model} · **rewards:** "
        f"{', '.join(steer.reward_names)} · **range:** "
        + ", ".join(f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(s.low, s.high, strict=True))
        + f" ({s.range_source})",
    ]
    if not steer.conditioned:
        lines.append(
            "> **untrained base model: sliders have no effect.** Train a RiC adapter "
            "(train/sft.py) and start with `--adapter`."
        )
    elif measured := measured_steering(fronts):
        lines.append(measured)
    if steer.meta.extra.get("unnormalized"):
        lines.append("> Rewards are **un-normalized** (raw scores; no statistics shipped).")
    return "\n\n".join(lines)


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
    timing = extra.get("train", {}).get("sample_timing") or {}
    if timing.get("seconds"):
        parts.append(f"{timing['n_images']} images in {timing['seconds']:.2g} s after training")
    return " · ".join(parts)


def image_tab(image: SteerableImageModel | None, note: str, fronts: Sequence[dict] = ()) -> None:
    """The Image tab: preference sliders for the image rewards, generated images with their
    achieved rewards and the image front; with no image model, `note` says why and how to
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

    limits = Limits(n_rewards=n, max_images=MAX_IMAGES)

    def run(weights, method, n_images, seed):
        req = image_request(weights, method, n_images, seed, limits)
        return image.generate(req.weights, n=req.n, seed=req.seed, method=req.method)

    @ui_errors
    def generate_image_api(weights, method, n, seed):
        """`n` images (1-8) at preference `weights` (one per image reward, >= 0; renormalized
        to sum 1), sampled with `seed`. Returns (images as a gallery: (file, caption) pairs, at
        the model's own resolution; desired rewards; achieved rewards, one list per image);
        rewards are normalized, in the model's reward order."""
        images, desired, achieved = run(weights, method, n, seed)
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
        *weights, method, n_images, seed, generations = args
        images, desired, achieved = run(weights, method, n_images, seed)
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
                info=f"preference -> desired rewards (METHOD.md §6); this model's: {default_method}",
                elem_id="img-method",
            )
            pref_md = gr.Markdown(preference_table(names, w0, d0), elem_id="img-preferences")
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
        [*sliders, method, count, seed, generations],
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


# --- command line ----------------------------------------------------------------------------


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """Parse "user:pass" into ("user", "pass"); the password may contain ':'."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SystemExit("authentication must look like user:password (--auth or RIC_AUTH)")
    return user, password


class LoginThrottle:
    """Failed logins per client address: the first `free` are free, then each further attempt
    waits `base_s` seconds, doubling per failure up to `max_s`; a success clears the count.
    Behind a reverse proxy every client shares the proxy's address, and so its count."""

    def __init__(self, free: int = 3, base_s: float = 1.0, max_s: float = 300.0, clock=None):
        self.free, self.base_s, self.max_s = free, base_s, max_s
        self.clock = clock or time.monotonic
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (count, last failure)

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        count, last = self.failures.get(client, (0, 0.0))
        if count < self.free:
            return 0.0
        delay = min(self.base_s * 2 ** (count - self.free), self.max_s)
        return max(0.0, last + delay - self.clock())

    def record(self, client: str, ok: bool) -> None:
        if ok:
            self.failures.pop(client, None)
            return
        if len(self.failures) > 10_000:  # forget addresses whose wait is long over
            now = self.clock()
            self.failures = {c: f for c, f in self.failures.items() if now - f[1] < 2 * self.max_s}
        count, _ = self.failures.get(client, (0, 0.0))
        self.failures[client] = (count + 1, self.clock())


class LoginGuard:
    """ASGI middleware for an app with a login (gradio's `auth`).

    - POST /login: refused (429) while the client's LoginThrottle wait runs; gradio itself
      takes any number of guesses at full speed.
    - HTML pages: the API schema that gradio embeds (window.gradio_api_info: every endpoint,
      parameter and docstring) is replaced by null, also on the login page, which anyone can
      load. The browser then fetches it from /gradio_api/info, which needs the login.
    """

    def __init__(self, app, throttle: LoginThrottle | None = None):
        self.app, self.throttle = app, throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            return await self.login(scope, receive, send)
        if scope["method"] == "GET":
            return await self.app(scope, receive, _without_api_info(send))
        return await self.app(scope, receive, send)

    async def login(self, scope, receive, send):
        client = (scope.get("client") or ("unknown",))[0]
        if wait := self.throttle.wait_s(client):
            body = json.dumps(
                {"detail": f"Too many failed logins: try again in {math.ceil(wait)} s."}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"retry-after", str(math.ceil(wait)).encode()),
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            return await send({"type": "http.response.body", "body": body})

        # Counted as a failure before it is checked, so that guesses sent all at once cannot
        # all pass the wait before the first one is counted; a success clears the count.
        self.throttle.record(client, ok=False)

        async def record(message):
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.throttle.record(client, ok=True)
            await send(message)

        await self.app(scope, receive, record)


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)


def _without_api_info(send):
    """`send` for an HTML page, with the embedded API schema replaced by null. gradio's JSON
    escapes every "<", so the first ";</script>" ends it."""
    start: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message):
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if not headers.get(b"content-type", b"").startswith(b"text/html"):
                start["pass"] = True
                return await send(message)
            start.update(message)
            return None
        if start.get("pass") or message["type"] != "http.response.body":
            return await send(message)
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return None
        body = _API_INFO.sub(b"window.gradio_api_info = null;</script>", b"".join(chunks))
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def launch_options(auth: tuple[str, str] | None, throttle: LoginThrottle | None = None) -> dict:
    """demo.launch() keyword arguments for `auth` (None: no login): the credentials and a
    LoginGuard around the app."""
    if auth is None:
        return {}
    from starlette.middleware import Middleware

    guard = Middleware(LoginGuard, throttle=throttle or LoginThrottle())
    return {"auth": auth, "app_kwargs": {"middleware": [guard]}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        help="base model id or path (default: the adapter's base model, "
        "or the embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--adapter",
        help="RiC adapter folder (default: assets/text/adapter if it "
        "exists, else the untrained base model)",
    )
    p.add_argument(
        "--front",
        help="evaluated front.json to draw (default: the shipped one, "
        "when the shipped model is used)",
    )
    p.add_argument("--base-front", help="the base model's front.json (same default rule)")
    p.add_argument(
        "--image-model",
        help="RiC image model folder for the Image tab (default: assets/image/model if it "
        "exists; its fronts assets/image/front.json and base_front.json are drawn with it)",
    )
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", *BACKENDS],
        help="generation engine (default auto: onnx int8 on a CPU, transformers with CUDA)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="public gradio.live link")
    p.add_argument(
        "--auth",
        default=os.environ.get("RIC_AUTH"),
        help="user:password login (default: env RIC_AUTH)",
    )
    return p.parse_args(argv)


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


def main(argv=None) -> None:
    global demo
    args = parse_args(argv)
    auth = parse_auth(args.auth)
    shipped = args.adapter is None and args.model is None
    try:
        steer, label = load_steerable(args.model, args.adapter, args.dtype, args.backend)
    except (OSError, ValueError, RuntimeError) as e:  # missing folder, bad metadata, no weights
        raise SystemExit(f"ric: cannot load the model: {e}") from None
    fronts = load_fronts(
        [
            args.front or (FRONT if shipped else None),
            OFFLINE_FRONT if shipped else None,
            args.base_front or (BASE_FRONT if shipped else None),
        ],
        steer.reward_names,
    )
    image, image_label, image_fronts = image_setup(args.image_model)
    demo = build_demo(
        steer, fronts, image, label, image_fronts=image_fronts, image_label=image_label
    )
    if auth is None and (args.share or args.host not in ("127.0.0.1", "localhost")):
        print("ric: WARNING: reachable beyond this machine without --auth", file=sys.stderr)
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, **launch_options(auth)
    )


if __name__ == "__main__":
    main()
