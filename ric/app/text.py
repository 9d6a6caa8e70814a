"""The Text tab: preference sliders (and, for three rewards, a triangle), the chat with the
conditioned model, its replies in full and the Pareto view; plus the /generate and
/map_preferences API endpoints. Every generation goes through ric.steering.SteerableModel.

What the model sees: the new message (reward tags and chat control tokens removed, cut at
2000 characters) and, only if the user asks for it in "generation", the last few exchanges.
The shipped adapter was trained on single messages: given earlier turns, the 135M model repeats
its previous answer or falls back to a stock phrase, so by default each message is answered on
its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import gradio as gr
import numpy as np

from ric.app.widgets import (
    ALL_ZERO,
    TABLE_CSS,
    front_click,
    normalized,
    parse_picked,
    preference_table,
    results_html,
    ternary_picker,
    ui_errors,
    weight_sliders,
    wire_weight_sliders,
)
from ric.conditioning import ConditioningFormat, sanitize_with_notices
from ric.evaluation import EvalConfig
from ric.generation import GenerationSettings
from ric.mapping import METHODS
from ric.plotting import is_base_front
from ric.quality import guard_failures
from ric.rewards import describe_reward
from ric.steering import SteerableModel, check_user_prompt
from ric.validation import Limits, check_whole, generate_request, map_request

MAX_NEW_TOKENS = 512  # per reply; a public demo should not let one request hold the model long
MAX_HISTORY_TURNS = 4  # earlier exchanges the user may let the model see (default none)
# The app's mapping: weight 0 means "not a priority" (a typical value of that reward), which is
# how people read a slider at 0; the paper's formula ("ric") stays in the menu.
APP_METHOD = "typical"
# Events that run the model share one pool of slots, as many as one batch holds: requests that
# are running together are decoded together by the model's batcher (ric.generation.Batcher),
# so 16 users cost little more than one; beyond that a waiting user sees their queue position.
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=16)
EMPTY_MESSAGE = "Type a message first: the box is empty."
CSS = TABLE_CSS


def input_notices(prompt: str, fmt: ConditioningFormat, tokenizer=None) -> tuple[str, list[str]]:
    """(the prompt as the model gets it, notices): truncation, and the reward tags and chat
    control tokens typed by the user, which never reach the model
    (ric.conditioning.sanitize_with_notices)."""
    prompt, notices = check_user_prompt(prompt)
    clean, removed = sanitize_with_notices(prompt, fmt, tokenizer)
    return clean, notices + removed


def model_messages(history: Sequence[dict], message: str, turns: int = 0) -> list[dict]:
    """What the model is given: the last `turns` exchanges of the chat, then the new message.
    Exchanges whose reply is empty (stopped at once) are dropped: they teach it nothing."""
    pairs = [
        (history[i], history[i + 1])
        for i in range(0, len(history) - 1, 2)
        if history[i + 1].get("content")
    ]
    kept = [m for pair in pairs[len(pairs) - turns :] for m in pair] if turns > 0 else []
    return [*kept, {"role": "user", "content": message}]


def seen_note(turns: int) -> str:
    return (
        "The model sees only your new message."
        if turns == 0
        else f"The model sees your new message and the last {turns} exchange(s)."
    )


# --- the header ------------------------------------------------------------------------------


def steering_words(rho: float) -> str:
    """A Spearman correlation of weight and achieved reward, in words."""
    return "closely" if rho >= 0.9 else "roughly" if rho >= 0.6 else "weakly"


def measured_front(fronts: Sequence[dict]) -> dict | None:
    """The first front with a measured sweep (controllability figures), or None."""
    return next((f for f in fronts if (f.get("controllability") or {}).get("spearman")), None)


def in_words(items: Sequence[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def summary(steer: SteerableModel, model_label: str | None, fronts: Sequence[dict] = ()) -> str:
    """One sentence: what the model is and how well it steers."""
    names = steer.reward_names
    label = model_label or steer.meta.base_model
    if not steer.conditioned:
        return (
            f"**The untrained base model** ({label}): **the sliders have no effect.** "
            "Train a RiC adapter (train/sft.py) and start the app with `--adapter`."
        )
    what = f"A chat model ({label}) whose replies you steer between {in_words(names)}"
    front = measured_front(fronts)
    if front is None:
        return what + " with the sliders; how closely it follows them was not measured."
    rho = front["controllability"]["spearman"]
    how = in_words(
        [f"the {name} slider {steering_words(r)}" for name, r in zip(names, rho, strict=True)]
    )
    n = (front.get("settings") or {}).get("max_prompts")
    where = f"on {n} held-out prompts" if n else "in its evaluation"
    text = f"{what}: {where} it followed {how}."
    if not all(p.get("guards") for p in front["points"]):
        # A front can be reached by printing stock phrases: without the guards, say so.
        text += " Answer quality was not measured with it (see details)."
    return text


def measured_steering(fronts: Sequence[dict]) -> str | None:
    """The figures behind the summary: how each slider moved its reward on held-out prompts."""
    front = measured_front(fronts)
    if front is None:
        return None
    rho = front["controllability"]["spearman"]
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
        line += f" Below 0.9 the reward does not rise steadily with its slider: {', '.join(weak)}."
    base = next((f for f in fronts if is_base_front(f)), None)
    base_guards = base["points"][0].get("guards") if base else None
    return line + "\n\n" + answer_quality(front, base_guards)


def answer_quality(front: dict, base_guards: dict | None = None) -> str:
    """The quality guards beside the rewards (ric.quality): the worst value over the sweep, so
    a model that games a reward with stock phrases shows it here, and the sweep points that miss
    the project's bars (ric.quality.GUARD_BARS, relative ones against the base model)."""
    guards = [p.get("guards") for p in front["points"]]
    if not all(guards):
        return (
            "**Answer quality:** this front was evaluated before the quality guards existed "
            "(relevance, repeated openings, echo, replies ended by themselves): not measured."
        )

    def worst(key, pick):
        values = [g[key] for g in guards if g.get(key) is not None]
        return pick(values) if values else float("nan")

    return (
        "**Answer quality** (worst point of the sweep): relevance to the prompt "
        f"{worst('relevance', min):.2f}; most common 3-word opening in "
        f"{100 * worst('top_opening_share', max):.0f}% of replies; openings shared by 3+ prompts "
        f"{100 * worst('shared_opening_share', max):.0f}%; echoing the prompt "
        f"{100 * worst('echo_rate', max):.0f}%; ended by themselves "
        f"{100 * worst('finished_share', min):.0f}%; distinct word pairs "
        f"{worst('distinct_2', min):.2f}. " + quality_bars(front, base_guards)
    )


