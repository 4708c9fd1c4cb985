"""The chat app: ask questions of the interview transcripts, check every citation in one click.

Run: ``rag ui`` or ``streamlit run ui/app.py`` (RAG_STORE / RAG_CHROMA_URL pick the store).
This file is the entry point and the Chat page; the other pages live in ui/pages/.
"""

from __future__ import annotations

import logging
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # for `import _shared`
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import streamlit as st

import _conversations as conv
import _shared as ui
from rag import RagError, StoreError

log = logging.getLogger("rag.ui")

EXAMPLES = 4


# --------------------------------------------------------------------------- examples


@st.cache_data(show_spinner=False, max_entries=16)
def example_questions(fingerprint: str, _engine, _roles: dict[tuple[str, str], str], n: int = EXAMPLES) -> list[str]:
    """Up to ``n`` short questions asked in the transcripts (by interviewers when roles are
    known), spread across transcripts, in document order. Nothing hard-coded. Only the first
    3 * ``n`` transcripts (by id) are read: the picks go round the transcripts in that order, so
    a large archive is not read whole for four examples."""
    by_transcript: dict[str, list[tuple[int, str]]] = {}
    seen: set[str] = set()
    first = sorted({t for t, _ in _roles})[: 3 * n]
    for p in (p for t in first for p in _engine.passages(t)):
        if not p.question or p.question in seen:
            continue
        seen.add(p.question)
        role = _roles.get((p.transcript, p.question_speaker), "")
        if role and role != "interviewer":
            continue
        cands = ui.example_candidates(p.question)
        if cands:
            best = max(cands, key=lambda c: (ui.topic_words(c), -len(c)))
            by_transcript.setdefault(p.transcript, []).append((p.turns[0], best))
    # the most specific first within each transcript (then the shortest), round-robin across them
    pools = [sorted(v, key=lambda x: (-ui.topic_words(x[1]), len(x[1]))) for _, v in sorted(by_transcript.items())]
    picked: list[tuple[str, int, str]] = []
    i = 0
    while len(picked) < n and any(i < len(pool) for pool in pools):
        for tid, pool in zip(sorted(by_transcript), pools):
            if i < len(pool) and len(picked) < n:
                picked.append((tid, pool[i][0], pool[i][1]))
        i += 1
    picked.sort(key=lambda x: (x[0], x[1]))
    return [q for _, _, q in picked]


# --------------------------------------------------------------------------- state


def _chat() -> list[dict[str, Any]]:
    return st.session_state.setdefault("chat", [])


def browser_id() -> str:
    """This browser's random id (cookie ``rag_browser``; made and set on its first visit)."""
    bid = st.session_state.get("browser_id")
    if not bid:
        cookie = st.context.cookies.get(conv.COOKIE)
        bid = cookie if conv.valid_id(cookie) else uuid.uuid4().hex
        st.session_state["browser_id"] = bid
    if st.context.cookies.get(conv.COOKIE) != bid:  # (re)set it: a year, this site only
        st.html(f"<script>document.cookie='{conv.COOKIE}={bid}; path=/; max-age=31536000; SameSite=Lax';</script>",
                unsafe_allow_javascript=True)
    return bid


def _fresh_conversation() -> None:
    st.session_state["conv_id"] = uuid.uuid4().hex[:16]
    st.session_state["conv_title"] = ""
    st.session_state["chat"] = []


def open_conversation(settings) -> None:
    """At the start of a session: reopen the conversation the address names (a reload)."""
    if "conv_id" in st.session_state:
        return
    _fresh_conversation()
    cid = st.query_params.get("c")
    if not conv.valid_id(cid):
        return
    try:
        found = conv.load(settings, browser_id(), cid)
    except conv.Unreadable as exc:
        st.session_state["conv_problem"] = f"The conversation in this address could not be read ({exc}); a new one is started."
        return
    except OSError as exc:
        st.session_state["conv_problem"] = f"The conversation could not be read: {exc.strerror or exc}"
        return
    if found is not None:
        st.session_state["conv_id"], st.session_state["conv_title"] = cid, found[0]
        st.session_state["chat"] = found[1]


