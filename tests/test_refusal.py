"""The refusal decision (rag/_decide.py) and its features (rag/_refusal.py): hand-made inputs, then
the real seed store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rag import Engine, load_settings
from rag._decide import decide, refusal_probability
from rag._query import QueryPlan
from rag._refusal import FEATURES, absent_share, coverage, features, probability, question_words, type_missing
from rag._settings import RefusalSettings

VOCAB = {"bangladesh", "learning", "learn", "countries", "other", "improvement", "from", "we", "can", "what",
         "quality", "shah", "amar", "frameworks", "risk", "risks", "the", "of"}
IDF = {"bangladesh": 2.5, "learn": 1.2, "countri": 1.5, "improvement": 0.4, "quality": 1.0, "shah": 0.3,
       "amar": 0.3, "framework": 1.4, "risk": 1.6, "other": 0.5, "unrelated": 2.7}


def _plan(question: str, topic: list[str], answer_type: str = "other", **kw) -> QueryPlan:
    return QueryPlan(question=question, text=question, embed_text=question, lexical_text=question,
                     evidence_text=question, topic=topic, answer_type=answer_type, **kw)


def _top(*scores: float) -> list:
    return [SimpleNamespace(score=s) for s in scores]


def _said(*texts: str) -> list:
    return [SimpleNamespace(text=t) for t in texts]


def test_absent_words_weigh_as_the_rarest_word_and_inflections_are_present():
    assert absent_share(["zeppelins"], VOCAB, IDF) == 1.0
    assert absent_share(["learning", "bangladesh"], VOCAB, IDF) == 0.0
    assert absent_share(["learned"], VOCAB, IDF) == 0.0  # "learned" -> "learn", which the corpus has
    share = absent_share(["zeppelins", "improvement"], VOCAB, IDF)
    assert share == pytest.approx(2.7 / (2.7 + 0.4))  # an absent word counts as much as the rarest
    assert absent_share([], VOCAB, IDF) == 0.0


def test_coverage_is_the_idf_weighted_share_the_quotes_carry():
    words = ["learn", "bangladesh"]
    assert coverage(words, ["We learned a lot from Bangladesh."], VOCAB, IDF) == 1.0
    assert coverage(words, ["Bangladesh is far."], VOCAB, IDF) == pytest.approx(2.5 / 3.7)
    assert coverage(words, [], VOCAB, IDF) == 0.0
    # a word the corpus never has cannot be quoted, and weighs as the rarest word
    assert coverage(["zeppelins", "bangladesh"], ["Bangladesh again."], VOCAB, IDF) == pytest.approx(2.5 / 5.2)


def test_answer_type_patterns():
    assert type_missing("date", ["We started in 2019."]) == 0.0
    assert type_missing("date", ["We started a while back."]) == 1.0
    assert type_missing("amount", ["It was given £5 million."]) == 0.0
    assert type_missing("amount", ["It was given a lot of support."]) == 1.0
    assert type_missing("number", ["Twelve people came."]) == 0.0
    assert type_missing("place", ["We went to Dhaka last year."]) == 0.0
    assert type_missing("place", ["We went there."]) == 1.0
    assert type_missing("person", ["Ask Amar Shah."]) == 0.0
    assert type_missing("reason", ["Anything."]) == 0.0  # no pattern for reasons: never missing


def test_question_words_are_the_topic_or_the_evidence_text():
    assert question_words(_plan("What did Shah say about Bangladesh's schools?", ["bangladesh's", "schools"])) == ["bangladesh", "schools"]
    assert question_words(_plan("What can we learn from Bangladesh?", [])) == ["learn", "bangladesh"]


def test_features_of_an_answer():
    plan = _plan("What can we learn from Bangladesh?", ["learn", "bangladesh"])
    f = features(plan, _top(19.0, 17.5), _said("We learned from Bangladesh."), 0.7, idf=IDF, vocab=VOCAB).values
    assert set(f) == set(FEATURES)
    assert f["score1"] == 19.0 and f["margin"] == 1.5 and f["coverage"] == 1.0 and f["absent"] == 0.0
    assert f["unknown_names"] == 0.0 and f["type_missing"] == 0.0 and f["speaker_only"] == 0.0
    assert features(plan, _top(19.0), [], 0.0, idf=IDF, vocab=VOCAB).values["margin"] == 0.0


def test_a_question_with_a_word_the_corpus_never_contains_is_refused():
    # the quoted sentence is close enough in meaning to pass the evidence floor, but it cannot
    # carry the question's main word: the corpus never says it
    s = RefusalSettings()
    plan = _plan("How are zeppelins improving quality?", ["zeppelins", "improving", "quality"])
    top, chosen = _top(15.0, 14.6), _said("Improvement needs patience.")
    f = features(plan, top, chosen, 0.45, idf=IDF, vocab=VOCAB).values
    assert f["absent"] > 0.5 and f["coverage"] < 0.2
    assert refusal_probability(plan, 0.45, chosen, top, idf=IDF, vocab=VOCAB, settings=s) >= s.threshold
    assert decide(plan, 0.45, chosen, top, idf=IDF, vocab=VOCAB, settings=s)
    # named with a capital it is an unknown name, refused whatever the evidence
    named = _plan("What about Zeppelin?", ["zeppelin"], unknown_names=["Zeppelin"])
    assert decide(named, 0.9, _said("Bangladesh."), _top(20.0, 15.0), idf=IDF, vocab=VOCAB, settings=s)


def test_a_paraphrase_with_strong_evidence_is_answered():
    s = RefusalSettings()
    plan = _plan("What lessons does Bangladesh offer?", ["lessons", "bangladesh", "offer"])
    top, chosen = _top(19.0, 17.5), _said("We can learn a great deal from countries like Bangladesh.")
    assert refusal_probability(plan, 0.7, chosen, top, idf=IDF, vocab=VOCAB, settings=s) < s.threshold
    assert not decide(plan, 0.7, chosen, top, idf=IDF, vocab=VOCAB, settings=s)


def test_rules_around_the_model():
    s = RefusalSettings()
    plan = _plan("What can we learn from Bangladesh?", ["learn", "bangladesh"])
    top = _top(19.0, 17.5)
    assert decide(plan, 0.9, [], top, idf=IDF, vocab=VOCAB, settings=s)  # nothing to quote
    assert decide(plan, 0.2, _said("We learned from Bangladesh."), top, idf=IDF, vocab=VOCAB, settings=s)  # under the floor
    speaker_only = _plan("What did the reader say?", [], kinds=["comment"])
    assert not decide(speaker_only, 0.1, _said("Thank you."), _top(12.0), idf=IDF, vocab=VOCAB, settings=s)
    # the earlier rule alone: evidence against abstain_threshold
    old = RefusalSettings(model="threshold")
    weak = _plan("How are zeppelins improving quality?", ["zeppelins", "improving", "quality"])
    assert not decide(weak, 0.45, _said("Improvement needs patience."), _top(15.0, 14.6), idf=IDF, vocab=VOCAB, settings=old)
    assert decide(weak, 0.30, _said("Improvement needs patience."), _top(15.0, 14.6), settings=old, threshold=0.35)


def test_probability_and_settings():
    assert probability({"evidence": 1.0}, {"evidence": 0.0}, 0.0) == 0.5
    assert probability({"evidence": 1.0}, {"evidence": -800.0}, 0.0) == pytest.approx(0.0)
    assert probability({"evidence": 1.0}, {"evidence": 800.0}, 0.0) == pytest.approx(1.0)
    assert set(RefusalSettings().weights) == set(FEATURES)
    with pytest.raises(ValueError, match="unknown refusal feature"):
        RefusalSettings(weights={"nonsense": 1.0})
    with pytest.raises(ValueError):
        RefusalSettings(model="magic")
    s = load_settings(refusal={"threshold": 0.5})
    assert s.refusal.threshold == 0.5 and s.refusal.model == "fitted"


def test_on_the_seed_store(seed_store, embedder):
    e = Engine(seed_store, embedder=embedder)
    france = e.ask("What is the capital of France?")
    assert france.abstained and not france.citations
    bangladesh = e.ask("What can we learn from Bangladesh?")
    assert not bangladesh.abstained and "Bangladesh" in bangladesh.text


def test_made_up_questions_of_another_subject_are_asked_of_the_least_like_transcripts():
    """scripts/fit_refusal.py's second kind of made-up question: each transcript's others ranked by
    how far their mean passage vector is from its own, the further half kept."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parent.parent / "scripts" / "fit_refusal.py"
    spec = importlib.util.spec_from_file_location("fit_refusal", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # two subjects: a1, a2, a3 point one way, b1, b2 another
    way = {"a1": [1, 0.1, 0], "a2": [1, 0, 0.1], "a3": [0.9, 0.1, 0.1], "b1": [0, 1, 0.1], "b2": [0.1, 1, 0]}
    names = sorted(way)
    vectors = np.array([way[t] for t in names for _ in range(2)], dtype=np.float32)
    rows = {t: np.array([2 * i, 2 * i + 1]) for i, t in enumerate(names)}
    index = SimpleNamespace(vectors=vectors, transcript_rows=lambda t: rows[t])
    far = mod.distant(index, names)
    assert far["a1"] == ["b1", "b2"] and far["a3"] == ["b1", "b2"]
    assert set(far["b1"]) <= {"a1", "a2", "a3"} and len(far["b1"]) == 2 and "b2" not in far["b1"]
