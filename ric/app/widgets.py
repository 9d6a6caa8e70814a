"""Widgets and helpers the app's tabs share: preference sliders, the ternary picker, the click
on a front point, result tables that show whole replies, and the error handling of callbacks.

Callbacks raise ValueError for bad input (ric/ and ric.validation do); `ui_errors` turns it into
gr.Error, so the user reads the message, never a stack trace, and the server keeps serving.
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Sequence

import gradio as gr
import numpy as np

from ric.rewards import describe_reward
from ric.validation import ENDPOINTS, InputError, check_arguments

# --- errors ----------------------------------------------------------------------------------


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


# --- preference sliders ----------------------------------------------------------------------


def normalized(weights) -> list[float]:
    w = np.asarray(weights, dtype=float)
    return (w / w.sum()).tolist() if w.sum() > 0 else w.tolist()


def rebalance(weights: Sequence[float], moved: int) -> list[float]:
    """Keep sliders on the simplex: the moved slider keeps its value and the others share the
    rest in their current proportions (equally if they are all zero). The Image tab's sliders."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, 1.0)
    rest = np.delete(w, moved)
    left = 1.0 - w[moved]
    rest = rest * left / rest.sum() if rest.sum() > 0 else np.full(rest.size, left / rest.size)
    return np.insert(rest, moved, w[moved]).round(2).tolist()


