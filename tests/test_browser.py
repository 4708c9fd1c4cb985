"""The app in a real browser: `streamlit run ui/app.py` on 127.0.0.1, driven by Playwright with
Debian's headless chromium (Playwright's own browsers are not downloaded).

Screenshots go to each test's tmp_path. To refresh docs/screenshots/ (chat.png, transcript.png,
chat-mobile.png at 390x844) run
``RAG_SAVE_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/test_browser.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from payloads import HOSTILE, HOSTILE_NAME
from servers import app_healthy, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "ui" / "app.py"
CORPUS = ROOT / "corpus"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
QUESTION = "What can we learn from Bangladesh?"
SAVE_TO = os.environ.get("RAG_SAVE_SCREENSHOTS")  # e.g. docs/screenshots; off by default

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "![x](http://example.invalid/x.png)",
    "[link](javascript:window.__pwned=1)",
    "**bold** _italic_ :red[colour] $x^2$ <b>tag</b>",
]





@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    """The app serving a store with the demo corpus and a hostile transcript."""
    from rag import ingest, load_settings

    base = tmp_path_factory.mktemp("browser")
    (base / "in").mkdir()
    (base / "in" / HOSTILE_NAME).write_text(HOSTILE, encoding="utf-8")
    settings = load_settings(store=base / "store")
    report = ingest([CORPUS, base / "in" / HOSTILE_NAME], settings, embedder=embedder)
    assert not report.failed, report.failed

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_STORE=str(settings.store), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    log = open(base / "streamlit.log", "wb")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not app_healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{(base / 'streamlit.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up:\n{(base / 'streamlit.log').read_text()}")
            time.sleep(0.2)
        yield {"url": url, "started": started, "log": base / "streamlit.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(60_000)
    p.errors = []  # uncaught page errors
    p.on("pageerror", lambda exc: p.errors.append(str(exc)))
    yield p
    context.close()


def _save(page, tmp_path: Path, name: str, *, docs: bool = False) -> Path:
    """A screenshot in the test's folder; with RAG_SAVE_SCREENSHOTS set, the docs ones there too."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    if SAVE_TO and docs:
        dest = Path(SAVE_TO) if Path(SAVE_TO).is_absolute() else ROOT / SAVE_TO
        dest.mkdir(parents=True, exist_ok=True)
        from PIL import Image  # a 128-colour palette: a third of the size, the text as sharp

        Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest / name, optimize=True)
    return path


def _ask(page, question: str):
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")


_VISIBLE = """(el) => { const r = el.getBoundingClientRect();
    const box = document.querySelector('[data-testid="stBottom"]');
    const bottom = box ? box.getBoundingClientRect().top : window.innerHeight;
    return r.top >= 0 && r.top < bottom; }"""


def _visible_in_viewport(page, locator) -> bool:
    """Is the element on screen, not hidden behind the chat box at the bottom?"""
    return page.evaluate(_VISIBLE, locator.element_handle())


def _in_view(page, selector: str) -> bool:
    return page.evaluate(
        """(sel) => { const el = document.querySelector(sel); if (!el) return false;
        const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }""",
        selector,
    )


