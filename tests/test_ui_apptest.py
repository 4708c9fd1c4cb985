"""The Streamlit app under Streamlit's AppTest: real engine, real stores, no browser.

Covers: asking (answer, inline markers, source cards with the quote marked), example questions
from the corpus, follow-ups, filters, abstention, the transcript view, feedback, the Markdown
export, uploads, empty / missing / unreachable stores, separate sessions, and transcript text
with HTML / script / Markdown payloads staying inert.
"""

from __future__ import annotations

import html
import json
import re
import socket
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "ui" / "app.py")
CORPUS = ROOT / "corpus"
REFUSAL = "I couldn't find this in the transcripts."
BANGLADESH = "What can we learn from Bangladesh?"


sys.path.insert(0, str(ROOT / "ui"))
import _shared  # noqa: E402  (the app's helpers, tested directly below)
from payloads import HOSTILE, HOSTILE_NAME


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory, embedder):
    """The demo corpus plus a transcript full of HTML / script / Markdown payloads."""
    from rag import ingest, load_settings

    folder = tmp_path_factory.mktemp("hostile-in")
    (folder / HOSTILE_NAME).write_text(HOSTILE, encoding="utf-8")
    s = load_settings(store=tmp_path_factory.mktemp("hostile") / "store")
    report = ingest([CORPUS, folder / HOSTILE_NAME], s, embedder=embedder)
    assert not report.failed, report.failed
    return s


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory, embedder):
    """A store that exists but holds no transcript (its only file failed)."""
    from rag import ingest, load_settings

    folder = tmp_path_factory.mktemp("empty-in")
    (folder / "blank.txt").write_text("   \n", encoding="utf-8")
    s = load_settings(store=tmp_path_factory.mktemp("empty") / "store")
    report = ingest([folder / "blank.txt"], s, embedder=embedder)
    assert [f.status for f in report.files] == ["failed"]
    assert (s.store / "chroma.sqlite3").exists()
    return s


def start(monkeypatch, settings=None, **env) -> AppTest:
    if settings is not None:
        monkeypatch.setenv("RAG_STORE", str(settings.store))
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="chat_input").set_value(question).run()
    assert not at.exception, at.exception
    return at


def bodies(at: AppTest) -> list[str]:
    """HTML shown by st.html, minus our style sheet."""
    return [h.proto.body for h in at.html if not h.proto.body.lstrip().startswith("<style>")]


def chat(at: AppTest) -> list[dict]:
    return at.session_state["chat"]


def answer_bodies(at: AppTest) -> list[str]:
    return [b for b in bodies(at) if b.startswith('<div class="rag-answer">')]


def view_buttons(at: AppTest) -> list:
    return [b for b in at.button if (b.key or "").startswith("view-")]


# --------------------------------------------------------------------------- the chat


def test_first_screen_shows_counts_and_examples_from_the_corpus(monkeypatch, seed_store, embedder):
    from rag import Engine

    engine = Engine(seed_store, embedder=embedder)
    passages = engine.index().passages
    infos = engine.transcripts()
    whole = []  # the first screen never lists every passage (a large archive would wait for it)
    listing = Engine.passages
    monkeypatch.setattr(Engine, "passages", lambda self, transcript=None: whole.append(transcript is None) or listing(self, transcript))
    at = start(monkeypatch, seed_store)
    assert whole and not any(whole)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Transcripts": str(len(infos)),
        "Speakers": str(len({s.name for i in infos.values() for s in i.speakers})),
        "Passages": str(len(passages)),
    }
    assert any("NHS IMPACT" in b for b in bodies(at))  # what is loaded, by title
    examples = [b for b in at.button if (b.key or "").startswith("example-")]
    assert 3 <= len(examples) <= 4
    questions = [p.question for p in passages if p.question]
    for b in examples:
        text = b.label.replace("\\", "")
        assert text.endswith("?") and len(text.split()) <= 20
        stem = text.rstrip("?")
        assert any(stem in q for q in questions), text  # taken from the interviewer's questions
    assert chat(at) == []


@pytest.mark.parametrize("question, expected", [
    ("Is that a yes or a no?", []),
    ("Is that correct, yes or no?", []),
    ("Is that what the committee heard from teachers?", []),  # points back
    ("And so?", []),
    ("What did the health board do about waiting lists in the north?", ["What did the health board do about waiting lists in the north?"]),
    ("Thank you. What can other countries teach the NHS about improvement?", ["What can other countries teach the NHS about improvement?"]),
])
def test_example_questions_stand_on_their_own(question, expected):
    assert _shared.example_candidates(question) == expected


def test_hearing_examples_are_questions_with_a_topic(monkeypatch, dev_store):
    at = start(monkeypatch, dev_store)
    examples = [b.label for b in at.button if (b.key or "").startswith("example-")]
    assert len(examples) >= 3
    for q in examples:
        assert "yes or" not in q.lower() and _shared.topic_words(q) >= 3, q