def persist() -> None:
    """Write the conversation to disk (atomically); a failure is said, never fatal."""
    chat = _chat()
    if not chat:
        return
    try:
        conv.save(ui.get_settings(), browser_id(), st.session_state["conv_id"], chat)
    except (OSError, ValueError) as exc:
        st.toast(f"Could not save the conversation: {ui.md_escape(getattr(exc, 'strerror', None) or exc)}")


def _new_chat() -> None:
    _fresh_conversation()
    st.query_params.pop("c", None)
    st.session_state.pop("pending_question", None)
    st.session_state.pop("view_target", None)


def _switch_to(cid: str) -> None:
    settings = ui.get_settings()
    try:
        found = conv.load(settings, browser_id(), cid)
    except (conv.Unreadable, OSError) as exc:
        st.toast(f"Could not open that conversation: {ui.md_escape(exc)}")
        return
    if found is None:
        return
    st.session_state["conv_id"], st.session_state["conv_title"] = cid, found[0]
    st.session_state["chat"] = found[1]
    st.session_state.pop("pending_question", None)
    st.query_params["c"] = cid


def _rename(cid: str) -> None:
    title = " ".join(st.session_state.get(f"conv_rename-{cid}", "").split())
    if not title:
        return
    try:
        conv.rename(ui.get_settings(), browser_id(), cid, title)
        if st.session_state.get("conv_id") == cid:
            st.session_state["conv_title"] = title
    except (conv.Unreadable, OSError) as exc:
        st.toast(f"Could not rename the conversation: {ui.md_escape(exc)}")


def _delete() -> None:
    try:
        conv.delete(ui.get_settings(), browser_id(), st.session_state["conv_id"])
    except OSError as exc:
        st.toast(f"Could not delete the conversation: {ui.md_escape(exc.strerror or exc)}")
        return
    _new_chat()


def _set_pending(q: str) -> None:
    st.session_state["pending_question"] = q


def _on_feedback(mid: str) -> None:
    value = st.session_state.get(f"fb-{mid}")
    msg = next((m for m in _chat() if m["id"] == mid), None)
    if msg is None or value is None or msg.get("answer") is None:
        return
    a = msg["answer"]
    data = a.to_json()
    try:
        ui.save_feedback(
            ui.get_settings(),
            {
                "rating": "up" if value == 1 else "down",
                "score": int(value),
                "question": a.question,
                "resolved_question": a.resolved_question,
                "answer": a.text,
                "abstained": a.abstained,
                "citations": data["citations"],
                "retrieved": [r["chunk_id"] for r in data["retrieved"]],
                "filters": msg.get("filters", {}),
                "mode": msg.get("mode", "extractive"),
                "session": st.session_state.setdefault("session_id", uuid.uuid4().hex[:12]),
            },
        )
        msg["feedback"] = value
        persist()
        st.toast("Thanks, your feedback was saved.")
    except OSError as exc:
        st.toast(f"Could not save feedback: {ui.md_escape(exc.strerror or exc)}")


# --------------------------------------------------------------------------- rendering


def _open_in_transcript(p, highlights, label: str) -> None:
    st.session_state["view_target"] = {
        "transcript": p.transcript,
        "chunk": p.chunk_id,
        "highlights": [list(h) for h in highlights],
        "label": label,
    }
    st.switch_page(ui.page("transcripts", ui.TRANSCRIPTS_PAGE), query_params={"t": p.transcript, "p": p.chunk_id})


def _source_card(mid: str, n: str, p, highlights, transcripts: dict[str, Any], label: str, expanded: bool = False,
                 citation=None) -> None:
    with st.expander(ui.md_escape(label), expanded=expanded, key=f"card-{mid}-{n}"):
        ui.html_block(ui.passage_card_html(p, transcripts, highlights, citation), "rag-card-wrap")
        if st.button("View in transcript", key=f"view-{mid}-{n}", icon=":material/article:"):
            _open_in_transcript(p, highlights, label)


