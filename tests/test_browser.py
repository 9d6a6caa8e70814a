"""The app in a real browser: Playwright for Python driving Debian's Chromium.

    python -m pytest -q -m browser tests/test_browser.py
    RIC_SCREENSHOT_DIR=runs/screens python -m pytest -q -m browser tests/test_browser.py
    RIC_SCREENSHOT=docs/screenshot.png RIC_BROWSER_ADAPTER=assets/text/adapter \\
        python -m pytest -q -m browser tests/test_browser.py -k whole   # the README's screenshot

Needs `apt-get install chromium` and `pip install playwright` (its pip package carries the
driver; no `playwright install`). By default it drives the tiny in-code models (2 and 3
rewards) and saves each test's screenshots (chat.png, empty_input.png, front_click.png,
ternary.png, phone.png) in a temporary folder or RIC_SCREENSHOT_DIR; RIC_BROWSER_ADAPTER drives
a real RiC adapter instead.
"""

import os
import re
from pathlib import Path

import pytest
from test_app import ROOT, free_port, load_app_module, tiny_front

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]
playwright = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing (pip install playwright)"
)

app = load_app_module()


def browser_front(names):
    """A front whose two points have different weights, so a click shows which was hit."""
    front = tiny_front(names)
    for p, w in zip(front["points"], ([0.9, 0.1], [0.2, 0.8]), strict=True):
        p["weights"] = w
    return front


def serve(demo):
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def served(tiny_adapter_dir):
    """(url, model, number of fronts drawn) of an app launched for this module."""
    from ric.steering import SteerableModel

    adapter = os.environ.get("RIC_BROWSER_ADAPTER")
    if adapter:
        steer, label = app.load_steerable(adapter=adapter)
        fronts = app.load_fronts([app.FRONT, app.OFFLINE_FRONT, app.BASE_FRONT], steer.reward_names)
    else:
        steer, label = SteerableModel.load(tiny_adapter_dir, dtype="float32"), "tiny test model"
        names = steer.reward_names
        base = tiny_front(names, "base", weights=False)
        base["points"] = base["points"][:1]
        base["points"][0]["achieved"] = [-0.2, -0.1]  # apart from the front's points
        fronts = [browser_front(names), base]
    demo = app.build_demo(steer, fronts, model_label=label)
    try:
        yield serve(demo), steer, len(fronts)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def served3(tmp_path_factory, tiny_model_dir):
    """A 3-reward tiny model: the triangle picker."""
    from conftest import make_tiny_adapter

    from ric.steering import SteerableModel

    names = ("positivity", "brevity", "harmlessness")
    folder = make_tiny_adapter(tmp_path_factory.mktemp("tiny3"), tiny_model_dir, names)
    steer = SteerableModel.load(folder, dtype="float32")
    demo = app.build_demo(steer, [tiny_front(names)], model_label="tiny 3-reward model")
    try:
        yield serve(demo), steer
    finally:
        demo.close()


@pytest.fixture
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    return browser.new_page(viewport={"width": 1400, "height": 1000})


@pytest.fixture
def shots(tmp_path):
    """Where each test saves its screenshots: RIC_SCREENSHOT_DIR, else a temporary folder."""
    folder = Path(os.environ.get("RIC_SCREENSHOT_DIR") or tmp_path)
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def slider_value(page, name: str) -> float:
    return float(page.locator(f"#w-{name} input[type=number]").input_value())


def set_sliders(page, values: dict, table: str) -> None:
    """Drag sliders to `values` until the preference table matches the regex `table`. On a
    busy machine a slider event sent while the page is still settling can be lost: try again."""
    for attempt in range(3):
        for name, value in values.items():
            page.locator(f"#w-{name} input[type=range]").fill(str(value))
        try:
            playwright.expect(page.locator("#preferences")).to_contain_text(
                re.compile(table), timeout=10_000
            )
            return
        except AssertionError:
            if attempt == 2:
                raise


def open_app(page, url: str) -> list[str]:
    """Load the app; the reward names, from the sliders."""
    page.goto(url)
    page.wait_for_selector("#chatbot", timeout=60_000)
    return [
        t.removeprefix("w-")
        for t in page.eval_on_selector_all("[id^='w-']", "els => els.map(e => e.id)")
    ]


def no_error_pills(page) -> None:
    """gradio marks each output of a failed event "Error" and pops a toast: neither here."""
    expect = playwright.expect
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("[data-testid=toast-body]")).to_have_count(0)


TIMEOUT = 180_000  # a real model on a busy CPU


def shown(text: str) -> str:
    """A reply's words as a reader sees them in either widget: the chat renders markdown (the
    tiny model's random "\\_" shows as "_", "*a*" as italics), the replies table shows the raw
    text, so markdown's marks and the spacing are set aside."""
    return " ".join(re.sub(r"[\\`*_~#>|]", "", text).split())


