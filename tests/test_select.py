"""Choosing the answer's sentences: contiguous spans (the matching sentence and the one that
explains it), a word budget, the expected answer type preferred; on hand-made passages with
given sentence vectors, and on the real seed store."""

from __future__ import annotations

import numpy as np
import pytest

from rag._answer import carries, passage_sentences, select_sentences
from rag._records import Passage, Retrieved, Segment
from rag._settings import AnswerSettings


def _passage(text: str, n: int = 0, question: str = "") -> Passage:
    return Passage(chunk_id=f"t.txt#t{n}", transcript="t.txt", title="T", date="", kind="answer", speaker="Ann Lee",
                   role="interviewee", text=text, segments=[Segment(text, 0)], turns=(n, n), start_char=0,
                   end_char=len(text), question=question, question_speaker="Bo Ray" if question else "")


def _vectors(scores: dict[str, float]):
    """Sentence vectors whose cosine with the question vector e0 is given per sentence (a
    sentence not named scores 0.1)."""
    def embed(items):
        out = []
        for p, field in items:
            text = getattr(p, field)
            rows = []
            for a, b in passage_sentences(p, field):
                c = scores.get(text[a:b], 0.1)
                rows.append([c, float(np.sqrt(max(0.0, 1 - c * c)))])
            out.append(np.array(rows, dtype=np.float32).reshape(-1, 2))
        return out
    return embed


Q_VEC = np.array([1.0, 0.0], dtype=np.float32)


@pytest.mark.parametrize("text, kind, expected", [
    ("I became CTO in 1997, after the merger.", "date", True),
    ("I became CTO after the merger.", "date", False),
    ("I may have learned more from outside England.", "date", False),
    ("We met in May 2019.", "date", True),
    ("The bank paid $4.5 million in cash.", "amount", True),
    ("The bank paid in cash.", "amount", False),
    ("We trained twelve hundred nurses.", "number", True),
    ("It was led by Maria Lopez at the time.", "person", True),
    ("it was led by the team.", "person", False),
    ("We did it because the money ran out.", "reason", True),
    ("Anything at all.", "other", False),
])
def test_carries_the_expected_answer_type(text, kind, expected):
    assert carries(text, kind) is expected


def test_the_sentence_that_explains_a_match_follows_it():
    p = _passage("Bangladesh has been really inspirational to me. These places have a lot to teach us about "
                 "improvement in daily work. My cat is called Tom.")
    cfg = AnswerSettings(follow_bar=2.0, per_passage=1, relative_bar=0.0)
    vecs = _vectors({"Bangladesh has been really inspirational to me.": 0.9})
    chosen = select_sentences("What can we learn from Bangladesh?", Q_VEC, [Retrieved(p, 1.0, 1)], vecs, cfg=cfg)
    texts = [c.text for c in chosen]
    assert texts[0].startswith("Bangladesh") and texts[1].startswith("These places")
    assert not any("cat" in t for t in texts)
    # without the follow rule the explanation is left out
    alone = select_sentences("What can we learn from Bangladesh?", Q_VEC, [Retrieved(p, 1.0, 1)], vecs,
                             cfg=AnswerSettings(follow_bar=0.0, per_passage=1, relative_bar=0.0))
    assert [c.text for c in alone] == ["Bangladesh has been really inspirational to me."]


def test_the_budget_caps_the_answer_and_sentences_come_from_several_passages():
    long = " ".join(f"Point number {i} about the harbour wall repairs is important." for i in range(30))
    ps = [_passage(long, 0), _passage("The harbour wall repairs cost a lot of money overall.", 1)]
    cfg = AnswerSettings(budget_words=40, per_passage=3, relative_bar=5.0, follow_bar=0.0, max_passages=2, w_rank=0.0,
                         max_repeat=1.0)
    chosen = select_sentences("What about the harbour wall repairs?", Q_VEC, [Retrieved(p, 1.0, i + 1) for i, p in enumerate(ps)],
                              _vectors({}), cfg=cfg)
    assert sum(len(c.text.split()) for c in chosen) <= 40
    assert {c.passage_rank for c in chosen} == {0, 1}


def test_a_date_question_prefers_the_sentence_with_the_year():
    p = _passage("Cisco bought Precept, and I became Cisco's CTO. That happened in 1998, in the spring.")
    same = {"Cisco bought Precept, and I became Cisco's CTO.": 0.5, "That happened in 1998, in the spring.": 0.45}
    cfg = AnswerSettings(per_passage=1, relative_bar=0.0, follow_bar=0.0, w_type=0.3, w_cosine=0.65, w_overlap=0.35)
    chosen = select_sentences("In what year did he become CTO of Cisco?", Q_VEC, [Retrieved(p, 1.0, 1)], _vectors(same),
                              cfg=cfg, answer_type="date")
    assert "1998" in " ".join(c.text for c in chosen)
    plain = select_sentences("In what year did he become CTO of Cisco?", Q_VEC, [Retrieved(p, 1.0, 1)], _vectors(same),
                             cfg=cfg.model_copy(update={"w_type": 0.0}), answer_type="date")
    assert [c.text for c in plain] == ["Cisco bought Precept, and I became Cisco's CTO."]


