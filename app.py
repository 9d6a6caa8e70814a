"""Gradio demo of Rewards-in-Context: move preference sliders, chat with the conditioned model.

    python app.py                                  # embedded default on http://127.0.0.1:7860
    python app.py --adapter runs/sft/adapter       # a RiC adapter you trained
    python app.py --host 0.0.0.0 --auth me:secret  # reachable from the network, with a login
    gradio app.py -- --adapter runs/sft/adapter    # hot reload while editing the UI

This file only wires widgets to ric/: the model, the preference mapping and reward scoring live
in ric.steering.SteerableModel, the figures in ric.plotting. Bad input (empty prompt, bad
weights) raises ValueError in ric/; every callback turns it into gr.Error, so the user sees the
message, never a stack trace, and the server keeps serving.

API (documented in README.md, called with gradio_client):
    /generate         (prompt, weights, method, max_new_tokens, seed)
                      -> (response, desired, achieved, notices)
    /map_preferences  (weights, method) -> desired
"""

# No `from __future__ import annotations` here: gr.api reads the endpoints' type hints at
# runtime, and string annotations would collapse the outputs of /generate into one.
import argparse
import functools
import html
import inspect
import json
import os
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import gradio as gr
import numpy as np

from ric.artifacts import RicMeta, read_json
from ric.conditioning import ConditioningFormat, sanitize_user_text
from ric.generation import GenerationSettings, generate
from ric.mapping import METHODS, simplex_grid
from ric.models import DEFAULT_MODEL
from ric.normalization import RewardStats
from ric.plotting import pareto_figure
from ric.steering import SteerableModel, check_user_prompt

ASSETS = Path(__file__).parent / "assets" / "text"
DEFAULT_ADAPTER = ASSETS / "adapter"
BASE_META = ASSETS / "base_meta.json"
FRONT = ASSETS / "front.json"
BASE_FRONT = ASSETS / "base_front.json"
# Without base_meta.json nothing says how the base model's rewards are distributed: these
# rewards are then shown raw (mean 0, std 1) and mapped into [-2, 2].
FALLBACK_REWARDS = ["relevance", "brevity"]
FALLBACK_RANGE = (-2.0, 2.0)

MAX_NEW_TOKENS = 512  # per reply; a public demo should not let one request hold the model long
HISTORY_MESSAGES = 8  # earlier chat messages kept in the model input (4 exchanges)
# Every event that runs the model shares one queue slot: generation is serialized by
# SteerableModel.lock anyway, and through the queue a waiting user sees their position.
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=1)
CONCURRENCY = 8  # cheap events (mapping, plots) at once
QUEUE_SIZE = 64  # waiting requests beyond this are refused with "queue full"

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
    model: str | None = None, adapter: str | None = None, dtype: str = "bfloat16"
) -> tuple[SteerableModel, str]:
    """(model, a one-line description): the given adapter, else the shipped default adapter,
    else the untrained base model."""
    t0 = time.time()
    if adapter is None and DEFAULT_ADAPTER.is_dir():
        adapter = str(DEFAULT_ADAPTER)
    if adapter is not None:
        print(f"ric: loading RiC adapter {adapter} ({dtype}) ...", flush=True)
        steer = SteerableModel.load(adapter, model=model, dtype=dtype)
        label = f"RiC adapter `{adapter}` on `{model or steer.meta.base_model}`"
    else:
        meta = RicMeta(**read_json(BASE_META)) if BASE_META.exists() else fallback_meta(model)
        print(f"ric: no RiC adapter: loading the untrained base model ({dtype}) ...", flush=True)
        steer = SteerableModel.load(model=model, meta=meta, dtype=dtype)
        label = f"untrained base model `{model or meta.base_model}`"
    print(f"ric: loaded in {time.time() - t0:.1f} s; rewards {steer.reward_names}", flush=True)
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


# --- small helpers the callbacks share -------------------------------------------------------