def test_ask_open_source_card_and_transcript_view(server, page, tmp_path):
    page.goto(server["url"])
    page.get_by_test_id("stChatInputTextArea").wait_for()
    usable_after = time.monotonic() - server["started"]
    print(f"usable {usable_after:.1f}s after launch")
    assert usable_after < 60
    examples = page.locator('[class*="st-key-example-"] button')
    examples.first.wait_for()
    page.get_by_test_id("stMetric").nth(2).wait_for()  # the page may still be drawing its metrics (failed once in CI: 2 of 3)
    assert page.get_by_test_id("stMetric").count() == 3
    assert examples.count() >= 3  # questions taken from the corpus

    # an example question first (one click), then the question typed in the chat input
    example = examples.first.inner_text()
    examples.first.click()
    page.locator(".rag-question", has_text=example).wait_for()
    page.get_by_test_id("stChatMessage").nth(1).locator(".rag-answer").wait_for()
    t0 = time.monotonic()
    _ask(page, QUESTION)
    answer = page.locator(".rag-answer", has_text="Bangladesh").first
    answer.wait_for()
    print(f"answer shown {time.monotonic() - t0:.2f}s after Enter")
    text = answer.inner_text()
    quote = re.search(r"“(.+?)”", text).group(1)
    assert "Bangladesh" in quote and "[1]" in text

    # the first source card: speaker, title, question, the quoted sentence highlighted
    message = page.get_by_test_id("stChatMessage").last
    card = message.get_by_test_id("stExpander").first
    assert "[1] Amar Shah (interviewee) — NHS IMPACT" in card.locator("summary").inner_text()
    card.locator("summary").click()
    mark = card.locator(".rag-card mark.rag-mark").first
    mark.wait_for(state="visible")
    assert quote.startswith(mark.inner_text()) and len(mark.inner_text()) > 20  # the quote's first piece
    card_text = card.locator(".rag-card").inner_text()
    assert "Question (PP, interviewer):" in card_text and "NHS IMPACT: in conversation with Amar Shah" in card_text
    card.scroll_into_view_if_needed()
    _save(page, tmp_path, "chat.png", docs=True)

    # "View in transcript": the whole transcript, the passage highlighted and in view
    card.get_by_role("button", name="View in transcript").click()
    page.locator(".rag-transcript mark.rag-mark").first.wait_for(state="visible")
    assert "/transcripts?" in page.url and "p=" in page.url
    marks = page.locator(".rag-transcript mark.rag-mark").all_inner_texts()
    # the quoted sentences, each paragraph one mark, and nothing else
    assert " ".join(marks) == quote.replace(" … ", " ") and "Bangladesh" in " ".join(marks)
    page.wait_for_function(
        """() => { const el = document.querySelector('.rag-transcript mark.rag-mark'); if (!el) return false;
        const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }""",
        timeout=10_000,
    )
    assert _in_view(page, ".rag-transcript mark.rag-mark")
    assert page.locator(".rag-turn").count() == 14  # every turn, by speaker
    assert page.locator(".rag-turn.rag-cited").count() == 2  # the question and its answer
    assert page.locator(".rag-turn.rag-near").count() >= 2  # neighbouring turns for context
    _save(page, tmp_path, "transcript.png", docs=True)

    # back to the chat: the conversation is still there
    page.get_by_text("Back to the chat").click()
    page.locator(".rag-answer", has_text="Bangladesh").first.wait_for()
    assert page.get_by_test_id("stException").count() == 0
    assert page.errors == []