def quality_bars(front: dict, base_guards: dict | None) -> str:
    """Which sweep points miss a bar of ric.quality.GUARD_BARS, in a sentence."""
    failed = {
        tuple(p["weights"]): fails
        for p in front["points"]
        if (fails := guard_failures(p["guards"], base_guards))
    }
    against = "" if base_guards else " (no base-model point to compare relevance with)"
    if not failed:
        return f"Every point meets the answer-quality bars (docs/METHOD.md section 8){against}."
    where = "; ".join(
        f"at weights ({', '.join(f'{x:.2g}' for x in w)}) {', '.join(f)}" for w, f in failed.items()
    )
    return f"Below the answer-quality bars (docs/METHOD.md section 8){against}: {where}."


def details(steer: SteerableModel, model_label: str | None, fronts: Sequence[dict] = ()) -> str:
    """The "details" accordion: the model, its rewards and range, the measured figures."""
    s = steer.stats
    names = steer.reward_names
    lines = [
        f"**Model:** {model_label or steer.meta.base_model} ({steer.engine.label} engine)",
        "**Rewards:** "
        + "; ".join(
            f"{n}: {describe_reward(n, steer.meta.reward_descriptions) or n}" for n in names
        ),
        "**Mapping range** (normalized rewards, from "
        + ("the training data" if s.range_source == "data" else "a Gaussian")
        + "): "
        + ", ".join(
            f"{n} {lo:+.1f} to {hi:+.1f}" for n, lo, hi in zip(names, s.low, s.high, strict=True)
        ),
        "How the weights become desired rewards: docs/METHOD.md section 6. Rewards are "
        "normalized: 0 is the training average, 1 one standard deviation above it.",
    ]
    if measured := measured_steering(fronts):
        lines.append(measured)
    if steer.meta.extra.get("unnormalized"):
        lines.append("Rewards are **un-normalized** (raw scores; no statistics shipped).")
    return "\n\n".join(lines)