def ui_errors(fn):
    """Turn ValueError (bad input, raised by ric/) into gr.Error: the message reaches the user
    (escaped: it may quote their input), without a stack trace in the UI or the server log."""

    def to_gr(e: ValueError) -> gr.Error:
        return gr.Error(html.escape(str(e), quote=False), print_exception=False)

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


def parse_weights(weights) -> list[float]:
    """Weights as a list, or a JSON list in a string (what a textbox or curl sends)."""
    if isinstance(weights, str):
        try:
            weights = json.loads(weights)
        except json.JSONDecodeError:
            raise ValueError(
                f"weights must be a JSON list of numbers like [0.3, 0.7], got {weights!r}"
            ) from None
    if not isinstance(weights, list | tuple):
        raise ValueError(f"weights must be a list of numbers, got {weights!r}")
    return list(weights)


def input_notices(prompt: str, fmt: ConditioningFormat) -> tuple[str, list[str]]:
    """(the prompt as the model gets it, notices): truncation, and reward tags typed by the
    user, which the model never sees as tags (ric.conditioning.sanitize_user_text)."""
    prompt, notices = check_user_prompt(prompt)
    clean = sanitize_user_text(prompt, fmt)
    if clean != unicodedata.normalize("NFKC", prompt):
        notices.append("reward tags in your message were neutralized: only the sliders set them")
    return clean, notices


