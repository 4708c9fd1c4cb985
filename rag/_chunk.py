"""Pair answers with their questions and cut answer-level passages that fit the model window.

Pure functions: a Transcript in, Passages out. Token counts come from a callable so that the
caller decides which tokenizer counts (the embedding model's own, in practice).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ._records import Passage, Segment, Transcript, Turn, join_segments
from ._text import sentence_spans

CountTokens = Callable[[Sequence[str]], list[int]]
QUESTION_TOKEN_CAP = 96  # at most this much of a long question goes into the embedded text


def chunk_transcript(t: Transcript, count_tokens: CountTokens, max_tokens: int = 256) -> list[Passage]:
    """Answer-level passages of a transcript. ``max_tokens`` is the embedder's window
    (special tokens included)."""
    turns = t.turns
    passages: list[Passage] = []
    question_of = _pair_questions(turns)
    answered_questions = {q.index for q in question_of.values() if q is not None}
    for turn in turns:
        if turn.act == "procedural" or turn.act == "question" and turn.index in answered_questions:
            continue
        q = question_of.get(turn.index)
        kind = {"answer": "answer", "introduction": "introduction", "comment": "comment"}.get(turn.act, "statement")
        if turn.act == "answer" and q is None:
            kind = "statement"
        speaker = t.speakers.get(turn.speaker) if turn.speaker else None
        if turn.act == "comment":
            name, role = turn.comment_author or "Reader", "other"
        elif speaker is not None:
            name, role = speaker.name, speaker.role
        else:
            name, role = "", "other"
        q_text = q.text if q is not None else ""
        q_speaker = (t.speakers[q.speaker].name if q is not None and q.speaker in t.speakers else "")
        adjacent = q is not None and all(
            turns[i].act == "procedural" for i in range(q.index + 1, turn.index)
        )
        start_char = q.tag_start if (q is not None and adjacent) else turn.tag_start
        first_turn = q.index if q is not None else turn.index
        q_embed = _trim_question(q_text, count_tokens) if q_text else ""
        budget = max_tokens - 2 - (count_tokens([q_embed])[0] + 1 if q_embed else 0)
        parts = _split(turn.segments, count_tokens, max(budget, 16))
        base_id = f"{t.id}#t{first_turn}" + (f"-{turn.index}" if first_turn != turn.index else "")
        for n, segs in enumerate(parts, 1):
            part = n if len(parts) > 1 else 0
            p_start = start_char if n == 1 else segs[0].start
            p_end = segs[-1].end if n < len(parts) else turn.end
            passages.append(
                Passage(
                    chunk_id=base_id + (f"/p{part}" if part else ""),
                    transcript=t.id,
                    title=t.title,
                    date=t.date,
                    kind=kind,  # type: ignore[arg-type]
                    speaker=name,
                    role=role,  # type: ignore[arg-type]
                    text=join_segments(segs),
                    segments=segs,
                    turns=(first_turn, turn.index),
                    start_char=p_start,
                    end_char=p_end,
                    question=q_text,
                    question_speaker=q_speaker,
                    part=part,
                    start_time=turn.start_time,
                    end_time=turn.end_time,
                    comment_date=turn.comment_date or "",
                    embed_question=q_embed,
                )
            )
    return passages


def _pair_questions(turns: list[Turn]) -> dict[int, Turn | None]:
    """For each answer turn, the question turn that prompted it."""
    out: dict[int, Turn | None] = {}
    current: Turn | None = None
    for t in turns:
        if t.act == "question":
            current = t
        elif t.act == "answer":
            out[t.index] = current
    return out


def _trim_question(question: str, count_tokens: CountTokens) -> str:
    """The end of a long question (where the actual question usually is), within the cap."""
    if count_tokens([question])[0] <= QUESTION_TOKEN_CAP:
        return question
    spans = sentence_spans(question)
    sents = [question[a:b] for a, b in spans]
    counts = count_tokens(sents)
    kept: list[str] = []
    total = 0
    for s, c in zip(reversed(sents), reversed(counts)):
        if total + c > QUESTION_TOKEN_CAP:
            break
        kept.insert(0, s)
        total += c
    if not kept:  # one huge last sentence: keep its last words
        words = sents[-1].split()
        kept = [" ".join(words[-QUESTION_TOKEN_CAP // 2 :])]
    return " ".join(kept)


def _split(segments: list[Segment], count_tokens: CountTokens, budget: int) -> list[list[Segment]]:
    """Pack paragraphs into parts within ``budget`` tokens; split long paragraphs at sentences
    and overlong sentences at words. WordPiece counts add up over whitespace-separated pieces."""
    pieces: list[tuple[Segment, int]] = []
    counts = count_tokens([s.text for s in segments])
    for seg, c in zip(segments, counts):
        if c <= budget:
            pieces.append((seg, c))
        else:
            pieces.extend(_split_segment(seg, count_tokens, budget))
    parts: list[list[Segment]] = []
    current: list[Segment] = []
    used = 0
    for seg, c in pieces:
        if current and used + c > budget:
            parts.append(current)
            current, used = [], 0
        current.append(seg if current else _with_sep(seg, "\n"))
        used += c
    if current:
        parts.append(current)
    return parts


def _with_sep(seg: Segment, sep: str) -> Segment:
    return Segment(seg.text, seg.start, seg.end, sep=sep)


def _split_segment(seg: Segment, count_tokens: CountTokens, budget: int) -> list[tuple[Segment, int]]:
    if not seg.verbatim:
        return [(seg, min(count_tokens([seg.text])[0], budget))]
    text = seg.text
    sents = [Segment(text[a:b], seg.start + a, sep=" ") for a, b in sentence_spans(text)]
    if sents:
        sents[0] = _with_sep(sents[0], seg.sep)
    out: list[tuple[Segment, int]] = []
    for s, c in zip(sents, count_tokens([s.text for s in sents])):
        if c <= budget:
            out.append((s, c))
            continue
        # a sentence longer than the window: cut at word boundaries, explicitly
        words = list(re.finditer(r"\S+", s.text))
        wc = count_tokens([w.group() for w in words])
        a = 0
        used = 0
        for i, (w, n) in enumerate(zip(words, wc)):
            if used and used + n > budget:
                piece = s.text[words[a].start() : words[i - 1].end()]
                out.append((Segment(piece, s.start + words[a].start(), sep=" " if out else s.sep), used))
                a, used = i, 0
            used += n
        piece = s.text[words[a].start() : words[-1].end()]
        out.append((Segment(piece, s.start + words[a].start(), sep=" " if out else s.sep), used))
    return out
