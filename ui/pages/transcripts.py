"""Transcripts: browse and read any transcript by speaker turns, search within it, and see a
cited passage in place ("View in transcript" on a source card opens this page)."""

from __future__ import annotations

import sys
from pathlib import Path

_UI = Path(__file__).resolve().parent.parent
if str(_UI) not in sys.path:
    sys.path.insert(0, str(_UI))

import streamlit as st

import _shared as ui

ui.inject_css()
st.title("Transcripts")
settings, engine, transcripts = ui.engine_and_store()


def _picked() -> None:
    """The reader chose another transcript: forget the citation we came from."""
    st.query_params.clear()
    st.query_params["t"] = st.session_state["tv_transcript"]
    st.session_state.pop("view_target", None)


def _clear_citation() -> None:
    t = st.query_params.get("t")
    st.query_params.clear()
    if t:
        st.query_params["t"] = t
    st.session_state.pop("view_target", None)


tids = sorted(transcripts, key=lambda t: (transcripts[t].title.lower(), t))
qp_t = st.query_params.get("t")
if qp_t in transcripts and st.session_state.get("tv_transcript") != qp_t:
    st.session_state["tv_transcript"] = qp_t
elif qp_t and qp_t not in transcripts:  # a share link to a transcript that is not (or no longer) here
    st.warning(f"The linked transcript {ui.code_span(qp_t)} is not in the index: it may have been removed "
               "or renamed. Choose a transcript below.", icon=":material/link_off:")
tid = st.selectbox(
    "Transcript", tids, key="tv_transcript", on_change=_picked,
    format_func=lambda t: f"{transcripts[t].title} ({t})" if transcripts[t].title != t else t,
)
info = transcripts[tid]

# The citation we came from (if any): its passage and the quoted sentences.
passage = None
marks: list[tuple[int, int]] = []
chunk = st.query_params.get("p")
if chunk:
    found = engine.passage(chunk)
    if found is not None and found.transcript == tid:
        passage = found
        target = st.session_state.get("view_target") or {}
        if target.get("chunk") == chunk:
            marks = [tuple(h) for h in target.get("highlights", [])]

ui.html_block(
    f"<h3 style='margin:0'>{ui.esc(info.title)}</h3>"
    + "<div class='rag-meta'>"
    + " · ".join(ui.esc(x) for x in (info.date, info.source, f"{info.format} file", tid) if x)
    + "</div>",
    "rag-title",
)

if passage is not None:
    target = st.session_state.get("view_target") or {}
    label = target.get("label") or ui.passage_label(passage, transcripts)
    with st.container(border=True):
        st.markdown("**Cited passage** — " + ui.md_escape(label))
        st.caption("Highlighted below in the whole transcript: the passage has a yellow bar, the quoted sentences are marked.")
        c1, c2, c3 = st.columns([1, 1, 1.3])
        c1.page_link(ui.page("chat", ui.CHAT_PAGE), label="Back to the chat", icon=":material/arrow_back:")
        c2.button("Clear highlight", on_click=_clear_citation, key="tv_clear")
        context_only = c3.toggle("Only this passage and its neighbours", key="tv_context")
else:
    context_only = False

with st.expander(f"Speakers ({len(info.speakers)}) and passages ({info.n_passages})"):
    st.dataframe(
        ui.table([{"name": s.name, "tag": s.tag, "role": s.role, "turns": s.turns, "description": s.description}
                  for s in info.speakers]),
        hide_index=True,
        width="stretch",
    )
    st.caption(ui.md_escape(", ".join(f"{v} {k}" for k, v in sorted(info.units.items())) + " (answers split into parts count once)"))
    if info.warnings:
        st.caption("Warnings at ingest: " + ui.md_escape("; ".join(info.warnings)))

search = st.text_input("Search in this transcript", key="tv_search", placeholder="a word or phrase")

transcript = engine.transcript(tid)  # the turns as indexed, from the stored passages
cited = passage.source_spans(0, len(passage.text)) if passage is not None else []

only = None
if passage is not None and context_only:
    first, last = passage.turns
    only = set(range(first - 2, last + 3))
elif search.strip():
    needle = search.strip().lower()
    only = {t.index for t in transcript.turns if needle in t.text.lower()}

blocks, hits = ui.transcript_turns_html(
    transcript, info, cited=cited, marks=marks,
    cited_turns=passage.turns if passage is not None else None,
    search=search, only=only,
)
if search.strip():
    st.caption(f"{hits} turn(s) contain “{ui.md_escape(search.strip())}”." if hits else "No turn contains this text.")
for b in blocks:
    ui.html_block(b, "rag-transcript")

if passage is not None and not search.strip():
    anchor = passage.turns[0]
    for t in transcript.turns:  # the first turn with a quoted sentence, else the passage's answer
        if marks and ui.text_ranges(t.segments, marks):
            anchor = t.index
            break
        if not marks and t.index > passage.turns[0] and ui.text_ranges(t.segments, cited):
            anchor = t.index
            break
    ui.scroll_to(f"rag-turn-{anchor}")