def rebalance(weights: Sequence[float], moved: int) -> list[float]:
    """Keep the sliders on the simplex: the moved slider keeps its value and the others share
    the rest in their current proportions (equally if they are all zero)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, 1.0)
    rest = np.delete(w, moved)
    left = 1.0 - w[moved]
    rest = rest * left / rest.sum() if rest.sum() > 0 else np.full(rest.size, left / rest.size)
    return np.insert(rest, moved, w[moved]).round(2).tolist()


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


def preference_table(names, weights, desired, achieved=None) -> str:
    """Markdown: normalized weights, desired rewards and the last reply's achieved rewards."""
    rows = [
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| weight | " + " | ".join(f"{w:.2f}" for w in weights) + " |",
        "| desired | " + " | ".join(f"{d:+.2f}" for d in desired) + " |",
    ]
    if achieved is not None:
        rows.append("| last reply | " + " | ".join(f"{a:+.2f}" for a in achieved) + " |")
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
    image_model: str | None = None,
    model_label: str | None = None,
) -> gr.Blocks:
    """The app around a loaded model. fronts: front.json dicts to draw (ric.plotting)."""
    names = steer.reward_names
    n = len(names)
    plottable = n in (2, 3)
    default_method = steer.meta.mapping
    stops: dict[str, threading.Event] = {}  # session -> its running generation's stop flag

    def settings(max_new_tokens, temperature=0.7, top_p=0.9) -> GenerationSettings:
        max_new_tokens = int(max_new_tokens)
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(
                f"max_new_tokens must be in [1, {MAX_NEW_TOKENS}], got {max_new_tokens}"
            )
        return GenerationSettings(max_new_tokens, float(temperature), float(top_p))

    def figure(desired=None, replies=(), replies_name="replies"):
        return pareto_figure(names, fronts, desired, replies, replies_name) if plottable else None

    def normalized(weights) -> list[float]:
        w = np.asarray(weights, dtype=float)
        return (w / w.sum()).tolist() if w.sum() > 0 else w.tolist()

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
        _, notices = input_notices(prompt, steer.fmt)
        r = steer.reply(
            prompt,
            parse_weights(weights),
            method or None,
            settings(max_new_tokens),
            None if seed is None else int(seed),
        )
        return r.text, r.desired, r.achieved, notices

    @ui_errors
    def map_preferences_api(weights: list[float], method: str = default_method) -> list[float]:
        """Desired (normalized) rewards for preference `weights` under mapping `method`."""
        return steer.desired(parse_weights(weights), method or None).tolist()

    # -- Text tab callbacks --

    def preferences(*args):
        """Sliders, method, replies -> preference table and plot."""
        *weights, method, replies = args
        desired = steer.desired(weights, method).tolist()
        last = replies[-1]["achieved"] if replies else None
        table = preference_table(names, normalized(weights), desired, last)
        return table, figure(desired, replies)

    def on_slider(moved: int):
        def slider_moved(*args):
            *weights, method, replies = args
            weights = rebalance(weights, moved)
            # The dragged slider is not sent back: that would fight the user's hand.
            sliders = [gr.skip() if i == moved else w for i, w in enumerate(weights)]
            return *sliders, *preferences(*weights, method, replies)

        slider_moved.__name__ = f"slider_{moved}_moved"
        return ui_errors(slider_moved)

    @ui_errors
    def chat(request: gr.Request, message, history, replies, *args):
        """Stream one reply, then score it and add it to the table and the plot."""
        *weights, method, max_new_tokens, temperature = args
        shown, notices = input_notices(message, steer.fmt)
        desired = steer.desired(weights, method).tolist()
        messages = [*history, {"role": "user", "content": shown}]
        gen_settings = settings(max_new_tokens, temperature)
        notice = "\n".join(f"- {m}" for m in notices)
        yield (messages + [{"role": "assistant", "content": ""}], "", notice, *[gr.skip()] * 5)

        stop = stops[request.session_hash] = threading.Event()
        text = ""
        try:
            for text in steer.stream_chat(
                messages[-HISTORY_MESSAGES - 1 :], weights, method, gen_settings, stop
            ):
                yield messages + [{"role": "assistant", "content": text}], *[gr.skip()] * 7
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
        with steer.lock:
            texts = generate(
                steer.model,
                steer.tokenizer,
                inputs,
                settings(max_new_tokens),
                batch_size=len(inputs),
                seed=int(seed),
                progress=False,
            )
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
    with gr.Blocks(title="Rewards-in-Context", analytics_enabled=False) as blocks:
        gr.Markdown(header(steer, model_label))
        with gr.Tab("Text"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        sliders = [
                            gr.Slider(0, 1, value=w, step=0.01, label=name, elem_id=f"w-{name}")
                            for name, w in zip(names, w0, strict=True)
                        ]
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
            image_tab(image_model)

        # -- events --
        private = dict(api_visibility="private")
        pref_inputs = [*sliders, method, replies]
        for i, s in enumerate(sliders):
            s.input(
                on_slider(i),
                pref_inputs,
                [*sliders, pref_md, plot],
                queue=False,
                show_progress="hidden",
                trigger_mode="always_last",
                **private,
            )
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


def header(steer: SteerableModel, model_label: str | None) -> str:
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
    if steer.meta.extra.get("unnormalized"):
        lines.append("> Rewards are **un-normalized** (raw scores; no statistics shipped).")
    return "\n\n".join(lines)


def image_tab(image_model: str | None) -> None:
    """The Image tab. Hook for the RiC diffusion model (a later issue): build its UI here."""
    if image_model is None:
        gr.Markdown(
            "No image model yet: the RiC text-to-image model comes in a later release. "
            "Start the app with `--image-model FOLDER` once one is trained."
        )
    elif not Path(image_model).exists():
        gr.Markdown(f"**`--image-model {image_model}`: that folder does not exist.**")
    else:
        gr.Markdown(
            f"Found `{image_model}`, but this version of the app cannot run image models yet."
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
    p.add_argument("--image-model", help="RiC image model folder (Image tab)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument("--port", type=int, default=7860)
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
        steer, label = load_steerable(args.model, args.adapter, args.dtype)
    except (OSError, ValueError, RuntimeError) as e:  # missing folder, bad metadata, no weights
        raise SystemExit(f"ric: cannot load the model: {e}") from None
    fronts = load_fronts(
        [
            args.front or (FRONT if shipped else None),
            args.base_front or (BASE_FRONT if shipped else None),
        ],
        steer.reward_names,
    )
    demo = build_demo(steer, fronts, args.image_model, label)
    if auth is None and (args.share or args.host not in ("127.0.0.1", "localhost")):
        print("ric: WARNING: reachable beyond this machine without --auth", file=sys.stderr)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth)


if __name__ == "__main__":
    main()
