"""Shared by every page: settings, the cached Engine, store status screens and safe rendering.

Safety rule of the app: text that comes from a transcript (quotes, passages, titles, speaker
names, questions) is untrusted. It is only ever shown

* through ``esc()`` / ``text_html()`` / ``marked_html()`` (``html.escape`` first, then our own
  ``<mark>``/``<span>`` tags) inside ``st.html`` (no Markdown processing, DOMPurify on top), or
* through ``md_escape()`` where Streamlit renders Markdown (widget labels, captions, alerts), or
* as plain text (``st.text``, ``st.dataframe``, selectbox options).
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import streamlit as st

import rag
from rag import RagError, Settings, StoreMissingError, StoreUnavailableError

log = logging.getLogger("rag.ui")

UI_DIR = Path(__file__).resolve().parent
ROOT = UI_DIR.parent
CHAT_PAGE = "app.py"
TRANSCRIPTS_PAGE = "pages/transcripts.py"
UPLOAD_PAGE = "pages/upload.py"
EVALUATION_PAGE = "pages/evaluation.py"
UPLOAD_SUFFIXES = (".txt", ".md", ".vtt", ".srt", ".json")
PAGES: dict[str, Any] = {}  # st.Page objects, registered by app.py on every run


def page(name: str, fallback: str):
    """A page to link or switch to: the registered st.Page (the chat page is a function)."""
    return PAGES.get(name, fallback)


# --------------------------------------------------------------------------- settings and engine


def get_settings() -> Settings:
    """Settings from RAG_* variables / rag.toml; a bad value stops the page with the fix."""
    try:
        return rag.load_settings()
    except RagError as exc:
        st.error(md_escape(str(exc)))
        st.info(md_escape(exc.help_message))
        st.stop()
        raise  # not reached


def _key(settings: Settings) -> str:
    return settings.model_dump_json()


def warm_up_status(engine):
    """The shared engine's warm-up (rag.WarmUp): what it is doing, for how long."""
    return _status.get(id(engine))


_status: dict[int, Any] = {}


# A question that only makes sense in its place ("Is that a yes or a no?", "Is that correct?")
# is no example: it points back at what was said before it.
_POINTS_BACK = re.compile(r"^(is|was|does|did|can|could|would|will|are|were)\s+(that|this|it|he|she|they)\b|\byes or (a )?no\b", re.I)


def topic_words(question: str) -> int:
    """How many words of four letters or more the question has besides its first: a rough count
    of what it is about."""
    return sum(1 for w in re.findall(r"[^\W\d_]{4,}", question)[1:])


def example_candidates(q: str) -> list[str]:
    """Candidate example questions from an interviewer's question: its sentences that end in
    '?', shortened at a comma when long, that stand on their own (a topic of three words or more,
    not pointing back at what came before)."""
    out = []
    for sent in re.split(r"(?<=[.?!])\s+", " ".join(q.split())):
        sent = sent.strip()
        if not sent.endswith("?"):
            continue
        words = sent.split()
        if len(words) > 20 and "," in sent:
            head = sent.split(",")[0].strip()
            if len(head.split()) >= 6:
                sent, words = head + "?", head.split()
        if 5 <= len(words) <= 20 and len(sent) <= 120 and topic_words(sent) >= 3 and not _POINTS_BACK.search(sent):
            out.append(sent)
    return out


def busy_message(status) -> str:
    """What the spinner says while a question is answered: the truth about the wait."""
    if status is None or status.ready:
        return "Searching the transcripts…"
    return status.message


@st.cache_resource(show_spinner="Opening the index…", max_entries=8)
def _engine_for(key: str, _settings: Settings):
    """One Engine per settings per process: rag.shared_engine, which `rag ui` creates (and
    starts warming up) before the server starts, so the first visitor finds it loaded."""
    engine, status = rag.shared_engine(_settings)
    _status[id(engine)] = status
    return engine


def get_engine(settings: Settings | None = None):
    """The Engine for these settings, loaded once per process."""
    settings = settings or get_settings()
    return _engine_for(_key(settings), settings)


@st.cache_resource(show_spinner=False, max_entries=4)
def _ingest_embedder(model: str):
    """A separate embedder for uploads, so ingesting never shares a tokenizer with asking."""
    return rag.embedder(model)