def test_chat_shows_whole_replies_and_the_front(served, page, shots):
    expect = playwright.expect
    url, steer, n_fronts = served
    names = open_app(page, url)
    assert len(names) == 2

    # Setting one slider to 0 moves no other slider; the table shows the proportions.
    page.locator(f"#w-{names[0]} input[type=range]").fill("0")
    expect(page.locator("#preferences")).to_contain_text("1.00", timeout=20_000)
    assert slider_value(page, names[1]) == 0.5  # where it started
    set_sliders(page, {names[0]: 0.8, names[1]: 0.2}, r"weight\s*0\.80\s*0\.20")
    desired = "\t".join(f"{d:+.2f}" for d in steer.desired([0.8, 0.2], "typical"))
    assert f"desired\t{desired}" in page.locator("#preferences").inner_text()

    # A reply streams in, then appears whole in the replies table, with its rewards.
    page.locator("#message textarea").fill("How should I spend a rainy Sunday?")
    page.locator("#message textarea").press("Enter")
    expect(page.locator("#replies")).to_contain_text("+0.80 +0.20", timeout=TIMEOUT)
    expect(page.locator("#preferences")).to_contain_text("last reply")
    bot = page.locator("#chatbot [data-testid=bot]")
    expect(bot).to_have_count(1)
    reply = page.locator("#replies td.text").first
    expect(reply).to_be_visible()
    assert shown(reply.inner_text()) == shown(bot.inner_text())
    box = reply.bounding_box()
    assert reply.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # nothing cut at the edge
    assert box["width"] > 150
    legend = page.locator("#pareto .legendtext")
    expect(legend.filter(has_text="replies (1)")).to_have_count(1)
    expect(legend.filter(has_text="HV")).to_have_count(n_fronts)
    expect(legend.filter(has_text="desired")).to_have_count(1)
    shoot(page, shots / "chat.png")
    if os.environ.get("RIC_SCREENSHOT"):  # the README's screenshot
        out = Path(os.environ["RIC_SCREENSHOT"])
        shoot(page, out if out.is_absolute() else ROOT / out)


def test_empty_input_gives_one_message_and_no_error_pills(served, page, shots):
    expect = playwright.expect
    url, _, _ = served
    open_app(page, url)
    expect(page.locator("#send")).to_be_disabled()
    page.locator("#message textarea").fill("   ")
    expect(page.locator("#send")).to_be_disabled()
    page.locator("#message textarea").press("Enter")
    expect(page.locator("#notices")).to_contain_text("box is empty", timeout=20_000)
    no_error_pills(page)
    page.locator("#message textarea").fill("hi")
    expect(page.locator("#send")).to_be_enabled(timeout=20_000)
    shoot(page, shots / "empty_input.png")


def test_a_click_on_a_front_point_replies_there(served, page, shots):
    expect = playwright.expect
    url, steer, _ = served
    if os.environ.get("RIC_BROWSER_ADAPTER"):
        pytest.skip("the click targets the test front's known weights")
    names = open_app(page, url)
    page.locator("#message textarea").fill("Tell me about cats.")
    page.locator("#message textarea").press("Enter")
    expect(page.locator("#replies td.text")).to_have_count(1, timeout=TIMEOUT)

    # The front's first point in reward order is x=0.1 (weights 0.9, 0.1); the plot has been
    # redrawn with the reply, and the click listener is on the new one.
    legend = page.locator("#pareto .legendtext").filter(has_text="replies (1)")
    playwright.expect(legend).to_have_count(1, timeout=20_000)
    page.wait_for_function(
        "() => { const gd = document.querySelector('#pareto .js-plotly-plot');"
        " return gd && gd._ev && gd._ricHooked === gd._ev; }",
        timeout=20_000,
    )
    point = page.locator("#pareto .scatterlayer .trace").first.locator(".points path").first
    expect(point).to_be_visible(timeout=20_000)
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    expect(page.locator(f"#w-{names[0]} input[type=number]")).to_have_value("0.9", timeout=20_000)
    assert slider_value(page, names[1]) == pytest.approx(0.1)
    expect(page.locator("#replies td.text")).to_have_count(2, timeout=TIMEOUT)
    expect(page.locator("#replies")).to_contain_text("+0.90 +0.10")
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(1)  # answered again
    no_error_pills(page)
    shoot(page, shots / "front_click.png")


def test_ternary_picker_sets_three_weights_in_one_drag(served3, page, shots):
    expect = playwright.expect
    url, steer = served3
    names = open_app(page, url)
    assert len(names) == 3
    svg = page.locator("#ternary svg")
    expect(svg).to_be_visible(timeout=20_000)
    dot = page.locator("#ternary .dot")
    start = dot.bounding_box()
    top = page.locator("#ternary polygon").bounding_box()
    # Drag the dot from the centre to near the top corner (the first reward).
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(top["x"] + top["width"] / 2, top["y"] + top["height"] * 0.1, steps=8)
    page.mouse.up()
    expect(page.locator("#preferences")).not_to_contain_text("0.33 | 0.33", timeout=20_000)
    page.wait_for_function(
        f"() => Number(document.querySelector('#w-{names[0]} input[type=number]').value) > 0.8",
        timeout=20_000,
    )
    w = [slider_value(page, n) for n in names]
    assert w[0] > 0.8 and sum(w) == pytest.approx(1.0, abs=0.02)
    # The dot stays where it was dropped, near the top corner.
    end, tri = dot.bounding_box(), page.locator("#ternary polygon").bounding_box()
    assert end["y"] < tri["y"] + 0.25 * tri["height"]
    expect(page.locator("#ternary .readout")).to_contain_text(names[0])
    no_error_pills(page)
    shoot(page, shots / "ternary.png")


def test_phone_width_layout(served, browser, shots):
    expect = playwright.expect
    url, _, _ = served
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    open_app(page, url)
    for elem in ("#message", "#send", "#pareto .main-svg", "#preferences"):
        expect(page.locator(elem).first).to_be_visible(timeout=20_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the page is {width} px wide on a 390 px phone"
    shoot(page, shots / "phone.png")
