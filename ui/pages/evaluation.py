"""Evaluation: run a question set from eval/ against the index, compare with the baselines
(table and chart), drill down per question (retrieved vs gold passages)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

_UI = Path(__file__).resolve().parent.parent
if str(_UI) not in sys.path:
    sys.path.insert(0, str(_UI))

import streamlit as st

import _shared as ui
import rag
from rag import RagError

ui.inject_css()
st.title("Evaluation")
settings, engine, transcripts = ui.engine_and_store()

EVAL_DIR = ui.ROOT / "eval"


def question_sets() -> list[Path]:
    found = sorted(EVAL_DIR.glob("*.jsonl")) + sorted(EVAL_DIR.glob("*/questions.jsonl"))
    return [p for p in found if "runs" not in p.relative_to(EVAL_DIR).parts]


def _snippet(text: str, n: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def passage_text(x: dict[str, Any]) -> str:
    """A retrieved passage as the drill-down shows it: speaker and the start of its text (from
    the index; a baseline's chunk, from the transcript's stored source)."""
    p = engine.passage(x.get("chunk_id") or "")
    if p is not None:
        return (f"{p.speaker}: " if p.speaker else "") + _snippet(p.text)
    try:
        text = engine.source_text(x.get("transcript") or "")[int(x.get("start_char") or 0):int(x.get("end_char") or 0)]
    except (KeyError, ValueError, TypeError):
        return ""
    return (f"{x['speaker']}: " if x.get("speaker") else "") + _snippet(text)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


sets = question_sets()
if not sets:
    st.info("No question sets yet: add `eval/<name>.jsonl` or `eval/<name>/questions.jsonl` (see docs/EVALUATION.md).")
    st.stop()

path = st.selectbox("Question set", sets, format_func=lambda p: p.relative_to(ui.ROOT).as_posix(), key="ev_set")
try:
    questions = rag.load_questions(path)
except RagError as exc:
    st.error(ui.md_escape(str(exc)))
    st.stop()
needed = sorted({s["transcript"] for q in questions for s in q.get("sources", [])})
missing = [t for t in needed if t not in transcripts]
st.caption(f"{len(questions)} questions · {len(needed)} transcript(s) cited as gold")
if missing:
    folder = path.parent / "transcripts" if path.name == "questions.jsonl" else None
    st.warning(
        f"This set's gold passages are in {len(missing)} transcript(s) that are not in the index "
        f"({ui.md_escape(', '.join(missing[:5]))}{'…' if len(missing) > 5 else ''})."
    )
    if folder is not None and folder.is_dir():
        st.code(f"rag ingest {folder.relative_to(ui.ROOT).as_posix()} --store {settings.describe_store()}", language="bash")

c1, c2 = st.columns(2)
k = c1.slider("Passages per question (k)", 1, 20, value=min(settings.k, 20), key="ev_k")
DESCRIPTIONS = rag.baselines()
NAMES = list(DESCRIPTIONS)
baselines = tuple(c2.multiselect(
    "Baselines", list(NAMES), default=list(NAMES), key="ev_baselines",
    help="; ".join(f"{n}: {d}" for n, d in DESCRIPTIONS.items()) or None,
))

if st.button("Run evaluation", type="primary", key="ev_run", icon=":material/play_arrow:", disabled=bool(missing)):
    bar = st.progress(0.0, text="Starting…")
    stage = {"now": "asking", "frac": 0.0}

    def progress(done: int, total: int) -> None:
        stage["frac"] = min(done / total, 1.0) if total else 1.0
        bar.progress(stage["frac"], text=f"{stage['now']}: {done}/{total}")

    def on_stage(name: str) -> None:
        # said at once: building a baseline's index takes a while before its first question
        stage["now"] = name
        bar.progress(stage["frac"], text=f"{name}…")

    t0 = time.monotonic()
    try:
        report = rag.evaluate(path, settings, k=k, engine=engine, progress=progress, baselines=baselines, on_stage=on_stage)
        wall = time.monotonic() - t0
        st.session_state["ev_report"] = report
        st.session_state["ev_done"] = done = (
            f"Done in {wall:.1f} s: our engine {report.get('seconds', 0):.1f} s"
            + (f", the baselines (building their indexes and asking) {wall - report.get('seconds', 0):.1f} s" if baselines else ""))
        bar.progress(1.0, text=done)
    except RagError as exc:
        st.error(ui.md_escape(str(exc)))
        if exc.help_message:
            st.info(ui.md_escape(exc.help_message))
    except Exception as exc:  # no traceback in the page
        st.error(ui.md_escape(f"The evaluation failed: {type(exc).__name__}: {exc}"))

report = st.session_state.get("ev_report")
if not report:
    st.caption("Choose a question set and run it; the results show here.")
    st.stop()

k_run = int(report.get("k", k))
st.subheader("Results")
st.caption(ui.md_escape(f"{report.get('questions_file') or ''} · {report.get('n')} questions · k = {k_run} · {report.get('created', '')}"))

systems: list[tuple[str, dict[str, Any]]] = [("ours", report.get("metrics") or {})]
systems += [(name, b.get("metrics") or {}) for name, b in (report.get("baselines") or {}).items()]
keys = [key for key in rag.metric_keys(k_run) if any(m.get(key) is not None for _, m in systems)]
st.dataframe(
    ui.table([{"metric": key, **{name: m.get(key) for name, m in systems}} for key in keys]),
    hide_index=True, width="stretch",
)
chart_keys = [key for key in rag.retrieval_keys(k_run) + ["citation_precision", "citation_recall", "abstain_accuracy"] if key in keys]
if chart_keys:
    import pandas as pd

    df = pd.DataFrame({name: [_num(m.get(key)) for key in chart_keys] for name, m in systems}, index=chart_keys)
    df.index.name = "metric"
    st.bar_chart(df, stack=False, y_label="score (0–1)", x_label="metric")

if report.get("by_style"):
    st.markdown("**By question style**")
    cols = ["n", "hit@1", f"hit@{k_run}", "mrr@10", "citation_precision", "abstain_accuracy", "token_f1"]
    st.dataframe(
        ui.table([{"style": s, **{c: m.get(c) for c in cols}} for s, m in report["by_style"].items()]),
        hide_index=True, width="stretch",
    )

rows = report.get("questions") or []
if rows:
    st.subheader("Per question")
    only_misses = st.toggle(f"Only questions without a correct passage in the top {k_run}", key="ev_misses")
    shown = [r for r in rows if not only_misses or r.get(f"hit@{k_run}") == 0]
    st.dataframe(
        ui.table([{"id": r["id"], "style": r.get("style"), "question": r.get("question", ""), "hit@1": r.get("hit@1"),
                   f"hit@{k_run}": r.get(f"hit@{k_run}"), "abstained": r.get("abstained"),
                   "expect_no_answer": r.get("expect_no_answer")} for r in shown]),
        hide_index=True, width="stretch",
    )
    if shown:
        pick = st.selectbox("Drill down", [r["id"] for r in shown], key="ev_pick")
        r = next(x for x in shown if x["id"] == pick)
        ui.html_block(f"<b>Question:</b> {ui.text_html(r.get('question', ''))}", "rag-block")
        if r.get("resolved_question") and r["resolved_question"] != r.get("question"):
            st.caption("Understood as: " + ui.md_escape(r["resolved_question"]))
        st.markdown("**Gold passages**" if r.get("gold") else "**No gold passages** (the question expects no answer)")
        for g in r.get("gold", []):
            try:
                text = engine.source_text(g["transcript"])[g["start_char"]:g["end_char"]]
            except KeyError:
                text = "(transcript not in the index)"
            ui.html_block(
                f"<div class='rag-meta'>{ui.esc(g['transcript'])} · characters {int(g['start_char'])}–{int(g['end_char'])}</div>"
                f"<div class='rag-q'>{ui.text_html(text)}</div>", "rag-block",
            )
        tabs = st.tabs(["ours"] + list((report.get("baselines") or {}).keys()))
        with tabs[0]:
            st.markdown("**Retrieved** (correct = overlaps a gold passage)")
            st.dataframe(
                ui.table([{"rank": x.get("rank"), "correct": x.get("correct"), "text": passage_text(x), "passage": x.get("chunk_id"),
                           "chars": f"{x.get('start_char')}–{x.get('end_char')}", "score": x.get("score")}
                          for x in r.get("retrieved", [])]),
                hide_index=True, width="stretch", column_config={"text": st.column_config.TextColumn(width="large")},
            )
            st.markdown("**Answer**" + (" (abstained)" if r.get("abstained") else ""))
            ui.html_block(ui.answer_html(r.get("answer") or ""), "rag-answer")
            if r.get("citations"):
                st.dataframe(
                    ui.table([{"n": c.get("n"), "correct": c.get("correct"), "passage": c.get("chunk_id"), "quote": c.get("quote")}
                              for c in r["citations"]]),
                    hide_index=True, width="stretch",
                )
        for tab, (name, b) in zip(tabs[1:], (report.get("baselines") or {}).items()):
            with tab:
                brow = next((x for x in b.get("questions", []) if x.get("id") == pick), None)
                if brow is None:
                    st.caption("No row for this question.")
                    continue
                gold = [(g["transcript"], g["start_char"], g["end_char"]) for g in r.get("gold", [])]
                st.dataframe(
                    ui.table([{"rank": x.get("rank"), "text": passage_text(x), "passage": x.get("chunk_id"),
                               "chars": f"{x.get('start_char')}–{x.get('end_char')}",
                               "correct": any(t == x.get("transcript") and x.get("start_char", 0) < b2 and a2 < x.get("end_char", 0)
                                              for t, a2, b2 in gold)}
                              for x in brow.get("retrieved", [])]),
                    hide_index=True, width="stretch", column_config={"text": st.column_config.TextColumn(width="large")},
                )
