"""The app in a real browser: Playwright for Python driving Debian's Chromium.

    python -m pytest -q -m browser tests/test_browser.py
    RIC_SCREENSHOT=docs/screenshot.png RIC_BROWSER_ADAPTER=assets/text/adapter \\
        python -m pytest -q -m browser tests/test_browser.py   # the README's screenshot

Needs `apt-get install chromium` and `pip install playwright` (its pip package carries the
driver; no `playwright install`). By default it drives the tiny in-code model and writes its
screenshot to a temporary folder; RIC_BROWSER_ADAPTER drives a real RiC adapter instead.
"""

import os
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
        fronts = [tiny_front(names), tiny_front(names, "base", weights=False)]
    demo = app.build_demo(steer, fronts, model_label=label)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", steer, len(fronts)
    finally:
        demo.close()


@pytest.fixture
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_slider_chat_rewards_and_plot(served, page, tmp_path):
    expect = playwright.expect
    url, steer, n_fronts = served
    page.goto(url)
    page.wait_for_selector("#chatbot", timeout=60_000)
    names = [
        t.removeprefix("w-")
        for t in page.eval_on_selector_all("[id^='w-']", "els => els.map(e => e.id)")
    ]
    assert len(names) == 2

    # Move the first slider: the second follows (simplex) and the desired rewards update.
    page.locator(f"#w-{names[0]} input[type=range]").fill("0.8")
    expect(page.locator(f"#w-{names[1]} input[type=number]")).to_have_value("0.2", timeout=20_000)
    desired = "\t".join(f"{d:+.2f}" for d in steer.desired([0.8, 0.2]))
    expect(page.locator("#preferences")).to_contain_text("0.80")
    assert f"desired\t{desired}" in page.locator("#preferences").inner_text()  # table cells

    # Send a message: a reply streams in, then its rewards appear in the table and the plot.
    page.locator("#message textarea").fill("How should I spend a rainy Sunday?")
    page.locator("#message textarea").press("Enter")
    timeout = 180_000  # a real model on a busy CPU
    expect(page.locator("#replies")).to_contain_text("+0.80 +0.20", timeout=timeout)
    expect(page.locator("#preferences")).to_contain_text("last reply")
    expect(page.locator("#chatbot [data-testid=bot]")).to_have_count(1)
    legend = page.locator("#pareto .legendtext")
    expect(legend.filter(has_text="replies (1)")).to_have_count(1)
    expect(legend.filter(has_text="HV")).to_have_count(n_fronts)
    expect(legend.filter(has_text="desired")).to_have_count(1)

    out = Path(os.environ.get("RIC_SCREENSHOT") or tmp_path / "screenshot.png")
    out = out if out.is_absolute() else ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