def render_answer(msg: dict[str, Any], transcripts: dict[str, Any]) -> None:
    mid = msg["id"]
    a = msg.get("answer")
    if a is None:
        st.error(ui.md_escape(msg.get("error") or "No answer."))
        if msg.get("help"):
            st.caption(ui.md_escape(msg["help"]))
        return
    previews = {c.n: f"{ui.passage_label(c.passage, transcripts, c).split(' — ')[0]}: “{c.quote}”" for c in a.citations}
    ui.html_block(ui.answer_html(a.text, mid, previews), "rag-answer")
    if a.resolved_question and a.resolved_question != a.question:
        st.caption("Understood as: " + ui.md_escape(a.resolved_question))
    if a.notice:
        st.info(ui.md_escape(a.notice))
    for c in a.citations:
        label = f"[{c.n}] " + ui.passage_label(c.passage, transcripts, c)  # names the person quoted
        _source_card(mid, str(c.n), c.passage, c.highlights, transcripts, label, citation=c)
    if a.abstained and any(msg.get("filters", {}).values()):
        on = ", ".join(f"{k} = {v}" for k, v in msg["filters"].items() if v)
        st.info(ui.md_escape(f"Only passages matching the filters ({on}) were searched: clear them in the "
                             "sidebar to search every transcript."))
    if a.abstained and a.retrieved:
        st.caption("Possibly related passages (not enough to answer):")
        for r in a.retrieved[:3]:
            label = "Possibly related: " + ui.passage_label(r.passage, transcripts)
            _source_card(mid, f"r{r.rank}", r.passage, [], transcripts, label)
    total = a.timings_ms.get("total_ms")
    bits = [f"{total:.0f} ms" if total is not None else "", f"{len(a.retrieved)} passages", msg.get("mode", "extractive")]
    if msg.get("filters"):
        bits.append("filters: " + ", ".join(f"{k}={v}" for k, v in msg["filters"].items()))
    st.caption(ui.md_escape(" · ".join(b for b in bits if b)))
    st.html(ui.copy_button_html(ui.copy_text(a, transcripts), mid))
    st.feedback("thumbs", key=f"fb-{mid}", on_change=_on_feedback, args=(mid,), persist_state="session")


def _ask(engine, question: str, history: list, filters: dict, k: int, mode: str):
    """Run the engine; in LLM mode stream tokens into a placeholder and fall back to the
    extractive answer (with a notice) if the language model cannot be used."""
    if mode != "llm":
        return engine.ask(question, history=history, filters=filters, k=k, llm=False)
    placeholder = st.empty()
    streamed: list[str] = []

    def on_token(tok: str) -> None:
        streamed.append(tok)
        with placeholder.container():
            ui.html_block(ui.answer_html("".join(streamed)) + " ▌", "rag-answer")

    try:
        return engine.ask(question, history=history, filters=filters, k=k, llm=True, on_token=on_token)
    except StoreError:
        raise
    except RagError as exc:  # our own message (e.g. the provider package is not installed)
        why = str(exc)
    except Exception as exc:  # provider errors may quote secrets: show the type only
        log.error("LLM answer failed: %s", type(exc).__name__)
        why = type(exc).__name__
    finally:
        placeholder.empty()
    a = engine.ask(question, history=history, filters=filters, k=k, llm=False)
    a.notice = f"The language model could not be used ({why}); showing the extractive answer."
    return a


def answer_question(engine, question: str, transcripts: dict[str, Any], filters: dict, k: int, mode: str) -> None:
    chat = _chat()
    msg: dict[str, Any] = {"id": uuid.uuid4().hex[:10], "question": question, "filters": filters, "k": k, "mode": mode, "answer": None}
    with st.chat_message("user"):
        ui.html_block(ui.text_html(question), "rag-question")
    with st.chat_message("assistant"):
        history = [m["answer"] for m in chat if m.get("answer") is not None]
        # Every filter key is passed, None for "any": the sidebar is what applies, so a filter
        # the reader cleared is not carried forward from an earlier question.
        applied = {key: filters.get(key) for key in ("transcript", "speaker", "role")}
        try:
            busy = ui.busy_message(ui.warm_up_status(engine))
            with st.spinner(busy):
                msg["answer"] = _ask(engine, question, history, applied, k, mode)
        except RagError as exc:  # store missing / emptied / unreachable since the page loaded, ...
            msg["error"], msg["help"] = str(exc), exc.help_message
        except Exception as exc:  # no traceback in the page; the log has it
            log.exception("answering %r failed", question)
            msg["error"] = f"Something went wrong while answering ({type(exc).__name__}: {exc})."
        chat.append(msg)
        persist()
        render_answer(msg, transcripts)


# --------------------------------------------------------------------------- page