def ingest_embedder(settings: Settings):
    return _ingest_embedder(settings.model)


@dataclass
class StoreState:
    ok: bool
    transcripts: dict[str, Any]
    error: RagError | None = None

    @property
    def empty(self) -> bool:
        return self.ok and not self.transcripts


def store_state(engine) -> StoreState:
    try:
        return StoreState(True, engine.transcripts())
    except (StoreMissingError, StoreUnavailableError) as exc:
        return StoreState(False, {}, exc)


def show_store_problem(state: StoreState, settings: Settings, *, upload_link: bool = True) -> None:
    """The friendly screen for a missing, empty or unreachable store (never a traceback)."""
    where = settings.describe_store()
    if isinstance(state.error, StoreUnavailableError):
        st.error(f"**The Chroma server is not reachable** at `{md_escape(where)}`.")
        st.markdown(md_escape(state.error.help_message))
        st.caption(md_escape(str(state.error)))
        if st.button("Try again", key="retry_store"):
            st.rerun()
        return
    if state.error is not None:
        st.info(f"**No transcripts yet.** There is no index at {code_span(where)}.")
    else:
        st.info(f"**No transcripts yet.** The store at {code_span(where)} is empty.")
    st.markdown("Add transcripts (`.txt`, `.md`, `.vtt`, `.srt`, `.json`) in one of two ways:")
    if upload_link:
        st.page_link(page("upload", UPLOAD_PAGE), label="Upload transcripts in the app", icon="⬆️")
    st.markdown("or from a terminal:")
    st.code(f"rag ingest corpus/ --store {where}" if not settings.chroma_url else f"rag ingest corpus/ --chroma-url {where}", language="bash")
    st.caption("The app picks new transcripts up by itself within a second or two.")


def engine_and_store(*, upload_link: bool = True):
    """(settings, engine, transcripts) or a friendly screen and ``st.stop()``."""
    settings = get_settings()
    try:
        engine = get_engine(settings)
    except RagError as exc:  # e.g. an unknown embedding model
        st.error(md_escape(str(exc)))
        st.info(md_escape(exc.help_message))
        st.stop()
    state = store_state(engine)
    if not state.ok or state.empty:
        show_store_problem(state, settings, upload_link=upload_link)
        st.stop()
    return settings, engine, state.transcripts


# --------------------------------------------------------------------------- safe text

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&\"'=^])")


def code_span(text: Any) -> str:
    """``text`` as a Markdown code span, shown exactly: no backslash escapes inside (Markdown does
    not read them there), fenced with more backticks than any run in the text."""
    t = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", t)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {t} {fence}" if longest else f"{fence}{t}{fence}"


def md_escape(text: Any) -> str:
    """Text for places where Streamlit renders Markdown (labels, captions, alerts): every
    Markdown/HTML punctuation character is backslash-escaped, so links, images, emphasis,
    emoji codes, HTML and bare URLs show literally. Newlines become spaces."""
    s = re.sub(r"\s+", " ", str(text or "")).strip()
    return _MD_SPECIAL.sub(r"\\\1", s)


def esc(text: Any) -> str:
    return html.escape(str(text or ""), quote=True)


def text_html(text: Any) -> str:
    """Escaped text with line breaks kept."""
    return _breaks(esc(text))


def _breaks(escaped: str) -> str:
    return escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


_CITE = re.compile(r"\[(\d{1,3})\]")


def answer_html(text: str, mid: str = "", previews: dict[int, str] | None = None) -> str:
    """An answer's text, escaped, with its [n] markers as citation links: each opens and scrolls
    to its source card (``card-<mid>-<n>``, by the page script), is reachable by Tab, and shows
    the quote on hover (``previews``: n -> "who: “quote”", escaped into the title)."""
    out = _breaks(esc(text))
    previews = previews or {}
    safe_mid = re.sub(r"[^a-z0-9]", "", mid.lower())

    def link(m: re.Match) -> str:
        n = int(m.group(1))
        if not safe_mid or n not in previews:
            return f'<sup class="rag-cite">[{n}]</sup>'
        return (f'<sup><a class="rag-cite" href="#card-{safe_mid}-{n}" data-rag-card="card-{safe_mid}-{n}" '
                f'title="{esc(previews[n])}" aria-label="Source {n}: {esc(previews[n])}">[{n}]</a></sup>')

    return _CITE.sub(link, out)


