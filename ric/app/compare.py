"""The Compare tab: one prompt answered at several preferences spread over the simplex, as one
batch through the steerable model, each reply shown whole beside its rewards."""

from __future__ import annotations

import gradio as gr
import numpy as np

from ric.app.text import EMPTY_MESSAGE, MAX_NEW_TOKENS, MODEL_QUEUE, settings
from ric.app.widgets import TABLE_CSS, results_html, ui_errors
from ric.mapping import simplex_grid
from ric.steering import SteerableModel, check_user_prompt


def compare_weights(n: int, k: int) -> list[list[float]]:
    """k preferences spread over the simplex: evenly along w_1 for 2 objectives; for 3, the
    corners, the centre, the edge midpoints, then the thirds of the 13-vector sweep."""
    if n == 2:
        return simplex_grid(2, k).tolist()
    grid = simplex_grid(n) if n == 3 else np.concatenate([np.eye(n), np.full((1, n), 1 / n)])
    order = [0, 1, 2, 6, 3, 4, 5, *range(7, len(grid))] if n == 3 else range(len(grid))
    return grid[list(order)][:k].tolist()


def compare_replies(steer: SteerableModel, prompt: str, weights, method, gen, seed) -> list[dict]:
    """One reply per preference in `weights`, generated as one batch (the same seed for all)."""
    desired = [steer.desired(w, method) for w in weights]
    inputs = [steer.prompt(prompt, d) for d in desired]
    done = steer.complete(inputs, gen, int(seed), batch_size=len(inputs), progress=False)
    texts = [c.text for c in done]
    achieved = steer.score([prompt] * len(texts), texts)
    return [
        dict(weights=w, desired=d.tolist(), achieved=a.tolist(), text=t)
        for w, d, a, t in zip(weights, desired, achieved, texts, strict=True)
    ]


def compare_tab(steer: SteerableModel, method: gr.Radio, figure) -> None:
    """The tab's widgets and events (inside a gr.Tab); `method` is the Text tab's menu."""
    names = steer.reward_names
    n = len(names)

    @ui_errors
    def compare(prompt, k, method, max_new_tokens, seed):
        """Rows (HTML), plot, notices; an empty prompt gives one notice and changes nothing."""
        if not str(prompt or "").strip():
            return gr.skip(), gr.skip(), EMPTY_MESSAGE
        prompt, notices = check_user_prompt(prompt)
        rows = compare_replies(
            steer, prompt, compare_weights(n, int(k)), method, settings(max_new_tokens), seed
        )
        notice = "\n".join(f"- {m}" for m in notices)
        return results_html(names, rows), figure(None, rows, "compared"), notice

    gr.Markdown(
        "One prompt answered at several preferences spread along the front, side by side "
        "(the mapping is the Text tab's)."
    )
    with gr.Row():
        prompt = gr.Textbox(label="prompt", scale=4, min_width=240, elem_id="cmp-prompt")
        k = gr.Slider(2, 11 if n == 2 else 13, value=5, step=1, label="preferences")
        tokens = gr.Slider(8, MAX_NEW_TOKENS, value=64, step=8, label="max new tokens")
        seed = gr.Number(0, precision=0, label="seed", min_width=100)
    go = gr.Button("Generate", variant="primary", elem_id="cmp-generate")
    notice = gr.Markdown(elem_id="cmp-notices")
    with gr.Row():
        with gr.Column(scale=3, min_width=320):
            table = gr.HTML(elem_id="cmp-replies", css_template=TABLE_CSS)
        with gr.Column(scale=2, min_width=320):
            plot = gr.Plot(figure(), label="rewards (normalized)", visible=figure() is not None)
    go.click(
        compare,
        [prompt, k, method, tokens, seed],
        [table, plot, notice],
        api_visibility="private",
        **MODEL_QUEUE,
    )