def weight_sliders(
    names: Sequence[str], elem_prefix: str = "w", descriptions: dict | None = None
) -> list[gr.Slider]:
    """One slider per reward, starting at equal weights, with its one-line description under it
    (the artifact's own, else ric.rewards.REWARD_DESCRIPTIONS)."""
    w0 = round(1 / len(names), 2)
    return [
        gr.Slider(
            0,
            1,
            value=w0,
            step=0.01,
            label=name,
            info=describe_reward(name, descriptions) or None,
            elem_id=f"{elem_prefix}-{name}",
            min_width=160,
        )
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


def wire_weight_sliders(sliders, inputs, outputs, update, name: str = "slider") -> None:
    """Sliders that never move each other: each says how much its reward matters (0 to 1), and
    the preference is their proportions (0.2 and 0.6 mean w = (0.25, 0.75)). Every point of the
    simplex is reachable and setting one slider to 0 leaves the others where they are. Moving
    slider i calls update(*weights, *inputs) into `outputs` (callbacks named NAME_{i}_moved)."""
    n = len(sliders)

    def on_slider(moved: int):
        def slider_moved(*args):
            return update(*args[:n], *args[n:])

        slider_moved.__name__ = f"{name}_{moved}_moved"
        return ui_errors(slider_moved)

    for i, s in enumerate(sliders):
        s.input(
            on_slider(i),
            [*sliders, *inputs],
            outputs,
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
            api_visibility="private",
        )


ALL_ZERO = "Every slider is at 0: raise at least one to say what matters."


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


# --- whole replies ---------------------------------------------------------------------------

TABLE_CSS = """
.ric-results table { width: 100%; border-collapse: collapse; font-size: 0.9em; }
.ric-results th, .ric-results td { border-bottom: 1px solid var(--border-color-primary);
  padding: 4px 6px; vertical-align: top; text-align: left; }
.ric-results td.num { white-space: nowrap; font-variant-numeric: tabular-nums; }
.ric-results td.text { white-space: pre-wrap; overflow-wrap: anywhere; min-width: 12em; }
.ric-results { max-height: 32em; overflow-y: auto; }
"""


def results_html(names: Sequence[str], rows: Sequence[dict], empty: str = "") -> str:
    """An HTML table of replies, each row whole: #, weights, desired and achieved rewards (one
    value per reward, in `names` order), and the full reply text, wrapped. rows: dicts with
    "weights", "desired", "achieved", "text"."""
    if not rows:
        return f"<div class='ric-results'><p>{html.escape(empty)}</p></div>" if empty else ""
    head = "".join(f"<th>{h}</th>" for h in ("#", "weights", "desired", "achieved", "reply"))
    body = []
    for i, r in enumerate(rows):
        cells = [str(i + 1), *(fmt_values(r.get(k)) for k in ("weights", "desired", "achieved"))]
        body.append(
            "<tr>"
            + "".join(f"<td class='num'>{html.escape(c)}</td>" for c in cells)
            + f"<td class='text'>{html.escape(r['text'])}</td></tr>"
        )
    caption = "rewards in order: " + ", ".join(html.escape(n) for n in names)
    return (
        f"<div class='ric-results'><table><caption>{caption}</caption><thead><tr>{head}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# --- picking a preference with a gesture -----------------------------------------------------

_TERNARY_TEMPLATE = """
<div class="ric-ternary" data-w="${value}">
  <svg viewBox="-50 -26 300 230" width="100%" style="max-width:300px;touch-action:none">
    <polygon points="100,0 0,173.2 200,173.2" fill="var(--block-background-fill)"
      stroke="var(--body-text-color)" stroke-width="1.5"/>
    <text x="100" y="-6" text-anchor="middle" font-size="17" fill="currentColor">${a}</text>
    <text x="0" y="192" text-anchor="middle" font-size="17" fill="currentColor">${b}</text>
    <text x="200" y="192" text-anchor="middle" font-size="17" fill="currentColor">${c}</text>
    <circle class="dot" r="8" cx="100" cy="115.5" fill="#d62728" stroke="white"/>
  </svg>
  <div style="font-size:0.85em">Drag the dot: each corner is one reward alone.</div>
  <div class="readout" style="font-size:0.85em"></div>
</div>
"""

# Corners A (top), B (bottom left), C (bottom right) are rewards 0, 1, 2; a point's weights are
# its barycentric coordinates. A drag moves the dot; releasing it sends the weights.
_TERNARY_JS = """
const A = [100, 0], B = [0, 173.2], C = [200, 173.2];
const names = [props.a, props.b, props.c];
function bary(x, y) {
  const d = (B[1] - C[1]) * (A[0] - C[0]) + (C[0] - B[0]) * (A[1] - C[1]);
  let a = ((B[1] - C[1]) * (x - C[0]) + (C[0] - B[0]) * (y - C[1])) / d;
  let b = ((C[1] - A[1]) * (x - C[0]) + (A[0] - C[0]) * (y - C[1])) / d;
  a = Math.max(0, a); b = Math.max(0, b);
  let c = Math.max(0, 1 - a - b);
  const s = a + b + c;
  return [a / s, b / s, c / s].map(v => Math.round(v * 100) / 100);
}
function place(w) {
  const dot = element.querySelector('.dot');
  const s = w[0] + w[1] + w[2] || 1;
  const x = (w[0] * A[0] + w[1] * B[0] + w[2] * C[0]) / s;
  const y = (w[0] * A[1] + w[1] * B[1] + w[2] * C[1]) / s;
  dot.setAttribute('cx', x); dot.setAttribute('cy', y); dot.dataset.placed = '1';
  element.querySelector('.readout').textContent =
    names.map((n, i) => n + ' ' + (w[i] / s).toFixed(2)).join(' \\u00b7 ');
}
function current() { return String(props.value || '').split(',').map(Number); }
function at(ev) {
  const svg = element.querySelector('svg');
  const p = svg.createSVGPoint(); p.x = ev.clientX; p.y = ev.clientY;
  const q = p.matrixTransform(svg.getScreenCTM().inverse());
  return bary(q.x, q.y);
}
let dragging = false, last = null;
element.addEventListener('pointerdown', ev => {
  if (!ev.target.closest('svg')) return;
  dragging = true; ev.target.setPointerCapture && ev.target.setPointerCapture(ev.pointerId);
  last = at(ev); place(last);
});
element.addEventListener('pointermove', ev => { if (dragging) { last = at(ev); place(last); } });
element.addEventListener('pointerup', ev => {
  if (!dragging) return;
  dragging = false; last = at(ev); place(last);
  props.value = last.join(',');
  trigger('change');
});
place(current());
watch('value', () => place(current()));
// Setting props.value re-renders the template (the dot back at the centre): place it again.
new MutationObserver(() => {
  const dot = element.querySelector('.dot');
  if (dot && dot.dataset.placed !== '1') place(current());
}).observe(element, { childList: true, subtree: true, attributes: true });
"""


def ternary_picker(names: Sequence[str], weights: Sequence[float], elem_id: str) -> gr.HTML:
    """A triangle whose corners are the three rewards: one drag chooses all three weights (its
    value is "w0,w1,w2"; it fires `change` when the drag ends)."""
    a, b, c = (html.escape(n) for n in names)
    return gr.HTML(
        ",".join(f"{w:.2f}" for w in weights),
        html_template=_TERNARY_TEMPLATE,
        js_on_load=_TERNARY_JS,
        a=a,
        b=b,
        c=c,
        elem_id=elem_id,
    )


def parse_picked(value: str | None, n: int) -> list[float] | None:
    """The weights a picker sent ("0.2,0.3,0.5"), or None for anything else."""
    try:
        w = [float(v) for v in str(value or "").split(",")]
    except ValueError:
        return None
    if len(w) != n or not all(np.isfinite(w)) or min(w) < 0 or sum(w) <= 0:
        return None
    return w


# Plotly's click on a point of an evaluated front (its customdata holds the point's weights) is
# sent as this component's value plus a `click`. gradio redraws the plot on every update, so the
# listener is attached to whichever plot is there now, checked 4 times a second.
_FRONT_CLICK_JS = """
function hook() {
  const gd = document.querySelector('#' + props.plot + ' .js-plotly-plot');
  if (!gd || !gd.on || gd._ricHooked === gd._ev) return;
  gd._ricHooked = gd._ev;
  gd.on('plotly_click', data => {
    const pt = data && data.points && data.points[0];
    const w = pt && pt.customdata;
    if (!Array.isArray(w) || !w.every(v => typeof v === 'number')) return;
    props.value = w.join(',');
    trigger('click');
  });
}
setInterval(hook, 250);
"""


def front_click(plot_elem_id: str, elem_id: str) -> gr.HTML:
    """A one-line hint under the plot; a click on a front point of `plot_elem_id` puts that
    point's weights ("w0,w1") in its value and fires its `click`."""
    return gr.HTML(
        "",
        html_template=(
            "<p style='font-size:0.85em;margin:0'>Click a point of the evaluated front to set "
            "the sliders to its weights and reply there.</p>"
        ),
        js_on_load=_FRONT_CLICK_JS,
        plot=plot_elem_id,
        elem_id=elem_id,
        padding=False,
    )
