"""Gradio demo of Rewards-in-Context: set how much each reward matters, chat with the conditioned
model, compare preferences side by side, generate images with the conditioned image model.

    python app.py                                  # embedded default on http://127.0.0.1:7860
    python app.py --port 7861                      # another port (make app ARGS="--port 7861")
    python app.py --adapter runs/sft/adapter       # a RiC adapter you trained
    python app.py --image-model runs/image/model   # a RiC image model you trained (Image tab)
    python app.py --host 0.0.0.0 --auth me:secret  # reachable from the network, with a login
    gradio app.py -- --adapter runs/sft/adapter    # hot reload while editing the UI

This file is the command line and the wiring: the Text, Compare and Image tabs, their widgets,
the loaders and the login live in ric/app/ (text, compare, image, widgets, loading, auth);
the models, the preference mapping and reward scoring in ric.steering.SteerableModel (text)
and ric.image.sampling.SteerableImageModel (images). Bad input raises ValueError in ric/; every
callback turns it into gr.Error, so the user sees the message, never a stack trace. Both
models are loaded once, by main(), before serving.

API (documented in README.md, called with gradio_client):
    /generate         (prompt, weights, method, max_new_tokens, seed)
                      -> (response, desired, achieved, notices)
    /map_preferences  (weights, method) -> desired
    /generate_image   (weights, method, n, seed, prompt="") -> (images, desired, achieved)
                      (only when an image model is loaded; prompt: one of a prompted
                      model's subjects, "" for its default)
"""

# No `from __future__ import annotations` here: gr.api reads the endpoints' type hints at
# runtime, and string annotations would collapse the outputs of /generate into one.
import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from ric.app.auth import LoginGuard, LoginThrottle, launch_options, parse_auth  # noqa: F401
from ric.app.compare import compare_tab, compare_weights  # noqa: F401
from ric.app.image import image_setup, image_tab, load_image_model
from ric.app.loading import (  # noqa: F401
    BASE_FRONT,
    FRONT,
    OFFLINE_FRONT,
    fallback_meta,
    load_fronts,
    load_steerable,
)
from ric.app.text import MODEL_QUEUE, details, header, register_api, summary, text_tab  # noqa: F401
from ric.app.widgets import ApiBlocks, rebalance  # noqa: F401
from ric.image.sampling import SteerableImageModel
from ric.models import BACKENDS
from ric.plotting import pareto_figure
from ric.steering import SteerableModel

CONCURRENCY = 8  # cheap events (mapping, plots) at once
QUEUE_SIZE = 64  # waiting requests beyond this are refused with "queue full"

# Gradio's convention (and what `gradio app.py` hot reload looks up). main() builds it, so
# importing this module, as the tests do, loads no model.
demo: gr.Blocks | None = None


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

    def figure(desired=None, replies=(), replies_name="replies"):
        if len(names) not in (2, 3):
            return None
        return pareto_figure(names, fronts, desired, replies, replies_name)

    with ApiBlocks(title="Rewards-in-Context", analytics_enabled=False) as blocks:
        gr.Markdown("## Rewards-in-Context\n\n" + summary(steer, model_label, fronts))
        with gr.Accordion("details", open=False):
            gr.Markdown(details(steer, model_label, fronts), elem_id="details")
        with gr.Tab("Text"):
            method = text_tab(steer, fronts, figure)
        with gr.Tab("Compare"):
            compare_tab(steer, method, figure)
        with gr.Tab("Image"):
            image_tab(image, image_note, image_fronts)
        register_api(steer)
    blocks.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return blocks


# --- command line ----------------------------------------------------------------------------


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
    p.add_argument("--port", type=int, default=7860, help="default 7860")
    p.add_argument("--share", action="store_true", help="public gradio.live link")
    p.add_argument(
        "--auth",
        default=os.environ.get("RIC_AUTH"),
        help="user:password login (default: env RIC_AUTH)",
    )
    return p.parse_args(argv)


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