def sidebar(settings, engine, transcripts: dict[str, Any]):
    with st.sidebar:
        top = st.container()  # filled after answering, so the download holds the latest answer
        st.subheader("Filters")
        tids = [""] + sorted(transcripts, key=lambda t: (transcripts[t].title.lower(), t))
        tid = st.selectbox(
            "Transcript", tids, key="f_transcript", persist_state="session",
            format_func=lambda t: "All transcripts" if not t else f"{transcripts[t].title} ({t})" if transcripts[t].title != t else t,
        )
        # who answered and who asked: the interviewer's words are in the questions
        names = engine.speakers(tid or None)
        speaker = st.selectbox("Speaker", [""] + names, key="f_speaker", persist_state="session",
                               format_func=lambda s: s or "Any speaker")
        roles = engine.roles(tid or None)
        role = st.selectbox("Role", [""] + roles, key="f_role", persist_state="session",
                            format_func=lambda r: r or "Any role")
        st.subheader("Answers")
        if settings.llm:
            mode = st.radio(
                "Answer mode", ["extractive", "llm"], key="f_mode", persist_state="session",
                format_func=lambda m: "Extractive (verbatim quotes)" if m == "extractive" else f"LLM ({ui.md_escape(settings.llm)})",
            )
        else:
            mode = "extractive"
            st.caption("Answer mode: extractive (verbatim quotes). Set `RAG_LLM` for generated answers.")
        k = st.slider("Passages to retrieve", 1, 20, value=min(max(settings.k, 1), 20), key="f_k", persist_state="session")
        st.caption("Store: " + ui.md_escape(settings.describe_store()))
    filters = {key: v for key, v in (("transcript", tid), ("speaker", speaker), ("role", role)) if v}
    return filters, int(k), mode, top


def conversation_buttons(slot, transcripts: dict[str, Any]) -> None:
    with slot:
        c1, c2 = st.columns(2)
        c1.button("New chat", on_click=_new_chat, icon=":material/add_comment:", key="new_chat", width="stretch")
        c2.download_button(
            "Download",
            data=ui.conversation_markdown(_chat(), transcripts),
            file_name="conversation.md",
            mime="text/markdown",
            key="download_chat",
            icon=":material/download:",
            help="The conversation as Markdown: questions, answers, citations and quotes.",
            disabled=not _chat(),
            on_click="ignore",
            width="stretch",
        )
        conversations(ui.get_settings())


SHOWN_CONVERSATIONS = 8


def conversations(settings) -> None:
    """Earlier conversations of this browser: open one; rename or delete the open one."""
    st.subheader("Conversations")
    if st.session_state.get("conv_problem"):
        st.warning(ui.md_escape(st.session_state.pop("conv_problem")))
    try:
        items, bad = conv.listing(settings, browser_id())
    except OSError as exc:
        st.caption(ui.md_escape(f"Conversations cannot be listed: {exc.strerror or exc}"))
        return
    current = st.session_state.get("conv_id")
    if not items:
        st.caption("Your conversations are kept here, in this browser, after the first question.")

    def item(c) -> None:
        here = c.id == current
        label = ("▸ " if here else "") + ui.md_escape(c.title)
        st.button(label, key=f"conv-{c.id}", on_click=_switch_to, args=(c.id,), disabled=here, width="stretch",
                  help=f"{c.questions} question(s) · {datetime.fromtimestamp(c.updated).strftime('%Y-%m-%d %H:%M')}")

    for c in items[:SHOWN_CONVERSATIONS]:
        item(c)
    if len(items) > SHOWN_CONVERSATIONS:
        with st.expander(f"{len(items) - SHOWN_CONVERSATIONS} older"):
            for c in items[SHOWN_CONVERSATIONS:]:
                item(c)
    if any(c.id == current for c in items):
        with st.popover("Rename or delete", icon=":material/edit:", width="stretch"):
            st.text_input("Name", value=st.session_state.get("conv_title", ""), key=f"conv_rename-{current}",
                          on_change=_rename, args=(current,), max_chars=200)
            st.button("Delete this conversation", key="conv_delete", on_click=_delete, icon=":material/delete:")
    if bad:
        st.caption(ui.md_escape(f"Skipped {len(bad)} unreadable conversation file(s): " + "; ".join(bad)))


WHOLE_QUESTIONS = ("What is this interview about?", "What are the key takeaways?", "Who are the speakers?")