def header(steer: SteerableModel, model_label: str | None, fronts: Sequence[dict] = ()) -> str:
    """The summary and the details as one Markdown text (the tab shows the details folded)."""
    return summary(steer, model_label, fronts) + "\n\n" + details(steer, model_label, fronts)


# --- the tab ---------------------------------------------------------------------------------


# Replies are sampled the way the fronts the app shows were measured (ric.evaluation's
# defaults): without the repetition penalty the 135M default now and then loops a line.
MEASURED = EvalConfig()


def settings(
    max_new_tokens, temperature=MEASURED.temperature, top_p=MEASURED.top_p
) -> GenerationSettings:
    max_new_tokens = check_whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
    return GenerationSettings(
        max_new_tokens,
        float(temperature),
        float(top_p),
        repetition_penalty=MEASURED.repetition_penalty,
    )


def register_api(steer: SteerableModel) -> None:
    """/generate and /map_preferences; their default mapping is the model's own."""
    limits = Limits(n_rewards=len(steer.reward_names), max_new_tokens=MAX_NEW_TOKENS)
    default_method = steer.meta.mapping

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

    gr.api(generate_api, api_name="generate", **MODEL_QUEUE)
    gr.api(map_preferences_api, api_name="map_preferences")


def text_tab(steer: SteerableModel, fronts: Sequence[dict], figure) -> gr.Radio:
    """The Text tab's widgets and events (inside a gr.Tab). figure(desired, replies) draws the
    Pareto view, or None. Returns the mapping menu, which the Compare tab shares."""
    names = steer.reward_names
    n = len(names)
    stops: dict[str, threading.Event] = {}  # session -> its running generation's stop flag
    skip8 = [gr.skip()] * 8

    def preferences(*args):
        """Sliders, method, replies -> preference table and plot."""
        *weights, method, replies = args
        if sum(weights) <= 0:
            return ALL_ZERO, figure(None, replies)
        desired = steer.desired(weights, method).tolist()
        last = replies[-1]["achieved"] if replies else None
        return preference_table(names, normalized(weights), desired, last), figure(desired, replies)

    def answer(request, message, history, replies, weights, method, max_new_tokens, temp, turns):
        """Stream one reply to `message`, then score it and add it to the table and the plot.
        Yields (chatbot, message box, notices, preferences, replies table, plot, history,
        replies). An empty message or all-zero sliders: one notice, nothing else changes."""
        problem = (
            EMPTY_MESSAGE
            if not str(message or "").strip()
            else ALL_ZERO
            if sum(weights) <= 0
            else None
        )
        if problem:
            yield gr.skip(), gr.skip(), problem, *[gr.skip()] * 5
            return
        shown, notices = input_notices(message, steer.fmt, steer.tokenizer)
        turns = int(turns or 0)
        desired = steer.desired(weights, method).tolist()
        messages = [*history, {"role": "user", "content": shown}]
        gen_settings = settings(max_new_tokens, temp)
        notice = "\n".join(f"- {m}" for m in [*notices, seen_note(turns)])
        ahead = steer.queue_position()
        waiting = f"\n- {ahead} request(s) ahead of yours; your reply starts when they end"
        yield (
            messages + [{"role": "assistant", "content": ""}],
            "",
            notice + (waiting if ahead else ""),
            *[gr.skip()] * 5,
        )
        stop = stops[request.session_hash] = threading.Event()
        text = ""
        seen = model_messages(history, shown, turns)
        try:
            for k, text in enumerate(steer.stream_chat(seen, weights, method, gen_settings, stop)):
                # The first token replaces the "waiting" notice; later ones leave it alone.
                yield (
                    messages + [{"role": "assistant", "content": text}],
                    gr.skip(),
                    notice if k == 0 else gr.skip(),
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
            results_html(names, replies),
            figure(desired, replies),
            messages,
            replies,
        )

    @ui_errors
    def chat(request: gr.Request, message, history, replies, *args):
        *weights, method, max_new_tokens, temperature, turns = args
        yield from answer(
            request, message, history, replies, weights, method, max_new_tokens, temperature, turns
        )

    @ui_errors
    def front_clicked(request: gr.Request, picked, message, history, replies, *args):
        """A click on a front point: the sliders go to its weights, and the last message (or,
        before the first one, the message box) is answered again there; the new reply
        replaces the old one in the chat and joins the replies table."""
        *_, method, max_new_tokens, temperature, turns = args
        weights = parse_picked(picked, n)
        if weights is None:
            yield *[gr.skip()] * (n + extra), *skip8
            return
        w = normalized(weights)
        set_w = [round(v, 2) for v in w] + ([",".join(f"{v:.2f}" for v in w)] if extra else [])
        if len(history) >= 2 and history[-2]["role"] == "user":
            message, history = history[-2]["content"], history[:-2]
        if not str(message or "").strip():
            table, plot = preferences(*w, method, replies)
            yield *set_w, gr.skip(), gr.skip(), EMPTY_MESSAGE, table, gr.skip(), plot, *skip8[:2]
            return
        first = True
        for out in answer(
            request, message, history, replies, w, method, max_new_tokens, temperature, turns
        ):
            yield *(set_w if first else [gr.skip()] * (n + extra)), *out
            first = False

    def stop_chat(request: gr.Request):
        if (stop := stops.get(request.session_hash)) is not None:
            stop.set()

    @ui_errors
    def new_chat(request: gr.Request, *args):
        stop_chat(request)
        *weights, method = args
        table, plot = preferences(*weights, method, [])
        return [], "", "", table, results_html(names, []), plot, [], []

    # -- layout --
    extra = 1 if n == 3 else 0  # the triangle's value follows the sliders
    w0 = [round(1 / n, 2)] * n
    app_method = APP_METHOD if APP_METHOD in METHODS else steer.meta.mapping
    d0 = steer.desired(w0, app_method).tolist()
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=320):
            with gr.Row():
                with gr.Column(scale=3, min_width=240):
                    sliders = weight_sliders(names, descriptions=steer.meta.reward_descriptions)
                picker = None
                if n == 3:
                    with gr.Column(scale=2, min_width=240):
                        picker = ternary_picker(names, w0, "ternary")
            gr.Markdown(
                "Each slider says how much its reward matters; only their proportions count "
                "(0.2 and 0.6 mean 25% and 75%). At 0 a reward is *not a priority*: the model "
                "aims at a typical value of it, not the lowest.",
                elem_id="slider-help",
            )
            method = gr.Radio(
                list(METHODS),
                value=app_method,
                label="mapping",
                info=(
                    "how weights become desired rewards (docs/METHOD.md section 6): typical = "
                    "weight 0 asks for that reward's median; ric = the paper's formula (0 asks "
                    f"for the lowest seen); this model was evaluated with {steer.meta.mapping}"
                ),
                elem_id="method",
            )
            pref_md = gr.Markdown(preference_table(names, w0, d0), elem_id="preferences")
            chatbot = gr.Chatbot(
                height=380, label="chat", feedback_options=None, elem_id="chatbot", buttons=["copy"]
            )
            notice_md = gr.Markdown(elem_id="notices")
            msg = gr.Textbox(
                placeholder="Type a message and press Enter",
                show_label=False,
                elem_id="message",
            )
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send", interactive=False)
                stop = gr.Button("Stop", elem_id="stop")
                clear = gr.Button("New chat", elem_id="new-chat")
            with gr.Accordion("generation", open=False):
                max_tokens = gr.Slider(8, MAX_NEW_TOKENS, value=64, step=8, label="max new tokens")
                temperature = gr.Slider(
                    0.1, 1.5, value=MEASURED.temperature, step=0.05, label="temperature"
                )
                turns = gr.Slider(
                    0,
                    MAX_HISTORY_TURNS,
                    value=0,
                    step=1,
                    label="earlier exchanges the model sees",
                    info="0: each message on its own. The shipped model was trained on single "
                    "messages; shown earlier turns, it tends to repeat its last answer.",
                    elem_id="turns",
                )
        with gr.Column(scale=2, min_width=320):
            plot = gr.Plot(
                figure(d0),
                label="rewards (normalized; higher is better)",
                elem_id="pareto",
                visible=figure(d0) is not None,
            )
            clicks = front_click("pareto", "front-click") if fronts else None
            replies_html = gr.HTML(
                results_html(names, []), label="replies", elem_id="replies", css_template=CSS
            )
    history, replies = gr.State([]), gr.State([])

    # -- events --
    private = dict(api_visibility="private")
    pickers = [picker] if picker is not None else []

    def with_picker(*args):
        table, fig = preferences(*args)
        if not pickers:
            return table, fig
        w = normalized(args[:n])
        return table, fig, ",".join(f"{v:.2f}" for v in w) if sum(args[:n]) > 0 else gr.skip()

    with_picker.__name__ = "preferences"
    wire_weight_sliders(sliders, [method, replies], [pref_md, plot, *pickers], with_picker)
    method.change(
        ui_errors(preferences),
        [*sliders, method, replies],
        [pref_md, plot],
        show_progress="hidden",
        **private,
    )
    if picker is not None:

        @ui_errors
        def picked(value, method, replies):
            weights = parse_picked(value, n)
            if weights is None:
                return *[gr.skip()] * n, gr.skip(), gr.skip()
            return *weights, *preferences(*weights, method, replies)

        picker.change(
            picked,
            [picker, method, replies],
            [*sliders, pref_md, plot],
            queue=False,
            show_progress="hidden",
            **private,
        )
    gen_inputs = [*sliders, method, max_tokens, temperature, turns]
    outputs = [chatbot, msg, notice_md, pref_md, replies_html, plot, history, replies]
    chat_io = dict(
        fn=chat,
        inputs=[msg, history, replies, *gen_inputs],
        outputs=outputs,
        show_progress="minimal",
        **MODEL_QUEUE,
        **private,
    )
    chats = [msg.submit(**chat_io), send.click(**chat_io)]
    msg.change(
        lambda m: gr.Button(interactive=bool(str(m or "").strip())),
        msg,
        send,
        queue=False,
        show_progress="hidden",
        **private,
    )
    if clicks is not None:
        chats.append(
            clicks.click(
                front_clicked,
                [clicks, msg, history, replies, *gen_inputs],
                [*sliders, *pickers, *outputs],
                show_progress="minimal",
                **MODEL_QUEUE,
                **private,
            )
        )
    stop.click(stop_chat, None, None, queue=False, **private)
    gr.on(  # the chat's own trash icon is a "new chat" too
        [clear.click, chatbot.clear],
        new_chat,
        [*sliders, method],
        outputs,
        cancels=chats,
        queue=False,
        **private,
    )
    return method