def copy_text(a, transcripts: dict[str, Any]) -> str:
    """An answer as plain text with its sources, for the copy button."""
    lines = [a.text]
    if a.citations:
        lines += ["", "Sources:"]
        for c in a.citations:
            lines.append(f"[{c.n}] {passage_label(c.passage, transcripts, c)}: “{c.quote}”")
    return "\n".join(lines)


def copy_button_html(text: str, key: str) -> str:
    """A copy button (the page script copies its data-copy text to the clipboard)."""
    safe = re.sub(r"[^a-z0-9-]", "", key.lower())
    return (f'<button type="button" class="rag-copy" id="copy-{safe}" data-copy="{esc(text)}" '
            f'title="Copy the answer with its sources">Copy answer</button>')


# The page's own script (no transcript text in it; no '<' so DOMPurify keeps it): [n] links open
# and scroll to their source card and flash it; copy buttons copy; the chat box gets the focus
# when the page loads (unless the reader is already somewhere else).
PAGE_SCRIPT = """<script>(function(){
if (window.__ragPage) { return; }
window.__ragPage = 1;
function openCard(key){
  var box = document.querySelector('.st-key-' + key);
  if (!box) { return false; }
  var d = box.querySelector('details');
  var s = box.querySelector('summary');
  if (d && !d.open && s) { s.click(); }
  function show(){  // the quote (its first highlighted sentence) in the middle of the screen
    var m = box.querySelector('mark.rag-mark');
    (m || box).scrollIntoView({block: m ? 'center' : 'start', behavior: 'auto'});
  }
  function inView(){
    var m = box.querySelector('mark.rag-mark') || box;
    var r = m.getBoundingClientRect();
    var b = document.querySelector('[data-testid="stBottom"]');
    var bottom = b ? b.getBoundingClientRect().top : window.innerHeight;
    return r.top >= 0 && bottom > r.top;
  }
  show();
  // keep it in view while the card opens: Streamlit keeps a chat scrolled to its end as it
  // grows, and on a busy machine that can come seconds later; the reader's own scrolling ends it
  var until = Date.now() + 4000;
  function stop(){ until = 0; }
  ['wheel', 'touchstart', 'keydown'].forEach(function(e){ window.addEventListener(e, stop, {once: true, capture: true}); });
  (function hold(){
    if (Date.now() > until) { return; }
    if (!inView()) { show(); }
    setTimeout(hold, 100);
  })();
  box.classList.add('rag-flash');
  box.setAttribute('data-rag-opened', '1');
  setTimeout(function(){ box.classList.remove('rag-flash'); }, 2000);
  if (s) { s.focus({preventScroll: true}); }
  return true;
}
function copy(btn){
  var text = btn.getAttribute('data-copy') || '';
  function done(){ btn.textContent = 'Copied'; btn.setAttribute('data-copied', '1');
    setTimeout(function(){ btn.textContent = 'Copy answer'; }, 1500); }
  function fallback(){ var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t);
    t.select(); try { document.execCommand('copy'); done(); } catch (e) {} document.body.removeChild(t); }
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); }
  else { fallback(); }
}
document.addEventListener('click', function(ev){
  var t = ev.target;
  var a = t && t.closest ? t.closest('a.rag-cite') : null;
  if (a) { ev.preventDefault(); openCard(a.getAttribute('data-rag-card')); return; }
  var b = t && t.closest ? t.closest('button.rag-copy') : null;
  if (b) { ev.preventDefault(); copy(b); }
}, true);
var tries = 0;
function focusChat(){
  var box = document.querySelector('textarea[data-testid="stChatInputTextArea"]');
  var here = document.activeElement;
  if (box && (!here || here === document.body)) { box.focus(); return; }
  tries += 1;
  if (!box && tries !== 600) { setTimeout(focusChat, 100); }  // up to a minute for the box to appear (a busy server)
}
focusChat();
})();</script>"""


def page_script() -> None:
    st.html(PAGE_SCRIPT, unsafe_allow_javascript=True)


