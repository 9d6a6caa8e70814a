"""Pareto-front figures: evaluated fronts, the base model, the desired point and live replies.

`pareto_figure` draws what the app shows beside the chat (Plotly, interactive): 2-D for two
objectives, a 3-D scatter for three. `save_front_figures` writes the same view for
train/evaluate.py as front.html (Plotly) and front.png (matplotlib: no browser needed).

A front is the dict train/evaluate.py writes to front.json:
    {"label": "RiC", "reward_names": [...], "reference_point": [...], "hypervolume": 0.41,
     "points": [{"weights": [0.3, 0.7] or None, "desired": [...], "achieved": [...]}, ...]}
A front whose points have weights None is a base model (no conditioning): drawn as a star.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ric.pareto import pareto_mask

FRONT_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
BASE_COLOR = "#7f7f7f"
DESIRED_COLOR = "#d62728"
REPLY_COLOR = "#ff7f0e"


def is_base_front(front: dict) -> bool:
    """True for an unconditioned model's front (its points carry no weights)."""
    return all(p.get("weights") is None for p in front["points"])


def front_name(front: dict) -> str:
    """Legend name: the label and its hypervolume, e.g. "RiC front, HV 0.412"."""
    kind = "" if is_base_front(front) else " front"
    hv = front.get("hypervolume")
    return f"{front.get('label', 'front')}{kind}" + (f", HV {hv:.3f}" if hv is not None else "")


def weights_text(weights: Sequence[float] | None) -> str:
    """Short point label: "w=(0.3, 0.7)"; "" for a base point without weights."""
    if weights is None:
        return ""
    return "w=(" + ", ".join(f"{w:.2g}" for w in weights) + ")"


def _points(rows: Sequence[Sequence[float]], n: int, what: str) -> np.ndarray:
    arr = np.asarray(rows, dtype=float).reshape(len(rows), -1) if len(rows) else np.empty((0, n))
    if arr.shape[1] != n:
        raise ValueError(f"{what} have {arr.shape[1]} rewards, expected {n}")
    return arr


def _check_front(front: dict, names: Sequence[str]) -> np.ndarray:
    if list(front.get("reward_names", names)) != list(names):
        raise ValueError(
            f"front {front.get('label')!r} has rewards {front['reward_names']}, expected {names}"
        )
    return _points([p["achieved"] for p in front["points"]], len(names), "front points")


def axis_title(name: str) -> str:
    """An axis in words: "positivity: more positive ->" (higher is better on every axis)."""
    from ric.rewards import reward_axis

    return f"{name}: {reward_axis(name)}"


def front_order(front: dict) -> np.ndarray:
    """Indices of a front's points in reward order (by the first reward, then the second), so
    the line joining them follows the front instead of the sweep order (which zigzags where
    the achieved rewards are not monotone in the weights)."""
    pts = np.asarray([p["achieved"] for p in front["points"]], dtype=float)
    return np.lexsort(pts.T[::-1][-2:]) if len(pts) else np.arange(0)


def labelled(k: int, max_labels: int = 3) -> set[int]:
    """Which of k points (in front order) carry a text label: the two ends and the middle;
    every point still shows its weights on hover. A label per point overlaps in clusters."""
    if k <= max_labels:
        return set(range(k))
    return {int(round(i * (k - 1) / (max_labels - 1))) for i in range(max_labels)}