def test_the_wait_is_described_truthfully():
    from rag import WarmUp

    status = WarmUp()
    assert _shared.busy_message(status).startswith("Opening the index and loading the model…")
    status.passages = 7957
    assert _shared.busy_message(status).startswith("Loading 7,957 passages… (")
    status.finished = status.started + 4.25
    status.done.set()
    assert _shared.busy_message(status) == "Searching the transcripts…"
    assert status.message == "Ready: 7,957 passages loaded in 4.2 s."
    assert _shared.busy_message(None) == "Searching the transcripts…"


def test_a_refusal_under_a_filter_suggests_clearing_it(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, "What is the capital of France?")
    assert chat(at)[-1]["answer"].abstained and not any("filters" in i.value for i in at.info)
    at.selectbox(key="f_speaker").set_value("Amar Shah").run()
    ask(at, "What is the capital of France?")
    assert chat(at)[-1]["answer"].abstained
    shown = [i.value.replace("\\", "") for i in at.info]  # the Markdown source, escapes removed
    assert any("speaker = Amar Shah" in t and "clear them" in t for t in shown)


def test_a_long_paste_gets_a_message_not_silence(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, "What can we learn from Bangladesh? " + "x" * 5200)
    assert any("characters long" in e.value and "2,000" in e.value for e in at.error)
    assert chat(at) == []  # not asked
    ask(at, "What can we learn from Bangladesh?")  # a short one goes through
    assert len(chat(at)) == 1 and not at.error


def test_ask_shows_answer_with_markers_and_source_cards(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, BANGLADESH)
    [msg] = chat(at)
    a = msg["answer"]
    assert not a.abstained and a.citations
    [shown] = answer_bodies(at)
    assert "Bangladesh" in shown
    # each marker links to its card, with the quote as its hover text
    c1 = a.citations[0]
    link = re.search(rf'<a class="rag-cite" href="#card-{msg["id"]}-1" data-rag-card="card-{msg["id"]}-1" title="([^"]*)"', shown)
    assert link and html.unescape(link.group(1)) == f"Amar Shah (interviewee): “{c1.quote}”"
    assert at.expander(key=f"card-{msg['id']}-1")  # the card it opens
    copy = next(b for b in bodies(at) if b.startswith("<button class=\"rag-copy\"") or b.startswith("<button type=\"button\" class=\"rag-copy\""))
    assert a.text in html.unescape(copy) and c1.quote in html.unescape(copy)
    cards = [e for e in at.expander if (e.proto.label or "").startswith("\\[1\\]")]
    assert cards and "Amar Shah" in cards[0].proto.label and "interviewee" in cards[0].proto.label
    card = next(b for b in bodies(at) if "class=\"rag-card\"" in b)
    marked = re.findall(r'<mark class="rag-mark">(.*?)</mark>', card)
    assert marked and "Bangladesh" in " ".join(marked)
    # the quote is highlighted whole: its pieces ("…" between them), each paragraph one mark
    assert " ".join(marked).count(a.citations[0].quote.replace(" … ", " ")) == 1
    assert "Question (PP, interviewer):" in card  # the question asked, and by whom
    assert "NHS IMPACT: in conversation with Amar Shah" in card
    assert len(view_buttons(at)) == len(a.citations)
    assert any(re.match(r"\d+ ms · 5 passages", c.value) for c in at.caption)
    assert not at.download_button(key="download_chat").proto.disabled
    # the welcome screen gives way to the conversation
    assert not [b for b in at.button if (b.key or "").startswith("example-")]


def test_who_is_answer_is_shown_from_the_speaker_list(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, "Who is the interviewer?")
    [msg] = chat(at)
    a = msg["answer"]
    assert not a.abstained
    [shown] = answer_bodies(at)
    assert "PP (Interviewer for the Q community" in html.unescape(shown)
    assert len(view_buttons(at)) == len(a.citations)  # a card per quote, none when nothing is quoted


