import numpy as np
import pytest

from ric.plotting import (
    axis_title,
    front_name,
    front_order,
    labelled,
    pareto_figure,
    save_front_figures,
    weights_text,
)


def front(names, weights, achieved, label="RiC", hv=0.5):
    return {
        "label": label,
        "reward_names": names,
        "reference_point": [-2.0] * len(names),
        "hypervolume": hv,
        "points": [
            {"weights": w, "desired": None, "achieved": a}
            for w, a in zip(weights, achieved, strict=True)
        ],
    }


NAMES2 = ["positivity", "brevity"]
RIC2 = front(NAMES2, [[0, 1], [0.5, 0.5], [1, 0]], [[-1, 1], [0, 0.5], [1, -1]], hv=1.2345)
BASE2 = front(NAMES2, [None], [[-0.2, 0.1]], label="base (no conditioning)", hv=0.25)
NAMES3 = ["relevance", "positivity", "brevity"]
RIC3 = front(NAMES3, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
BASE3 = front(NAMES3, [None], [[0.1, 0.1, 0.1]], label="base")
REPLIES = [{"achieved": [0.2, 0.3], "weights": [0.5, 0.5], "desired": [1, 1]}, {"achieved": [0, 1]}]


def by_name(fig):
    """The traces in the legend (a front's line is drawn apart, without an entry)."""
    return {t.name: t for t in fig.data if t.showlegend is not False}


def test_two_objectives_traces():
    fig = pareto_figure(NAMES2, [RIC2, BASE2], desired=[1.0, 2.0], replies=REPLIES)
    traces = by_name(fig)
    assert list(traces) == [
        "RiC front, HV 1.234",
        "base (no conditioning), HV 0.250",
        "desired",
        "replies (2)",
    ]
    assert all(t.type == "scatter" for t in fig.data)
    (line,) = fig.layout.shapes  # the front's line: (0, 0.5) is not dominated
    assert line.path == "M -1.0,1.0 L 0.0,0.5 L 1.0,-1.0"
    ric = traces["RiC front, HV 1.234"]
    assert list(ric.x) == [-1, 0, 1] and list(ric.text) == ["w=(0, 1)", "w=(0.5, 0.5)", "w=(1, 0)"]
    assert list(traces["base (no conditioning), HV 0.250"].y) == [0.1]
    assert (traces["desired"].x, traces["desired"].y) == ((1.0,), (2.0,))
    assert list(traces["replies (2)"].y) == [0.3, 1.0]
    assert list(traces["replies (2)"].text) == ["1", "2"]
    assert list(ric.customdata[1]) == [0.5, 0.5]  # what a click on the point reads
    assert fig.layout.xaxis.title.text == "positivity: more positive \u2192"
    assert fig.layout.legend.y == 1.0 and fig.layout.legend.yanchor == "bottom"  # above the plot


def test_three_objectives_is_a_3d_scatter():
    replies = [{"achieved": [0.1, 0.2, 0.3]}]
    fig = pareto_figure(NAMES3, [RIC3, BASE3], desired=[1, 1, 1], replies=replies)
    assert [t.name for t in fig.data] == [
        "RiC front, HV 0.500",
        "base, HV 0.500",
        "desired",
        "replies (1)",
    ]
    assert all(t.type == "scatter3d" for t in fig.data)
    assert list(fig.data[0].z) == [0, 0, 1]
    assert fig.layout.scene.zaxis.title.text == "brevity: shorter \u2192"


def test_empty_figure_and_optional_parts():
    assert len(pareto_figure(NAMES2).data) == 0
    assert [t.name for t in pareto_figure(NAMES2, desired=[0, 0]).data] == ["desired"]


def test_bad_input():
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        pareto_figure(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="has rewards"):
        pareto_figure(["relevance", "brevity"], [RIC2])
    with pytest.raises(ValueError, match="expected 2"):
        pareto_figure(NAMES2, desired=[1, 2, 3])


def test_labels():
    assert weights_text([1 / 3, 2 / 3]) == "w=(0.33, 0.67)" and weights_text(None) == ""
    assert front_name({"label": "x", "points": [{"weights": [1, 0]}]}) == "x front"


@pytest.mark.parametrize("fronts", [[RIC2, BASE2], [RIC3]])
def test_save_front_figures(tmp_path, fronts):
    html, png = save_front_figures(fronts, tmp_path / "out" / "front")
    assert html.name == "front.html" and "plotly" in html.read_text()
    assert png.name == "front.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_front_is_joined_in_reward_order_with_few_labels():
    """A sweep whose achieved rewards are not monotone in the weights: the line follows the
    first reward, and of 11 points only the two ends and the middle carry a label."""
    xs = [0.0, 0.2, 0.1, 0.4, 0.3, 0.6, 0.5, 0.8, 0.7, 1.0, 0.9]
    weights = [[k / 10, 1 - k / 10] for k in range(11)]
    sweep = front(NAMES2, weights, [[x, 1 - x] for x in xs])
    assert front_order(sweep).tolist() == np.argsort(xs).tolist()
    trace = pareto_figure(NAMES2, [sweep]).data[0]
    assert list(trace.x) == sorted(xs)
    assert [t for t in trace.text if t] == ["w=(0, 1)", "w=(0.6, 0.4)", "w=(0.9, 0.1)"]
    assert len(trace.hovertext) == 11 and "w=(0.2, 0.8)" in trace.hovertext[1]
    assert list(trace.textposition[:2]) == ["top right", "top center"]
    # The line joins only the non-dominated points: here (x, 1 - x) are all non-dominated,
    # so all of them, left to right; a dominated point is left out.
    (line,) = pareto_figure(NAMES2, [sweep]).layout.shapes
    assert line.path.count("L") == 10
    sweep["points"].append({"weights": [0.5, 0.5], "achieved": [0.0, 0.0]})
    (line,) = pareto_figure(NAMES2, [sweep]).layout.shapes
    assert line.path.count("L") == 10 and " 0.0,0.0" not in line.path  # (0, 1) dominates it


def test_labelled_and_axis_titles():
    assert labelled(2) == {0, 1} and labelled(11) == {0, 5, 10} and labelled(5) == {0, 2, 4}
    assert axis_title("brevity") == "brevity: shorter \u2192"
    assert axis_title("novelty") == "novelty: higher novelty \u2192"
