"""Follow-ups read like a person's: `resolve` on plain strings for each kind of follow-up, and the
follow-up question set in eval/followups/ through the real engine.

The set: three short interviews written for it and 27 follow-ups (bare new subjects, "and about
X?", he/she, "and the interviewer?"/"and the guest?", chains of three and four turns, and
standalone questions that open with "And"). Measured follow-up hit@1 0.926 / hit@5 1.000 (before
the resolver was rewritten: 0.852 / 0.926); see docs/EVALUATION.md#follow-ups.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import rag
from rag._evaluate import evaluate
from rag._query import HistoryTurn, is_followup, resolve

ROOT = Path(__file__).resolve().parent.parent
SET = ROOT / "eval" / "followups"

# floors a little below the measured figures (0.926 / 1.000): one more miss at rank 1, or one
# follow-up with no correct passage in the top 5, still passes; the old resolver (0.852 / 0.926)
# does not
FOLLOWUP_HIT1_FLOOR = 0.88
FOLLOWUP_HIT5_FLOOR = 0.95

RARITY = {"bangladesh": 6.0, "scotland": 5.0, "learn": 1.5, "bains": 7.0, "business": 3.0, "loans": 4.0,
          "countries": 4.5, "norway": 4.0}


def _rarity(word: str) -> float:
    return RARITY.get(word, 0.0)


BAINS = HistoryTurn("What did Bains say about business loans?", speaker="Bains", speakers=["Bains"])


# ---------------------------------------------------------------------------- a new subject


@pytest.mark.parametrize("follow, expected", [
    ("and Uganda?", "What can other countries learn from Uganda?"),
    ("what about Kenya?", "What can other countries learn from Kenya?"),
    ("And Kenya?", "What can other countries learn from Kenya?"),
    ("how about the Czech Republic?", "What can other countries learn from the Czech Republic?"),
])
def test_a_bare_new_subject_replaces_the_named_subject_not_the_rarest_word(follow, expected):
    r = resolve(follow, [HistoryTurn("What can other countries learn from Norway?")], None, _rarity)
    assert r.followup and r.text == expected


def test_the_swap_targets_the_latest_question_not_an_earlier_one():
    history = [HistoryTurn("What can we learn from Bangladesh?"), HistoryTurn("What did we learn from Scotland?")]
    assert resolve("and Uganda?", history, None, _rarity).text == "What did we learn from Uganda?"


def test_a_new_subject_keeps_the_speaker_the_earlier_question_named():
    r = resolve("what about Kenya?", [BAINS], None, _rarity)
    assert r.text == "What did Bains say about Kenya?" and r.speakers == ["Bains"]
    r = resolve("and the second point?", [BAINS], None, _rarity)
    assert r.text == "What did Bains say about the second point?"


def test_a_lowercase_subject_replaces_the_last_phrase_and_its_article():
    prev = HistoryTurn("What did Webb say about the libraries?", speaker="Marcus Webb", speakers=["Marcus Webb"])
    assert resolve("what about the care homes?", [prev], None, _rarity).text == "What did Webb say about the care homes?"


@pytest.mark.parametrize("follow, expected", [
    ("and about the arts and culture sector?", "What did Bains say about the arts and culture sector?"),
    ("and on grants?", "What did Bains say on grants?"),
])
def test_and_about_x_replaces_the_earlier_phrase(follow, expected):
    r = resolve(follow, [BAINS], None, _rarity)
    assert r.followup and r.text == expected and r.speakers == ["Bains"]


def test_and_about_x_without_that_preposition_replaces_the_last_phrase():
    r = resolve("and about the exams?", [HistoryTurn("What did we learn from Scotland?")], None, _rarity)
    assert r.text == "What did we learn about the exams?"


# ---------------------------------------------------------------------------- he, she


def test_she_becomes_the_earlier_answers_speaker():
    prev = HistoryTurn("How is the rural schools programme funded?", speaker="Agnes Mwangi")
    r = resolve("what did she say about funding?", [prev], None, _rarity)
    assert r.text == "what did Agnes Mwangi say about funding?"
    assert r.speakers == ["Agnes Mwangi"]


def test_the_person_the_earlier_question_named_is_he():
    prev = HistoryTurn("What did Amar say about waiting lists?", speaker="Pat Jones", speakers=["Amar Shah"])
    assert resolve("what did he say about beds?", [prev], None, _rarity).text == "what did Amar Shah say about beds?"


def test_his_becomes_the_name_once():
    prev = HistoryTurn("What changed for the towns?", speaker="Tomas Lindqvist")
    r = resolve("what did he say about his home town?", [prev], None, _rarity)
    assert r.text == "what did Tomas Lindqvist say about his home town?"
    prev = HistoryTurn("What changed for the nurses?", speaker="Agnes Mwangi")
    r = resolve("and what about her teachers?", [prev], None, _rarity)
    assert r.text == "What changed for Agnes Mwangi's teachers?" and r.speakers == ["Agnes Mwangi"]
    prev = HistoryTurn("What did Agnes Mwangi say about the nurses?", speaker="Agnes Mwangi", speakers=["Agnes Mwangi"])
    assert resolve("and her teachers?", [prev], None, _rarity).text == "What did Agnes Mwangi say about her teachers?"


@pytest.mark.parametrize("follow", ["why does he think that?", "what did she say next?", "what did he do about it?"])
def test_a_follow_up_that_points_back_keeps_the_earlier_question_as_context(follow):
    prev = HistoryTurn("What did Amar say about waiting lists?", speaker="Amar Shah", speakers=["Amar Shah"])
    r = resolve(follow, [prev], {"transcript": "a.txt"}, _rarity)
    assert r.followup and r.text == f"{follow} (What did Amar say about waiting lists?)"
    assert r.speakers == ["Amar Shah"] and r.filters == {"transcript": "a.txt"}


# ---------------------------------------------------------------------------- a new speaker


@pytest.mark.parametrize("prev, follow, expected", [
    (BAINS, "and the interviewer?", "What did the interviewer say about business loans?"),
    (HistoryTurn("What did Helen Osei say about young audiences?", speaker="Helen Osei", speakers=["Helen Osei"]),
     "and the guest?", "What did the guest say about young audiences?"),
    (HistoryTurn("What did the interviewer say about the exams?", speaker="Daniel Ruiz"),
     "and the guest?", "What did the guest say about the exams?"),
    (HistoryTurn("Why does she think the exams fail?", speaker="Agnes Mwangi"),
     "what about the host?", "Why does the host think the exams fail?"),
])
def test_and_the_interviewer_asks_someone_else_the_same_thing(prev, follow, expected):
    r = resolve(follow, [prev], None, _rarity)
    assert r.followup and r.text == expected
    assert r.speakers == []  # the earlier speaker is not carried: the role is asked for


def test_a_new_speaker_without_one_in_the_earlier_question_keeps_it_whole():
    r = resolve("and the guest?", [HistoryTurn("What was said about loans?")], None, _rarity)
    assert r.text == "What was said about loans? (the guest)" and r.speakers == []


def test_a_person_named_earlier_in_the_conversation_is_a_new_speaker():
    history = [HistoryTurn("What did Helen Osei say about theatres?", speaker="Helen Osei", speakers=["Helen Osei"]),
               HistoryTurn("What did Marcus Webb say about theatres?", speaker="Marcus Webb", speakers=["Marcus Webb"])]
    assert resolve("and Helen Osei?", history, None, _rarity).text == "What did Helen Osei say about theatres?"


# ---------------------------------------------------------------------------- chains


def test_a_chain_of_three_resolves_against_the_latest_resolved_question():
    history: list[HistoryTurn] = []
    out = []
    for q in ["What can other countries learn from Norway?", "and Iceland?", "what about Chile?", "and the interviewer?"]:
        r = resolve(q, history, None, _rarity)
        out.append(r.text)
        history.append(HistoryTurn(r.text, speaker="Tomas Lindqvist"))
    assert out[1:] == ["What can other countries learn from Iceland?", "What can other countries learn from Chile?",
                       "What can other countries learn from Chile? (the interviewer)"]


def test_a_chain_of_topics_then_speakers():
    history = [HistoryTurn("What did Mwangi say about internet access?", speaker="Agnes Mwangi", speakers=["Agnes Mwangi"])]
    out = []
    for q in ["and about the exams?", "and the interviewer?", "and the guest?"]:
        r = resolve(q, history, None, _rarity)
        out.append(r.text)
        history.append(HistoryTurn(r.text, speaker="Agnes Mwangi", speakers=r.speakers))
    assert out == ["What did Mwangi say about the exams?", "What did the interviewer say about the exams?",
                   "What did the guest say about the exams?"]


# ---------------------------------------------------------------------------- not follow-ups


@pytest.mark.parametrize("question", [
    "And why did whole fjords in Iceland empty out after quota became tradeable?",
    "And how did the radio lessons reach children on the islands in Tanzania?",
    "Who is Amar Shah?",
    "What did we learn from Scotland?",
    "How is the rural schools programme funded?",
])
def test_standalone_questions_are_not_rewritten(question):
    assert not is_followup(question)
    r = resolve(question, [BAINS], {"speaker": "X"}, _rarity)
    assert not r.followup and r.text == question and r.speakers == [] and r.filters == {"speaker": "X"}


@pytest.mark.parametrize("question", ["and why?", "why?", "And Uganda?", "and what happens to the theatres?",
                                      "why does he think that?", "So what matters most when doing that?"])
def test_short_questions_that_lean_on_the_conversation_are_follow_ups(question):
    assert is_followup(question)


def test_and_why_is_asked_with_the_earlier_question_as_context():
    prev = HistoryTurn("What did the reader say?", filters={"kind": "comment"})
    r = resolve("and why?", [prev], None, _rarity)
    assert r.text == "why? (What did the reader say?)" and r.filters == {"kind": "comment"}


def test_without_history_nothing_is_resolved():
    assert resolve("and Uganda?", [], None, _rarity) == resolve("and Uganda?", [], None, _rarity)
    assert not resolve("and Uganda?", [], None, _rarity).followup


# ---------------------------------------------------------------------------- the question set


def test_the_question_set_is_well_formed():
    qs = rag._evaluate.load_questions(SET / "questions.jsonl")
    follow = [q for q in qs if q["follow_up_of"]]
    assert len(follow) >= 25 and all(q["style"] == "followup" for q in follow)
    assert len(list((SET / "transcripts").glob("*.txt"))) == 3


def test_followup_set_through_the_engine(tmp_path, embedder):
    settings = rag.load_settings(store=tmp_path / "s")
    report = rag.ingest([SET / "transcripts"], settings, embedder=embedder)
    assert not report.failed
    result = evaluate(SET / "questions.jsonl", settings, engine=rag.Engine(settings, embedder=embedder), k=5)
    fu = result["by_style"]["followup"]
    assert fu["n"] >= 25
    assert fu["hit@5"] >= FOLLOWUP_HIT5_FLOOR, f"follow-up hit@5 fell to {fu['hit@5']} (floor {FOLLOWUP_HIT5_FLOOR})"
    assert fu["hit@1"] >= FOLLOWUP_HIT1_FLOOR, f"follow-up hit@1 fell to {fu['hit@1']} (floor {FOLLOWUP_HIT1_FLOOR})"
    rows = {r["id"]: r for r in result["questions"]}
    # the reported failures, resolved as a person would read them
    assert rows["s-scot2-uganda"]["resolved_question"] == "What did we learn from Uganda?"
    assert rows["f-chile"]["resolved_question"] == "What can other countries learn from Chile?"
    assert rows["a-young-guest"]["resolved_question"] == "What did the guest say about young audiences?"
    assert rows["f-reform-fjords"]["resolved_question"] == rows["f-reform-fjords"]["question"]
