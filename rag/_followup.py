"""Resolve follow-up questions against the conversation so far, without an LLM.

"and Uganda?" after "What can we learn from Bangladesh?" becomes "What can we learn from
Uganda?": the earlier question's most specific term (the rarest in the corpus) is swapped for
the new subject. "why does he think that?" keeps the earlier question as context and carries
the earlier answer's speaker forward. Filters carry forward unless new ones are given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ._text import STOPWORDS, content_words, fold, words

_LEAD = re.compile(r"^\s*(and|but|also|so|then|what about|how about|what of|and what about|and how about|same for|now)\b[\s,]*", re.I)
_PRONOUNS = {"he", "she", "him", "her", "his", "hers", "they", "them", "their", "it", "its", "that", "this", "those", "these", "there"}
_PERSON = {"he", "she", "him", "her", "his", "hers"}


@dataclass
class Turn:
    """What the resolver needs of an earlier exchange."""

    question: str  # as resolved
    filters: dict[str, Any] = field(default_factory=dict)
    speaker: str | None = None  # main speaker of its answer
    speakers: list[str] = field(default_factory=list)  # speakers the question referred to


@dataclass
class Resolution:
    text: str
    filters: dict[str, Any]
    speakers: list[str]
    followup: bool


def is_followup(question: str) -> bool:
    q = question.strip()
    toks = words(fold(q))
    if _LEAD.match(q):
        return True
    if not content_words(q):  # "why?", "how so?"
        return True
    return any(t in _PRONOUNS for t in toks) and len(content_words(q)) <= 4


def resolve(question: str, history: list[Turn], filters: dict[str, Any] | None, rarity: Callable[[str], float]) -> Resolution:
    """``rarity(word)`` ranks words by how specific they are in the corpus (idf)."""
    filters = dict(filters or {})
    if not history or not is_followup(question):
        return Resolution(question, filters, [], False)
    prev = history[-1]
    carried = {**prev.filters, **filters}
    speakers = list(prev.speakers)
    toks = set(words(fold(question)))
    if toks & _PERSON and prev.speaker:
        speakers = [prev.speaker]
    m = _LEAD.match(question)
    rest = question[m.end():] if m else question
    new_subject = rest.strip().rstrip("?.! ")
    new_terms = [w for w in content_words(new_subject) if w not in STOPWORDS]
    if m and new_terms and not (toks & _PRONOUNS - {"that", "this"}):
        # "and Uganda?": swap the earlier question's most specific term for the new subject
        prev_terms = [w for w in content_words(prev.question) if w not in new_terms]
        if prev_terms:
            target = max(prev_terms, key=rarity)
            pattern = re.compile(rf"\b{re.escape(target)}\w*", re.I)
            if pattern.search(prev.question):
                return Resolution(pattern.sub(new_subject, prev.question, count=1), carried, speakers, True)
        return Resolution(f"{prev.question} {new_subject}", carried, speakers, True)
    # "why does he think that?": keep the earlier question as context
    return Resolution(f"{question} ({prev.question})", carried, speakers, True)