def marked_html(text: str, ranges: Iterable[tuple[int, int, str]]) -> str:
    """Escaped text with ranges wrapped in our own tags. ``ranges``: (start, end, level) with
    level "cited" (the cited passage) or "mark" (the quoted sentences) or "hit" (a search hit).
    Overlaps are fine: the strongest level wins per character."""
    order = {"cited": 1, "hit": 2, "mark": 3}
    n = len(text)
    cuts = {0, n}
    rs = [(max(0, a), min(n, b), lvl) for a, b, lvl in ranges if b > a and a < n and b > 0]
    for a, b, _ in rs:
        cuts.update((a, b))
    points = sorted(cuts)
    out: list[str] = []
    for a, b in zip(points, points[1:]):
        piece = _breaks(esc(text[a:b]))
        best = None
        for ra, rb, lvl in rs:
            if ra <= a and b <= rb and (best is None or order[lvl] > order[best]):
                best = lvl
        if best == "mark":
            out.append(f'<mark class="rag-mark">{piece}</mark>')
        elif best == "hit":
            out.append(f'<mark class="rag-hit">{piece}</mark>')
        elif best == "cited":
            out.append(f'<span class="rag-cited-text">{piece}</span>')
        else:
            out.append(piece)
    return "".join(out)


def text_ranges(segments: Sequence[Any], source_ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Map ranges of the source text back to ranges of the text joined from ``segments``
    (the inverse of ``Passage.source_spans``). A non-verbatim segment (a decoded JSON escape)
    is marked whole when touched."""
    out: list[tuple[int, int]] = []
    src = list(source_ranges)
    pos = 0
    for i, seg in enumerate(segments):
        if i:
            pos += len(seg.sep)
        lo, hi = pos, pos + len(seg.text)
        for a, b in src:
            x, y = max(a, seg.start), min(b, seg.end)
            if x >= y:
                continue
            if seg.end - seg.start == len(seg.text):
                out.append((lo + x - seg.start, lo + y - seg.start))
            else:
                out.append((lo, hi))
        pos = hi
    return out


def table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for st.dataframe with no "None" cells: a column with a missing value is shown as text,
    the missing value as an empty cell (the grid would print "None")."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in keys} for r in rows]
    holes = {k for r in rows for k, v in r.items() if v is None}
    for r in rows:
        for k in holes:
            v = r.get(k)
            r[k] = "" if v is None else (f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v))
    return rows


def html_block(inner: str, cls: str = "rag-block") -> None:
    """Show our (already escaped) HTML. ``st.html`` does not run Markdown and sanitizes again."""
    st.html(f'<div class="{cls}">{inner}</div>')


CSS = """
<style>
.rag-block, .rag-answer, .rag-card, .rag-transcript { line-height: 1.55; overflow-wrap: anywhere; }
.rag-answer { font-size: 1rem; }
.rag-cite { font-weight: 600; color: #1c6bd1; margin-left: 1px; text-decoration: none; border-radius: 3px; padding: 0 1px; }
a.rag-cite:hover, a.rag-cite:focus-visible { background: rgba(28, 107, 209, 0.14); outline: 2px solid #1c6bd1; outline-offset: 1px; }
.rag-flash { outline: 2px solid #f0b400; border-radius: 0.5rem; transition: outline-color 0.6s; }
button.rag-copy { font-size: 0.8rem; padding: 0.1rem 0.6rem; border: 1px solid rgba(128,128,128,.5); border-radius: 0.4rem;
  background: transparent; color: inherit; cursor: pointer; }
button.rag-copy:hover, button.rag-copy:focus-visible { border-color: #1c6bd1; color: #1c6bd1; }
.rag-meta { font-size: 0.85rem; opacity: 0.8; margin-bottom: 0.2rem; }
.rag-q { font-size: 0.92rem; margin: 0.35rem 0; padding: 0.3rem 0.6rem; border-left: 3px solid rgba(128,128,128,.45); opacity: .9; }
.rag-label { font-weight: 600; }
.rag-passage { margin-top: 0.4rem; }
mark.rag-mark { background: #ffe066; color: #111; padding: 0 1px; border-radius: 2px; }
mark.rag-hit { background: #9be7ff; color: #111; padding: 0 1px; border-radius: 2px; }
.rag-cited-text { background: rgba(255, 224, 102, 0.22); }
.rag-turn { padding: 0.35rem 0.6rem; margin: 0.15rem 0; border-left: 3px solid transparent; border-radius: 3px; }
.rag-turn.rag-cited { border-left-color: #f0b400; background: rgba(255, 224, 102, 0.10); }
.rag-turn.rag-near { border-left-color: rgba(240, 180, 0, 0.35); }
.rag-who { font-weight: 600; font-size: 0.9rem; }
.rag-who .rag-role, .rag-who .rag-time { font-weight: 400; opacity: 0.7; margin-left: 0.4rem; }
.rag-intro { font-style: italic; }
.rag-skip { font-size: 0.8rem; opacity: 0.6; padding: 0 0.6rem; }
</style>
"""


def inject_css() -> None:
    st.html(CSS)


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(float(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def time_range(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    return fmt_time(start) + (f"–{fmt_time(end)}" if end is not None and end != start else "")


# --------------------------------------------------------------------------- corpus helpers


def speaker_lookup(transcripts: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(transcript, tag or name) -> Speaker."""
    out: dict[tuple[str, str], Any] = {}
    for tid, info in transcripts.items():
        for sp in info.speakers:
            out.setdefault((tid, sp.tag), sp)
            out.setdefault((tid, sp.name), sp)
    return out


def _asks(citation) -> bool:
    """Does the citation quote the asker's words in the question (not the answer)?"""
    return citation is not None and getattr(citation, "field", "text") == "question"


def passage_label(p, transcripts: dict[str, Any], citation=None) -> str:
    """Plain-text one-liner for a passage: who and where (escape before showing). With the
    ``citation`` that quotes it, "who" is the person quoted: the asker for a question's words."""
    info = transcripts.get(p.transcript)
    title = info.title if info else p.title or p.transcript
    if _asks(citation):
        who = citation.speaker or "The interviewer"
        if citation.role and citation.role != "other":
            who += f" ({citation.role})"
        who += f", in a question to {p.speaker}" if p.speaker else ", in a question"
    elif p.kind == "introduction":
        who = "Introduction"
    elif p.kind == "comment":
        who = f"Reader comment by {p.speaker}" if p.speaker else "Reader comment"
    else:
        who = p.speaker or "Unattributed"
        if p.role and p.role != "other":
            who += f" ({p.role})"
    return f"{who} — {title}"


def passage_card_html(p, transcripts: dict[str, Any], highlights: Sequence[tuple[int, int]] = (), citation=None) -> str:
    """A source card: speaker and role, title and date, the question asked (and by whom), the
    passage with the quoted sentences marked, timestamps. All transcript text escaped. The card
    is headed by the person the ``citation`` quotes: for words of a question, the asker, with
    the answer shown after it as context."""
    info = transcripts.get(p.transcript)
    speakers = speaker_lookup(transcripts)
    parts: list[str] = []
    sp = speakers.get((p.transcript, p.speaker))
    asks = _asks(citation)
    if asks:
        qs = speakers.get((p.transcript, citation.speaker))
        who = f"<b>{esc(citation.speaker) or 'The interviewer'}</b>"
        if citation.role:
            who += f" · {esc(citation.role)}"
        if qs is not None and qs.description:
            who += f" — {esc(qs.description)}"
        who += f" · in a question to {esc(p.speaker)}" if p.speaker else " · in a question"
    elif p.kind == "introduction":
        who = "<b>Introduction</b>"
    elif p.kind == "comment":
        who = f"<b>Reader comment</b> by {esc(p.speaker) or 'an unnamed reader'}" + (f" · {esc(p.comment_date)}" if p.comment_date else "")
    else:
        who = f"<b>{esc(p.speaker) or 'Unattributed'}</b>"
        if p.role:
            who += f" · {esc(p.role)}"
        if sp is not None and sp.description:
            who += f" — {esc(sp.description)}"
    parts.append(f'<div class="rag-meta">{who}</div>')
    title = info.title if info else (p.title or p.transcript)
    date = (info.date if info else p.date) or ""
    where = f"<i>{esc(title)}</i>" + (f" · {esc(date)}" if date else "")
    when = time_range(p.start_time, p.end_time)
    if when:
        where += f" · ⏱ {esc(when)}"
    if p.part:
        where += f" · answer part {int(p.part)}"
    parts.append(f'<div class="rag-meta">{where}</div>')
    if p.question:
        qs = speakers.get((p.transcript, p.question_speaker))
        asker = qs.name if qs is not None else p.question_speaker
        role = f", {qs.role}" if qs is not None and qs.role and qs.role != "other" else ""
        by = f" ({esc(asker)}{esc(role)})" if asker else ""
        q_ranges = [(a, b, "mark") for a, b in text_ranges(getattr(p, "question_segments", []), highlights)]
        q_html = marked_html(p.question, q_ranges) if q_ranges else text_html(p.question)
        parts.append(f'<div class="rag-q"><span class="rag-label">Question{by}:</span> {q_html}</div>')
    ranges = [(a, b, "mark") for a, b in text_ranges(p.segments, highlights)]
    if asks:  # the answer is context here: say whose it is
        reply = f"Answer ({esc(p.speaker)}):" if p.speaker else "Answer:"
        parts.append(f'<div class="rag-passage"><span class="rag-label">{reply}</span> {marked_html(p.text, ranges)}</div>')
    else:
        parts.append(f'<div class="rag-passage">{marked_html(p.text, ranges)}</div>')
    return f'<div class="rag-card">{"".join(parts)}</div>'


# --------------------------------------------------------------------------- conversation export


def conversation_markdown(chat: list[dict[str, Any]], transcripts: dict[str, Any]) -> str:
    """The conversation as Markdown: questions, answers, citations (who, where, the question
    asked) and the quoted sentences. A download, not rendered by the app."""
    lines = [f"# Conversation — {datetime.now().strftime('%Y-%m-%d %H:%M')}", ""]
    for i, m in enumerate(chat, 1):
        a = m.get("answer")
        if a is not None and a.citations:  # each [n] links to its source below: #source-<question>-<n>
            ns = {c.n for c in a.citations}
            text = _CITE.sub(lambda x: f"[[{x.group(1)}]](#source-{i}-{x.group(1)})" if int(x.group(1)) in ns else x.group(0), a.text)
        else:
            text = a.text if a is not None else ""
        lines += [f"## {i}. {m['question']}", ""]
        a = m.get("answer")
        if a is None:
            lines += [f"_Error: {m.get('error', '')}_", ""]
            continue
        if a.resolved_question and a.resolved_question != a.question:
            lines += [f"_Understood as: {a.resolved_question}_", ""]
        lines += [text, ""]
        if a.citations:
            lines += ["**Sources**", ""]
            for c in a.citations:
                p = c.passage
                info = transcripts.get(p.transcript)
                title = info.title if info else p.title or p.transcript
                date = (info.date if info else p.date) or ""
                head = f"[{c.n}] {passage_label(p, transcripts, c).split(' — ')[0]} — {title}" + (f", {date}" if date else "")
                lines.append(f'- <a id="source-{i}-{c.n}"></a>{head} (`{p.chunk_id}`, characters {p.start_char}–{p.end_char})')
                if p.question:
                    qs = speaker_lookup(transcripts).get((p.transcript, p.question_speaker))
                    asker = qs.name if qs is not None else p.question_speaker
                    lines.append(f"  - Question{f' ({asker})' if asker else ''}: {p.question}")
                if _asks(c):
                    lines.append(f"  - Answer{f' ({p.speaker})' if p.speaker else ''}: {p.text}")
                lines.append(f"  - Quote: “{c.quote}”")
            lines.append("")
        elif a.abstained and a.retrieved:
            lines += ["**Possibly related**", ""]
            for r in a.retrieved[:3]:
                lines.append(f"- {passage_label(r.passage, transcripts)} (`{r.passage.chunk_id}`)")
            lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- transcript view


def transcript_turns_html(
    transcript,
    info,
    *,
    cited: Sequence[tuple[int, int]] = (),
    marks: Sequence[tuple[int, int]] = (),
    cited_turns: tuple[int, int] | None = None,
    search: str = "",
    only: set[int] | None = None,
    block: int = 40,
) -> tuple[list[str], int]:
    """HTML blocks (``block`` turns each) of a transcript by speaker turns. ``cited`` and
    ``marks`` are source ranges (the cited passage, the quoted sentences); ``search`` marks hits.
    Returns (blocks, number of turns with a search hit)."""
    by_tag = {sp.tag: sp for sp in (info.speakers if info else [])}
    blocks: list[str] = []
    cur: list[str] = []
    hits = 0
    needle = search.strip().lower()
    prev = None
    for turn in transcript.turns:
        if only is not None and turn.index not in only:
            continue
        skipped = turn.index - prev - 1 if prev is not None and only is None else 0
        prev = turn.index
        if skipped > 0:  # turns the index does not hold (procedural remarks): said, not hidden
            cur.append(f'<div class="rag-skip">{skipped} turn{"s" if skipped > 1 else ""} not indexed</div>')
        text = turn.text
        ranges = [(a, b, "cited") for a, b in text_ranges(turn.segments, cited)]
        ranges += [(a, b, "mark") for a, b in text_ranges(turn.segments, marks)]
        if needle:
            low = text.lower()
            found = [m.start() for m in re.finditer(re.escape(needle), low)]
            if found:
                hits += 1
            ranges += [(i, i + len(needle), "hit") for i in found]
        classes = ["rag-turn"]
        if cited_turns and cited_turns[0] <= turn.index <= cited_turns[1]:
            classes.append("rag-cited")
        elif cited_turns and cited_turns[0] - 2 <= turn.index <= cited_turns[1] + 2:
            classes.append("rag-near")
        if turn.act == "introduction" or turn.speaker is None and turn.act != "comment":
            who, role = "Introduction", ""
            classes.append("rag-intro")
        elif turn.act == "comment":
            who = f"Reader comment: {turn.comment_author or 'unnamed'}" + (f" ({turn.comment_date})" if turn.comment_date else "")
            role = ""
        else:
            sp = by_tag.get(turn.speaker) or transcript.speakers.get(turn.speaker)
            who = sp.name if sp is not None else (turn.speaker or "")
            role = sp.role if sp is not None and sp.role else ""
        when = time_range(turn.start_time, turn.end_time)
        head = f'<span>{esc(who)}</span>'
        if role:
            head += f'<span class="rag-role">{esc(role)}</span>'
        if when:
            head += f'<span class="rag-time">{esc(when)}</span>'
        cur.append(
            f'<div class="{" ".join(classes)}" id="rag-turn-{turn.index}">'
            f'<div class="rag-who">{head}</div><div>{marked_html(text, ranges)}</div></div>'
        )
        if len(cur) >= block:
            blocks.append("".join(cur))
            cur = []
    if cur:
        blocks.append("".join(cur))
    return blocks, hits


def scroll_to(anchor_id: str) -> None:
    """Scroll the element with this id into view. The script is ours alone: the id is built from
    digits and letters we choose, no transcript text goes near it. (No '<' inside the script:
    DOMPurify drops scripts whose text looks like markup.)"""
    safe = re.sub(r"[^a-z0-9-]", "", anchor_id)
    st.html(
        "<script>(function(){var n=0;function go(){"
        f"var el=document.getElementById('{safe}');"
        "if(el){el.scrollIntoView({block:'center'});el.setAttribute('data-rag-scrolled','1');return;}"
        "n+=1;if(n>=80){return;}setTimeout(go,100);}setTimeout(go,200);})();</script>",
        unsafe_allow_javascript=True,
    )


# --------------------------------------------------------------------------- uploads

_UNSAFE = re.compile(r"[^\w .\-]+", re.UNICODE)


def safe_filename(name: str) -> str:
    """A file name with no folder parts, no '..', no control or shell characters; '' if nothing
    usable is left. The extension is kept (lower-cased) so the allowlist can check it."""
    name = unicodedata.normalize("NFKC", str(name or ""))
    name = name.replace("\x00", "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = re.sub(r"[^a-z0-9]", "", ext.lower())[:10]
    stem = _UNSAFE.sub("_", stem)
    stem = re.sub(r"\.{2,}", ".", stem)
    stem = re.sub(r"\s+", " ", stem).strip(" ._-")[:100]
    if not stem:
        stem = "upload"
    return f"{stem}.{ext}" if ext else stem


# One upload ingest at a time in this process (the store's own lock covers other processes).
UPLOAD_LOCK = threading.Lock()


def uploads_dir(settings: Settings) -> Path:
    return Path(settings.store).resolve() / "uploads"


# --------------------------------------------------------------------------- feedback

_feedback_lock = threading.Lock()


def save_feedback(settings: Settings, record: dict[str, Any]) -> Path:
    """Append one JSON line (question, answer, citations, rating, timestamp)."""
    path = Path(settings.feedback_path)
    record = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _feedback_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    return path