def welcome(engine, transcripts: dict[str, Any]) -> None:
    speakers = {(sp.name or sp.tag) for info in transcripts.values() for sp in info.speakers}
    c1, c2, c3 = st.columns(3)
    c1.metric("Transcripts", len(transcripts))
    c2.metric("Speakers", len(speakers))
    c3.metric("Passages", sum(info.n_passages for info in transcripts.values()))
    items = []
    for tid, info in sorted(transcripts.items(), key=lambda kv: kv[1].title.lower())[:12]:
        who = ", ".join(f"{sp.name}" + (f" ({sp.role})" if sp.role and sp.role != "other" else "") for sp in info.speakers[:6])
        items.append(
            f"<li><b>{ui.esc(info.title)}</b>" + (f" · {ui.esc(info.date)}" if info.date else "")
            + (f" — {ui.esc(who)}" if who else "") + "</li>"
        )
    more = f"<li>… and {len(transcripts) - 12} more</li>" if len(transcripts) > 12 else ""
    ui.html_block(f"<ul>{''.join(items)}{more}</ul>", "rag-loaded")
    if transcripts and len(transcripts) <= engine.settings.answer.overview_transcripts:
        # questions about the whole interview, answered from its own parts (rag: overview, key points)
        st.markdown("**Start with the whole interview:**")
        cols = st.columns(len(WHOLE_QUESTIONS))
        for i, q in enumerate(WHOLE_QUESTIONS):
            cols[i].button(q, key=f"whole-{i}", on_click=_set_pending, args=(q,), width="stretch")
    roles = {(tid, sp.tag): sp.role for tid, info in transcripts.items() for sp in info.speakers}
    fp = engine.fingerprint()
    examples = example_questions(fp, engine, roles)
    if examples:
        st.markdown("**Try a question asked in the interviews:**")
        cols = st.columns(2)
        for i, q in enumerate(examples):
            cols[i % 2].button(ui.md_escape(q), key=f"example-{i}", on_click=_set_pending, args=(q,), width="stretch")
    st.caption("Every answer quotes the transcripts and cites its passages; open a source to check it.")


def chat_page() -> None:
    ui.inject_css()
    ui.page_script()
    st.title("Ask the interviews")
    settings, engine, transcripts = ui.engine_and_store()
    status = ui.warm_up_status(engine)
    if status is not None and not status.ready:  # what the wait is, truthfully (rag ui starts it at launch)
        st.caption(ui.md_escape(status.message), help="The first answer waits for this; later ones do not.")
    open_conversation(settings)
    filters, k, mode, top = sidebar(settings, engine, transcripts)
    # no max_chars on the box: a longer paste would be dropped by the browser without a word;
    # it is taken and refused here with a message instead
    prompt = st.chat_input("Ask a question about the transcripts…", key="chat_input")
    question = (prompt or st.session_state.pop("pending_question", None) or "").strip()
    if len(question) > settings.question_max_chars:
        st.error(
            f"That question is {len(question):,} characters long; questions can be up to "
            f"{settings.question_max_chars:,}. Ask about one thing at a time, or quote less of the transcript."
        )
        question = ""
    chat = _chat()
    if not chat and not question:
        welcome(engine, transcripts)
    for msg in chat:
        with st.chat_message("user"):
            ui.html_block(ui.text_html(msg["question"]), "rag-question")
        with st.chat_message("assistant"):
            render_answer(msg, transcripts)
    if question:
        answer_question(engine, question, transcripts, filters, k, mode)
    if _chat():
        st.query_params["c"] = st.session_state["conv_id"]  # a reload reopens this conversation
    conversation_buttons(top, transcripts)


st.set_page_config(page_title="Interview Q&A", page_icon="💬", layout="centered")
ui.PAGES.update(
    chat=st.Page(chat_page, title="Chat", icon=":material/chat:", default=True),
    transcripts=st.Page(ui.TRANSCRIPTS_PAGE, title="Transcripts", icon=":material/article:"),
    upload=st.Page(ui.UPLOAD_PAGE, title="Upload", icon=":material/upload_file:"),
    evaluation=st.Page(ui.EVALUATION_PAGE, title="Evaluation", icon=":material/monitoring:"),
)
st.navigation(list(ui.PAGES.values())).run()
