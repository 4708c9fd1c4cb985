"""Extractive, grounded answers: the sentences that best answer the question, quoted verbatim,
attributed to their speaker and cited with [n]; or an honest abstention."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ._records import Citation, Passage, Retrieved, Speaker
from ._text import content_words, fold, sentence_spans

REFUSAL = "I couldn't find this in the transcripts."


@dataclass
class Sentence:
    passage_rank: int  # 0-based rank of its passage among the retrieved
    start: int  # offsets into passage.text
    end: int
    text: str
    score: float = 0.0
    cosine: float = 0.0
    overlap: float = 0.0
    field: str = "text"  # "text": the answer; "question": the question that prompted it


FIELDS = ("text", "question")
QUESTION_PENALTY = 0.08  # the answer is preferred to the question's own words when both fit


def passage_sentences(p: Passage, field: str = "text") -> list[tuple[int, int]]:
    """Quotable sentences of a passage's answer, or of its question (only the question's own
    statements, "This reminded me of...", not what it asks: that is no answer)."""
    text = getattr(p, field)
    spans = [(a, b) for a, b in sentence_spans(text) if len(text[a:b].split()) >= 3]
    if field == "question":
        spans = [(a, b) for a, b in spans if not text[a:b].rstrip("\"'”’) ").endswith("?")]
    return spans


def lexical_overlap(q_terms: set[str], text: str, idf: dict[str, float] | None = None) -> float:
    """Share of the question's content words (idf-weighted) that the text contains."""
    if not q_terms:
        return 0.0
    t_terms = set(_terms(text))
    w = (lambda t: idf.get(t, 1.0)) if idf else (lambda t: 1.0)
    total = sum(w(t) for t in q_terms)
    return sum(w(t) for t in q_terms if t in t_terms) / total if total else 0.0


def _terms(text: str) -> list[str]:
    # crude suffix folding so "learn"/"learning"/"learned" meet without a stemmer dependency here
    return [_SUFFIX.sub("", w) if len(w) > 4 else w for w in content_words(fold(text))]


_SUFFIX = re.compile(r"(ing|ed|es|s)$")


def question_terms(question: str) -> set[str]:
    return set(_terms(question))


def select_sentences(
    question: str,
    q_vec: np.ndarray,
    retrieved: list[Retrieved],
    sentence_vectors,  # callable: list[(Passage, field)] -> list[np.ndarray (n_sent x dim)]
    *,
    max_passages: int = 3,
    max_sentences: int = 4,
    idf: dict[str, float] | None = None,
) -> list[Sentence]:
    """Score every sentence of the top passages (answers, and the interviewer's statements in
    the questions); keep the best few that clear a relative bar."""
    top = retrieved[:max_passages]
    if not top:
        return []
    q_terms = question_terms(question)
    cands: list[Sentence] = []
    seen_questions: set[str] = set()
    # one call for both fields: the sentences are embedded together, in as few batches as can be
    vecs = iter(sentence_vectors([(r.passage, field) for field in FIELDS for r in top]))
    for field in FIELDS:
        for rank, (r, mat) in enumerate(zip(top, vecs)):
            text = getattr(r.passage, field)
            if field == "question":
                if text in seen_questions:  # parts of one answer share their question
                    continue
                seen_questions.add(text)
            spans = passage_sentences(r.passage, field)
            if not spans:
                continue
            cos = mat @ q_vec if len(mat) else np.zeros(0)
            for (a, b), c in zip(spans, cos):
                ov = lexical_overlap(q_terms, text[a:b], idf)
                score = 0.65 * float(c) + 0.35 * ov - 0.03 * rank - (QUESTION_PENALTY if field == "question" else 0.0)
                cands.append(Sentence(rank, a, b, text[a:b], score, float(c), ov, field))
    if not cands:
        return []
    cands.sort(key=lambda s: -s.score)
    best = cands[0].score
    chosen: list[Sentence] = []
    per_passage: dict[tuple[int, str], int] = {}
    for s in cands:
        if len(chosen) >= max_sentences:
            break
        if s.score < best * 0.8 and chosen:
            break
        key = (s.passage_rank, s.field)
        if per_passage.get(key, 0) >= 2:
            continue
        chosen.append(s)
        per_passage[key] = per_passage.get(key, 0) + 1
    return _with_antecedents(chosen, cands)


_ANAPHORA = re.compile(r"^(that|this|these|those|it|its|they|them|their|there|he|she|his|her|such|so|and|but|also)\b", re.I)


def _with_antecedents(chosen: list[Sentence], cands: list[Sentence]) -> list[Sentence]:
    """A quoted sentence that opens by pointing back ("That was one of the first places...")
    brings the sentence before it, so the quote says what it points at."""
    out = list(chosen)
    for s in chosen:
        if not _ANAPHORA.match(s.text):
            continue
        before = [c for c in cands if c.passage_rank == s.passage_rank and c.field == s.field and c.end <= s.start]
        if not before:
            continue
        prev = max(before, key=lambda c: c.end)
        if prev not in out:
            out.append(Sentence(prev.passage_rank, prev.start, prev.end, prev.text, s.score, prev.cosine, prev.overlap, prev.field))
    return out


def short_name(name: str) -> str:
    """The surname, for a second mention: "Julie Morgan AM" -> "Morgan" (post-nominal
    letters dropped), "The Chair" -> "The Chair"."""
    toks = name.split()
    while len(toks) > 2 and toks[-1].isupper() and len(toks[-1]) <= 4:
        toks.pop()
    if len(toks) == 2 and toks[0].lower() == "the":
        return name
    return toks[-1] if toks else name