def test_whole_interview_buttons_ask_for_its_overview_and_key_points(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    labels = [b.label for b in at.button if (b.key or "").startswith("whole-")]
    assert labels == ["What is this interview about?", "What are the key takeaways?", "Who are the speakers?"]
    at.button(key="whole-0").click().run()
    assert not at.exception
    [msg] = chat(at)
    a = msg["answer"]
    assert msg["question"] == "What is this interview about?" and not a.abstained
    assert a.citations[0].passage.kind == "introduction"
    assert len(view_buttons(at)) == len(a.citations)  # a card per quote
    assert "The questions asked" in html.unescape(answer_bodies(at)[0])


def test_no_whole_interview_buttons_over_many_transcripts(monkeypatch, dev_store):
    at = start(monkeypatch, dev_store)  # six hearings: "this interview" would name none of them
    assert not [b for b in at.button if (b.key or "").startswith("whole-")]


def test_example_button_asks_its_question(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    button = next(b for b in at.button if (b.key or "").startswith("example-"))
    question = button.label.replace("\\", "")
    button.click().run()
    assert not at.exception
    [msg] = chat(at)
    assert msg["question"] == question and msg["answer"] is not None


def test_follow_up_is_answered_in_context(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, BANGLADESH)
    ask(at, "and Uganda?")
    first, second = chat(at)
    assert second["answer"].resolved_question == "What can we learn from Uganda?"
    assert any(c.value.startswith("Understood as:") and "Uganda" in c.value for c in at.caption)
    assert "Uganda" in second["answer"].text
    assert len(answer_bodies(at)) == 2  # the history stays on screen


def test_filters_restrict_what_is_searched(monkeypatch, hostile_store):
    at = start(monkeypatch, hostile_store)
    at.selectbox(key="f_transcript").set_value(HOSTILE_NAME).run()
    # the interviewer (Quinn) asks and can be chosen too
    assert at.selectbox(key="f_speaker").options == ["Any speaker", "Eve <b>Mallory</b>", "Quinn"]
    ask(at, BANGLADESH)
    a = chat(at)[-1]["answer"]
    assert chat(at)[-1]["filters"] == {"transcript": HOSTILE_NAME}
    assert a.retrieved and {r.passage.transcript for r in a.retrieved} == {HOSTILE_NAME}

    at.selectbox(key="f_transcript").set_value("").run()
    at.selectbox(key="f_speaker").set_value("Amar Shah").run()
    at.selectbox(key="f_role").set_value("interviewee").run()
    at.slider(key="f_k").set_value(3).run()
    ask(at, "What did they say about the payload?")
    a = chat(at)[-1]["answer"]
    assert chat(at)[-1]["filters"] == {"speaker": "Amar Shah", "role": "interviewee"}
    assert chat(at)[-1]["k"] == 3 and len(a.retrieved) == 3
    assert {r.passage.speaker for r in a.retrieved} == {"Amar Shah"}
    assert {r.passage.role for r in a.retrieved} == {"interviewee"}


def test_abstention_shows_the_fixed_phrase_and_possibly_related(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, "What is the recipe for chocolate cake?")
    a = chat(at)[0]["answer"]
    assert a.abstained and not a.citations
    [shown] = answer_bodies(at)
    assert shown == '<div class="rag-answer">' + REFUSAL.replace("'", "&#x27;") + "</div>"
    assert any("Possibly related passages" in c.value for c in at.caption)
    related = [e for e in at.expander if e.proto.label.startswith("Possibly related")]
    assert 1 <= len(related) <= 3


def test_new_chat_clears_the_conversation(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, BANGLADESH)
    assert len(chat(at)) == 1
    at.button(key="new_chat").click().run()
    assert not at.exception and chat(at) == []
    assert [m.label for m in at.metric] == ["Transcripts", "Speakers", "Passages"]


def test_feedback_is_appended_to_the_jsonl_file(monkeypatch, seed_store, tmp_path):
    fb = tmp_path / "feedback.jsonl"
    at = start(monkeypatch, seed_store, RAG_FEEDBACK_FILE=fb)
    ask(at, BANGLADESH)
    ask(at, "What is the recipe for chocolate cake?")
    at.feedback(key=f"fb-{chat(at)[0]['id']}").set_value(1).run()
    at.feedback(key=f"fb-{chat(at)[1]['id']}").set_value(0).run()
    assert not at.exception
    up, down = [json.loads(line) for line in fb.read_text(encoding="utf-8").splitlines()]
    assert up["rating"] == "up" and up["question"] == BANGLADESH and "Bangladesh" in up["answer"]
    assert up["citations"] and "Bangladesh" in up["citations"][0]["quote"] and up["citations"][0]["chunk_id"]
    assert re.match(r"\d{4}-\d\d-\d\dT", up["timestamp"])
    assert down["rating"] == "down" and down["answer"] == REFUSAL and down["citations"] == []


def test_conversation_downloads_as_markdown(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, BANGLADESH)
    ask(at, "and Uganda?")
    a = chat(at)[0]["answer"]
    from rag import Engine

    md = _shared.conversation_markdown(chat(at), Engine(seed_store).transcripts())
    assert md.startswith("# Conversation")
    assert f"## 1. {BANGLADESH}" in md and "## 2. and Uganda?" in md
    assert f"Quote: “{a.citations[0].quote}”" in md
    # every [n] of an answer is a link to its own source in the list below it
    assert a.text.replace("[1]", "[[1]](#source-1-1)") in md.replace("[[2]](#source-1-2)", "[2]").replace("[[3]](#source-1-3)", "[3]")
    assert '- <a id="source-1-1"></a>[1] Amar Shah (interviewee) — NHS IMPACT: in conversation with Amar Shah' in md
    for c in a.citations:
        assert md.count(f"(#source-1-{c.n})") == a.text.count(f"[{c.n}]") and md.count(f'<a id="source-1-{c.n}">') == 1
    assert "Question (PP): " in md and "Understood as: What can we learn from Uganda?" in md


def test_two_sessions_keep_separate_histories_and_share_one_engine(monkeypatch, seed_store):
    import rag._engine

    made = []
    original = rag._engine.Engine.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(rag._engine.Engine, "__init__", counting)
    env = {"RAG_K": 4}  # settings no other test uses: a fresh cache entry
    one = start(monkeypatch, seed_store, **env)
    two = start(monkeypatch, seed_store, **env)
    ask(one, BANGLADESH)
    ask(two, "What is the recipe for chocolate cake?")
    ask(one, "and Uganda?")
    assert [m["question"] for m in chat(one)] == [BANGLADESH, "and Uganda?"]
    assert [m["question"] for m in chat(two)] == ["What is the recipe for chocolate cake?"]
    assert chat(one)[1]["answer"].resolved_question == "What can we learn from Uganda?"
    assert len(made) == 1  # the model and store are loaded once per process


# --------------------------------------------------------------------------- transcript view


def test_view_in_transcript_highlights_the_cited_passage(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    ask(at, BANGLADESH)
    c = chat(at)[0]["answer"].citations[0]
    view_buttons(at)[0].click().run()
    assert not at.exception
    assert at.query_params["p"] == [c.passage.chunk_id] or at.query_params["p"] == c.passage.chunk_id
    page = "".join(bodies(at))
    assert 'class="rag-transcript"' in page
    marked = re.findall(r'<mark class="rag-mark">(.*?)</mark>', page)
    assert " ".join(marked) == c.quote.replace(" … ", " ")  # exactly the quoted sentences, no more
    # the whole transcript by speaker turns: every turn, the cited ones marked, neighbours too
    assert page.count('class="rag-turn') == 14 and "not indexed" not in page
    first, last = c.passage.turns
    for i in range(first, last + 1):
        assert re.search(rf'class="rag-turn rag-cited" id="rag-turn-{i}"', page)
    assert re.search(rf'class="rag-turn rag-near" id="rag-turn-{first - 1}"', page)
    anchor = next(b for b in bodies(at) if b.startswith("<script>"))
    assert re.search(r"getElementById\('rag-turn-\d+'\)", anchor)
    # neighbours only
    at.toggle(key="tv_context").set_value(True).run()
    assert "".join(bodies(at)).count('class="rag-turn') == len([i for i in range(first - 2, last + 3) if 0 <= i < 14])


def test_transcripts_page_browses_and_searches(monkeypatch, hostile_store):
    at = start(monkeypatch, hostile_store)
    at.switch_page("pages/transcripts.py").run()
    assert not at.exception
    at.selectbox(key="tv_transcript").set_value("nhs-impact-amar-shah-interview.txt").run()
    at.text_input(key="tv_search").input("Bangladesh").run()
    assert not at.exception
    page = "".join(bodies(at))
    assert page.count('class="rag-turn') == 1
    assert '<mark class="rag-hit">Bangladesh</mark>' in page
    assert any("1 turn(s) contain" in c.value for c in at.caption)


# --------------------------------------------------------------------------- safety


def test_hostile_transcript_text_is_shown_literally(monkeypatch, hostile_store):
    at = start(monkeypatch, hostile_store)
    ask(at, "What is in the payload file?")
    a = chat(at)[0]["answer"]
    assert a.citations and a.citations[0].passage.transcript == HOSTILE_NAME
    assert _shared.PAGE_SCRIPT in bodies(at)  # the page's own script (links, copy, focus), no transcript text
    ours = [b for b in bodies(at) if b == _shared.PAGE_SCRIPT or re.fullmatch(
        r"<script>document\.cookie='rag_browser=[0-9a-f]{32}; path=/; max-age=31536000; SameSite=Lax';</script>", b)]
    shown = "".join(b for b in bodies(at) if b not in ours)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in shown
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in shown
    assert "![x](http://example.invalid/x.png)" in shown  # st.html: no Markdown, shown as typed
    assert "Eve &lt;b&gt;Mallory&lt;/b&gt;" in shown
    for raw in ("<script", "<img", "<b>Mallory", "<b>tag", 'onerror="'):
        assert raw not in shown
    # Markdown-rendered places (labels, captions) get every special character escaped
    labels = [e.proto.label for e in at.expander] + [b.label for b in at.button] + [c.value for c in at.caption]
    for label in labels:
        assert not re.search(r"(?<!\\)[<>\[\]!]", label), label
    # ... and the transcript view too
    view_buttons(at)[0].click().run()
    assert not at.exception
    page = "".join(b for b in bodies(at) if not b.startswith("<script>"))
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page and "**bold** _italic_ :red[colour] $x^2$" in page
    for raw in ("<script", "<img", "<b>Mallory", "<b>tag"):
        assert raw not in page
    scripts = [b for b in bodies(at) if "<script" in b]
    assert len(scripts) == 1 and "window.__pwned" not in scripts[0]  # only our scroll helper


def test_safe_text_helpers():
    assert _shared.esc('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert _shared.text_html("a\nb\r\nc") == "a<br>b<br>c"
    assert _shared.md_escape("![x](http://e.invalid/x.png) **b** :smile: <i>") == (
        r"\!\[x\]\(http\://e\.invalid/x\.png\) \*\*b\*\* \:smile\: \<i\>"
    )
    assert _shared.answer_html("<b>x</b> [1]") == '&lt;b&gt;x&lt;/b&gt; <sup class="rag-cite">[1]</sup>'
    html = _shared.marked_html("ab<c>de", [(1, 6, "cited"), (2, 5, "mark")])
    assert html == 'a<span class="rag-cited-text">b</span><mark class="rag-mark">&lt;c&gt;</mark><span class="rag-cited-text">d</span>e'


@pytest.mark.parametrize(
    "name, expected",
    [
        ("interview.txt", "interview.txt"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        ("/abs/path/to/Talk.VTT", "Talk.vtt"),
        ("..", "upload"),
        ("...txt", "upload.txt"),
        (".hidden.srt", "hidden.srt"),
        ("a..b..c.json", "a.b.c.json"),
        ('evil<script>"name".txt', "evil_script_name.txt"),
        ("entrevista Zoë 名前.txt", "entrevista Zoë 名前.txt"),
        ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ("null\x00byte.txt", "nullbyte.txt"),
        ("no extension", "no extension"),
        ("x" * 300 + ".txt", "x" * 100 + ".txt"),
    ],
)
def test_upload_file_names_are_sanitized(name, expected):
    got = _shared.safe_filename(name)
    assert got == expected
    assert "/" not in got and "\\" not in got and ".." not in got and not got.startswith(".")


# --------------------------------------------------------------------------- uploads


def test_upload_page_checks_saves_and_ingests(monkeypatch, tmp_path):
    store = tmp_path / "store"
    at = start(monkeypatch, RAG_STORE=store, RAG_UPLOAD_MAX_MB=0.05)
    assert any("No transcripts yet" in i.value for i in at.info)  # missing store: the fix, no traceback
    at.switch_page("pages/upload.py").run()
    assert not at.exception
    seed = next(CORPUS.glob("*.txt")).read_bytes()
    vtt = b"WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Ann>What did you find in the field?\n\n00:00:05.000 --> 00:00:09.000\n<v Bo>We found that the wells were dry in the north.\n"
    at.file_uploader[0].set_value([
        ("../../sneaky name<>.txt", seed, "text/plain"),
        ("talk.vtt", vtt, "text/vtt"),
        ("huge.txt", b"A: " + b"word " * 20000, "text/plain"),
        ("binary.md", b"\x00\x01\x02" * 100, "text/markdown"),
        ("same talk.vtt", vtt, "text/vtt"),  # the same file under another name
    ]).run()
    assert not at.exception
    at.button(key="ingest").click().run()
    assert not at.exception
    rows = at.dataframe[0].value.to_dict("records")
    by_file = {r["file"]: r for r in rows}
    assert by_file["sneaky name.txt"]["status"] == "added" and int(by_file["sneaky name.txt"]["passages"]) > 5
    assert by_file["talk.vtt"]["status"] == "added"
    assert by_file["huge.txt"]["status"] == "rejected" and "limit" in by_file["huge.txt"]["reason"]
    assert by_file["binary.md"]["status"] == "failed" and "binary" in by_file["binary.md"]["reason"]
    assert by_file["same talk.vtt"]["status"] == "duplicate" and "talk.vtt" in by_file["same talk.vtt"]["reason"]
    assert not at.dataframe[0].value.isna().any().any()  # empty cells, not "None"
    assert by_file["huge.txt"]["passages"] == ""
    # every reason and warning shown whole below the table (a cell shows one line)
    notes = [m.value.replace("\\", "") for m in at.get("markdown") if "(duplicate)" in m.value or "(rejected)" in m.value]
    assert any(by_file["same talk.vtt"]["reason"] in n for n in notes)
    assert any(by_file["huge.txt"]["reason"] in n for n in notes)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.suffix in (".txt", ".md", ".vtt"))
    assert written == ["store/uploads/sneaky name.txt", "store/uploads/talk.vtt"]  # failed ones removed
    # the chat now sees them
    at.switch_page("app.py").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Transcripts"] == "2"


# --------------------------------------------------------------------------- store problems


def test_empty_store_shows_how_to_add_transcripts(monkeypatch, empty_store):
    at = start(monkeypatch, empty_store)
    text = " ".join(i.value for i in at.info)
    assert "No transcripts yet" in text and "is empty" in text
    assert f"`{empty_store.store.resolve()}`" in text or f"`{empty_store.store}`" in text  # the path as it is
    assert "\\" not in text  # no Markdown escape shown inside the path (was `empty\-store`)
    assert any("rag ingest" in c.value for c in at.code)
    assert not at.chat_input and not at.exception


def test_missing_store_shows_the_fix(monkeypatch, tmp_path):
    at = start(monkeypatch, RAG_STORE=tmp_path / "nowhere")
    text = " ".join(i.value for i in at.info)
    assert "No transcripts yet" in text and "no index" in text
    assert any("rag ingest corpus/" in c.value for c in at.code)
    assert not at.chat_input and not at.exception
    assert not (tmp_path / "nowhere").exists()  # looking does not create it


def test_unreachable_chroma_server_shows_the_fix(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at = start(monkeypatch, RAG_CHROMA_URL=f"http://127.0.0.1:{port}")
    assert any("not reachable" in e.value for e in at.error)
    assert any("chroma run" in m.value for m in at.markdown)
    assert at.button(key="retry_store") and not at.chat_input and not at.exception


def test_llm_mode_appears_only_when_configured_and_streams(monkeypatch, seed_store):
    import rag._llm
    from fakes import RecordingFakeChatModel

    at = start(monkeypatch, seed_store)
    assert not at.radio  # no LLM configured: extractive only
    fake = RecordingFakeChatModel(["Amar Shah finds the work done in Bangladesh really inspirational [1]."])
    reply = "Amar Shah finds the work done in Bangladesh really inspirational. [1]"  # citations checked by the engine
    monkeypatch.setattr(rag._llm, "make_chat_model", lambda settings: fake)
    at = start(monkeypatch, seed_store, RAG_LLM="fake:recording")
    mode = at.radio(key="f_mode")
    assert mode.options == ["Extractive (verbatim quotes)", "LLM (fake\\:recording)"]
    mode.set_value("llm").run()
    ask(at, BANGLADESH)
    msg = chat(at)[0]
    assert msg["mode"] == "llm" and not msg["answer"].notice
    assert msg["answer"].text == reply
    assert fake.prompts and BANGLADESH in fake.prompts[-1][-1].content  # the model was asked
    [shown] = answer_bodies(at)
    assert re.sub(r"<sup><a [^>]*>\[1\]</a></sup>", "[1]", shown) == f'<div class="rag-answer">{reply}</div>' and "rag-cite" in shown
    assert [e.proto.label for e in at.expander][0].startswith("\\[1\\] Amar Shah")


def test_llm_failure_falls_back_to_the_extractive_answer_without_leaking_keys(monkeypatch, seed_store):
    import rag._llm
    from fakes import FailingFakeChatModel

    monkeypatch.setattr(rag._llm, "make_chat_model", lambda settings: FailingFakeChatModel())
    at = start(monkeypatch, seed_store, RAG_LLM="fake:failing")
    at.radio(key="f_mode").set_value("llm").run()
    ask(at, BANGLADESH)
    a = chat(at)[0]["answer"]
    assert a.citations and "Bangladesh" in a.text  # the extractive answer
    assert a.notice and any("language model" in i.value for i in at.info)
    shown = " ".join([i.value for i in at.info] + bodies(at) + [c.value for c in at.caption])
    assert "sk-fake" not in shown


def test_evaluation_page_runs_a_question_set_against_a_baseline(monkeypatch, seed_store):
    at = start(monkeypatch, seed_store)
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception
    sets = at.selectbox(key="ev_set")
    assert "eval/seed.jsonl" in sets.options
    sets.set_value(ROOT / "eval" / "seed.jsonl").run()
    at.multiselect(key="ev_baselines").set_value(["bm25"]).run()
    at.button(key="ev_run").click().run(timeout=300)
    assert not at.exception and not at.error
    report = at.session_state["ev_report"]
    assert report["n"] == len([l for l in (ROOT / "eval" / "seed.jsonl").read_text().splitlines() if l.strip()])
    assert set(report["baselines"]) == {"bm25"}
    # the time shown is the whole run's, ours and the baselines' (it showed only ours)
    done = at.session_state["ev_done"]
    wall = float(re.search(r"Done in ([\d.]+) s", done).group(1))
    assert wall >= round(report["seconds"], 1) and "the baselines" in done  # both as shown, to one decimal
    table = at.dataframe[0].value
    assert list(table.columns) == ["metric", "ours", "bm25"]
    assert {"hit@1", "hit@5", "mrr@10"} <= set(table["metric"])
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the chart
    # drill down: gold passages shown as text, retrieved passages marked correct or not
    at.selectbox(key="ev_pick").set_value(report["questions"][0]["id"]).run()
    assert not at.exception
    assert any("rag-q" in b for b in bodies(at))
    retrieved = at.dataframe[3].value
    first = report["questions"][0]
    assert list(retrieved.columns)[:3] == ["rank", "correct", "text"] and len(retrieved) == len(first["retrieved"]) >= report["k"]
    # each retrieved passage by its speaker and the start of its text, not a bare id
    from rag import Engine

    engine = Engine(seed_store)
    for _, row in retrieved.iterrows():
        p = engine.passage(row["passage"])
        # (an introduction has no speaker: its text alone)
        assert row["text"].startswith(f"{p.speaker + ': ' if p.speaker else ''}{' '.join(p.text.split())[:40]}")
    bm25 = at.dataframe[-1].value
    assert "text" in bm25.columns and all(len(t) > 20 for t in bm25["text"])
    for df in at.dataframe:  # no "None" cell anywhere
        assert not df.value.isna().any().any(), df.value


def test_evaluation_page_on_a_missing_store_shows_the_fix(monkeypatch, tmp_path):
    at = start(monkeypatch, RAG_STORE=tmp_path / "nowhere")
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception and any("No transcripts yet" in i.value for i in at.info)


# --------------------------------------------------------------------------- public API only


def _private_uses(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("rag._") or node.module == "rag" and any(a.name.startswith("_") for a in node.names):
                found.append(f"{path.name}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}: import {a.name}" for a in node.names if a.name.startswith("rag._")]
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "rag" and node.attr.startswith("_"):
                found.append(f"{path.name}:{node.lineno}: rag.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "index" and not node.args:
            found.append(f"{path.name}:{node.lineno}: .index()")  # the engine's private in-memory view
    return found


def test_the_app_uses_the_public_api_only(tmp_path):
    files = sorted((ROOT / "ui").rglob("*.py"))
    assert len(files) >= 5
    assert [u for f in files for u in _private_uses(f)] == []
    # the scan does see what it forbids
    bad = tmp_path / "bad.py"
    bad.write_text("import rag._embed\nfrom rag._evaluate import x\nfrom rag import _baselines\n"
                   "import rag\nrag._store\nengine.index().passages\n")
    assert len(_private_uses(bad)) == 5


def test_the_transcript_view_shows_the_turns_as_indexed(monkeypatch, seed_store, dev_store):
    import rag
    from rag import Engine

    # the demo: every turn is indexed, and the turns rebuilt from the store are the parser's
    engine = Engine(seed_store)
    [tid] = engine.transcripts()
    shown = engine.transcript(tid)
    parsed = rag.parse_text(engine.source_text(tid), tid, ".txt")
    assert [(t.index, t.speaker, t.text) for t in shown.turns] == [(t.index, t.speaker, t.text) for t in parsed.turns]
    # a hearing: the chair's procedural remarks are not indexed, so not shown as if they were
    engine = Engine(dev_store)
    tid = sorted(engine.transcripts())[0]
    shown = engine.transcript(tid)
    parsed = {t.index: t for t in rag.parse_text(engine.source_text(tid), tid, ".txt").turns}
    assert len(shown.turns) < len(parsed)
    for t in shown.turns:  # the same words at the same offsets, split answers joined again
        assert (t.speaker, t.text, t.start) == (parsed[t.index].speaker, parsed[t.index].text, parsed[t.index].start)
    cited = {i for p in engine.passages(tid) for i in p.turns}
    assert {t.index for t in shown.turns} == cited
    # the page draws what the engine holds, even if today's parser would read the file otherwise
    monkeypatch.setattr(rag, "parse_text", lambda *a, **k: pytest.fail("the view re-parsed the source"))
    at = start(monkeypatch, dev_store)
    at.switch_page("pages/transcripts.py").run()
    at.selectbox(key="tv_transcript").set_value(tid).run()
    assert not at.exception
    page = "".join(bodies(at))
    assert page.count('class="rag-turn') == len(shown.turns)
    skipped = sum(int(n) for n in re.findall(r'<div class="rag-skip">(\d+) turns? not indexed</div>', page))
    idx = [t.index for t in shown.turns]
    assert skipped == sum(b - a - 1 for a, b in zip(idx, idx[1:])) > 0


def test_a_link_to_a_missing_transcript_says_so(monkeypatch, seed_store):
    at = AppTest.from_file(APP, default_timeout=90)
    monkeypatch.setenv("RAG_STORE", str(seed_store.store))
    at.switch_page("pages/transcripts.py")
    at.query_params["t"] = "gone.txt"
    at.query_params["p"] = "gone.txt#t3"
    at.run()
    assert not at.exception
    assert any("gone.txt" in w.value and "not in the index" in w.value for w in at.warning)
    assert not any("Cited passage" in m.value for m in at.markdown)


def test_tables_show_empty_cells_not_none():
    rows = _shared.table([{"a": 1, "b": None}, {"a": None, "b": "x", "c": 0.5}])
    assert rows == [{"a": "1", "b": "", "c": ""}, {"a": "", "b": "x", "c": "0.5"}]
    assert _shared.table([{"a": 1.0}]) == [{"a": 1.0}]  # a full column keeps its type


# --------------------------------------------------------------------------- conversations on disk

BROWSER = "0123456789abcdef0123456789abcdef"


def start_as(monkeypatch, settings, browser: str = BROWSER, conversation: str | None = None) -> AppTest:
    """The app as a browser with this id (its cookie) opens it, at ?c=<conversation> if given."""
    monkeypatch.setenv("RAG_STORE", str(settings.store))
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["browser_id"] = browser
    if conversation:
        at.query_params["c"] = conversation
    at.run()
    assert not at.exception, at.exception
    return at


def _asked_in_a_copy(monkeypatch, seed_store, tmp_path):
    """The app on a copy of the seed store (conversations are written into the store folder),
    after one question: (app, settings, this browser's conversation folder)."""
    from rag import load_settings
    import shutil

    store = tmp_path / "store"
    shutil.copytree(seed_store.store, store)
    s = load_settings(store=store)
    at = start_as(monkeypatch, s)
    ask(at, BANGLADESH)
    return at, s, store / "conversations" / BROWSER


def test_a_conversation_survives_a_reload_and_can_be_reopened_renamed_deleted(monkeypatch, seed_store, tmp_path):
    at, s, folder = _asked_in_a_copy(monkeypatch, seed_store, tmp_path)
    ask(at, "and Uganda?")
    cid = at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"]
    assert [p.name for p in folder.iterdir()] == [f"{cid}.json"]  # no temporary file left behind
    before = [(m["question"], m["answer"].text, [c.quote for c in m["answer"].citations]) for m in chat(at)]

    # a reload: a new session at the same address shows the same conversation, cards and all
    again = start_as(monkeypatch, s, conversation=cid)
    assert [(m["question"], m["answer"].text, [c.quote for c in m["answer"].citations]) for m in chat(again)] == before
    assert len(answer_bodies(again)) == 2 and view_buttons(again)
    assert not [b for b in again.button if (b.key or "").startswith("example-")]
    # ... and a follow-up still follows on from it
    ask(again, "Who said that?")
    assert chat(again)[-1]["answer"] is not None and len(chat(again)) == 3

    # a new chat; the earlier one is listed and opens again
    again.button(key="new_chat").click().run()
    assert chat(again) == []
    ask(again, "What is Q?")
    listed = [b for b in again.button if (b.key or "").startswith("conv-")]
    assert {b.key for b in listed} == {f"conv-{cid}", f"conv-{again.session_state['conv_id']}"}
    assert any(b.label.replace("\\", "") == BANGLADESH for b in listed)  # named after its first question
    again.button(key=f"conv-{cid}").click().run()
    assert [m["question"] for m in chat(again)] == [BANGLADESH, "and Uganda?", "Who said that?"]

    # rename, then delete
    assert again.text_input(key=f"conv_rename-{cid}").value == BANGLADESH  # the open one's name
    again.text_input(key=f"conv_rename-{cid}").input("Bangladesh and Uganda").run()
    assert json.loads((folder / f"{cid}.json").read_text())["title"] == "Bangladesh and Uganda"
    assert again.button(key=f"conv-{cid}").label == "▸ Bangladesh and Uganda"
    again.button(key="conv_delete").click().run()
    assert not (folder / f"{cid}.json").exists() and chat(again) == []
    assert f"conv-{cid}" not in {b.key for b in again.button}

    # another browser sees none of it
    other = start_as(monkeypatch, s, browser="fedcba9876543210fedcba9876543210")
    assert not [b for b in other.button if (b.key or "").startswith("conv-")]


def test_a_damaged_conversation_file_is_named_and_skipped(monkeypatch, seed_store, tmp_path):
    at, s, folder = _asked_in_a_copy(monkeypatch, seed_store, tmp_path)
    [good] = folder.iterdir()
    (folder / "aaaaaaaaaaaaaaaa.json").write_text('{"format": 1, "messages": [{"question": ', encoding="utf-8")
    (folder / "bbbbbbbbbbbbbbbb.json").write_bytes(b"\xff\xfe\x00 not json")
    at = start_as(monkeypatch, s, conversation="aaaaaaaaaaaaaaaa")
    assert any("could not be read" in w.value for w in at.warning)  # said, and a new chat instead
    assert chat(at) == []
    skipped = " ".join(c.value.replace("\\", "") for c in at.caption)
    assert "Skipped 2 unreadable conversation file(s)" in skipped and "aaaaaaaaaaaaaaaa.json" in skipped
    assert f"conv-{good.stem}" in {b.key for b in at.button}  # the good one is still listed
    ask(at, "What is Q?")  # and the app works on
    assert len(chat(at)) == 1


def test_a_stored_answer_reads_back_equal(seed_store):
    import _conversations as conv
    from rag import Engine

    engine = Engine(seed_store)
    first = engine.ask(BANGLADESH, llm=False)
    a = engine.ask("and Uganda?", history=[first], llm=False)
    assert a.citations and a.retrieved and a.resolved_question
    back = conv.answer_from_dict(json.loads(json.dumps(conv.answer_to_dict(a))))
    assert back == a  # every field, the passages with their segments


def test_a_failed_write_leaves_the_old_conversation_whole(seed_store, tmp_path, monkeypatch):
    import _conversations as conv
    from rag import Engine, load_settings

    s = load_settings(store=tmp_path / "store")
    a = Engine(seed_store).ask(BANGLADESH, llm=False)
    chat = [{"id": "m1", "question": BANGLADESH, "answer": a}]
    conv.save(s, BROWSER, "0123abcd0123abcd", chat)
    path = tmp_path / "store" / "conversations" / BROWSER / "0123abcd0123abcd.json"
    before = path.read_bytes()

    def dies_half_way(data, fh, **kw):
        fh.write('{"format": 1, "messages": [')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conv.json, "dump", dies_half_way)
    with pytest.raises(OSError):
        conv.save(s, BROWSER, "0123abcd0123abcd", chat + chat)
    assert path.read_bytes() == before  # the old version, whole
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    monkeypatch.undo()
    title, messages = conv.load(s, BROWSER, "0123abcd0123abcd")
    assert title == BANGLADESH and messages[0]["answer"] == a