def test_hostile_transcript_is_shown_as_text(server, page, tmp_path):
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    page.goto(f"{server['url']}/transcripts?t={HOSTILE_NAME}")
    view = page.locator(".rag-transcript").first
    view.wait_for()
    shown = view.inner_text()
    for payload in PAYLOADS:
        assert payload in shown, payload
    assert "Eve <b>Mallory</b>" in shown
    title = page.locator(".rag-title h3").inner_text()
    assert title == 'Hostile <img src=x onerror="window.__pwned=1"> ![t](http://example.invalid/t.png)'
    _save(page, tmp_path, "hostile-transcript.png")

    # the chat: answer, card label and card body
    page.goto(server["url"])
    _ask(page, "What is in the payload file?")
    answer = page.locator(".rag-answer", has_text="payload").first
    answer.wait_for()
    assert answer.inner_text().startswith("Eve <b>Mallory</b> (EVE) says:")  # name, with the tag the transcript uses
    card = page.get_by_test_id("stExpander").first
    label = card.locator("summary").inner_text()
    assert "Eve <b>Mallory</b>" in label and '<img src=x onerror="window.__pwned=1"> ![t](http://example.invalid/t.png)' in label
    card.locator("summary").click()
    body = card.locator(".rag-card")
    body.wait_for(state="visible")
    for payload in PAYLOADS[:4]:
        assert payload in body.inner_text(), payload
    assert "<script>window.__pwned=1</script> tester" in body.inner_text()  # the speaker description
    _save(page, tmp_path, "hostile-chat.png")

    # nothing ran, nothing was fetched, nothing became markup
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.locator("img[src='x'], img[src*='example.invalid']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("b:text-is('Mallory'), b:text-is('tag'), strong:text-is('bold')").count() == 0
    assert not [u for u in requested if "example.invalid" in u]
    assert page.get_by_test_id("stException").count() == 0
    assert page.errors == []


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "mobile"])
def test_citation_markers_open_their_source(server, browser, viewport, tmp_path):
    context = browser.new_context(viewport=viewport)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["url"])
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server["url"])
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for()
        # the chat box has the focus on load: typing goes straight into it
        page.wait_for_function("() => document.activeElement && document.activeElement.getAttribute('data-testid') === 'stChatInputTextArea'",
                               timeout=30_000)
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")
        message = page.get_by_test_id("stChatMessage").last
        answer = message.locator(".rag-answer", has_text="Bangladesh")
        answer.wait_for()
        quote = re.search(r"“(.+?)”", answer.inner_text()).group(1)
        link = answer.locator("a.rag-cite").first
        assert link.inner_text() == "[1]"
        assert quote[:40] in link.get_attribute("title")  # the hover preview is the quote
        card = page.locator(f".st-key-{link.get_attribute('data-rag-card')}")  # the source card of [1]
        assert "[1] Amar Shah (interviewee)" in card.locator("summary").inner_text()
        mark = card.locator(".rag-card mark.rag-mark").first
        assert not mark.is_visible()  # collapsed until asked for
        page.evaluate("() => window.scrollTo(0, 0)")
        link.click()
        mark.wait_for(state="visible")
        assert quote.startswith(mark.inner_text()) and len(mark.inner_text()) > 20
        page.wait_for_function(
            """(el) => { const r = el.getBoundingClientRect(); return r.top < window.innerHeight && r.bottom > 0; }""",
            arg=mark.element_handle(), timeout=30_000,
        )
        mobile = viewport["width"] == 390
        page.wait_for_timeout(1200)  # the card has opened: the quote stays in view (a late re-render
        # of the page may move it for a moment: the page brings it back within its 4 s)
        page.wait_for_function(_VISIBLE, arg=mark.element_handle(), timeout=5_000)
        assert _visible_in_viewport(page, mark)
        _save(page, tmp_path, "chat-mobile.png" if mobile else "citation.png", docs=mobile)
        # keyboard: the marker takes the focus with Tab and opens its card with Enter
        card.locator("summary").click()  # close it again
        mark.wait_for(state="hidden")
        link.focus()
        assert page.evaluate("() => document.activeElement.classList.contains('rag-cite')")
        page.keyboard.press("Enter")
        mark.wait_for(state="visible")
        # the copy button copies the answer with its sources
        message.locator("button.rag-copy").click()
        page.wait_for_function("() => document.querySelector('button.rag-copy[data-copied]')")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied.startswith(answer.inner_text().split("[1]")[0].strip()[:60]) and "Sources:" in copied and quote[:40] in copied
        assert errors == []
    finally:
        context.close()


def test_a_reload_keeps_the_conversation(server, page, tmp_path):
    page.goto(server["url"])
    _ask(page, QUESTION)
    answer = page.locator(".rag-answer", has_text="Bangladesh").first
    answer.wait_for()
    shown = answer.inner_text()
    page.wait_for_url(re.compile(r"[?&]c=[0-9a-f]+"))
    assert any(c["name"] == "rag_browser" for c in page.context.cookies())  # this browser's id
    page.reload()
    again = page.locator(".rag-answer", has_text="Bangladesh").first
    again.wait_for()
    assert again.inner_text() == shown
    assert page.locator(".rag-question", has_text=QUESTION).count() == 1
    # a new chat; the first one is listed in the sidebar and opens again, also after a reload
    page.get_by_role("button", name="New chat").click()
    page.locator(".rag-answer").first.wait_for(state="detached")
    page.goto(server["url"])  # a new visit (no conversation in the address), same browser
    earlier = page.locator('[class*="st-key-conv-"] button', has_text=QUESTION).first
    earlier.wait_for()
    earlier.click()
    page.locator(".rag-answer", has_text="Bangladesh").first.wait_for()
    assert page.get_by_test_id("stException").count() == 0
    assert page.errors == []