def pareto_figure(
    reward_names: Sequence[str],
    fronts: Sequence[dict] = (),
    desired: Sequence[float] | None = None,
    replies: Sequence[dict] = (),
    replies_name: str = "replies",
    title: str | None = None,
    height: int = 460,
):
    """A Plotly figure of normalized rewards (every axis: higher is better, named in words).

    fronts: front.json dicts, their non-dominated points joined left to right; a few points carry their weights as a
        label, every point on hover and in `customdata` (what a click on the point reads: the
        app sets its sliders to them). The legend names each front with its hypervolume.
        Base-model fronts are drawn as stars.
    desired: the desired reward vector the current preference maps to.
    replies: dicts with "achieved" (and optionally "weights", "desired", "label") for every reply
        so far, oldest first; drawn numbered (or with their "label").
    """
    import plotly.graph_objects as go

    names = list(reward_names)
    n = len(names)
    if n not in (2, 3):
        raise ValueError(f"Pareto plots show 2 or 3 objectives, got {n}")
    scatter = go.Scatter if n == 2 else go.Scatter3d
    marker_scale = 1.0 if n == 2 else 0.6  # 3-D markers look larger at the same size
    hoverinfo = "text+x+y" if n == 2 else "text+x+y+z"

    def coords(arr: np.ndarray) -> dict:
        return dict(zip(("x", "y", "z"), arr.T.tolist(), strict=False))

    fig = go.Figure()
    for k, front in enumerate(fronts):
        pts = _check_front(front, names)
        name = front_name(front)
        ref = front.get("reference_point")
        hover = f"{name}<br>reference point {ref}" if ref is not None else name
        if is_base_front(front):
            fig.add_trace(
                scatter(
                    **coords(pts),
                    mode="markers",
                    name=name,
                    marker=dict(
                        symbol="diamond" if n == 3 else "star",
                        size=16 * marker_scale,
                        color=BASE_COLOR,
                    ),
                    hovertext=hover,
                )
            )
            continue
        order = front_order(front) if n == 2 else np.arange(len(pts))
        points = [front["points"][i] for i in order]
        shown = labelled(len(points))
        labels = [weights_text(p["weights"]) for p in points]
        color = FRONT_COLORS[k % len(FRONT_COLORS)]
        fig.add_trace(
            scatter(
                **coords(pts[order]),
                mode="markers+text",
                name=name,
                legendgroup=name,
                text=[t if i in shown else "" for i, t in enumerate(labels)],
                # The left end's label to its right, the right end's to its left: inside.
                textposition=[
                    "top right" if i == 0 else "top left" if i == len(points) - 1 else "top center"
                    for i in range(len(points))
                ]
                if n == 2
                else "top center",
                textfont=dict(size=10),
                marker=dict(size=10 * marker_scale, color=color),
                customdata=[p["weights"] for p in points],
                hovertext=[f"{name}<br>{t} (click: reply here)" for t in labels],
                hoverinfo=hoverinfo,
            )
        )
        if n == 2:  # the line joins the non-dominated points, left to right: the front itself
            # (a shape, not a trace: it takes no legend entry, hover or click)
            line = pts[order][pareto_mask(pts[order])]
            fig.add_shape(
                type="path",
                path="M " + " L ".join(f"{x},{y}" for x, y in line),
                line=dict(width=1, dash="dot", color=color),
                layer="below",
            )
    if desired is not None:
        d = _points([desired], n, "desired rewards")
        fig.add_trace(
            scatter(
                **coords(d),
                mode="markers",
                name="desired",
                marker=dict(
                    symbol="x" if n == 2 else "cross", size=14 * marker_scale, color=DESIRED_COLOR
                ),
            )
        )
    if replies:
        pts = _points([r["achieved"] for r in replies], n, "achieved rewards")
        labels = [str(r.get("label", i + 1)) for i, r in enumerate(replies)]
        hover = [
            f"{replies_name} {t}<br>{weights_text(r.get('weights'))}"
            + (f"<br>desired {np.round(r['desired'], 2).tolist()}" if r.get("desired") else "")
            for t, r in zip(labels, replies, strict=True)
        ]
        # The newest reply stands out; older ones fade so the trail reads as a history.
        opacity = np.linspace(0.35, 1.0, len(replies)).tolist() if len(replies) > 1 else [1.0]
        fig.add_trace(
            scatter(
                **coords(pts),
                mode="markers+text",
                name=f"{replies_name} ({len(replies)})",
                text=labels,
                textposition="bottom center",
                marker=dict(
                    size=11 * marker_scale, color=REPLY_COLOR, opacity=opacity if n == 2 else 1.0
                ),
                hovertext=hover,
                hoverinfo=hoverinfo,
            )
        )
    axis = [axis_title(name) for name in names]
    # The legend sits above the plot, the axis titles below and left: they never meet. Its
    # entries wrap two to a row on a phone, 22 px a row: the top margin holds them all.
    entries = sum(t.showlegend is not False for t in fig.data)
    top = 36 + 22 * math.ceil(entries / 2) + (30 if title else 0)
    layout = dict(
        title=dict(text=title, y=0.98) if title else None,
        template="plotly_white",
        height=height,
        margin=dict(l=10, r=10, t=top, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, font=dict(size=11)),
        uirevision="keep",  # keep the user's zoom and 3-D rotation across updates
        clickmode="event",
        hovermode="closest",
    )
    if n == 2:
        fig.update_layout(**layout, xaxis_title=axis[0], yaxis_title=axis[1])
    else:
        fig.update_layout(
            **layout, scene=dict(xaxis_title=axis[0], yaxis_title=axis[1], zaxis_title=axis[2])
        )
    return fig


def save_front_figures(fronts: Sequence[dict], stem: str | Path) -> list[Path]:
    """Write STEM.html (interactive Plotly; loads plotly.js from its CDN) and STEM.png
    (matplotlib) of one or more fronts sharing reward names; returns the paths."""
    if not fronts:
        raise ValueError("no fronts to plot")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    names = list(fronts[0]["reward_names"])
    html = stem.with_suffix(".html")
    pareto_figure(names, fronts).write_html(html, include_plotlyjs="cdn")
    return [html, _save_png(fronts, names, stem.with_suffix(".png"))]


def _save_png(fronts: Sequence[dict], names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="3d" if len(names) == 3 else None)
    for k, front in enumerate(fronts):
        pts = _check_front(front, names)
        base = is_base_front(front)
        style = (
            dict(marker="*", s=160, color=BASE_COLOR)
            if base
            else dict(marker="o", s=30, color=FRONT_COLORS[k % len(FRONT_COLORS)])
        )
        ax.scatter(*pts.T, label=front_name(front), **style)
        if not base and len(names) == 2:
            order = front_order(front)
            line = pts[order][pareto_mask(pts[order])]
            ax.plot(*line.T, linestyle=":", linewidth=1, color=style["color"])
            shown = labelled(len(order))
            for i, k in enumerate(order):
                if i not in shown:
                    continue
                p, xy = front["points"][k], pts[k]
                ax.annotate(
                    weights_text(p["weights"]),
                    xy,
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_xlabel(axis_title(names[0]))
    ax.set_ylabel(axis_title(names[1]))
    if len(names) == 3:
        ax.set_zlabel(axis_title(names[2]))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