def test_an_unrelated_sentence_with_a_year_does_not_answer_when():
    p = _passage("My introduction to improvement came late in my training. Over the last year the weather changed.")
    same = {"My introduction to improvement came late in my training.": 0.45,
            "Over the last year the weather changed.": 0.1}
    cfg = AnswerSettings(per_passage=1, relative_bar=0.0, follow_bar=0.0, w_type=0.5, w_cosine=0.35, w_overlap=0.65)
    question = "When did she first meet it?"
    gated = select_sentences(question, Q_VEC, [Retrieved(p, 1.0, 1)], _vectors(same), cfg=cfg, answer_type="date")
    assert [c.text for c in gated] == ["My introduction to improvement came late in my training."]
    ungated = select_sentences(question, Q_VEC, [Retrieved(p, 1.0, 1)], _vectors(same),
                               cfg=cfg.model_copy(update={"type_gate": 0.0}), answer_type="date")
    assert [c.text for c in ungated] == ["Over the last year the weather changed."]


def test_a_sentence_saying_again_what_is_quoted_is_left_out():
    p = _passage("The harbour wall needs repairs now. The harbour wall needs repairs now, really. Fishing quotas changed too.")
    cfg = AnswerSettings(per_passage=3, relative_bar=5.0, follow_bar=0.0, max_repeat=0.7)
    chosen = select_sentences("harbour wall repairs", Q_VEC, [Retrieved(p, 1.0, 1)], _vectors({}), cfg=cfg)
    assert sum("harbour wall needs repairs" in c.text for c in chosen) == 1


def test_bangladesh_answer_carries_the_lesson_and_names_amar_shah(seed_store, embedder):
    from rag import Engine

    a = Engine(seed_store, embedder=embedder).ask("What can we learn from Bangladesh?")
    assert not a.abstained
    assert "These places have a lot to teach us" in a.text
    assert "Amar Shah" in a.text


@pytest.mark.parametrize("question, parts", [
    ("How was the tourism industry affected, and what did the government do to ease the loss?",
     ["How was the tourism industry affected", "what did the government do to ease the loss"]),
    ("What can we learn from Bangladesh? And from Uganda?", ["What can we learn from Bangladesh", "And from Uganda"]),
    ("What did Kirsty Williams say about teacher recruiting, the reasons for it, and the steps taken?",
     ["What did Kirsty Williams say about teacher recruiting", "the reasons for it", "the steps taken"]),
    ("What was said about the mental and emotional health of young people?", []),  # one thing, no comma
    ("According to Dr. Blaney, what are the reasons for the drop in EU students?", []),  # whose answer, not a part
    ("Other than fee and access reports, what else do executives do to plan for Brexit?", []),  # one question
    ("Summarize the discussion about surgical masks, protective gowns and N95 masks.",
     ["Summarize the discussion about surgical masks", "protective gowns", "N95 masks"]),
    ("What can we learn from Bangladesh?", []),
])
def test_the_parts_of_a_question_asking_several_things(question, parts):
    from rag._query import question_parts

    assert question_parts(question) == parts


def test_each_part_of_a_question_gets_a_sentence():
    p = _passage("Recruitment of teachers fell by a tenth this year. The main reason is pay, which has not kept up. "
                 "We have also had a hard winter. To fix it we raised bursaries and opened two new routes into teaching.")
    question = "What did she say about teacher recruitment, the reasons for it, and the steps to fix it?"
    vecs = _vectors({"Recruitment of teachers fell by a tenth this year.": 0.9})
    cfg = AnswerSettings(follow_bar=0.0, per_passage=1, relative_bar=0.0)
    from rag._query import question_parts

    parts = question_parts(question)
    without = select_sentences(question, Q_VEC, [Retrieved(p, 1.0, 1)], vecs, cfg=cfg)
    assert [c.text for c in without] == ["Recruitment of teachers fell by a tenth this year."]
    chosen = select_sentences(question, Q_VEC, [Retrieved(p, 1.0, 1)], vecs, cfg=cfg, parts=parts)
    texts = [c.text for c in chosen]
    assert texts[0] == "Recruitment of teachers fell by a tenth this year."
    assert "The main reason is pay, which has not kept up." in texts
    assert "To fix it we raised bursaries and opened two new routes into teaching." in texts
    assert "We have also had a hard winter." not in texts
    # no room of their own: the parts are not added beyond the budget
    tight = select_sentences(question, Q_VEC, [Retrieved(p, 1.0, 1)], vecs, cfg=cfg.model_copy(update={"part_words": 0}),
                             parts=parts)
    assert [c.text for c in tight] == [c.text for c in without]