SpeakerLookup = Callable[[str, str], "Speaker | None"]  # (transcript, name or tag) -> Speaker


def manifest_speakers(manifest: Mapping[str, Any]) -> SpeakerLookup:
    """The ``speakers`` lookup for compose(), from the store's manifest (transcript id -> info
    with ``.speakers``): a speaker is found by display name or by tag."""
    table: dict[tuple[str, str], Speaker] = {}
    for tid, info in manifest.items():
        for sp in info.speakers:
            table.setdefault((tid, sp.name), sp)
            table.setdefault((tid, sp.tag), sp)
    return lambda transcript, name: table.get((transcript, name))


def named(name: str, sp: Speaker | None) -> str:
    """A person as the answer names them: by name, with the transcript's tag where it tags them
    by something else ("Amar Shah (AS)"), so the reader can find them in the transcript."""
    if name and sp is not None and sp.tag and sp.name == name and sp.tag.casefold() != name.casefold():
        return f"{name} ({sp.tag})"
    return name


def attribution(p: Passage, name: str | None = None) -> str:
    """Who says the answer's words, for the prose; ``name`` is the answerer as the answer names
    them (default: the passage's speaker)."""
    name = p.speaker if name is None else name
    if p.kind == "comment":
        return f"A reader, {name}, commented" + (f" ({p.comment_date})" if p.comment_date else "")
    if p.kind == "introduction":
        return "The introduction says"
    if not name:
        return f"The transcript {p.title or p.transcript} says"
    return f"{name} says"


def check_attribution(c: Citation) -> bool:
    """Is the citation's quote the cited speaker's own words? The quoted field must be spoken by
    that speaker (the answer by the passage's speaker, the question by its asker), every
    highlight must lie inside that field's source ranges, and every quoted piece must be text of
    that field. A citation that fails is never emitted: a quote from the question cited to the
    answerer (or the other way round) would put words in someone else's mouth."""
    p = c.passage
    if c.field == "question":
        owner, segments, text = p.question_speaker, p.question_segments, p.question
    elif c.field == "text":
        owner, segments, text = p.speaker, p.segments, p.text
    else:
        return False
    if c.speaker != owner or not c.highlights or not c.quote.strip():
        return False
    ranges: list[list[int]] = []
    for a, b in sorted((s.start, s.end) for s in segments):
        if ranges and a <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], b)
        else:
            ranges.append([a, b])
    if not all(any(a <= lo < hi <= b for a, b in ranges) for lo, hi in c.highlights):
        return False
    flat = " ".join(text.split())  # quotes join sentences across paragraph breaks with a space
    return all(" ".join(piece.split()) in flat for piece in c.quote.split(" … "))


def compose(
    retrieved: list[Retrieved], chosen: list[Sentence], speakers: SpeakerLookup | None = None
) -> tuple[str, list[Citation]]:
    """Group the chosen sentences by passage (in rank order) and, within a passage, by whose
    words they are: the answer, then the asker's own statements in the question. Each group is
    one quote of one person, quoted in document order, attributed to that person in the prose and
    cited once with its own [n]. ``speakers`` ((transcript, name) -> Speaker) gives the asker's
    role and the tags people are named with; a group that fails check_attribution is left out."""
    lookup = speakers or (lambda transcript, name: None)
    groups: dict[int, list[Sentence]] = {}
    for s in chosen:
        groups.setdefault(s.passage_rank, []).append(s)
    lines: list[str] = []
    citations: list[Citation] = []
    last_speaker = None
    for rank in sorted(groups):
        p = retrieved[rank].passage
        parts: list[str] = []
        for field in FIELDS:
            spans = p.question_spans if field == "question" else p.source_spans
            who = p.question_speaker if field == "question" else p.speaker
            # each sentence on its own first, so one stray sentence does not sink the others
            sents = sorted(
                (s for s in groups[rank] if s.field == field
                 and check_attribution(Citation(0, p, s.text, spans(s.start, s.end), speaker=who, field=field))),  # type: ignore[arg-type]
                key=lambda s: s.start,
            )
            if not sents:
                continue
            sp = lookup(p.transcript, who) if who else None
            role = p.role if field == "text" else (sp.role if sp is not None else "other")
            c = Citation(
                n=len(citations) + 1,
                passage=p,
                quote=_join_quotes(getattr(p, field), sents),
                highlights=sorted(h for s in sents for h in spans(s.start, s.end)),
                speaker=who,
                role=role,
                field=field,  # type: ignore[arg-type]
            )
            if not check_attribution(c):
                continue
            citations.append(c)
            name = named(who, sp)
            if field == "question" and parts:  # the answer came first: the question is its context
                parts[-1] += ","
                parts.append(f"answering {name or 'the interviewer'}, who said in the question: “{c.quote}” [{c.n}]")
            elif field == "question":
                parts.append(f"{name or 'The interviewer'} said in a question: “{c.quote}” [{c.n}]")
            else:
                said = attribution(p, name)
                if who and who == last_speaker and p.kind == "answer":
                    said = f"{short_name(who)} adds"
                parts.append(f"{said}: “{c.quote}” [{c.n}]")
            last_speaker = who
        if parts:
            lines.append(" ".join(parts))
    if not citations:  # nothing could be quoted with its true speaker
        return REFUSAL, []
    return "\n\n".join(lines), citations


def _join_quotes(text: str, sents: list[Sentence]) -> str:
    out = sents[0].text
    for prev, cur in zip(sents, sents[1:]):
        gap = text[prev.end : cur.start]
        out += (" " if not gap.strip() else " … ") + cur.text
    return out
