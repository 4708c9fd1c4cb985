"""Refusal: how likely is it that the transcripts do not answer a question, judged from the whole
answer the engine would give (what was retrieved, what would be quoted, what the question asks).

A small logistic regression over generic features of the answer; its weights, bias and threshold
live in ``Settings.refusal`` and are fitted by ``scripts/fit_refusal.py`` on the training split,
where each question asked of the whole store is answerable and the same question asked of the
other hearings only is a made-up unanswerable one (docs/EVALUATION.md, "Refusal").

Every feature is a plain function of a ``QueryPlan``, the retrieved passages, the chosen sentences,
the idf table and the corpus vocabulary, so it can be tested on hand-made inputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from ._answer import _terms
from ._text import STOPWORDS, content_words, fold

FEATURES: tuple[str, ...] = (
    "evidence",  # the best quoted sentence's support (cosine blended with word overlap), 0..1
    "score1",  # retrieval score of rank 1 (a weighted sum of ranking features, rag/_rank.py)
    "margin",  # rank 1's score minus rank 2's
    "coverage",  # idf-weighted share of the question's content words the chosen sentences carry
    "absent",  # idf-weighted share of the question's content words the corpus never contains
    "unknown_names",  # capitalised words of the question the corpus never mentions (count, at most 3)
    "type_missing",  # the question expects a date/number/amount/person/organisation/place the quotes lack
    "speaker_only",  # the question only asks what a named speaker said ("What did the reader say?")
)

# The answer types a quote can be checked for by a generic pattern (rag._query.ANSWER_TYPES).
_MONTHS = r"january|february|march|april|may|june|july|august|september|october|november|december"
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
                 r"hundreds?|thousands?|millions?|billions?|dozens?|half|third|quarter|percent|per cent|once|twice|"
                 r"several|few|many|most|majority|minority")
_CAPITALISED = r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'’\-]+"  # a capitalised word that does not open a sentence
TYPE_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "date": (re.compile(rf"\b(1[5-9]\d\d|20\d\d)s?\b|\b({_MONTHS})\b|\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b|"
                        r"\b(yesterday|today|tomorrow|ago|last (week|month|year)|next (week|month|year)|century|decade|"
                        r"spring|summer|autumn|winter)\b|\b\d{1,2}/\d{1,2}(/\d{2,4})?\b", re.I),),
    "number": (re.compile(rf"\d|%|\b({_NUMBER_WORDS})\b", re.I),),
    "amount": (re.compile(r"[$£€¥]|\b\d[\d,.]*\s*(k|m|bn|million|billion|thousand)\b|"
                          r"\b(dollars?|pounds?|euros?|cents?|pence|million|billion)\b", re.I),),
    "person": (re.compile(rf"\b(Mr|Mrs|Ms|Dr|Prof|Sir|Dame|Lord|Lady)\b\.?\s+[A-Z]|{_CAPITALISED}"),
               re.compile(r"\b(he|she|him|her|minister|chair|secretary|director|president|leader)\b", re.I)),
    "organisation": (re.compile(rf"\b[A-Z]{{2,}}\b|{_CAPITALISED}"),),
    "place": (re.compile(_CAPITALISED),),
}


@dataclass
class Features:
    values: dict[str, float]

    def vector(self, names: Sequence[str] = FEATURES) -> list[float]:
        return [float(self.values.get(n, 0.0)) for n in names]


def question_words(plan) -> list[str]:
    """The question's content words (folded, as the corpus vocabulary holds them): its topic once
    speakers and request words are gone, else the content words of its evidence text."""
    found = list(plan.topic) if plan.topic else content_words(fold(plan.evidence_text))
    out: list[str] = []
    for w in found:
        w = re.sub(r"'s?$", "", w)
        if w and w not in STOPWORDS and len(w) > 1 and w not in out:
            out.append(w)
    return out


def _stem(word: str) -> str:
    t = _terms(word)
    return t[0] if t else word


def _weight(stem: str, idf: Mapping[str, float], unseen: float) -> float:
    return float(idf.get(stem, unseen))


def unseen_idf(idf: Mapping[str, float]) -> float:
    """The idf a word the corpus never contains gets: that of a word in a single passage."""
    return max(idf.values(), default=1.0)


_STEMS: dict[int, tuple[set[str], set[str]]] = {}


def vocab_stems(vocab: set[str]) -> set[str]:
    """The corpus words with their suffixes folded as the idf table's terms are ("learning" ->
    "learn"), cached per vocabulary set (the engine's changes only with the store)."""
    hit = _STEMS.get(id(vocab))
    if hit is None or hit[0] is not vocab:
        if len(_STEMS) >= 64:
            _STEMS.clear()
        hit = _STEMS[id(vocab)] = (vocab, {_stem(w) for w in vocab})
    return hit[1]


def _present(word: str, vocab: set[str], stems: set[str]) -> bool:
    return word in vocab or _stem(word) in stems or any(part in vocab for part in word.split("-") if part and part != word)


def absent_share(words: Iterable[str], vocab: set[str], idf: Mapping[str, float]) -> float:
    """Idf-weighted share of ``words`` that occur nowhere in the corpus (``vocab``: every folded
    word of it). An absent word weighs as much as the rarest word of the corpus: it is not a
    speaker's name or a common word that happens to be missing from a quote."""
    words = list(words)
    if not words:
        return 0.0
    unseen = unseen_idf(idf)
    stems = vocab_stems(vocab)
    total = gone = 0.0
    for w in words:
        present = _present(w, vocab, stems)
        weight = unseen if not present else _weight(_stem(w), idf, unseen)
        total += weight
        gone += 0.0 if present else weight
    return gone / total if total else 0.0


def coverage(words: Iterable[str], sentences: Iterable[str], vocab: set[str], idf: Mapping[str, float]) -> float:
    """Idf-weighted share of ``words`` that the ``sentences`` carry (suffixes folded as the idf
    table's terms are); words the corpus never contains count, at their full weight, as missing."""
    words = list(words)
    if not words:
        return 0.0
    unseen = unseen_idf(idf)
    stems = vocab_stems(vocab)
    carried = set(_terms(" ".join(sentences)))
    total = got = 0.0
    for w in words:
        stem = _stem(w)
        weight = _weight(stem, idf, unseen) if _present(w, vocab, stems) else unseen
        total += weight
        got += weight if stem in carried else 0.0
    return got / total if total else 0.0


def type_missing(answer_type: str, sentences: Iterable[str]) -> float:
    """1 when the question expects a kind of answer a pattern can see (a date, number, amount,
    person, organisation or place) and none of the quoted sentences has one; else 0."""
    patterns = TYPE_PATTERNS.get(answer_type)
    if patterns is None:
        return 0.0
    text = " ".join(sentences)
    found = any(p.search(text) for p in patterns)
    return 0.0 if found else 1.0


def features(plan, top: Sequence, chosen: Sequence, evidence: float, *, idf: Mapping[str, float],
             vocab: set[str]) -> Features:
    """The features of one answer: ``top`` the retrieved passages (``.score``), ``chosen`` the
    sentences it would quote (``.text``), ``evidence`` the best sentence's support, ``idf`` word ->
    idf, ``vocab`` every folded word of the corpus searched."""
    words = question_words(plan)
    texts = [c.text for c in chosen]
    s1 = float(top[0].score) if top else 0.0
    s2 = float(top[1].score) if len(top) > 1 else 0.0
    return Features({
        "evidence": float(evidence),
        "score1": s1,
        "margin": s1 - s2 if len(top) > 1 else 0.0,
        "coverage": coverage(words, texts, vocab, idf),
        "absent": absent_share(words, vocab, idf),
        "unknown_names": float(min(len(plan.unknown_names), 3)),
        "type_missing": type_missing(plan.answer_type, texts),
        "speaker_only": float(plan.refers and not plan.topic),
    })


def probability(values: Mapping[str, float], weights: Mapping[str, float], bias: float) -> float:
    """P(the transcripts do not answer it): the logistic of bias + sum of weight x feature."""
    z = bias + sum(float(w) * float(values.get(name, 0.0)) for name, w in weights.items())
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def check_weights(weights: Mapping[str, float]) -> None:
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown refusal feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}")
